package gohandlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// DemoPath is the dotted path of EOxServer's demo handler.
const DemoPath = "tools.atp_demo.handler"

// DemoFailure is the message the demo handler fails with on a non-number.
const DemoFailure = "Input must be a sequence of numbers!"

// Demo is a port of EOxServer's tools/atp_demo.py handler, as run by
// Python 3:
//
//	sum = 0
//	for val in input:
//	    try:
//	        sum += float(val)
//	    except ValueError:
//	        taskStatus.setFailure("Input must be a sequence of numbers!")
//	        return
//	taskStatus.storeResponse(str(sum), "text/plain")
//
// Everything Python would do is reproduced: iterating a dict yields its
// keys, a str its characters, bytes their integer values; float() parses
// strings with Python's grammar (whitespace, underscores, "inf", Unicode
// digits); errors other than ValueError (a TypeError for None or a list, an
// OverflowError for a huge int, iterating a number) escape the handler and
// fail the task with Python's message; and the response is Python's str of
// the sum ("15.0", "1e+16", and "0" for an empty input, where sum stays the
// int 0).
//
// An object of a class (or a class) among the items or as the input is
// what Go cannot represent: its class may define __iter__ or __float__.
// Demo then returns an error matching executor.ErrUnsupported before it
// has written anything, and the Router hands the task to the Python
// handler of the path; without one, the task fails with the message Python
// gives when the class defines neither.
func Demo(ctx context.Context, ts executor.TaskStatus, input any) error {
	items, err := pyIter(input)
	if err != nil {
		return err
	}
	var sum float64
	summed := false
	for i, val := range items {
		if i%4096 == 4095 && ctx.Err() != nil {
			return ctx.Err()
		}
		f, err := pyFloat(val)
		if errors.Is(err, errValue) {
			return ts.SetFailure(ctx, DemoFailure)
		}
		if err != nil {
			return err
		}
		sum += f
		summed = true
	}
	text := "0"
	if summed {
		text = pickle.FloatRepr(sum)
	}
	return ts.StoreResponse(ctx, []byte(text), "text/plain")
}

// errValue marks where Python raises ValueError, the one exception the
// demo catches.
var errValue = errors.New("ValueError")

// pyTypeError is a Python TypeError or OverflowError escaping a handler: its
// text is str(exception), which becomes the FAILED message.
type pyTypeError struct{ msg string }

func (e *pyTypeError) Error() string { return e.msg }

// pyTypeName is type(v).__name__ as Python's error messages print it
// (tp_name: "decimal.Decimal" for C types living in a module).
func pyTypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int, int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case complex128:
		return "complex"
	case string:
		return "str"
	case pickle.Bytes:
		return "bytes"
	case []any:
		return "list"
	case pickle.Tuple:
		return "tuple"
	case pickle.Set:
		return "set"
	case pickle.FrozenSet:
		return "frozenset"
	case *pickle.Dict:
		return "dict"
	case pickle.Decimal:
		return "decimal.Decimal"
	case pickle.DateTime:
		return "datetime.datetime"
	case pickle.Date:
		return "datetime.date"
	case pickle.Time:
		return "datetime.time"
	case pickle.Timedelta:
		return "datetime.timedelta"
	case pickle.Global:
		return "type"
	case *pickle.Object:
		return v.Name
	default:
		return fmt.Sprintf("%T", v)
	}
}

// pyIter returns what `for val in v` visits.
func pyIter(v any) ([]any, error) {
	switch v := v.(type) {
	case []any:
		return v, nil
	case pickle.Tuple:
		return v, nil
	case pickle.Set:
		return v, nil
	case pickle.FrozenSet:
		return v, nil
	case *pickle.Dict:
		keys := make([]any, 0, v.Len())
		for _, e := range v.Entries() {
			keys = append(keys, e.Key)
		}
		return keys, nil
	case string:
		return pyChars(v), nil
	case pickle.Bytes:
		out := make([]any, len(v))
		for i, b := range v {
			out[i] = int64(b)
		}
		return out, nil
	case *pickle.Object:
		if items, ok := pyRange(v); ok {
			return items, nil
		}
		switch {
		case v.ListItems != nil:
			return v.ListItems, nil
		case v.DictItems != nil:
			return pyIter(v.DictItems)
		}
		// Its class may define __iter__: only Python can tell.
		return nil, executor.Unsupported(&pyTypeError{fmt.Sprintf("'%s' object is not iterable", pyTypeName(v))})
	case pickle.Global:
		// A class: an Enum, for one, is iterable.
		return nil, executor.Unsupported(&pyTypeError{fmt.Sprintf("'%s' object is not iterable", pyTypeName(v))})
	}
	return nil, &pyTypeError{fmt.Sprintf("'%s' object is not iterable", pyTypeName(v))}
}

