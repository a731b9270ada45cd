package atpdcmd

import (
	"encoding/json"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// TestE2EPythonHandlers runs Python handlers in the real binary's CPython
// workers under -s (Django settings, so the ORM works): one calling every
// TaskStatus method, one raising, one calling os._exit(3), one SIGKILLing
// itself, one sleeping past its timeout, one printing megabytes, one using
// the ORM. Each ends as specified and the daemon keeps serving: a demo task
// enqueued after them all finishes.
func TestE2EPythonHandlers(t *testing.T) {
	for _, kind := range bothDBs {
		t.Run(kind.name, func(t *testing.T) {
			db := newE2EDB(t, kind)
			db.batch(
				[]string{"register", "Every", "e2e_handlers.every_method", "--timeout", "60"},
				[]string{"register", "Raiser", "e2e_handlers.raiser", "--timeout", "60"},
				[]string{"register", "Exits", "e2e_handlers.exits", "--timeout", "60"},
				[]string{"register", "Killed", "e2e_handlers.killed", "--timeout", "60"},
				[]string{"register", "Slow", "e2e_handlers.sleeper", "--timeout", "2", "--maxrestart", "0"},
				[]string{"register", "Chatty", "e2e_handlers.chatty", "--timeout", "60"},
				[]string{"register", "ORM", "e2e_handlers.orm", "--timeout", "60"},
				[]string{"register", "SequenceSum", "tools.atp_demo.handler", "--timeout", "60"},
				[]string{"enqueue", "Every", "e", "--literal", "None"},
				[]string{"enqueue", "Raiser", "r", "--json", `{"k": 1}`},
				[]string{"enqueue", "Exits", "x", "--literal", "None"},
				[]string{"enqueue", "Killed", "k", "--literal", "None"},
				[]string{"enqueue", "Slow", "s", "--literal", "(30,)"},
				[]string{"enqueue", "Chatty", "c", "--literal", "(3000,)"},
				[]string{"enqueue", "ORM", "o", "--literal", "None"},
			)
			p := startAtpd(t, "python", db.settingsEnv(), "-s", "atpdtest.settings", "-p", db.dir, "-p", db.hdlDir,
				"-n", "2", "--python", db.py, "--poll-interval", "20ms")
			for _, c := range []struct{ typ, ident string }{
				{"Every", "e"}, {"Raiser", "r"}, {"Exits", "x"}, {"Killed", "k"}, {"Slow", "s"}, {"Chatty", "c"}, {"ORM", "o"},
			} {
				waitTerminal(t, db, c.typ, c.ident, 2*time.Minute)
			}
			// The daemon still serves after all of that.
			db.batch([]string{"enqueue", "SequenceSum", "after", "--literal", "(1, 2)"})
			db.waitStatus("SequenceSum", "after", djangodb.Finished, time.Minute)

			type want struct {
				statuses []int
				last     *regexp.Regexp // message of the last record
				response string         // "" when none is checked
			}
			wants := map[[2]string]want{
				{"Every", "e"}: {[]int{1, 2, 3, 4, 3, 5}, regexp.MustCompile(`^all done$`),
					`{"constants": [1, 2, 3, 4, 5, 6], "identifier": ["Every", "e"], "info": ["Every", "e", 3, "RUNNING"], "paused": [4, "PAUSED"], "status": [3, "RUNNING"]}`},
				{"Raiser", "r"}: {[]int{1, 2, 3, 6}, regexp.MustCompile(`^"missing \['k'\]"$`), ""},
				{"Exits", "x"}:  {[]int{1, 2, 3, 6}, regexp.MustCompile(`^python worker exited with status 3$`), ""},
				{"Killed", "k"}: {[]int{1, 2, 3, 6}, regexp.MustCompile(`^python worker killed by signal 9`), ""},
				{"Slow", "s"}:   {[]int{1, 2, 3, 6}, regexp.MustCompile(`^` + regexp.QuoteMeta(djangodb.MaxStartsMessage(1, 1)) + `$`), ""},
				{"Chatty", "c"}: {[]int{1, 2, 3, 5}, regexp.MustCompile(`^$`), "printed"},
				{"ORM", "o"}:    {[]int{1, 2, 3, 5}, regexp.MustCompile(`^$`), "Chatty,Every,Exits,Killed,ORM,Raiser,SequenceSum,Slow"},
			}
			for key, w := range wants {
				recs := db.taskLog(key[0], key[1])
				if got := statuses(recs); !slices.Equal(got, w.statuses) {
					t.Errorf("%s::%s log statuses %v, want %v (%v)", key[0], key[1], got, w.statuses, recs)
					continue
				}
				if msg := recs[len(recs)-1].Message; !w.last.MatchString(msg) {
					t.Errorf("%s::%s last message %q, want a match of %s", key[0], key[1], msg, w.last)
				}
				if w.response == "" {
					continue
				}
				var resp struct{ Text string }
				if err := json.Unmarshal(db.producer("response", key[0], key[1]), &resp); err != nil || resp.Text != w.response {
					t.Errorf("%s::%s response %q (%v), want %q", key[0], key[1], resp.Text, err, w.response)
				}
			}
			// The chatty handler's output reached the daemon's log, attributed.
			p.waitLine(`Chatty.*xxxxxxxx|xxxxxxxx.*Chatty`, 10*time.Second)

			p.signal(syscall.SIGTERM)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			db.assertNoTaskInFlight()
		})
	}
}

// waitTerminal waits until the task is FINISHED or FAILED.
func waitTerminal(t *testing.T, db *e2eDB, typ, ident string, timeout time.Duration) {
	t.Helper()
	last := -1
	waitFor(t, timeout, func() string {
		return typ + "::" + ident + " to end (last seen " + djangodb.Status(last).String() + ")"
	}, func() bool {
		last = db.status(typ, ident)
		return djangodb.Status(last).Terminal()
	})
}
