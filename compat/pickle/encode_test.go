package pickle

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rtCase is one value for testdata/roundtrip.py.
type rtCase struct {
	Name     string `json:"name"`
	Input    string `json:"input"`
	Expr     string `json:"expr,omitempty"`
	Original string `json:"original,omitempty"`
	Check    string `json:"check,omitempty"`
	// OnlyCheck: the value contains itself, so only Check applies.
	OnlyCheck bool `json:"only_check,omitempty"`
	// BytesLike: a bytearray (decoded to Bytes) may come back as bytes.
	BytesLike bool `json:"bytearray_as_bytes,omitempty"`
	py3only   bool // uses datetime.timezone, which Python 2 lacks
}

type rtResult struct {
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Protocol int      `json:"protocol"`
	NotPy2   []string `json:"not_py2"`
	Got      string   `json:"got"`
	Want     string   `json:"want"`
	Error    string   `json:"error"`
}

func runRoundTrip(t *testing.T, cases []rtCase) map[string]rtResult {
	t.Helper()
	py := pythonPath(t)
	path := filepath.Join(t.TempDir(), "cases.json")
	b, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "roundtrip.py"), path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("roundtrip.py: %v", err)
	}
	var results []rtResult
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("roundtrip.py output: %v\n%s", err, out)
	}
	m := map[string]rtResult{}
	for _, r := range results {
		m[r.Name] = r
	}
	if len(m) != len(cases) {
		t.Fatalf("roundtrip.py answered %d of %d cases", len(m), len(cases))
	}
	return m
}

