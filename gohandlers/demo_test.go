package gohandlers

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/internal/testdb"
)

// recorder is a TaskStatus that records the handler's calls as the Python
// side of the differential test does.
type recorder struct {
	calls [][]string
}

func (r *recorder) Info(context.Context) (executor.Info, error) {
	return executor.Info{Type: "T", Identifier: "i", Status: djangodb.Running}, nil
}
func (r *recorder) Identifier() (string, string) { return "T", "i" }
func (r *recorder) Status(context.Context) (djangodb.Status, error) {
	return djangodb.Running, nil
}
func (r *recorder) SetSuccess(_ context.Context, m string) error {
	r.calls = append(r.calls, []string{"setSuccess", m})
	return nil
}
func (r *recorder) SetFailure(_ context.Context, m string) error {
	r.calls = append(r.calls, []string{"setFailure", m})
	return nil
}
func (r *recorder) SetPaused(_ context.Context, m string) error {
	r.calls = append(r.calls, []string{"setPaused", m})
	return nil
}
func (r *recorder) SetRunning(_ context.Context, m string) error {
	r.calls = append(r.calls, []string{"setRunning", m})
	return nil
}
func (r *recorder) StoreResponse(_ context.Context, data []byte, mime string) error {
	r.calls = append(r.calls, []string{"storeResponse", string(data), mime})
	return nil
}

// demoInputs are Python expressions for task inputs: what producers send and
// every corner of iter() and float() the demo meets.
var demoInputs = []string{
	"(1, 2, 3, 4, 5)", "[1.5, 2.5]", "(1, 'x')", "[]", "()", "None", "5", "1.5", "True", "1j",
	"'12345'", "'1.5'", "' 1 '", "''", "b'123'", "bytearray(b'12')", "b''",
	"{'1': 'a', '2.5': 'b'}", "{1: 2, 3: 4}", "{(1,): 2}", "{}",
	"[None]", "[[1]]", "[(1,)]", "[{1}]", "[frozenset()]", "[{}]", "[1j]", "[b'x']",
	"[10**400]", "[-10**400]", "[2**53 + 1]", "[2**1024 - 2**970]", "[2**1024 - 2**969]", "[12345678901234567890123]",
	"[decimal.Decimal('1.1'), decimal.Decimal('-0')]", "[decimal.Decimal('sNaN')]", "[decimal.Decimal('-sNaN5')]",
	"[decimal.Decimal('NaN')]", "[decimal.Decimal('-NaN12')]", "[decimal.Decimal('-Infinity')]",
	"[decimal.Decimal('1E+500')]", "[decimal.Decimal('1.000000000000000000000001')]",
	"[datetime.datetime(2020, 1, 1)]", "[datetime.date(2020, 1, 1)]", "[datetime.timedelta(1)]", "[datetime.time(1)]",
	"datetime.date(2020, 1, 1)", "decimal.Decimal(3)",
	"['1_000', ' 2e3 ', '+.5', '\\t7\\n']", "['inf', '-inf']", "['nan']", "['infinity', 1]", "['1e400']",
	"[0.1, 0.2]", "[1e16]", "[1e15, 0.5]", "[1e-5]", "[0.0001]", "[-0.0]", "[5e-324]", "[1e308, 1e308]",
	"['\\u0661\\u0662']", "['\\xa01']", "['\\u3000 3 ']", "['1\\x00']", "['0x10']", "['1__0']",
	"{1, 2, 3}", "frozenset([1.5])", "collections.OrderedDict([('1', 2), ('3', 4)])",
	"[True, False, True]", "[1, '2', b'3', 4.5, decimal.Decimal('5.5')]",
	"['1', 'x', None]", "[None, 'x']", "[1, 2, [3]]", "range(4)", "range(1, 10, 3)", "[range(2)]",
	"[1] * 5000", "[0.1] * 10", "list(range(-50, 51))", "tuple(str(i) for i in range(100))",
}

// pyDemo runs the Python demo handler (integration/tools/atp_demo.py, the
// behaviour of EOxServer's tools/atp_demo.py) on each input after a pickle
// round trip, recording its calls and the exception it raises.
func pyDemo(t *testing.T, in []map[string]any) []demoResult {
	t.Helper()
	script := `
import base64, binascii, collections, datetime, decimal, json, pickle, sys, zlib
sys.path.insert(0, sys.argv[1])
from tools.atp_demo import handler

class Recorder:
    def __init__(self):
        self.calls = []
    def setFailure(self, message=""):
        self.calls.append(["setFailure", message])
    def setSuccess(self, message=""):
        self.calls.append(["setSuccess", message])
    def storeResponse(self, response, mimeType="text/xml"):
        self.calls.append(["storeResponse", response, mimeType])

out = []
for case in json.load(sys.stdin):
    if "raw" in case:
        data = binascii.unhexlify(case["raw"])
    else:
        data = pickle.dumps(eval(case["expr"]), case["protocol"])
    # What a Python 3 daemon hands the handler; latin1 is how Python 3 reads
    # Python 2 str.
    value = pickle.loads(data, encoding="latin1")
    ts = Recorder()
    try:
        handler(ts, value)
        err = None
    except Exception as e:
        err = str(e)
    out.append({"input": base64.b64encode(zlib.compress(data)).decode(), "calls": ts.calls, "error": err})
json.dump(out, sys.stdout)
`
	var res []demoResult
	runPython(t, script+"\n", in, &res, filepath.Join(testdb.RepoRoot(t), "integration"))
	return res
}

