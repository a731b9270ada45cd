package pickle

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// batchSize is how many items one APPENDS or SETITEMS carries, as in
// CPython.
const batchSize = 1000

// Pickle returns v as a protocol 2 pickle, the highest protocol Python 2
// reads. It writes only opcodes and classes both Python 2.7 and Python 3
// know, with Python 2 module names (__builtin__, copy_reg) that Python 3
// maps back:
//
//   - nil, bool, all Go integer types and *big.Int, float32/64 as None,
//     bool, int (Python 2 long when large), float; complex64/128 as complex.
//   - string as unicode/str (BINUNICODE) when it is valid UTF-8; otherwise
//     (a Python 2 str of arbitrary bytes) as bytes.
//   - Bytes and []byte as Python 3 bytes / Python 2 str, written the way
//     Python 3 writes bytes below protocol 3: _codecs.encode(text, "latin1").
//   - Tuple as tuple; []any and other slices and arrays as list; Set and
//     FrozenSet as set and frozenset; *Dict as dict in its order; maps with
//     string or integer keys as dict, keys sorted.
//   - Decimal as decimal.Decimal; Date, Time, Timedelta and time.Duration as
//     the datetime types; DateTime as datetime.datetime.
//   - time.Time, and a DateTime that is not Naive, as an aware
//     datetime.datetime with a datetime.timezone of the value's offset.
//     Python 2 has no datetime.timezone (nor any UTC tzinfo in its
//     standard library): a Python 2 reader needs a naive DateTime.
//   - Global as the class itself, *Object as a call of its class (or
//     cls.__new__ when NewObj) followed by its items and state.
//
// Containers are memoised, so shared values stay shared and a list or dict
// may contain itself. Anything else fails with ErrUnsupported.
func Pickle(v any) ([]byte, error) {
	e := &encoder{
		buf:  make([]byte, 0, 256),
		memo: make(map[ident]uint32),
		open: make(map[ident]bool),
	}
	e.buf = append(e.buf, opProto, 2)
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	e.buf = append(e.buf, opStop)
	return e.buf, nil
}

// EncodeError is a value Pickle cannot write, with where it is inside the
// value passed to Pickle, such as $[2]["when"].
type EncodeError struct {
	Path string
	Err  error
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("pickle: encode %s: %v", e.Path, e.Err)
}

func (e *EncodeError) Unwrap() error { return e.Err }

// pathError carries the path, innermost first, while the error unwinds.
type pathError struct {
	rev []string
	err error
}

func (p *pathError) Error() string { return p.err.Error() }

func at(err error, seg string) error {
	var pe *pathError
	if errors.As(err, &pe) {
		pe.rev = append(pe.rev, seg)
		return pe
	}
	return &pathError{rev: []string{seg}, err: err}
}

type encoder struct {
	h     hasher // checks set elements, remembering shared ones
	buf   []byte
	memo  map[ident]uint32
	open  map[ident]bool
	nmemo uint32
}

