package reliability

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/producer"
)

// newPGStandby makes a streaming standby of primary in its own temporary
// directory, on its own port: pg_basebackup -R (primary_conninfo and
// standby.signal written), the primary's settings with this server's port
// and socket directory. It is started, and stopped and removed at cleanup.
func newPGStandby(t *testing.T, primary *pgCluster) *pgCluster {
	t.Helper()
	c := &pgCluster{t: t, bin: primary.bin, runAs: primary.runAs}
	c.dir = privateDir(t, c.runAs)
	c.data = filepath.Join(c.dir, "data")
	c.port = freePort(t)
	c.baseBackup(primary)
	c.start()
	t.Cleanup(func() { c.ctl("stop", "-m", "immediate") })
	return c
}

// privateDir is a temporary directory the server's user owns (not
// t.TempDir(): its 0700 parents keep that user out), removed at cleanup.
func privateDir(t *testing.T, runAs string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "atpd-pgha-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if runAs != "" {
		u, err := user.Lookup(runAs)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// baseBackup replaces c's data directory with a base backup of source,
// made a standby of it (-R), listening on c's port.
func (c *pgCluster) baseBackup(source *pgCluster) {
	c.t.Helper()
	if _, err := os.Stat(filepath.Join(c.bin, "pg_basebackup")); err != nil {
		unavailable(c.t, "no pg_basebackup in %s: %v", c.bin, err)
	}
	if err := os.RemoveAll(c.data); err != nil {
		c.t.Fatal(err)
	}
	c.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(source.port), "-U", "postgres",
		"-D", c.data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	// The copied settings are the source's: the last line of a setting wins.
	conf := fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\nhot_standby = on\n", c.port, c.dir)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		c.t.Fatal(err)
	}
}

// sqlDB opens a session pool on database db of this server alone.
func (c *pgCluster) sqlDB(db string) *sql.DB {
	c.t.Helper()
	h, err := sql.Open("postgres", withAppName(c.t, c.url(db)))
	if err != nil {
		c.t.Fatal(err)
	}
	h.SetMaxOpenConns(1)
	c.t.Cleanup(func() { h.Close() })
	return h
}

func queryOne[T any](t *testing.T, db *sql.DB, q string, args ...any) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var v T
	err := db.QueryRowContext(ctx, q, args...).Scan(&v)
	return v, err
}

// waitStreaming waits until primary has n standbys streaming from it.
func waitStreaming(t *testing.T, primary *sql.DB, n int) {
	t.Helper()
	var last int
	var lastErr error
	waitFor(t, time.Minute, func() string {
		return fmt.Sprintf("%d standbys streaming; %d are (%v)", n, last, lastErr)
	}, func() bool {
		last, lastErr = queryOne[int](t, primary, `SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'`)
		return lastErr == nil && last >= n
	})
}

// healthz returns the HTTP status of a daemon's /healthz (0: no answer).
func healthz(addr string) int {
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r.StatusCode
}

// haProducers enqueue ledger tasks through the Go producer API on the
// multi-host DSN until stopped, each from its own goroutine, one at a time
// with a short pause. An enqueue that returned its id is acknowledged; one
// that failed (the primary gone) is not, and the producer goes on with a
// new identifier after a pause, as a web front end would.
type haProducers struct {
	t       *testing.T
	mu      sync.Mutex
	acked   map[string]time.Time
	failed  atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	running bool
}

func startHAProducers(t *testing.T, p *producer.Producer, prefix string, n int, input string) *haProducers {
	hp := &haProducers{t: t, acked: map[string]time.Time{}, stop: make(chan struct{}), running: true}
	for w := range n {
		hp.wg.Add(1)
		go func() {
			defer hp.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-hp.stop:
					return
				default:
				}
				id := fmt.Sprintf("%s%d-%d", prefix, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := p.EnqueueRaw(ctx, "Ledger", id, input, "")
				cancel()
				if err != nil {
					hp.failed.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				hp.mu.Lock()
				hp.acked[id] = time.Now()
				hp.mu.Unlock()
				time.Sleep(15 * time.Millisecond)
			}
		}()
	}
	return hp
}

func (hp *haProducers) halt() map[string]time.Time {
	if hp.running {
		close(hp.stop)
		hp.wg.Wait()
		hp.running = false
	}
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.acked
}

func (hp *haProducers) count() int {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return len(hp.acked)
}

