package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// recorder is an Observer that counts what it is told.
type recorder struct {
	mu         sync.Mutex
	started    map[string]int
	outcomes   map[string]int // "type status"
	reenqueued map[string]int
	busy       []int
	discarded  map[string]int // "type reason"
	abandoned  []int
}

func newRecorder() *recorder {
	return &recorder{started: map[string]int{}, outcomes: map[string]int{}, reenqueued: map[string]int{}, discarded: map[string]int{}}
}

func (r *recorder) OutcomeDiscarded(typ, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.discarded[typ+" "+reason]++
}

func (r *recorder) SetAbandoned(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.abandoned = append(r.abandoned, n)
}

// discards returns how many discards of typ for reason were counted.
func (r *recorder) discards(typ, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.discarded[typ+" "+reason]
}

// maxAbandoned returns the highest abandoned-handlers gauge value seen.
func (r *recorder) maxAbandoned() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := 0
	for _, n := range r.abandoned {
		m = max(m, n)
	}
	return m
}

func (r *recorder) TaskStarted(typ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started[typ]++
}

func (r *recorder) TaskFinished(typ string, st djangodb.Status, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		st = djangodb.Undefined // a negative run time shows as a bogus outcome
	}
	r.outcomes[typ+" "+st.String()]++
}

func (r *recorder) TaskReenqueued(typ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reenqueued[typ]++
}

func (r *recorder) SetBusy(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy = append(r.busy, n)
}

// TestObserver: the observer hears of every start, outcome and re-enqueue
// the daemon counts, by task type, and the busy gauge ends at 0.
func TestObserver(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := watch(openStore(t, b.make(t, b.cfg), b.cfg, 0))
		g := newGate()
		handlers := funcs{
			"tests.ok":     func(context.Context, *executor.Task, executor.TaskStatus) error { return nil },
			"tests.raises": func(context.Context, *executor.Task, executor.TaskStatus) error { return errBoom },
			"tests.fails_itself": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
				return ts.SetFailure(ctx, "bad")
			},
			"tests.hold": g.hold,
		}
		var ids []int64
		for _, typ := range []string{"ok", "raises", "fails_itself"} {
			register(t, store, djangodb.TypeSpec{Identifier: typ, Handler: "tests." + typ, Timeout: 60})
			for i := range 2 {
				ids = append(ids, enqueue(t, store, typ, string(rune('a'+i)), pyInput(t, "1")))
			}
		}
		register(t, store, djangodb.TypeSpec{Identifier: "hold", Handler: "tests.hold", Timeout: 60})
		rec := newRecorder()
		d, _ := newDaemon(t, store, handlers, Config{Workers: 2, Observer: rec})
		store.waitTerminal(t, ids...)
		held := enqueue(t, store, "hold", "h", pyInput(t, "1"))
		g.awaitStarts(t, 1)
		d.Abort() // the held task goes back to the queue
		store.waitStatus(t, held, djangodb.Accepted)

		st := d.Stats()
		rec.mu.Lock()
		defer rec.mu.Unlock()
		wantStarted := map[string]int{"ok": 2, "raises": 2, "fails_itself": 2, "hold": 1}
		for typ, n := range wantStarted {
			if rec.started[typ] != n {
				t.Errorf("TaskStarted(%s) %d times, want %d", typ, rec.started[typ], n)
			}
		}
		wantOutcomes := map[string]int{"ok FINISHED": 2, "raises FAILED": 2, "fails_itself FAILED": 2}
		if len(rec.outcomes) != len(wantOutcomes) {
			t.Errorf("outcomes %v, want %v", rec.outcomes, wantOutcomes)
		}
		for k, n := range wantOutcomes {
			if rec.outcomes[k] != n {
				t.Errorf("outcome %s %d times, want %d (all: %v)", k, rec.outcomes[k], n, rec.outcomes)
			}
		}
		// The loop may claim the re-enqueued task once more before it
		// stops; it then goes back unstarted, its type unread ("").
		total := 0
		for typ, n := range rec.reenqueued {
			total += n
			if typ != "hold" && typ != "" {
				t.Errorf("re-enqueued %d tasks of type %q", n, typ)
			}
		}
		if rec.reenqueued["hold"] != 1 {
			t.Errorf("re-enqueued %v, want the held task once as started", rec.reenqueued)
		}
		if st.Started != 7 || st.Finished != 2 || st.Failed != 4 || int(st.Reenqueued) != total {
			t.Errorf("stats %+v disagree with the observer (re-enqueued %v)", st, rec.reenqueued)
		}
		if len(rec.busy) == 0 || rec.busy[len(rec.busy)-1] != 0 {
			t.Errorf("busy gauge values %v, want the last to be 0", rec.busy)
		}
		for _, n := range rec.busy {
			if n < 0 || n > 2 {
				t.Errorf("busy gauge %d outside 0..2 workers", n)
			}
		}
	})
}
