package pyhandlers

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
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
// messages), a str response stored as its bytes and unicode as UTF-8, a
// worker that calls os._exit or is killed from inside, a handler past its
// deadline, and megabytes of output.
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
