package pickle

import (
	"fmt"
	"math/big"
	"time"
)

// Bytes is a Python 3 bytes or bytearray value (and what Python 3 writes for
// bytes below protocol 3, _codecs.encode(text, "latin1")). Python 2 str is
// not Bytes: it decodes to a Go string holding the same bytes.
type Bytes []byte

// Tuple is a Python tuple. Lists decode to []any; keeping tuples distinct
// lets a Go producer write a tuple back (a dict key, a datetime argument).
type Tuple []any

// Set is a Python set: its elements, each once, in the order the pickle
// added them (Python's own iteration order is a hash detail).
type Set []any

// FrozenSet is a Python frozenset, like Set.
type FrozenSet []any

// Decimal is a decimal.Decimal as the text Python pickles it with, which is
// str(d): "1.10", "-Infinity", "NaN", "1E+2". Converting it to a float would
// lose exactly what Decimal exists for, so the text is kept.
type Decimal string

// DateTime is a datetime.datetime. For an aware value Time carries the
// offset as a fixed zone (a UTC tzinfo gives time.UTC). For a naive value
// Naive is true and Time is the wall clock placed in time.UTC: Python knows
// no zone for it, and neither does this package.
type DateTime struct {
	time.Time
	Naive bool
}

// Date is a datetime.date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// Time is a datetime.time (a time of day). Offset is the UTC offset in
// seconds when HasOffset is true (a time with a tzinfo).
type Time struct {
	Hour, Minute, Second, Microsecond int
	HasOffset                         bool
	Offset                            int
}

// Timedelta is a datetime.timedelta in Python's normalised form:
// 0 <= Seconds < 86400, 0 <= Microseconds < 1e6, Days carries the sign.
type Timedelta struct {
	Days, Seconds, Microseconds int64
}

// Duration converts the timedelta; ok is false when it does not fit
// time.Duration (about 292 years).
func (d Timedelta) Duration() (dur time.Duration, ok bool) {
	const maxDays = int64(1<<63-1) / int64(24*time.Hour)
	if d.Days > maxDays || d.Days < -maxDays {
		return 0, false
	}
	return time.Duration(d.Days)*24*time.Hour +
		time.Duration(d.Seconds)*time.Second +
		time.Duration(d.Microseconds)*time.Microsecond, true
}

// Global is a reference to a Python class or function by module and name,
// as the GLOBAL and STACK_GLOBAL opcodes carry it. It appears as a value only
// when a pickle stores a class itself rather than an instance. Python 2
// module names __builtin__ and copy_reg are reported by their Python 3 names
// builtins and copyreg, as Python 3's unpickler does.
type Global struct {
	Module, Name string
}

func (g Global) String() string { return g.Module + "." + g.Name }

// Object is an instance of a class this package does not map to a Go type.
// It records everything the pickle says about it, so nothing is lost and a
// Go producer can write it back: the class, the constructor arguments, the
// state given to BUILD (usually the instance __dict__ as a *Dict), and the
// items a list or dict subclass appended or set on itself.
type Object struct {
	Module, Name string
	// Args are the arguments of cls(*Args) (REDUCE, INST, OBJ) or, when
	// NewObj is set, of cls.__new__(cls, *Args) (NEWOBJ, and Python 2's
	// copy_reg._reconstructor), which does not run __init__.
	Args   []any
	NewObj bool
	// Kwargs are NEWOBJ_EX's keyword arguments (protocol 4 and later).
	Kwargs    *Dict
	State     any
	ListItems []any
	DictItems *Dict

	height int32 // nesting height while decoding, see freeze
	walk   uint8
}

// Class returns the object's class.
func (o *Object) Class() Global { return Global{o.Module, o.Name} }

// DictEntry is one key/value pair of a Dict.
type DictEntry struct {
	Key, Value any
}

// Dict is a Python dict (and collections.OrderedDict): entries in insertion
// order with Python's key equality (1, 1.0 and True are the same key; a
// Python 2 str and a unicode of the same text are the same key). Keys that
// are not Go strings are allowed when Python could hash them: numbers, None,
// bytes, tuples and frozensets of those, dates, objects.
//
// The zero value is an empty dict ready to use.
type Dict struct {
	entries []DictEntry
	index   hindex

	height int32
	walk   uint8
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{} }

// Len is the number of entries.
func (d *Dict) Len() int {
	if d == nil {
		return 0
	}
	return len(d.entries)
}

// Entries returns the entries in insertion order. The slice is the dict's
// own: read it, do not change keys through it.
func (d *Dict) Entries() []DictEntry {
	if d == nil {
		return nil
	}
	return d.entries
}

// Get returns the value stored under key.
func (d *Dict) Get(key any) (any, bool) {
	if d == nil {
		return nil, false
	}
	k, err := hashKey(key, 0)
	if err != nil {
		return nil, false
	}
	if i := d.find(k); i >= 0 {
		return d.entries[i].Value, true
	}
	return nil, false
}

func (d *Dict) keyAt(i int) any { return d.entries[i].Key }

func (d *Dict) find(k hkey) int {
	if d.index.m != nil || d.index.keys != nil || !k.str {
		return d.index.find(k, len(d.entries), d.keyAt)
	}
	// The common case, a small dict of string keys, without an indirect
	// call per entry.
	for i := range d.entries {
		if s, ok := d.entries[i].Key.(string); ok && s == k.s {
			return i
		}
	}
	return -1
}

// Set stores value under key, replacing the value of an equal key in place
// (the first key object stays, as in Python). It fails with ErrUnhashable
// for keys Python cannot hash (lists, dicts, sets).
func (d *Dict) Set(key, value any) error {
	k, err := hashKey(key, 0)
	if err != nil {
		return err
	}
	d.set(k, key, value)
	return nil
}

func (d *Dict) set(k hkey, key, value any) {
	if i := d.find(k); i >= 0 {
		d.entries[i].Value = value
		return
	}
	d.entries = append(d.entries, DictEntry{Key: key, Value: value})
	d.index.added(k, len(d.entries), d.keyAt)
}

// StringMap returns the entries as a Go map when every key is a string.
func (d *Dict) StringMap() (map[string]any, bool) {
	m := make(map[string]any, d.Len())
	for _, e := range d.Entries() {
		s, ok := e.Key.(string)
		if !ok {
			return nil, false
		}
		m[s] = e.Value
	}
	return m, true
}

// kindName names a decoded or Go value's Python type for error messages.
func kindName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, int, *big.Int:
		return "int"
	case float64:
		return "float"
	case complex128:
		return "complex"
	case string:
		return "str"
	case Bytes:
		return "bytes"
	case *listBox, []any:
		return "list"
	case *tupleBox, Tuple:
		return "tuple"
	case *setBox:
		if v.frozen {
			return "frozenset"
		}
		return "set"
	case Set:
		return "set"
	case FrozenSet:
		return "frozenset"
	case *Dict:
		return "dict"
	case Decimal:
		return "decimal.Decimal"
	case DateTime:
		return "datetime.datetime"
	case Date:
		return "datetime.date"
	case Time:
		return "datetime.time"
	case Timedelta:
		return "datetime.timedelta"
	case Global:
		return "class " + v.String()
	case *Object:
		return v.Module + "." + v.Name
	default:
		return fmt.Sprintf("%T", v)
	}
}
