package pickle

import "hash/adler32"

// zlibCheck reads a zlib stream that Go's inflater called corrupt, slowly
// and bit by bit, to find the fault that zlib's inflate (the one in
// Python's zlib.decompress) reports, and returns zlib's text for it
// ("invalid block type", "invalid distance too far back", ...),
// zlibTruncated when the stream ends first, or "" when it finds no fault.
// It runs only on that error path, so it favours plainness over speed.
func zlibCheck(z []byte) string {
	if len(z) < 2 {
		return zlibTruncated
	}
	c := &inflateCheck{in: z, pos: 2}
	msg := c.run()
	if msg != "" {
		return msg
	}
	// The trailer: Adler-32 of the output, big-endian, byte aligned.
	c.bitCount = 0
	if c.pos+4 > len(c.in) {
		return zlibTruncated
	}
	sum := uint32(c.in[c.pos])<<24 | uint32(c.in[c.pos+1])<<16 | uint32(c.in[c.pos+2])<<8 | uint32(c.in[c.pos+3])
	if sum != adler32.Checksum(c.out) {
		return "incorrect data check"
	}
	return ""
}

// zlibTruncated stands for Z_BUF_ERROR: the input ended inside the stream.
const zlibTruncated = "\x00truncated"

// checkFault ends the walk with zlib's message.
type checkFault string

type inflateCheck struct {
	in       []byte
	pos      int
	bitBuf   uint32
	bitCount uint
	out      []byte
}

func (c *inflateCheck) bits(n uint) uint32 {
	for c.bitCount < n {
		if c.pos >= len(c.in) {
			panic(checkFault(zlibTruncated))
		}
		c.bitBuf |= uint32(c.in[c.pos]) << c.bitCount
		c.pos++
		c.bitCount += 8
	}
	v := c.bitBuf & (1<<n - 1)
	c.bitBuf >>= n
	c.bitCount -= n
	return v
}

func (c *inflateCheck) run() (msg string) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(checkFault)
			if !ok {
				panic(r)
			}
			msg = string(f)
		}
	}()
	for {
		last := c.bits(1)
		switch c.bits(2) {
		case 0:
			c.stored()
		case 1:
			c.codes(fixedLit, fixedDist)
		case 2:
			lit, dist := c.dynamic()
			c.codes(lit, dist)
		default:
			panic(checkFault("invalid block type"))
		}
		if last == 1 {
			return ""
		}
	}
}

func (c *inflateCheck) stored() {
	c.bitBuf, c.bitCount = 0, 0 // to a byte boundary
	if c.pos+4 > len(c.in) {
		panic(checkFault(zlibTruncated))
	}
	n := int(c.in[c.pos]) | int(c.in[c.pos+1])<<8
	nc := int(c.in[c.pos+2]) | int(c.in[c.pos+3])<<8
	c.pos += 4
	if n != nc^0xFFFF {
		panic(checkFault("invalid stored block lengths"))
	}
	if c.pos+n > len(c.in) {
		panic(checkFault(zlibTruncated))
	}
	c.out = append(c.out, c.in[c.pos:c.pos+n]...)
	c.pos += n
}

// huffman is a canonical code: count[l] codes of length l, symbols in
// code order. empty marks a code with no symbols at all, which zlib reads
// as one-bit codes that are all invalid (or, for the code length code,
// all zero).
type huffman struct {
	count  [16]int
	symbol []int
	empty  bool
}

// build makes the code for lengths; ok is false where zlib's
// inflate_table refuses it: over-subscribed, or incomplete unless it is a
// literal or distance code of a single one-bit code.
func build(lengths []int, codeLengths bool) (h *huffman, ok bool) {
	h = &huffman{}
	for _, l := range lengths {
		h.count[l]++
	}
	max := 0
	for l := 15; l >= 1; l-- {
		if h.count[l] != 0 {
			max = l
			break
		}
	}
	if max == 0 {
		h.empty = true
		return h, true
	}
	left := 1
	for l := 1; l <= 15; l++ {
		left <<= 1
		left -= h.count[l]
		if left < 0 {
			return nil, false
		}
	}
	if left > 0 && (codeLengths || max != 1) {
		return nil, false
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	h.symbol = make([]int, len(lengths))
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = s
			offs[l]++
		}
	}
	return h, true
}

