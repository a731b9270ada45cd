package zlibpy

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// fuzzSeeds are FuzzCompress's seed corpus: small cases of each kind the
// encoder distinguishes. With python3 they are also checked byte for byte.
func fuzzSeeds() [][]byte {
	r := rand.New(rand.NewPCG(5, 5))
	return [][]byte{
		nil,
		[]byte("15.0"),
		[]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
		[]byte("abcabcabcabdabcabcabcabd"),
		[]byte("\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02K\x03K\x04K\x05t\x94."),
		randomBytes(r, 1000),
		prose(r, 5000),
		smallAlphabet(r, 3000, "ab"),
		xmlish(r, 20000),
		mixed(r, 70000),
		make([]byte, 300),
	}
}

// FuzzCompress checks that every output decodes to its input and, when
// python3 with zlib is at hand (also while fuzzing), equals CPython's.
func FuzzCompress(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	p, _ := tryPythonZlib()
	f.Fuzz(func(t *testing.T, data []byte) {
		got := Compress(data)
		checkRoundTrip(t, got, data)
		if p == nil {
			return
		}
		want, err := p.compress(data)
		if err != nil {
			t.Fatalf("python zlib: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d input bytes: output differs from python zlib %s: %s",
				len(data), p.version, describeMismatch(got, want))
		}
	})
}

// TestFuzzSeedsMatchPython runs the seed corpus against CPython, failing
// (in CI) rather than silently degrading to round trips.
func TestFuzzSeedsMatchPython(t *testing.T) {
	p := pythonZlib(t)
	for _, seed := range fuzzSeeds() {
		checkAgainstPython(t, p, seed)
	}
}
