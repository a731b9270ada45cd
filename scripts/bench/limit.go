package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// batchedScript is one pgbench transaction pair doing a daemon's row work
// for batchSize tasks of the demo, with nothing else: the claim (delete
// the oldest waiting task rows; the instances to SCHEDULED and then
// RUNNING, each with its log record, as the tracker's dequeueTask and
// startTask write them) committed, then the completion (the response
// upserted, the instances FINISHED with their log records) committed.
// No fence, no run-state reads, no handler: the limit the database sets
// on this machine for that work, batched.
const batchedScript = `BEGIN;
WITH picked AS (
	SELECT id FROM processes_task WHERE "lock" = 0 ORDER BY id LIMIT %[1]d FOR UPDATE SKIP LOCKED
), d AS (
	DELETE FROM processes_task t USING picked WHERE t.id = picked.id RETURNING t.instance_id
)
SELECT array_agg(instance_id ORDER BY instance_id)::text AS ids FROM d \gset
UPDATE processes_instance SET status = 2, "timeUpdate" = clock_timestamp() WHERE id = ANY(:ids::int[]);
INSERT INTO processes_logrecord (instance_id, "time", status, message) SELECT id, clock_timestamp(), 2, '' FROM unnest(:ids::int[]) AS id;
UPDATE processes_instance SET status = 3, "timeUpdate" = clock_timestamp() WHERE id = ANY(:ids::int[]);
INSERT INTO processes_logrecord (instance_id, "time", status, message) SELECT id, clock_timestamp(), 3, '' FROM unnest(:ids::int[]) AS id;
COMMIT;
BEGIN;
INSERT INTO processes_response (instance_id, response, "mimeType") SELECT id, '15.0', 'text/plain' FROM unnest(:ids::int[]) AS id
	ON CONFLICT (instance_id) DO UPDATE SET response = excluded.response;
UPDATE processes_instance SET status = 5, "timeUpdate" = clock_timestamp() WHERE id = ANY(:ids::int[]);
INSERT INTO processes_logrecord (instance_id, "time", status, message) SELECT id, clock_timestamp(), 5, '' FROM unnest(:ids::int[]) AS id;
COMMIT;
`

// batchedLimit measures the batched-SQL limit: pgbench runs batchedScript
// with clients connections on a fresh copy of the Django tables holding
// enough demo tasks, until they are nearly all taken; tasks/s is the
// script's rate times the batch size.
func (b *bench) batchedLimit(ctx context.Context, clients int) (float64, error) {
	db, err := b.newDB(ctx, "postgres")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	per := max(b.o.limitTasks/(clients*b.o.limitBatch), 1)
	if err := db.load(ctx, goDemo, per*clients*b.o.limitBatch); err != nil {
		return 0, err
	}
	script := filepath.Join(b.o.tmp, "batched.sql")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(batchedScript, b.o.limitBatch)), 0o644); err != nil {
		return 0, err
	}
	u, err := url.Parse(db.dsn)
	if err != nil {
		return 0, err
	}
	// pgbench's sessions are watched like a daemon's (not named benchApp).
	q := u.Query()
	q.Set("application_name", "atpd-bench-pgbench")
	u.RawQuery = q.Encode()
	probe, err := startPGProbe(ctx, b.o.pgAdmin, dbName(db.dsn), b.o.waldump)
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, b.o.pgbench, "-n", "-r", "-M", "prepared", "-f", script,
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, numCPU())), "-t", strconv.Itoa(per), u.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		probe.abort()
		return 0, fmt.Errorf("pgbench -f batched.sql: %w\n%s", err, out)
	}
	tasks := per * clients * b.o.limitBatch
	if err := probe.finish(ctx, b, "limit/postgres/batched", tasks, 0); err != nil {
		return 0, err
	}
	perTask := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(tasks) }
	b.record("limit/postgres/batched/cpu_ms_per_task/pgbench", perTask(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()))
	b.record("limit/postgres/batched/cpu_ms_per_task/pg_backends", perTask(probe.backendCPU()))
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	// -r: the statements' mean latencies, for the log.
	b.log.Info("bench: pgbench batched script", "output", string(out))
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return 0, err
	}
	// Every task's rows as the daemons write them: the script did the
	// full row work, not a part of it.
	var left, finished int
	ins, err := db.store.Instances(ctx, djangodb.InstanceFilter{})
	if err != nil {
		return 0, err
	}
	for _, in := range ins {
		if in.Status == djangodb.Finished {
			finished++
		} else {
			left++
		}
	}
	if finished != tasks || left != 0 {
		return 0, fmt.Errorf("pgbench batched script: %d instances FINISHED, %d not; want %d and 0", finished, left, tasks)
	}
	return tps * float64(b.o.limitBatch), nil
}

// original runs the original-protocol Python daemon
// (integration/refdaemon.py: the tracker's dequeueTask, startTask, the
// handler, stopTaskSuccessIfNotFinished, one task at a time) as procs
// processes, as the original daemon ran procs workers, on a PostgreSQL
// copy of the tables holding tasks demo tasks with the Python demo
// handler, and measures its throughput from the rows as for atpd.
func (b *bench) original(ctx context.Context, name string, procs, tasks, run int) error {
	db, err := b.newDB(ctx, "postgres")
	if err != nil {
		return err
	}
	defer db.Close()
	// The original path: refdaemon.py puts integration/ on sys.path, where
	// tools/atp_demo.py is the demo.
	if err := db.load(ctx, goDemo, tasks); err != nil {
		return err
	}
	counter, err := openCounter(db.dsn)
	if err != nil {
		return err
	}
	defer counter.Close()
	u, err := url.Parse(db.dsn)
	if err != nil {
		return err
	}
	env := append(os.Environ(),
		"ATPD_DJANGO_ENGINE=postgresql",
		"ATPD_DJANGO_NAME="+dbName(db.dsn),
		"ATPD_DJANGO_USER="+u.User.Username(),
		"ATPD_DJANGO_HOST="+u.Hostname(),
		"ATPD_DJANGO_PORT="+u.Port(),
		"ATPD_DJANGO_USE_TZ=1")
	if pw, ok := u.User.Password(); ok {
		env = append(env, "ATPD_DJANGO_PASSWORD="+pw)
	}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGINT)
		}
		for _, c := range cmds {
			c.Wait()
		}
	}()
	for i := range procs {
		logf, err := os.Create(filepath.Join(b.o.tmp, fmt.Sprintf("%s-run%d-%d.log", strings.ReplaceAll(name, "/", "_"), run, i)))
		if err != nil {
			return err
		}
		defer logf.Close()
		c := exec.Command(b.o.python, "refdaemon.py", "--idle-sleep", "0.2")
		c.Dir, c.Env, c.Stdout, c.Stderr = filepath.Join(b.o.repo, "integration"), env, logf, logf
		if err := c.Start(); err != nil {
			return fmt.Errorf("start refdaemon.py: %w", err)
		}
		cmds = append(cmds, c)
	}
	began := time.Now()
	limit := time.Minute + time.Duration(tasks)*200*time.Millisecond
	for {
		done, err := counter.ended(ctx)
		if err != nil {
			return err
		}
		if done >= tasks {
			break
		}
		if time.Since(began) > limit {
			return fmt.Errorf("original daemon: %d of %d tasks ended after %v; logs in %s", done, tasks, limit, b.o.tmp)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := db.verify(ctx); err != nil {
		return fmt.Errorf("rows after the original daemon's drain: %w", err)
	}
	first, last, err := db.span(ctx)
	if err != nil {
		return err
	}
	b.record(name+"/tasks_per_s", float64(tasks)/last.Sub(first).Seconds())
	return nil
}
