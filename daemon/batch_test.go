package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
)

// TestOutcomesBatched: tasks ending together share Complete transactions,
// each task's rows are those of the reference daemon, and claims are made
// for many workers at once.
func TestOutcomesBatched(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		const tasks, workers = 200, 8
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, tasks))
		register(t, store, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: gohandlers.DemoPath, Timeout: 60})
		in := pyInput(t, "(1, 2, 3, 4, 5)")
		var batch []djangodb.NewTask
		for i := range tasks {
			batch = append(batch, djangodb.NewTask{Identifier: fmt.Sprint("t", i), Input: in})
		}
		ids, err := djangodb.EnqueueMany(ctxT(t), store.Store, "SequenceSum", batch, "")
		if err != nil {
			t.Fatal(err)
		}
		router := &executor.Router{Go: gohandlers.Default, Default: executor.NoHandler{}}
		d, _ := newDaemon(t, store, router, Config{Workers: workers})
		store.waitTerminal(t, ids...)
		d.Stop()
		for _, id := range []int64{ids[0], ids[tasks/2], ids[tasks-1]} {
			checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
			r, err := store.Response(ctxT(t), id)
			if err != nil || string(r.Data) != "15.0" || r.MimeType != "text/plain" {
				t.Errorf("response of %d = %q %q, %v", id, r.Data, r.MimeType, err)
			}
		}
		store.mu.Lock()
		completes, claims := slices.Clone(store.completes), slices.Clone(store.dequeues)
		store.mu.Unlock()
		sum := 0
		for _, n := range completes {
			sum += n
		}
		// One completion per task: the demo's response goes with its outcome.
		if sum != tasks || slices.Max(completes) < 2 {
			t.Errorf("Complete calls of sizes %v: want %d completions in all, some sharing a transaction", completes, tasks)
		}
		if slices.Max(claims) != workers {
			t.Errorf("claims asked for %v tasks, want some for all %d workers", claims, workers)
		}
		t.Logf("%d tasks in %d Complete and %d Claim transactions", tasks, len(completes), len(claims))
		if st := d.Stats(); st.Finished != tasks || st.Claimed != tasks {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestHeldBackWrites: a running handler's writes reach the database within
// FlushDelay while it goes on, and at once when it reads its status; they
// are not committed one transaction each.
func TestHeldBackWrites(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		register(t, store, djangodb.TypeSpec{Identifier: "W", Handler: "tests.progress", Timeout: 60})
		paused := make(chan struct{})
		goOn := make(chan struct{})
		read := make(chan djangodb.Status, 1)
		handlers := funcs{"tests.progress": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			if err := ts.StoreResponse(ctx, []byte("partial"), "text/plain"); err != nil {
				return err
			}
			if err := ts.SetPaused(ctx, "waiting"); err != nil {
				return err
			}
			close(paused)
			<-goOn
			if err := ts.SetRunning(ctx, "resumed"); err != nil {
				return err
			}
			s, err := ts.Status(ctx)
			read <- s
			return err
		}}
		id := enqueue(t, store, "W", "w", pyInput(t, "1"))
		began := time.Now()
		d, _ := newDaemon(t, store, handlers, Config{Workers: 1, FlushDelay: 50 * time.Millisecond})
		<-paused
		// Flushed by the delay while the handler waits.
		store.waitStatus(t, id, djangodb.Paused)
		if waited := time.Since(began); waited < 50*time.Millisecond {
			t.Errorf("held-back writes committed after %v, before FlushDelay", waited)
		}
		if r, err := store.Response(ctxT(t), id); err != nil || string(r.Data) != "partial" {
			t.Errorf("response while the handler runs = %q, %v; want the held-back one", r.Data, err)
		}
		close(goOn)
		// Reading the status commits SetRunning first.
		if s := <-read; s != djangodb.Running {
			t.Errorf("Status() after SetRunning = %s, want RUNNING", s)
		}
		store.waitTerminal(t, id)
		d.Stop()
		checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Paused, "waiting"}, rec{djangodb.Running, "resumed"}, rec{djangodb.Finished, ""})
		store.mu.Lock()
		defer store.mu.Unlock()
		// The delay's flush (response and PAUSED), the read's (RUNNING),
		// the outcome: three transactions for four writes.
		if len(store.completes) != 3 {
			t.Errorf("%d Complete calls, want 3", len(store.completes))
		}
	})
}

