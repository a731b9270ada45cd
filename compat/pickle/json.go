package pickle

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// DefaultJSONMaxBytes bounds ToJSON's output. A pickle can share one value
// many times through its memo; written out in full, a few hundred bytes of
// pickle can stand for more JSON than any machine holds.
const DefaultJSONMaxBytes = 256 << 20

// JSONOption configures ToJSON.
type JSONOption func(*jsonWriter)

// JSONIndent makes ToJSON write one item per line, nested levels indented
// by indent (Python's json.dumps(indent=...) layout).
func JSONIndent(indent string) JSONOption {
	return func(w *jsonWriter) { w.indent = indent }
}

// JSONMaxBytes sets the output limit (default DefaultJSONMaxBytes).
func JSONMaxBytes(n int) JSONOption {
	return func(w *jsonWriter) { w.max = n }
}

// ToJSON renders a decoded value (or a Go value Pickle accepts) as JSON for
// people, following the mapping in the package documentation. Without
// options the output is compact, exactly what Python's
// json.dumps(v, ensure_ascii=False, separators=(",", ":")) writes for the
// same mapping; with JSONIndent it matches json.dumps(v, ensure_ascii=False,
// indent=...).
func ToJSON(v any, opts ...JSONOption) ([]byte, error) {
	w := &jsonWriter{max: DefaultJSONMaxBytes, open: map[ident]bool{}}
	for _, o := range opts {
		o(w)
	}
	if err := w.value(v, 0); err != nil {
		return nil, fmt.Errorf("pickle: json: %w", err)
	}
	return w.buf, nil
}

type jsonWriter struct {
	buf    []byte
	indent string
	max    int
	open   map[ident]bool
	// bigText caches the decimal text of huge integers: converting one is
	// superlinear and a memoised integer can appear many times.
	bigText map[*big.Int][]byte
}

func (w *jsonWriter) bigInt(x *big.Int) []byte {
	if x.IsInt64() {
		return strconv.AppendInt(nil, x.Int64(), 10)
	}
	if t, ok := w.bigText[x]; ok {
		return t
	}
	if w.bigText == nil {
		w.bigText = map[*big.Int][]byte{}
	}
	t := x.Append(nil, 10)
	w.bigText[x] = t
	return t
}

func (w *jsonWriter) newline(level int) {
	if w.indent == "" {
		return
	}
	w.buf = append(w.buf, '\n')
	for range level {
		w.buf = append(w.buf, w.indent...)
	}
}

func (w *jsonWriter) sep(i, level int) {
	if i > 0 {
		w.buf = append(w.buf, ',')
	}
	w.newline(level)
}

func (w *jsonWriter) colon() {
	if w.indent == "" {
		w.buf = append(w.buf, ':')
	} else {
		w.buf = append(w.buf, ':', ' ')
	}
}

