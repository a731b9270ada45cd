package pickle

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// unescapeString undoes the Python string escapes of a protocol-0 STRING
// argument (Python 2 repr(str) without the quotes), as Python 3's
// codecs.escape_decode does: \\ \' \" \a \b \f \n \r \t \v, \<newline>
// (dropped), 1 to 3 octal digits, \xhh; any other escape is kept as is.
func unescapeString(b []byte) (string, error) {
	if !containsByte(b, '\\') {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(b) {
			return "", errors.New(`trailing \ in string`)
		}
		c = b[i]
		switch c {
		case '\n':
		case '\\', '\'', '"':
			out = append(out, c)
		case 'a':
			out = append(out, '\a')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(b) && b[i+1] >= '0' && b[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(b[i]-'0')
			}
			out = append(out, byte(v)) // Python truncates values above \377 too
		case 'x':
			if i+2 >= len(b) {
				return "", fmt.Errorf(`invalid \x escape at position %d`, i-1)
			}
			hi, ok1 := unhex(b[i+1])
			lo, ok2 := unhex(b[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf(`invalid \x escape at position %d`, i-1)
			}
			out = append(out, hi<<4|lo)
			i += 2
		default:
			out = append(out, '\\', c)
		}
	}
	return string(out), nil
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeRawUnicodeEscape decodes a protocol-0 UNICODE argument. Python 2
// wrote it with raw-unicode-escape (plus \u005c for backslash and \u000a for
// newline): characters below U+0100 as their Latin-1 byte, others as \uXXXX
// or \UXXXXXXXX. A backslash escapes only u or U; any other pair stays.
// Python 2 narrow builds wrote characters beyond the BMP as two \u
// surrogates; they are joined back into one character, and a lone surrogate,
// which a Go string cannot hold, becomes U+FFFD.
func decodeRawUnicodeEscape(b []byte) (string, error) {
	ascii := true
	for _, c := range b {
		if c == '\\' || c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b), nil
	}
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/2)
	pendingHigh := rune(-1)
	flush := func() {
		if pendingHigh >= 0 {
			sb.WriteRune(utf8.RuneError)
			pendingHigh = -1
		}
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 >= len(b) || (b[i+1] != 'u' && b[i+1] != 'U') {
			flush()
			sb.WriteRune(rune(c))
			if c == '\\' && i+1 < len(b) {
				i++
				sb.WriteRune(rune(b[i]))
			}
			continue
		}
		n := 4
		if b[i+1] == 'U' {
			n = 8
		}
		if i+2+n > len(b) {
			return "", fmt.Errorf(`truncated \%cXXXX escape at position %d`, b[i+1], i)
		}
		var r rune
		for _, h := range b[i+2 : i+2+n] {
			d, ok := unhex(h)
			if !ok {
				return "", fmt.Errorf(`truncated \%cXXXX escape at position %d`, b[i+1], i)
			}
			r = r<<4 | rune(d)
		}
		if r > utf8.MaxRune || r < 0 {
			return "", fmt.Errorf(`\Uxxxxxxxx out of range at position %d`, i)
		}
		i += 1 + n
		switch {
		case utf16.IsSurrogate(r) && r < 0xDC00:
			flush()
			pendingHigh = r
		case utf16.IsSurrogate(r):
			if pendingHigh >= 0 {
				sb.WriteRune(utf16.DecodeRune(pendingHigh, r))
				pendingHigh = -1
			} else {
				sb.WriteRune(utf8.RuneError)
			}
		default:
			flush()
			sb.WriteRune(r)
		}
	}
	flush()
	return sb.String(), nil
}

// decodeUTF8 decodes a BINUNICODE argument the way Python 3 does
// ("surrogatepass"): valid UTF-8 as is; surrogates encoded as three bytes
// each (Python 2 wrote lone ones) joined when they pair up, U+FFFD when
// alone; any other invalid byte is an error, as in Python.
func decodeUTF8(b []byte) (string, error) {
	if utf8.Valid(b) {
		return string(b), nil
	}
	var sb strings.Builder
	sb.Grow(len(b))
	pendingHigh := rune(-1)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			s, ok := surrogateAt(b[i:])
			if !ok {
				return "", fmt.Errorf("invalid UTF-8 byte 0x%02x at position %d", b[i], i)
			}
			i += 3
			if s < 0xDC00 {
				if pendingHigh >= 0 {
					sb.WriteRune(utf8.RuneError)
				}
				pendingHigh = s
				continue
			}
			if pendingHigh >= 0 {
				sb.WriteRune(utf16.DecodeRune(pendingHigh, s))
				pendingHigh = -1
			} else {
				sb.WriteRune(utf8.RuneError)
			}
			continue
		}
		if pendingHigh >= 0 {
			sb.WriteRune(utf8.RuneError)
			pendingHigh = -1
		}
		sb.Write(b[i : i+size])
		i += size
	}
	if pendingHigh >= 0 {
		sb.WriteRune(utf8.RuneError)
	}
	return sb.String(), nil
}

// surrogateAt reads a surrogate code point encoded as UTF-8 (ED A0..BF xx).
func surrogateAt(b []byte) (rune, bool) {
	if len(b) < 3 || b[0] != 0xED || b[1] < 0xA0 || b[1] > 0xBF || b[2] < 0x80 || b[2] > 0xBF {
		return 0, false
	}
	return 0xD000 | rune(b[1]&0x3F)<<6 | rune(b[2]&0x3F), true
}

// latin1Bytes encodes text whose characters are all below U+0100 as one
// byte each (what _codecs.encode(s, "latin1") does).
func latin1Bytes(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

// latin1String is the text whose characters are the given bytes.
func latin1String(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/4)
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// textOf returns a Go string as text: itself when it is valid UTF-8,
// otherwise (a Python 2 str of non-UTF-8 bytes) its bytes read as Latin-1,
// which is what Python 3 gives for it with encoding="latin1".
func textOf(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return latin1String([]byte(s))
}
