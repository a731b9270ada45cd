package zlibpy

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Inputs for the differential tests. Each kind aims at a different part of
// the encoder; all are generated from fixed seeds so failures reproduce.

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// smallAlphabet gives many short matches at all distances, which exercises
// the lazy rules and the TOO_FAR cut for length-3 matches.
func smallAlphabet(r *rand.Rand, n int, alphabet string) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

var words = strings.Fields(`the of and to in is was for on that with as by at from
	coverage grid envelope lower upper corner srsName crs axis label band
	process status accepted running finished failed response identifier
	EOxServer WCS WMS GetCoverage DescribeCoverage 4326 3857 float32 uint16`)

// prose is word-like text: matches of varied lengths and distances.
func prose(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// xmlish looks like the GML/XML responses WCS processes store.
func xmlish(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<wcs:Coverages xmlns:wcs=\"http://www.opengis.net/wcs/2.0\" xmlns:gml=\"http://www.opengis.net/gml/3.2\">\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "  <wcs:CoverageDescription gml:id=\"cov_%d\">\n", i)
		fmt.Fprintf(&b, "    <gml:boundedBy><gml:Envelope srsName=\"http://www.opengis.net/def/crs/EPSG/0/4326\" axisLabels=\"lat long\">\n")
		fmt.Fprintf(&b, "      <gml:lowerCorner>%.6f %.6f</gml:lowerCorner>\n", r.Float64()*180-90, r.Float64()*360-180)
		fmt.Fprintf(&b, "      <gml:upperCorner>%.6f %.6f</gml:upperCorner>\n", r.Float64()*180-90, r.Float64()*360-180)
		fmt.Fprintf(&b, "    </gml:Envelope></gml:boundedBy>\n    <wcs:CoverageId>%s_%08x</wcs:CoverageId>\n", words[r.IntN(len(words))], r.Uint32())
		b.WriteString("  </wcs:CoverageDescription>\n")
	}
	return b.Bytes()[:n]
}

// skewed draws bytes with geometrically falling probabilities, giving long
// Huffman codes.
func skewed(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		k := 0
		for k < 255 && r.IntN(3) != 0 {
			k++
		}
		b[i] = byte(k)
	}
	return b
}

// deepTree holds bytes with frequencies that force zlib's Huffman builder
// into a caterpillar, one level per symbol: each frequency exceeds the sum
// of all but the one before it, so depth ties never rebalance the tree.
// END_BLOCK's frequency of 1 is the first leaf. Coded as literals only
// (huffmanOnly), with 16 or more symbols the optimal code is longer than
// 15 bits, so zlib's length repair runs.
func deepTree(r *rand.Rand, symbols int) []byte {
	freqs, sums := []int{1, 1, 2}, []int{1, 2, 4}
	for len(freqs) <= symbols {
		k := len(freqs)
		f := sums[k-2] + 1
		freqs = append(freqs, f)
		sums = append(sums, sums[k-1]+f)
	}
	var b []byte
	for k, f := range freqs[1 : symbols+1] {
		b = append(b, bytes.Repeat([]byte{byte('A' + k)}, f)...)
	}
	r.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	return b
}

// plantRepeats places pairs of equal n-byte strings the given distances
// apart. The strings use bytes >= 0x80 and the text around them 64 other
// values, so each pair matches only itself and exactly n bytes long, while
// the text stays compressible enough that the choice shows in the output.
func plantRepeats(r *rand.Rand, n int, dists []int) []byte {
	maxd := slices.Max(dists)
	b := smallAlphabet(r, maxd+len(dists)*(maxd/4+2*n)+1000, alphabet64)
	at := maxd + 100
	for _, dist := range dists {
		for i := 0; i < n; i++ {
			b[at+i] = 0x80 | byte(r.Uint32())
		}
		copy(b[at-dist:at-dist+n], b[at:at+n])
		at += maxd/4 + 2*n
	}
	return b
}

