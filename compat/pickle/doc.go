// Package pickle owns the task input format of EOxServer's ATP:
// base64(zlib(pickle)) as tracker.enqueueTask stores it, written by Python 2
// producers (pickle protocols 0 and 2) and Python 3 producers (protocols 3
// to 5). It decodes those inputs into Go values for Go handlers, renders
// them as JSON for people (`atpd decode-input`), and encodes Go values into
// inputs that Python 2 and Python 3 both load.
//
// # Go values
//
// Decoding gives, for each Python value:
//
//	None                        nil
//	bool                        bool
//	int, long                   int64, or *big.Int when outside int64
//	float                       float64
//	complex                     complex128
//	str (Python 3), unicode     string
//	str (Python 2)              string holding the same bytes (maybe not UTF-8)
//	bytes, bytearray            Bytes
//	tuple                       Tuple
//	list                        []any
//	dict, OrderedDict           *Dict (ordered entries, Python key equality)
//	set, frozenset              Set, FrozenSet
//	decimal.Decimal             Decimal (its text)
//	datetime.datetime           DateTime (naive, or aware with a fixed zone)
//	datetime.date, time         Date, Time
//	datetime.timedelta          Timedelta
//	a class itself              Global
//	any other instance          *Object (module, name, arguments, state)
//
// Aware datetimes are recognised with datetime.timezone (Python 3), pytz's
// UTC and zones, and Django's old UTC class as tzinfo; a datetime with any
// other tzinfo is kept as an *Object rather than guessed at.
//
// # JSON
//
// ToJSON writes: None null; bool; int exact (big ones too); float as
// Python's repr, NaN and infinities as the strings "NaN", "Infinity",
// "-Infinity"; str as a string (a Python 2 str that is not UTF-8 as its
// bytes read as Latin-1); bytes as {"__bytes__": base64}; tuple and list as
// arrays; set and frozenset as arrays sorted (null, booleans, numbers by
// value, strings, arrays, objects); dict as an object in its order, keys
// that are not strings written as their Python repr; datetime, date, time
// as ISO 8601 (isoformat); timedelta as an ISO 8601 duration (P1DT2H3.500000S,
// with a leading minus when negative); Decimal as its string; complex as
// {"__complex__": [real, imag]}; a class as {"__global__": "module.Name"};
// another object as {"__object__": "module.Name", "args": [...],
// "kwargs": {...}, "state": ..., "items": [...], "dictitems": {...}}, the
// members present when non-empty.
//
// # Limits
//
// Inputs come from a database any producer writes to, so decoding is
// bounded: DecodeOptions.MaxSize caps the decompressed size (a zlib bomb
// stops after MaxSize bytes), declared lengths are checked against the
// bytes left before anything is allocated, container nesting is capped by
// DecodeOptions.MaxDepth, and a dict key or set element costs its size once
// however often the pickle reuses it (keys are short digests, cached per
// object). Only a malformed pickle is an error (an *Error naming the
// opcode and its offset); an unknown class is not.
//
// Strings and Bytes in a decoded value share the decompressed pickle's
// memory instead of each being copied: a value keeps that buffer (at most
// MaxSize) alive. Modifying a Bytes in place changes that value wherever
// the pickle referred to it, as it would in Python, and nothing else.
//
// # Entry points
//
// Decode and Encode convert between Go values and the stored text.
// Unpickle and Pickle work on raw pickles. DecodeAuto accepts any of the
// stored text, a raw pickle or a zlib-compressed one (for `atpd
// decode-input`), and ToJSON renders a value, compact or with JSONIndent.
//
// # Why not gopickle's unpickler
//
// github.com/nlpodyssey/gopickle's Unpickler served as the reference for
// the opcode semantics, but this package runs its own opcode loop over the
// decompressed bytes, because that Unpickler cannot be made to meet the
// requirements above: its errors carry no opcode offset; it allocates
// every declared length before reading (a 9-byte BINBYTES8 header can ask
// for exabytes); it panics on some malformed input (LONG1 of length 0, an odd
// number of DICT items); REDUCE on a class it does not know is an error,
// not a generic object; STRING escapes, raw-unicode-escape and datetime,
// Decimal and _codecs.encode are left undone; its Dict looks keys up by a
// linear reflect.DeepEqual scan, quadratic for large dicts; and lists stay
// *types.List pointers that handlers would have to know about. gopickle's
// types are not used either, for the last two reasons; the tests use its
// unpickler as a second opinion on the Python-made vectors.
package pickle
