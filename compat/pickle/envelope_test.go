package pickle

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

func zlibOf(t testing.TB, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDecodeErrors: each layer of the stored form fails with its sentinel.
func TestDecodeErrors(t *testing.T) {
	good := zlibOf(t, []byte("K\x01."))
	truncated := good[:len(good)-3]
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 0xFF
	cases := []struct {
		name string
		text string
		want error
		msg  string
	}{
		// Python's words (binascii.Error, zlib.error str()).
		{"not base64", "eJ*xyz", ErrBase64, "Invalid base64-encoded string: number of data characters (5) cannot be 1 more than a multiple of 4"},
		{"bad padding", "eJw", ErrBase64, "Incorrect padding"},
		{"empty", "", ErrZlib, "Error -5 while decompressing data: incomplete or truncated stream"},
		{"not zlib", base64.StdEncoding.EncodeToString([]byte("K\x01.")), ErrZlib, "Error -3 while decompressing data: incorrect header check"},
		{"truncated zlib", base64.StdEncoding.EncodeToString(truncated), ErrZlib, "Error -5 while decompressing data: incomplete or truncated stream"},
		{"zlib checksum", base64.StdEncoding.EncodeToString(badSum), ErrZlib, "Error -3 while decompressing data: incorrect data check"},
		{"bad pickle inside", base64.StdEncoding.EncodeToString(zlibOf(t, []byte("\xff"))), ErrPickle, "unknown opcode 0xff at offset 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := Decode(c.text)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v (value %v), want %v", err, v, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not mention %q", err, c.msg)
			}
		})
	}
}

// TestDecodeForms: the stored text as Python 2 and 3 producers leave it.
func TestDecodeForms(t *testing.T) {
	z := zlibOf(t, []byte("\x80\x02X\x02\x00\x00\x00ok."))
	text := base64.StdEncoding.EncodeToString(z)
	var wrapped strings.Builder // base64.encodestring: 76-column lines
	for i := 0; i < len(text); i += 8 {
		wrapped.WriteString(text[i:min(i+8, len(text))] + "\n")
	}
	for name, in := range map[string]string{
		"plain":                 text,
		"surrounding space":     "  " + text + "\n",
		"wrapped lines":         wrapped.String(),
		"python 3 bytes repr":   "b'" + text + "'",
		"python 3 bytes repr 2": `b"` + text + `"`,
	} {
		t.Run(name, func(t *testing.T) {
			v, err := Decode(in)
			if err != nil {
				t.Fatal(err)
			}
			if v != "ok" {
				t.Fatalf("got %v", v)
			}
		})
	}
}

// TestDecodeAuto: the command-line decoder tells the forms apart.
func TestDecodeAuto(t *testing.T) {
	p0 := []byte("(S'a'\np0\nI1\nt.") // starts "(S", which a lax zlib check would take for zlib
	p2 := []byte("\x80\x02U\x01aK\x01\x86.")
	z := zlibOf(t, p0)
	text := base64.StdEncoding.EncodeToString(z)
	cases := map[string][]byte{
		"protocol 0 raw":       p0,
		"protocol 2 raw":       p2,
		"zlib raw":             z,
		"stored text":          []byte(text),
		"stored text, newline": []byte(text + "\n"),
		"bytes repr":           []byte("b'" + text + "'\n"),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			v, err := DecodeAuto(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(t, v); got != `["a",1]` {
				t.Fatalf("got %s", got)
			}
		})
	}
	if _, err := DecodeAuto(nil); !errors.Is(err, ErrPickle) {
		t.Fatalf("empty input: %v", err)
	}
	if _, err := DecodeAuto([]byte("hello world")); !errors.Is(err, ErrBase64) {
		t.Fatalf("plain words: %v", err)
	}
}

// TestZlibBomb: a stream inflating far beyond MaxSize fails with
// ErrTooLarge after reading little more than MaxSize.
func TestZlibBomb(t *testing.T) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	zeros := make([]byte, 1<<20)
	for range DefaultMaxSize>>20 + 16 { // 80 MiB of zeros, about 80 KiB compressed
		w.Write(zeros)
	}
	w.Close()
	text := base64.StdEncoding.EncodeToString(buf.Bytes())
	cases := []struct {
		name string
		opts DecodeOptions
	}{
		{"default limit", DecodeOptions{}},
		{"small limit", DecodeOptions{MaxSize: 1 << 20}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := c.opts.Decode(text)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			limit := c.opts.maxSize()
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(3*limit)+4<<20 {
				t.Errorf("allocated %d bytes for a limit of %d", alloc, limit)
			}
			t.Logf("failed after %v: %v", took, err)
			// The claim's check passes a bomb on to the size limit, and
			// allocates nothing of its size.
			runtime.ReadMemStats(&before)
			if err := CheckEnvelope(text, c.opts.MaxSize); err != nil {
				t.Errorf("CheckEnvelope: %v, want nil (too large is not a broken envelope)", err)
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("CheckEnvelope allocated %d bytes", alloc)
			}
		})
	}
	// The limit applies to raw pickles too.
	if _, err := (DecodeOptions{MaxSize: 10}).Unpickle(make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("raw pickle over the limit: %v", err)
	}
}

// TestDecodeDoesNotAliasInput: Unpickle's result survives the caller
// reusing its buffer.
func TestDecodeDoesNotAliasInput(t *testing.T) {
	data := []byte("\x80\x03X\x03\x00\x00\x00abcC\x02xy\x86.")
	v, err := Unpickle(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 0
	}
	if got := mustJSON(t, v); got != `["abc",{"__bytes__":"eHk="}]` {
		t.Fatalf("value changed with the input buffer: %s", got)
	}
}

// TestInflatesPast: only a text that opens and inflates past the limit is
// too large; one that does not open is left to the decoder.
func TestInflatesPast(t *testing.T) {
	b64 := func(z []byte) string { return base64.StdEncoding.EncodeToString(z) }
	bomb := b64(zlibOf(t, make([]byte, 1<<20)))
	cases := []struct {
		name  string
		text  string
		limit int64
		want  bool
	}{
		{"small", b64(zlibOf(t, []byte("K\x01."))), 1024, false},
		{"bomb", bomb, 1024, true},
		{"bomb at its size", bomb, 1 << 20, false},
		{"bomb one byte past", bomb, 1<<20 - 1, true},
		{"bomb in Python 3 bytes repr", "b'" + bomb + "'", 1024, true},
		{"not base64", "%%%" + strings.Repeat("!", 4096), 1024, false},
		{"not zlib", b64(bytes.Repeat([]byte("x"), 4096)), 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := InflatesPast(c.text, c.limit); got != c.want {
				t.Errorf("InflatesPast(limit %d) = %t, want %t", c.limit, got, c.want)
			}
		})
	}
}
