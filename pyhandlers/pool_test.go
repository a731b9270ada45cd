package pyhandlers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// TestDemoRows runs the reference run's tasks (ATP-SPEC.md section 6,
// reference-rows/README) through the pool, enqueued by the Python producer
// with each pickle protocol a producer may use, and compares the rows.
func TestDemoRows(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			e := newEnvOn(t, db)
			logs := newLogRecorder()
			p := startPool(t, e.poolConfig(t, logs))
			demoRows(t, e, p, true)
			// The exception's traceback went to the log with the task.
			if recs := logs.find("python handler raised an exception", map[string]string{"task_identifier": "raises", "exception": "KeyError"}); len(recs) == 0 ||
				!strings.Contains(recs[0].Attrs["traceback"], "golden_handlers.py") {
				t.Errorf("no traceback logged for the KeyError; log:\n%s", logs.dump())
			}
		})
	}
}

// demoRows runs the reference run's tasks on ex and checks their rows;
// withRaiser adds the task whose handler raises KeyError("missing %s" % ...).
func demoRows(t *testing.T, e *env, ex executor.Executor, withRaiser bool) {
	for _, proto := range []int{0, 2, 3, 5} {
		t.Run("protocol"+strconv.Itoa(proto), func(t *testing.T) {
			sfx := "-p" + strconv.Itoa(proto)
			cmds := [][]any{
				{"register", "SequenceSum" + sfx, "tools.atp_demo.handler", "--timeout", 60, "--timeret", 600, "--maxrestart", 2},
				{"register", "Raiser" + sfx, "tools.golden_handlers.raiser", "--timeout", 5, "--maxrestart", 1},
				{"enqueue", "SequenceSum" + sfx, "ok", "--literal", "(1,2,3,4,5)", "--protocol", proto},
				{"enqueue", "SequenceSum" + sfx, "notnum", "--literal", "(1,'x')", "--protocol", proto},
			}
			if withRaiser {
				cmds = append(cmds, []any{"enqueue", "Raiser" + sfx, "raises", "--json", `{"k": 1}`, "--protocol", proto, "--message", "enqueued with a message"})
			}
			e.produce(t, cmds...)
			want := []struct {
				ident string
				err   string
				log   []logEntry
			}{
				{"ok", "", ranAndEnded(djangodb.Finished, "")},
				{"notnum", "", ranAndEnded(djangodb.Failed, "Input must be a sequence of numbers!")},
			}
			if withRaiser {
				want = append(want, struct {
					ident string
					err   string
					log   []logEntry
				}{"raises", `"missing ['k']"`, []logEntry{
					{djangodb.Accepted, "enqueued with a message"}, {djangodb.Scheduled, ""},
					{djangodb.Running, ""}, {djangodb.Failed, `"missing ['k']"`}}})
			}
			for _, w := range want {
				o := e.runNext(t, ex, context.Background())
				if o.task.Identifier != w.ident {
					t.Fatalf("ran %s, want %s (FIFO order)", o.task.Identifier, w.ident)
				}
				if got := errText(o.err); got != w.err {
					t.Errorf("%s: Execute error %q, want %q", w.ident, got, w.err)
				}
				if got := e.log(t, o.id); !sameLog(got, w.log) {
					t.Errorf("%s: log %v, want %v", w.ident, got, w.log)
				}
			}
			// The stored response text, as Python producers read it back.
			rows := e.produce(t, []any{"dump"})
			var dump struct {
				Response []struct {
					Response string `json:"response"`
					MimeType string `json:"mimeType"`
					Instance int64  `json:"instance_id"`
				} `json:"processes_response"`
				Instance []struct {
					ID         int64  `json:"id"`
					Identifier string `json:"identifier"`
					TypeID     int64  `json:"type_id"`
				} `json:"processes_instance"`
			}
			if err := json.Unmarshal(rows[0], &dump); err != nil {
				t.Fatal(err)
			}
			okID := int64(0)
			for _, in := range dump.Instance {
				if in.Identifier == "ok" {
					okID = max(okID, in.ID) // this subtest's "ok" is the newest
				}
			}
			found := false
			for _, r := range dump.Response {
				if r.Instance == okID {
					found = true
					if r.Response != "eJwzNNUzAAAB8wDF" || r.MimeType != "text/plain" {
						t.Errorf("response row %q %q, want eJwzNNUzAAAB8wDF text/plain", r.Response, r.MimeType)
					}
				} else if r.Instance > okID {
					t.Errorf("unexpected response row for instance %d: %+v", r.Instance, r)
				}
			}
			if !found {
				t.Errorf("no response row for instance %d: %+v", okID, dump.Response)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestEveryTaskStatusMethod: each call reaches the store and answers with
// the committed state.
// everyMethodLog is the log atpd_fixtures.every_method leaves.
var everyMethodLog = []logEntry{
	{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""},
	{djangodb.Paused, "paused by handler"}, {djangodb.Running, "resumed by handler"},
	{djangodb.Failed, "failed by handler"}, {djangodb.Finished, ""},
}

func TestEveryTaskStatusMethod(t *testing.T) {
	e := newEnv(t)
	p := startPool(t, e.poolConfig(t, newLogRecorder()))
	e.register(t, "All", "atpd_fixtures.every_method")
	e.enqueueRaw(t, "All", "every", []byte("N."))
	o := e.runNext(t, p, context.Background())
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
	var seen struct {
		TaskID         int64          `json:"task_id"`
		Identifier     []any          `json:"identifier"`
		InfoRunning    []any          `json:"info_running"`
		StatusPaused   []any          `json:"status_paused"`
		InfoResumed    []any          `json:"info_resumed"`
		StatusFailed   []any          `json:"status_failed"`
		StatusFinished []any          `json:"status_finished"`
		Constants      map[string]int `json:"constants"`
	}
	if err := json.Unmarshal(r.Data, &seen); err != nil {
		t.Fatalf("response %q: %v", r.Data, err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"task_id", seen.TaskID, o.id},
		{"getIdentifier", seen.Identifier, []any{"All", "every"}},
		{"getInfo running", seen.InfoRunning, []any{"All", "every", 3.0, "RUNNING"}},
		{"getStatus paused", seen.StatusPaused, []any{4.0, "PAUSED"}},
		{"getInfo resumed", seen.InfoResumed, []any{"All", "every", 3.0, "RUNNING"}},
		{"getStatus failed", seen.StatusFailed, []any{6.0, "FAILED"}},
		{"getStatus finished", seen.StatusFinished, []any{5.0, "FINISHED"}},
	}
	for _, c := range checks {
		if !jsonEqual(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	for code := djangodb.Undefined; code <= djangodb.Failed; code++ {
		if got, ok := seen.Constants[code.String()]; !ok || got != int(code) {
			t.Errorf("TaskStatus.%s = %d (present %t), want %d", code, got, ok, code)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestStoreResponse: text is stored UTF-8, bytes as they are, with the
// given or the default MIME type.
func TestStoreResponse(t *testing.T) {
	e := newEnv(t)
	p := startPool(t, e.poolConfig(t, newLogRecorder()))
	e.register(t, "Respond", "atpd_fixtures.respond")
	e.register(t, "BadResponse", "atpd_fixtures.bad_response")
	cases := []struct {
		kind, mime string // mime "" means the default
		data       []byte
		wantMime   string
	}{
		{"ascii", "text/plain", []byte("15.0"), "text/plain"},
		{"text", "", []byte("caf\u00e9 \u20ac"), "text/xml"},
		{"bytes", "application/octet-stream", []byte("\x00\x01\xfe\xffbinary"), "application/octet-stream"},
		{"bytearray", "application/x-test", []byte("\x00abc"), "application/x-test"},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			mime := "N" // pickle None
			if c.mime != "" {
				mime = "X" + string(le32(len(c.mime))) + c.mime // BINUNICODE
			}
			// protocol 2: (kind, mime) as a 2-tuple
			pk := "\x80\x02X" + string(le32(len(c.kind))) + c.kind + mime + "\x86."
			e.enqueueRaw(t, "Respond", c.kind, []byte(pk))
			o := e.runNext(t, p, context.Background())
			if o.err != nil {
				t.Fatalf("Execute: %v", o.err)
			}
			r := e.response(t, o.id)
			if string(r.Data) != string(c.data) || r.MimeType != c.wantMime {
				t.Errorf("response %q %q, want %q %q", r.Data, r.MimeType, c.data, c.wantMime)
			}
		})
	}
	t.Run("not text or bytes", func(t *testing.T) {
		e.enqueueRaw(t, "BadResponse", "int", []byte("N."))
		o := e.runNext(t, p, context.Background())
		want := "a bytes-like object is required, not 'int'" // zlib.compress's TypeError
		if errText(o.err) != want {
			t.Errorf("Execute error %q, want %q", errText(o.err), want)
		}
		if got := e.log(t, o.id); !sameLog(got, ranAndEnded(djangodb.Failed, want)) {
			t.Errorf("log %v", got)
		}
	})
}

func le32(n int) []byte {
	return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
}

// failPause makes SetPaused fail, as a store error would.
type failPause struct{ executor.TaskStatus }

func (failPause) SetPaused(context.Context, string) error {
	return errors.New("djangodb: set PAUSED on All::x: database is locked")
}

// TestTaskStatusErrorRaisesInHandler: a failed call is an exception the
// handler can catch.
func TestTaskStatusErrorRaisesInHandler(t *testing.T) {
	e := newEnv(t)
	p := startPool(t, e.poolConfig(t, newLogRecorder()))
	e.register(t, "Catch", "atpd_fixtures.catch_status_error")
	e.enqueueRaw(t, "Catch", "c", []byte("N."))
	o := e.runNextWith(t, p, context.Background(), func(s executor.TaskStatus) executor.TaskStatus { return failPause{s} })
	if o.err != nil {
		t.Fatalf("Execute: %v", o.err)
	}
	want := "TaskStatusError: djangodb: set PAUSED on All::x: database is locked"
	if r := e.response(t, o.id); string(r.Data) != want {
		t.Errorf("handler saw %q, want %q", r.Data, want)
	}
}

// TestHandlerOutcomes: every way a handler can end, each followed by a task
// that must still run on the same pool.
func TestHandlerOutcomes(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	p := startPool(t, e.poolConfig(t, logs))
	e.register(t, "Pid", "atpd_fixtures.pid")
	cases := []struct {
		name, handler string
		input         string // pickle
		err           string // exact Execute error
		wantType      any    // *HandlerError or *ExitError
		replaced      bool   // the worker must have been replaced
	}{
		{"raises", "atpd_fixtures.raises", "K\x07.", "bad value 7", &HandlerError{}, false},
		{"os._exit(3)", "atpd_fixtures.exit3", "N.", "python worker exited with status 3", &ExitError{}, true},
		{"sys.exit(4)", "atpd_fixtures.sys_exit", "N.", "python worker exited with status 4", &ExitError{}, true},
		{"SIGKILL", "atpd_fixtures.sigkill", "N.", "python worker killed by signal 9 (killed)", &ExitError{}, true},
		{"no such module", "no_such_module.handler", "N.", "No module named 'no_such_module'", &HandlerError{}, false},
		{"no such function", "atpd_fixtures.missing", "N.", "module 'atpd_fixtures' has no attribute 'missing'", &HandlerError{}, false},
		{"not a dotted path", "handler", "N.", "Empty module name", &HandlerError{}, false},
		{"corrupt pickle", "atpd_fixtures.echo", "\x80\x02X\x05\x00\x00\x00ab", "pickle data was truncated", &HandlerError{}, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ := "T" + strconv.Itoa(i)
			e.register(t, typ, c.handler)
			before := e.pidTask(t, p, "before"+typ)
			e.enqueueRaw(t, typ, "x", []byte(c.input))
			o := e.runNext(t, p, context.Background())
			if errText(o.err) != c.err {
				t.Errorf("Execute error %q, want %q", errText(o.err), c.err)
			}
			switch c.wantType.(type) {
			case *HandlerError:
				var he *HandlerError
				if !errors.As(o.err, &he) || he.Traceback == "" {
					t.Errorf("error %#v is not a HandlerError with a traceback", o.err)
				}
			case *ExitError:
				var xe *ExitError
				if !errors.As(o.err, &xe) {
					t.Errorf("error %#v is not an ExitError", o.err)
				}
			}
			if got := e.log(t, o.id); !sameLog(got, ranAndEnded(djangodb.Failed, c.err)) {
				t.Errorf("log %v", got)
			}
			after := e.pidTask(t, p, "after"+typ)
			if (after != before) != c.replaced {
				t.Errorf("worker pid %d before, %d after; want replaced=%t", before, after, c.replaced)
			}
			if c.replaced && processExists(before) {
				t.Errorf("dead worker %d still exists", before)
			}
		})
	}
}

// pidTask runs a task that reports its worker's pid.
func (e *env) pidTask(t testing.TB, p executor.Executor, ident string) int {
	t.Helper()
	e.enqueueRaw(t, "Pid", ident, []byte("N."))
	o := e.runNext(t, p, context.Background())
	if o.err != nil {
		t.Fatalf("pid task %s: %v", ident, o.err)
	}
	pid, err := strconv.Atoi(string(e.response(t, o.id).Data))
	if err != nil {
		t.Fatalf("pid task %s: %v", ident, err)
	}
	return pid
}

// processExists reports whether pid names a process that is not a zombie.
func processExists(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// TestInputs: Python 2 and 3 pickles arrive as EOxServer handlers expect,
// byte strings of Python 2 as text (latin-1).
func TestInputs(t *testing.T) {
	e := newEnv(t)
	p := startPool(t, e.poolConfig(t, newLogRecorder()))
	e.register(t, "Echo", "atpd_fixtures.echo")
	cases := []struct {
		name   string
		pickle string
		repr   string
	}{
		{"py2 protocol 0 str and unicode", "(S'abc'\np0\nS'caf\\xe9'\np1\nVcaf\\u00e9\np2\ntp3\n.", "('abc', 'café', 'café')"},
		{"py2 protocol 2 short binstring", "\x80\x02U\x03abcq\x00U\x02\xff\x00q\x01\x86q\x02.", "('abc', 'ÿ\\x00')"},
		{"py2 protocol 0 datetime", "cdatetime\ndatetime\np0\n(S'\\x07\\xdd\\x01\\x02\\x03\\x04\\x05\\x00\\x00\\x06'\np1\ntp2\nRp3\n.", "datetime.datetime(2013, 1, 2, 3, 4, 5, 6)"},
		{"py2 protocol 2 long and dict", "\x80\x02}q\x00(U\x01a\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01U\x01bI01\nu.", "{'a': 18446744073709551616, 'b': True}"},
		{"py3 protocol 3 bytes", "\x80\x03C\x02\x00\xffq\x00.", "b'\\x00\\xff'"},
		{"py3 protocol 4 set", "\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.", "{1, 2}"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.enqueueRaw(t, "Echo", "in"+strconv.Itoa(i), []byte(c.pickle))
			o := e.runNext(t, p, context.Background())
			if o.err != nil {
				t.Fatalf("Execute: %v", o.err)
			}
			if got := string(e.response(t, o.id).Data); got != c.repr {
				t.Errorf("handler got %s, want %s", got, c.repr)
			}
		})
	}
	t.Run("no input row", func(t *testing.T) {
		e.enqueueRaw(t, "Echo", "none", []byte("N."))
		o := e.runNextWith(t, &noInput{p}, context.Background(), func(s executor.TaskStatus) executor.TaskStatus { return s })
		want := "Input matching query does not exist."
		if errText(o.err) != want {
			t.Errorf("Execute error %q, want %q", errText(o.err), want)
		}
		if got := e.log(t, o.id); !sameLog(got, ranAndEnded(djangodb.Failed, want)) {
			t.Errorf("log %v", got)
		}
	})
}

// noInput runs tasks as if their instance had no input row.
type noInput struct{ p executor.Executor }

func (n *noInput) Execute(ctx context.Context, task *executor.Task, s executor.TaskStatus) error {
	c := *task
	c.Input, c.HasInput = "", false
	return n.p.Execute(ctx, &c, s)
}

// TestCorruptEnvelope: a stored input that is not base64(zlib(...)) fails
// its task with Python's words for the cause; one past the size limit
// fails without reaching a worker.
func TestCorruptEnvelope(t *testing.T) {
	e := newEnv(t)
	cfg := e.poolConfig(t, newLogRecorder())
	cfg.MaxMessageSize = 4096
	p := startPool(t, cfg)
	e.register(t, "Echo", "atpd_fixtures.echo")
	e.register(t, "Pid", "atpd_fixtures.pid")
	bomb := envelope(make([]byte, 5000))
	cases := []struct {
		name, text, err string
	}{
		{"bad base64 padding", "QUJDR=", "Invalid base64-encoded string: number of data characters (5) cannot be 1 more than a multiple of 4"},
		{"not zlib", "aGVsbG8gd29ybGQ=", "Error -3 while decompressing data: incorrect header check"},
		{"truncated zlib", envelope([]byte("N."))[:8], "Error -5 while decompressing data: incomplete or truncated stream"},
		{"too large", bomb, "cannot decode input: pickle: pickle too large: decompressed input exceeds 4096 bytes"},
	}
	before := e.pidTask(t, p, "before")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.enqueueText(t, "Echo", "c"+strconv.Itoa(i), c.text)
			o := e.runNext(t, p, context.Background())
			if errText(o.err) != c.err {
				t.Errorf("Execute error %q, want %q", errText(o.err), c.err)
			}
			if got := e.log(t, o.id); !sameLog(got, ranAndEnded(djangodb.Failed, c.err)) {
				t.Errorf("log %v", got)
			}
		})
	}
	if after := e.pidTask(t, p, "after"); after != before {
		t.Errorf("worker replaced (%d -> %d) by inputs that do not decode", before, after)
	}
	t.Run("base64 with line breaks", func(t *testing.T) {
		// base64.encodestring wrapped lines; Python's b64decode skips them.
		text := envelope([]byte("K\x05."))
		e.enqueueText(t, "Echo", "wrapped", text[:4]+"\n"+text[4:]+"\n")
		o := e.runNext(t, p, context.Background())
		if o.err != nil {
			t.Fatalf("Execute: %v", o.err)
		}
		if got := string(e.response(t, o.id).Data); got != "5" {
			t.Errorf("handler got %s, want 5", got)
		}
	})
}