// decode reads one symbol; -1 is a code the table does not hold.
func (c *inflateCheck) decode(h *huffman) int {
	if h.empty {
		c.bits(1)
		return -1
	}
	code, first, index := 0, 0, 0
	for l := 1; l <= 15; l++ {
		code |= int(c.bits(1))
		n := h.count[l]
		if code-n < first {
			return h.symbol[index+code-first]
		}
		index += n
		first = (first + n) << 1
		code <<= 1
	}
	return -1
}

var (
	lenBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	dstBase  = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	dstExtra = [30]uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

var fixedLit, fixedDist = func() (*huffman, *huffman) {
	l := make([]int, 288)
	for s := range l {
		switch {
		case s < 144:
			l[s] = 8
		case s < 256:
			l[s] = 9
		case s < 280:
			l[s] = 7
		default:
			l[s] = 8
		}
	}
	d := make([]int, 32)
	for s := range d {
		d[s] = 5
	}
	lit, _ := build(l, false)
	dist, _ := build(d, false)
	return lit, dist
}()

func (c *inflateCheck) codes(lit, dist *huffman) {
	for {
		sym := c.decode(lit)
		switch {
		case sym < 0 || sym > 285:
			panic(checkFault("invalid literal/length code"))
		case sym < 256:
			c.out = append(c.out, byte(sym))
			continue
		case sym == 256:
			return
		}
		sym -= 257
		n := lenBase[sym] + int(c.bits(lenExtra[sym]))
		d := c.decode(dist)
		if d < 0 || d > 29 {
			panic(checkFault("invalid distance code"))
		}
		back := dstBase[d] + int(c.bits(dstExtra[d]))
		if back > len(c.out) {
			panic(checkFault("invalid distance too far back"))
		}
		for i := 0; i < n; i++ {
			c.out = append(c.out, c.out[len(c.out)-back])
		}
	}
}

var codeLengthOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (c *inflateCheck) dynamic() (lit, dist *huffman) {
	nlen := int(c.bits(5)) + 257
	ndist := int(c.bits(5)) + 1
	ncode := int(c.bits(4)) + 4
	if nlen > 286 || ndist > 30 {
		panic(checkFault("too many length or distance symbols"))
	}
	var cl [19]int
	for i := 0; i < ncode; i++ {
		cl[codeLengthOrder[i]] = int(c.bits(3))
	}
	lencode, ok := build(cl[:], true)
	if !ok {
		panic(checkFault("invalid code lengths set"))
	}
	lengths := make([]int, 0, nlen+ndist)
	for len(lengths) < nlen+ndist {
		sym := c.decode(lencode)
		if sym < 0 {
			sym = 0 // zlib reads an empty code length code as zeros
		}
		if sym < 16 {
			lengths = append(lengths, sym)
			continue
		}
		var l, rep int
		switch sym {
		case 16:
			rep = 3 + int(c.bits(2))
			if len(lengths) == 0 {
				panic(checkFault("invalid bit length repeat"))
			}
			l = lengths[len(lengths)-1]
		case 17:
			rep = 3 + int(c.bits(3))
		default:
			rep = 11 + int(c.bits(7))
		}
		if len(lengths)+rep > nlen+ndist {
			panic(checkFault("invalid bit length repeat"))
		}
		for ; rep > 0; rep-- {
			lengths = append(lengths, l)
		}
	}
	if lengths[256] == 0 {
		panic(checkFault("invalid code -- missing end-of-block"))
	}
	if lit, ok = build(lengths[:nlen], false); !ok {
		panic(checkFault("invalid literal/lengths set"))
	}
	if dist, ok = build(lengths[nlen:], false); !ok {
		panic(checkFault("invalid distances set"))
	}
	return lit, dist
}
