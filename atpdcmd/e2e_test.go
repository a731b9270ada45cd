package atpdcmd

// End-to-end tests: the real atpd binary against databases made by Django's
// migrate, with tasks enqueued by the Python producer API (integration/
// producer.py over tracker.py) and the outcome read back through it.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

const (
	startTimeout = time.Minute
	exitTimeout  = 30 * time.Second
	idPrefix     = `^\[0x[0-9A-F]{16}\] `
)

// settingsEnv is the environment for `atpd -s atpdtest.settings`: the
// Django project's ATPD_DJANGO_* variables, but the settings module and the
// Python path only from the command line, as an operator would give them.
func (d *e2eDB) settingsEnv() []string {
	var env []string
	for _, kv := range d.Env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DJANGO_SETTINGS_MODULE" || k == "PYTHONPATH" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// TestE2EDemo runs the ATP demo task (tools/atp_demo.py) and checks the
// rows of ATP-SPEC section 6; once with --db, once with the Django settings
// module as the reference daemon was started.
func TestE2EDemo(t *testing.T) {
	cases := []struct {
		kind        dbKind
		viaSettings bool
	}{
		{pgUTC, false},
		{sqliteUTC, false},
		{pgUTC, true},
		{sqliteNaive, true},
	}
	for _, tc := range cases {
		name := tc.kind.name + "/db-flag"
		if tc.viaSettings {
			name = tc.kind.name + "/django-settings"
		}
		t.Run(name, func(t *testing.T) {
			db := newE2EDB(t, tc.kind)
			db.batch(
				[]string{"register", "SequenceSum", "tools.atp_demo.handler", "--timeout", "60", "--timeret", "600", "--maxrestart", "2"},
				[]string{"enqueue", "SequenceSum", "Task001", "--literal", "(1, 2, 3, 4, 5)"},
			)
			var p *atpdProc
			if tc.viaSettings {
				p = startAtpd(t, "demo", db.settingsEnv(), "-s", "atpdtest.settings", "-p", db.dir, "-p", db.hdlDir,
					"-n", "2", "--python", db.py, "--poll-interval", "20ms")
			} else {
				args := db.daemonArgs("-n", "2")
				if tc.kind.pg {
					// Trust authentication ignores it; the logs must not show it.
					u, err := url.Parse(db.DSN)
					if err != nil {
						t.Fatal(err)
					}
					u.User = url.UserPassword(u.User.Username(), secretPassword)
					args[1] = u.String()
				}
				p = startAtpd(t, "demo", baseEnv(), args...)
			}
			idLine := p.waitLine(idPrefix+`INFO: ATPD: id=0x[0-9A-F]{16} \(-?\d+\)$`, startTimeout)
			prefix := idLine[:strings.Index(idLine, "]")+1]
			for _, re := range []string{`INFO: ATPD: hostname=\S+`, `INFO: ATPD: pid=\d+`, `INFO: ATPD: database=\S+`, `INFO: ATPD: workers=2$`, `INFO: ATPD: started`} {
				line := p.waitLine(idPrefix+re, startTimeout)
				if !strings.HasPrefix(line, prefix) {
					t.Errorf("line %q does not carry the server id %s", line, prefix)
				}
			}
			if tc.viaSettings {
				p.waitLine(`ATPD: database=\S+ source=django use_tz=`+strconv.FormatBool(tc.kind.cfg.UseTZ), startTimeout)
			}

			db.waitStatus("SequenceSum", "Task001", djangodb.Finished, 30*time.Second)
			recs := db.taskLog("SequenceSum", "Task001")
			want := []logRecord{{1, ""}, {2, ""}, {3, ""}, {5, ""}}
			if !slices.Equal(recs, want) {
				t.Errorf("log %v, want %v", recs, want)
			}
			var resp struct {
				Text     string `json:"text"`
				MimeType string `json:"mimeType"`
			}
			if err := json.Unmarshal(db.producer("response", "SequenceSum", "Task001"), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Text != "15.0" || resp.MimeType != "text/plain" {
				t.Errorf("response %q %q, want \"15.0\" text/plain", resp.Text, resp.MimeType)
			}
			var stored string
			if err := db.SQL.QueryRow(`SELECT response FROM processes_response`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != "eJwzNNUzAAAB8wDF" {
				t.Errorf("stored response %q, want the reference daemon's eJwzNNUzAAAB8wDF", stored)
			}

			p.signal(syscall.SIGINT)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit code %d after SIGINT, want 0", code)
			}
			p.waitLine(idPrefix+`INFO: ATPD: terminated`, time.Second)
			if strings.Contains(p.Out.String(), secretPassword) {
				t.Errorf("the output shows the database password")
			}
			db.assertNoTaskInFlight()
		})
	}
}

const secretPassword = "s3cret-e2e-password"

// TestE2EFailures: a handler that raises, a handler that fails its task,
// an input that cannot be decoded and a handler path that does not exist
// each end FAILED with their message, and the task after them finishes.
func TestE2EFailures(t *testing.T) {
	for _, kind := range bothDBs {
		t.Run(kind.name, func(t *testing.T) {
			db := newE2EDB(t, kind)
			db.batch(
				[]string{"register", "SequenceSum", "tools.atp_demo.handler", "--timeout", "60"},
				[]string{"register", "Raiser", "e2e_handlers.raiser", "--timeout", "60", "--maxrestart", "1"},
				[]string{"register", "Nowhere", "no_such_module.handler", "--timeout", "60"},
				[]string{"enqueue", "SequenceSum", "notnum", "--literal", "(1, 'x')"},
				[]string{"enqueue", "Raiser", "raises", "--json", `{"k": 1}`, "--message", "enqueued with a message"},
				[]string{"enqueue", "SequenceSum", "undecodable", "--literal", "(1, 2)"},
				[]string{"enqueue", "Raiser", "undecodable-py", "--literal", "(1, 2)"},
				[]string{"enqueue", "Nowhere", "unknown", "--literal", "(1,)"},
				[]string{"enqueue", "SequenceSum", "later", "--literal", "[2.5]"},
			)
			db.exec(`UPDATE processes_input SET input = ? WHERE instance_id IN
				(SELECT id FROM processes_instance WHERE identifier IN ('undecodable', 'undecodable-py'))`, "this is not base64!")

			p := startAtpd(t, "failures", baseEnv(), db.daemonArgs("-n", "1")...)
			db.waitStatus("SequenceSum", "later", djangodb.Finished, time.Minute)

			run, unstarted := []int{1, 2, 3, 6}, []int{1, 2, 6}
			cases := []struct {
				typ, ident string
				first      logRecord
				statuses   []int
				message    *regexp.Regexp
			}{
				{"SequenceSum", "notnum", logRecord{1, ""}, run, regexp.MustCompile(`^Input must be a sequence of numbers!$`)},
				{"Raiser", "raises", logRecord{1, "enqueued with a message"}, run, regexp.MustCompile(`^"missing \['k'\]"$`)},
				// binascii's words, for a Go and a Python handler alike;
				// like startTask, the claim decodes before RUNNING.
				{"SequenceSum", "undecodable", logRecord{1, ""}, unstarted, regexp.MustCompile(`^Incorrect padding$`)},
				{"Raiser", "undecodable-py", logRecord{1, ""}, unstarted, regexp.MustCompile(`^Incorrect padding$`)},
				{"Nowhere", "unknown", logRecord{1, ""}, run, regexp.MustCompile(`no_such_module`)},
			}
			for _, c := range cases {
				recs := db.taskLog(c.typ, c.ident)
				if got := statuses(recs); !slices.Equal(got, c.statuses) {
					t.Errorf("%s::%s log statuses %v, want %v (%v)", c.typ, c.ident, got, c.statuses, recs)
					continue
				}
				if recs[0] != c.first {
					t.Errorf("%s::%s first record %v, want %v", c.typ, c.ident, recs[0], c.first)
				}
				last := recs[len(recs)-1]
				t.Logf("%s::%s FAILED: %s", c.typ, c.ident, last.Message)
				if msg := last.Message; !c.message.MatchString(msg) {
					t.Errorf("%s::%s FAILED with %q, want a match of %s", c.typ, c.ident, msg, c.message)
				}
			}
			var resp struct{ Text string }
			if err := json.Unmarshal(db.producer("response", "SequenceSum", "later"), &resp); err != nil || resp.Text != "2.5" {
				t.Errorf("later task response %q (%v), want 2.5", resp.Text, err)
			}
			// The failure lines name what failed.
			p.waitLine(`Raiser.*raises|raises.*Raiser`, time.Second)

			p.signal(syscall.SIGTERM)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			db.assertNoTaskInFlight()
		})
	}
}

// TestE2EShutdown sends real signals to the real process while tasks run:
// SIGINT lets them finish, SIGTERM (or a second signal) puts them back on
// the queue at once; nothing is left SCHEDULED or RUNNING.
func TestE2EShutdown(t *testing.T) {
	cases := []struct {
		name    string
		signals []syscall.Signal
		sleep   string // seconds the running handlers sleep
		drained bool   // running tasks finish rather than being re-enqueued
	}{
		{"SIGINT drains", []syscall.Signal{syscall.SIGINT}, "1.5", true},
		{"SIGTERM aborts", []syscall.Signal{syscall.SIGTERM}, "120", false},
		{"SIGINT then SIGTERM aborts", []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}, "120", false},
	}
	for _, kind := range bothDBs {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				db := newE2EDB(t, kind)
				db.batch(
					[]string{"register", "Sleep", "e2e_handlers.sleeper", "--timeout", "600"},
					[]string{"register", "SequenceSum", "tools.atp_demo.handler"},
					[]string{"enqueue", "Sleep", "run1", "--literal", "[" + tc.sleep + "]"},
					[]string{"enqueue", "Sleep", "run2", "--literal", "[" + tc.sleep + "]"},
					[]string{"enqueue", "SequenceSum", "wait1", "--literal", "[1]"},
					[]string{"enqueue", "SequenceSum", "wait2", "--literal", "[2]"},
				)
				p := startAtpd(t, "shutdown", baseEnv(), db.daemonArgs("-n", "2")...)
				db.waitStatus("Sleep", "run1", djangodb.Running, startTimeout)
				db.waitStatus("Sleep", "run2", djangodb.Running, startTimeout)

				sent := time.Now()
				for i, sig := range tc.signals {
					p.signal(sig)
					if i < len(tc.signals)-1 {
						p.waitLine(`termination in progress`, 10*time.Second)
					}
				}
				if code := p.wait(exitTimeout); code != 0 {
					t.Errorf("exit code %d, want 0", code)
				}
				took := time.Since(sent)
				t.Logf("from the first signal to exit: %v", took.Round(time.Millisecond))
				db.assertNoTaskInFlight()

				for _, ident := range []string{"run1", "run2"} {
					recs := db.taskLog("Sleep", ident)
					last := recs[len(recs)-1]
					if tc.drained {
						if last != (logRecord{5, ""}) {
							t.Errorf("drained %s ends with %v, want FINISHED", ident, last)
						}
						continue
					}
					if last != (logRecord{1, djangodb.MsgShutdownReenqueue}) {
						t.Errorf("aborted %s ends with %v, want ACCEPTED %q", ident, last, djangodb.MsgShutdownReenqueue)
					}
				}
				if !tc.drained && took > 20*time.Second {
					t.Errorf("abort took %v: running tasks were not re-enqueued at once", took)
				}
				// The waiting tasks were never started and are still queued.
				for _, ident := range []string{"wait1", "wait2"} {
					if s := db.status("SequenceSum", ident); s != int(djangodb.Accepted) {
						t.Errorf("waiting task %s is %s, want ACCEPTED", ident, djangodb.Status(s))
					}
				}
				accepted := db.queryInt(`SELECT count(*) FROM processes_instance WHERE status = 1`)
				if queued := db.queryInt(`SELECT count(*) FROM processes_task WHERE lock = 0`); queued != accepted {
					t.Errorf("%d waiting task rows for %d ACCEPTED instances", queued, accepted)
				}
			})
		}
	}
}

