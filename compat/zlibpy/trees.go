package zlibpy

// The Huffman half: how each block is coded. zlib's choices here (tree
// shape on equal frequencies, the repair of over-long codes, how code
// lengths are run-length coded, which block type is cheapest) all show in
// the output bytes, so they are reproduced exactly.
const (
	literals    = 256
	lengthCodes = 29
	lCodes      = literals + 1 + lengthCodes // 286
	dCodes      = 30
	blCodes     = 19
	heapSize    = 2*lCodes + 1
	maxBits     = 15
	maxBLBits   = 7
	endBlock    = 256

	rep3To6     = 16 // repeat previous length 3-6 times (2 extra bits)
	repz3To10   = 17 // repeat a zero length 3-10 times (3 extra bits)
	repz11To138 = 18 // repeat a zero length 11-138 times (7 extra bits)

	storedBlock = 0
	staticTrees = 1
	dynTrees    = 2
)

var (
	extraLBits  = [lengthCodes]int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	extraDBits  = [dCodes]int{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	extraBLBits = [blCodes]int{16: 2, 17: 3, 18: 7}

	// blOrder is RFC 1951's order of code-length code lengths.
	blOrder = [blCodes]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

	lengthCode [maxMatch - minMatch + 1]uint8 // length-minMatch -> length code
	baseLength [lengthCodes]int
	distCodes  [512]uint8 // see distCode
	baseDist   [dCodes]int

	// The static trees as codes and lengths, and the lengths again as the
	// cost table of staticDesc.
	staticLCode, staticLBits [lCodes + 2]uint16
	staticDCode, staticDBits [dCodes]uint16
	staticLLen               [lCodes + 2]uint8
	staticDLen               [dCodes]uint8
)

func init() {
	length := 0
	code := 0
	for ; code < lengthCodes-1; code++ {
		baseLength[code] = length
		for n := 0; n < 1<<extraLBits[code]; n++ {
			lengthCode[length] = uint8(code)
			length++
		}
	}
	// Length 258 has its own code (285) although 284's range reaches it.
	lengthCode[length-1] = uint8(code)

	dist := 0
	for code = 0; code < 16; code++ {
		baseDist[code] = dist
		for n := 0; n < 1<<extraDBits[code]; n++ {
			distCodes[dist] = uint8(code)
			dist++
		}
	}
	dist >>= 7
	for ; code < dCodes; code++ {
		baseDist[code] = dist << 7
		for n := 0; n < 1<<(extraDBits[code]-7); n++ {
			distCodes[256+dist] = uint8(code)
			dist++
		}
	}

	var count [maxBits + 1]int
	for n := range staticLLen {
		switch {
		case n <= 143:
			staticLLen[n] = 8
		case n <= 255:
			staticLLen[n] = 9
		case n <= 279:
			staticLLen[n] = 7
		default:
			staticLLen[n] = 8
		}
		count[staticLLen[n]]++
	}
	for n, l := range staticLLen {
		staticLBits[n] = uint16(l)
	}
	genCodes(staticLCode[:], staticLBits[:], len(staticLBits)-1, &count)
	for n := range staticDCode {
		staticDLen[n] = 5
		staticDBits[n] = 5
		staticDCode[n] = uint16(bitReverse(n, 5))
	}
}

// distCode maps a distance minus one to its distance code.
func distCode(dist int) int {
	if dist < 256 {
		return int(distCodes[dist])
	}
	return int(distCodes[256+dist>>7])
}

// staticDesc is what one kind of tree (literal/length, distance, code
// length) fixes: its static code lengths, extra bits and length limit.
type staticDesc struct {
	staticLen []uint8 // nil for the code-length tree, which has no static form
	extra     []int
	extraBase int
	elems     int
	maxLength int
}

var (
	lDesc  = staticDesc{staticLLen[:], extraLBits[:], literals + 1, lCodes, maxBits}
	dDesc  = staticDesc{staticDLen[:], extraDBits[:], 0, dCodes, maxBits}
	blDesc = staticDesc{nil, extraBLBits[:], 0, blCodes, maxBLBits}
)

// tree is one dynamic Huffman tree: leaves then internal nodes.
type tree struct {
	freq    []int
	dad     []uint16
	len     []uint16
	code    []uint16
	maxCode int // largest leaf with a non-zero frequency
	desc    *staticDesc
}

func newTree(desc *staticDesc) tree {
	n := 2*desc.elems + 1
	return tree{
		freq: make([]int, n),
		dad:  make([]uint16, n),
		len:  make([]uint16, n),
		code: make([]uint16, n),
		desc: desc,
	}
}

// trees is the per-block Huffman state.
type trees struct {
	ltree, dtree, bltree tree

	heap    [heapSize]int // heap[1:heapLen+1] is a min-heap; sorted nodes from heapMax on
	heapLen int
	heapMax int
	depth   [heapSize]uint8 // subtree depth, breaks frequency ties
	blCount [maxBits + 1]int

	optLen    int // bit length of the block with dynamic trees
	staticLen int // bit length of the block with static trees
}

func (s *trees) init() {
	s.ltree = newTree(&lDesc)
	s.dtree = newTree(&dDesc)
	s.bltree = newTree(&blDesc)
}

func (s *trees) initBlock() {
	clear(s.ltree.freq[:lCodes])
	clear(s.dtree.freq[:dCodes])
	clear(s.bltree.freq[:blCodes])
	s.ltree.freq[endBlock] = 1
	s.optLen = 0
	s.staticLen = 0
}

// smaller orders heap nodes by frequency, then by depth, so that among equal
// frequencies the shallower subtree is merged first.
func (s *trees) smaller(t *tree, n, m int) bool {
	return t.freq[n] < t.freq[m] || (t.freq[n] == t.freq[m] && s.depth[n] <= s.depth[m])
}

// pqDownHeap sifts heap[k] down to restore the heap property.
func (s *trees) pqDownHeap(t *tree, k int) {
	v := s.heap[k]
	j := k << 1
	for j <= s.heapLen {
		if j < s.heapLen && s.smaller(t, s.heap[j+1], s.heap[j]) {
			j++
		}
		if s.smaller(t, v, s.heap[j]) {
			break
		}
		s.heap[k] = s.heap[j]
		k = j
		j <<= 1
	}
	s.heap[k] = v
}

// buildTree builds t's Huffman tree from its frequencies, sets code lengths
// and codes, and adds the block's cost under this tree to optLen and under
// the static tree to staticLen.
func (s *trees) buildTree(t *tree) {
	elems := t.desc.elems
	maxCode := -1
	s.heapLen = 0
	s.heapMax = heapSize
	for n := 0; n < elems; n++ {
		if t.freq[n] != 0 {
			s.heapLen++
			s.heap[s.heapLen] = n
			maxCode = n
			s.depth[n] = 0
		} else {
			t.len[n] = 0
		}
	}
	// Deflate needs at least one distance code and a code of at least one
	// bit, so zlib forces a second symbol into trees with fewer than two.
	for s.heapLen < 2 {
		node := 0
		if maxCode < 2 {
			maxCode++
			node = maxCode
		}
		s.heapLen++
		s.heap[s.heapLen] = node
		t.freq[node] = 1
		s.depth[node] = 0
		s.optLen--
		if t.desc.staticLen != nil {
			s.staticLen -= int(t.desc.staticLen[node])
		}
	}
	t.maxCode = maxCode

	for n := s.heapLen / 2; n >= 1; n-- {
		s.pqDownHeap(t, n)
	}
	node := elems
	for {
		n := s.heap[1]
		s.heap[1] = s.heap[s.heapLen]
		s.heapLen--
		s.pqDownHeap(t, 1)
		m := s.heap[1]

		s.heapMax--
		s.heap[s.heapMax] = n
		s.heapMax--
		s.heap[s.heapMax] = m

		t.freq[node] = t.freq[n] + t.freq[m]
		s.depth[node] = max(s.depth[n], s.depth[m]) + 1
		t.dad[n] = uint16(node)
		t.dad[m] = uint16(node)
		s.heap[1] = node
		node++
		s.pqDownHeap(t, 1)
		if s.heapLen < 2 {
			break
		}
	}
	s.heapMax--
	s.heap[s.heapMax] = s.heap[1]

	s.genBitLen(t)
	genCodes(t.code, t.len, maxCode, &s.blCount)
}

// genBitLen turns the tree in heap[heapMax:] into code lengths, limiting
// them to the tree's maximum the way zlib does: over-long leaves are cut to
// the maximum and the count of lengths repaired by moving leaves down from
// shorter lengths; lengths are then dealt out again in frequency order.
func (s *trees) genBitLen(t *tree) {
	d := t.desc
	maxCode := t.maxCode
	clear(s.blCount[:])
	t.len[s.heap[s.heapMax]] = 0 // the root

	overflow := 0
	h := s.heapMax + 1
	for ; h < heapSize; h++ {
		n := s.heap[h]
		bits := int(t.len[t.dad[n]]) + 1
		if bits > d.maxLength {
			bits = d.maxLength
			overflow++
		}
		t.len[n] = uint16(bits)
		if n > maxCode {
			continue // internal node
		}
		s.blCount[bits]++
		xbits := 0
		if n >= d.extraBase {
			xbits = d.extra[n-d.extraBase]
		}
		f := t.freq[n]
		s.optLen += f * (bits + xbits)
		if d.staticLen != nil {
			s.staticLen += f * (int(d.staticLen[n]) + xbits)
		}
	}
	if overflow == 0 {
		return
	}
	for overflow > 0 {
		bits := d.maxLength - 1
		for s.blCount[bits] == 0 {
			bits--
		}
		s.blCount[bits]--
		s.blCount[bits+1] += 2
		s.blCount[d.maxLength]--
		overflow -= 2
	}
	for bits := d.maxLength; bits != 0; bits-- {
		n := s.blCount[bits]
		for n != 0 {
			h--
			m := s.heap[h]
			if m > maxCode {
				continue
			}
			if int(t.len[m]) != bits {
				s.optLen += (bits - int(t.len[m])) * t.freq[m]
				t.len[m] = uint16(bits)
			}
			n--
		}
	}
}

// genCodes assigns canonical codes (bit-reversed, as deflate sends them
// least significant bit first) to the leaves up to maxCode.
func genCodes(codes, lens []uint16, maxCode int, blCount *[maxBits + 1]int) {
	var next [maxBits + 1]int
	code := 0
	for bits := 1; bits <= maxBits; bits++ {
		code = (code + blCount[bits-1]) << 1
		next[bits] = code
	}
	for n := 0; n <= maxCode; n++ {
		l := int(lens[n])
		if l == 0 {
			continue
		}
		codes[n] = uint16(bitReverse(next[l], l))
		next[l]++
	}
}

func bitReverse(code, n int) int {
	r := 0
	for ; n > 0; n-- {
		r = r<<1 | code&1
		code >>= 1
	}
	return r
}

// scanTree counts, in the code-length tree's frequencies, the symbols
// sendTree will use to send t's code lengths.
func (s *trees) scanTree(t *tree, maxCode int) {
	s.walkTree(t, maxCode, func(sym, count int) { s.bltree.freq[sym] += count }, nil)
}

// sendTree sends t's code lengths, run-length coded with the code-length
// tree.
func (s *trees) sendTree(t *tree, maxCode int, bw *bitWriter) {
	send := func(sym, _ int) { bw.send(s.bltree.code[sym], s.bltree.len[sym]) }
	s.walkTree(t, maxCode, send, bw)
}

// walkTree is the run-length coding shared by scanTree and sendTree. emit
// is called with a code-length symbol and how many times it occurs; with a
// bit writer, repeat counts are written after their symbols.
func (s *trees) walkTree(t *tree, maxCode int, emit func(sym, count int), bw *bitWriter) {
	prevLen := -1
	nextLen := int(t.len[0])
	count := 0
	maxCount, minCount := 7, 4
	if nextLen == 0 {
		maxCount, minCount = 138, 3
	}
	t.len[maxCode+1] = 0xffff // guard: ends every run at maxCode
	for n := 0; n <= maxCode; n++ {
		curLen := nextLen
		nextLen = int(t.len[n+1])
		count++
		if count < maxCount && curLen == nextLen {
			continue
		}
		switch {
		case count < minCount:
			if bw == nil {
				emit(curLen, count)
			} else {
				for ; count > 0; count-- {
					emit(curLen, 1)
				}
			}
		case curLen != 0:
			if curLen != prevLen {
				emit(curLen, 1)
				count--
			}
			emit(rep3To6, 1)
			if bw != nil {
				bw.send(uint16(count-3), 2)
			}
		case count <= 10:
			emit(repz3To10, 1)
			if bw != nil {
				bw.send(uint16(count-3), 3)
			}
		default:
			emit(repz11To138, 1)
			if bw != nil {
				bw.send(uint16(count-11), 7)
			}
		}
		count = 0
		prevLen = curLen
		switch {
		case nextLen == 0:
			maxCount, minCount = 138, 3
		case curLen == nextLen:
			maxCount, minCount = 6, 3
		default:
			maxCount, minCount = 7, 4
		}
	}
}

// buildBLTree builds the code-length tree and returns the index in blOrder
// of the last code length that must be sent.
func (s *trees) buildBLTree() int {
	s.scanTree(&s.ltree, s.ltree.maxCode)
	s.scanTree(&s.dtree, s.dtree.maxCode)
	s.buildTree(&s.bltree)
	maxBLIndex := blCodes - 1
	for ; maxBLIndex >= 3; maxBLIndex-- {
		if s.bltree.len[blOrder[maxBLIndex]] != 0 {
			break
		}
	}
	// The three counts in the block header and 3 bits per code length.
	s.optLen += 3*(maxBLIndex+1) + 5 + 5 + 4
	return maxBLIndex
}

// flushTrees writes one block of the symbols in c.syms, as whichever of
// stored, static or dynamic is shortest (zlib's order breaks ties). buf is
// the block's input, nil when it is no longer in the window.
func (c *compressor) flushTrees(buf []byte, storedLen int, last bool) {
	s := &c.trees
	s.buildTree(&s.ltree)
	s.buildTree(&s.dtree)
	maxBLIndex := s.buildBLTree()

	optLenb := (s.optLen + 3 + 7) >> 3
	staticLenb := (s.staticLen + 3 + 7) >> 3
	if staticLenb <= optLenb {
		optLenb = staticLenb
	}
	lastBit := uint16(0)
	if last {
		lastBit = 1
	}
	bw := &c.bw
	switch {
	case storedLen+4 <= optLenb && buf != nil:
		bw.send(storedBlock<<1|lastBit, 3)
		bw.align()
		bw.out = append(bw.out, byte(storedLen), byte(storedLen>>8), ^byte(storedLen), ^byte(storedLen>>8))
		bw.out = append(bw.out, buf...)
	case staticLenb == optLenb:
		bw.send(staticTrees<<1|lastBit, 3)
		c.compressBlock(staticLCode[:], staticLBits[:], staticDCode[:], staticDBits[:])
	default:
		bw.send(dynTrees<<1|lastBit, 3)
		c.sendAllTrees(s.ltree.maxCode+1, s.dtree.maxCode+1, maxBLIndex+1)
		c.compressBlock(s.ltree.code, s.ltree.len, s.dtree.code, s.dtree.len)
	}
	s.initBlock()
	c.syms = c.syms[:0]
	if last {
		bw.align()
	}
}

func (c *compressor) sendAllTrees(lcodes, dcodes, blcodes int) {
	bw := &c.bw
	bw.send(uint16(lcodes-257), 5)
	bw.send(uint16(dcodes-1), 5)
	bw.send(uint16(blcodes-4), 4)
	for rank := 0; rank < blcodes; rank++ {
		bw.send(c.bltree.len[blOrder[rank]], 3)
	}
	c.sendTree(&c.ltree, lcodes-1, bw)
	c.sendTree(&c.dtree, dcodes-1, bw)
}

// compressBlock sends the block's symbols with the given trees.
func (c *compressor) compressBlock(lcode, llen, dcode, dlen []uint16) {
	bw := &c.bw
	for _, sym := range c.syms {
		dist := int(sym >> 8)
		lc := int(sym & 0xff)
		if dist == 0 {
			bw.send(lcode[lc], llen[lc])
			continue
		}
		code := int(lengthCode[lc])
		bw.send(lcode[code+literals+1], llen[code+literals+1])
		if extra := extraLBits[code]; extra != 0 {
			bw.send(uint16(lc-baseLength[code]), uint16(extra))
		}
		dist--
		code = distCode(dist)
		bw.send(dcode[code], dlen[code])
		if extra := extraDBits[code]; extra != 0 {
			bw.send(uint16(dist-baseDist[code]), uint16(extra))
		}
	}
	bw.send(lcode[endBlock], llen[endBlock])
}

// bitWriter packs bits least significant first, as deflate requires.
type bitWriter struct {
	out   []byte
	bits  uint64
	nbits uint
}

func (w *bitWriter) reset() {
	w.out = w.out[:0]
	w.bits = 0
	w.nbits = 0
}

func (w *bitWriter) send(value, n uint16) {
	w.bits |= uint64(value) << w.nbits
	w.nbits += uint(n)
	if w.nbits >= 48 {
		w.out = append(w.out, byte(w.bits), byte(w.bits>>8), byte(w.bits>>16),
			byte(w.bits>>24), byte(w.bits>>32), byte(w.bits>>40))
		w.bits >>= 48
		w.nbits -= 48
	}
}

// align pads with zero bits to a byte boundary.
func (w *bitWriter) align() {
	for w.nbits > 0 {
		w.out = append(w.out, byte(w.bits))
		w.bits >>= 8
		w.nbits = uint(max(int(w.nbits)-8, 0))
	}
	w.bits = 0
}
