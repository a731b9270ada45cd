package pickle

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/eoxserver/atpd/compat/zlibpy"
)

// Sentinel errors, for errors.Is.
var (
	// ErrBase64: the stored text is not base64.
	ErrBase64 = errors.New("bad base64")
	// ErrZlib: the base64 payload is not a complete zlib stream.
	ErrZlib = errors.New("bad zlib")
	// ErrTooLarge: the pickle is larger than DecodeOptions.MaxSize.
	ErrTooLarge = errors.New("pickle too large")
	// ErrPickle: the pickle itself is malformed. Every *Error matches it.
	ErrPickle = errors.New("bad pickle")
	// ErrTooDeep: containers nest deeper than the limit.
	ErrTooDeep = errors.New("nested too deep")
	// ErrUnhashable: a list, dict or set used as a dict key or set element.
	ErrUnhashable = errors.New("unhashable type")
	// ErrUnsupported: Encode met a Go value with no Python counterpart.
	ErrUnsupported = errors.New("unsupported type")
	// ErrRecursive: a value contains itself where it cannot be written
	// (JSON; a tuple or set inside itself when encoding).
	ErrRecursive = errors.New("recursive value")
)

// Decode decodes a stored task input, base64(zlib(pickle)), with the
// default limits.
func Decode(text string) (any, error) {
	return DecodeOptions{}.Decode(text)
}

// Decode decodes a stored task input, base64(zlib(pickle)).
//
// Whitespace in the text is ignored (Python's b64decode ignores it too).
// A text of the form b'...' is accepted: it is what Django stores when a
// Python 3 producer hands the bytes from base64.b64encode to a TextField.
func (o DecodeOptions) Decode(text string) (any, error) {
	z, err := unbase64([]byte(text))
	if err != nil {
		return nil, err
	}
	p, err := o.inflate(z)
	if err != nil {
		return nil, err
	}
	return o.unpickleOwned(p)
}

// DecodeAuto decodes data that is either a stored input (base64 text) or a
// raw pickle (or a zlib-compressed one), as `atpd decode-input` reads
// files and pasted values.
func DecodeAuto(data []byte) (any, error) {
	return DecodeOptions{}.DecodeAuto(data)
}

// DecodeAuto is DecodeAuto with limits.
func (o DecodeOptions) DecodeAuto(data []byte) (any, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("pickle: %w: empty input", ErrPickle)
	}
	if data[0] == opProto {
		return o.Unpickle(data)
	}
	// A protocol-0 pickle always ends with '.', which base64 never
	// contains, so text made only of base64 characters is the stored form.
	if t := trimText(data); len(t) > 0 && isBase64Text(t) {
		return o.Decode(string(data))
	}
	if isZlibHeader(data) {
		p, err := o.inflate(data)
		if err != nil {
			return nil, err
		}
		return o.unpickleOwned(p)
	}
	return o.Unpickle(data)
}

// trimText drops surrounding whitespace and a b'...' wrapper.
func trimText(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if len(b) >= 3 && b[0] == 'b' && (b[1] == '\'' || b[1] == '"') && b[len(b)-1] == b[1] {
		b = bytes.TrimSpace(b[2 : len(b)-1])
	}
	return b
}

func isBase64Text(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '+', c == '/', c == '=', c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return false
		}
	}
	return true
}

