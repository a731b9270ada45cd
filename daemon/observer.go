package daemon

import (
	"sync"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Observer is told about the daemon's task events, for metrics;
// web.Metrics implements it. Its methods are called from the workers'
// goroutines, so they must be quick and safe for concurrent use.
type Observer interface {
	// TaskStarted: the daemon set a task RUNNING.
	TaskStarted(typ string)
	// TaskFinished: a task this daemon ran ended FINISHED or FAILED, after
	// runTime from RUNNING; runTime is 0 for one its claim failed (an input
	// that does not decode), which never was RUNNING.
	TaskFinished(typ string, status djangodb.Status, runTime time.Duration)
	// TaskReenqueued: the daemon put a task back on the queue (deadline,
	// shutdown, zombie sweep). typ is "" for a task re-enqueued before
	// it was started, whose type the daemon never read.
	TaskReenqueued(typ string)
	// SetBusy: the number of workers running a task changed to n.
	SetBusy(n int)
	// OutcomeDiscarded: writes of a run were dropped because the run no
	// longer owned its task; reason is a djangodb.Discard* word, or
	// "released" for a cancellation Store.Release did not write.
	OutcomeDiscarded(typ, reason string)
	// SetAbandoned: the number of handlers that ignored cancellation and
	// still run changed to n.
	SetAbandoned(n int)
}

// observer serialises SetBusy with the counter it reports, so that two
// workers ending at once cannot leave the gauge at a stale value.
type observer struct {
	Observer
	mu sync.Mutex
}

func newObserver(o Observer) *observer {
	if o == nil {
		o = nopObserver{}
	}
	return &observer{Observer: o}
}

func (d *Daemon) addBusy(delta int64) {
	d.obs.mu.Lock()
	defer d.obs.mu.Unlock()
	d.obs.SetBusy(int(d.n.busy.Add(delta)))
}

type nopObserver struct{}

func (nopObserver) TaskStarted(string)                                  {}
func (nopObserver) TaskFinished(string, djangodb.Status, time.Duration) {}
func (nopObserver) TaskReenqueued(string)                               {}
func (nopObserver) SetBusy(int)                                         {}
func (nopObserver) OutcomeDiscarded(string, string)                     {}
func (nopObserver) SetAbandoned(int)                                    {}