// TestE2EKilledDaemon: a daemon killed with SIGKILL leaves its task
// RUNNING; a second daemon's zombie sweep re-enqueues it after the type's
// timeout and runs it again.
func TestE2EKilledDaemon(t *testing.T) {
	for _, kind := range bothDBs {
		t.Run(kind.name, func(t *testing.T) {
			db := newE2EDB(t, kind)
			marker := filepath.Join(t.TempDir(), "first-run")
			input, _ := json.Marshal([]any{marker, 120})
			db.batch(
				[]string{"register", "Once", "e2e_handlers.sleep_once", "--timeout", "4", "--maxrestart", "2"},
				[]string{"enqueue", "Once", "t1", "--json", string(input)},
			)
			a := startAtpd(t, "A", baseEnv(), db.daemonArgs("-n", "1")...)
			db.waitStatus("Once", "t1", djangodb.Running, startTimeout)
			// RUNNING is written before the handler runs; killing A before
			// the handler made its marker would make the second run sleep
			// too.
			waitFor(t, startTimeout, func() string { return "the handler's marker " + marker }, func() bool {
				_, err := os.Stat(marker)
				return err == nil
			})
			a.Cmd.Process.Kill()
			a.wait(exitTimeout)
			if s := db.status("Once", "t1"); s != int(djangodb.Running) {
				t.Fatalf("after SIGKILL the task is %s, want RUNNING", djangodb.Status(s))
			}

			b := startAtpd(t, "B", baseEnv(), db.daemonArgs("-n", "1")...)
			db.waitStatus("Once", "t1", djangodb.Finished, time.Minute)
			recs := db.taskLog("Once", "t1")
			if got := statuses(recs); !slices.Equal(got, []int{1, 2, 3, 1, 2, 3, 5}) {
				t.Fatalf("log statuses %v, want a run, a zombie re-enqueue, a second run (%v)", got, recs)
			}
			if recs[3].Message != djangodb.MsgZombieReenqueued {
				t.Errorf("re-enqueue message %q, want %q", recs[3].Message, djangodb.MsgZombieReenqueued)
			}
			b.waitLine(`WARNING: .*t1`, time.Second)
			b.signal(syscall.SIGINT)
			if code := b.wait(exitTimeout); code != 0 {
				t.Errorf("B exit code %d, want 0", code)
			}
			db.assertNoTaskInFlight()
		})
	}
}