// isZlibHeader recognises the zlib header Python's and Go's zlib write
// (deflate, 32 KiB window, valid check bits). Other window sizes are not
// accepted: their first byte can be '(' (MARK), which starts many
// protocol-0 pickles.
func isZlibHeader(b []byte) bool {
	return len(b) >= 2 && b[0] == 0x78 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// Unwrap returns the pickle inside a stored input, base64(zlib(pickle)),
// with the default size limit. Executors that hand the pickle to Python use
// it; its errors wrap ErrBase64, ErrZlib and ErrTooLarge.
func Unwrap(text string) ([]byte, error) {
	return DecodeOptions{}.Unwrap(text)
}

// Unwrap is Unwrap with limits.
func (o DecodeOptions) Unwrap(text string) ([]byte, error) {
	z, err := unbase64([]byte(text))
	if err != nil {
		return nil, err
	}
	return o.inflate(z)
}

// CheckEnvelope reports whether a stored input opens the way
// tracker.startTask opened it before it saved RUNNING (base64, then zlib),
// without keeping the pickle: nil, or an *EnvelopeError in Python's words.
// Inflating stops after limit bytes (0: DefaultMaxSize): an input larger
// than that is the size limit's concern, not a fault of its envelope.
func CheckEnvelope(text string, limit int) error {
	z, err := unbase64([]byte(text))
	if err != nil {
		return err
	}
	if err := pyZlibHeader(z); err != nil {
		return err
	}
	r, err := zlibReader(bytes.NewReader(z))
	if err != nil {
		return pyInflateError(z, err)
	}
	defer zlibReaders.Put(r)
	limit = DecodeOptions{MaxSize: limit}.maxSize()
	n, err := io.Copy(io.Discard, io.LimitReader(r, int64(limit)+1))
	switch {
	case err != nil:
		return pyInflateError(z, err)
	case n > int64(limit):
		return nil
	}
	if err := r.Close(); err != nil {
		return pyInflateError(z, err)
	}
	return nil
}

// maxDeflateRatio is the most DEFLATE can expand: 258 bytes from a match
// coded in about two bits, so at most 1032 output bytes per input byte.
const maxDeflateRatio = 1032

// InflatesPast reports whether text is base64 of a zlib stream that
// inflates past limit bytes, reading at most limit+1 of them. A text that
// does not open reports false: what is wrong with it is for the decoder
// to say. Most inputs are too small to inflate past limit at all and cost
// no decompression.
func InflatesPast(text string, limit int64) bool {
	z, err := unbase64([]byte(text))
	if err != nil || int64(len(z)) <= limit/maxDeflateRatio {
		return false
	}
	r, err := zlibReader(bytes.NewReader(z))
	if err != nil {
		return false
	}
	defer zlibReaders.Put(r)
	n, _ := io.Copy(io.Discard, io.LimitReader(r, limit+1))
	return n > limit
}

// unbase64 decodes as Python's base64.b64decode did in tracker.startTask
// (pyB64Decode): characters outside the alphabet (the newlines of
// base64.encodestring, a stray space) are discarded, decoding ends at a
// quad's padding, and a wrong length is an error in Python's words. One
// deliberate leniency: a b'...' wrapper (what Django stores when a Python 3
// producer hands bytes to the TextField) is taken off first.
func unbase64(text []byte) ([]byte, error) {
	return pyB64Decode(trimText(text))
}

// inflate decompresses a zlib stream, stopping as soon as the output
// passes the size limit so that a compression bomb costs at most MaxSize.
func (o DecodeOptions) inflate(z []byte) ([]byte, error) {
	if err := pyZlibHeader(z); err != nil {
		return nil, err
	}
	r, err := zlibReader(bytes.NewReader(z))
	if err != nil {
		return nil, pyInflateError(z, err)
	}
	defer zlibReaders.Put(r)
	limit := o.maxSize()
	// Grow by doubling but never past limit+1 bytes: reaching that proves
	// the input too large, so a bomb costs about twice the limit at most.
	// Typical inputs compress 3 to 10 times; start there.
	buf := make([]byte, 0, min(limit+1, max(512, 4*len(z))))
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, fmt.Errorf("pickle: %w: decompressed input exceeds %d bytes", ErrTooLarge, limit)
			}
			nb := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, pyInflateError(z, err)
		}
	}
	if len(buf) > limit {
		return nil, fmt.Errorf("pickle: %w: decompressed input exceeds %d bytes", ErrTooLarge, limit)
	}
	if err := r.Close(); err != nil {
		return nil, pyInflateError(z, err)
	}
	return buf, nil
}

// zlibReaders keeps inflaters for reuse: each holds a 32 KiB window and
// tables, far more than decoding a typical input otherwise allocates.
var zlibReaders sync.Pool

func zlibReader(src io.Reader) (io.ReadCloser, error) {
	if r, ok := zlibReaders.Get().(io.ReadCloser); ok {
		if err := r.(zlib.Resetter).Reset(src, nil); err != nil {
			zlibReaders.Put(r)
			return nil, err
		}
		return r, nil
	}
	return zlib.NewReader(src)
}

// Encode pickles v with protocol 2 (readable by Python 2 and 3, see Pickle)
// and returns the stored form base64(zlib(pickle)), as tracker.enqueueTask
// writes it. The zlib stream is byte-identical to Python's zlib.compress
// (compat/zlibpy), so a Go producer writes the same row a Python one would.
func Encode(v any) (string, error) {
	p, err := Pickle(v)
	if err != nil {
		return "", err
	}
	return EncodeRaw(p), nil
}

// EncodeRaw returns the stored form of an already pickled value.
func EncodeRaw(pickled []byte) string {
	return base64.StdEncoding.EncodeToString(zlibpy.Compress(pickled))
}
