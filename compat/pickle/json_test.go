package pickle

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pythonEval runs a python3 program that reads JSON from stdin and writes
// JSON to stdout.
func pythonEval(t *testing.T, program string, in, out any) {
	t.Helper()
	py := pythonPath(t)
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", program)
	cmd.Stdin = strings.NewReader(string(b))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(res, out); err != nil {
		t.Fatalf("python3 output: %v\n%s", err, res)
	}
}

// TestFloatReprMatchesPython: float formatting (JSON numbers and dict
// keys) is Python's repr for random and edge-case doubles.
func TestFloatReprMatchesPython(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var bits []string
	var floats []float64
	add := func(f float64) {
		floats = append(floats, f)
		bits = append(bits, strconv.FormatUint(math.Float64bits(f), 16))
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e16, 1e15, 9999999999999998, 1e-4, 1e-5,
		0.00012345, 123456789012345678, 1.5e300, 5e-324, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.Inf(1), math.Inf(-1), math.NaN(), 100, 1e22, 1e21, 2.5e-7} {
		add(f)
	}
	for range 3000 {
		f := math.Float64frombits(r.Uint64())
		if r.IntN(3) == 0 {
			f = r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		}
		add(f)
	}
	var want []string
	pythonEval(t, `
import json, struct, sys
print(json.dumps([repr(struct.unpack(">d", int(h, 16).to_bytes(8, "big"))[0]) for h in json.load(sys.stdin)]))
`, bits, &want)
	for i, f := range floats {
		if got := FloatRepr(f); got != want[i] {
			t.Errorf("FloatRepr(%x) = %s, python says %s", math.Float64bits(f), got, want[i])
		}
	}
}

// TestReprMatchesPython: Python's repr of the kinds of dict keys that are
// not strings, and JSON string escaping, against python3 itself.
func TestReprMatchesPython(t *testing.T) {
	strs := []string{"", "plain", "it's", `say "hi"`, `both ' and "`, "back\\slash", "\x00\x01\x1f\x7f\t\n\r",
		"\u0080\u00a0\u00ad\u00e9\u00ff", "\u2028\u2029\u200b\ufeff", "€😀", "\ue000\U000f0000", "a\u0301", "\U0001F600"}
	var want struct {
		Str   []string `json:"str"`
		Bytes []string `json:"bytes"`
		JSON  []string `json:"json"`
		Cplx  []string `json:"cplx"`
		Misc  []string `json:"misc"`
	}
	var byteSamples [][]int
	for _, s := range append(strs, "\x00\xff\x80'\"\\") {
		b := []int{}
		for i := 0; i < len(s); i++ {
			b = append(b, int(s[i]))
		}
		byteSamples = append(byteSamples, b)
	}
	cplx := [][2]float64{{1, 2}, {0, -1}, {math.Copysign(0, -1), 1}, {-1.5, 0.25}, {1e20, -1e-20}, {2, 0}}
	var cplxText [][2]string // as text: JSON numbers lose the sign of -0.0
	for _, c := range cplx {
		cplxText = append(cplxText, [2]string{strconv.FormatFloat(c[0], 'g', -1, 64), strconv.FormatFloat(c[1], 'g', -1, 64)})
	}
	pythonEval(t, `
import datetime, decimal, json, sys
d = json.load(sys.stdin)
UTC = datetime.timezone.utc
misc = [(1, 'a'), (None,), (), (1.5, b'x', True), decimal.Decimal('1.10'),
        datetime.datetime(2024, 1, 2, 3, 4), datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.date(2020, 2, 29), datetime.time(1, 2), datetime.time(1, 2, 3, 4, tzinfo=UTC),
        datetime.timedelta(0), datetime.timedelta(-1, 5, 7), datetime.timedelta(seconds=3), frozenset([3, 1, 2])]
print(json.dumps({
    "str": [repr(s) for s in d["str"]],
    "bytes": [repr(bytes(b)) for b in d["bytes"]],
    "json": [json.dumps(s, ensure_ascii=False) for s in d["str"]],
    "cplx": [repr(complex(float(a), float(b))) for a, b in d["cplx"]],
    "misc": [repr(m) for m in misc],
}))
`, map[string]any{"str": strs, "bytes": byteSamples, "cplx": cplxText}, &want)
	for i, s := range strs {
		if got := pyStrRepr(s); got != want.Str[i] {
			t.Errorf("pyStrRepr(%q) = %s, python says %s", s, got, want.Str[i])
		}
		w := &jsonWriter{}
		w.str(s)
		if string(w.buf) != want.JSON[i] {
			t.Errorf("JSON of %q = %s, python says %s", s, w.buf, want.JSON[i])
		}
	}
	for i, b := range byteSamples {
		p := make([]byte, len(b))
		for j, c := range b {
			p[j] = byte(c)
		}
		if got := pyBytesRepr(p); got != want.Bytes[i] {
			t.Errorf("pyBytesRepr(%q) = %s, python says %s", p, got, want.Bytes[i])
		}
	}
	for i, c := range cplx {
		if got := complexRepr(complex(c[0], c[1])); got != want.Cplx[i] {
			t.Errorf("complexRepr(%v) = %s, python says %s", c, got, want.Cplx[i])
		}
	}
	misc := []any{
		Tuple{int64(1), "a"}, Tuple{nil}, Tuple{}, Tuple{1.5, Bytes("x"), true}, Decimal("1.10"),
		DateTime{Time: time.Date(2024, 1, 2, 3, 4, 0, 0, time.UTC), Naive: true},
		DateTime{Time: time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)},
		DateTime{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))},
		Date{2020, 2, 29}, Time{Hour: 1, Minute: 2}, Time{Hour: 1, Minute: 2, Second: 3, Microsecond: 4, HasOffset: true},
		Timedelta{}, Timedelta{Days: -1, Seconds: 5, Microseconds: 7}, Timedelta{Seconds: 3}, FrozenSet{int64(3), int64(1), int64(2)},
	}
	for i, m := range misc {
		if got := pyRepr(m); got != want.Misc[i] {
			t.Errorf("pyRepr(%s) = %s, python says %s", goString(m), got, want.Misc[i])
		}
	}
}

// TestJSONOfGoValues: ToJSON also renders plain Go values a producer would
// pass to Encode, and refuses what has no JSON form.
func TestJSONOfGoValues(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{map[string]any{"b": 1, "a": []string{"x"}}, `{"a":["x"],"b":1}`},
		{[]byte("hi"), `{"__bytes__":"aGk="}`},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)), `"2024-01-02T03:04:05+01:00"`},
		{90*time.Minute + time.Millisecond, `"PT1H30M0.001000S"`},
		{-36 * time.Hour, `"-P1DT12H"`},
		{[]any{uint8(1), int32(-2), float32(0.5)}, `[1,-2,0.5]`},
		{Set{"b", int64(2), nil, true, Tuple{}, NewDict(), 1.5, "a", math.NaN()}, `[null,true,1.5,2,"NaN","a","b",[],{}]`},
	}
	for _, c := range cases {
		if got := mustJSON(t, c.v); got != c.want {
			t.Errorf("ToJSON(%#v) = %s, want %s", c.v, got, c.want)
		}
	}
	if _, err := ToJSON(make(chan int)); err == nil {
		t.Error("ToJSON of a channel succeeded")
	}
	if got := mustJSON(t, []any{1, map[string]any{"a": []any{}}}, JSONIndent("\t")); got != "[\n\t1,\n\t{\n\t\t\"a\": []\n\t}\n]" {
		t.Errorf("indented: %q", got)
	}
}