// TestE2EMaxStart: a task that keeps running past its timeout is cancelled
// and re-enqueued until it has been started maxstart times, then FAILED;
// the next task still runs.
func TestE2EMaxStart(t *testing.T) {
	for _, kind := range bothDBs {
		t.Run(kind.name, func(t *testing.T) {
			db := newE2EDB(t, kind)
			db.batch(
				[]string{"register", "Forever", "e2e_handlers.sleeper", "--timeout", "1", "--maxrestart", "1"},
				[]string{"register", "SequenceSum", "tools.atp_demo.handler"},
				[]string{"enqueue", "Forever", "f1", "--literal", "[600]"},
				[]string{"enqueue", "SequenceSum", "after", "--literal", "[1, 2]"},
			)
			p := startAtpd(t, "maxstart", baseEnv(), db.daemonArgs("-n", "1")...)
			db.waitStatus("Forever", "f1", djangodb.Failed, time.Minute)
			db.waitStatus("SequenceSum", "after", djangodb.Finished, 30*time.Second)
			recs := db.taskLog("Forever", "f1")
			if got := statuses(recs); !slices.Equal(got, []int{1, 2, 3, 1, 2, 3, 6}) {
				t.Fatalf("log statuses %v, want two starts then FAILED (%v)", got, recs)
			}
			if recs[3].Message != djangodb.MsgZombieReenqueued {
				t.Errorf("re-enqueue message %q, want %q", recs[3].Message, djangodb.MsgZombieReenqueued)
			}
			if want := djangodb.MaxStartsMessage(2, 2); recs[6].Message != want {
				t.Errorf("FAILED message %q, want %q", recs[6].Message, want)
			}
			p.signal(syscall.SIGINT)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			db.assertNoTaskInFlight()
		})
	}
}

