package pickle

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMalformed: each bad pickle is an *Error matching ErrPickle that names
// the failing opcode and its offset.
func TestMalformed(t *testing.T) {
	cases := []struct {
		name   string
		data   string
		offset int
		msg    string // part of the message
		cause  error  // more precise sentinel, if any
	}{
		{"empty", "", 0, "end of data", nil},
		{"no STOP", "\x80\x02K\x01", 4, "truncated", nil},
		{"unknown opcode", "\x80\x02\xff.", 2, "unknown opcode 0xff", nil},
		{"unsupported protocol", "\x80\x06N.", 0, "PROTO at offset 0: unsupported pickle protocol: 6", nil},
		{"BINUNICODE too long", "X\xff\xff\xff\xffabc.", 0, "declared length 4294967295 exceeds the 4 bytes left", nil},
		{"BINBYTES8 huge", "\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.", 2, "BINBYTES8 at offset 2: declared length", nil},
		{"BINUNICODE8 huge", "\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x80", 2, "declared length 9223372036854775808", nil},
		{"BYTEARRAY8 huge", "\x80\x05\x96\x00\x00\x00\x00\x01\x00\x00\x00", 2, "declared length 4294967296", nil},
		{"FRAME huge", "\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.", 2, "frame length", nil},
		{"LONG4 negative", "\x8b\xff\xff\xff\xff.", 0, "negative byte count", nil},
		{"LONG4 huge", "\x8b\xff\xff\xff\x7f.", 0, "declared length 2147483647", nil},
		{"BINSTRING negative", "T\x00\x00\x00\x80.", 0, "negative byte count", nil},
		{"short argument", "J\x01\x02", 0, "BININT at offset 0: data ends inside", nil},
		{"STRING unquoted", "Sabc\n.", 0, "must be quoted", nil},
		{"STRING mismatched quotes", "S'abc\"\n.", 0, "must be quoted", nil},
		{"STRING bad hex escape", "S'\\x4'\n.", 0, `invalid \x escape`, nil},
		{"STRING trailing backslash", "S'ab\\'\n.", 0, "trailing", nil},
		{"UNICODE truncated escape", "Vab\\u12\n.", 0, `truncated \uXXXX`, nil},
		{"UNICODE out of range", "V\\U00110000\n.", 0, "out of range", nil},
		{"line without newline", "I12", 0, "not terminated by a newline", nil},
		{"INT not a number", "Iabc\n.", 0, "invalid INT argument", nil},
		{"FLOAT not a number", "Fx\n.", 0, "invalid FLOAT argument", nil},
		{"BINUNICODE invalid UTF-8", "X\x02\x00\x00\x00\xff\xfe.", 0, "invalid UTF-8 byte 0xff", nil},
		{"STOP on empty stack", ".", 0, "STOP at offset 0: unpickling stack underflow", nil},
		{"APPEND on empty stack", "a.", 0, "APPEND at offset 0: unpickling stack underflow", nil},
		{"stack underflow across mark", "N(a.", 2, "underflow", nil},
		{"POP_MARK without MARK", "1.", 0, "could not find MARK", nil},
		{"TUPLE without MARK", "K\x01t.", 2, "could not find MARK", nil},
		{"memo miss", "h\x05.", 0, "BINGET at offset 0: memo value not found at index 5", nil},
		{"LONG_BINGET miss", "NqXj\xff\xff\xff\xff.", 3, "memo value not found at index 4294967295", nil},
		{"bad PUT index", "Np-1\n.", 1, "invalid PUT index", nil},
		{"DICT odd items", "(K\x01d.", 3, "odd number of items", nil},
		{"APPEND to int", "K\x01K\x02a.", 4, "cannot append to int", nil},
		{"SETITEM on list", "]K\x01K\x02s.", 5, "cannot set items on list", nil},
		{"ADDITEMS on dict", "}(K\x01\x90.", 4, "cannot add items to dict", nil},
		{"unhashable dict key", "}]K\x01s.", 4, "unhashable type: list", ErrUnhashable},
		{"unhashable set element", "\x8f(}\x90.", 3, "unhashable type: dict", ErrUnhashable},
		{"unhashable tuple key", "}]\x85K\x01s.", 5, "unhashable type: list", ErrUnhashable},
		{"PERSID", "P1\n.", 0, "persistent id", nil},
		{"BINPERSID", "K\x01Q.", 2, "persistent id", nil},
		{"EXT1", "\x82\x01.", 0, "extension codes", nil},
		{"NEXT_BUFFER", "\x80\x05\x97.", 2, "out-of-band", nil},
		{"REDUCE args not a tuple", "c__main__\nX\nK\x01R.", 14, "REDUCE arguments must be a tuple, got int", nil},
		{"REDUCE on an int", "K\x01)R.", 3, "int is not callable", nil},
		{"NEWOBJ on an int", "K\x01)\x81.", 3, "NEWOBJ class must be a class", nil},
		{"STACK_GLOBAL of ints", "K\x01K\x02\x93.", 4, "STACK_GLOBAL requires str", nil},
		{"BUILD on an int", "K\x01}b.", 3, "cannot set state on int", nil},
		{"datetime with bad state", "cdatetime\ndatetime\nU\x03abc\x85R.", 25, "datetime.datetime: integer argument expected, got str", nil},
		{"datetime month 13", "cdatetime\ndatetime\nM\xdc\x07K\rK\x01\x87R.", 27, "month 13 must be in 1..12", nil},
		{"date Feb 30", "cdatetime\ndate\nM\xdc\x07K\x02K\x1e\x87R.", 23, "day 30 is out of range for 2012-02", nil},
		{"timedelta overflow", "cdatetime\ntimedelta\nJ\x00\xca\x9a\x3b\x85R.", 26, "must have magnitude", nil},
		{"Decimal garbage", "cdecimal\nDecimal\nX\x03\x00\x00\x00abc\x85R.", 26, `invalid literal "abc"`, nil},
		{"latin1 beyond U+00FF", "c_codecs\nencode\nX\x03\x00\x00\x00\xe2\x82\xacX\x06\x00\x00\x00latin1\x86R.", 36, "beyond U+00FF", nil},
		{"bytes(n) refused", "c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.", 25, "cannot make bytes from int", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := Unpickle([]byte(c.data))
			if err == nil {
				t.Fatalf("decoded %s, want an error", goString(v))
			}
			if !errors.Is(err, ErrPickle) {
				t.Fatalf("error %q does not match ErrPickle", err)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %q is not a *Error", err)
			}
			if pe.Offset != c.offset {
				t.Errorf("offset %d, want %d (%v)", pe.Offset, c.offset, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if c.cause != nil && !errors.Is(err, c.cause) {
				t.Errorf("error %q does not match %v", err, c.cause)
			}
		})
	}
}

// TestLenient: what Python accepts and this package must accept too.
func TestLenient(t *testing.T) {
	cases := []struct {
		name string
		data string
		want string // JSON
	}{
		{"trailing data after STOP", "K\x01.garbage", "1"},
		{"unknown class via REDUCE", "cmy.mod\nThing\n(K\x01tR.", `{"__object__":"my.mod.Thing","args":[1]}`},
		{"unknown class via INST with args", "(K\x02imy\nOld\n.", `{"__object__":"my.Old","args":[2]}`},
		{"unknown class via OBJ", "(cmy\nC\nK\x03o.", `{"__object__":"my.C","args":[3]}`},
		{"class itself", "cmy\nC\n.", `{"__global__":"my.C"}`},
		{"protocol 0 int with sign and spaces", "I -12 \n.", "-12"},
		{"protocol 0 int beyond int64", "I123456789012345678901234\n.", "123456789012345678901234"},
		{"LONG with L", "L-99999999999999999999L\n.", "-99999999999999999999"},
		{"FLOAT overflow is inf", "F1e999\n.", `"Infinity"`},
		{"LONG1 of zero length", "\x8a\x00.", "0"},
		{"LONG1 negative", "\x8a\x02\x00\x80.", "-32768"},
		{"LONG1 nine bytes", "\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x7f.", "2361183241434822606847"},
		{"STRING octal escapes", "S'\\101\\7\\0'\n.", "\"A\\u0007\\u0000\""},
		{"STRING unknown escape kept", "S'\\q'\n.", `"\\q"`},
		{"UNICODE backslash pair kept", "Va\\\\u0041\n.", `"a\\\\u0041"`},
		{"UNICODE lone surrogate", "V\\ud800x\n.", "\"\uFFFDx\""},
		{"BINUNICODE CESU pair", "X\x06\x00\x00\x00\xed\xa0\xbd\xed\xb8\x80.", `"😀"`},
		{"BINUNICODE lone surrogate", "X\x03\x00\x00\x00\xed\xa0\x80.", "\"\uFFFD\""},
		{"dict key replaced in place", "}(K\x01X\x01\x00\x00\x00aG?\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00bu.", `{"1":"b"}`},
		{"set dedups equal numbers", "c__builtin__\nset\n](K\x01G?\xf0\x00\x00\x00\x00\x00\x00\x88e\x85R.", "[1]"},
		{"POP drops the mark when the frame is empty", "(0K\x05.", "5"},
		{"DUP", "K\x07\x32\x86.", "[7,7]"},
		{"READONLY_BUFFER is harmless", "\x80\x05C\x01a\x98.", `{"__bytes__":"YQ=="}`},
		{"sparse memo index", "K\x09r\x00\x00\x00\x40j\x00\x00\x00\x40\x86.", "[9,9]"},
		{"datetime from fields", "cdatetime\ndatetime\n(M\xdc\x07K\x03K\x04K\x05tR.", `"2012-03-04T05:00:00"`},
		{"datetime with unknown tzinfo kept", "cdatetime\ndatetime\nC\n\x07\xdc\x03\x04\x05\x06\x07\x00\x00\x00cmy\nTZ\n)R\x86R.",
			`{"__object__":"datetime.datetime","args":[{"__bytes__":"B9wDBAUGBwAAAA=="},{"__object__":"my.TZ"}]}`},
		{"_codecs.encode unknown codec kept", "c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.",
			`{"__object__":"_codecs.encode","args":["a","rot13"]}`},
		{"list subclass items", "cmy\nL\n)\x81(K\x01K\x02e.", `{"__object__":"my.L","items":[1,2]}`},
		{"dict subclass items", "cmy\nD\n)\x81K\x01K\x02s.", `{"__object__":"my.D","dictitems":{"1":2}}`},
		{"BUILD merges dict state", "cmy\nC\n)\x81}K\x01K\x02sb}K\x03K\x04sb.", `{"__object__":"my.C","state":{"1":2,"3":4}}`},
		{"py2 names are mapped below protocol 3", "\x80\x02c__builtin__\nunicode\n.", `{"__global__":"builtins.str"}`},
		{"py2 names are not mapped from protocol 3", "\x80\x03c__builtin__\nunicode\n.", `{"__global__":"__builtin__.unicode"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := Unpickle([]byte(c.data))
			if err != nil {
				t.Fatalf("Unpickle: %v", err)
			}
			if got := mustJSON(t, v); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

// deepLists is a pickle of n lists nested in each other.
func deepLists(n int) []byte {
	return []byte(strings.Repeat("]", n) + strings.Repeat("a", n-1) + ".")
}

// TestDepthLimit: nesting beyond MaxDepth is ErrTooDeep, found without
// recursion (a 100,000-level pickle would otherwise be a stack overflow in
// whatever walks the value next), whichever way the nesting is built.
func TestDepthLimit(t *testing.T) {
	// A list A of height 600 hidden in B, then A made 600 deeper after B
	// recorded its height: only the final walk sees B's real depth.
	var late bytes.Buffer
	late.WriteString("]q\x00") // A, memo 0
	late.WriteString(strings.Repeat("]", 599) + "h\x00" + strings.Repeat("a", 599))
	late.WriteString("q\x01" + "0") // B (stack: A B), memo 1, popped
	late.WriteString(strings.Repeat("]", 600) + strings.Repeat("a", 600))
	late.WriteString("0h\x01.")

	cases := []struct {
		name  string
		data  []byte
		opts  DecodeOptions
		fails bool
	}{
		{"100000 lists", deepLists(100000), DecodeOptions{}, true},
		{"100000 tuples", []byte(")" + strings.Repeat("\x85", 100000) + "."), DecodeOptions{}, true},
		{"100000 dicts", []byte(strings.Repeat("}K\x01", 100000) + "}" + strings.Repeat("s", 100000) + "."), DecodeOptions{}, true},
		{"100000 objects", []byte("N" + strings.Repeat("cmy\nC\n(", 100000) + strings.Repeat("tR", 100000) + "."), DecodeOptions{}, true},
		{"at the limit", deepLists(DefaultMaxDepth), DecodeOptions{}, false},
		{"one beyond the limit", deepLists(DefaultMaxDepth + 1), DecodeOptions{}, true},
		{"custom limit", deepLists(50), DecodeOptions{MaxDepth: 49}, true},
		{"deepened after embedding", late.Bytes(), DecodeOptions{}, true},
		{"deepened after embedding, higher limit", late.Bytes(), DecodeOptions{MaxDepth: 1300}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			v, err := c.opts.Unpickle(c.data)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v", took)
			}
			if !c.fails {
				if err != nil {
					t.Fatalf("Unpickle: %v", err)
				}
				if _, err := ToJSON(v); err != nil {
					t.Fatalf("ToJSON of an accepted value: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTooDeep) || !errors.Is(err, ErrPickle) {
				t.Fatalf("got %v, want ErrTooDeep and ErrPickle", err)
			}
		})
	}
}

// TestNoAllocationForDeclaredLengths: a header declaring gigabytes costs
// nothing before it is refused.
func TestNoAllocationForDeclaredLengths(t *testing.T) {
	inputs := [][]byte{
		[]byte("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x00."),
		[]byte("B\xff\xff\xff\x7f."),
		[]byte("\x8b\xff\xff\xff\x7f."),
		[]byte("\x80\x05\x96\x00\x00\x00\x40\x00\x00\x00\x00."),
	}
	for _, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := Unpickle(in); err == nil {
			t.Fatalf("%q decoded", in)
		}
		runtime.ReadMemStats(&after)
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("%q: allocated %d bytes before failing", in, d)
		}
	}
}

// TestCycles: a list containing itself decodes into an []any containing
// itself; ToJSON refuses it instead of looping.
func TestCycles(t *testing.T) {
	v, err := Unpickle([]byte("]q\x00h\x00a."))
	if err != nil {
		t.Fatal(err)
	}
	l := v.([]any)
	inner := l[0].([]any)
	if &inner[0] != &l[0] {
		t.Fatal("the list does not contain itself")
	}
	if _, err := ToJSON(v); !errors.Is(err, ErrRecursive) {
		t.Fatalf("ToJSON: got %v, want ErrRecursive", err)
	}
	// A dict holding itself through an object's state.
	v, err = Unpickle([]byte("}q\x00X\x01\x00\x00\x00scmy\nC\n)\x81q\x01}X\x01\x00\x00\x00dh\x00sbs."))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Dict)
	o, _ := d.Get("s")
	st := o.(*Object).State.(*Dict)
	back, _ := st.Get("d")
	if back != any(d) {
		t.Fatal("the object's state does not refer back to the dict")
	}
	if _, err := ToJSON(v); !errors.Is(err, ErrRecursive) {
		t.Fatalf("ToJSON: got %v, want ErrRecursive", err)
	}
}

// TestSharedBlowUp: 60 levels of tuples each holding the previous twice is
// a few hundred bytes of pickle and 2^60 leaves when written out; decoding
// stays linear, and ToJSON stops at its byte limit.
func TestSharedBlowUp(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("K\x01")
	for i := 0; i < 60; i++ {
		b.WriteString("q\x00h\x00\x86")
	}
	b.WriteString(".")
	start := time.Now()
	v, err := Unpickle(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ToJSON(v, JSONMaxBytes(1<<20)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ToJSON: got %v, want ErrTooLarge", err)
	}
	// As a dict key and a set element the same tuple is hashed once per
	// distinct sub-tuple (Python, which does not cache tuple hashes,
	// would take 2^60 steps here).
	var k bytes.Buffer
	k.WriteString("}K\x01")
	for i := 0; i < 60; i++ {
		k.WriteString("q\x00h\x00\x86")
	}
	k.WriteString("q\x01Ns\x8f(h\x01\x90\x86.")
	kv, err := Unpickle(k.Bytes())
	if err != nil {
		t.Fatalf("tuple key: %v", err)
	}
	// Encoding checks the set element is hashable: that too must not
	// unfold the tuple.
	if _, err := Encode(kv); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// TestDictSemantics: Python's key equality, order and replacement.
func TestDictSemantics(t *testing.T) {
	d := NewDict()
	steps := []struct{ k, v any }{
		{int64(1), "a"}, {true, "b"}, {1.0, "c"}, {"1", "d"}, {Bytes("1"), "e"},
		{Tuple{int64(1), "x"}, "f"}, {Tuple{1.0, "x"}, "g"}, {nil, "h"}, {FrozenSet{int64(2), int64(1)}, "i"},
		{FrozenSet{int64(1), int64(2)}, "j"}, {bigInt(t, "100000000000000000000"), "k"}, {1e20, "l"},
	}
	for _, s := range steps {
		if err := d.Set(s.k, s.v); err != nil {
			t.Fatalf("Set(%v): %v", s.k, err)
		}
	}
	wantKeys := []any{int64(1), "1", Bytes("1"), Tuple{int64(1), "x"}, nil, FrozenSet{int64(2), int64(1)}, bigInt(t, "100000000000000000000")}
	wantVals := []any{"c", "d", "e", "g", "h", "j", "l"}
	if d.Len() != len(wantKeys) {
		t.Fatalf("len %d, want %d: %s", d.Len(), len(wantKeys), goString(d))
	}
	for i, e := range d.Entries() {
		if !equalValue(e.Key, wantKeys[i]) || e.Value != wantVals[i] {
			t.Errorf("entry %d = %v: %v, want %v: %v", i, e.Key, e.Value, wantKeys[i], wantVals[i])
		}
	}
	if v, ok := d.Get(1.0); !ok || v != "c" {
		t.Errorf("Get(1.0) = %v, %v", v, ok)
	}
	if err := d.Set([]any{1}, "x"); !errors.Is(err, ErrUnhashable) {
		t.Errorf("list key: %v", err)
	}
	// Past the linear-scan size the map must agree.
	big := NewDict()
	for i := range 100 {
		big.Set(int64(i), i)
		big.Set(float64(i), i+1000)
		big.Set(Tuple{int64(i)}, i)
	}
	if big.Len() != 200 {
		t.Fatalf("big dict has %d entries, want 200", big.Len())
	}
	if v, _ := big.Get(int64(50)); v != 1050 {
		t.Fatalf("big[50] = %v", v)
	}
	m, ok := dict(t, "a", int64(1), "b", nil).StringMap()
	if !ok || !reflect.DeepEqual(m, map[string]any{"a": int64(1), "b": nil}) {
		t.Fatalf("StringMap = %v, %v", m, ok)
	}
	if _, ok := big.StringMap(); ok {
		t.Fatal("StringMap of int keys succeeded")
	}
}

// TestRepeatedHugeValues: values that are expensive to hash or print,
// memoised once and used many times, cost their price once.
func TestRepeatedHugeValues(t *testing.T) {
	huge := make([]byte, 1<<20) // a 1 MiB integer (8 million bits)
	for i := range huge {
		huge[i] = byte(i*7 + 1)
	}
	huge[len(huge)-1] = 0x11
	long4 := append([]byte{opLong4, 0, 0, 0x10, 0}, huge...)

	var asKeys bytes.Buffer // 500 dicts keyed by the same memoised integer
	asKeys.Write(long4)
	asKeys.WriteString("q\x000]")
	for range 500 {
		asKeys.WriteString("}h\x00Nsa")
	}
	asKeys.WriteString(".")

	var inJSON bytes.Buffer // a list of the same integer 50 times
	inJSON.WriteString("]")
	inJSON.Write(long4)
	inJSON.WriteString("q\x00a" + strings.Repeat("h\x00a", 49) + ".")

	var frozen bytes.Buffer // a large frozenset added to 500 sets
	frozen.WriteString("(")
	for i := range 2000 {
		frozen.WriteString("X\x0c\x00\x00\x00" + strings.Repeat("x", 8) + string(rune('A'+i%26)) + string(rune('A'+i/26%26)) + string(rune('A'+i/676%26)) + string(rune('a'+i/17576)))
	}
	frozen.WriteString("\x91q\x000]")
	for range 500 {
		frozen.WriteString("\x8f(h\x00\x90a")
	}
	frozen.WriteString(".")

	for name, data := range map[string][]byte{"int keys": asKeys.Bytes(), "int in JSON": inJSON.Bytes(), "frozenset elements": frozen.Bytes()} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			v, err := Unpickle(data)
			if err != nil {
				t.Fatal(err)
			}
			// Recomputing the 1 MiB integer's or the frozenset's key on
			// each use would take minutes.
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("decoding took %v", took)
			}
			if _, err := ToJSON(v, JSONMaxBytes(16<<20)); err != nil && !errors.Is(err, ErrTooLarge) {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("decoding and JSON took %v", took)
			}
		})
	}
	if _, err := Unpickle([]byte("(K\x01\x91(K\x02\x90.")); err == nil || !strings.Contains(err.Error(), "cannot add items to frozenset") {
		t.Fatalf("ADDITEMS on a frozenset: %v", err)
	}
}
