package pyhandlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// python27 is Debian bullseye's python2.7 (scripts/setup-python2.sh);
// missing, the tests skip locally and fail in CI.
func python27(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python2.7"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must provide it (scripts/setup-python2.sh)", py)
		}
		t.Skipf("%s not found; run scripts/setup-python2.sh", py)
	}
	return py
}

// TestPython27Worker: the CPython worker runs Python 2.7 handlers exactly
// as Python 3 ones, with the rows the original daemon wrote under Python 2:
// every TaskStatus method, an exception's unicode(e) (ASCII and unicode
// messages; a str message with non-ASCII bytes, on which unicode(e)
// raised), a str response stored as its bytes and unicode as UTF-8, a
// worker that calls os._exit or is killed from inside, an edited module
// reloaded, a handler past its deadline, and megabytes of output.
func TestPython27Worker(t *testing.T) {
	py := python27(t)
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) { testPython27Worker(t, py, db) })
	}
}

func testPython27Worker(t *testing.T, py, db string) {
	e := newEnvOn(t, db)
	logs := newLogRecorder()
	cfg := e.poolConfig(t, logs)
	cfg.Python = py
	p := startPool(t, cfg)

	t.Run("every TaskStatus method", func(t *testing.T) {
		e.register(t, "All", "atpd_fixtures.every_method")
		e.enqueueRaw(t, "All", "every", []byte("N."))
		o := e.runNext(t, p, context.Background())
		if o.err != nil {
			t.Fatalf("Execute: %v", o.err)
		}
		if got := e.log(t, o.id); !sameLog(got, everyMethodLog) {
			t.Errorf("log %v, want %v", got, everyMethodLog)
		}
		if r := e.response(t, o.id); r.MimeType != "text/xml" || len(r.Data) == 0 {
			t.Errorf("response %q (%s), want the handler's JSON as text/xml", r.Data, r.MimeType)
		}
	})
	outcomes := []struct {
		name, handler string
		input         []byte // a protocol 0-2 pickle, as Python 2 wrote them
		err           string // Execute's error: the FAILED message
		resp, mime    string // the stored response when it finishes
		trace         string // in the traceback logged with the failure
	}{
		{"ASCII exception", "atpd_fixtures.raises", []byte("K\x07."), "bad value 7", "", "", ""},
		{"unicode exception", "atpd_fixtures.raises_unicode", []byte("N."), "caf\u00e9 \u20ac", "", "", ""},
		// unicode(e) raised where the original called it, and killed its
		// worker; atpd fails the task with those words (worker.py's
		// exception_text), the handler's message in the log.
		{"str exception with non-ASCII bytes", "atpd_fixtures.raises_str_bytes", []byte("N."),
			"'ascii' codec can't decode byte 0xc3 in position 3: ordinal not in range(128)", "", "", "ValueError: caf\xc3\xa9 \xff"},
		{"os._exit(3)", "atpd_fixtures.exit3", []byte("N."), "python worker exited with status 3", "", "", ""},
		{"SIGKILL from inside", "atpd_fixtures.sigkill", []byte("N."), "python worker killed by signal 9 (killed)", "", "", ""},
		{"str response", "atpd_fixtures.respond", []byte("(U\x05bytesU\x18application/octet-streamt."), "", "\x00\x01\xfe\xffbinary", "application/octet-stream", ""},
		{"unicode response", "atpd_fixtures.respond", []byte("(U\x04textNt."), "", "caf\u00e9 \u20ac", "text/xml", ""},
		{"megabytes of output", "atpd_fixtures.printer", []byte("(J\x20\x4e\x00\x00KdM\x00 t."), "", "printed", "text/plain", ""},
	}
	for i, c := range outcomes {
		t.Run(c.name, func(t *testing.T) {
			typ := "P" + string(rune('A'+i))
			e.register(t, typ, c.handler)
			e.enqueueRaw(t, typ, "x", c.input)
			o := e.runNext(t, p, context.Background())
			if c.err != "" {
				if o.err == nil || o.err.Error() != c.err {
					t.Fatalf("Execute error %v, want %q", o.err, c.err)
				}
				if got := e.log(t, o.id); got[len(got)-1] != (logEntry{djangodb.Failed, c.err}) {
					t.Errorf("last record %v, want FAILED %q", got[len(got)-1], c.err)
				}
				if c.trace != "" {
					recs := logs.find("python handler raised an exception", map[string]string{"error": c.err})
					if len(recs) != 1 || !strings.Contains(recs[0].Attrs["traceback"], c.trace) {
						t.Errorf("no traceback with %q logged; log:\n%s", c.trace, logs.dump())
					}
				}
				return
			}
			if o.err != nil {
				t.Fatalf("Execute: %v", o.err)
			}
			if r := e.response(t, o.id); string(r.Data) != c.resp || r.MimeType != c.mime {
				t.Errorf("response %q (%s), want %q (%s)", r.Data, r.MimeType, c.resp, c.mime)
			}
		})
	}
	t.Run("module reloaded on change", func(t *testing.T) {
		checkReload(t, e, cfg)
	})
	t.Run("past the deadline", func(t *testing.T) {
		e.register(t, "Sleep", "atpd_fixtures.sleeper")
		e.enqueueRaw(t, "Sleep", "long", pickleFloat(30))
		o := e.runNext(t, &deadlineExec{p, time.Second}, context.Background())
		if !errors.Is(o.err, context.DeadlineExceeded) {
			t.Fatalf("Execute error %v, want the deadline", o.err)
		}
		if st := e.status(t, o.id); st != djangodb.Running {
			t.Errorf("status %v after the timeout, want RUNNING left for the daemon", st)
		}
	})
}

