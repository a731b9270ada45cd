package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// releaseCall is one Store.Release the daemon made.
type releaseCall struct {
	to    djangodb.Status
	wrote bool
	err   error
}

// releaseStore reports the daemon's Release calls; refuse, when set, is
// returned instead of calling the store.
type releaseStore struct {
	*watchStore
	calls  chan releaseCall
	refuse error
}

func (s *releaseStore) Release(ctx context.Context, id int64, starts int, to djangodb.Status, message string) (bool, error) {
	if s.refuse != nil {
		s.calls <- releaseCall{to: to, err: s.refuse}
		return false, s.refuse
	}
	wrote, err := s.watchStore.Release(ctx, id, starts, to, message)
	s.calls <- releaseCall{to: to, wrote: wrote, err: err}
	return wrote, err
}

func (s *releaseStore) next(t *testing.T) releaseCall {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(waitLimit):
		t.Fatal("the daemon made no Release call")
		return releaseCall{}
	}
}

// TestDeadlineRunNoLongerOurs: when a timed-out task was meanwhile
// re-enqueued and started again by someone else, the daemon's cancellation
// writes nothing: the other run is left alone.
func TestDeadlineRunNoLongerOurs(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := &releaseStore{watchStore: watch(openStore(t, dsn, b.cfg, 0)), calls: make(chan releaseCall, 10)}
		g := newGate()
		register(t, store, djangodb.TypeSpec{Identifier: "Slow", Handler: "tests.hold", Timeout: 1, MaxRestart: 2})
		id := enqueue(t, store, "Slow", "s", pyInput(t, "None"))
		obs := newNotifyRecorder()
		_, logs := newDaemon(t, store, funcs{"tests.hold": g.hold}, Config{Workers: 1, DeadlineMargin: 300 * time.Millisecond, Observer: obs})
		g.awaitStarts(t, 1)
		// A sweep re-enqueues the task and another daemon starts it; ours
		// has no free worker, so it is not the one claiming.
		if err := djangodb.MustTrackerOf(store.Store).Reenqueue(ctxT(t), id, djangodb.MsgZombieReenqueued); err != nil {
			t.Fatal(err)
		}
		other, err := store.Store.Claim(ctxT(t), 0x0DD, 1, "")
		if err != nil || len(other) != 1 || other[0].InstanceID != id || other[0].Starts != 2 {
			t.Fatalf("other daemon's claim = %+v, %v; want instance %d's second start", other, err, id)
		}
		c := store.next(t)
		if c.err != nil || c.wrote || c.to != djangodb.Accepted {
			t.Fatalf("release at the deadline = %+v, want a re-enqueue that wrote nothing", c)
		}
		checkLog(t, store, id,
			rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Accepted, djangodb.MsgZombieReenqueued}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""})
		if in, err := store.Instance(ctxT(t), id); err != nil || in.Status != djangodb.Running {
			t.Errorf("instance after the cancelled run: %+v, %v; want the other run's RUNNING", in, err)
		}
		// The line is logged before the discard is counted.
		obs.waitFor(t, "the cancellation to be counted as discarded", func() bool { return obs.discards("Slow", "released") == 1 })
		if !strings.Contains(logs.String(), "no longer ours") {
			t.Errorf("no 'no longer ours' line in the daemon log:\n%s", logs)
		}
	})
}

// TestPersistStopsOnPermanentError: a write the database refuses for good
// is tried once, logged with the task's type and identifier, and the task
// is left for the zombie sweep; the daemon still stops.
func TestPersistStopsOnPermanentError(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		refused := fmt.Errorf("djangodb: release: %w", &pq.Error{Code: "23514", Message: "check constraint violated"})
		if djangodb.Transient(refused) {
			t.Fatalf("the injected error %v counts as transient", refused)
		}
		store := &releaseStore{watchStore: watch(openStore(t, dsn, b.cfg, 0)), calls: make(chan releaseCall, 100), refuse: refused}
		g := newGate()
		register(t, store, djangodb.TypeSpec{Identifier: "Slow", Handler: "tests.hold", Timeout: 1, MaxRestart: 2})
		id := enqueue(t, store, "Slow", "p", pyInput(t, "None"))
		d, logs := newDaemon(t, store, funcs{"tests.hold": g.hold}, Config{Workers: 1, DeadlineMargin: 300 * time.Millisecond})
		g.awaitStarts(t, 1)
		store.next(t)
		// Stop returns only once the task's goroutine has given up.
		go d.Stop()
		awaitDone(t, d)
		if n := len(store.calls); n != 0 {
			t.Errorf("the refused release was tried %d more times", n)
		}
		if in, err := store.Instance(ctxT(t), id); err != nil || in.Status != djangodb.Running {
			t.Errorf("instance after the refused release: %+v, %v; want RUNNING, left for the sweep", in, err)
		}
		var line string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "not retrying") {
				line = l
			}
		}
		if !strings.Contains(line, "type=Slow") || !strings.Contains(line, "identifier=p") || !strings.Contains(line, "23514") {
			t.Errorf("refusal log line %q lacks the type, identifier or error", line)
		}
	})
}
