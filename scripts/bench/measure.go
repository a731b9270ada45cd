package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// drain queues n demo tasks, starts a daemon with workers workers and
// measures how fast it runs them all, from the first claim to the last
// FINISHED as the log records say; the daemon's peak RSS, alone and with
// its child processes (CPython workers); the CPU time per task of the
// daemon, its children and, on PostgreSQL, its backends; and on
// PostgreSQL commits, WAL bytes and session states (pgProbe).
func (b *bench) drain(ctx context.Context, name, kind, handler string, workers, run int) error {
	db, err := b.newDB(ctx, kind)
	if err != nil {
		return err
	}
	defer db.Close()
	path := goDemo
	args := []string{}
	if handler == "python" {
		// -p REPO makes integration.tools.atp_demo importable.
		path = pyDemo
		args = append(args, "-p", b.o.repo)
	}
	args = append(args, "-n", strconv.Itoa(workers))
	if err := db.load(ctx, path, b.o.tasks); err != nil {
		return fmt.Errorf("load %d tasks: %w", b.o.tasks, err)
	}
	counter, err := openCounter(db.dsn)
	if err != nil {
		return err
	}
	defer counter.Close()

	var probe *pgProbe
	if kind == "postgres" {
		if probe, err = startPGProbe(ctx, b.o.pgAdmin, dbName(db.dsn), b.o.waldump); err != nil {
			return err
		}
	}
	d, err := b.startDaemon(ctx, fmt.Sprintf("%s-run%d", name, run), db.dsn, args...)
	if err != nil {
		return err
	}
	began := time.Now()
	polls := 0
	limit := 2*time.Minute + time.Duration(b.o.tasks)*50*time.Millisecond
	conns := 0
	for {
		if kind == "postgres" {
			if n, err := connections(ctx, b.o.pgAdmin, dbName(db.dsn)); err == nil {
				conns = max(conns, n)
			}
		}
		done, err := counter.ended(ctx)
		polls++
		if err != nil {
			d.kill()
			return err
		}
		if done >= b.o.tasks {
			break
		}
		if time.Since(began) > limit {
			d.kill()
			return fmt.Errorf("%d of %d tasks ended after %v; log in %s", done, b.o.tasks, limit, d.logPath)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			d.kill()
			return ctx.Err()
		}
	}
	rss, err := d.peakRSS()
	if err != nil {
		d.kill()
		return err
	}
	treeRSS, cpuDaemon, cpuChildren := rss, time.Duration(0), time.Duration(0)
	cpuDaemon, _ = procCPU(d.cmd.Process.Pid)
	for _, pid := range descendants(d.cmd.Process.Pid) {
		if r, err := procStatus(pid, "VmHWM"); err == nil {
			treeRSS += r
		}
		if c, err := procCPU(pid); err == nil {
			cpuChildren += c
		}
	}
	var cpuBackends time.Duration
	if probe != nil {
		cpuBackends = probe.backendCPU()
	}
	counter.Close()
	if err := d.stop(); err != nil {
		return err
	}
	if probe != nil {
		if err := probe.finish(ctx, b, name, b.o.tasks, int64(polls)); err != nil {
			return err
		}
	}
	if err := db.verify(ctx); err != nil {
		return fmt.Errorf("rows after the drain: %w", err)
	}
	first, last, err := db.span(ctx)
	if err != nil {
		return err
	}
	b.record(name+"/tasks_per_s", float64(b.o.tasks)/last.Sub(first).Seconds())
	b.record(name+"/rss_mb", float64(rss)/(1<<20))
	b.record(name+"/rss_with_children_mb", float64(treeRSS)/(1<<20))
	perTask := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.o.tasks) }
	b.record(name+"/cpu_ms_per_task/atpd", perTask(cpuDaemon))
	if handler == "python" {
		b.record(name+"/cpu_ms_per_task/cpython_workers", perTask(cpuChildren))
	}
	if probe != nil {
		b.record(name+"/cpu_ms_per_task/pg_backends", perTask(cpuBackends))
	}
	if kind == "postgres" {
		b.record(name+"/connections", float64(conns))
		b.pgClients = max(b.pgClients, conns)
	}
	return nil
}

