package pickle

import (
	"compress/flate"
	"errors"
	"fmt"
	"io"
)

// EnvelopeError is a stored input that Python's own decoding,
// pickle.loads(zlib.decompress(base64.b64decode(text))) in
// tracker.startTask, rejects before the pickle: its Error() is exactly
// str(exception) as Python raises it ("Incorrect padding", "Error -3 while
// decompressing data: incorrect header check"), so that a task failed by
// atpd's decoder carries the message the reference daemon wrote. Layer is
// ErrBase64 or ErrZlib (errors.Is matches it); Cause, when set, is the
// underlying Go error.
type EnvelopeError struct {
	Layer   error
	Message string
	Cause   error
}

func (e *EnvelopeError) Error() string { return e.Message }

// Unwrap returns the layer sentinel and the cause.
func (e *EnvelopeError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Layer}
	}
	return []error{e.Layer, e.Cause}
}

func base64Error(msg string) error { return &EnvelopeError{Layer: ErrBase64, Message: msg} }

// zlibError is zlib.error as Python's zlibmodule formats it: "Error %d
// while decompressing data: %s", or without the text when zlib gave none.
func zlibError(code int, msg string, cause error) error {
	text := fmt.Sprintf("Error %d while decompressing data", code)
	if msg != "" {
		text += ": " + msg
	}
	return &EnvelopeError{Layer: ErrZlib, Message: text, Cause: cause}
}

// Python's words for the zlib failures atpd can tell apart.
var (
	errZlibTruncated = func(cause error) error { return zlibError(-5, "incomplete or truncated stream", cause) }
	errZlibData      = func(msg string, cause error) error { return zlibError(-3, msg, cause) }
)

// b64Table maps a base64 character to its value; 0xFF marks characters
// outside the alphabet.
var b64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// pyB64Decode is CPython 3's base64.b64decode(text) (binascii.a2b_base64,
// not strict): a str with non-ASCII characters is refused; characters
// outside the alphabet are skipped; a quad completed by its padding ends
// the decoding, whatever follows; a last group of one character, or of two
// or three without their padding, is an error.
func pyB64Decode(text []byte) ([]byte, error) {
	for _, c := range text {
		if c >= 0x80 {
			return nil, &EnvelopeError{Layer: ErrBase64, Message: "string argument should contain only ASCII characters"}
		}
	}
	out := make([]byte, 0, len(text)/4*3+3)
	quadPos, pads := 0, 0
	var left byte
	for _, c := range text {
		if c == '=' {
			if quadPos >= 2 {
				pads++
				if quadPos+pads >= 4 {
					return out, nil
				}
			}
			continue
		}
		v := b64Table[c]
		if v == 0xFF {
			continue
		}
		pads = 0
		switch quadPos {
		case 0:
			quadPos, left = 1, v
		case 1:
			quadPos = 2
			out = append(out, left<<2|v>>4)
			left = v & 0x0F
		case 2:
			quadPos = 3
			out = append(out, left<<4|v>>2)
			left = v & 0x03
		case 3:
			quadPos = 0
			out = append(out, left<<6|v)
			left = 0
		}
	}
	switch quadPos {
	case 0:
		return out, nil
	case 1:
		return nil, base64Error(fmt.Sprintf("Invalid base64-encoded string: number of data characters (%d) cannot be 1 more than a multiple of 4", len(out)/3*4+1))
	default:
		return nil, base64Error("Incorrect padding")
	}
}

// pyZlibHeader checks the two header bytes as zlib's inflate does, in its
// order, for zlib.decompress(data) (wbits 15).
func pyZlibHeader(z []byte) error {
	if len(z) < 2 {
		return errZlibTruncated(io.ErrUnexpectedEOF)
	}
	switch {
	case (uint16(z[0])<<8|uint16(z[1]))%31 != 0:
		return errZlibData("incorrect header check", nil)
	case z[0]&0x0F != 8:
		return errZlibData("unknown compression method", nil)
	case z[0]>>4+8 > 15:
		return errZlibData("invalid window size", nil)
	case z[1]&0x20 != 0:
		// A preset dictionary: inflate returns Z_NEED_DICT with no text.
		return zlibError(2, "", nil)
	}
	return nil
}

// pyInflateError turns an error of Go's zlib reader into Python's words.
// Where Go's inflater only says the data is corrupt, the stream is read
// again by zlibCheck, which finds the fault zlib would name.
func pyInflateError(z []byte, err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errZlibTruncated(err)
	}
	var corrupt flate.CorruptInputError
	if errors.As(err, &corrupt) {
		if msg := zlibCheck(z); msg != "" {
			if msg == zlibTruncated {
				return errZlibTruncated(err)
			}
			return errZlibData(msg, err)
		}
		return errZlibData(corrupt.Error(), err)
	}
	if err.Error() == "zlib: invalid checksum" {
		return errZlibData("incorrect data check", err)
	}
	if hdr := pyZlibHeader(z); hdr != nil {
		return hdr
	}
	return errZlibData(err.Error(), err)
}