// TestE2ETwoDaemonsExactlyOnce: two daemon processes share one PostgreSQL
// queue fed by a Python producer that retries on QueueFull; each of 2,000
// tasks is started exactly once and finishes.
func TestE2ETwoDaemonsExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 tasks through two daemons: not in -short")
	}
	const tasks = 2000
	db := newE2EDB(t, pgUTC)
	// A full queue before the daemons start makes them compete for a
	// backlog; the rest arrive while they run.
	began := time.Now()
	cmds := [][]string{{"register", "SequenceSum", "tools.atp_demo.handler"}}
	enqueue := func(i int) []string {
		return []string{"SequenceSum", fmt.Sprintf("t%04d", i), "--literal", fmt.Sprintf("(%d,)", i)}
	}
	for i := range djangodb.DefaultMaxQueueSize {
		cmds = append(cmds, append([]string{"enqueue"}, enqueue(i)...))
	}
	db.batch(cmds...)
	a := startAtpd(t, "A", baseEnv(), db.daemonArgs("-n", "2")...)
	b := startAtpd(t, "B", baseEnv(), db.daemonArgs("-n", "2")...)

	prod := db.liveProducer()
	full := 0
	for i := djangodb.DefaultMaxQueueSize; i < tasks; i++ {
		full += prod.enqueueRetrying(time.Minute, enqueue(i)...)
	}
	t.Logf("%d tasks enqueued in %v, QueueFull %d times", tasks, time.Since(began).Round(time.Millisecond), full)
	finished := 0
	waitFor(t, 3*time.Minute, func() string { return fmt.Sprintf("%d tasks FINISHED (%d so far)", tasks, finished) }, func() bool {
		finished = db.queryInt(`SELECT count(*) FROM processes_instance WHERE status = 5`)
		return finished == tasks
	})
	t.Logf("%d tasks enqueued and run in %v", tasks, time.Since(began).Round(time.Millisecond))

	if n := db.queryInt(`SELECT count(*) FROM (SELECT instance_id FROM processes_logrecord WHERE status = 3
		GROUP BY instance_id HAVING count(*) <> 1) x`); n != 0 {
		t.Errorf("%d tasks were started more or less than once", n)
	}
	if n := db.queryInt(`SELECT count(DISTINCT instance_id) FROM processes_logrecord WHERE status = 3`); n != tasks {
		t.Errorf("%d tasks started, want %d", n, tasks)
	}
	if n := db.queryInt(`SELECT count(*) FROM processes_response`); n != tasks {
		t.Errorf("%d responses, want %d", n, tasks)
	}

	counts := regexp.MustCompile(`ATPD: task counts .*\bstarted=(\d+) finished=(\d+)`)
	total := 0
	for _, p := range []*atpdProc{a, b} {
		p.signal(syscall.SIGINT)
		if code := p.wait(exitTimeout); code != 0 {
			t.Errorf("atpd %s exit code %d, want 0", p.name, code)
		}
		m := counts.FindStringSubmatch(p.waitLine(`ATPD: task counts`, time.Second))
		if m == nil {
			t.Fatalf("atpd %s: no task counts line", p.name)
		}
		started, _ := strconv.Atoi(m[1])
		t.Logf("atpd %s started %s tasks, finished %s", p.name, m[1], m[2])
		if started == 0 {
			t.Errorf("atpd %s started no task: the queue was not shared", p.name)
		}
		total += started
	}
	if total != tasks {
		t.Errorf("the daemons started %d tasks together, want %d", total, tasks)
	}
	db.assertNoTaskInFlight()
}

