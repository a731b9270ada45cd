package zlibpy

// The LZ77 half: which literals and matches are emitted, in which blocks.
// Every quantity below is zlib's for windowBits 15 and memLevel 8, because
// each of them changes the chosen matches or the block boundaries.
const (
	wBits      = 15
	wSize      = 1 << wBits
	wMask      = wSize - 1
	windowSize = 2 * wSize

	memLevel  = 8
	hashBits  = memLevel + 7
	hashSize  = 1 << hashBits
	hashMask  = hashSize - 1
	hashShift = (hashBits + minMatch - 1) / minMatch

	minMatch     = 3
	maxMatch     = 258
	minLookahead = maxMatch + minMatch + 1
	maxDist      = wSize - minLookahead

	// A block ends when its symbol buffer holds litBufSize-1 symbols.
	litBufSize = 1 << (memLevel + 6)
	symEnd     = litBufSize - 1

	// Matches of length 3 further away than this cost more than the
	// literals they replace, so the lazy matcher drops them.
	tooFar = 4096

	// winInit is how far past the data zlib keeps the window initialised:
	// the matcher reads up to maxMatch bytes past the end of the input.
	winInit = maxMatch

	nilPos = 0 // position 0 doubles as "no entry" in the hash chains
)

// Level 6's row of zlib's configuration_table, the level zlib.compress
// uses by default: matches of goodLength or more cut the chain search to a
// quarter, matches of maxLazy or more are not lazily re-evaluated, a match
// of niceLength ends the search, and at most maxChain candidates are tried.
const (
	goodLength = 8
	maxLazy    = 16
	niceLength = 128
	maxChain   = 128
)

type compressor struct {
	window [windowSize]byte
	prev   [wSize]uint16
	head   [hashSize]uint16

	in []byte // input not yet copied into the window

	insH           int
	strstart       int
	blockStart     int // may go negative once the block start slid out
	lookahead      int
	matchStart     int
	matchLength    int
	prevMatch      int
	prevLength     int
	matchAvailable bool
	highWater      int // end of the window prefix that has ever been written

	// syms holds the block's symbols as dist<<8 | lc (dist 0: literal lc;
	// otherwise a match of length lc+minMatch at distance dist).
	syms []uint32

	trees
	bw bitWriter
}

func newCompressor() *compressor {
	c := &compressor{syms: make([]uint32, 0, symEnd)}
	c.trees.init()
	return c
}

// reset prepares a pooled compressor. The window and chains are cleared up
// to the old high-water mark, so every call starts from the state a fresh
// compressor has, whatever an earlier call left there.
func (c *compressor) reset(data []byte) {
	clear(c.window[:c.highWater])
	clear(c.prev[:min(c.highWater, wSize)])
	clear(c.head[:])
	c.highWater = 0
	c.in = data
	c.insH = 0
	c.strstart = 0
	c.blockStart = 0
	c.lookahead = 0
	c.matchStart = 0
	c.matchLength = minMatch - 1
	c.prevMatch = 0
	c.prevLength = minMatch - 1
	c.matchAvailable = false
	c.syms = c.syms[:0]
	c.trees.initBlock()
	c.bw.reset()
}

func (c *compressor) updateHash(h int, b byte) int {
	return ((h << hashShift) ^ int(b)) & hashMask
}

// insertString adds the string at pos to the hash chains and returns the
// previous head of its chain.
func (c *compressor) insertString(pos int) int {
	c.insH = c.updateHash(c.insH, c.window[pos+minMatch-1])
	h := c.head[c.insH]
	c.prev[pos&wMask] = h
	c.head[c.insH] = uint16(pos)
	return int(h)
}

// fillWindow tops the lookahead up from the input, sliding the upper half of
// the window down when the current position nears its end. The amounts read
// and the moments of sliding decide which positions matches can reach and
// whether a block's bytes are still in the window for a stored block.
func (c *compressor) fillWindow() {
	for {
		more := windowSize - c.lookahead - c.strstart
		if c.strstart >= wSize+maxDist {
			// Only the valid part moves, as in zlib. What lies past the data
			// is read by the matcher but never decides a match, because the
			// search stops at the first candidate reaching the end.
			copy(c.window[:wSize-more], c.window[wSize:windowSize-more])
			c.matchStart -= wSize
			c.strstart -= wSize
			c.blockStart -= wSize
			c.slideHash()
			more += wSize
		}
		if len(c.in) == 0 {
			break
		}
		at := c.strstart + c.lookahead
		n := copy(c.window[at:at+more], c.in)
		c.in = c.in[n:]
		c.lookahead += n
		// zlib restarts the rolling hash from the first two bytes here; the
		// value only differs from the rolled one in bits that shift out.
		if c.lookahead >= minMatch {
			c.insH = int(c.window[c.strstart])
			c.insH = c.updateHash(c.insH, c.window[c.strstart+1])
		}
		if c.lookahead >= minLookahead || len(c.in) == 0 {
			break
		}
	}
	c.markInitialised()
}