func (w *jsonWriter) value(v any, level int) error {
	if level > maxWalkDepth {
		return fmt.Errorf("%w: more than %d levels", ErrTooDeep, maxWalkDepth)
	}
	if len(w.buf) > w.max {
		return fmt.Errorf("%w: output exceeds %d bytes", ErrTooLarge, w.max)
	}
	if id, ok := identity(v); ok {
		if w.open[id] {
			return fmt.Errorf("%w: a %s contains itself", ErrRecursive, kindName(v))
		}
		w.open[id] = true
		defer delete(w.open, id)
	}
	switch v := v.(type) {
	case nil:
		w.buf = append(w.buf, "null"...)
	case bool:
		w.buf = strconv.AppendBool(w.buf, v)
	case int64:
		w.buf = strconv.AppendInt(w.buf, v, 10)
	case int:
		w.buf = strconv.AppendInt(w.buf, int64(v), 10)
	case int8, int16, int32, uint, uint8, uint16, uint32, uint64:
		w.buf = fmt.Append(w.buf, v)
	case *big.Int:
		w.buf = append(w.buf, w.bigInt(v)...)
	case float64:
		w.float(v)
	case float32:
		w.float(float64(v))
	case string:
		w.str(textOf(v))
	case Bytes:
		w.bytesObj(v, level)
	case []byte:
		w.bytesObj(v, level)
	case Decimal:
		w.str(string(v))
	case DateTime:
		w.str(isoDateTime(v.Time, v.Naive))
	case time.Time:
		w.str(isoDateTime(v, false))
	case Date:
		w.str(isoDate(v))
	case Time:
		w.str(isoTime(v))
	case Timedelta:
		w.str(isoDuration(v))
	case time.Duration:
		w.str(isoDuration(durationDelta(v)))
	case complex128:
		return w.object(level, []string{"__complex__"}, []any{Tuple{real(v), imag(v)}})
	case complex64:
		return w.value(complex128(v), level)
	case Global:
		return w.object(level, []string{"__global__"}, []any{v.String()})
	case Tuple:
		return w.array(v, level)
	case []any:
		return w.array(v, level)
	case Set:
		return w.set(v, level)
	case FrozenSet:
		return w.set(v, level)
	case *Dict:
		if v == nil {
			w.buf = append(w.buf, "null"...)
			return nil
		}
		return w.dict(v, level)
	case map[string]any:
		return w.dict(stringMapDict(v), level)
	case *Object:
		if v == nil {
			w.buf = append(w.buf, "null"...)
			return nil
		}
		keys := []string{"__object__"}
		vals := []any{v.Module + "." + v.Name}
		if len(v.Args) > 0 {
			keys, vals = append(keys, "args"), append(vals, v.Args)
		}
		if v.Kwargs.Len() > 0 {
			keys, vals = append(keys, "kwargs"), append(vals, v.Kwargs)
		}
		if v.State != nil {
			keys, vals = append(keys, "state"), append(vals, v.State)
		}
		if len(v.ListItems) > 0 {
			keys, vals = append(keys, "items"), append(vals, v.ListItems)
		}
		if v.DictItems.Len() > 0 {
			keys, vals = append(keys, "dictitems"), append(vals, v.DictItems)
		}
		return w.object(level, keys, vals)
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			items := make([]any, rv.Len())
			for i := range items {
				items[i] = rv.Index(i).Interface()
			}
			return w.array(items, level)
		case reflect.Map:
			if rv.Type().Key().Kind() == reflect.String {
				keys := rv.MapKeys()
				slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
				ks := make([]string, len(keys))
				vs := make([]any, len(keys))
				for i, k := range keys {
					ks[i], vs[i] = k.String(), rv.MapIndex(k).Interface()
				}
				return w.object(level, ks, vs)
			}
		}
		return fmt.Errorf("%w: Go type %T", ErrUnsupported, v)
	}
	return nil
}

func (w *jsonWriter) float(f float64) {
	switch {
	case math.IsNaN(f):
		w.str("NaN")
	case math.IsInf(f, 1):
		w.str("Infinity")
	case math.IsInf(f, -1):
		w.str("-Infinity")
	default:
		w.buf = append(w.buf, FloatRepr(f)...)
	}
}

func (w *jsonWriter) bytesObj(b []byte, level int) {
	w.object(level, []string{"__bytes__"}, []any{base64.StdEncoding.EncodeToString(b)})
}

func (w *jsonWriter) array(items []any, level int) error {
	if len(items) == 0 {
		w.buf = append(w.buf, '[', ']')
		return nil
	}
	w.buf = append(w.buf, '[')
	for i, it := range items {
		w.sep(i, level+1)
		if err := w.value(it, level+1); err != nil {
			return err
		}
	}
	w.newline(level)
	w.buf = append(w.buf, ']')
	return nil
}

func (w *jsonWriter) object(level int, keys []string, vals []any) error {
	if len(keys) == 0 {
		w.buf = append(w.buf, '{', '}')
		return nil
	}
	w.buf = append(w.buf, '{')
	for i, k := range keys {
		w.sep(i, level+1)
		w.str(k)
		w.colon()
		if err := w.value(vals[i], level+1); err != nil {
			return err
		}
	}
	w.newline(level)
	w.buf = append(w.buf, '}')
	return nil
}

// dict writes string keys as they are and other keys as their Python repr.
func (w *jsonWriter) dict(d *Dict, level int) error {
	es := d.Entries()
	keys := make([]string, len(es))
	vals := make([]any, len(es))
	for i, e := range es {
		switch k := e.Key.(type) {
		case string:
			keys[i] = textOf(k)
		case *big.Int:
			keys[i] = string(w.bigInt(k))
		default:
			keys[i] = pyRepr(k)
		}
		vals[i] = e.Value
	}
	return w.object(level, keys, vals)
}

// setElem is a set element with what it sorts by.
type setElem struct {
	rank int
	num  *big.Float
	str  string
	text []byte // compact JSON
	v    any
}

