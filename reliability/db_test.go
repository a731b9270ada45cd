package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// rdb is one Django-migrated database with SQL access, the Python producer
// and the settings to point daemons at it.
type rdb struct {
	*e2e.DB
	t *testing.T
}

type dbKind struct {
	name string
	pg   bool
	cfg  testdb.Config
}

var (
	pgUTC     = dbKind{"postgres", true, testdb.Config{UseTZ: true}}
	sqliteUTC = dbKind{"sqlite", false, testdb.Config{UseTZ: true}}
)

func newDB(t *testing.T, k dbKind) *rdb {
	t.Helper()
	var dsn string
	if k.pg {
		dsn = testdb.Postgres(t, k.cfg)
	} else {
		dsn = testdb.SQLite(t, k.cfg)
	}
	return openDB(t, dsn, k.pg, k.cfg)
}

// rdbOptions are the limits of the scenarios, which move many thousands
// of rows; the test's own sessions are marked so that fault injection
// spares them.
var rdbOptions = e2e.DBOptions{
	BusyTimeout:   20 * time.Second,
	AppName:       testAppName,
	MaxOpenConns:  2,
	QueryTimeout:  30 * time.Second,
	ExecTimeout:   5 * time.Minute,
	PythonTimeout: 5 * time.Minute,
	BatchBuffer:   64 << 20,
}

// openDB wraps an already migrated database.
func openDB(t *testing.T, dsn string, pg bool, cfg testdb.Config) *rdb {
	t.Helper()
	return &rdb{DB: e2e.OpenDB(t, dsn, pg, cfg, rdbOptions), t: t}
}

// testAppName marks the test's own PostgreSQL sessions, which fault
// injection spares.
const testAppName = "atpd-reliability-test"

func withAppName(t *testing.T, dsn string) string {
	t.Helper()
	return e2e.WithAppName(t, dsn, testAppName)
}

// atpdArgs are the flags that run atpd on this database with the ledger
// handlers importable, JSON logs and test-friendly timings.
func (d *rdb) atpdArgs(extra ...string) []string {
	args := append(d.DBArgs(), "--python", d.Py, "-p", d.Dir, "--log-format", "json", "--poll-interval", "20ms", "--sweep-interval", "1s")
	return append(args, extra...)
}

// startAtpd runs the daemon on this database; RELIABILITY_LEDGER_TAG marks
// its ledger lines with tag.
func (d *rdb) startAtpd(name, tag string, extra ...string) *proc {
	d.t.Helper()
	env := append(baseEnv(), "RELIABILITY_LEDGER_TAG="+tag)
	p := startProc(d.t, name, d.t.TempDir(), env, atpdBin, d.atpdArgs(extra...)...)
	p.WaitLine(`ATPD: started`, time.Minute)
	return p
}

// register registers a task type with the Python producer API.
func (d *rdb) register(typ, handler string, timeout float64, maxrestart int) {
	d.t.Helper()
	d.Batch([]string{"register", typ, handler, "--timeout", strconv.FormatFloat(timeout, 'f', -1, 64),
		"--maxrestart", strconv.Itoa(maxrestart)})
}

