package pyhandlers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// newEmbedded returns a gpython executor over the gpython fixtures and the
// integration project.
func newEmbedded(t testing.TB, e *env, logs *logRecorder) *Embedded {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", "gpy"))
	if err != nil {
		t.Fatal(err)
	}
	em, err := NewEmbedded(Config{
		PythonPath: []string{abs, filepath.Join(e.root, "integration")},
		Workers:    2,
		Logger:     logs.logger(),
	})
	if err != nil {
		t.Fatalf("NewEmbedded: %v", err)
	}
	return em
}

// TestEmbeddedDemoRows: the demo handler under gpython writes the rows the
// reference daemon writes. The raiser is left out: its message is made with
// "%s" % list, and gpython's % is Go's fmt (it would say "missing &{[k]}").
func TestEmbeddedDemoRows(t *testing.T) {
	e := newEnv(t)
	demoRows(t, e, newEmbedded(t, e, newLogRecorder()), false)
}

func TestEmbeddedEveryTaskStatusMethod(t *testing.T) {
	e := newEnv(t)
	em := newEmbedded(t, e, newLogRecorder())
	e.register(t, "All", "gpy_fixtures.every_method")
	e.enqueueRaw(t, "All", "every", []byte("N."))
	o := e.runNext(t, em, context.Background())
	if o.err != nil {
		t.Fatalf("Execute: %v", o.err)
	}
	if got := e.log(t, o.id); !sameLog(got, everyMethodLog) {
		t.Errorf("log %v, want %v", got, everyMethodLog)
	}
	r := e.response(t, o.id)
	if r.MimeType != "text/xml" {
		t.Errorf("default mime type %q, want text/xml", r.MimeType)
	}
	wantSeen := []string{
		"task_id=" + strconv.FormatInt(o.id, 10),
		"identifier=('All', 'every')",
		"info_running=('All', 'every', 3, 'RUNNING')",
		"status_paused=(4, 'PAUSED')",
		"info_resumed=('All', 'every', 3, 'RUNNING')",
		"status_failed=(6, 'FAILED')",
		"status_finished=(5, 'FINISHED')",
		"UNDEFINED=0", "ACCEPTED=1", "SCHEDULED=2", "RUNNING=3", "PAUSED=4", "FINISHED=5", "FAILED=6",
	}
	if got := strings.Split(string(r.Data), "\n"); strings.Join(got, "|") != strings.Join(wantSeen, "|") {
		t.Errorf("handler saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantSeen, "\n"))
	}
}

// TestEmbeddedOutcomes: handler exceptions, what gpython cannot run, and
// inputs it has no values for, each followed by a task that must still run.
func TestEmbeddedOutcomes(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	em := newEmbedded(t, e, logs)
	cases := []struct {
		name, handler string
		input         string // pickle
		err           string // exact error, or prefix when unsupported
		unsupported   bool
		response      string
	}{
		{"echo", "gpy_fixtures.echo", "\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01G?\xf8\x00\x00\x00\x00\x00\x00e.", "", false, "[1, 'a', 1.5]"},
		{"py2 str not UTF-8", "gpy_fixtures.echo", "S'caf\\xe9'\np0\n.", "", false, "'café'"},
		{"bytes response", "gpy_fixtures.respond_bytes", "N.", "", false, "\x00\x01binary"},
		{"package imports", "gpy_fixtures.uses_helper", "K\x15.", "", false, "hello 42 from sub"},
		{"raises", "gpy_fixtures.raises", "K\x07.", "bad value 7", false, ""},
		{"KeyError keeps quotes", "gpy_fixtures.key_error", "}.", "'missing'", false, ""},
		{"no such module", "no_such_module.handler", "N.", "gpython cannot run handler no_such_module.handler: module no_such_module is not available to gpython", true, ""},
		{"no such function", "gpy_fixtures.missing", "N.", "", false, ""},
		{"not a dotted path", "handler", "N.", "Empty module name", false, ""},
		{"import gpython lacks", "gpy_fixtures.imports_json", "N.", "gpython cannot run handler gpy_fixtures.imports_json: module json is not available to gpython", true, ""},
		{"syntax gpython lacks", "gpy_syntax.handler", "N.", "gpython cannot run handler gpy_syntax.handler: cannot compile", true, ""},
		{"builtin method gpython lacks", "gpy_fixtures.joins", "N.", "gpython cannot run handler gpy_fixtures.joins: gpython's str has no attribute 'join'", true, ""},
		{"gpython panics", "gpy_fixtures.panics", "N.", "gpython cannot run handler gpy_fixtures.panics: gpython panicked: runtime error: hash of unhashable type", true, ""},
		{"os._exit refused", "gpy_fixtures.exits", "N.", "gpython cannot run handler gpy_fixtures.exits: os._exit acts on the whole daemon process", true, ""},
		{"datetime input", "gpy_fixtures.echo", "cdatetime\ndate\nq\x00C\x04\x07\xdd\x01\x02q\x01\x85q\x02Rq\x03.", "gpython cannot run handler gpy_fixtures.echo: input holds a pickle.Date", true, ""},
		{"corrupt pickle", "gpy_fixtures.echo", "\x80\x02X\x05\x00\x00\x00ab", "cannot decode input: pickle:", false, ""},
	}
	e.register(t, "Echo", "gpy_fixtures.echo")
	t.Run("no input row", func(t *testing.T) {
		e.enqueueRaw(t, "Echo", "none", []byte("N."))
		o := e.runNextWith(t, &noInput{em}, context.Background(), func(s executor.TaskStatus) executor.TaskStatus { return s })
		if want := "Input matching query does not exist."; errText(o.err) != want {
			t.Errorf("Execute error %q, want %q", errText(o.err), want)
		}
	})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ := "G" + strconv.Itoa(i)
			e.register(t, typ, c.handler)
			e.enqueueRaw(t, typ, "x", []byte(c.input))
			o := e.runNext(t, em, context.Background())
			got := errText(o.err)
			switch {
			case c.unsupported || strings.HasSuffix(c.err, ":"):
				if !strings.HasPrefix(got, c.err) {
					t.Errorf("Execute error %q, want one starting %q", got, c.err)
				}
			case c.name == "no such function":
				if o.err == nil || !strings.Contains(got, "missing") {
					t.Errorf("Execute error %q, want an AttributeError naming missing", got)
				}
			case got != c.err:
				t.Errorf("Execute error %q, want %q", got, c.err)
			}
			if errors.Is(o.err, executor.ErrUnsupported) != c.unsupported {
				t.Errorf("error %v: wraps ErrUnsupported %t, want %t", o.err, errors.Is(o.err, executor.ErrUnsupported), c.unsupported)
			}
			if c.err == "" && c.name != "no such function" {
				if r := e.response(t, o.id); string(r.Data) != c.response {
					t.Errorf("response %q, want %q", r.Data, c.response)
				}
			} else if st := e.status(t, o.id); st != djangodb.Failed {
				t.Errorf("status %v, want FAILED", st)
			}
			// The executor still serves.
			e.enqueueRaw(t, "Echo", "after"+typ, []byte("K\x05."))
			if o := e.runNext(t, em, context.Background()); o.err != nil || string(e.response(t, o.id).Data) != "5" {
				t.Errorf("next task: %v", o.err)
			}
		})
	}
}

