package pickle

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// py2Modules and py2Names map Python 2 names to Python 3 ones, as Python
// 3's unpickler does (fix_imports) for pickles below protocol 3, for the
// modules whose names matter here: builtins, copyreg and exceptions.
var py2Modules = map[string]string{
	"__builtin__": "builtins",
	"copy_reg":    "copyreg",
	"exceptions":  "builtins",
}

var py2Names = map[Global]Global{
	{"__builtin__", "xrange"}:       {"builtins", "range"},
	{"__builtin__", "reduce"}:       {"functools", "reduce"},
	{"__builtin__", "intern"}:       {"sys", "intern"},
	{"__builtin__", "unichr"}:       {"builtins", "chr"},
	{"__builtin__", "unicode"}:      {"builtins", "str"},
	{"__builtin__", "long"}:         {"builtins", "int"},
	{"__builtin__", "basestring"}:   {"builtins", "str"},
	{"exceptions", "StandardError"}: {"builtins", "Exception"},
}

func makeGlobal(mod, name string, proto int) Global {
	g := Global{Module: mod, Name: name}
	if proto >= 3 {
		return g
	}
	if n, ok := py2Names[g]; ok {
		return n
	}
	if m, ok := py2Modules[mod]; ok {
		g.Module = m
	}
	return g
}

// callGlobal is what calling a class or function named in the pickle
// yields: a Go value for the classes this package maps, an Object recording
// the call for any other.
func callGlobal(h *hasher, g Global, args []any) (any, error) {
	switch g.Module {
	case "builtins":
		switch g.Name {
		case "set", "frozenset":
			return makeSet(h, args, g.Name == "frozenset")
		case "bytes", "bytearray":
			return makeBytes(args)
		case "complex":
			return makeComplex(args)
		}
	case "_codecs":
		if g.Name == "encode" {
			return codecsEncode(g, args)
		}
	case "datetime":
		switch g.Name {
		case "datetime":
			return makeDateTime(args)
		case "date":
			return makeDate(args)
		case "time":
			return makeTime(args)
		case "timedelta":
			return makeTimedelta(args)
		}
	case "decimal", "cdecimal":
		if g.Name == "Decimal" {
			return makeDecimal(args)
		}
	case "collections":
		if g.Name == "OrderedDict" {
			return makeOrderedDict(h, args)
		}
	case "copyreg":
		switch g.Name {
		case "_reconstructor":
			// Python 2 and protocols 0/1: _reconstructor(cls, base, state)
			// makes an instance of cls; state is base's constructor argument
			// (None for plain objects).
			if len(args) != 3 {
				return nil, fmt.Errorf("takes 3 arguments, got %d", len(args))
			}
			cls, ok := args[0].(Global)
			if !ok {
				return nil, fmt.Errorf("class must be a class, got %s", kindName(args[0]))
			}
			if args[2] == nil {
				return &Object{Module: cls.Module, Name: cls.Name, NewObj: true}, nil
			}
			return &Object{Module: cls.Module, Name: cls.Name, Args: []any{args[2]}}, nil
		case "__newobj__", "__newobj_ex__":
			if len(args) == 0 {
				return nil, errors.New("missing the class argument")
			}
			cls, ok := args[0].(Global)
			if !ok {
				return nil, fmt.Errorf("class must be a class, got %s", kindName(args[0]))
			}
			if g.Name == "__newobj__" {
				return newObject(h, cls, args[1:], nil)
			}
			if len(args) != 3 {
				return nil, fmt.Errorf("takes 3 arguments, got %d", len(args))
			}
			t, ok := args[1].(*tupleBox)
			kw, ok2 := args[2].(*Dict)
			if !ok || !ok2 {
				return nil, fmt.Errorf("needs a tuple and a dict, got %s and %s", kindName(args[1]), kindName(args[2]))
			}
			return newObject(h, cls, t.items, kw)
		}
	}
	return &Object{Module: g.Module, Name: g.Name, Args: slices.Clone(args)}, nil
}

// newObject is cls.__new__(cls, *args, **kwargs) (NEWOBJ, NEWOBJ_EX).
func newObject(h *hasher, cls Global, args []any, kw *Dict) (any, error) {
	if cls.Module == "builtins" {
		switch cls.Name {
		case "dict":
			return &Dict{height: 1}, nil
		case "list":
			l := &listBox{height: 1}
			l.items = l.inline[:0:len(l.inline)]
			return l, nil
		case "set", "frozenset", "bytes", "bytearray", "complex":
			if kw.Len() == 0 {
				return callGlobal(h, cls, args)
			}
		}
	}
	if cls == (Global{"collections", "OrderedDict"}) && kw.Len() == 0 {
		return callGlobal(h, cls, args)
	}
	return &Object{Module: cls.Module, Name: cls.Name, Args: slices.Clone(args), Kwargs: kw, NewObj: true}, nil
}