func (e *encoder) value(v any, depth int) (err error) {
	if depth > maxWalkDepth {
		return fmt.Errorf("%w: more than %d levels", ErrTooDeep, maxWalkDepth)
	}
	defer func() {
		if err != nil && depth == 0 {
			var pe *pathError
			path := "$"
			if errors.As(err, &pe) {
				for i := len(pe.rev) - 1; i >= 0; i-- {
					path += pe.rev[i]
				}
				err = pe.err
			}
			err = &EncodeError{Path: path, Err: err}
		}
	}()
	if id, ok := identity(v); ok {
		if idx, ok := e.memo[id]; ok {
			e.get(idx)
			return nil
		}
		if e.open[id] {
			return fmt.Errorf("%w: a %s contains itself", ErrRecursive, kindName(v))
		}
	}
	switch v := v.(type) {
	case nil:
		e.buf = append(e.buf, opNone)
	case bool:
		if v {
			e.buf = append(e.buf, opNewTrue)
		} else {
			e.buf = append(e.buf, opNewFalse)
		}
	case int:
		e.int(int64(v))
	case int8:
		e.int(int64(v))
	case int16:
		e.int(int64(v))
	case int32:
		e.int(int64(v))
	case int64:
		e.int(v)
	case uint:
		e.uint(uint64(v))
	case uint8:
		e.int(int64(v))
	case uint16:
		e.int(int64(v))
	case uint32:
		e.int(int64(v))
	case uint64:
		e.uint(v)
	case *big.Int:
		if v == nil {
			e.buf = append(e.buf, opNone)
		} else {
			e.bigInt(v)
		}
	case float64:
		e.float(v)
	case float32:
		e.float(float64(v))
	case complex128:
		e.complex(v)
	case complex64:
		e.complex(complex128(v))
	case string:
		if utf8.ValidString(v) {
			e.unicode(v)
		} else {
			e.bytes([]byte(v))
		}
	case Bytes:
		e.bytes(v)
	case []byte:
		e.bytes(v)
	case Decimal:
		if !validDecimal(string(v)) {
			return fmt.Errorf("%w: invalid Decimal literal %q", ErrUnsupported, string(v))
		}
		e.global("decimal", "Decimal")
		e.unicode(string(v))
		e.buf = append(e.buf, opTuple1, opReduce)
	case DateTime:
		return e.datetime(v.Time, v.Naive)
	case time.Time:
		return e.datetime(v, false)
	case Date:
		if err := checkDate(int64(v.Year), int64(v.Month), int64(v.Day)); err != nil {
			return fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
		e.global("datetime", "date")
		e.state([]byte{byte(v.Year >> 8), byte(v.Year), byte(v.Month), byte(v.Day)})
		e.buf = append(e.buf, opTuple1, opReduce)
	case Time:
		return e.clock(v)
	case Timedelta:
		e.timedelta(v)
	case time.Duration:
		us := int64(v / time.Microsecond)
		days, rest := carry(0, us, 86400*1_000_000)
		e.timedelta(Timedelta{Days: days, Seconds: rest / 1_000_000, Microseconds: rest % 1_000_000})
	case Global:
		e.global(v.Module, v.Name)
	case Tuple:
		return e.tuple(v, depth)
	case []any:
		return e.list(v, depth)
	case Set:
		return e.set(v, "set", depth)
	case FrozenSet:
		return e.set(v, "frozenset", depth)
	case *Dict:
		if v == nil {
			e.buf = append(e.buf, opNone)
			return nil
		}
		return e.dict(v, depth)
	case map[string]any:
		return e.dict(stringMapDict(v), depth)
	case *Object:
		if v == nil {
			e.buf = append(e.buf, opNone)
			return nil
		}
		return e.object(v, depth)
	default:
		return e.reflectValue(reflect.ValueOf(v), depth)
	}
	return nil
}

// stringMapDict is m as a Dict with its keys sorted, so that a Go map
// encodes the same bytes every time.
func stringMapDict(m map[string]any) *Dict {
	d := &Dict{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.set(hkey{s: k, str: true}, k, m[k])
	}
	return d
}

// reflectValue writes slices, arrays and maps of other element types.
func (e *encoder) reflectValue(rv reflect.Value, depth int) error {
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.buf = append(e.buf, opEmptyList)
			return nil
		}
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = rv.Index(i).Interface()
		}
		return e.list(items, depth)
	case reflect.Map:
		keys := rv.MapKeys()
		kind := rv.Type().Key().Kind()
		switch kind {
		case reflect.String:
			slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.String(), b.String()) })
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Int(), b.Int()) })
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Uint(), b.Uint()) })
		default:
			return fmt.Errorf("%w: map key type %s", ErrUnsupported, rv.Type().Key())
		}
		d := &Dict{}
		for _, k := range keys {
			var key any
			switch kind {
			case reflect.String:
				key = k.String()
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				key = new(big.Int).SetUint64(k.Uint())
			default:
				key = k.Int()
			}
			if err := d.Set(key, rv.MapIndex(k).Interface()); err != nil {
				return err
			}
		}
		return e.dict(d, depth)
	case reflect.Invalid:
		e.buf = append(e.buf, opNone)
		return nil
	}
	return fmt.Errorf("%w: Go type %s", ErrUnsupported, rv.Type())
}

