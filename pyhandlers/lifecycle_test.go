package pyhandlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/internal/testdb"
)

// pickleFloat is a protocol-2 pickle of a float.
func pickleFloat(f float64) []byte {
	return []byte(fmt.Sprintf("F%v\n.", f))
}

// deadlineExec gives each task a deadline from the moment Execute is called,
// as the daemon derives it from the task's start.
type deadlineExec struct {
	ex      executor.Executor
	timeout time.Duration
}

func (d *deadlineExec) Execute(ctx context.Context, task *executor.Task, s executor.TaskStatus) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	return d.ex.Execute(ctx, task, s)
}

// waitLog waits until a record with msg and match was logged.
func waitLog(t *testing.T, logs *logRecorder, msg string, match map[string]string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(logs.find(msg, match)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no log %q %v; log:\n%s", msg, match, logs.dump())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTimeout: a handler past its deadline is stopped, Execute returns the
// context's error at once, the task is left for the daemon, and the next
// task runs on a new worker.
func TestTimeout(t *testing.T) {
	cases := []struct {
		name, handler string
		started       string // what it prints once running
		grace         time.Duration
	}{
		// SIGTERM ends it.
		{"sleeper", "atpd_fixtures.sleeper", "sleeping 30.0", 2 * time.Second},
		// It ignores SIGTERM: SIGKILL after the grace period.
		{"ignores SIGTERM", "atpd_fixtures.stubborn", "ignoring SIGTERM", 300 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			logs := newLogRecorder()
			cfg := e.poolConfig(t, logs)
			cfg.KillGrace = c.grace
			p := startPool(t, cfg)
			e.register(t, "Pid", "atpd_fixtures.pid")
			e.register(t, "Sleep", c.handler)
			before := e.pidTask(t, p, "before")

			e.enqueueRaw(t, "Sleep", "long", pickleFloat(30))
			const timeout = time.Second
			o := e.runNext(t, &deadlineExec{p, timeout}, context.Background())
			if !errors.Is(o.err, context.DeadlineExceeded) {
				t.Fatalf("Execute error %v, want the deadline", o.err)
			}
			// Promptly: not after the handler's 30 s, nor the grace period.
			if o.took > timeout+c.grace {
				t.Errorf("Execute returned %v after start, deadline was %v", o.took, timeout)
			}
			// It did run past its deadline, rather than time out unstarted.
			waitLog(t, logs, "python handler output", map[string]string{"task_identifier": "long", "line": c.started})
			if st := e.status(t, o.id); st != djangodb.Running {
				t.Errorf("status %v after the timeout, want RUNNING left for the daemon", st)
			}
			began := time.Now()
			after := e.pidTask(t, p, "after")
			if after == before {
				t.Errorf("worker %d kept after its task timed out", before)
			}
			// The old worker is gone within the grace period.
			for processExists(before) {
				if time.Since(began) > c.grace+5*time.Second {
					t.Fatalf("timed-out worker %d still alive", before)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if c.grace < time.Second && len(logs.find("python worker did not exit in time, killing it", map[string]string{"worker_pid": strconv.Itoa(before)})) == 0 {
				t.Errorf("no SIGKILL logged for worker %d; log:\n%s", before, logs.dump())
			}
		})
	}
}

// TestOutputFlood: a handler printing megabytes neither blocks nor is
// buffered whole; lines are logged with the task, long lines truncated, and
// what is above the per-task limit is counted.
func TestOutputFlood(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	cfg := e.poolConfig(t, logs)
	cfg.MaxOutputLines = 500
	cfg.MaxLineLength = 256
	p := startPool(t, cfg)
	e.register(t, "Print", "atpd_fixtures.printer")
	e.register(t, "Pid", "atpd_fixtures.pid")

	const lines, width, long = 40000, 100, 1 << 20 // about 5 MB
	// protocol 2 tuple of three ints
	pk := fmt.Sprintf("\x80\x02J%sJ%sJ%s\x87.", le32(lines), le32(width), le32(long))
	e.enqueueRaw(t, "Print", "flood", []byte(pk))
	o := e.runNext(t, p, context.Background())
	if o.err != nil {
		t.Fatalf("Execute: %v", o.err)
	}
	task := map[string]string{"task_type": "Print", "task_identifier": "flood"}
	out := logs.find("python handler output", task)
	if len(out) != cfg.MaxOutputLines {
		t.Errorf("%d output lines logged, want the limit %d", len(out), cfg.MaxOutputLines)
	}
	for _, l := range out {
		if len(l.Attrs["line"]) > cfg.MaxLineLength {
			t.Fatalf("line of %d bytes logged, limit %d", len(l.Attrs["line"]), cfg.MaxLineLength)
		}
	}
	if got, want := out[0].Attrs["line"], "00000000 "+strings.Repeat("x", width); got != want {
		t.Errorf("first line %q, want %q", got, want)
	}
	// Every line beyond the limit counted: the printed lines, the long line,
	// three stderr lines and the unterminated last line.
	dropped := logs.find("python handler output: lines dropped", task)
	if want := strconv.Itoa(lines + 1 + 3 + 1 - cfg.MaxOutputLines); len(dropped) != 1 || dropped[0].Attrs["dropped_lines"] != want {
		t.Errorf("dropped-lines records %v, want one with %s", dropped, want)
	}
	e.pidTask(t, p, "after")

	// Below the limit, the long line is truncated, stderr is logged as such,
	// and the unterminated last line is not lost.
	cfg.MaxOutputLines = -1
	logs2 := newLogRecorder()
	cfg.Logger = logs2.logger()
	p2 := startPool(t, cfg)
	pk = fmt.Sprintf("\x80\x02J%sJ%sJ%s\x87.", le32(2), le32(3), le32(long))
	e.enqueueRaw(t, "Print", "small", []byte(pk))
	if o := e.runNext(t, p2, context.Background()); o.err != nil {
		t.Fatalf("Execute: %v", o.err)
	}
	task["task_identifier"] = "small"
	var got []string
	for _, l := range logs2.find("python handler output", task) {
		s := l.Attrs["stream"] + ":" + l.Attrs["line"]
		if l.Attrs["truncated"] == "true" {
			s += "...(truncated)"
		}
		got = append(got, s)
	}
	want := []string{"stdout:00000000 xxx", "stdout:00000001 xxx", "stdout:" + strings.Repeat("L", cfg.MaxLineLength) + "...(truncated)",
		"stderr:err line 0", "stderr:err line 1", "stderr:err line 2", "stdout:last line without newline"}
	if !sameSet(got, want) {
		t.Errorf("logged output\n%q\nwant\n%q", got, want)
	}
}

func (h *logRecorder) logger() *slog.Logger { return slog.New(h) }

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestOutputAttribution: each task's output is logged with that task and no
// other, including what it printed last without a newline.
func TestOutputAttribution(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	p := startPool(t, e.poolConfig(t, logs))
	e.register(t, "Mark", "atpd_fixtures.marked_output")
	const tasks, lines = 20, 50
	for i := 0; i < tasks; i++ {
		e.enqueueRaw(t, "Mark", "m"+strconv.Itoa(i), []byte{'K', lines, '.'})
	}
	for i := 0; i < tasks; i++ {
		if o := e.runNext(t, p, context.Background()); o.err != nil {
			t.Fatalf("Execute: %v", o.err)
		}
	}
	recs := logs.find("python handler output", nil)
	if len(recs) != tasks*(2*lines+1) {
		t.Errorf("%d lines logged, want %d", len(recs), tasks*(2*lines+1))
	}
	for _, l := range recs {
		fields := strings.Fields(l.Attrs["line"])
		if len(fields) < 2 || fields[1] != l.Attrs["task_identifier"] {
			t.Errorf("line %q logged with task %q", l.Attrs["line"], l.Attrs["task_identifier"])
		}
	}
}

// TestDjangoHandler: with a settings module, handlers use the Django ORM on
// the same database the daemon writes.
func TestDjangoHandler(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) { djangoHandler(t, newEnvOn(t, db)) })
	}
}