// set writes the elements sorted: null, false, true, numbers (by value),
// strings (by code point, including the text of decimals, dates and
// non-finite floats), then arrays and then objects by their compact JSON.
// Any order would do for people; this one is defined so that Python can
// produce the same (see testdata/gen.py).
func (w *jsonWriter) set(items []any, level int) error {
	elems := make([]setElem, len(items))
	for i, it := range items {
		sub := &jsonWriter{max: w.max - len(w.buf), open: w.open, bigText: w.bigText}
		if err := sub.value(it, 0); err != nil {
			return err
		}
		elems[i] = classify(it, sub.buf)
	}
	slices.SortStableFunc(elems, compareSetElems)
	if len(elems) == 0 {
		w.buf = append(w.buf, '[', ']')
		return nil
	}
	w.buf = append(w.buf, '[')
	for i, e := range elems {
		w.sep(i, level+1)
		if w.indent == "" {
			w.buf = append(w.buf, e.text...)
		} else if err := w.value(e.v, level+1); err != nil {
			return err
		}
	}
	w.newline(level)
	w.buf = append(w.buf, ']')
	return nil
}

func classify(v any, text []byte) setElem {
	e := setElem{text: text, v: v}
	switch x := v.(type) {
	case nil:
		e.rank = 0
	case bool:
		e.rank, e.num = 1, big.NewFloat(0)
		if x {
			e.num = big.NewFloat(1)
		}
	case int64:
		e.rank, e.num = 2, new(big.Float).SetInt64(x)
	case int:
		e.rank, e.num = 2, new(big.Float).SetInt64(int64(x))
	case *big.Int:
		e.rank, e.num = 2, new(big.Float).SetInt(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			e.rank, e.str = 3, string(text[1:len(text)-1])
		} else {
			e.rank, e.num = 2, big.NewFloat(x)
		}
	case string, Decimal, DateTime, time.Time, Date, Time, Timedelta, time.Duration:
		// Their JSON is a string; sort by its text, not by the escaped form.
		e.rank, e.str = 3, jsonStringText(v)
	case Tuple, []any, Set, FrozenSet:
		e.rank = 4
	default:
		e.rank = 5
	}
	return e
}

func jsonStringText(v any) string {
	switch x := v.(type) {
	case string:
		return textOf(x)
	case Decimal:
		return string(x)
	case DateTime:
		return isoDateTime(x.Time, x.Naive)
	case time.Time:
		return isoDateTime(x, false)
	case Date:
		return isoDate(x)
	case Time:
		return isoTime(x)
	case Timedelta:
		return isoDuration(x)
	case time.Duration:
		return isoDuration(durationDelta(x))
	}
	return ""
}