func (e *encoder) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		e.buf = append(e.buf, opBinInt1, byte(v))
	case v >= 0 && v < 1<<16:
		e.buf = append(e.buf, opBinInt2, byte(v), byte(v>>8))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		e.buf = append(e.buf, opBinInt)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(v))
	default:
		e.bigInt(big.NewInt(v))
	}
}

func (e *encoder) uint(v uint64) {
	if v <= math.MaxInt64 {
		e.int(int64(v))
		return
	}
	e.bigInt(new(big.Int).SetUint64(v))
}

// bigInt writes LONG1/LONG4 with the fewest two's complement bytes, as
// Python's encode_long does.
func (e *encoder) bigInt(v *big.Int) {
	if v.IsInt64() {
		// Small values keep their short opcodes; LONG1 is for the rest.
		if x := v.Int64(); x >= math.MinInt32 && x <= math.MaxInt32 {
			e.int32(x)
			return
		}
	}
	n := v.BitLen()/8 + 1
	mod := new(big.Int).Set(v)
	if v.Sign() < 0 {
		mod.Add(mod, new(big.Int).Lsh(big.NewInt(1), uint(8*n)))
	}
	be := mod.FillBytes(make([]byte, n))
	le := make([]byte, n)
	for i, c := range be {
		le[n-1-i] = c
	}
	if v.Sign() < 0 && n > 1 && le[n-1] == 0xFF && le[n-2]&0x80 != 0 {
		le = le[:n-1]
	}
	if len(le) < 256 {
		e.buf = append(e.buf, opLong1, byte(len(le)))
	} else {
		e.buf = append(e.buf, opLong4)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(le)))
	}
	e.buf = append(e.buf, le...)
}

// int32 writes a value known to fit BININT*.
func (e *encoder) int32(x int64) {
	switch {
	case x >= 0 && x < 1<<8:
		e.buf = append(e.buf, opBinInt1, byte(x))
	case x >= 0 && x < 1<<16:
		e.buf = append(e.buf, opBinInt2, byte(x), byte(x>>8))
	default:
		e.buf = append(e.buf, opBinInt)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(x))
	}
}

func (e *encoder) float(f float64) {
	e.buf = append(e.buf, opBinFloat)
	e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(f))
}

func (e *encoder) complex(c complex128) {
	e.global("builtins", "complex")
	e.float(real(c))
	e.float(imag(c))
	e.buf = append(e.buf, opTuple2, opReduce)
}

func (e *encoder) unicode(s string) {
	e.buf = append(e.buf, opBinUnicode)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// bytes writes _codecs.encode(latin1 text, "latin1"): bytes on Python 3,
// str on Python 2.
func (e *encoder) bytes(b []byte) {
	e.global("_codecs", "encode")
	e.unicode(latin1String(b))
	e.unicode("latin1")
	e.buf = append(e.buf, opTuple2, opReduce)
}

// state writes the packed state of a datetime class.
func (e *encoder) state(b []byte) { e.bytes(b) }

// global writes GLOBAL with the Python 2 module name, which Python 3 maps
// back (fix_imports).
func (e *encoder) global(mod, name string) {
	switch mod {
	case "builtins":
		mod = "__builtin__"
	case "copyreg":
		mod = "copy_reg"
	}
	e.buf = append(e.buf, opGlobal)
	e.buf = append(e.buf, mod...)
	e.buf = append(e.buf, '\n')
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, '\n')
}

