package pyhandlers

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadFrame(t *testing.T) {
	good := encodeFrame(kindCall, []byte("setSuccess"), []byte("done"))
	cases := []struct {
		name   string
		in     []byte
		max    int
		kind   byte
		fields []string
		err    error  // errors.Is target, or nil
		errMsg string // substring, when err is nil and a failure is expected
	}{
		{"call", good, 1024, kindCall, []string{"setSuccess", "done"}, nil, ""},
		{"no fields", encodeFrame(kindDone), 1024, kindDone, nil, nil, ""},
		{"empty field", encodeFrame(kindReplyOK, nil, []byte("x")), 1024, kindReplyOK, []string{"", "x"}, nil, ""},
		{"closed between frames", nil, 1024, 0, nil, io.EOF, ""},
		{"closed inside the header", good[:2], 1024, 0, nil, io.ErrUnexpectedEOF, ""},
		{"closed inside the payload", good[:len(good)-1], 1024, 0, nil, io.ErrUnexpectedEOF, ""},
		{"above the limit", good, len(good) - 5, 0, nil, errFrameTooLarge, ""},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 'C'}, 1 << 20, 0, nil, errFrameTooLarge, ""},
		{"empty frame", []byte{0, 0, 0, 0}, 1024, 0, nil, nil, "empty frame"},
		{"field longer than payload", []byte{0, 0, 0, 6, 'C', 0, 0, 0, 9, 'x'}, 1024, 0, nil, nil, "field of 9 bytes"},
		{"truncated field header", []byte{0, 0, 0, 3, 'C', 0, 0}, 1024, 0, nil, nil, "truncated field header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			payload, err := readFrame(bytes.NewReader(c.in), c.max)
			var m message
			if err == nil {
				m, err = decodeMessage(payload)
			}
			switch {
			case c.err != nil:
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want %v", err, c.err)
				}
				return
			case c.errMsg != "":
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.errMsg)) {
					t.Fatalf("error %v, want one containing %q", err, c.errMsg)
				}
				return
			case err != nil:
				t.Fatalf("error %v", err)
			}
			if m.kind != c.kind || len(m.fields) != len(c.fields) {
				t.Fatalf("got %q with %d fields, want %q with %d", m.kind, len(m.fields), c.kind, len(c.fields))
			}
			for i, f := range c.fields {
				if string(m.fields[i]) != f {
					t.Errorf("field %d %q, want %q", i, m.fields[i], f)
				}
			}
		})
	}
}

func TestTooManyFields(t *testing.T) {
	fields := make([][]byte, maxFields+1)
	frame := encodeFrame(kindCall, fields...)
	payload, err := readFrame(bytes.NewReader(frame), len(frame))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeMessage(payload); err == nil {
		t.Errorf("%d fields accepted, limit %d", len(fields), maxFields)
	}
}

// FuzzReadFrame: any byte stream yields frames or an error, never a panic
// or an allocation above the limit, and whatever decodes re-encodes to the
// same bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add(encodeFrame(kindCall, []byte("storeResponse"), []byte("15.0"), []byte("text/plain")))
	f.Add(encodeFrame(kindException, []byte("bad"), []byte("ValueError"), []byte("Traceback"), []byte("1"), []byte("1")))
	f.Add(append(encodeFrame(kindDone, []byte("1"), []byte("0")), encodeFrame(kindHello, []byte("3.11.2"), []byte("42"))...))
	f.Add([]byte{0, 0, 0, 5, 'C', 0, 0, 0, 1})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			before := r.Len()
			payload, err := readFrame(r, limit)
			if err != nil {
				return
			}
			if len(payload) > limit || len(payload) == 0 {
				t.Fatalf("payload of %d bytes, limit %d", len(payload), limit)
			}
			if consumed := before - r.Len(); consumed != 4+len(payload) {
				t.Fatalf("consumed %d bytes for a %d-byte payload", consumed, len(payload))
			}
			m, err := decodeMessage(payload)
			if err != nil {
				continue
			}
			again := encodeFrame(m.kind, m.fields...)
			if !bytes.Equal(again[4:], payload) {
				t.Fatalf("re-encoded %q, read %q", again[4:], payload)
			}
		}
	})
}

func TestCheckInput(t *testing.T) {
	if err := checkInput(envelope([]byte("\x80\x02K\x05.")), 1024); err != nil {
		t.Fatalf("checkInput: %v", err)
	}
	// What does not decode is the worker's to report, in Python's words.
	for _, text := range []string{"", "not base64!", "aGVsbG8="} {
		if err := checkInput(text, 1024); err != nil {
			t.Errorf("checkInput(%q): %v, want it left to the worker", text, err)
		}
	}
	want := "cannot decode input: pickle: pickle too large: decompressed input exceeds 1024 bytes"
	if err := checkInput(envelope(make([]byte, 1<<20)), 1024); err == nil || err.Error() != want {
		t.Errorf("bomb: %v, want %q", err, want)
	}
	if err := checkInput(strings.Repeat("A", 1025), 1024); err == nil || err.Error() != want {
		t.Errorf("long text: %v, want %q", err, want)
	}
}
