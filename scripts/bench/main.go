// Command bench measures the real atpd binary on PostgreSQL and SQLite:
// drain throughput (N demo tasks queued first, time until all are
// FINISHED) with the Go and the Python demo handler (8 CPython workers,
// and on PostgreSQL 2 as well), pickup latency of an idle daemon (one task
// at a time, enqueue to FINISHED, with and without LISTEN/NOTIFY), the
// daemon's peak RSS alone and with its child processes, and for every
// drain the CPU time per task of the daemon, its CPython workers and its
// PostgreSQL backends, and on PostgreSQL the commits, WAL bytes and
// session states (wait events) per task. In the same run it measures what
// atpd is compared with: the batched-SQL limit (pgbench running the
// demo's full row work, 32 tasks per transaction), the original-protocol
// Python daemon (integration/refdaemon.py, 2 processes), and the
// database's capacity (pgbench -N on PostgreSQL, commits/s on SQLite).
// Every figure is the median of -runs runs; each drain's throughput is
// also given as a fraction of the capacity and of the batched-SQL limit
// and as a multiple of the original daemon.
//
// It is run by scripts/bench.sh; see docs/PERFORMANCE.md for the results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Reference figures of the Python daemon (2 workers) on this machine class,
// from the issue: 1,000 trivial tasks in about 20.8 s; median pickup 1.15 s.
const (
	refThroughput = 48.0 // tasks/s
	refPickup     = 1150 * time.Millisecond
)

type options struct {
	atpd       string
	pgAdmin    string
	pgbench    string
	waldump    string
	python     string
	repo       string
	tmp        string
	tasks      int
	runs       int
	goWorkers  int
	pyWorkers  int
	pyFew      int
	limitTasks int
	limitBatch int
	origProcs  int
	origTasks  int
	samples    int
	capacityT  time.Duration
	only       string
	keep       bool
	daemonArgs []string
}

func main() {
	var o options
	var daemonArgs string
	flag.StringVar(&o.atpd, "atpd", "", "atpd binary to measure (default: build ./cmd/atpd)")
	flag.StringVar(&o.pgAdmin, "pg", envOr("ATPD_BENCH_PG", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"),
		"PostgreSQL URL of a role that may create databases (also ATPD_BENCH_PG)")
	flag.StringVar(&o.pgbench, "pgbench", "/usr/lib/postgresql/15/bin/pgbench", "pgbench binary")
	flag.StringVar(&o.waldump, "waldump", "/usr/lib/postgresql/15/bin/pg_waldump", "pg_waldump binary, for the WAL a drain's database wrote (followed in the server's pg_wal as it is written: the bench must run on the server's machine, allowed to read it); empty: cluster-wide WAL only")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "Python with the handler's imports, for the Python handler runs")
	flag.IntVar(&o.tasks, "n", 2000, "tasks per drain run")
	flag.IntVar(&o.runs, "runs", 3, "runs of every measurement (the median is reported)")
	flag.IntVar(&o.goWorkers, "workers", 8, "daemon workers with the Go handler")
	flag.IntVar(&o.pyWorkers, "py-workers", 8, "daemon workers (CPython processes) with the Python handler")
	flag.IntVar(&o.pyFew, "py-workers-few", 2, "daemon workers of the second Python handler drain on PostgreSQL (drain/postgres/python-few); 0: none")
	flag.IntVar(&o.limitBatch, "limit-batch", 32, "tasks per transaction of the batched-SQL limit (pgbench)")
	flag.IntVar(&o.limitTasks, "limit-tasks", 20000, "tasks the batched-SQL limit's pgbench run works through")
	flag.IntVar(&o.origProcs, "orig-workers", 2, "processes of the original-protocol Python daemon (integration/refdaemon.py)")
	flag.IntVar(&o.origTasks, "orig-n", 400, "tasks of the original daemon's drain")
	flag.IntVar(&o.samples, "samples", 100, "tasks per pickup latency run")
	flag.DurationVar(&o.capacityT, "capacity-time", 10*time.Second, "duration of each database capacity measurement")
	flag.StringVar(&o.only, "only", "", "run only measurements whose name contains this text")
	flag.BoolVar(&o.keep, "keep", false, "keep the databases and daemon logs")
	flag.StringVar(&daemonArgs, "daemon-args", "", "extra arguments for every daemon run (space-separated)")
	flag.Parse()
	o.daemonArgs = strings.Fields(daemonArgs)

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("bench: failed", "error", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	var err error
	if o.repo, err = repoRoot(); err != nil {
		return err
	}
	if o.tmp, err = os.MkdirTemp("", "atpd-bench-"); err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(o.tmp)
	}
	if o.atpd == "" {
		o.atpd = filepath.Join(o.tmp, "atpd")
		log.Info("bench: building atpd", "output", o.atpd)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.atpd, "./cmd/atpd")
		cmd.Dir, cmd.Stdout, cmd.Stderr = o.repo, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build atpd: %w", err)
		}
	}
	b := &bench{o: o, log: log, results: map[string][]float64{}}
	defer b.cleanup()
	began := time.Now()
	for r := 1; r <= o.runs; r++ {
		log.Info("bench: run", "run", r, "of", o.runs)
		if err := b.oneRun(ctx, r); err != nil {
			return err
		}
	}
	b.report(os.Stdout, time.Since(began))
	return nil
}