func djangoHandler(t *testing.T, e *env) {
	cfg := e.poolConfig(t, newLogRecorder())
	cfg.SettingsModule = "atpdtest.settings"
	cfg.Env = append(testdb.DjangoEnv(t, e.dsn, e.cfg), "PYTHONDONTWRITEBYTECODE=1")
	p := startPool(t, cfg)
	e.register(t, "Orm", "atpd_fixtures.django_orm")
	e.register(t, "Pid", "atpd_fixtures.pid")
	before := e.pidTask(t, p, "before")
	for i := 0; i < 3; i++ {
		e.enqueueRaw(t, "Orm", "orm"+strconv.Itoa(i), []byte("N."))
		o := e.runNext(t, p, context.Background())
		if o.err != nil {
			t.Fatalf("Execute: %v", o.err)
		}
		r := e.response(t, o.id)
		var seen struct {
			ID          int64 `json:"id"`
			Status      int   `json:"status"`
			Instances   int   `json:"instances"`
			LogStatuses []int `json:"log_statuses"`
		}
		if err := json.Unmarshal(r.Data, &seen); err != nil {
			t.Fatalf("response %q: %v", r.Data, err)
		}
		if seen.ID != o.id || seen.Status != int(djangodb.Running) || seen.Instances != i+2 || fmt.Sprint(seen.LogStatuses) != "[1 2 3]" {
			t.Errorf("handler saw %+v through the ORM, want id %d RUNNING, %d instances, log [1 2 3]", seen, o.id, i+2)
		}
		if r.MimeType != "application/json" {
			t.Errorf("mime type %q", r.MimeType)
		}
	}
	if after := e.pidTask(t, p, "after"); after != before {
		t.Errorf("worker replaced (%d -> %d) by ORM tasks", before, after)
	}
}

