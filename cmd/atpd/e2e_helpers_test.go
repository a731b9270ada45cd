package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "modernc.org/sqlite"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// atpdBin is the daemon binary TestMain builds once for the e2e tests.
var atpdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atpd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "atpd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	atpdBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lineLog collects a process's output lines and lets tests await one.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *lineLog) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.changed
}

func (l *lineLog) String() string {
	lines, _ := l.snapshot()
	return strings.Join(lines, "\n")
}

// atpdProc is one running daemon process.
type atpdProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    *lineLog
	exited chan struct{}
	err    error // of Wait, valid once exited is closed
}

// baseEnv is the environment without anything that would configure atpd
// or Django behind the test's back.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ATPD_") || k == "DJANGO_SETTINGS_MODULE" || k == "PYTHONPATH" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1")
}

// startAtpd runs the binary with args in env; the process is killed at
// the end of the test if it is still running.
func startAtpd(t *testing.T, name string, env []string, args ...string) *atpdProc {
	t.Helper()
	p := &atpdProc{t: t, name: name, out: newLineLog(), exited: make(chan struct{})}
	p.cmd = exec.Command(atpdBin, args...)
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start atpd %s: %v", name, err)
	}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				p.out.add(sc.Text())
			}
		}()
	}
	go func() {
		readers.Wait()
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("atpd %s output:\n%s", name, p.out)
		}
	})
	return p
}

// waitLine waits for an output line matching re and returns it.
func (p *atpdProc) waitLine(re string, timeout time.Duration) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	seen := 0
	for {
		lines, changed := p.out.snapshot()
		for _, l := range lines[seen:] {
			if rx.MatchString(l) {
				return l
			}
		}
		seen = len(lines)
		select {
		case <-changed:
		case <-p.exited:
			lines, _ := p.out.snapshot()
			for _, l := range lines[seen:] {
				if rx.MatchString(l) {
					return l
				}
			}
			p.t.Fatalf("atpd %s exited (%v) without printing a line matching %q", p.name, p.err, re)
		case <-deadline:
			p.t.Fatalf("atpd %s printed no line matching %q within %v", p.name, re, timeout)
		}
	}
}

func (p *atpdProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to atpd %s: %v", sig, p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *atpdProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("atpd %s still running after %v", p.name, timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	p.t.Fatalf("atpd %s: %v", p.name, p.err)
	return -1
}

// e2eDB is one throwaway database with the producer and SQL access to it.
type e2eDB struct {
	t      *testing.T
	name   string
	dsn    string
	cfg    testdb.Config
	pg     bool
	sql    *sql.DB
	py     string
	dir    string // integration/
	djEnv  []string
	hdlDir string // testdata/e2e: the Python handlers of these tests
}

type dbKind struct {
	name string
	pg   bool
	cfg  testdb.Config
}

var (
	pgUTC       = dbKind{"postgres", true, testdb.Config{UseTZ: true}}
	sqliteUTC   = dbKind{"sqlite", false, testdb.Config{UseTZ: true}}
	sqliteNaive = dbKind{"sqlite-naive-vienna", false, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}}
	bothDBs     = []dbKind{pgUTC, sqliteUTC}
)