func (e *encoder) put(id ident) {
	idx := e.nmemo
	e.nmemo++
	e.memo[id] = idx
	if idx < 256 {
		e.buf = append(e.buf, opBinPut, byte(idx))
		return
	}
	e.buf = append(e.buf, opLongBinPut)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, idx)
}

func (e *encoder) get(idx uint32) {
	if idx < 256 {
		e.buf = append(e.buf, opBinGet, byte(idx))
		return
	}
	e.buf = append(e.buf, opLongBinGet)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, idx)
}

func (e *encoder) datetime(t time.Time, naive bool) error {
	if y := t.Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%w: year %d is outside Python's 1..9999", ErrUnsupported, y)
	}
	us := t.Nanosecond() / 1000
	e.global("datetime", "datetime")
	e.state([]byte{byte(t.Year() >> 8), byte(t.Year()), byte(t.Month()), byte(t.Day()),
		byte(t.Hour()), byte(t.Minute()), byte(t.Second()), byte(us >> 16), byte(us >> 8), byte(us)})
	if naive {
		e.buf = append(e.buf, opTuple1, opReduce)
		return nil
	}
	_, off := t.Zone()
	e.timezone(off)
	e.buf = append(e.buf, opTuple2, opReduce)
	return nil
}

func (e *encoder) timezone(off int) {
	e.global("datetime", "timezone")
	days, secs := carry(0, int64(off), 86400)
	e.timedelta(Timedelta{Days: days, Seconds: secs})
	e.buf = append(e.buf, opTuple1, opReduce)
}

func (e *encoder) clock(t Time) error {
	if err := checkClock(int64(t.Hour), int64(t.Minute), int64(t.Second), int64(t.Microsecond)); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	us := t.Microsecond
	e.global("datetime", "time")
	e.state([]byte{byte(t.Hour), byte(t.Minute), byte(t.Second), byte(us >> 16), byte(us >> 8), byte(us)})
	if !t.HasOffset {
		e.buf = append(e.buf, opTuple1, opReduce)
		return nil
	}
	if t.Offset <= -86400 || t.Offset >= 86400 {
		return fmt.Errorf("%w: UTC offset %d s is beyond a day", ErrUnsupported, t.Offset)
	}
	e.timezone(t.Offset)
	e.buf = append(e.buf, opTuple2, opReduce)
	return nil
}

func (e *encoder) timedelta(d Timedelta) {
	e.global("datetime", "timedelta")
	e.int(d.Days)
	e.int(d.Seconds)
	e.int(d.Microseconds)
	e.buf = append(e.buf, opTuple3, opReduce)
}

func (e *encoder) items(items []any, depth int, seg func(int) string) error {
	for i, it := range items {
		if err := e.value(it, depth+1); err != nil {
			return at(err, seg(i))
		}
	}
	return nil
}

func index(i int) string { return "[" + strconv.Itoa(i) + "]" }

func (e *encoder) tuple(t Tuple, depth int) error {
	id, hasID := identity(t)
	if hasID {
		e.open[id] = true
		defer delete(e.open, id)
	}
	if len(t) > 3 || len(t) == 0 {
		e.buf = append(e.buf, opMark)
	}
	if err := e.items(t, depth, index); err != nil {
		return err
	}
	switch len(t) {
	case 1:
		e.buf = append(e.buf, opTuple1)
	case 2:
		e.buf = append(e.buf, opTuple2)
	case 3:
		e.buf = append(e.buf, opTuple3)
	default:
		e.buf = append(e.buf, opTuple)
	}
	if hasID {
		e.put(id)
	}
	return nil
}

func (e *encoder) list(l []any, depth int) error {
	e.buf = append(e.buf, opEmptyList)
	if id, ok := identity(l); ok {
		e.put(id)
	}
	return e.appends(l, depth, index)
}