// markInitialised zeroes up to winInit bytes past the data, as zlib does,
// so that reads past the end see defined bytes, and tracks how much of the
// window reset must clear.
func (c *compressor) markInitialised() {
	if c.highWater >= windowSize {
		return
	}
	curr := c.strstart + c.lookahead
	if c.highWater < curr {
		init := min(windowSize-curr, winInit)
		clear(c.window[curr : curr+init])
		c.highWater = curr + init
	} else if c.highWater < curr+winInit {
		init := min(curr+winInit-c.highWater, windowSize-c.highWater)
		clear(c.window[c.highWater : c.highWater+init])
		c.highWater += init
	}
}

func (c *compressor) slideHash() {
	for i, m := range c.head {
		if int(m) >= wSize {
			c.head[i] = m - wSize
		} else {
			c.head[i] = nilPos
		}
	}
	for i, m := range c.prev {
		if int(m) >= wSize {
			c.prev[i] = m - wSize
		} else {
			c.prev[i] = nilPos
		}
	}
}

// longestMatch follows the hash chain from curMatch and returns the length
// of the longest match longer than prevLength, setting matchStart. The
// first of equally long matches wins, i.e. the nearest.
func (c *compressor) longestMatch(curMatch int) int {
	w := c.window[:]
	chain := maxChain
	scan := c.strstart
	best := c.prevLength
	nice := niceLength
	limit := nilPos
	if c.strstart > maxDist {
		limit = c.strstart - maxDist
	}
	if c.prevLength >= goodLength {
		chain >>= 2
	}
	if nice > c.lookahead {
		nice = c.lookahead
	}
	scanEnd1, scanEnd := w[scan+best-1], w[scan+best]
	s := w[scan : scan+maxMatch+1]
	for {
		m := w[curMatch : curMatch+maxMatch+1]
		// The third byte is not compared: equal hashes and equal first two
		// bytes imply it. zlib relies on that and so must we, even where
		// a chain holds a string of another hash.
		if m[best] == scanEnd && m[best-1] == scanEnd1 && m[0] == s[0] && m[1] == s[1] {
			n := 3
			for n < maxMatch && s[n] == m[n] {
				n++
			}
			if n > best {
				c.matchStart = curMatch
				best = n
				if n >= nice {
					break
				}
				scanEnd1, scanEnd = s[best-1], s[best]
			}
		}
		curMatch = int(c.prev[curMatch&wMask])
		if curMatch <= limit {
			break
		}
		chain--
		if chain == 0 {
			break
		}
	}
	return min(best, c.lookahead)
}

// deflateSlow is zlib's lazy matcher (levels 4 to 9, here level 6): a match
// is emitted only if the match starting one byte later is not longer.
func (c *compressor) deflateSlow() {
	for {
		if c.lookahead < minLookahead {
			c.fillWindow()
			if c.lookahead == 0 {
				break
			}
		}
		hashHead := nilPos
		if c.lookahead >= minMatch {
			hashHead = c.insertString(c.strstart)
		}
		c.prevLength, c.prevMatch = c.matchLength, c.matchStart
		c.matchLength = minMatch - 1
		if hashHead != nilPos && c.prevLength < maxLazy && c.strstart-hashHead <= maxDist {
			c.matchLength = c.longestMatch(hashHead)
			if c.matchLength == minMatch && c.strstart-c.matchStart > tooFar {
				c.matchLength = minMatch - 1
			}
		}
		if c.prevLength >= minMatch && c.matchLength <= c.prevLength {
			maxInsert := c.strstart + c.lookahead - minMatch
			flush := c.tallyDist(c.strstart-1-c.prevMatch, c.prevLength-minMatch)
			// The match began at strstart-1; strings up to its end go into
			// the hash, except where fewer than minMatch bytes remain.
			c.lookahead -= c.prevLength - 1
			for n := c.prevLength - 2; n > 0; n-- {
				c.strstart++
				if c.strstart <= maxInsert {
					c.insertString(c.strstart)
				}
			}
			c.prevLength = 0
			c.matchAvailable = false
			c.matchLength = minMatch - 1
			c.strstart++
			if flush {
				c.flushBlock(false)
			}
		} else if c.matchAvailable {
			if c.tallyLit(c.window[c.strstart-1]) {
				c.flushBlock(false)
			}
			c.strstart++
			c.lookahead--
		} else {
			c.matchAvailable = true
			c.strstart++
			c.lookahead--
		}
	}
	if c.matchAvailable {
		c.tallyLit(c.window[c.strstart-1])
		c.matchAvailable = false
	}
	c.flushBlock(true)
}

// tallyLit records a literal and reports whether the block is full.
func (c *compressor) tallyLit(b byte) bool {
	c.syms = append(c.syms, uint32(b))
	c.ltree.freq[b]++
	return len(c.syms) == symEnd
}

// tallyDist records a match (lc = length-minMatch) and reports whether the
// block is full.
func (c *compressor) tallyDist(dist, lc int) bool {
	c.syms = append(c.syms, uint32(dist)<<8|uint32(lc))
	c.ltree.freq[int(lengthCode[lc])+literals+1]++
	c.dtree.freq[distCode(dist-1)]++
	return len(c.syms) == symEnd
}

// flushBlock ends the current block at strstart. Its bytes can be stored
// verbatim only while they are all still in the window.
func (c *compressor) flushBlock(last bool) {
	var buf []byte
	if c.blockStart >= 0 {
		buf = c.window[c.blockStart:c.strstart]
	}
	c.flushTrees(buf, c.strstart-c.blockStart, last)
	c.blockStart = c.strstart
}