// elements lists the items of an iterable argument.
func elements(v any) ([]any, bool) {
	switch v := v.(type) {
	case *listBox:
		return v.items, true
	case *tupleBox:
		return v.items, true
	case *setBox:
		return v.items, true
	case string:
		var out []any
		for _, r := range v {
			out = append(out, string(r))
		}
		return out, true
	}
	return nil, false
}

func makeSet(h *hasher, args []any, frozen bool) (any, error) {
	s := &setBox{frozen: frozen, height: 1}
	if len(args) == 0 {
		return s, nil
	}
	if len(args) > 1 {
		return nil, fmt.Errorf("takes at most 1 argument, got %d", len(args))
	}
	items, ok := elements(args[0])
	if !ok {
		return nil, fmt.Errorf("%s is not iterable", kindName(args[0]))
	}
	for _, it := range items {
		if err := s.add(h, it); err != nil {
			return nil, err
		}
	}
	s.height = maxHeight(s.items) + 1
	return s, nil
}

func makeBytes(args []any) (any, error) {
	switch len(args) {
	case 0:
		return Bytes{}, nil
	case 1:
		switch a := args[0].(type) {
		case Bytes:
			return slices.Clone(a), nil
		case *listBox, *tupleBox:
			items, _ := elements(a)
			out := make(Bytes, len(items))
			for i, it := range items {
				n, ok := it.(int64)
				if !ok || n < 0 || n > 255 {
					return nil, fmt.Errorf("bytes must be in range(0, 256), got %v", it)
				}
				out[i] = byte(n)
			}
			return out, nil
		}
		// bytes(n) would be n zero bytes: a length no pickle writer uses,
		// refused rather than allocated.
		return nil, fmt.Errorf("cannot make bytes from %s", kindName(args[0]))
	default:
		return codecsEncode(Global{"builtins", "bytes"}, args)
	}
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(v).Float64()
		return f, true
	}
	return 0, false
}

func makeComplex(args []any) (any, error) {
	if len(args) > 2 {
		return nil, fmt.Errorf("takes at most 2 arguments, got %d", len(args))
	}
	var parts [2]float64
	for i, a := range args {
		f, ok := toFloat(a)
		if !ok {
			return nil, fmt.Errorf("argument must be a number, got %s", kindName(a))
		}
		parts[i] = f
	}
	return complex(parts[0], parts[1]), nil
}

// codecsEncode is _codecs.encode(text, encoding): how Python 3 writes bytes
// below protocol 3 (always with "latin1").
func codecsEncode(g Global, args []any) (any, error) {
	if len(args) < 1 || len(args) > 3 {
		return nil, fmt.Errorf("takes 1 to 3 arguments, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("argument must be str, got %s", kindName(args[0]))
	}
	enc := "utf-8"
	if len(args) > 1 {
		if enc, ok = args[1].(string); !ok {
			return nil, fmt.Errorf("encoding must be str, got %s", kindName(args[1]))
		}
	}
	switch strings.ReplaceAll(strings.ToLower(enc), "_", "-") {
	case "latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1":
		b, ok := latin1Bytes(s)
		if !ok {
			return nil, errors.New("text has characters beyond U+00FF for latin1")
		}
		return Bytes(b), nil
	case "utf-8", "utf8":
		return Bytes(s), nil
	case "ascii", "us-ascii":
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return nil, errors.New("text is not ASCII")
			}
		}
		return Bytes(s), nil
	}
	return &Object{Module: g.Module, Name: g.Name, Args: slices.Clone(args)}, nil
}

// stateBytes reads the packed state datetime classes pickle themselves
// with: bytes on Python 3, a str of the same bytes on Python 2.
func stateBytes(v any, n int) ([]byte, bool) {
	switch v := v.(type) {
	case Bytes:
		return v, len(v) == n
	case string:
		if len(v) == n {
			return []byte(v), true
		}
		if b, ok := latin1Bytes(v); ok && len(b) == n {
			return b, true
		}
	}
	return nil, false
}

func intArgs(args []any, from int) ([]int64, error) {
	out := make([]int64, 0, len(args))
	for _, a := range args[from:] {
		switch a := a.(type) {
		case int64:
			out = append(out, a)
		case bool:
			out = append(out, map[bool]int64{false: 0, true: 1}[a])
		default:
			return nil, fmt.Errorf("integer argument expected, got %s", kindName(a))
		}
	}
	return out, nil
}