// pickup measures an idle daemon's latency, enqueue to FINISHED, one task
// at a time with a random pause between tasks (so that an enqueue falls
// anywhere in the daemon's poll cycle), from the ACCEPTED and FINISHED
// log times.
func (b *bench) pickup(ctx context.Context, name, kind string, notify bool, run int) error {
	db, err := b.newDB(ctx, kind)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.load(ctx, goDemo, 0); err != nil {
		return err
	}
	if notify {
		cmd := exec.CommandContext(ctx, b.o.atpd, "notify", "install", "--db", db.dsn)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("atpd notify install: %w\n%s", err, out)
		}
	}
	in, err := demoInput()
	if err != nil {
		return err
	}
	d, err := b.startDaemon(ctx, fmt.Sprintf("%s-run%d", name, run), db.dsn, "-n", strconv.Itoa(b.o.goWorkers))
	if err != nil {
		return err
	}
	var lat []float64
	for i := range b.o.samples {
		select {
		case <-time.After(time.Duration(20+rand.IntN(100)) * time.Millisecond):
		case <-ctx.Done():
			d.kill()
			return ctx.Err()
		}
		id, err := db.store.Enqueue(ctx, "SequenceSum", fmt.Sprintf("p%04d", i), in, "")
		if err != nil {
			d.kill()
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			inst, err := db.store.Instance(ctx, id)
			if err != nil {
				d.kill()
				return err
			}
			if inst.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				d.kill()
				return fmt.Errorf("task %d not finished after 30 s; log in %s", id, d.logPath)
			}
			time.Sleep(2 * time.Millisecond)
		}
		recs, err := db.store.Log(ctx, id)
		if err != nil {
			d.kill()
			return err
		}
		if len(recs) != 4 || recs[0].Status != djangodb.Accepted || recs[3].Status != djangodb.Finished {
			d.kill()
			return fmt.Errorf("task %d log %+v, want ACCEPTED ... FINISHED", id, recs)
		}
		lat = append(lat, float64(recs[3].Time.Sub(recs[0].Time))/float64(time.Millisecond))
	}
	if err := d.stop(); err != nil {
		return err
	}
	slices.Sort(lat)
	for _, q := range []float64{50, 90, 99} {
		b.record(fmt.Sprintf("%s/p%.0f_ms", name, q), percentile(lat, q))
	}
	return nil
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// counter counts ended instances with a plain connection: a count is all
// the bench needs while the daemon works.
type counter struct{ db *sql.DB }

func openCounter(dsn string) (*counter, error) {
	var db *sql.DB
	var err error
	if strings.HasPrefix(dsn, "sqlite:") {
		u := url.URL{Path: djangodb.SQLitePath(dsn)}
		db, err = sql.Open("sqlite", "file:"+u.EscapedPath()+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	} else {
		u, perr := url.Parse(dsn)
		if perr != nil {
			return nil, perr
		}
		q := u.Query()
		q.Set("application_name", benchApp)
		u.RawQuery = q.Encode()
		db, err = sql.Open("postgres", u.String())
	}
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &counter{db: db}, nil
}

func (c *counter) Close() { c.db.Close() }

func (c *counter) ended(ctx context.Context) (int, error) {
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM processes_instance WHERE status IN (5, 6)`).Scan(&n)
	return n, err
}

func dbName(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchTPS runs pgbench -N (TPC-B without the contended branch and
// teller updates: one small transaction of three writes and a read) with
// clients connections on a fresh scale-1 database.
func (b *bench) pgbenchTPS(ctx context.Context, clients int) (float64, error) {
	name := randomName()
	if err := createPostgres(ctx, b.o.pgAdmin, name); err != nil {
		return 0, err
	}
	b.dropDBs = append(b.dropDBs, name)
	u, err := url.Parse(b.o.pgAdmin)
	if err != nil {
		return 0, err
	}
	u.Path = "/" + name
	conn := u.String()
	if out, err := exec.CommandContext(ctx, b.o.pgbench, "-i", "-q", "-s", "1", conn).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, b.o.pgbench, "-N", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, numCPU())),
		"-T", strconv.Itoa(int(b.o.capacityT.Seconds())), conn).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench -N: %w\n%s", err, out)
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// sqliteTPS measures the commits per second SQLite allows in the bench's
// directory: one small insert per BEGIN IMMEDIATE transaction, on the
// default settings (rollback journal, synchronous FULL) as atpd runs, or
// in WAL mode.
func (b *bench) sqliteTPS(ctx context.Context, wal bool) (float64, error) {
	path := b.o.tmp + "/" + randomName() + ".sqlite3"
	u := url.URL{Path: path}
	dsn := "file:" + u.EscapedPath() + "?_pragma=busy_timeout(5000)&_txlock=immediate"
	if wal {
		dsn += "&_pragma=journal_mode(wal)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id integer PRIMARY KEY AUTOINCREMENT, v text NOT NULL)`); err != nil {
		return 0, err
	}
	began := time.Now()
	n := 0
	for time.Since(began) < b.o.capacityT {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO t (v) VALUES (?)`, "x"); err != nil {
			tx.Rollback()
			return 0, err
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(began).Seconds(), nil
}