// maxRange bounds the range() a handler input may expand to, so that a
// hostile range(10**18) fails instead of exhausting memory.
const maxRange = 1 << 24

// pyRange expands a pickled range (Python 3 builtins.range; Python 3 writes
// it as __builtin__.xrange below protocol 3, which reads back as range).
func pyRange(o *pickle.Object) ([]any, bool) {
	if o.Module != "builtins" || (o.Name != "range" && o.Name != "xrange") || len(o.Args) != 3 {
		return nil, false
	}
	var a [3]int64
	for i, v := range o.Args {
		n, ok := v.(int64)
		if !ok {
			return nil, false
		}
		a[i] = n
	}
	start, stop, step := a[0], a[1], a[2]
	if step == 0 {
		return nil, false
	}
	var out []any
	for n := start; (step > 0 && n < stop) || (step < 0 && n > stop); n += step {
		if len(out) == maxRange {
			return nil, false
		}
		out = append(out, n)
		if (step > 0 && n > math.MaxInt64-step) || (step < 0 && n < math.MinInt64-step) {
			break // the next value would not fit, so it is past stop
		}
	}
	return out, true
}

// pyChars splits a str into one-character strs. A string that is not UTF-8
// is a Python 2 str, which Python 3 handlers see latin-1 decoded: one
// character per byte.
func pyChars(s string) []any {
	out := make([]any, 0, len(s))
	if utf8.ValidString(s) {
		for _, r := range s {
			out = append(out, string(r))
		}
		return out
	}
	for i := 0; i < len(s); i++ {
		out = append(out, string(rune(s[i])))
	}
	return out
}

// pyFloat is Python 3's float(v). It returns errValue where Python raises
// ValueError and a *pyTypeError with Python's text for other exceptions.
func pyFloat(v any) (float64, error) {
	switch v := v.(type) {
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	case int:
		return float64(v), nil
	case int64:
		return float64(v), nil // Go rounds to nearest even, as Python does
	case *big.Int:
		f, _ := new(big.Float).SetInt(v).Float64()
		if math.IsInf(f, 0) {
			return 0, &pyTypeError{"int too large to convert to float"}
		}
		return f, nil
	case float64:
		return v, nil
	case string:
		if !utf8.ValidString(v) {
			v = latin1(v)
		}
		if f, ok := pyFloatText(v); ok {
			return f, nil
		}
		return 0, errValue
	case pickle.Bytes:
		if f, ok := pyFloatBytes(v); ok {
			return f, nil
		}
		return 0, errValue
	case pickle.Decimal:
		return decimalFloat(string(v))
	case *pickle.Object, pickle.Global:
		// Its class may define __float__ or __index__: only Python can tell.
		return 0, executor.Unsupported(&pyTypeError{fmt.Sprintf("float() argument must be a string or a real number, not '%s'", pyTypeName(v))})
	}
	return 0, &pyTypeError{fmt.Sprintf("float() argument must be a string or a real number, not '%s'", pyTypeName(v))}
}

func latin1(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// decimalFloat is Decimal.__float__: NaNs (with any payload) become nan, a
// signalling NaN raises ValueError, anything else is float(str(d)).
func decimalFloat(text string) (float64, error) {
	body := strings.TrimLeft(text, "+-")
	neg := strings.HasPrefix(text, "-")
	switch {
	case strings.HasPrefix(body, "sNaN"):
		return 0, errValue
	case strings.HasPrefix(body, "NaN"):
		if neg {
			return math.Copysign(math.NaN(), -1), nil
		}
		return math.NaN(), nil
	}
	if f, ok := pyFloatASCII(text); ok {
		return f, nil
	}
	return 0, errValue
}
