package daemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// Regression tests for the exactly-once guarantee: a run's writes are
// fenced on its ownership of the task, the deadline never waits on the
// database, an abandoned handler never runs beside its own re-run, and one
// blocked row does not hold back other tasks' outcomes.

// blockStore holds every Complete call while blocked is set, until the
// test lets it go, and reports each call held.
type blockStore struct {
	*watchStore
	blocked atomic.Bool
	// claimsBlocked: Claim finds nothing (see blockClaims).
	claimMu       sync.Mutex
	claimsBlocked atomic.Bool
	held          chan struct{} // a Complete call began waiting
	unblock       chan struct{} // closed: held calls go on
}

func newBlockStore(s *watchStore) *blockStore {
	return &blockStore{watchStore: s, held: make(chan struct{}, 100), unblock: make(chan struct{})}
}

func (s *blockStore) Complete(ctx context.Context, cs []djangodb.Completion) ([]djangodb.CompletionResult, error) {
	if s.blocked.Load() {
		s.held <- struct{}{}
		select {
		case <-s.unblock:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.watchStore.Complete(ctx, cs)
}

// Claim finds nothing while claimsBlocked: a daemon that takes no new
// work (as a killed one would not).
func (s *blockStore) Claim(ctx context.Context, serverID int64, limit int, message string) ([]djangodb.StartedTask, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	if s.claimsBlocked.Load() {
		return nil, djangodb.ErrQueueEmpty
	}
	return s.watchStore.Claim(ctx, serverID, limit, message)
}

// blockClaims makes Claim find nothing from now on; a claim already past
// its check has returned when it returns.
func (s *blockStore) blockClaims() {
	s.claimMu.Lock()
	s.claimsBlocked.Store(true)
	s.claimMu.Unlock()
}

func (s *blockStore) awaitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-s.held:
	case <-time.After(waitLimit):
		t.Fatal("no Complete call was held")
	}
}

// notifyRecorder is a recorder that signals every discard and abandon.
type notifyRecorder struct {
	*recorder
	changed chan struct{}
}

func newNotifyRecorder() *notifyRecorder {
	return &notifyRecorder{recorder: newRecorder(), changed: make(chan struct{}, 1000)}
}

func (r *notifyRecorder) OutcomeDiscarded(typ, reason string) {
	r.recorder.OutcomeDiscarded(typ, reason)
	r.changed <- struct{}{}
}

func (r *notifyRecorder) SetAbandoned(n int) {
	r.recorder.SetAbandoned(n)
	r.changed <- struct{}{}
}

func (r *notifyRecorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for !cond() {
		select {
		case <-r.changed:
		case <-limit.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestLateOutcomeDiscarded (fault 1): the outcome of run A, held up in the
// database past the type's timeout while a sweep re-enqueued the task and
// another daemon started it, is dropped: run B keeps the task, nothing of
// A's lands, and the discard is logged and counted.
func TestLateOutcomeDiscarded(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := newBlockStore(watch(openStore(t, b.make(t, b.cfg), b.cfg, 0)))
		register(t, store, djangodb.TypeSpec{Identifier: "Late", Handler: "tests.respond", Timeout: 60, MaxRestart: 2})
		id := enqueue(t, store, "Late", "late", pyInput(t, "None"))
		obs := newNotifyRecorder()
		store.blocked.Store(true)
		_, logs := newDaemon(t, store, funcs{"tests.respond": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			return ts.StoreResponse(ctx, []byte("from run A"), "text/plain")
		}}, Config{Workers: 1, Observer: obs})
		store.awaitHeld(t)
		// Our daemon's worker is free again: keep it from being the one
		// that claims the task again.
		store.blockClaims()
		// What a sweep and another daemon do while A's outcome waits.
		if err := djangodb.MustTrackerOf(store.Store).Reenqueue(ctxT(t), id, djangodb.MsgZombieReenqueued); err != nil {
			t.Fatal(err)
		}
		other, err := store.Store.Claim(ctxT(t), 0x0DD, 1, "")
		if err != nil || len(other) != 1 || other[0].Starts != 2 {
			t.Fatalf("other daemon's claim = %+v, %v", other, err)
		}
		store.blocked.Store(false)
		close(store.unblock)
		obs.waitFor(t, "the late outcome to be discarded", func() bool { return obs.discards("Late", djangodb.DiscardRestarted) == 1 })
		checkLog(t, store, id,
			rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Accepted, djangodb.MsgZombieReenqueued}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""})
		if _, err := store.Response(ctxT(t), id); !errors.Is(err, djangodb.ErrNotFound) {
			t.Errorf("response after the discarded outcome: %v; want none", err)
		}
		if !strings.Contains(logs.String(), "outcome discarded") || !strings.Contains(logs.String(), "identifier=late") {
			t.Errorf("no discard line naming the task in the daemon log:\n%s", logs)
		}
	})
}