const alphabet64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// mixed alternates random runs, copies of earlier data at random distances
// (some beyond the 32K window) and runs of one byte.
func mixed(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		switch k := r.IntN(4); {
		case k == 0 || len(b) < 10:
			b = append(b, randomBytes(r, 1+r.IntN(300))...)
		case k == 1:
			dist := 1 + r.IntN(min(len(b), 40000))
			l := 3 + r.IntN(400)
			for i := 0; i < l; i++ {
				b = append(b, b[len(b)-dist])
			}
		case k == 2:
			b = append(b, bytes.Repeat([]byte{byte(r.Uint32())}, 1+r.IntN(600))...)
		default:
			b = append(b, prose(r, 1+r.IntN(2000))...)
		}
	}
	return b[:n]
}

type input struct {
	name string
	data []byte
}

// fixedInputs are the named cases, from degenerate to several blocks.
func fixedInputs() []input {
	r := rand.New(rand.NewPCG(1, 2))
	ins := []input{
		{"empty", nil},
		{"one byte", []byte("x")},
		{"two bytes", []byte("ab")},
		{"demo sum", []byte("15.0")},
		{"run of four", []byte("aaaa")},
		{"short text", []byte("Hello, Hello, Hello world")},
		{"pickle protocol 2", []byte("\x80\x02(K\x01K\x02K\x03K\x04K\x05tq\x00.")},
		{"repetitive text", bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. "), 2000)},
		{"zeros 64K", make([]byte, 65536)},
		{"zeros 1M", make([]byte, 1<<20)},
		{"random 100", randomBytes(r, 100)},
		{"random 16383", randomBytes(r, 16383)},
		{"random 16384", randomBytes(r, 16384)},
		{"random 70000", randomBytes(r, 70000)},
		{"random 300000", randomBytes(r, 300000)},
		{"xml 150K", xmlish(r, 150000)},
		{"prose 200K", prose(r, 200000)},
		{"dna 200K", smallAlphabet(r, 200000, "ACGT")},
		{"binary alphabet 100K", smallAlphabet(r, 100000, "01")},
		{"skewed 100K", skewed(r, 100000)},
		{"deep tree 18", deepTree(r, 18)},
		{"mixed 400K", mixed(r, 400000)},
		// Where the lazy matcher drops length-3 matches as too far.
		{"length-3 repeats around TOO_FAR", plantRepeats(r, 3, []int{4094, 4095, 4096, 4097, 4098, 4096})},
		// Where the matcher stops looking back (wSize - minLookahead).
		{"repeats around MAX_DIST", plantRepeats(r, 12, []int{32504, 32505, 32506, 32507, 32508, 32506})},
	}
	// Sizes around the window, the sliding point and the block limit.
	for _, n := range []int{258, 259, 261, 262, 263, 32506, 32768, 32769, 65273, 65274, 65275, 65535, 65536, 65537, 65536 + 262, 98303, 98304} {
		ins = append(ins, input{fmt.Sprintf("prose %d", n), prose(r, n)})
		ins = append(ins, input{fmt.Sprintf("mixed %d", n), mixed(r, n)})
	}
	return ins
}

// randomInputs are n inputs of random kind and log-uniform size up to
// about 256K.
func randomInputs(seed uint64, n int) []input {
	r := rand.New(rand.NewPCG(seed, 7))
	kinds := []struct {
		name string
		gen  func(*rand.Rand, int) []byte
	}{
		{"random", randomBytes},
		{"prose", prose},
		{"xml", xmlish},
		{"dna", func(r *rand.Rand, n int) []byte { return smallAlphabet(r, n, "ACGT") }},
		{"skewed", skewed},
		{"mixed", mixed},
	}
	ins := make([]input, n)
	for i := range ins {
		k := kinds[r.IntN(len(kinds))]
		size := int(math.Exp2(r.Float64() * 18))
		ins[i] = input{fmt.Sprintf("%s %d #%d", k.name, size, i), k.gen(r, size)}
	}
	return ins
}

// randFor returns a generator with a fixed seed, so that a failing test
// fails the same way on every run.
func randFor(t testing.TB, seed uint64) *rand.Rand {
	t.Helper()
	return rand.New(rand.NewPCG(seed, 0x5eed))
}
