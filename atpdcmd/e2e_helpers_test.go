package atpdcmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// atpdBin is the daemon binary TestMain builds once for the e2e tests.
var atpdBin string

func TestMain(m *testing.M) {
	os.Exit(e2e.MainWithAtpd(m, "e2e", "..", "./cmd/atpd", &atpdBin))
}

// atpdProc is one running daemon process.
type atpdProc struct {
	*e2e.Proc
	name string // as the test named it, without the "atpd " of messages
}

// baseEnv is the environment without anything that would configure atpd
// or Django behind the test's back.
func baseEnv() []string { return e2e.BaseEnv() }

// startAtpd runs the binary with args in env; the process is killed at
// the end of the test if it is still running.
func startAtpd(t *testing.T, name string, env []string, args ...string) *atpdProc {
	t.Helper()
	return &atpdProc{Proc: e2e.Start(t, "atpd "+name, t.TempDir(), env, atpdBin, args...), name: name}
}

func (p *atpdProc) waitLine(re string, timeout time.Duration) string {
	p.T.Helper()
	return p.WaitLine(re, timeout)
}

func (p *atpdProc) signal(sig syscall.Signal) {
	p.T.Helper()
	p.Signal(sig)
}

func (p *atpdProc) wait(timeout time.Duration) int {
	p.T.Helper()
	return p.Wait(timeout)
}

// e2eDB is one throwaway database with the producer and SQL access to it.
type e2eDB struct {
	*e2e.DB
	t      *testing.T
	name   string
	py     string
	dir    string // integration/
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

// e2eDBOptions are the limits of these tests' few-task scenarios.
var e2eDBOptions = e2e.DBOptions{
	BusyTimeout:   10 * time.Second,
	QueryTimeout:  10 * time.Second,
	ExecTimeout:   10 * time.Second,
	PythonTimeout: 2 * time.Minute,
	BatchBuffer:   16 << 20,
}

func newE2EDB(t *testing.T, k dbKind) *e2eDB {
	t.Helper()
	var dsn string
	if k.pg {
		dsn = testdb.Postgres(t, k.cfg)
	} else {
		dsn = testdb.SQLite(t, k.cfg)
	}
	hdl, err := filepath.Abs(filepath.Join("testdata", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	db := e2e.OpenDB(t, dsn, k.pg, k.cfg, e2eDBOptions)
	return &e2eDB{DB: db, t: t, name: k.name, py: db.Py, dir: db.Dir, hdlDir: hdl}
}

// dbArgs are the flags that point atpd at this database.
func (d *e2eDB) dbArgs() []string { return d.DBArgs() }

// daemonArgs are dbArgs plus the test's Python handlers and extra.
func (d *e2eDB) daemonArgs(extra ...string) []string {
	args := append(d.dbArgs(), "--python", d.py, "-p", d.hdlDir, "--poll-interval", "20ms")
	return append(args, extra...)
}

func (d *e2eDB) producer(args ...string) json.RawMessage {
	d.t.Helper()
	return d.Run(nil, append([]string{"producer.py"}, args...)...)
}

// batch runs producer commands in one Python process; each must succeed.
func (d *e2eDB) batch(cmds ...[]string) []json.RawMessage {
	d.t.Helper()
	return d.Batch(cmds...)
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

func (d *e2eDB) queryInt(q string, args ...any) int {
	d.t.Helper()
	return d.QueryInt(q, args...)
}

func (d *e2eDB) exec(q string, args ...any) {
	d.t.Helper()
	d.Exec(q, args...)
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
	e2e.WaitFor(t, timeout, 25*time.Millisecond, describe, cond)
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
	*e2e.LiveProducer
	t *testing.T
}

func (d *e2eDB) liveProducer() *liveProducer {
	d.t.Helper()
	return &liveProducer{LiveProducer: d.LiveProducer(), t: d.t}
}

// queueFullExit is producer.py's exit status for tracker.QueueFull.
const queueFullExit = 3

// enqueueRetrying enqueues like a patient producer: on QueueFull it waits
// for the daemons to make room. It returns how often the queue was full.
func (p *liveProducer) enqueueRetrying(timeout time.Duration, args ...string) (full int) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for ; ; full++ {
		a := p.Do(append([]string{"enqueue"}, args...)...)
		switch {
		case a.Exit == 0:
			return full
		case a.Exit != queueFullExit:
			p.t.Fatalf("enqueue %v: exit %d: %s", args, a.Exit, a.Message)
		case time.Now().After(deadline):
			p.t.Fatalf("enqueue %v: queue still full after %v", args, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