// TestDeadlineDoesNotWaitForFlush (fault 3): a handler whose held-back
// write is stuck in the database is still cancelled at its deadline; the
// flush does not hold the deadline, nor the worker.
func TestDeadlineDoesNotWaitForFlush(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := newBlockStore(watch(openStore(t, b.make(t, b.cfg), b.cfg, 0)))
		register(t, store, djangodb.TypeSpec{Identifier: "Stuck", Handler: "tests.stuck", Timeout: 1, MaxRestart: 2})
		id := enqueue(t, store, "Stuck", "stuck", pyInput(t, "None"))
		cancelled := make(chan struct{})
		var runs atomic.Int32
		store.blocked.Store(true)
		newDaemon(t, store, funcs{"tests.stuck": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			if runs.Add(1) > 1 {
				return nil
			}
			if err := ts.SetRunning(ctx, "progress"); err != nil {
				return err
			}
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}}, Config{Workers: 1, DeadlineMargin: 300 * time.Millisecond, FlushDelay: time.Millisecond})
		store.awaitHeld(t)
		select {
		case <-cancelled:
		case <-time.After(waitLimit):
			t.Fatal("the handler was not cancelled while its flush was held in the database")
		}
		store.blocked.Store(false)
		close(store.unblock)
		store.waitStatus(t, id, djangodb.Finished)
		checkLog(t, store, id,
			rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Running, "progress"}, rec{djangodb.Accepted, djangodb.MsgZombieReenqueued},
			rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
	})
}

// TestAbandonedHandlerNotRunTwice (fault 4): a Go handler that ignores
// cancellation is abandoned and counted; its task, re-enqueued, is
// claimed again but not run while the abandoned handler still runs.
func TestAbandonedHandlerNotRunTwice(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := watch(openStore(t, b.make(t, b.cfg), b.cfg, 0))
		register(t, store, djangodb.TypeSpec{Identifier: "Deaf", Handler: "tests.deaf", Timeout: 1, MaxRestart: 2})
		id := enqueue(t, store, "Deaf", "deaf", pyInput(t, "None"))
		obs := newNotifyRecorder()
		var mu sync.Mutex
		running, peak, calls := 0, 0, 0
		letGo := make(chan struct{})
		newDaemon(t, store, funcs{"tests.deaf": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			mu.Lock()
			running++
			calls++
			peak = max(peak, running)
			mu.Unlock()
			defer func() {
				mu.Lock()
				running--
				mu.Unlock()
			}()
			<-letGo // ignores ctx
			return nil
		}}, Config{Workers: 2, DeadlineMargin: 300 * time.Millisecond, Observer: obs})
		obs.waitFor(t, "the handler to be abandoned", func() bool { return obs.maxAbandoned() == 1 })
		store.waitFor(t, "the task's second start", func() bool { return store.starts[id] >= 2 })
		store.waitFor(t, "the task's third start", func() bool { return store.starts[id] >= 3 })
		mu.Lock()
		if calls != 1 {
			t.Errorf("the handler was called %d times while its first call was abandoned; want 1", calls)
		}
		mu.Unlock()
		close(letGo)
		store.waitTerminal(t, id)
		obs.waitFor(t, "the abandoned gauge back at 0", func() bool {
			obs.mu.Lock()
			defer obs.mu.Unlock()
			return len(obs.abandoned) > 0 && obs.abandoned[len(obs.abandoned)-1] == 0
		})
		mu.Lock()
		defer mu.Unlock()
		if peak != 1 {
			t.Errorf("the handler ran %d times at once; want 1", peak)
		}
	})
}

