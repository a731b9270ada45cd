package djangodb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// fillPool leaves n idle connections in db's pool: it holds n at once, each
// checked with a ping, then returns them.
func fillPool(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	ctx := t.Context()
	var conns []*sql.Conn
	for tries := 0; len(conns) < n; tries++ {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A connection left dead by an earlier round fails its ping and
		// is dropped from the pool as it is closed.
		if err := c.PingContext(ctx); err != nil {
			c.Close()
			if tries > 4*n {
				t.Fatalf("cannot fill the pool: %v", err)
			}
			continue
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	if idle := db.Stats().Idle; idle < n {
		t.Fatalf("%d idle connections in the pool, want %d", idle, n)
	}
}

// terminateBackends ends every other session of the database dsn names,
// from a connection of its own, and waits until their server processes
// have exited (a terminated backend closes its socket as it exits).
func terminateBackends(t *testing.T, dsn string) int {
	t.Helper()
	admin := rawDB(t, dsn)
	admin.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var killed int
	if err := admin.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	for {
		var left int
		if err := admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			return killed
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d terminated sessions still there", left)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestPostgresTerminatedPool: after every idle session of the store's pool
// was terminated (pg_terminate_backend, as an administrator or a failover
// does), the store's next calls succeed: a dead pooled connection is
// replaced, not handed to the caller as an error.
func TestPostgresTerminatedPool(t *testing.T) {
	const idle = 8
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	s := openPostgres(t, dsn, testdb.Options(c))
	ctx := t.Context()
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "T", Handler: "h", Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	pool := djangodb.PostgresPool(s)
	for round := range 2 {
		// Enqueues, then claims, each right after the pool's sessions
		// were terminated.
		for _, op := range []string{"enqueue", "claim"} {
			fillPool(t, pool, idle)
			if killed := terminateBackends(t, dsn); killed < idle {
				t.Fatalf("round %d: terminated %d sessions, want at least %d", round, killed, idle)
			}
			var failed []error
			for i := range idle {
				var err error
				switch op {
				case "enqueue":
					_, err = s.Enqueue(ctx, "T", fmt.Sprintf("t%d.%d", round, i), okInput, "")
				case "claim":
					var sts []djangodb.StartedTask
					if sts, err = s.Claim(ctx, 1, 1, ""); err == nil && len(sts) != 1 {
						t.Fatalf("claim %d claimed %d tasks, want 1", i, len(sts))
					}
				}
				if err != nil {
					failed = append(failed, err)
				}
			}
			if len(failed) > 0 {
				t.Errorf("round %d: %d of %d calls to %s after the sessions were terminated failed: %v",
					round, len(failed), idle, op, errors.Join(failed...))
			}
		}
	}
}

// TestPostgresClaimSurvivesTerminatedSession: the session of a claim is
// terminated while the claim's transaction waits for a row lock. Nothing
// of the transaction was committed, so the store runs it again on a new
// connection and the claim succeeds.
func TestPostgresClaimSurvivesTerminatedSession(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	s := openPostgres(t, dsn, testdb.Options(c))
	ctx := t.Context()
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "T", Handler: "h", Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	admin := rawDB(t, dsn)
	for round := range 3 {
		id, err := s.Enqueue(ctx, "T", fmt.Sprint("t", round), okInput, "")
		if err != nil {
			t.Fatal(err)
		}
		fillPool(t, djangodb.PostgresPool(s), 4)
		lock, err := admin.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.ExecContext(ctx, `SELECT 1 FROM processes_instance WHERE id = $1 FOR UPDATE`, id); err != nil {
			t.Fatal(err)
		}
		type claimed struct {
			sts []djangodb.StartedTask
			err error
		}
		done := make(chan claimed, 1)
		go func() {
			sts, err := s.Claim(ctx, 1, 1, "")
			done <- claimed{sts, err}
		}()
		// The server's view is the only signal that the claim waits.
		for waiting := false; !waiting; {
			if err := lock.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
				WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid)))`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-done:
				t.Fatalf("round %d: the claim returned %v, %v without waiting for the lock", round, r.sts, r.err)
			case <-time.After(time.Millisecond):
			}
		}
		var killed int
		if err := lock.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
			FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if err := lock.Rollback(); err != nil {
			t.Fatal(err)
		}
		r := <-done
		// The terminated session may still hold the task row when the new
		// one looks (SKIP LOCKED): the queue then seems empty for a moment.
		for errors.Is(r.err, djangodb.ErrQueueEmpty) {
			r.sts, r.err = s.Claim(ctx, 1, 1, "")
		}
		if r.err != nil {
			t.Fatalf("round %d: claim after its session was terminated (%d sessions): %v", round, killed, r.err)
		}
		if len(r.sts) != 1 || r.sts[0].InstanceID != id || r.sts[0].Starts != 1 {
			t.Fatalf("round %d: claimed %+v, want instance %d started once", round, r.sts, id)
		}
	}
}

// TestPostgresTransactionsReadCommitted: the store's transactions run at
// READ COMMITTED, which its statements are written for, even where the
// server's default isolation is another.
func TestPostgresTransactionsReadCommitted(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	admin := rawDB(t, dsn)
	var name string
	if err := admin.QueryRow(`SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`ALTER DATABASE ` + pq.QuoteIdentifier(name) + ` SET default_transaction_isolation = 'serializable'`); err != nil {
		t.Fatal(err)
	}
	s := openPostgres(t, dsn, testdb.Options(c))
	var dflt string
	if err := djangodb.PostgresPool(s).QueryRow(`SHOW default_transaction_isolation`).Scan(&dflt); err != nil || dflt != "serializable" {
		t.Fatalf("the store's sessions default to %q (%v), want serializable", dflt, err)
	}
	level, err := djangodb.PostgresTxIsolation(t.Context(), s)
	if err != nil || level != "read committed" {
		t.Errorf("store transactions run at %q (%v), want read committed", level, err)
	}
}
