package gohandlers

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/eoxserver/atpd/internal/testdb"

	"github.com/eoxserver/atpd/compat/pickle"
)

// runPython runs a Python 3 script that reads JSON on stdin and writes JSON
// on stdout, and decodes its answer into out.
func runPython(t *testing.T, script string, in, out any, args ...string) {
	t.Helper()
	py := testdb.Python(t)
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	cmd.Stdin = strings.NewReader(string(data))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(res, out); err != nil {
		t.Fatalf("python answer: %v\n%s", err, res)
	}
}

// floatCases are strings for float(): the grammar's corners plus random
// numbers in many forms.
func floatCases() []string {
	cases := []string{
		"", " ", "1", "-1", "+1", "1.5", " 1.5 ", "\t\n1.5\r\v\f", "1.", ".5", ".", "-.5", "+.5e1",
		"1e3", "1E3", "1e+3", "1e-3", "1e", "1e+", "e3", "1.5e3.2", "--1", "+-1", "1-",
		"inf", "-inf", "+inf", "Inf", "INF", "infinity", "Infinity", "-INFINITY", "infin", "in f", "infinityy",
		"nan", "NaN", "-nan", "+NAN", "nan(1)", "nana", "snan",
		"1_000", "1__000", "_1", "1_", "1_000.000_1", "1._5", "1_.5", "1e1_0", "1_e5", "1e_5", "0x10", "0X1p3",
		"0b1", "0o7", "1,5", "1 5", "١٢", "١٢.٥", "\u00a01.5", "1.5\u3000", "\u20081\u2009", "\u0085 2",
		"𝟏𝟐", "𝟘.𝟝", "²", "½", "一", "1e400", "-1e400", "1e-400", "4.9e-324", "2.4e-324", "1.7976931348623157e308",
		"1.7976931348623159e308", "0.30000000000000004", "00001", "0e999999999999", "1e999999999999",
		"9007199254740993", "123456789012345678901234567890", "0.1e-999999", "1\x00", "\x001", "true", "None",
		"1.0000000000000000000000000000000000001", "-0", "-0.0", "+0.0", "000.000e000",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) {
			continue
		}
		cases = append(cases,
			strconv.FormatFloat(f, 'g', -1, 64),
			strconv.FormatFloat(f, 'e', rng.IntN(20), 64),
			strconv.FormatFloat(rng.NormFloat64()*1e6, 'f', rng.IntN(8), 64))
	}
	return cases
}

func TestPyFloatTextMatchesPython(t *testing.T) {
	cases := floatCases()
	const script = `
import json, sys
out = []
for s in json.load(sys.stdin):
    try:
        out.append(repr(float(s)))
    except ValueError:
        out.append(None)
json.dump(out, sys.stdout)
`
	var want []*string
	runPython(t, script, cases, &want)
	for i, s := range cases {
		f, ok := pyFloatText(s)
		switch {
		case want[i] == nil && ok:
			t.Errorf("float(%q): got %s, Python raises ValueError", s, pickle.FloatRepr(f))
		case want[i] != nil && !ok:
			t.Errorf("float(%q): got ValueError, Python gives %s", s, *want[i])
		case want[i] != nil && pickle.FloatRepr(f) != *want[i]:
			t.Errorf("float(%q): got %s, Python gives %s", s, pickle.FloatRepr(f), *want[i])
		}
	}
}

func TestPyFloatBytesMatchesPython(t *testing.T) {
	cases := []string{"1.5", " 1_0 ", "\xa01", "inf", "١", "1e5", "", "\x0b2\x0c"}
	const script = `
import json, sys
out = []
for s in json.load(sys.stdin):
    try:
        out.append(repr(float(s.encode("latin-1"))))
    except ValueError:
        out.append(None)
json.dump(out, sys.stdout)
`
	// Send the strings as latin-1 code points so that Python rebuilds the
	// same bytes.
	in := make([]string, len(cases))
	for i, c := range cases {
		var b strings.Builder
		for j := 0; j < len(c); j++ {
			b.WriteRune(rune(c[j]))
		}
		in[i] = b.String()
	}
	var want []*string
	runPython(t, script, in, &want)
	for i, s := range cases {
		f, ok := pyFloatBytes([]byte(s))
		got := "ValueError"
		if ok {
			got = pickle.FloatRepr(f)
		}
		w := "ValueError"
		if want[i] != nil {
			w = *want[i]
		}
		if got != w {
			t.Errorf("float(%q): got %s, Python gives %s", s, got, w)
		}
	}
}

