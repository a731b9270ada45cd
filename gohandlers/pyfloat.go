package gohandlers

import (
	"math"
	"strconv"
	"strings"
	"unicode"
)

// Python 3's float() and repr(float), as the ported handlers need them to
// give byte-identical results (CPython 3.11: Objects/floatobject.c,
// Python/pystrtod.c).

// pyFloatText parses s as Python's float(str) does. ok is false where
// Python raises ValueError.
func pyFloatText(s string) (f float64, ok bool) {
	// float(str) first maps Unicode whitespace to ' ' and Unicode decimal
	// digits to ASCII ones; any other non-ASCII character is an error.
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		var b strings.Builder
		for _, r := range s {
			switch {
			case r < 0x80:
				b.WriteRune(r)
			case pyIsSpace(r):
				b.WriteByte(' ')
			default:
				d := decimalValue(r)
				if d < 0 {
					return 0, false
				}
				b.WriteByte(byte('0' + d))
			}
		}
		s = b.String()
	}
	return pyFloatASCII(s)
}

// pyFloatBytes parses b as Python's float(bytes) does: no Unicode mapping.
func pyFloatBytes(b []byte) (float64, bool) {
	for _, c := range b {
		if c >= 0x80 {
			return 0, false
		}
	}
	return pyFloatASCII(string(b))
}

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// pyFloatASCII is PyFloat_FromString after the Unicode mapping: strip ASCII
// whitespace, validate and drop underscores, then parse the whole rest as
// inf/nan or a decimal literal (never hexadecimal).
func pyFloatASCII(s string) (float64, bool) {
	i, j := 0, len(s)
	for i < j && isASCIISpace(s[i]) {
		i++
	}
	for j > i && isASCIISpace(s[j-1]) {
		j--
	}
	s = s[i:j]
	if s == "" {
		return 0, false
	}
	if strings.IndexByte(s, '_') >= 0 {
		var ok bool
		if s, ok = dropUnderscores(s); !ok {
			return 0, false
		}
	}
	if f, ok := parseInfNaN(s); ok {
		return f, true
	}
	if !isDecimalLiteral(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// Python returns ±inf on overflow and 0 on underflow without
		// complaint; ParseFloat gives the same values with ErrRange.
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f, true
		}
		return 0, false
	}
	return f, true
}

// dropUnderscores applies _Py_string_to_number_with_underscores: an
// underscore must sit between two digits.
func dropUnderscores(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	var prev byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			if !isDigit(prev) {
				return "", false
			}
		} else {
			if prev == '_' && !isDigit(c) {
				return "", false
			}
			b = append(b, c)
		}
		prev = c
	}
	if prev == '_' {
		return "", false
	}
	return string(b), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseInfNaN accepts [+-](inf|infinity|nan), case-insensitive, as the whole
// string.
func parseInfNaN(s string) (float64, bool) {
	sign := 1.0
	body := s
	if body != "" && (body[0] == '+' || body[0] == '-') {
		if body[0] == '-' {
			sign = -1
		}
		body = body[1:]
	}
	switch strings.ToLower(body) {
	case "inf", "infinity":
		return math.Inf(int(sign)), true
	case "nan":
		// The sign of a NaN does not show in repr, but keep it as Python does.
		return math.Copysign(math.NaN(), sign), true
	}
	return 0, false
}

// isDecimalLiteral matches [+-] digits [. digits] [(e|E) [+-] digits] with at
// least one mantissa digit, which is what _Py_dg_strtod consumes.
func isDecimalLiteral(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && isDigit(s[i]) {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

// pyIsSpace is Python's str.isspace for one character (Py_UNICODE_ISSPACE):
// bidirectional class WS, B or S, or general category Zs.
func pyIsSpace(r rune) bool {
	switch {
	case r == 0x85 || r == 0xA0 || r == 0x1680:
		return true
	case 0x2000 <= r && r <= 0x200A:
		return true
	case r == 0x2028 || r == 0x2029 || r == 0x202F || r == 0x205F || r == 0x3000:
		return true
	case r < 0x80:
		return (0x09 <= r && r <= 0x0D) || (0x1C <= r && r <= 0x20)
	}
	return false
}

// decimalValue is unicodedata.decimal(r, -1): the value of a character of
// general category Nd. Unicode allocates Nd characters in runs of ten, 0 to
// 9, so the value is the distance from the run's start.
func decimalValue(r rune) int {
	if !unicode.Is(unicode.Nd, r) {
		return -1
	}
	start := r
	for unicode.Is(unicode.Nd, start-1) {
		start--
	}
	// Runs can follow each other directly (the mathematical digits at
	// U+1D7CE are five), so the value is the distance modulo ten.
	return int(r-start) % 10
}