// str writes a JSON string escaped as Python's json module does with
// ensure_ascii=False.
func (w *jsonWriter) str(s string) {
	const hex = "0123456789abcdef"
	w.buf = append(w.buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.buf = append(w.buf, s[start:i]...)
		switch c {
		case '"', '\\':
			w.buf = append(w.buf, '\\', c)
		case '\n':
			w.buf = append(w.buf, '\\', 'n')
		case '\r':
			w.buf = append(w.buf, '\\', 'r')
		case '\t':
			w.buf = append(w.buf, '\\', 't')
		case '\b':
			w.buf = append(w.buf, '\\', 'b')
		case '\f':
			w.buf = append(w.buf, '\\', 'f')
		default:
			w.buf = append(w.buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	w.buf = append(w.buf, s[start:]...)
	w.buf = append(w.buf, '"')
}

// FloatRepr is Python 3's repr(float) (and str(float)): the shortest text
// that reads back the same, positional when the decimal exponent is in
// -4 < e <= 16, with ".0" for whole numbers, otherwise 1.5e+20 style; "nan",
// "inf", "-inf". Handlers that port Python code format floats with it.
func FloatRepr(f float64) string {
	return floatRepr(f, true)
}

func floatRepr(f float64, dot0 bool) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if f == 0 {
		z := "0"
		if dot0 {
			z = "0.0"
		}
		if math.Signbit(f) {
			return "-" + z
		}
		return z
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	ei := strings.IndexByte(s, 'e')
	exp, _ := strconv.Atoi(s[ei+1:])
	digits := strings.Replace(s[:ei], ".", "", 1)
	decpt := exp + 1
	if decpt > -4 && decpt <= 16 {
		switch {
		case decpt <= 0:
			return sign + "0." + strings.Repeat("0", -decpt) + digits
		case decpt >= len(digits):
			out := sign + digits + strings.Repeat("0", decpt-len(digits))
			if dot0 {
				out += ".0"
			}
			return out
		default:
			return sign + digits[:decpt] + "." + digits[decpt:]
		}
	}
	m := digits[:1]
	if len(digits) > 1 {
		m += "." + digits[1:]
	}
	es := "+"
	if exp < 0 {
		es, exp = "-", -exp
	}
	return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
}

func isoOffset(off int) string {
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	s := fmt.Sprintf("%c%02d:%02d", sign, off/3600, off/60%60)
	if off%60 != 0 {
		s += fmt.Sprintf(":%02d", off%60)
	}
	return s
}

// isoDateTime is Python's datetime.isoformat().
func isoDateTime(t time.Time, naive bool) string {
	s := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	if !naive {
		_, off := t.Zone()
		s += isoOffset(off)
	}
	return s
}

func isoDate(d Date) string {
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day)
}

func isoTime(t Time) string {
	s := fmt.Sprintf("%02d:%02d:%02d", t.Hour, t.Minute, t.Second)
	if t.Microsecond != 0 {
		s += fmt.Sprintf(".%06d", t.Microsecond)
	}
	if t.HasOffset {
		s += isoOffset(t.Offset)
	}
	return s
}

func normDelta(d Timedelta) Timedelta {
	d.Seconds, d.Microseconds = carry(d.Seconds, d.Microseconds, 1_000_000)
	d.Days, d.Seconds = carry(d.Days, d.Seconds, 86400)
	return d
}

func durationDelta(v time.Duration) Timedelta {
	days, rest := carry(0, int64(v/time.Microsecond), 86400*1_000_000)
	return Timedelta{Days: days, Seconds: rest / 1_000_000, Microseconds: rest % 1_000_000}
}

// isoDuration writes a timedelta as an ISO 8601 duration with a leading
// minus for negative ones: P1DT2H3M4.000005S, -PT0.500000S, PT0S.
func isoDuration(d Timedelta) string {
	d = normDelta(d)
	sign := ""
	if d.Days < 0 {
		sign = "-"
		d = normDelta(Timedelta{Days: -d.Days, Seconds: -d.Seconds, Microseconds: -d.Microseconds})
	}
	h, m, s := d.Seconds/3600, d.Seconds/60%60, d.Seconds%60
	var b strings.Builder
	b.WriteString(sign + "P")
	if d.Days != 0 {
		fmt.Fprintf(&b, "%dD", d.Days)
	}
	if h != 0 || m != 0 || s != 0 || d.Microseconds != 0 || d.Days == 0 {
		b.WriteByte('T')
		if h != 0 {
			fmt.Fprintf(&b, "%dH", h)
		}
		if m != 0 {
			fmt.Fprintf(&b, "%dM", m)
		}
		if s != 0 || d.Microseconds != 0 || (h == 0 && m == 0) {
			fmt.Fprintf(&b, "%d", s)
			if d.Microseconds != 0 {
				fmt.Fprintf(&b, ".%06d", d.Microseconds)
			}
			b.WriteByte('S')
		}
	}
	return b.String()
}

// pyRepr is Python's repr() of a value, used for dict keys that are not
// strings. Exact for None, bools, numbers, str, bytes, tuples of those,
// decimals and the datetime types; set elements are listed in the JSON
// set order, which can differ from Python's hash order.
func pyRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64, int, int8, int16, int32, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x)
	case *big.Int:
		return x.String()
	case float64:
		return FloatRepr(x)
	case complex128:
		return complexRepr(x)
	case string:
		return pyStrRepr(textOf(x))
	case Bytes:
		return pyBytesRepr(x)
	case []byte:
		return pyBytesRepr(x)
	case Tuple:
		parts := make([]string, len(x))
		for i, it := range x {
			parts[i] = pyRepr(it)
		}
		if len(x) == 1 {
			return "(" + parts[0] + ",)"
		}
		return "(" + strings.Join(parts, ", ") + ")"
	case FrozenSet:
		if len(x) == 0 {
			return "frozenset()"
		}
		return "frozenset({" + sortedReprs(x) + "})"
	case Set:
		if len(x) == 0 {
			return "set()"
		}
		return "{" + sortedReprs(x) + "}"
	case Decimal:
		return "Decimal(" + pyStrRepr(string(x)) + ")"
	case DateTime:
		return dateTimeRepr(x.Time, x.Naive)
	case time.Time:
		return dateTimeRepr(x, false)
	case Date:
		return fmt.Sprintf("datetime.date(%d, %d, %d)", x.Year, x.Month, x.Day)
	case Time:
		f := trimZeros([]int{x.Hour, x.Minute, x.Second, x.Microsecond}, 2)
		s := "datetime.time(" + joinInts(f)
		if x.HasOffset {
			s += ", tzinfo=" + tzRepr(x.Offset)
		}
		return s + ")"
	case Timedelta:
		return deltaRepr(normDelta(x))
	case Global:
		if x.Module == "builtins" {
			return "<class '" + x.Name + "'>"
		}
		return "<class '" + x.String() + "'>"
	case *Object:
		return "<" + x.Module + "." + x.Name + " object>"
	}
	b, err := ToJSON(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// compareSetElems orders set elements as set and sortedReprs write them.
func compareSetElems(a, b setElem) int {
	if a.rank != b.rank {
		return a.rank - b.rank
	}
	switch a.rank {
	case 1, 2:
		return a.num.Cmp(b.num)
	case 3:
		return strings.Compare(a.str, b.str)
	}
	return bytes.Compare(a.text, b.text)
}

func sortedReprs(items []any) string {
	w := &jsonWriter{max: DefaultJSONMaxBytes, open: map[ident]bool{}}
	elems := make([]setElem, len(items))
	for i, it := range items {
		sub := &jsonWriter{max: w.max, open: w.open}
		_ = sub.value(it, 0)
		elems[i] = classify(it, sub.buf)
	}
	slices.SortStableFunc(elems, compareSetElems)
	parts := make([]string, len(elems))
	for i, e := range elems {
		parts[i] = pyRepr(e.v)
	}
	return strings.Join(parts, ", ")
}

func trimZeros(f []int, keep int) []int {
	for len(f) > keep && f[len(f)-1] == 0 {
		f = f[:len(f)-1]
	}
	return f
}

func joinInts(f []int) string {
	parts := make([]string, len(f))
	for i, n := range f {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ", ")
}

func dateTimeRepr(t time.Time, naive bool) string {
	f := trimZeros([]int{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond() / 1000}, 5)
	s := "datetime.datetime(" + joinInts(f)
	if !naive {
		_, off := t.Zone()
		s += ", tzinfo=" + tzRepr(off)
	}
	return s + ")"
}

func tzRepr(off int) string {
	if off == 0 {
		return "datetime.timezone.utc"
	}
	days, secs := carry(0, int64(off), 86400)
	return "datetime.timezone(" + deltaRepr(Timedelta{Days: days, Seconds: secs}) + ")"
}

func deltaRepr(d Timedelta) string {
	var parts []string
	if d.Days != 0 {
		parts = append(parts, fmt.Sprintf("days=%d", d.Days))
	}
	if d.Seconds != 0 {
		parts = append(parts, fmt.Sprintf("seconds=%d", d.Seconds))
	}
	if d.Microseconds != 0 {
		parts = append(parts, fmt.Sprintf("microseconds=%d", d.Microseconds))
	}
	if len(parts) == 0 {
		return "datetime.timedelta(0)"
	}
	return "datetime.timedelta(" + strings.Join(parts, ", ") + ")"
}

func complexRepr(c complex128) string {
	re, im := real(c), imag(c)
	if re == 0 && !math.Signbit(re) {
		return floatRepr(im, false) + "j"
	}
	ims := floatRepr(im, false)
	if !strings.HasPrefix(ims, "-") {
		ims = "+" + ims
	}
	return "(" + floatRepr(re, false) + ims + "j)"
}

func pyQuote(hasSingle, hasDouble bool) byte {
	if hasSingle && !hasDouble {
		return '"'
	}
	return '\''
}

func pyStrRepr(s string) string {
	q := pyQuote(strings.ContainsRune(s, '\''), strings.ContainsRune(s, '"'))
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f:
			b.WriteRune(r)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

func pyBytesRepr(p []byte) string {
	q := pyQuote(bytes.IndexByte(p, '\'') >= 0, bytes.IndexByte(p, '"') >= 0)
	var b strings.Builder
	b.WriteByte('b')
	b.WriteByte(q)
	for _, c := range p {
		switch {
		case c == q || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}