func TestPyFloatReprMatchesPython(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 15, 0.1, 0.2 + 0.1, 1e15, 1e16, 1e17, 123456789012345678,
		1e-4, 1e-5, 0.00012345, 1.5e-5, 1e22, 1e300, 5e-324, math.MaxFloat64, math.SmallestNonzeroFloat64,
		9999999999999998, 1234567890123456.7, 0.5, 2.5e-4, 100, 1e5}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		f := math.Float64frombits(rng.Uint64())
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			vals = append(vals, f)
		}
	}
	for range 500 {
		vals = append(vals, math.Round(rng.NormFloat64()*1e4)/100, float64(rng.IntN(1e9)))
	}
	// JSON cannot carry every float exactly, so send the bit patterns.
	bits := make([]string, len(vals))
	for i, v := range vals {
		bits[i] = strconv.FormatUint(math.Float64bits(v), 16)
	}
	const script = `
import json, struct, sys
json.dump([repr(struct.unpack("<d", int(b, 16).to_bytes(8, "little"))[0]) for b in json.load(sys.stdin)], sys.stdout)
`
	var want []string
	runPython(t, script, bits, &want)
	for i, v := range vals {
		if got := pickle.FloatRepr(v); got != want[i] {
			t.Errorf("repr(%v): got %s, Python gives %s", v, got, want[i])
		}
	}
	for _, c := range []struct {
		f    float64
		want string
	}{{math.Inf(1), "inf"}, {math.Inf(-1), "-inf"}, {math.NaN(), "nan"}} {
		if got := pickle.FloatRepr(c.f); got != c.want {
			t.Errorf("repr(%v) = %s, want %s", c.f, got, c.want)
		}
	}
}

// TestUnicodeCharClasses checks the whitespace and decimal tables against
// Python's for every code point both Unicode versions assign the same way.
func TestUnicodeCharClasses(t *testing.T) {
	const script = `
import json, sys, unicodedata
space = [c for c in range(0x110000) if chr(c).isspace()]
dec = {c: unicodedata.decimal(chr(c)) for c in range(0x110000) if unicodedata.decimal(chr(c), -1) >= 0}
json.dump({"space": space, "decimal": dec, "unidata": unicodedata.unidata_version}, sys.stdout)
`
	var want struct {
		Space   []rune
		Decimal map[string]int
		Unidata string
	}
	runPython(t, script, nil, &want)
	spaces := map[rune]bool{}
	for _, r := range want.Space {
		spaces[r] = true
	}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if pyIsSpace(r) != spaces[r] {
			t.Errorf("isspace(U+%04X): got %v, Python %v", r, pyIsSpace(r), spaces[r])
		}
	}
	for k, v := range want.Decimal {
		n, err := strconv.Atoi(k)
		if err != nil {
			t.Fatal(err)
		}
		if got := decimalValue(rune(n)); got != v {
			t.Errorf("decimal(U+%04X): got %d, Python (Unicode %s) %d", n, got, want.Unidata, v)
		}
	}
	// Digits Go knows but this Python's Unicode version does not are the
	// only allowed difference; count them so a broken table cannot hide.
	extra := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if decimalValue(r) >= 0 {
			if _, ok := want.Decimal[strconv.Itoa(int(r))]; !ok {
				extra++
			}
		}
	}
	if extra > 100 {
		t.Errorf("%d decimal digits unknown to Python %s: the Nd table is off", extra, want.Unidata)
	}
}
