package daemon

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// failingClaims fails the next Claim calls with errs, one each, then
// passes calls through.
type failingClaims struct {
	*watchStore
	mu   sync.Mutex
	errs []error
}

func (f *failingClaims) Claim(ctx context.Context, sid int64, n int, m string) ([]djangodb.StartedTask, error) {
	f.mu.Lock()
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.watchStore.Claim(ctx, sid, n, m)
}

// retryWaits returns the retry_in of each log line with the message msg.
func retryWaits(logs, msg string) []string {
	re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `".* retry_in=(\S+)`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(logs, -1) {
		out = append(out, m[1])
	}
	return out
}

const (
	msgLost      = "ATPD: lost the database connection while pulling tasks; retrying on a new one"
	msgClaimFail = "ATPD: cannot pull tasks from the queue; retrying"
)

// TestClaimLostConnection: a claim that lost its connection is retried at
// once, and while connections keep being lost the backoff stays short;
// the queue is served as soon as a claim gets through. Errors that are not
// a lost connection (here a refused one: the database is down) back off
// as before.
func TestClaimLostConnection(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name               string
		errs               []error
		wantLost, wantFail []string
	}{
		{"lost", []error{
			fmt.Errorf("djangodb: claim for server 0x1: %w", driver.ErrBadConn),
			reset,
			fmt.Errorf("djangodb: claim for server 0x1: %w", driver.ErrBadConn),
			driver.ErrBadConn,
		}, []string{"0s", "50ms", "100ms", "200ms"}, nil},
		{"down", []error{refused, refused, refused}, nil, []string{"50ms", "100ms", "200ms"}},
		// A server going down: its sessions end, then it refuses new ones.
		{"lost then down", []error{driver.ErrBadConn, refused, refused}, []string{"0s"}, []string{"50ms", "100ms"}},
	}
	b := backends[1]
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := watch(openStore(t, b.make(t, b.cfg), b.cfg, 0))
			store := &failingClaims{watchStore: ws, errs: tc.errs}
			register(t, store, djangodb.TypeSpec{Identifier: "T", Handler: "tests.ok", Timeout: 60})
			id := enqueue(t, store, "T", "a", pyInput(t, "1"))
			d, logs := newDaemon(t, store, funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil }},
				Config{Workers: 1})
			ws.waitStatus(t, id, djangodb.Finished)
			d.Stop()
			if got := retryWaits(logs.String(), msgLost); !slices.Equal(got, tc.wantLost) {
				t.Errorf("claims retried after a lost connection in %v, want %v", got, tc.wantLost)
			}
			if got := retryWaits(logs.String(), msgClaimFail); !slices.Equal(got, tc.wantFail) {
				t.Errorf("other failed claims retried in %v, want %v", got, tc.wantFail)
			}
		})
	}
}

func TestLostBackoff(t *testing.T) {
	var got []time.Duration
	for lost := range 9 {
		got = append(got, lostBackoff(lost))
	}
	ms := time.Millisecond
	want := []time.Duration{0, 50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms, 500 * ms, 500 * ms}
	if !slices.Equal(got, want) {
		t.Errorf("lostBackoff(0..8) = %v, want %v", got, want)
	}
}

// TestClaimSurvivesTerminatedSessions (PostgreSQL): every session of the
// daemon is terminated (pg_terminate_backend) while its claim transaction
// is in flight, waiting for a row lock. The claim is run again on a new
// connection: the queue drains and the loop logs no failed claim, let
// alone backs off.
func TestClaimSurvivesTerminatedSessions(t *testing.T) {
	b := backends[0]
	dsn := b.make(t, b.cfg)
	ws := watch(openStore(t, dsn, b.cfg, 0))
	register(t, ws, djangodb.TypeSpec{Identifier: "T", Handler: "tests.ok", Timeout: 60})
	var ids []int64
	for i := range 5 {
		ids = append(ids, enqueue(t, ws, "T", fmt.Sprint("t", i), pyInput(t, "1")))
	}
	admin, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := ctxT(t)
	// The claim of the oldest task waits for this lock.
	lock, err := admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `SELECT 1 FROM processes_instance WHERE id = $1 FOR UPDATE`, ids[0]); err != nil {
		t.Fatal(err)
	}
	d, logs := newDaemon(t, ws, funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil }},
		Config{Workers: 1})
	// No signal tells that the claim waits for the lock but the server's
	// own view; each poll is one cheap query.
	deadline := time.Now().Add(waitLimit)
	for {
		var waiting bool
		if err := lock.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid)))`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon's claim never waited for the locked instance")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var killed int
	if err := lock.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no session terminated")
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	ws.waitTerminal(t, ids...)
	d.Stop()
	for _, id := range ids {
		checkLog(t, ws, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
	}
	if got := retryWaits(logs.String(), msgClaimFail); len(got) > 0 {
		t.Errorf("failed claims retried in %v after %d sessions were terminated, want none", got, killed)
	}
	if got := retryWaits(logs.String(), msgLost); len(got) > 0 {
		t.Errorf("claims lost their connection %d times, want none (the store runs them again)", len(got))
	}
	noneInFlight(t, ws)
}