func checkDate(y, m, d int64) error {
	if y < 1 || y > 9999 {
		return fmt.Errorf("year %d is out of range", y)
	}
	if m < 1 || m > 12 {
		return fmt.Errorf("month %d must be in 1..12", m)
	}
	last := time.Date(int(y), time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if d < 1 || int(d) > last {
		return fmt.Errorf("day %d is out of range for %04d-%02d", d, y, m)
	}
	return nil
}

func checkClock(h, mi, s, us int64) error {
	if h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59 || us < 0 || us > 999999 {
		return fmt.Errorf("time %d:%d:%d.%d is out of range", h, mi, s, us)
	}
	return nil
}

// tzOffset resolves a tzinfo object to a fixed zone. Python 2 had no UTC
// in the standard library, so the ones Django projects used are known too:
// pytz.utc, pytz zones (pickled with their offset), django's own UTC.
func tzOffset(tz any) (loc *time.Location, known bool) {
	o, ok := tz.(*Object)
	if !ok {
		return nil, false
	}
	switch o.Module + "." + o.Name {
	case "datetime.timezone":
		if len(o.Args) == 0 || len(o.Args) > 2 {
			return nil, false
		}
		td, ok := o.Args[0].(Timedelta)
		if !ok || td.Microseconds != 0 || td.Days < -1 || td.Days > 0 {
			return nil, false
		}
		off := int(td.Days*86400 + td.Seconds)
		if len(o.Args) == 2 {
			if name, ok := o.Args[1].(string); ok {
				return time.FixedZone(name, off), true
			}
			return nil, false
		}
		if off == 0 {
			return time.UTC, true
		}
		return time.FixedZone("", off), true
	case "pytz._UTC", "django.utils.timezone.UTC":
		return time.UTC, true
	case "pytz._p":
		if len(o.Args) < 4 {
			return nil, false
		}
		off, ok1 := o.Args[1].(int64)
		name, ok2 := o.Args[3].(string)
		if !ok1 || !ok2 || off <= -86400 || off >= 86400 {
			return nil, false
		}
		return time.FixedZone(name, int(off)), true
	}
	return nil, false
}

func makeDateTime(args []any) (any, error) {
	var f []int64
	var tz any
	if len(args) >= 1 && len(args) <= 2 {
		if b, ok := stateBytes(args[0], 10); ok && b[2]&0x7F >= 1 && b[2]&0x7F <= 12 {
			f = []int64{int64(b[0])<<8 | int64(b[1]), int64(b[2] & 0x7F), int64(b[3]),
				int64(b[4]), int64(b[5]), int64(b[6]),
				int64(b[7])<<16 | int64(b[8])<<8 | int64(b[9])}
			if len(args) == 2 {
				tz = args[1]
			}
		}
	}
	if f == nil {
		n := min(len(args), 7)
		var err error
		if f, err = intArgs(args[:n], 0); err != nil {
			return nil, err
		}
		if len(f) < 3 {
			return nil, fmt.Errorf("needs year, month and day, got %d arguments", len(args))
		}
		if len(args) == 8 {
			tz = args[7]
		} else if len(args) > 8 {
			return nil, fmt.Errorf("takes at most 8 arguments, got %d", len(args))
		}
		f = append(f, make([]int64, 7-len(f))...)
	}
	if err := checkDate(f[0], f[1], f[2]); err != nil {
		return nil, err
	}
	if err := checkClock(f[3], f[4], f[5], f[6]); err != nil {
		return nil, err
	}
	loc := time.UTC
	if tz != nil {
		var known bool
		if loc, known = tzOffset(tz); !known {
			return &Object{Module: "datetime", Name: "datetime", Args: slices.Clone(args)}, nil
		}
	}
	t := time.Date(int(f[0]), time.Month(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6])*1000, loc)
	return DateTime{Time: t, Naive: tz == nil}, nil
}

func makeDate(args []any) (any, error) {
	var f []int64
	if len(args) == 1 {
		if b, ok := stateBytes(args[0], 4); ok {
			f = []int64{int64(b[0])<<8 | int64(b[1]), int64(b[2]), int64(b[3])}
		}
	}
	if f == nil {
		var err error
		if f, err = intArgs(args, 0); err != nil {
			return nil, err
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("needs year, month and day, got %d arguments", len(args))
		}
	}
	if err := checkDate(f[0], f[1], f[2]); err != nil {
		return nil, err
	}
	return Date{Year: int(f[0]), Month: time.Month(f[1]), Day: int(f[2])}, nil
}