// TestStartFailures: what keeps workers from starting is reported by Start.
func TestStartFailures(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"interpreter exits", func(c *Config) { c.Python = "false" }, "python worker exited with status 1"},
		{"settings module missing", func(c *Config) { c.SettingsModule = "no_such_settings" }, "django.setup() with settings no_such_settings failed: No module named 'no_such_settings'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs := newLogRecorder()
			cfg := e.poolConfig(t, logs)
			c.edit(&cfg)
			p, err := New(cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = p.Start(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start error %v, want one containing %q", err, c.want)
			}
			if err := p.Execute(ctx, nil, nil); !errors.Is(err, ErrStopped) {
				t.Errorf("Execute after a failed Start: %v, want ErrStopped", err)
			}
		})
	}
}

// TestConfigValidate lists each invalid setting.
func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"defaults", Config{Python: "sh"}, ""},
		{"missing interpreter", Config{Python: "/no/such/python"}, `python interpreter "/no/such/python"`},
		{"settings not dotted", Config{Python: "sh", SettingsModule: "a-b.settings"}, `settings module "a-b.settings" is not a dotted module path`},
		{"negative workers", Config{Python: "sh", Workers: -1}, "workers: -1, want at least 1"},
		{"negative max tasks", Config{Python: "sh", MaxTasksPerWorker: -2}, "max tasks per worker: -2"},
		{"negative grace", Config{Python: "sh", KillGrace: -time.Second}, "kill grace: -1s"},
		{"tiny messages", Config{Python: "sh", MaxMessageSize: 10}, "max message size: 10"},
		{"bad env", Config{Python: "sh", Env: []string{"NOVALUE"}}, `environment entry "NOVALUE"`},
		{"empty path", Config{Python: "sh", PythonPath: []string{""}}, "python path: empty directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate: %v, want %q", err, c.want)
			}
		})
	}
}

// TestReloadChangedHandler: an edited handler module runs on the next task
// in the same worker.
func TestReloadChangedHandler(t *testing.T) {
	e := newEnv(t)
	checkReload(t, e, e.poolConfig(t, newLogRecorder()))
}

// checkReload runs three versions of a handler module, edited between
// tasks, in one worker of a pool on cfg, with and without the .pyc files
// an import writes: each task must run the version just written. The
// versions have equal sizes and mtimes within one second, which a .pyc
// cannot tell apart (it records the whole-second mtime, and on Python 2
// not the size).
func checkReload(t *testing.T, e *env, cfg Config) {
	t.Helper()
	modes := []struct {
		name     string
		env      []string
		bytecode bool
	}{
		{"no bytecode", cfg.Env, false},
		// Empty, the variable is off, whatever the test's own environment
		// holds (the last entry wins).
		{"bytecode written", append(cfg.Env[:len(cfg.Env):len(cfg.Env)], "PYTHONDONTWRITEBYTECODE="), true},
	}
	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := cfg
			cfg.Env = m.env
			cfg.PythonPath = append(append([]string(nil), cfg.PythonPath...), dir)
			p := startPool(t, cfg)
			mod := filepath.Join(dir, "edited_handler.py")
			write := func(version string, mtime time.Time) {
				t.Helper()
				src := "import os\n\ndef handler(taskStatus, input):\n    taskStatus.storeResponse('%s %d' % (" + strconv.Quote(version) + ", os.getpid()), 'text/plain')\n"
				if err := os.WriteFile(mod, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
				// Set the time explicitly so the test does not depend on
				// file system granularity.
				if err := os.Chtimes(mod, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			typ := "Edit" + strconv.Itoa(i)
			e.register(t, typ, "edited_handler.handler")
			base := time.Now().Truncate(time.Second)
			var pids []string
			for j, v := range []string{"one", "two", "six"} { // equal lengths: only the mtime changes
				write(v, base.Add(time.Duration(j)*time.Millisecond))
				e.enqueueRaw(t, typ, v, []byte("N."))
				o := e.runNext(t, p, context.Background())
				if o.err != nil {
					t.Fatalf("Execute: %v", o.err)
				}
				got := strings.Fields(string(e.response(t, o.id).Data))
				if len(got) != 2 || got[0] != v {
					t.Fatalf("handler answered %q, want version %s", got, v)
				}
				pids = append(pids, got[1])
			}
			// Python 2 writes edited_handler.pyc beside the source,
			// Python 3 into __pycache__.
			pyc, _ := filepath.Glob(filepath.Join(dir, "*.pyc"))
			cached, _ := filepath.Glob(filepath.Join(dir, "__pycache__", "*.pyc"))
			if wrote := len(pyc)+len(cached) > 0; wrote != m.bytecode {
				t.Errorf(".pyc files written: %v, want %v", wrote, m.bytecode)
			}
			if pids[0] != pids[1] || pids[1] != pids[2] {
				t.Errorf("workers %v: the reload should not need a new worker", pids)
			}
		})
	}
}