// TestListenWakes: on PostgreSQL an idle daemon that would not poll for an
// hour runs a task as soon as a producer announces it.
func TestListenWakes(t *testing.T) {
	b := backends[0]
	dsn := b.make(t, b.cfg)
	store := watch(openStore(t, dsn, b.cfg, 0))
	register(t, store, djangodb.TypeSpec{Identifier: "T", Handler: "tests.ok", Timeout: 60})
	d, logs := newDaemon(t, listeningStore{store}, funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil }},
		Config{Workers: 1, PollInterval: time.Hour})
	// The first poll comes before LISTEN may have taken effect; so does
	// the wake-up Listen gives once it has.
	store.waitFor(t, "two polls", func() bool { return len(store.dequeues) >= 2 })
	producer := openStore(t, dsn, b.cfg, 0)
	id := enqueue(t, producer, "T", "announced", pyInput(t, "1"))
	if err := producer.(djangodb.Notifier).Notify(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	store.waitStatus(t, id, djangodb.Finished)
	d.Stop()
	if want := `msg="ATPD: listening for new tasks, polling as the fallback" channel=` + djangodb.NotifyChannel; !strings.Contains(logs.String(), want) {
		t.Errorf("daemon log lacks %q", want)
	}
}

// listeningStore passes LISTEN through a watchStore.
type listeningStore struct{ *watchStore }

func (l listeningStore) Listen(ctx context.Context, wake func(), log *slog.Logger) error {
	return l.Store.(djangodb.Listener).Listen(ctx, wake, log)
}

// syncFuncs is funcs behind an executor that asks for committed writes, as
// the Python executors do (executor.SyncWriter).
type syncFuncs struct{ funcs }

func (syncFuncs) SyncWrites(string) bool { return true }

// TestSyncWritesPerExecutor: an executor that implements SyncWriter gets
// each TaskStatus write committed before the setter returns (the tracker's
// contract Python handlers rely on), while the daemon holds back the writes
// of other handlers.
func TestSyncWritesPerExecutor(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		for _, c := range []struct {
			name string
			sync bool
		}{{"python-like executor", true}, {"go handlers", false}} {
			t.Run(c.name, func(t *testing.T) {
				dsn := b.make(t, b.cfg)
				store := watch(openStore(t, dsn, b.cfg, 0))
				register(t, store, djangodb.TypeSpec{Identifier: "S", Handler: "tests.pause", Timeout: 60})
				seen := make(chan djangodb.Status, 1)
				fs := funcs{"tests.pause": func(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error {
					if err := ts.SetPaused(ctx, "half way"); err != nil {
						return err
					}
					// Read through the store, not ts: ts.Status would flush.
					inst, err := store.Instance(ctx, task.InstanceID)
					seen <- inst.Status
					return err
				}}
				var ex executor.Executor = fs
				if c.sync {
					ex = syncFuncs{fs}
				}
				id := enqueue(t, store, "S", "s", pyInput(t, "1"))
				d, _ := newDaemon(t, store, ex, Config{Workers: 1, FlushDelay: time.Hour})
				got := <-seen
				store.waitTerminal(t, id)
				d.Stop()
				want := djangodb.Running
				if c.sync {
					want = djangodb.Paused
				}
				if got != want {
					t.Errorf("status in the database right after SetPaused returned = %s, want %s", got, want)
				}
				checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
					rec{djangodb.Paused, "half way"}, rec{djangodb.Finished, ""})
			})
		}
	})
}