// decode is pickle.Decode with a decoder panic reported as an error, so one
// bad case does not hide the others.
func decode(text string) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pickle.Decode panicked: %v", r)
		}
	}()
	return pickle.Decode(text)
}

type demoResult struct {
	Input string
	Calls [][]string
	Error *string
}

func TestDemoMatchesPython(t *testing.T) {
	var cases []map[string]any
	for _, expr := range demoInputs {
		for _, proto := range []int{0, 2, 4} {
			cases = append(cases, map[string]any{"expr": expr, "protocol": proto, "name": fmt.Sprintf("%s/protocol %d", expr, proto)})
		}
	}
	// Python 2 pickles (made by Python 2.7's cPickle): str holding non-UTF-8
	// bytes, unicode, long.
	for name, raw := range map[string]string{
		"py2 ['1', '\\xa02'] protocol 2":                 "8002" + "5d" + "7100" + "28" + "5501" + "31" + "7101" + "5502" + "a032" + "7102" + "65" + "2e",
		"py2 ['1', '\\xa02'] protocol 0":                 hex.EncodeToString([]byte("(lp0\nS'1'\np1\naS'\\xa02'\np2\na.")),
		"py2 [12345678901234567890L, u'2.5'] protocol 0": hex.EncodeToString([]byte("(lp0\nL12345678901234567890L\naV2.5\np1\na.")),
		"py2 'ab\\xff' protocol 2":                       "8002" + "5503" + "6162ff" + "71002e",
	} {
		cases = append(cases, map[string]any{"raw": raw, "name": name})
	}
	want := pyDemo(t, cases)
	for i, c := range cases {
		name := c["name"].(string)
		input, err := decode(want[i].Input)
		if err != nil {
			t.Errorf("%s: decode: %v", name, err)
			continue
		}
		rec := &recorder{}
		herr := Demo(context.Background(), rec, input)
		if fmt.Sprint(rec.calls) != fmt.Sprint(want[i].Calls) {
			t.Errorf("%s: calls %q, Python %q", name, rec.calls, want[i].Calls)
		}
		switch {
		case want[i].Error == nil && herr != nil:
			t.Errorf("%s: error %q, Python raised nothing", name, herr)
		case want[i].Error != nil && herr == nil:
			t.Errorf("%s: no error, Python raised %q", name, *want[i].Error)
		case want[i].Error != nil && herr.Error() != *want[i].Error:
			t.Errorf("%s: error %q, Python raised %q", name, herr, *want[i].Error)
		}
	}
}

func TestDemoHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	items := make([]any, 10000)
	for i := range items {
		items[i] = int64(i)
	}
	rec := &recorder{}
	if err := Demo(ctx, rec, items); err != context.Canceled {
		t.Fatalf("Demo on a cancelled context = %v", err)
	}
	if len(rec.calls) != 0 {
		t.Errorf("cancelled Demo wrote %q", rec.calls)
	}
}

// TestDemoHandsOnWhatItCannotRepresent: an object (its class may define
// __iter__ or __float__) or a class makes the demo give up before it
// writes anything, with an error matching executor.ErrUnsupported (the
// router then runs the Python demo) whose text is Python's for a class
// that defines neither. The reference summed a Point with __iter__ to 3.0.
func TestDemoHandsOnWhatItCannotRepresent(t *testing.T) {
	point := "\x80\x02cfidelity_fixtures\nPoint\nq\x00)\x81q\x01}q\x02(X\x01\x00\x00\x00xK\x01X\x01\x00\x00\x00yK\x02ub."
	for _, c := range []struct{ name, pickle, msg string }{
		{"object as the input", point, "'Point' object is not iterable"},
		{"object among the items", "\x80\x02]q\x00(K\x01" + point[2:len(point)-1] + "e.", "float() argument must be a string or a real number, not 'Point'"},
		{"a class", "\x80\x02cfidelity_fixtures\nColors\nq\x00.", "'type' object is not iterable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			input, err := pickle.Unpickle([]byte(c.pickle))
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			err = Demo(context.Background(), rec, input)
			if !errors.Is(err, executor.ErrUnsupported) || err.Error() != c.msg {
				t.Errorf("Demo = %v (unsupported %t), want %q and ErrUnsupported", err, errors.Is(err, executor.ErrUnsupported), c.msg)
			}
			if len(rec.calls) != 0 {
				t.Errorf("Demo wrote %q before giving up", rec.calls)
			}
		})
	}
	rec := &recorder{}
	input, err := pickle.Unpickle([]byte("\x80\x02]q\x00(X\x01\x00\x00\x00xcfidelity_fixtures\nColors\nq\x01e."))
	if err != nil {
		t.Fatal(err)
	}
	if err := Demo(context.Background(), rec, input); err != nil || fmt.Sprint(rec.calls) != "[[setFailure "+DemoFailure+"]]" {
		t.Errorf("ValueError before the object: %v, calls %q; want the demo's failure", err, rec.calls)
	}
}