// TestMaxTasksPerWorker: workers are replaced after that many tasks.
func TestMaxTasksPerWorker(t *testing.T) {
	e := newEnv(t)
	cfg := e.poolConfig(t, newLogRecorder())
	cfg.MaxTasksPerWorker = 2
	p := startPool(t, cfg)
	e.register(t, "Pid", "atpd_fixtures.pid")
	var pids []int
	for i := 0; i < 5; i++ {
		pids = append(pids, e.pidTask(t, p, "p"+strconv.Itoa(i)))
	}
	if pids[0] != pids[1] || pids[1] == pids[2] || pids[2] != pids[3] || pids[3] == pids[4] {
		t.Errorf("worker pids %v, want a new worker every 2 tasks", pids)
	}
}

// TestConcurrentWorkers: Workers tasks run at once, and no more. The
// handlers meet in a barrier directory instead of being timed.
func TestConcurrentWorkers(t *testing.T) {
	e := newEnv(t)
	cfg := e.poolConfig(t, newLogRecorder())
	cfg.Workers = 2
	p := startPool(t, cfg)
	e.register(t, "Barrier", "atpd_fixtures.barrier")
	dir := t.TempDir()
	const tasks = 6
	for i := 0; i < tasks; i++ {
		e.enqueueRaw(t, "Barrier", "b"+strconv.Itoa(i), []byte("X"+string(le32(len(dir)))+dir+"."))
	}
	var wg sync.WaitGroup
	outs := make([]outcome, tasks)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = e.runNext(t, p, context.Background())
		}()
	}
	wg.Wait()
	for _, o := range outs {
		if o.err != nil {
			t.Errorf("%s: %v", o.task.Identifier, o.err)
			continue
		}
		if got := string(e.response(t, o.id).Data); got != "2" {
			t.Errorf("%s saw %s handlers at once, want 2 (Workers)", o.task.Identifier, got)
		}
	}
}

// TestStopInterruptsTask: Stop ends running tasks with ErrStopped and leaves
// no worker behind.
func TestStopInterruptsTask(t *testing.T) {
	e := newEnv(t)
	logs := newLogRecorder()
	cfg := e.poolConfig(t, logs)
	cfg.Workers = 2
	p := startPool(t, cfg)
	e.register(t, "Sleep", "atpd_fixtures.sleeper")
	e.enqueueRaw(t, "Sleep", "long", pickleFloat(30))
	done := make(chan outcome)
	go func() { done <- e.runNext(t, p, context.Background()) }()
	waitLog(t, logs, "python handler output", map[string]string{"line": "sleeping 30.0"})
	var pids []int
	p.mu.Lock()
	for w := range p.live {
		pids = append(pids, w.pid)
	}
	p.mu.Unlock()
	began := time.Now()
	p.Stop()
	o := <-done
	if !errors.Is(o.err, ErrStopped) {
		t.Errorf("Execute error %v, want ErrStopped", o.err)
	}
	if took := time.Since(began); took > 2*cfg.KillGrace {
		t.Errorf("Stop took %v, grace %v", took, cfg.KillGrace)
	}
	for _, pid := range pids {
		if processExists(pid) {
			t.Errorf("worker %d alive after Stop", pid)
		}
	}
	if len(pids) == 0 {
		t.Error("no live workers seen before Stop")
	}
	if err := p.Execute(context.Background(), o.task, nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Execute after Stop: %v, want ErrStopped", err)
	}
}