func makeTime(args []any) (any, error) {
	var f []int64
	var tz any
	if len(args) >= 1 && len(args) <= 2 {
		if b, ok := stateBytes(args[0], 6); ok && b[0]&0x7F < 24 {
			f = []int64{int64(b[0] & 0x7F), int64(b[1]), int64(b[2]),
				int64(b[3])<<16 | int64(b[4])<<8 | int64(b[5])}
			if len(args) == 2 {
				tz = args[1]
			}
		}
	}
	if f == nil {
		n := min(len(args), 4)
		var err error
		if f, err = intArgs(args[:n], 0); err != nil {
			return nil, err
		}
		if len(args) == 5 {
			tz = args[4]
		} else if len(args) > 5 {
			return nil, fmt.Errorf("takes at most 5 arguments, got %d", len(args))
		}
		f = append(f, make([]int64, 4-len(f))...)
	}
	if err := checkClock(f[0], f[1], f[2], f[3]); err != nil {
		return nil, err
	}
	t := Time{Hour: int(f[0]), Minute: int(f[1]), Second: int(f[2]), Microsecond: int(f[3])}
	if tz != nil {
		loc, known := tzOffset(tz)
		if !known {
			return &Object{Module: "datetime", Name: "time", Args: slices.Clone(args)}, nil
		}
		_, off := time.Date(2000, 1, 1, 0, 0, 0, 0, loc).Zone()
		t.HasOffset, t.Offset = true, off
	}
	return t, nil
}

// makeTimedelta normalises like Python's constructor, without overflowing:
// days may reach ±999999999, whose microseconds do not fit int64.
func makeTimedelta(args []any) (any, error) {
	f, err := intArgs(args, 0)
	if err != nil {
		return nil, err
	}
	if len(f) > 3 {
		return nil, fmt.Errorf("takes at most 3 positional arguments, got %d", len(args))
	}
	f = append(f, make([]int64, 3-len(f))...)
	days, secs, us := f[0], f[1], f[2]
	secs, us = carry(secs, us, 1_000_000)
	days, secs = carry(days, secs, 86400)
	if days < -999999999 || days > 999999999 {
		return nil, fmt.Errorf("days=%d; must have magnitude <= 999999999", days)
	}
	return Timedelta{Days: days, Seconds: secs, Microseconds: us}, nil
}

// carry moves whole units of lo into hi so that 0 <= lo < unit.
func carry(hi, lo, unit int64) (int64, int64) {
	q, r := lo/unit, lo%unit
	if r < 0 {
		q, r = q-1, r+unit
	}
	return hi + q, r
}

func makeDecimal(args []any) (any, error) {
	if len(args) == 0 {
		return Decimal("0"), nil
	}
	if len(args) > 2 {
		return nil, fmt.Errorf("takes at most 2 arguments, got %d", len(args))
	}
	switch a := args[0].(type) {
	case string:
		s := strings.TrimSpace(a)
		if !validDecimal(s) {
			return nil, fmt.Errorf("invalid literal %q", a)
		}
		return Decimal(s), nil
	case int64:
		return Decimal(fmt.Sprint(a)), nil
	case *big.Int:
		return Decimal(a.String()), nil
	}
	return nil, fmt.Errorf("cannot convert %s to Decimal", kindName(args[0]))
}

// validDecimal accepts Python's decimal literal syntax: sign, digits with
// an optional point and exponent, or Infinity/Inf/NaN/sNaN with payload.
func validDecimal(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	ls := strings.ToLower(s)
	if ls == "inf" || ls == "infinity" {
		return true
	}
	if strings.HasPrefix(ls, "nan") || strings.HasPrefix(ls, "snan") {
		p := strings.TrimPrefix(strings.TrimPrefix(ls, "s"), "nan")
		return strings.Trim(p, "0123456789") == ""
	}
	digits, point := 0, false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '_' && digits > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
		case c == '.' && !point:
			point = true
		default:
			goto exp
		}
	}
exp:
	if digits == 0 {
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != 'e' && s[i] != 'E' {
		return false
	}
	e := s[i+1:]
	if e != "" && (e[0] == '+' || e[0] == '-') {
		e = e[1:]
	}
	return e != "" && strings.Trim(e, "0123456789") == ""
}

func makeOrderedDict(h *hasher, args []any) (any, error) {
	d := &Dict{height: 1}
	if len(args) == 0 {
		return d, nil
	}
	if len(args) > 1 {
		return nil, fmt.Errorf("takes at most 1 argument, got %d", len(args))
	}
	if src, ok := args[0].(*Dict); ok {
		for _, e := range src.entries {
			k, _ := h.key(e.Key, 0)
			d.set(k, e.Key, e.Value)
		}
		d.height = src.height
		return d, nil
	}
	pairs, ok := elements(args[0])
	if !ok {
		return nil, fmt.Errorf("%s is not iterable", kindName(args[0]))
	}
	for _, p := range pairs {
		kv, ok := elements(p)
		if _, isStr := p.(string); isStr || !ok || len(kv) != 2 {
			return nil, fmt.Errorf("items must be pairs, got %s", kindName(p))
		}
		k, err := h.key(kv[0], 0)
		if err != nil {
			return nil, err
		}
		d.set(k, kv[0], kv[1])
		d.height = max(d.height, max(heightOf(kv[0]), heightOf(kv[1]))+1)
	}
	return d, nil
}