// TestE2EExecutorRouting: --executor sends handler paths to the embedded
// gpython executor (what gpython cannot run fails saying so), Go handlers
// still win, and --allow-handler refuses everything else.
func TestE2EExecutorRouting(t *testing.T) {
	db := newE2EDB(t, sqliteUTC)
	db.batch(
		[]string{"register", "Gpy", "e2e_gpy.double"},
		[]string{"register", "GpyNew", "e2e_gpy_fstring.describe"},
		[]string{"register", "SequenceSum", "tools.atp_demo.handler"},
		[]string{"register", "Denied", "e2e_handlers.raiser"},
		[]string{"enqueue", "Gpy", "g1", "--literal", "[1, 2, 3]"},
		[]string{"enqueue", "GpyNew", "g2", "--literal", "[1]"},
		[]string{"enqueue", "Denied", "d1", "--json", `{"k": 1}`},
		[]string{"enqueue", "SequenceSum", "s1", "--literal", "(1, 2)"},
	)
	p := startAtpd(t, "routing", baseEnv(), db.daemonArgs("-n", "2",
		"--executor", "e2e_gpy.=embedded", "--executor", "e2e_gpy_fstring.describe=embedded",
		"--allow-handler", "e2e_gpy.", "--allow-handler", "e2e_gpy_fstring.", "--allow-handler", "tools.atp_demo.handler")...)
	db.waitStatus("SequenceSum", "s1", djangodb.Finished, time.Minute)
	db.waitStatus("Gpy", "g1", djangodb.Finished, time.Minute)
	db.waitStatus("GpyNew", "g2", djangodb.Failed, time.Minute)
	db.waitStatus("Denied", "d1", djangodb.Failed, time.Minute)

	var resp struct{ Text string }
	if err := json.Unmarshal(db.producer("response", "Gpy", "g1"), &resp); err != nil || resp.Text != "[2, 4, 6]" {
		t.Errorf("gpython response %q (%v), want [2, 4, 6]", resp.Text, err)
	}
	for _, c := range []struct{ typ, ident, want string }{
		{"GpyNew", "g2", "gpython"},
		{"Denied", "d1", "not in allow_handlers"},
	} {
		recs := db.taskLog(c.typ, c.ident)
		if msg := recs[len(recs)-1].Message; !strings.Contains(msg, c.want) {
			t.Errorf("%s::%s FAILED with %q, want it to mention %q", c.typ, c.ident, msg, c.want)
		} else {
			t.Logf("%s::%s FAILED: %s", c.typ, c.ident, msg)
		}
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(exitTimeout); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	db.assertNoTaskInFlight()
}