// py2Input is one pickle a real python2.7 producer made (gen2.py's output).
type py2Input struct {
	Name     string `json:"name"`
	Module   string `json:"module"` // pickle or cPickle
	Protocol int    `json:"protocol"`
	Input    string `json:"input"` // base64(zlib(pickle)), as enqueueTask stored it
}

// TestPython27Inputs: each pickle a real python2.7 producer makes (the
// cases of compat/pickle/testdata/gen2.py, generated in this run: str with
// non-ASCII bytes, unicode, long, datetimes naive and with a tzinfo class,
// Decimal, sets, old- and new-style instances, nested containers; pickle
// and cPickle, protocols 0, 1 and 2) reaches a Python 2 handler, run by
// the CPython worker under python2.7, as the very object python2.7's own
// pickle.loads gives for the same bytes.
func TestPython27Inputs(t *testing.T) {
	py := python27(t)
	// gen2.py and py2values.py, the module of the classes the pickles name,
	// which the workers import as a deployment's import the producer's.
	classes := filepath.Join(testdb.RepoRoot(t), "compat", "pickle", "testdata")
	cmd := exec.Command(py, filepath.Join(classes, "gen2.py"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gen2.py under %s: %v\n%s", py, err, stderr.Bytes())
	}
	var inputs []py2Input
	if err := json.Unmarshal(out, &inputs); err != nil {
		t.Fatalf("gen2.py output: %v", err)
	}
	if len(inputs) < 150 {
		t.Fatalf("gen2.py made only %d pickles", len(inputs))
	}
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) { testPython27Inputs(t, py, db, classes, inputs) })
	}
}

func testPython27Inputs(t *testing.T, py, db, classes string, inputs []py2Input) {
	e := newEnvOn(t, db)
	logs := newLogRecorder()
	cfg := e.poolConfig(t, logs)
	cfg.Python = py
	cfg.PythonPath = append(cfg.PythonPath, classes)
	// The handler reads the input text of its task from here, by the
	// task's identifier, to unpickle it itself.
	dir := t.TempDir()
	cfg.Env = append(cfg.Env, "ATPD_TEST_INPUTS="+dir)
	p := startPool(t, cfg)
	e.register(t, "Py2In", "py2_fixtures.same_as_loads")
	run := func(t *testing.T, ident, enqueued, handlerLoads string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, ident), []byte(handlerLoads), 0o644); err != nil {
			t.Fatal(err)
		}
		e.enqueueText(t, "Py2In", ident, enqueued)
		o := e.runNext(t, p, context.Background())
		if o.err != nil {
			t.Fatalf("Execute: %v\nlog:\n%s", o.err, logs.dump())
		}
		return string(e.response(t, o.id).Data)
	}
	for i, in := range inputs {
		t.Run(in.Module+"/"+strconv.Itoa(in.Protocol)+"/"+in.Name, func(t *testing.T) {
			if got := run(t, fmt.Sprintf("in%03d", i), in.Input, in.Input); got != "ok" {
				t.Errorf("the handler's input is not what pickle.loads gives: %s", got)
			}
		})
	}
	// The comparison itself: inputs that differ from the pickle the
	// handler loads only in what equality overlooks.
	controls := []struct {
		name, input, loads, diff string
	}{
		{"int is not long", "I1\n.", "L1L\n.", "input: 1 of __builtin__.int, want 1L of __builtin__.long"},
		{"str is not unicode", "S'a'\n.", "Va\n.", "input: 'a' of __builtin__.str, want u'a' of __builtin__.unicode"},
		{"-0.0 is not 0.0", "F-0.0\n.", "F0.0\n.", "input: -0.0, want 0.0"},
	}
	for i, c := range controls {
		t.Run("control/"+c.name, func(t *testing.T) {
			if got := run(t, fmt.Sprintf("control%d", i), envelope([]byte(c.input)), envelope([]byte(c.loads))); got != c.diff {
				t.Errorf("handler stored %q, want %q", got, c.diff)
			}
		})
	}
}
