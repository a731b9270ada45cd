package pickle

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand"
	"os/exec"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/zlibpy"
)

// TestEnvelopeMessages: the stored inputs of the fidelity issue fail with
// exactly the words Python's zlib.decompress(base64.b64decode(text))
// raises (measured with CPython 3.11), or decode as Python decodes them.
func TestEnvelopeMessages(t *testing.T) {
	good := EncodeRaw([]byte("\x80\x02K\x05."))
	z := zlibpy.Compress([]byte("\x80\x02K\x05."))
	cases := []struct {
		name, text string
		layer      error // nil: decodes
		msg        string
	}{
		{"data after the padding", good + "QUJDRA==", nil, ""},
		{"data after padding, odd", good + "Zm9vYg=Zg", nil, ""},
		{"bad base64", "this is not base64!", ErrBase64, "Incorrect padding"},
		{"one character too many", "QUJDR", ErrBase64, "Invalid base64-encoded string: number of data characters (5) cannot be 1 more than a multiple of 4"},
		{"not ASCII", "QUJD\u00e9", ErrBase64, "string argument should contain only ASCII characters"},
		{"not zlib", base64.StdEncoding.EncodeToString([]byte("plain text, not zlib")), ErrZlib, "Error -3 while decompressing data: incorrect header check"},
		{"truncated zlib", base64.StdEncoding.EncodeToString(z[:len(z)-3]), ErrZlib, "Error -5 while decompressing data: incomplete or truncated stream"},
		{"empty", "", ErrZlib, "Error -5 while decompressing data: incomplete or truncated stream"},
		{"only spaces", "  \n", ErrZlib, "Error -5 while decompressing data: incomplete or truncated stream"},
		{"bad checksum", base64.StdEncoding.EncodeToString(append(bytes.Clone(z[:len(z)-1]), z[len(z)-1]^1)), ErrZlib, "Error -3 while decompressing data: incorrect data check"},
		{"preset dictionary", base64.StdEncoding.EncodeToString(append([]byte{0x78, 0xbb, 0, 0, 0, 1}, z[2:]...)), ErrZlib, "Error 2 while decompressing data"},
		{"block type 3", base64.StdEncoding.EncodeToString([]byte{0x78, 0x9c, 0x07, 0, 0, 0}), ErrZlib, "Error -3 while decompressing data: invalid block type"},
		{"stored lengths", base64.StdEncoding.EncodeToString([]byte{0x78, 0x9c, 0x01, 5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'}), ErrZlib, "Error -3 while decompressing data: invalid stored block lengths"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Unwrap(c.text)
			if cerr := CheckEnvelope(c.text, 0); (cerr == nil) != (err == nil) || (cerr != nil && cerr.Error() != err.Error()) {
				t.Errorf("CheckEnvelope %v, Unwrap %v: the check must fail exactly as decoding does", cerr, err)
			}
			if c.layer == nil {
				if err != nil {
					t.Fatalf("Unwrap: %v, want the pickle", err)
				}
				if v, err := Decode(c.text); err != nil || v != int64(5) {
					t.Fatalf("Decode = %v, %v; want 5", v, err)
				}
				return
			}
			if !errors.Is(err, c.layer) || err.Error() != c.msg {
				t.Fatalf("Unwrap error %q (%v), want %q (%v)", err, err, c.msg, c.layer)
			}
			var env *EnvelopeError
			if !errors.As(err, &env) {
				t.Fatalf("error %T is not an *EnvelopeError", err)
			}
		})
	}
}

// TestEnvelopeLikePython: random damage to stored inputs (bytes flipped,
// cut, appended, base64 characters dropped or added, raw deflate bits
// flipped) decodes to the same bytes as CPython's
// zlib.decompress(base64.b64decode(text)), or fails with the same message.
func TestEnvelopeLikePython(t *testing.T) {
	py := pythonPath(t)
	rng := rand.New(rand.NewSource(20261204))
	payloads := [][]byte{
		[]byte("\x80\x02K\x05."),
		[]byte(strings.Repeat("hello world, ", 200)),
		[]byte("(lp0\nI1\naI2\na."),
	}
	random := make([]byte, 3000)
	rng.Read(random)
	payloads = append(payloads, random)
	var texts []string
	for _, p := range payloads {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.HuffmanOnly} {
			var buf bytes.Buffer
			buf.Write([]byte{0x78, 0x9c})
			w, _ := flate.NewWriter(&buf, level)
			w.Write(p)
			w.Close()
			sum := adler(p)
			buf.Write([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
			z := buf.Bytes()
			text := base64.StdEncoding.EncodeToString(z)
			texts = append(texts, text, text+"QUJD", text+"=QQ==", text[:len(text)-1], text[:len(text)-2])
			for i := 0; i < 60; i++ {
				d := bytes.Clone(z)
				switch rng.Intn(4) {
				case 0:
					d[2+rng.Intn(len(d)-2)] ^= byte(1 << rng.Intn(8))
				case 1:
					d = d[:rng.Intn(len(d))]
				case 2:
					j := 2 + rng.Intn(min(len(d)-2, 16))
					d[j] = byte(rng.Intn(256))
				case 3:
					d[rng.Intn(len(d))] ^= 0xFF
				}
				texts = append(texts, base64.StdEncoding.EncodeToString(d))
			}
			for i := 0; i < 10; i++ {
				b := []byte(text)
				j := rng.Intn(len(b))
				if rng.Intn(2) == 0 {
					b = append(b[:j], b[j+1:]...)
				} else {
					b = append(b[:j], append([]byte{"A=/+ \n!"[rng.Intn(7)]}, b[j:]...)...)
				}
				texts = append(texts, string(b))
			}
		}
	}
	in, _ := json.Marshal(texts)
	cmd := exec.Command(py, "-c", `
import base64, json, sys, zlib
out = []
for t in json.load(sys.stdin):
    try:
        out.append({"ok": base64.b64encode(zlib.decompress(base64.b64decode(t))).decode()})
    except Exception as e:
        out.append({"err": str(e)})
json.dump(out, sys.stdout)
`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var want []struct {
		OK  *string `json:"ok"`
		Err *string `json:"err"`
	}
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for i, text := range texts {
		got, err := Unwrap(text)
		w := want[i]
		if cerr := CheckEnvelope(text, 0); (cerr == nil) != (err == nil) || (cerr != nil && cerr.Error() != err.Error()) {
			t.Errorf("case %d %q: CheckEnvelope %v, Unwrap %v", i, text, cerr, err)
		}
		switch {
		case w.OK != nil && err != nil:
			t.Errorf("case %d %q: Go fails %q, Python decodes", i, text, err)
		case w.OK != nil && base64.StdEncoding.EncodeToString(got) != *w.OK:
			t.Errorf("case %d %q: Go and Python decode differently", i, text)
		case w.Err != nil && (err == nil || err.Error() != *w.Err):
			t.Errorf("case %d %q: Go %v, Python %q", i, text, err, *w.Err)
		default:
			continue
		}
		if failed++; failed > 20 {
			t.Fatal("too many differences")
		}
	}
	seen := map[string]int{}
	for _, w := range want {
		if w.Err != nil {
			seen[*w.Err]++
		}
	}
	t.Logf("%d inputs compared; Python messages: %v", len(texts), seen)
}

func adler(p []byte) uint32 {
	a, b := uint32(1), uint32(0)
	for _, c := range p {
		a = (a + uint32(c)) % 65521
		b = (b + a) % 65521
	}
	return b<<16 | a
}

// FuzzZlibCheck: the slow zlib walk never panics, and it finds a fault
// exactly where Go's inflater does, so that every stream Go refuses gets
// zlib's own words.
func FuzzZlibCheck(f *testing.F) {
	for _, p := range [][]byte{[]byte("\x80\x02K\x05."), []byte(strings.Repeat("hello world, ", 50)), {}} {
		f.Add(zlibpy.Compress(p))
	}
	f.Add([]byte{0x78, 0x9c, 0x07, 0, 0, 0})
	f.Add([]byte{0x78, 0x9c, 0x01, 5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'})
	f.Fuzz(func(t *testing.T, z []byte) {
		if len(z) < 2 || pyZlibHeader(z) != nil {
			return
		}
		msg := zlibCheck(z)
		_, err := DecodeOptions{MaxSize: 1 << 20}.inflate(z)
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if (msg == "") != (err == nil) {
			t.Fatalf("zlibCheck %q, Go's inflater %v", msg, err)
		}
	})
}