func newE2EDB(t *testing.T, k dbKind) *e2eDB {
	t.Helper()
	d := &e2eDB{t: t, name: k.name, cfg: k.cfg, pg: k.pg}
	if k.pg {
		d.dsn = testdb.Postgres(t, k.cfg)
	} else {
		d.dsn = testdb.SQLite(t, k.cfg)
	}
	d.py = testdb.Python(t)
	d.dir = filepath.Join(testdb.RepoRoot(t), "integration")
	d.djEnv = testdb.DjangoEnv(t, d.dsn, k.cfg)
	hdl, err := filepath.Abs(filepath.Join("testdata", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	d.hdlDir = hdl
	driver, src := "postgres", d.dsn
	if !k.pg {
		driver, src = "sqlite", djangodb.SQLitePath(d.dsn)+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d.sql = db
	return d
}

// dbArgs are the flags that point atpd at this database.
func (d *e2eDB) dbArgs() []string {
	zone := d.cfg.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	return []string{"--db", d.dsn, "--use-tz=" + strconv.FormatBool(d.cfg.UseTZ), "--time-zone", zone}
}

// daemonArgs are dbArgs plus the test's Python handlers and extra.
func (d *e2eDB) daemonArgs(extra ...string) []string {
	args := append(d.dbArgs(), "--python", d.py, "-p", d.hdlDir, "--poll-interval", "20ms")
	return append(args, extra...)
}

func (d *e2eDB) producer(args ...string) json.RawMessage {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.py, append([]string{"producer.py"}, args...)...)
	cmd.Dir, cmd.Env = d.dir, d.djEnv
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("producer.py %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// batch runs producer commands in one Python process; each must succeed.
func (d *e2eDB) batch(cmds ...[]string) []json.RawMessage {
	d.t.Helper()
	var in bytes.Buffer
	for _, c := range cmds {
		line, _ := json.Marshal(c)
		in.Write(append(line, '\n'))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.py, "producer.py", "batch")
	cmd.Dir, cmd.Env, cmd.Stdin = d.dir, d.djEnv, &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("producer.py batch: %v: %s", err, stderr.String())
	}
	var results []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for i := 0; sc.Scan(); i++ {
		var r struct {
			Exit    int             `json:"exit"`
			Result  json.RawMessage `json:"result"`
			Error   string          `json:"error"`
			Message string          `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			d.t.Fatalf("producer.py batch: line %q: %v", sc.Text(), err)
		}
		if r.Exit != 0 {
			d.t.Fatalf("producer.py %v: exit %d: %s: %s", cmds[i], r.Exit, r.Error, r.Message)
		}
		results = append(results, r.Result)
	}
	if len(results) != len(cmds) {
		d.t.Fatalf("producer.py batch: %d results for %d commands: %s", len(results), len(cmds), stderr.String())
	}
	return results
}

// logRecord is one record of `producer.py log`.
type logRecord struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// taskLog returns a task's log as the Python producer API reads it.
func (d *e2eDB) taskLog(typ, ident string) []logRecord {
	d.t.Helper()
	var out struct {
		Records []logRecord `json:"records"`
	}
	if err := json.Unmarshal(d.producer("log", typ, ident), &out); err != nil {
		d.t.Fatal(err)
	}
	return out.Records
}

func (d *e2eDB) rebind(q string) string {
	if !d.pg {
		return q
	}
	n := 0
	return regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string {
		n++
		return "$" + strconv.Itoa(n)
	})
}

func (d *e2eDB) queryInt(q string, args ...any) int {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := d.sql.QueryRowContext(ctx, d.rebind(q), args...).Scan(&n); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (d *e2eDB) exec(q string, args ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.sql.ExecContext(ctx, d.rebind(q), args...); err != nil {
		d.t.Fatalf("%s: %v", q, err)
	}
}

// status returns the instance's status, -1 when there is no such instance.
func (d *e2eDB) status(typ, ident string) int {
	d.t.Helper()
	return d.queryInt(`SELECT COALESCE(MAX(i.status), -1) FROM processes_instance i
		JOIN processes_type t ON t.id = i.type_id WHERE t.identifier = ? AND i.identifier = ?`, typ, ident)
}

// waitFor polls cond until it holds or timeout passes; describe says
// what was awaited and the state last seen, for the failure message.
func waitFor(t *testing.T, timeout time.Duration, describe func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, describe())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (d *e2eDB) waitStatus(typ, ident string, want djangodb.Status, timeout time.Duration) {
	d.t.Helper()
	last := -1
	waitFor(d.t, timeout, func() string {
		return fmt.Sprintf("%s::%s to be %s (last seen %s)", typ, ident, want, djangodb.Status(last))
	}, func() bool {
		last = d.status(typ, ident)
		return last == int(want)
	})
}

// assertNoTaskInFlight checks that no instance is SCHEDULED or RUNNING and
// no task row is claimed: nothing a stopped daemon took is left hanging.
func (d *e2eDB) assertNoTaskInFlight() {
	d.t.Helper()
	if n := d.queryInt(`SELECT count(*) FROM processes_instance WHERE status IN (2, 3)`); n != 0 {
		d.t.Errorf("%d instances left SCHEDULED or RUNNING", n)
	}
	if n := d.queryInt(`SELECT count(*) FROM processes_task WHERE lock <> 0`); n != 0 {
		d.t.Errorf("%d task rows left claimed", n)
	}
}

func statuses(recs []logRecord) []int {
	out := make([]int, len(recs))
	for i, r := range recs {
		out[i] = r.Status
	}
	return out
}

// liveProducer is a `producer.py batch` process driven one command at a
// time, for producers that must react to the answer (QueueFull).
type liveProducer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func (d *e2eDB) liveProducer() *liveProducer {
	d.t.Helper()
	cmd := exec.Command(d.py, "producer.py", "batch")
	cmd.Dir, cmd.Env = d.dir, d.djEnv
	stdin, err := cmd.StdinPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	p := &liveProducer{t: d.t, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	d.t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			d.t.Errorf("producer.py batch: %v: %s", err, stderr.String())
		}
	})
	return p
}

// do runs one command and returns its exit code and error message.
func (p *liveProducer) do(args ...string) (int, string) {
	p.t.Helper()
	line, _ := json.Marshal(args)
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		p.t.Fatalf("producer.py batch: write: %v", err)
	}
	if !p.out.Scan() {
		p.t.Fatalf("producer.py batch: no answer to %v: %v", args, p.out.Err())
	}
	var r struct {
		Exit    int    `json:"exit"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		p.t.Fatalf("producer.py batch: answer %q: %v", p.out.Text(), err)
	}
	return r.Exit, r.Message
}

// queueFullExit is producer.py's exit status for tracker.QueueFull.
const queueFullExit = 3

// enqueueRetrying enqueues like a patient producer: on QueueFull it waits
// for the daemons to make room. It returns how often the queue was full.
func (p *liveProducer) enqueueRetrying(timeout time.Duration, args ...string) (full int) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for ; ; full++ {
		code, msg := p.do(append([]string{"enqueue"}, args...)...)
		switch {
		case code == 0:
			return full
		case code != queueFullExit:
			p.t.Fatalf("enqueue %v: exit %d: %s", args, code, msg)
		case time.Now().After(deadline):
			p.t.Fatalf("enqueue %v: queue still full after %v", args, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