func TestEmbeddedTaskStatusError(t *testing.T) {
	e := newEnv(t)
	em := newEmbedded(t, e, newLogRecorder())
	e.register(t, "Catch", "gpy_fixtures.catch_status_error")
	e.enqueueRaw(t, "Catch", "c", []byte("N."))
	o := e.runNextWith(t, em, context.Background(), func(s executor.TaskStatus) executor.TaskStatus { return failPause{s} })
	if o.err != nil {
		t.Fatalf("Execute: %v", o.err)
	}
	want := "caught: djangodb: set PAUSED on All::x: database is locked"
	if r := e.response(t, o.id); string(r.Data) != want {
		t.Errorf("handler saw %q, want %q", r.Data, want)
	}
}

// TestEmbeddedTimeout: a handler gpython cannot stop is abandoned when its
// context ends; Execute returns at once and the handler's slot stays taken
// until it returns.
func TestEmbeddedTimeout(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	em := newEmbedded(t, e, logs)
	e.register(t, "Spin", "gpy_fixtures.spins")
	e.register(t, "Echo", "gpy_fixtures.echo")
	dir := t.TempDir()
	e.enqueueRaw(t, "Spin", "spin", []byte("X"+string(le32(len(dir)))+dir+"."))
	o := e.runNext(t, &deadlineExec{em, 300 * time.Millisecond}, context.Background())
	if !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("Execute error %v, want the deadline", o.err)
	}
	// Promptly: the handler itself never returns until told to.
	if o.took > 5*time.Second {
		t.Errorf("Execute returned after %v, deadline 300ms", o.took)
	}
	if n := em.Abandoned(); n != 1 {
		t.Errorf("%d abandoned handlers, want 1", n)
	}
	// One of two slots is held by the spinning handler; the other serves.
	e.enqueueRaw(t, "Echo", "next", []byte("K\x05."))
	if o := e.runNext(t, em, context.Background()); o.err != nil {
		t.Fatalf("next task: %v", o.err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for em.Abandoned() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("abandoned handler did not finish after being told to stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.status(t, o.id); st != djangodb.Running {
		t.Errorf("abandoned task's status %v, want RUNNING left for the daemon", st)
	}
}

// TestEmbeddedOutput: print() and sys.stderr are logged with the task.
func TestEmbeddedOutput(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	em := newEmbedded(t, e, logs)
	e.register(t, "Print", "gpy_fixtures.prints")
	e.enqueueRaw(t, "Print", "p", []byte("K\x03."))
	if o := e.runNext(t, em, context.Background()); o.err != nil {
		t.Fatalf("Execute: %v", o.err)
	}
	var got []string
	for _, l := range logs.find("python handler output", map[string]string{"task_type": "Print", "task_identifier": "p"}) {
		got = append(got, l.Attrs["stream"]+":"+l.Attrs["line"])
	}
	want := []string{"stdout:line 0", "stdout:line 1", "stdout:line 2", "stderr:to stderr", "stdout:no newline"}
	if !sameSet(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// TestEmbeddedReload: an edited module is compiled again for the next task.
func TestEmbeddedReload(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	em, err := NewEmbedded(Config{PythonPath: []string{dir}, Logger: newLogRecorder().logger()})
	if err != nil {
		t.Fatal(err)
	}
	e.register(t, "Edit", "gpy_edited.handler")
	mod := filepath.Join(dir, "gpy_edited.py")
	base := time.Now().Truncate(time.Second)
	for i, v := range []string{"one", "two"} {
		src := "def handler(taskStatus, input):\n    taskStatus.storeResponse('" + v + "', 'text/plain')\n"
		if err := os.WriteFile(mod, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(mod, base.Add(time.Duration(i)*time.Millisecond), base.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		e.enqueueRaw(t, "Edit", v, []byte("N."))
		o := e.runNext(t, em, context.Background())
		if o.err != nil {
			t.Fatalf("Execute: %v", o.err)
		}
		if got := string(e.response(t, o.id).Data); got != v {
			t.Errorf("handler answered %q, want %q", got, v)
		}
	}
}