// bulkEnqueue inserts n waiting tasks of typ, identifiers prefix1 ..
// prefixN, all with the stored input text, in one transaction of a few
// statements: the rows tracker.enqueueTask writes (instance ACCEPTED, its
// log record, input, waiting task row), without the queue limit, which is
// the producer's own check.
func (d *rdb) bulkEnqueue(typ, prefix string, n int, input string) {
	d.t.Helper()
	typeID := d.QueryInt(`SELECT id FROM processes_type WHERE identifier = ?`, typ)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tx, err := d.SQL.BeginTx(ctx, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	defer tx.Rollback()
	run := func(q string, args ...any) {
		if _, err := tx.ExecContext(ctx, d.Rebind(q), args...); err != nil {
			d.t.Fatalf("bulk enqueue: %s: %v", q, err)
		}
	}
	var now any = time.Now().UTC().Truncate(time.Microsecond)
	if !d.PG {
		// Django's SQLite text form: naive, in UTC under USE_TZ.
		t := now.(time.Time)
		if !d.Cfg.UseTZ {
			loc, err := time.LoadLocation(d.Zone())
			if err != nil {
				d.t.Fatal(err)
			}
			t = t.In(loc)
		}
		now = t.Format("2006-01-02 15:04:05.000000")
	}
	like := prefix + "%"
	if d.PG {
		run(`INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status)
			SELECT ? || g, ?, ?, ?, 1 FROM generate_series(1, ?) g`, prefix, typeID, now, now, n)
	} else {
		run(`WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?)
			INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status)
			SELECT ? || x, ?, ?, ?, 1 FROM g`, n, prefix, typeID, now, now)
	}
	sel := ` FROM processes_instance WHERE type_id = ? AND identifier LIKE ? ORDER BY id`
	run(`INSERT INTO processes_logrecord (instance_id, time, status, message) SELECT id, ?, 1, ''`+sel, now, typeID, like)
	run(`INSERT INTO processes_input (instance_id, input) SELECT id, ?`+sel, input, typeID, like)
	run(`INSERT INTO processes_task (instance_id, time, lock) SELECT id, ?, 0`+sel, now, typeID, like)
	if err := tx.Commit(); err != nil {
		d.t.Fatalf("bulk enqueue: commit: %v", err)
	}
}

// statusCounts counts instances by status.
func (d *rdb) statusCounts() map[djangodb.Status]int {
	d.t.Helper()
	out, err := d.tryStatusCounts()
	if err != nil {
		d.t.Fatalf("count instances by status: %v", err)
	}
	return out
}

func (d *rdb) tryStatusCounts() (map[djangodb.Status]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := d.SQL.QueryContext(ctx, `SELECT status, count(*) FROM processes_instance GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[djangodb.Status]int{}
	for rows.Next() {
		var s djangodb.Status
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// waitTerminal waits until n instances are FINISHED or FAILED. A failed
// poll (the database being restarted under the test) is only retried.
func (d *rdb) waitTerminal(n int, timeout time.Duration) {
	d.t.Helper()
	var last map[djangodb.Status]int
	var lastErr error
	waitFor(d.t, timeout, func() string {
		return fmt.Sprintf("%d instances to end; by status: %v (last poll error: %v)", n, last, lastErr)
	}, func() bool {
		c, err := d.tryStatusCounts()
		if err != nil {
			lastErr = err
			return false
		}
		last = c
		return last[djangodb.Finished]+last[djangodb.Failed] >= n
	})
}

// waitFinished waits until at least n instances are FINISHED.
func (d *rdb) waitFinished(n int, timeout time.Duration) {
	d.t.Helper()
	var last map[djangodb.Status]int
	waitFor(d.t, timeout, func() string {
		return fmt.Sprintf("%d instances to finish; by status: %v", n, last)
	}, func() bool {
		c, err := d.tryStatusCounts()
		if err == nil {
			last = c
		}
		return last[djangodb.Finished] >= n
	})
}

// logEntry is one processes_logrecord row.
type logEntry struct {
	Status  djangodb.Status
	Message string
}

// logs returns every instance's log records in getTaskLog's order.
func (d *rdb) logs() map[int64][]logEntry {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows, err := d.SQL.QueryContext(ctx, `SELECT instance_id, status, message FROM processes_logrecord ORDER BY instance_id, time, id`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]logEntry{}
	for rows.Next() {
		var id int64
		var e logEntry
		if err := rows.Scan(&id, &e.Status, &e.Message); err != nil {
			d.t.Fatal(err)
		}
		out[id] = append(out[id], e)
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// instanceStatuses returns every instance's status by id.
func (d *rdb) instanceStatuses() map[int64]djangodb.Status {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := d.SQL.QueryContext(ctx, `SELECT id, status FROM processes_instance`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]djangodb.Status{}
	for rows.Next() {
		var id int64
		var s djangodb.Status
		if err := rows.Scan(&id, &s); err != nil {
			d.t.Fatal(err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// checkConsistent checks what must hold for every instance after any run:
// its status is the status of its last log record, nothing is left
// SCHEDULED or RUNNING, no task row is claimed, and every ACCEPTED instance
// has exactly one waiting task row.
func (d *rdb) checkConsistent() {
	d.t.Helper()
	logs := d.logs()
	bad := 0
	for id, s := range d.instanceStatuses() {
		recs := logs[id]
		if len(recs) == 0 || recs[len(recs)-1].Status != s {
			if bad++; bad <= 10 {
				d.t.Errorf("instance %d is %s but its log is %v", id, s, recs)
			}
		}
		if s == djangodb.Scheduled || s == djangodb.Running || s == djangodb.Paused {
			if bad++; bad <= 10 {
				d.t.Errorf("instance %d left %s", id, s)
			}
		}
	}
	if n := d.QueryInt(`SELECT count(*) FROM processes_task WHERE lock <> 0`); n != 0 {
		d.t.Errorf("%d task rows left claimed", n)
	}
	if n := d.QueryInt(`SELECT count(*) FROM processes_instance i WHERE status = 1 AND
		(SELECT count(*) FROM processes_task k WHERE k.instance_id = i.id) <> 1`); n != 0 {
		d.t.Errorf("%d ACCEPTED instances without exactly one waiting task row", n)
	}
	if n := d.QueryInt(`SELECT count(*) FROM processes_task k WHERE NOT EXISTS
		(SELECT 1 FROM processes_instance i WHERE i.id = k.instance_id)`); n != 0 {
		d.t.Errorf("%d task rows of missing instances", n)
	}
}

// ledger is the file integration/tools/ledger.py appends one line to per
// handler execution.
type ledger struct {
	t    *testing.T
	path string
}

func newLedger(t *testing.T) *ledger {
	return &ledger{t: t, path: filepath.Join(t.TempDir(), "ledger")}
}

// LedgerHandler is the dotted path of integration/tools/ledger.py.
const ledgerHandler = "tools.ledger.handler"

// input returns the stored input text (base64(zlib(pickle))) of a ledger
// task that sleeps for sleep seconds after writing its line.
func (l *ledger) input(sleep float64) string {
	l.t.Helper()
	text, err := pickle.Encode(map[string]any{"ledger": l.path, "sleep": sleep})
	if err != nil {
		l.t.Fatal(err)
	}
	return text
}

// inputUntil is input(sleep) whose sleep ends early once the file gate
// exists, so that a test acts while the handler runs, however slow the
// machine, and then lets it go on.
func (l *ledger) inputUntil(sleep float64, gate string) string {
	l.t.Helper()
	text, err := pickle.Encode(map[string]any{"ledger": l.path, "sleep": sleep, "until": gate})
	if err != nil {
		l.t.Fatal(err)
	}
	return text
}

// ledgerCounts is what a ledger says: executions per instance and per
// daemon tag.
type ledgerCounts struct {
	lines int
	byID  map[int64]int
	byTag map[string]int
}

func (l *ledger) read() ledgerCounts {
	l.t.Helper()
	c := ledgerCounts{byID: map[int64]int{}, byTag: map[string]int{}}
	b, err := os.ReadFile(l.path)
	if os.IsNotExist(err) {
		return c
	}
	if err != nil {
		l.t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		id, err := strconv.ParseInt(f[0], 10, 64)
		if len(f) != 3 || err != nil {
			l.t.Fatalf("ledger %s: torn or foreign line %q", l.path, line)
		}
		c.lines++
		c.byID[id]++
		c.byTag[f[1]]++
	}
	return c
}

// checkExactlyOnce checks a run in which no timeout was crossed: n
// instances, each FINISHED with the log ACCEPTED, SCHEDULED, RUNNING,
// FINISHED and a response, and each in the ledger exactly once.
func (d *rdb) checkExactlyOnce(l *ledger, n int) ledgerCounts {
	d.t.Helper()
	counts := d.statusCounts()
	if counts[djangodb.Finished] != n || len(counts) != 1 {
		d.t.Errorf("instances by status %v, want all %d FINISHED", counts, n)
	}
	want := []djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Finished}
	bad := 0
	for id, recs := range d.logs() {
		got := make([]djangodb.Status, len(recs))
		for i, r := range recs {
			got[i] = r.Status
		}
		if !slices.Equal(got, want) {
			if bad++; bad <= 10 {
				d.t.Errorf("instance %d log %v, want %v", id, recs, want)
			}
		}
	}
	if bad > 0 {
		d.t.Errorf("%d of %d instances with another log", bad, n)
	}
	if r := d.QueryInt(`SELECT count(*) FROM processes_response`); r != n {
		d.t.Errorf("%d responses, want %d", r, n)
	}
	lc := l.read()
	if lc.lines != n || len(lc.byID) != n {
		d.t.Errorf("ledger: %d executions of %d instances, want %d of %d", lc.lines, len(lc.byID), n, n)
	}
	twice := 0
	for id, k := range lc.byID {
		if k != 1 {
			if twice++; twice <= 10 {
				d.t.Errorf("instance %d ran %d times", id, k)
			}
		}
	}
	d.checkConsistent()
	return lc
}