// repoRoot finds the module root from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "atpd")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: run it inside the atpd repository")
		}
		dir = parent
	}
}

// bench holds the measurements of all runs, by measurement name.
type bench struct {
	o       options
	log     *slog.Logger
	results map[string][]float64
	order   []string
	dropDBs []string
	// pgClients is the most connections a daemon held during this run's
	// PostgreSQL drains: the client count of pgbench.
	pgClients int
}

func (b *bench) record(name string, v float64) {
	if _, ok := b.results[name]; !ok {
		b.order = append(b.order, name)
	}
	b.results[name] = append(b.results[name], v)
	b.log.Info("bench: measured", "measurement", name, "value", fmt.Sprintf("%.3f", v))
}

func (b *bench) want(name string) bool { return b.o.only == "" || strings.Contains(name, b.o.only) }

// oneRun measures everything once. The capacity runs last, with the
// client count the daemons used.
func (b *bench) oneRun(ctx context.Context, r int) error {
	b.pgClients = 0
	type drainRun struct {
		name, db, handler string
		workers           int
	}
	var drains []drainRun
	for _, dbKind := range []string{"postgres", "sqlite", "sqlite-wal"} {
		drains = append(drains,
			drainRun{"drain/" + dbKind + "/go", dbKind, "go", b.o.goWorkers},
			drainRun{"drain/" + dbKind + "/python", dbKind, "python", b.o.pyWorkers})
		if dbKind == "postgres" && b.o.pyFew > 0 {
			drains = append(drains, drainRun{"drain/postgres/python-few", dbKind, "python", b.o.pyFew})
		}
	}
	for _, d := range drains {
		if !b.want(d.name) {
			continue
		}
		if err := b.drain(ctx, d.name, d.db, d.handler, d.workers, r); err != nil {
			return fmt.Errorf("%s run %d: %w", d.name, r, err)
		}
	}
	if name := "original/postgres/python"; b.want(name) && b.o.origProcs > 0 {
		if err := b.original(ctx, name, b.o.origProcs, b.o.origTasks, r); err != nil {
			return fmt.Errorf("%s run %d: %w", name, r, err)
		}
	}
	for _, l := range []struct{ db, mode string }{{"postgres", "notify"}, {"postgres", "poll"}, {"sqlite", "poll"}} {
		name := fmt.Sprintf("pickup/%s/%s", l.db, l.mode)
		if !b.want(name) {
			continue
		}
		if err := b.pickup(ctx, name, l.db, l.mode == "notify", r); err != nil {
			return fmt.Errorf("%s run %d: %w", name, r, err)
		}
	}
	// Both run with as many clients as the daemons held connections; the
	// batched-SQL limit with two at least (a claim and a completion).
	for _, m := range []struct {
		name, figure string
		least        int
		measure      func(context.Context, int) (float64, error)
	}{
		{"limit/postgres/batched", "/tasks_per_s", 2, b.batchedLimit},
		{"capacity/postgres", "", 1, b.pgbenchTPS},
	} {
		if !b.want(m.name) {
			continue
		}
		clients := max(b.pgClients, m.least)
		v, err := m.measure(ctx, clients)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		b.record(m.name+m.figure, v)
		b.record(m.name+"/clients", float64(clients))
	}
	for _, wal := range []bool{false, true} {
		name := "capacity/sqlite"
		if wal {
			name = "capacity/sqlite-wal"
		}
		if !b.want(name) {
			continue
		}
		tps, err := b.sqliteTPS(ctx, wal)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b.record(name, tps)
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(la))
		if len(f) > 0 {
			var v float64
			fmt.Sscan(f[0], &v)
			b.record("machine/loadavg1", v)
		}
	}
	return nil
}

func (b *bench) cleanup() {
	if b.o.keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range b.dropDBs {
		if err := dropPostgres(ctx, b.o.pgAdmin, name); err != nil {
			b.log.Warn("bench: drop database", "database", name, "error", err)
		}
	}
}

func numCPU() int { return runtime.NumCPU() }
