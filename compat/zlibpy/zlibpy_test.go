package zlibpy

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"io"
	"slices"
	"sync"
	"testing"
)

// checkAgainstPython compresses data with both encoders and fails on any
// byte of difference, and if the stream does not decode back to data.
func checkAgainstPython(t *testing.T, p *pyZlib, data []byte) {
	t.Helper()
	want, err := p.compress(data)
	if err != nil {
		t.Fatalf("python zlib: %v", err)
	}
	got := Compress(data)
	if !bytes.Equal(got, want) {
		t.Errorf("%d input bytes: output differs from python zlib %s: %s",
			len(data), p.version, describeMismatch(got, want))
	}
	checkRoundTrip(t, got, data)
}

func checkRoundTrip(t testing.TB, z, data []byte) {
	t.Helper()
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("compress/zlib rejects the header: %v", err)
	}
	back, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("compress/zlib cannot decode the stream: %v", err)
	}
	if !bytes.Equal(back, data) {
		t.Fatalf("decoded %d bytes, want the %d input bytes: %s", len(back), len(data), describeMismatch(back, data))
	}
}

func TestMatchesPython(t *testing.T) {
	p := pythonZlib(t)
	t.Logf("python zlib %s", p.version)
	for _, in := range fixedInputs() {
		t.Run(in.name, func(t *testing.T) {
			checkAgainstPython(t, p, in.data)
		})
	}
}

func TestMatchesPythonRandomInputs(t *testing.T) {
	p := pythonZlib(t)
	n := 120
	if testing.Short() {
		n = 20
	}
	for _, in := range randomInputs(42, n) {
		t.Run(in.name, func(t *testing.T) {
			checkAgainstPython(t, p, in.data)
		})
	}
}

// deepTree's frequencies make the optimal literal code deeper than 15 bits;
// the test first proves that the case is reached, then that the repaired
// code is complete and, with python3, that it is zlib's. The level-6
// matcher turns such inputs into matches, so the stream compared is
// huffmanOnly's: the same tree builder fed the literals directly.
func TestLengthLimitRepair(t *testing.T) {
	for _, symbols := range []int{16, 17, 18} {
		t.Run(fmt.Sprint(symbols, " symbols"), func(t *testing.T) {
			data := deepTree(randFor(t, uint64(symbols)), symbols)
			c := newCompressor()
			c.reset(data)
			for _, b := range data {
				c.tallyLit(b)
			}
			if d := unlimitedDepth(c.ltree.freq[:lCodes]); d <= maxBits {
				t.Fatalf("an unlimited Huffman code would be %d bits deep: the repair is not reached", d)
			}
			c.buildTree(&c.ltree)
			deepest := 0
			for n := 0; n <= c.ltree.maxCode; n++ {
				deepest = max(deepest, int(c.ltree.len[n]))
			}
			if deepest != maxBits {
				t.Fatalf("longest code is %d bits, want the limit %d", deepest, maxBits)
			}
			// Kraft's equality: a complete prefix code after the repair.
			sum := 0
			for n := 0; n <= c.ltree.maxCode; n++ {
				if l := c.ltree.len[n]; l != 0 {
					sum += 1 << (maxBits - l)
				}
			}
			if sum != 1<<maxBits {
				t.Fatalf("code lengths sum to %d/2^15 in Kraft's inequality, want exactly 1", sum)
			}
			if p, err := tryPythonZlib(); err == nil {
				want, err := p.request(zHuffmanOnly, data)
				if err != nil {
					t.Fatalf("python zlib: %v", err)
				}
				got := huffmanOnly(data)
				if !bytes.Equal(got, want) {
					t.Errorf("Z_HUFFMAN_ONLY output differs from python zlib %s: %s", p.version, describeMismatch(got, want))
				}
				checkRoundTrip(t, got, data)
			}
		})
	}
}

// A pooled compressor must not carry anything into the next stream: the
// same input compresses identically after a large, different one.
func TestPoolReuseIsClean(t *testing.T) {
	r := randFor(t, 9)
	small := prose(r, 3000)
	first := Compress(small)
	for _, big := range [][]byte{randomBytes(r, 200000), mixed(r, 150000), make([]byte, 70000)} {
		Compress(big)
		if again := Compress(small); !bytes.Equal(again, first) {
			t.Fatalf("after a %d-byte input, the same 3000 bytes compress differently: %s", len(big), describeMismatch(again, first))
		}
	}
	checkRoundTrip(t, first, small)
}

// zlib.compress's default is level 6, whose zlib header is 78 9c.
func TestHeaderIsDefaultLevel(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("15.0"), prose(randFor(t, 3), 50000)} {
		if z := Compress(data); z[0] != 0x78 || z[1] != 0x9c {
			t.Fatalf("header of %d bytes is %x, want 789c", len(data), z[:2])
		}
	}
}

// huffmanOnly is zlib's deflate_huff (Z_HUFFMAN_ONLY) built from the
// package's parts: every byte a literal, blocks cut and coded as Compress
// cuts and codes them, header with FLEVEL 0 as zlib writes it for that
// strategy. Production never compresses this way; it lets
// TestLengthLimitRepair choose the literal frequencies.
func huffmanOnly(data []byte) []byte {
	c := newCompressor()
	c.reset(data)
	c.bw.out = append(c.bw.out, 0x78, 0x01)
	for {
		if c.lookahead == 0 {
			c.fillWindow()
			if c.lookahead == 0 {
				break
			}
		}
		flush := c.tallyLit(c.window[c.strstart])
		c.lookahead--
		c.strstart++
		if flush {
			c.flushBlock(false)
		}
	}
	c.flushBlock(true)
	return binary.BigEndian.AppendUint32(c.bw.out, adler32.Checksum(data))
}

// unlimitedDepth is the depth of an optimal prefix code for the non-zero
// frequencies, by the textbook construction and without a length limit.
func unlimitedDepth(freqs []int) int {
	type node struct{ freq, depth int }
	var nodes []node
	for _, f := range freqs {
		if f != 0 {
			nodes = append(nodes, node{f, 0})
		}
	}
	for len(nodes) > 1 {
		slices.SortFunc(nodes, func(a, b node) int { return cmp.Or(a.freq-b.freq, a.depth-b.depth) })
		merged := node{nodes[0].freq + nodes[1].freq, max(nodes[0].depth, nodes[1].depth) + 1}
		nodes = append(nodes[2:], merged)
	}
	return nodes[0].depth
}

// Compressors come from a pool; concurrent calls must not share state.
func TestConcurrentCompress(t *testing.T) {
	r := randFor(t, 21)
	inputs := [][]byte{prose(r, 40000), randomBytes(r, 20000), mixed(r, 90000), []byte("15.0")}
	want := make([][]byte, len(inputs))
	for i, in := range inputs {
		want[i] = Compress(in)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(inputs))
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for k := range inputs {
				i := (g + k) % len(inputs)
				if got := Compress(inputs[i]); !bytes.Equal(got, want[i]) {
					errs <- fmt.Sprintf("input %d in goroutine %d: %s", i, g, describeMismatch(got, want[i]))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