// runRoundTrip2 loads the cases under python2.7, with pickle and with
// cPickle (testdata/roundtrip2.py); results are keyed by name and loader.
func runRoundTrip2(t *testing.T, cases []rtCase) map[string]rtResult {
	t.Helper()
	py := python2Path(t)
	path := filepath.Join(t.TempDir(), "cases2.json")
	b, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "roundtrip2.py"), path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("roundtrip2.py: %v", err)
	}
	var results []struct {
		rtResult
		Loader string `json:"loader"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("roundtrip2.py output: %v\n%s", err, out)
	}
	m := map[string]rtResult{}
	for _, r := range results {
		m[r.Name+"/"+r.Loader] = r.rtResult
	}
	if len(m) != 2*len(cases) {
		t.Fatalf("roundtrip2.py answered %d of %d loads", len(m), 2*len(cases))
	}
	return m
}

// checkRoundTrip2: every case that needs no Python 3 class loads under
// python2.7, with pickle and with cPickle, as the value it stands for.
func checkRoundTrip2(t *testing.T, cases []rtCase) {
	t.Helper()
	var py2 []rtCase
	for _, c := range cases {
		// An original is a Python 3 pickle: Python 2 has nothing to
		// compare with.
		if !c.py3only && c.Original == "" {
			py2 = append(py2, c)
		}
	}
	if len(py2) == 0 {
		return
	}
	results := runRoundTrip2(t, py2)
	for _, c := range py2 {
		for _, loader := range []string{"pickle", "cPickle"} {
			t.Run("python2.7/"+loader+"/"+c.Name, func(t *testing.T) {
				if r := results[c.Name+"/"+loader]; !r.OK {
					t.Errorf("python2.7 %s loaded %s, want %s %s", loader, r.Got, r.Want, r.Error)
				}
			})
		}
	}
}

func checkRoundTrip(t *testing.T, cases []rtCase) {
	t.Helper()
	defer checkRoundTrip2(t, cases)
	results := runRoundTrip(t, cases)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r := results[c.Name]
			if !r.OK {
				t.Fatalf("python3 loaded %s, want %s %s", r.Got, r.Want, r.Error)
			}
			if r.Protocol > 2 {
				t.Errorf("uses protocol %d opcodes; Python 2 reads protocol 2 at most", r.Protocol)
			}
			if c.py3only != (len(r.NotPy2) > 0) {
				t.Errorf("classes Python 2 lacks: %v (expected some: %v)", r.NotPy2, c.py3only)
			}
		})
	}
}

// TestEncodeLoadsInPython: Go values encoded by Encode load in python3 as
// the Python values they stand for, with types, and use nothing Python
// 2.7 could not load except the timezone of aware datetimes.
func TestEncodeLoadsInPython(t *testing.T) {
	shared := []any{int64(1)}
	cyclic := []any{nil}
	cyclic[0] = cyclic
	selfDict := NewDict()
	selfDict.Set("self", selfDict)
	vienna := time.FixedZone("CET", 3600)
	bigDict := NewDict()
	for i := range 1500 {
		bigDict.Set("k"+itoa(i), int64(i))
	}
	long := make([]any, 1001)
	for i := range long {
		long[i] = i
	}
	cases := []struct {
		name    string
		v       any
		expr    string
		check   string
		py3only bool
	}{
		{"none", nil, "None", "", false},
		{"bools", []any{true, false}, "[True, False]", "", false},
		{"ints", []any{0, 255, 256, 65535, 65536, -1, math.MaxInt32, math.MinInt32, math.MaxInt32 + 1,
			math.MinInt32 - 1, math.MaxInt64, math.MinInt64},
			"[0, 255, 256, 65535, 65536, -1, 2**31-1, -2**31, 2**31, -2**31-1, 2**63-1, -2**63]", "", false},
		{"sized ints", []any{int8(-5), uint8(200), int16(-300), uint16(60000), int32(-70000), uint32(4000000000),
			uint64(math.MaxUint64), uint(7)}, "[-5, 200, -300, 60000, -70000, 4000000000, 2**64-1, 7]", "", false},
		{"big ints", []any{new(big.Int).Lsh(big.NewInt(1), 100), new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 100)),
			bigInt(t, "9223372036854775808"), bigInt(t, "-9223372036854775809"), big.NewInt(5),
			new(big.Int).Lsh(big.NewInt(1), 4000)},
			"[2**100, -2**100, 2**63, -2**63-1, 5, 2**4000]", "", false},
		{"floats", []any{1.5, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), float32(0.5), 1e300},
			"[1.5, -0.0, math.inf, -math.inf, 0.5, 1e300]", "", false},
		{"nan", math.NaN(), "math.nan", "math.isnan(obj)", false},
		{"complex", []any{complex(1, 2), complex64(complex(0, -1))}, "[complex(1, 2), complex(0, -1)]", "", false},
		{"text", "café €😀\n\\", "'café €😀\\n\\\\'", "", false},
		{"empty string", "", "''", "", false},
		{"python 2 str bytes", "\xff\x00", "b'\\xff\\x00'", "", false},
		{"bytes", []any{Bytes("\x00\xff"), []byte{}, Bytes(nil), []byte("abc")}, "[b'\\x00\\xff', b'', b'', b'abc']", "", false},
		{"tuples", []any{Tuple{}, Tuple{1}, Tuple{1, "a"}, Tuple{1, 2, 3}, Tuple{1, 2, 3, 4, 5}},
			"[(), (1,), (1, 'a'), (1, 2, 3), (1, 2, 3, 4, 5)]", "", false},
		{"lists", []any{[]any{}, []any{1, []any{2}}, []string{"a", "b"}, []int{1, 2}, [2]float64{1, 2}},
			"[[], [1, [2]], ['a', 'b'], [1, 2], [1.0, 2.0]]", "", false},
		{"long list", long, "list(range(1001))", "", false},
		{"string map", map[string]any{"b": 1, "a": 2}, "{'a': 2, 'b': 1}", "list(obj) == ['a', 'b']", false},
		{"int map", map[int]string{2: "b", -1: "a"}, "{-1: 'a', 2: 'b'}", "", false},
		{"typed map", map[string][]int{"x": {1}}, "{'x': [1]}", "", false},
		{"dict with other keys", dict(t, int64(1), "one", Tuple{int64(1), int64(2)}, "t", nil, "n", Bytes("k"), "b",
			FrozenSet{int64(3)}, "f", 2.5, "x"),
			"{1: 'one', (1, 2): 't', None: 'n', b'k': 'b', frozenset({3}): 'f', 2.5: 'x'}", "", false},
		{"big dict", bigDict, "{'k%d' % i: i for i in range(1500)}", "", false},
		{"sets", []any{Set{int64(1), int64(2), int64(3)}, FrozenSet{"a"}, Set{}, FrozenSet{}},
			"[{1, 2, 3}, frozenset({'a'}), set(), frozenset()]", "", false},
		{"decimals", []any{Decimal("1.10"), Decimal("-Infinity"), Decimal("1E+2")},
			"[decimal.Decimal('1.10'), decimal.Decimal('-Infinity'), decimal.Decimal('1E+2')]", "", false},
		{"naive datetime", DateTime{Time: time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC), Naive: true},
			"datetime.datetime(2024, 1, 2, 3, 4, 5, 6)", "", false},
		{"datetime extremes", []any{DateTime{Time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Naive: true},
			DateTime{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Naive: true}},
			"[datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)]", "", false},
		{"time.Time UTC", time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC),
			"datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)", "", true},
		{"time.Time with offset", time.Date(2024, 6, 1, 12, 0, 0, 0, vienna),
			"datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))", "", true},
		{"time.Time negative offset", time.Date(2024, 6, 1, 12, 0, 0, 0, time.FixedZone("", -19800)),
			"datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30)))", "", true},
		{"aware DateTime", DateTime{Time: time.Date(2012, 3, 4, 5, 6, 7, 0, time.UTC)},
			"datetime.datetime(2012, 3, 4, 5, 6, 7, tzinfo=UTC)", "", true},
		{"date", Date{2020, 2, 29}, "datetime.date(2020, 2, 29)", "", false},
		{"time", Time{Hour: 1, Minute: 2, Second: 3, Microsecond: 4}, "datetime.time(1, 2, 3, 4)", "", false},
		{"time with offset", Time{Hour: 23, Minute: 59, HasOffset: true, Offset: 7200},
			"datetime.time(23, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))", "", true},
		{"timedeltas", []any{Timedelta{Days: -1, Seconds: 3600, Microseconds: 5}, Timedelta{Seconds: 90000},
			-1500 * time.Millisecond, 36 * time.Hour},
			"[datetime.timedelta(-1, 3600, 5), datetime.timedelta(1, 3600), datetime.timedelta(seconds=-1.5), datetime.timedelta(hours=36)]", "", false},
		{"classes", []any{Global{"collections", "OrderedDict"}, Global{"builtins", "int"}},
			"[collections.OrderedDict, int]", "", false},
		{"object by call", &Object{Module: "collections", Name: "OrderedDict", Args: []any{[]any{Tuple{"a", 1}}}},
			"collections.OrderedDict([('a', 1)])", "", false},
		{"object with state", &Object{Module: "__main__", Name: "Thing", NewObj: true, State: map[string]any{"a": []any{1}}},
			"Thing([1])", "", false},
		{"object with args", &Object{Module: "__main__", Name: "WithArgs", Args: []any{1, "two"}},
			"WithArgs(1, 'two')", "", false},
		{"list subclass", &Object{Module: "__main__", Name: "MyList", NewObj: true, ListItems: []any{1, 2}},
			"MyList([1, 2])", "", false},
		{"dict subclass", &Object{Module: "__main__", Name: "MyDict", NewObj: true, DictItems: dict(t, "k", "v")},
			"MyDict(k='v')", "", false},
		{"shared", []any{shared, shared}, "[[1], [1]]", "obj[0] is obj[1]", false},
		{"list containing itself", cyclic, "None", "obj[0] is obj", false},
		{"dict containing itself", selfDict, "None", "obj['self'] is obj", false},
	}
	var rt []rtCase
	for _, c := range cases {
		in, err := Encode(c.v)
		if err != nil {
			t.Fatalf("%s: Encode: %v", c.name, err)
		}
		rt = append(rt, rtCase{Name: c.name, Input: in, Expr: c.expr, Check: c.check, py3only: c.py3only,
			OnlyCheck: c.expr == "None" && c.check != ""})
	}
	checkRoundTrip(t, rt)
}

// TestReencodeVectors: every value Python pickled (protocols 2 and 4),
// decoded and encoded again by Go, loads in python3 equal to the original.
func TestReencodeVectors(t *testing.T) {
	skip := map[string]string{
		"bytearray":        "bytearray decodes to Bytes and is written back as bytes",
		"newobj_ex_kwargs": "keyword constructor arguments need protocol 4",
	}
	var rt []rtCase
	for _, v := range loadVectors(t) {
		if v.Source != "python3" || (v.Protocol != 2 && v.Protocol != 4) {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(v.Name, "_p2"), "_p4")
		val, err := Decode(v.Input)
		if err != nil {
			t.Fatalf("%s: Decode: %v", v.Name, err)
		}
		in, err := Encode(val)
		if _, ok := skip[base]; ok {
			continue
		}
		if err != nil {
			t.Fatalf("%s: Encode: %v", v.Name, err)
		}
		// What needs Python 3: aware datetimes and times, a timezone.
		py3only := strings.HasPrefix(base, "aware_") || base == "dates_times" || base == "timezone_alone" || base == "atp_request"
		rt = append(rt, rtCase{Name: v.Name, Input: in, Original: v.Input, py3only: py3only})
	}
	if len(rt) < 60 {
		t.Fatalf("only %d vectors to re-encode", len(rt))
	}
	checkRoundTrip(t, rt)
}

// TestEncodeDecode: Decode(Encode(v)) is v, in Go.
func TestEncodeDecode(t *testing.T) {
	vals := []any{
		nil, true, int64(-5), bigInt(t, "123456789012345678901234567890"), 2.5, complex(1, -1), "text", Bytes("b"),
		Tuple{int64(1), "x"}, []any{int64(1), []any{}}, dict(t, "a", int64(1), Tuple{int64(2)}, nil),
		Set{int64(1)}, FrozenSet{"f"}, Decimal("3.14"), DateTime{Time: time.Date(2000, 1, 2, 3, 4, 5, 6000, time.UTC), Naive: true},
		DateTime{Time: time.Date(2000, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))}, Date{1999, 12, 31},
		Time{Hour: 1, HasOffset: true, Offset: -3600}, Timedelta{Days: -2, Seconds: 5},
		Global{"my", "C"}, &Object{Module: "my", Name: "C", NewObj: true, State: dict(t, "a", int64(1)), ListItems: []any{int64(1)}},
	}
	for _, v := range vals {
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("Encode(%s): %v", goString(v), err)
		}
		got, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", goString(v), err)
		}
		if !equalValue(got, v) {
			t.Errorf("Decode(Encode(v)) = %s, want %s", goString(got), goString(v))
		}
	}
}

// TestEncodeErrors: values with no Python counterpart, with where they are.
func TestEncodeErrors(t *testing.T) {
	selfTuple := Tuple{nil}
	selfTuple[0] = []any{selfTuple}
	cases := []struct {
		name string
		v    any
		want error
		path string
	}{
		{"channel", make(chan int), ErrUnsupported, "$"},
		{"nested func", map[string]any{"a": []any{1, func() {}}}, ErrUnsupported, `$["a"][1]`},
		{"struct", struct{ A int }{1}, ErrUnsupported, "$"},
		{"pointer", new(int), ErrUnsupported, "$"},
		{"map with struct keys", map[struct{}]int{{}: 1}, ErrUnsupported, "$"},
		{"tuple inside itself", selfTuple, ErrRecursive, "$[0][0]"},
		{"unhashable set element", Set{[]any{1}}, ErrUnhashable, "$[0]"},
		{"bad decimal", Decimal("1.2.3"), ErrUnsupported, "$"},
		{"year 0", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), ErrUnsupported, "$"},
		{"date out of range", Date{2021, 2, 29}, ErrUnsupported, "$"},
		{"time out of range", Time{Hour: 24}, ErrUnsupported, "$"},
		{"object kwargs", &Object{Module: "m", Name: "C", Kwargs: dict(t, "y", 1)}, ErrUnsupported, "$"},
		{"object without class", &Object{}, ErrUnsupported, "$"},
		{"object state", &Object{Module: "m", Name: "C", State: make(chan int)}, ErrUnsupported, "$.State"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Encode(c.v)
			var ee *EncodeError
			if !errors.As(err, &ee) {
				t.Fatalf("got %v, want an *EncodeError", err)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if ee.Path != c.path {
				t.Fatalf("path %q, want %q (%v)", ee.Path, c.path, err)
			}
		})
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }
