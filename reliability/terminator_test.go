package reliability

import (
	"context"
	"database/sql"
	"sync/atomic"
	"testing"
	"time"
)

// terminator kills, round after round, every session of the test database
// but the test's own (testAppName) with pg_terminate_backend, from a
// session of its own that the rounds spare.
type terminator struct {
	rounds, killed atomic.Int64
	stopCh, done   chan struct{}
}

// endedTasks counts the instances that ended (FINISHED, FAILED): the
// progress a round waits for.
const endedTasks = `SELECT count(*) FROM processes_instance WHERE status IN (5, 6)`

// terminate starts the rounds, one every period. When progress is set
// (a query returning a count, run on the terminator's session), a round is
// skipped while the count has not changed since the last one: a daemon
// whose every transaction is cut short makes no progress at all, which on
// a loaded machine, where a transaction takes longer than the period, is
// what a fixed period led to (two suite copies side by side: 247 of 300
// tasks in 5 minutes). Each round then still cuts the daemon's
// sessions, wherever they are, and the fault is the same on an idle
// machine, where tasks finish faster than the period.
func (d *rdb) terminate(t *testing.T, period time.Duration, progress string) *terminator {
	t.Helper()
	db, err := sql.Open("postgres", withAppName(t, d.DSN))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	k := &terminator{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		defer db.Close()
		tick := time.NewTicker(period)
		defer tick.Stop()
		last := int64(-1)
		for {
			select {
			case <-k.stopCh:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := k.round(ctx, db, progress, &last)
			cancel()
			if err != nil {
				t.Errorf("pg_terminate_backend round: %v", err)
				return
			}
		}
	}()
	t.Cleanup(k.stop)
	return k
}

func (k *terminator) round(ctx context.Context, db *sql.DB, progress string, last *int64) error {
	if progress != "" {
		var n int64
		if err := db.QueryRowContext(ctx, progress).Scan(&n); err != nil {
			return err
		}
		if n == *last {
			return nil
		}
		*last = n
	}
	var n int64
	err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
		AND application_name <> $1`, testAppName).Scan(&n)
	if err != nil {
		return err
	}
	k.rounds.Add(1)
	k.killed.Add(n)
	return nil
}

// stop ends the rounds and waits for the last one; it may be called again.
func (k *terminator) stop() {
	select {
	case <-k.stopCh:
	default:
		close(k.stopCh)
	}
	<-k.done
}