// TestPostgresFailover: a primary and a synchronous streaming standby, both
// private clusters of the machine's PostgreSQL 15, and two atpd daemons on
// the DSN naming both (target_session_attrs=read-write), fed by Go
// producers throughout. Midway the primary is stopped (immediate: a crash
// as far as its clients can tell) and the standby promoted. The daemons
// find the new primary by themselves: /healthz answers 503 while there is
// none and 200 after, every acknowledged task is FINISHED, every handler
// ran once, no log breaks ATP's sequence, nothing is left claimed. Then
// the old primary comes back as a standby of the new one, first in the
// DSN, the daemons' sessions are cut, `atpd notify install` runs on the
// same DSN, and a second load runs: atpd must pass the standby by (it is
// in recovery) and do all its work on the new primary.
func TestPostgresFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a primary and a standby cluster; skipped with -short")
	}
	// A claim whose commit acknowledgement the stop swallowed leaves its
	// instances RUNNING until the sweep re-enqueues them after the type's
	// timeout (docs/RELIABILITY.md, Known limits): short enough to be
	// waited out, long enough for a 0.1 s task held through the outage.
	const typeTimeout = 15
	cfg := pgUTC.cfg
	a := newPGCluster(t)
	dsnA := a.migratedDB("atpd_ha", cfg)
	b := newPGStandby(t, a)
	sqlA := a.sqlDB("atpd_ha")
	waitStreaming(t, sqlA, 1)
	// Synchronous replication: a commit is acknowledged once the standby
	// has it, so that the fail-over loses no acknowledged enqueue and no
	// written outcome. Set on A only (postgresql.auto.conf), after the base
	// backup: B, once promoted, runs alone and must not wait for a standby.
	for _, q := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `ALTER SYSTEM SET synchronous_commit = 'on'`,
		`SELECT pg_reload_conf()`} {
		if _, err := sqlA.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	waitFor(t, time.Minute, func() string { return "the standby to be synchronous" }, func() bool {
		n, err := queryOne[int](t, sqlA, `SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'`)
		return err == nil && n == 1
	})

	multi := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/atpd_ha?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
		a.port, b.port)
	norm, err := djangodb.NormalizePostgresDSN(multi)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, dsnA, true, cfg)
	// The test's own view follows the primary too.
	followSQL, err := sql.Open("postgres", withAppName(t, norm))
	if err != nil {
		t.Fatal(err)
	}
	followSQL.SetMaxOpenConns(2)
	t.Cleanup(func() { followSQL.Close() })
	db.SQL, db.DSN = followSQL, multi
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, typeTimeout, 2)

	addrs := []string{fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	d1 := db.startAtpd("atpd1", "d1", "-n", "2", "--http-addr", addrs[0])
	d2 := db.startAtpd("atpd2", "d2", "-n", "2", "--http-addr", addrs[1])
	daemons := []*proc{d1, d2}
	for _, addr := range addrs {
		if code := healthz(addr); code != http.StatusOK {
			t.Fatalf("/healthz of %s before the fail-over: %d", addr, code)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store, err := djangodb.Open(ctx, multi, djangodb.Options{UseTZ: cfg.UseTZ})
	if err != nil {
		t.Fatalf("producer store: %v", err)
	}
	defer store.Close()
	prod := producer.New(store, producer.Options{Notifier: store.(djangodb.Notifier), Timeout: 5 * time.Second})
	// Tasks long enough that some are running when the primary goes:
	// their outcomes are held through the outage.
	input := led.input(0.1)

	// ---- phase 1: fail-over
	prods := startHAProducers(t, prod, "f", 3, input)
	db.waitFinished(60, time.Minute)
	stopAt := time.Now()
	if err := a.ctl("stop", "-m", "immediate"); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	ackedAtStop := prods.count()
	// No primary: both daemons say so.
	for _, addr := range addrs {
		if !pollUntil(20*time.Second, func() bool { return healthz(addr) == http.StatusServiceUnavailable }) {
			t.Errorf("/healthz of %s stayed healthy with no primary", addr)
		}
	}
	time.Sleep(time.Second) // an outage, not a blip
	promoteAt := time.Now()
	if err := b.ctl("promote"); err != nil {
		t.Fatal(err)
	}
	promotedAt := time.Now()
	sqlB := b.sqlDB("atpd_ha")
	var healthyAfter time.Duration
	for _, addr := range addrs {
		if !pollUntil(30*time.Second, func() bool { return healthz(addr) == http.StatusOK }) {
			t.Errorf("/healthz of %s not healthy again after the promotion", addr)
		}
		healthyAfter = max(healthyAfter, time.Since(promotedAt))
	}
	// The first task finished on the new primary: its FINISHED record is
	// written after the stop (a record written before it would be the old
	// primary's, replicated).
	var firstFinished time.Time
	if !pollUntil(30*time.Second, func() bool {
		v, err := queryOne[sql.NullTime](t, sqlB, `SELECT min(time) FROM processes_logrecord WHERE status = $1 AND time > $2`,
			int(djangodb.Finished), stoppedAt)
		if err == nil && v.Valid {
			firstFinished = v.Time
		}
		return !firstFinished.IsZero()
	}) {
		t.Fatal("no task finished on the new primary within 30 s")
	}
	// Keep producing on the new primary for a while.
	more := prods.count() + 60
	if !pollUntil(30*time.Second, func() bool { return prods.count() >= more }) {
		t.Errorf("producers acknowledged %d enqueues after the promotion, want 60", prods.count()-ackedAtStop)
	}
	acked1 := prods.halt()
	failed1 := prods.failed.Load()
	drainStart := time.Now()
	checkHAPhase(t, db, led, acked1, 2*time.Minute)
	drain1 := time.Since(drainStart)
	// Tasks that were running at the stop and finished on the new primary:
	// their outcomes were held (retried) through the outage.
	held, err := queryOne[int](t, sqlB, `SELECT count(DISTINCT r.instance_id) FROM processes_logrecord r
		JOIN processes_logrecord f ON f.instance_id = r.instance_id AND f.status = $1 AND f.time > $3
		WHERE r.status = $2 AND r.time < $3`, int(djangodb.Finished), int(djangodb.Running), stopAt)
	if err != nil {
		t.Fatal(err)
	}
	if held == 0 {
		t.Error("no task was running at the stop and finished after it: no outcome was held through the outage")
	}
	for _, d := range daemons {
		if d.countRecords(`LISTEN connection re-established`) == 0 {
			t.Errorf("%s did not re-establish its LISTEN connection", d.Name)
		}
		if lost := d.countRecords(`outcome not written|left SCHEDULED|not retrying`); lost != 0 {
			t.Errorf("%s gave up on %d writes", d.Name, lost)
		}
	}
	retries := d1.countRecords(`retrying`) + d2.countRecords(`retrying`)

	// ---- phase 2: the old primary back as a standby of the new one, first
	// in the DSN.
	a.baseBackup(b)
	a.start()
	waitStreaming(t, sqlB, 1)
	if rec, err := queryOne[bool](t, sqlA, `SELECT pg_is_in_recovery()`); err != nil || !rec {
		t.Fatalf("old primary in recovery: %v, %v; want true", rec, err)
	}
	// What a store connected to the standby gets for its writes (a primary
	// demoted under a pooler answers the same): a lost connection, to be
	// replaced by one to the primary, not a permanent refusal.
	standbyStore, err := djangodb.Open(ctx, a.url("atpd_ha"), djangodb.Options{UseTZ: cfg.UseTZ})
	if err != nil {
		t.Fatalf("store on the standby: %v", err)
	}
	_, errTx := standbyStore.Enqueue(ctx, "Ledger", "standby-tx", input, "")
	_, errStmt := standbyStore.RegisterType(ctx, djangodb.TypeSpec{Identifier: "standby-stmt", Handler: ledgerHandler})
	standbyStore.Close()
	for what, err := range map[string]error{"transaction": errTx, "statement": errStmt} {
		var pe *pq.Error
		if errors.As(err, &pe) {
			t.Logf("standby refuses a write %s: %v (routine %s)", what, err, pe.Routine)
		}
		if err == nil || !djangodb.ConnectionLost(err) {
			t.Errorf("a write %s on the standby: %v; want a lost connection", what, err)
		}
	}
	// Cut every daemon session, so that each reconnects through the list:
	// the standby first.
	cut, err := queryOne[int](t, sqlB, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> $1`, testAppName)
	if err != nil {
		t.Fatal(err)
	}
	// A one-shot command on the same DSN passes the standby by too: the
	// trigger lands on the new primary.
	cmd := exec.Command(atpdBin, "notify", "install", "--db", multi)
	cmd.Env = baseEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("atpd notify install with the standby first: %v\n%s", err, out)
	} else if n, err := queryOne[int](t, sqlB, `SELECT count(*) FROM pg_trigger WHERE tgname = $1`, djangodb.NotifyTrigger); err != nil || n != 1 {
		t.Errorf("notify trigger on the new primary: %d, %v; want 1", n, err)
	}
	prods = startHAProducers(t, prod, "s", 3, input)
	if !pollUntil(time.Minute, func() bool { return prods.count() >= 200 }) {
		t.Errorf("producers acknowledged only %d enqueues with the standby first", prods.count())
	}
	acked2 := prods.halt()
	checkHAPhase(t, db, led, mergeAcked(acked1, acked2), 2*time.Minute)
	if rec, err := queryOne[bool](t, sqlA, `SELECT pg_is_in_recovery()`); err != nil || !rec {
		t.Errorf("old primary in recovery after phase 2: %v, %v; want true", rec, err)
	}
	// Everything phase 2 wrote reached the standby by replication, the only
	// way anything can be written there.
	total, err := queryOne[int](t, sqlB, `SELECT count(*) FROM processes_instance WHERE status = $1`, int(djangodb.Finished))
	if err != nil {
		t.Fatal(err)
	}
	if !pollUntil(30*time.Second, func() bool {
		n, err := queryOne[int](t, sqlA, `SELECT count(*) FROM processes_instance WHERE status = $1`, int(djangodb.Finished))
		return err == nil && n == total
	}) {
		t.Errorf("the standby never caught up with the %d FINISHED instances of the new primary", total)
	}
	for _, d := range daemons {
		if n := d.countRecords(`read-only`); n != 0 {
			t.Errorf("%s logged %d read-only refusals", d.Name, n)
		}
		for _, r := range d.records() {
			if e := r.str("error"); strings.Contains(e, "read-only transaction") {
				t.Errorf("%s: %s: %s", d.Name, r.str("msg"), e)
				break
			}
		}
	}
	for _, addr := range addrs {
		if code := healthz(addr); code != http.StatusOK {
			t.Errorf("/healthz of %s with the standby first: %d", addr, code)
		}
	}
	for _, d := range daemons {
		d.Stop(drainTimeout)
	}
	lc := led.read()
	swept := db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE message = ?`, djangodb.MsgZombieReenqueued)
	t.Logf("FIGURES failover: acked=%d (phase 1: %d, %d before the stop; unacknowledged attempts %d) by_daemon=%v "+
		"stop_to_first_finished=%s promote_to_first_finished=%s stop_to_promote=%s promote_to_healthy=%s "+
		"outcomes_held=%d retries_logged=%d swept=%d phase1_drain=%s phase2_acked=%d daemon_sessions_cut=%d",
		len(acked1)+len(acked2), len(acked1), ackedAtStop, failed1, lc.byTag,
		firstFinished.Sub(stopAt).Round(time.Millisecond), firstFinished.Sub(promotedAt).Round(time.Millisecond),
		promoteAt.Sub(stopAt).Round(time.Millisecond), healthyAfter.Round(time.Millisecond), held, retries, swept, drain1.Round(time.Millisecond), len(acked2), cut)
}

func mergeAcked(ms ...map[string]time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// checkHAPhase waits until no instance is left unfinished, then checks
// that every acknowledged task is FINISHED, every instance's log is a
// legal ATP sequence ending in its status, each instance's handler ran
// exactly once, and nothing is left claimed.
func checkHAPhase(t *testing.T, db *rdb, led *ledger, acked map[string]time.Time, timeout time.Duration) {
	t.Helper()
	var open int
	var lastErr error
	waitFor(t, timeout, func() string { return fmt.Sprintf("all instances to end; %d open (%v)", open, lastErr) }, func() bool {
		open, lastErr = queryOne[int](t, db.SQL, `SELECT count(*) FROM processes_instance WHERE status NOT IN ($1, $2)`,
			int(djangodb.Finished), int(djangodb.Failed))
		return lastErr == nil && open == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := db.SQL.QueryContext(ctx, `SELECT id, identifier, status FROM processes_instance`)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]djangodb.Status{}
	ids := map[string]int64{}
	for rows.Next() {
		var id int64
		var ident string
		var s djangodb.Status
		if err := rows.Scan(&id, &ident, &s); err != nil {
			t.Fatal(err)
		}
		status[ident], ids[ident] = s, id
	}
	rows.Close()
	bad := 0
	for ident := range acked {
		if s, ok := status[ident]; !ok || s != djangodb.Finished {
			if bad++; bad <= 10 {
				t.Errorf("acknowledged task %s: present %v, status %v; want FINISHED", ident, ok, s)
			}
		}
	}
	logs := db.logsByID()
	lc := led.read()
	for ident, id := range ids {
		if p := atpSequenceProblem(logs[id], status[ident]); p != "" {
			if bad++; bad <= 10 {
				t.Errorf("instance %d (%s): %s: %s", id, ident, p, formatLog(logs[id]))
			}
		}
		if status[ident] == djangodb.Finished && lc.byID[id] != 1 {
			if bad++; bad <= 10 {
				t.Errorf("instance %d (%s) ran %d times: %s", id, ident, lc.byID[id], formatLog(logs[id]))
			}
		}
	}
	if bad > 10 {
		t.Errorf("%d problems in all", bad)
	}
	db.checkConsistent()
}