// TestBusyRowDoesNotBlockOthers (fault 5): while another session holds one
// task's instance row, the other tasks' outcomes, written in the same
// batch, are committed; the held one lands once the lock is gone. SQLite
// locks the whole file for a writer, so there is no row to hold.
func TestBusyRowDoesNotBlockOthers(t *testing.T) {
	b := backends[0]
	if b.name != "postgres" {
		t.Fatalf("backends[0] is %s, want postgres", b.name)
	}
	dsn := b.make(t, b.cfg)
	store := watch(openStore(t, dsn, b.cfg, 0))
	register(t, store, djangodb.TypeSpec{Identifier: "Two", Handler: "tests.hold", Timeout: 60, MaxRestart: 2})
	held := enqueue(t, store, "Two", "held", pyInput(t, "None"))
	free := enqueue(t, store, "Two", "free", pyInput(t, "None"))
	g := newGate()
	newDaemon(t, store, funcs{"tests.hold": g.hold}, Config{Workers: 2, CompleteWindow: 200 * time.Millisecond})
	g.awaitStarts(t, 2)
	db := rawDB(t, dsn)
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctxT(t), `SELECT id FROM processes_instance WHERE id = $1 FOR UPDATE`, held); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	store.waitStatus(t, free, djangodb.Finished)
	if in, err := store.Instance(ctxT(t), held); err != nil || in.Status != djangodb.Running {
		t.Errorf("held instance while its row is locked: %+v, %v; want RUNNING", in, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	store.waitStatus(t, held, djangodb.Finished)
}

// rawDB opens a PostgreSQL connection of the test's own on dsn.
func rawDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestKilledDaemonTaskRunsAgain (fault 7): a Go handler's held-back writes
// are committed with its outcome, so a daemon that dies between the
// handler's SetSuccess and that commit loses both (here: its Complete
// never returns, as if the process were killed). The task stays RUNNING
// until its timeout, another daemon's sweep re-enqueues it and runs it
// again, and it ends FINISHED once, with the second run's response: the
// at-least-once contract executor.TaskStatus documents. The dead run's
// writes, should they arrive after all, are discarded.
func TestKilledDaemonTaskRunsAgain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		dead := newBlockStore(watch(openStore(t, dsn, b.cfg, 0)))
		register(t, dead, djangodb.TypeSpec{Identifier: "Twice", Handler: "tests.done", Timeout: 1, MaxRestart: 2})
		id := enqueue(t, dead, "Twice", "twice", pyInput(t, "None"))
		var runs atomic.Int32
		handler := funcs{"tests.done": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			n := runs.Add(1)
			if err := ts.SetSuccess(ctx, fmt.Sprint("run ", n)); err != nil {
				return err
			}
			return ts.StoreResponse(ctx, []byte(fmt.Sprint("response of run ", n)), "text/plain")
		}}
		dead.blocked.Store(true)
		obs := newNotifyRecorder()
		newDaemon(t, dead, handler, Config{Workers: 1, SweepInterval: time.Hour, Observer: obs})
		dead.awaitHeld(t)
		dead.blockClaims()
		if in, err := dead.Instance(ctxT(t), id); err != nil || in.Status != djangodb.Running {
			t.Fatalf("instance while the first daemon's outcome is lost: %+v, %v; want RUNNING", in, err)
		}
		live := watch(openStore(t, dsn, b.cfg, 0))
		newDaemon(t, live, handler, Config{Workers: 1, SweepInterval: 50 * time.Millisecond})
		live.waitStatus(t, id, djangodb.Finished)
		dead.blocked.Store(false)
		close(dead.unblock)
		obs.waitFor(t, "the dead run's writes to be discarded", func() bool { return obs.discards("Twice", djangodb.DiscardRestarted) == 1 })
		checkLog(t, live, id,
			rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Accepted, djangodb.MsgZombieReenqueued}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Finished, "run 2"})
		if r, err := live.Response(ctxT(t), id); err != nil || string(r.Data) != "response of run 2" {
			t.Errorf("response = %q, %v; want the second run's", r.Data, err)
		}
	})
}

// refusingStore refuses every claim while refuse is set, as a database
// that answers pings but no longer takes writes.
type refusingStore struct {
	*watchStore
	refuse atomic.Bool
	calls  chan struct{}
}

func (s *refusingStore) Claim(ctx context.Context, serverID int64, limit int, message string) ([]djangodb.StartedTask, error) {
	defer func() {
		select {
		case s.calls <- struct{}{}:
		default:
		}
	}()
	if s.refuse.Load() {
		return nil, fmt.Errorf("djangodb: claim: pq: permission denied for table processes_task")
	}
	return s.watchStore.Claim(ctx, serverID, limit, message)
}

// TestWriteHealth: a daemon whose writes fail says so (WriteHealth, which
// /healthz reports) until a write goes through again.
func TestWriteHealth(t *testing.T) {
	b := backends[1]
	store := &refusingStore{watchStore: watch(openStore(t, b.make(t, b.cfg), b.cfg, 0)), calls: make(chan struct{}, 1)}
	store.refuse.Store(true)
	d, _ := newDaemon(t, store, funcs{}, Config{Workers: 1})
	await := func() {
		t.Helper()
		for range 2 { // one claim may have begun before the change
			select {
			case <-store.calls:
			case <-time.After(waitLimit):
				t.Fatal("no claim")
			}
		}
	}
	await()
	if err := d.WriteHealth(); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("WriteHealth with refused claims = %v", err)
	}
	store.refuse.Store(false)
	await()
	if err := d.WriteHealth(); err != nil {
		t.Errorf("WriteHealth after a claim went through = %v", err)
	}
}