func (e *encoder) appends(l []any, depth int, seg func(int) string) error {
	for start := 0; start < len(l); start += batchSize {
		batch := l[start:min(start+batchSize, len(l))]
		if len(batch) > 1 {
			e.buf = append(e.buf, opMark)
		}
		if err := e.items(batch, depth, func(i int) string { return seg(start + i) }); err != nil {
			return err
		}
		if len(batch) > 1 {
			e.buf = append(e.buf, opAppends)
		} else {
			e.buf = append(e.buf, opAppend)
		}
	}
	return nil
}

func (e *encoder) set(items []any, class string, depth int) error {
	for i, it := range items {
		if _, err := e.h.key(it, depth+1); err != nil {
			return at(err, index(i))
		}
	}
	var id ident
	var hasID bool
	if class == "set" {
		id, hasID = identity(Set(items))
	} else {
		id, hasID = identity(FrozenSet(items))
	}
	if hasID {
		e.open[id] = true
		defer delete(e.open, id)
	}
	e.global("builtins", class)
	e.buf = append(e.buf, opEmptyList)
	if err := e.appends(items, depth, index); err != nil {
		return err
	}
	e.buf = append(e.buf, opTuple1, opReduce)
	if hasID {
		e.put(id)
	}
	return nil
}

func keySeg(k any) string {
	if s, ok := k.(string); ok {
		return "[" + strconv.Quote(s) + "]"
	}
	return "[" + pyRepr(k) + "]"
}

func (e *encoder) dict(d *Dict, depth int) error {
	e.buf = append(e.buf, opEmptyDict)
	if id, ok := identity(d); ok {
		e.put(id)
	}
	return e.setItems(d, depth)
}

func (e *encoder) setItems(d *Dict, depth int) error {
	entries := d.Entries()
	for start := 0; start < len(entries); start += batchSize {
		batch := entries[start:min(start+batchSize, len(entries))]
		if len(batch) > 1 {
			e.buf = append(e.buf, opMark)
		}
		for _, en := range batch {
			if err := e.value(en.Key, depth+1); err != nil {
				return at(err, keySeg(en.Key)+"(key)")
			}
			if err := e.value(en.Value, depth+1); err != nil {
				return at(err, keySeg(en.Key))
			}
		}
		if len(batch) > 1 {
			e.buf = append(e.buf, opSetItems)
		} else {
			e.buf = append(e.buf, opSetItem)
		}
	}
	return nil
}

func (e *encoder) object(o *Object, depth int) error {
	if o.Kwargs.Len() > 0 {
		return fmt.Errorf("%w: %s.%s has keyword constructor arguments, which need protocol 4", ErrUnsupported, o.Module, o.Name)
	}
	if o.Module == "" || o.Name == "" || strings.ContainsAny(o.Module+o.Name, "\n") {
		return fmt.Errorf("%w: object class %q.%q is not a valid name", ErrUnsupported, o.Module, o.Name)
	}
	id, _ := identity(o)
	e.open[id] = true
	e.global(o.Module, o.Name)
	e.buf = append(e.buf, opMark)
	if err := e.items(o.Args, depth, func(i int) string { return ".Args" + index(i) }); err != nil {
		return err
	}
	e.buf = append(e.buf, opTuple)
	if o.NewObj {
		e.buf = append(e.buf, opNewObj)
	} else {
		e.buf = append(e.buf, opReduce)
	}
	delete(e.open, id)
	e.put(id) // after this the object may refer to itself
	if len(o.ListItems) > 0 {
		if err := e.appends(o.ListItems, depth, func(i int) string { return ".ListItems" + index(i) }); err != nil {
			return err
		}
	}
	if o.DictItems.Len() > 0 {
		if err := e.setItems(o.DictItems, depth); err != nil {
			return at(err, ".DictItems")
		}
	}
	if o.State != nil {
		if err := e.value(o.State, depth+1); err != nil {
			return at(err, ".State")
		}
		e.buf = append(e.buf, opBuild)
	}
	return nil
}
