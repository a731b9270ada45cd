package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// Errors callers branch on.
var (
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("daemon already started")
	// ErrStopped: Start was called after Stop or Abort.
	ErrStopped = errors.New("daemon stopped")
	// ErrTaskReleased is what a handler's TaskStatus setters return once the
	// daemon has taken the task back (deadline, shutdown, or the handler
	// returned): the daemon's own outcome must be the last write.
	ErrTaskReleased = errors.New("task no longer belongs to this handler")
)

// Cancellation causes of a handler's context.
var (
	errDeadline = fmt.Errorf("daemon: task deadline reached: %w", context.DeadlineExceeded)
	errShutdown = fmt.Errorf("daemon: aborted at shutdown: %w", context.Canceled)
)

// Stats is a snapshot of the daemon's counters since Start.
type Stats struct {
	Workers int // pool size
	Busy    int // workers running a handler

	Polls      int64 // Claim calls
	Pulls      int64 // Claim calls that claimed at least one task
	Claimed    int64 // tasks claimed
	Started    int64 // tasks set RUNNING
	Finished   int64 // tasks ended FINISHED (by the handler or the daemon)
	Failed     int64 // tasks ended FAILED (handler error, panic, maxstart)
	Reenqueued int64 // tasks this daemon put back on the queue (deadline or shutdown)
	TimedOut   int64 // handlers cancelled at their deadline

	Sweeps            int64 // clean-ups run
	ZombiesReenqueued int64 // instances the sweep re-enqueued after timeout
	ZombiesFailed     int64 // instances the sweep failed, starts used up
	Unstuck           int64 // stale claimed task rows the sweep recovered
	Retired           int64 // instances deleted after their retention time
}

type counters struct {
	busy atomic.Int64
	// holding counts tasks holding a worker: from dispatch until their
	// outcome is handed to the completer. While some do, a claim or a
	// completion is worth a short wait for company.
	holding atomic.Int64

	polls, pulls, claimed, started, finished, failed, reenqueued, timedOut atomic.Int64

	sweeps, zombiesReenqueued, zombiesFailed, unstuck, retired atomic.Int64
}

// Daemon runs tasks from the queue on a pool of workers. Create it with New,
// run it with Start, end it with Stop (drain) or Abort.
type Daemon struct {
	store djangodb.Store
	exec  executor.Executor
	cfg   Config
	log   *slog.Logger

	// free holds the numbers of idle workers; taking one is the right to
	// run one task, so the loop can only claim what it can run.
	free chan int
	wake chan struct{}

	// handlerCtx parents every handler's context; Abort cancels it.
	handlerCtx    context.Context
	cancelHandler context.CancelCauseFunc

	mu       sync.Mutex
	started  bool
	stopping chan struct{} // closed by Stop or Abort: pull nothing more
	aborting chan struct{} // closed by Abort
	hardStop chan struct{} // closed when Abort gives up on retrying writes
	done     chan struct{}

	loopDone  chan struct{}
	sweepDone chan struct{}
	sweepNow  chan struct{}
	lastSweep atomic.Int64 // unix nanoseconds
	tasks     sync.WaitGroup

	// completions feeds the completer; it is closed once every task
	// goroutine has ended, and completerDone when the completer has.
	completions   chan *completion
	completerDone chan struct{}
	stopListen    context.CancelFunc
	listenDone    chan struct{}

	stopOnce, abortOnce, hardOnce, doneOnce sync.Once

	n   counters
	obs *observer

	// writeErr is why the last store write failed, nil once one
	// succeeded (see WriteHealth).
	writeErr atomic.Pointer[error]

	// abandoned maps an instance to the channel closed when its
	// abandoned handler returns (see call).
	abandonedMu sync.Mutex
	abandoned   map[int64]chan struct{}
}

// New checks cfg and returns a daemon that is not yet running.
func New(store djangodb.Store, exec executor.Executor, cfg Config) (*Daemon, error) {
	if store == nil {
		return nil, fmt.Errorf("daemon: %w: nil store", ErrConfig)
	}
	if exec == nil {
		return nil, fmt.Errorf("daemon: %w: nil executor", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &Daemon{
		store:     store,
		exec:      exec,
		cfg:       cfg,
		log:       cfg.Logger,
		free:      make(chan int, cfg.Workers),
		wake:      make(chan struct{}, 1),
		stopping:  make(chan struct{}),
		aborting:  make(chan struct{}),
		hardStop:  make(chan struct{}),
		done:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		sweepDone: make(chan struct{}),
		sweepNow:  make(chan struct{}, 1),
		obs:       newObserver(cfg.Observer),
		// Room for every worker's outcome and one flush each: a worker
		// handing over its outcome does not wait for the transaction
		// before that.
		completions:   make(chan *completion, 2*cfg.Workers),
		completerDone: make(chan struct{}),
		listenDone:    make(chan struct{}),
	}
	d.handlerCtx, d.cancelHandler = context.WithCancelCause(context.Background())
	for i := range cfg.Workers {
		d.free <- i
	}
	return d, nil
}

// Start runs the loop in its own goroutines and returns at once. Cancelling
// ctx has the effect of Abort.
func (d *Daemon) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return fmt.Errorf("daemon: start: %w", ErrStarted)
	}
	select {
	case <-d.stopping:
		return fmt.Errorf("daemon: start: %w", ErrStopped)
	default:
	}
	d.started = true
	d.log.Info("ATPD: task loop started", "server_id", FormatServerID(d.cfg.ServerID),
		"workers", d.cfg.Workers, "database", d.store.Describe())
	go d.completer()
	d.listen()
	go d.loop()
	go d.sweeper()
	go func() {
		<-d.loopDone
		<-d.sweepDone
		d.stopListen()
		// No task goroutine is added once the loop has returned, and a
		// task goroutine ends only when its outcome is written.
		d.tasks.Wait()
		close(d.completions)
		<-d.completerDone
		<-d.listenDone
		d.cancelHandler(errShutdown)
		d.log.Info("ATPD: task loop ended", "server_id", FormatServerID(d.cfg.ServerID))
		d.closeDone()
	}()
	go func() {
		select {
		case <-ctx.Done():
			d.log.Info("ATPD: context cancelled, aborting")
			d.Abort()
		case <-d.done:
		}
	}()
	return nil
}

// Stop is the first phase of shutdown (SIGINT): pull nothing more and wait
// for running handlers, those of tasks just claimed included, to finish.
// After DrainTimeout (when set) it continues as Abort. It returns when every
// task has its outcome written.
func (d *Daemon) Stop() {
	if !d.beginStop("stop: draining running tasks") {
		return
	}
	if d.cfg.DrainTimeout <= 0 {
		<-d.done
		return
	}
	t := time.NewTimer(d.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-d.done:
	case <-t.C:
		d.log.Warn("ATPD: drain timeout reached, aborting running tasks", "drain_timeout", d.cfg.DrainTimeout)
		d.Abort()
	}
}

// Abort is the second phase of shutdown (SIGTERM, or a second signal): pull
// nothing more, cancel running handlers and re-enqueue their tasks with
// djangodb.MsgShutdownReenqueue. A shutdown is not the task's fault, so a
// task is re-enqueued even when its starts are used up; maxstart is enforced
// at timeouts only. Abort returns when every task has its outcome written or
// AbortTimeout has passed with the database not answering.
func (d *Daemon) Abort() {
	running := d.beginStop("abort: cancelling running tasks")
	d.abortOnce.Do(func() {
		close(d.aborting)
		d.cancelHandler(errShutdown)
		go func() {
			t := time.NewTimer(d.cfg.AbortTimeout)
			defer t.Stop()
			select {
			case <-d.done:
			case <-t.C:
				d.log.Error("ATPD: abort timeout reached, giving up on unwritten task outcomes",
					"abort_timeout", d.cfg.AbortTimeout)
				d.hardOnce.Do(func() { close(d.hardStop) })
			}
		}()
	})
	if running {
		<-d.done
	}
}

// beginStop closes stopping and reports whether the loop was started (if
// not, it marks the daemon done).
func (d *Daemon) beginStop(msg string) bool {
	d.mu.Lock()
	started := d.started
	d.stopOnce.Do(func() {
		close(d.stopping)
		if started {
			d.log.Info("ATPD: "+msg, "server_id", FormatServerID(d.cfg.ServerID))
		}
	})
	d.mu.Unlock()
	if !started {
		d.closeDone()
	}
	return started
}

func (d *Daemon) closeDone() { d.doneOnce.Do(func() { close(d.done) }) }

// Done is closed when the daemon has stopped and every task it took has its
// outcome written.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Wake cuts short the sleep after an empty poll, for example on a
// PostgreSQL NOTIFY. It never blocks.
func (d *Daemon) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the counters.
func (d *Daemon) Stats() Stats {
	return Stats{
		Workers:           d.cfg.Workers,
		Busy:              int(d.n.busy.Load()),
		Polls:             d.n.polls.Load(),
		Pulls:             d.n.pulls.Load(),
		Claimed:           d.n.claimed.Load(),
		Started:           d.n.started.Load(),
		Finished:          d.n.finished.Load(),
		Failed:            d.n.failed.Load(),
		Reenqueued:        d.n.reenqueued.Load(),
		TimedOut:          d.n.timedOut.Load(),
		Sweeps:            d.n.sweeps.Load(),
		ZombiesReenqueued: d.n.zombiesReenqueued.Load(),
		ZombiesFailed:     d.n.zombiesFailed.Load(),
		Unstuck:           d.n.unstuck.Load(),
		Retired:           d.n.retired.Load(),
	}
}

// noteWrite records the result of a store write for WriteHealth; an
// empty queue is a successful claim.
func (d *Daemon) noteWrite(err error) {
	if err == nil || errors.Is(err, djangodb.ErrQueueEmpty) {
		d.writeErr.Store(nil)
		return
	}
	d.writeErr.Store(&err)
}

// WriteHealth reports why the daemon's last write to the database (a
// claim, an outcome, a release) failed, or nil when it went through: a
// database that answers pings but refuses writes (read-only, a role that
// lost its rights, a demoted primary) makes the daemon unhealthy.
func (d *Daemon) WriteHealth() error {
	if p := d.writeErr.Load(); p != nil {
		return fmt.Errorf("daemon: writes to the database fail: %w", *p)
	}
	return nil
}

// loop claims tasks for free workers and hands each to a goroutine.
func (d *Daemon) loop() {
	defer close(d.loopDone)
	pulls := 0
	backoff := retryBackoffMin
	// lost counts the claims in a row that lost their connection.
	lost := 0
	for {
		var slots []int
		select {
		case s := <-d.free:
			slots = append(slots, s)
		case <-d.stopping:
			return
		}
		slots = d.moreSlots(slots)
		// A select with a free worker and stopping both ready picks either:
		// without this check the loop could claim, after Abort, the very
		// task a cancelled handler has just re-enqueued.
		select {
		case <-d.stopping:
			d.freeSlots(slots)
			return
		default:
		}
		if pulls >= d.cfg.SweepEvery || time.Since(d.lastSweepTime()) >= d.cfg.SweepInterval {
			d.triggerSweep()
			pulls = 0
		}

		d.n.polls.Add(1)
		sts, err := d.claim(len(slots))
		d.noteWrite(err)
		switch {
		case errors.Is(err, djangodb.ErrQueueEmpty):
			d.freeSlots(slots)
			backoff, lost = retryBackoffMin, 0
			if time.Since(d.lastSweepTime()) >= d.cfg.SweepIdleMin {
				d.triggerSweep()
				pulls = 0
			}
			d.sleep(d.cfg.PollInterval, true)
			continue
		case djangodb.ConnectionLost(err):
			// The store has replaced its dead connections: the first retry
			// goes at once, later ones after a short backoff. A database
			// that is down refuses new connections instead, which is the
			// case below.
			d.freeSlots(slots)
			wait := lostBackoff(lost)
			lost++
			d.log.Warn("ATPD: lost the database connection while pulling tasks; retrying on a new one",
				"error", err, "attempt", lost, "retry_in", wait)
			if wait > 0 {
				d.sleep(wait, false)
			}
			continue
		case err != nil:
			d.freeSlots(slots)
			lost = 0
			d.log.Warn("ATPD: cannot pull tasks from the queue; retrying",
				"error", err, "retry_in", backoff)
			d.sleep(backoff, false)
			backoff = min(2*backoff, retryBackoffMax)
			continue
		}
		backoff, lost = retryBackoffMin, 0
		pulls++
		d.n.pulls.Add(1)
		d.n.claimed.Add(int64(len(sts)))
		d.dispatch(sts, slots)
	}
}

// lostBackoff is the wait before the next claim after lost claims in a
// row lost their connection: none after the first, then retryBackoffMin
// doubling up to retryLostMax.
func lostBackoff(lost int) time.Duration {
	if lost == 0 {
		return 0
	}
	wait := retryBackoffMin
	for i := 1; i < lost && wait < retryLostMax; i++ {
		wait *= 2
	}
	return min(wait, retryLostMax)
}

// moreSlots adds the workers that are free too, so that one claim serves
// them all. While handlers run, workers come free one after another as
// their tasks end; waiting ClaimWindow for them turns many small claims
// into one.
func (d *Daemon) moreSlots(slots []int) []int {
	return gatherMore(slots, d.free, d.cfg.Workers, d.cfg.ClaimWindow, &d.n.holding, d.stopping)
}

// gatherMore appends to got what ch has ready, up to limit values, then
// waits up to window for more while any task holds a worker (only a
// running task can free a worker or end with a completion). It returns
// early when ch is closed or stop (nil: never) is.
func gatherMore[T any](got []T, ch <-chan T, limit int, window time.Duration, holding *atomic.Int64, stop <-chan struct{}) []T {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(got) < limit {
		select {
		case v, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, v)
			continue
		default:
		}
		if window <= 0 || holding.Load() == 0 {
			return got
		}
		if timer == nil {
			timer = time.NewTimer(window)
		}
		select {
		case v, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, v)
		case <-timer.C:
			return got
		case <-stop:
			return got
		}
	}
	return got
}

// claim claims and starts up to n tasks. Its context is not tied to
// shutdown: if a claim committed, its tasks must reach dispatch, which runs
// them or re-enqueues them, rather than stay RUNNING until the zombie
// timeout.
func (d *Daemon) claim(n int) ([]djangodb.StartedTask, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
	defer cancel()
	return d.store.Claim(ctx, d.cfg.ServerID, n, "")
}

// dispatch gives each claimed task a worker; the store returns at most
// len(slots) tasks.
func (d *Daemon) dispatch(sts []djangodb.StartedTask, slots []int) {
	used := 0
	for _, st := range sts {
		if st.Undecodable != nil {
			d.undecodable(st)
			continue
		}
		d.n.started.Add(1)
		d.obs.TaskStarted(st.Type)
		d.tasks.Add(1)
		d.n.holding.Add(1)
		go d.runTask(slots[used], st)
		used++
	}
	d.freeSlots(slots[used:])
}

func (d *Daemon) freeSlots(slots []int) {
	for _, s := range slots {
		d.free <- s
	}
}

// retryWait waits backoff before a write is retried; false when Abort
// gives up on retrying (hardStop) first.
func (d *Daemon) retryWait(backoff time.Duration) bool {
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.hardStop:
		return false
	}
}

// sleep waits for dur, for Stop or Abort, or (when wakeable) for Wake.
func (d *Daemon) sleep(dur time.Duration, wakeable bool) {
	t := time.NewTimer(dur)
	defer t.Stop()
	var wake chan struct{}
	if wakeable {
		wake = d.wake
	}
	select {
	case <-t.C:
	case <-wake:
	case <-d.stopping:
	}
}

// listen wakes the loop when the store announces new tasks (PostgreSQL
// LISTEN/NOTIFY), so that an idle daemon picks a task up at once instead of
// at its next poll. Polling goes on: announcements can be lost.
func (d *Daemon) listen() {
	ctx, cancel := context.WithCancel(context.Background())
	d.stopListen = cancel
	l, ok := d.store.(djangodb.Listener)
	if !ok || d.cfg.NoListen {
		close(d.listenDone)
		return
	}
	d.log.Info("ATPD: listening for new tasks, polling as the fallback", "channel", djangodb.NotifyChannel,
		"poll_interval", d.cfg.PollInterval)
	go func() {
		defer close(d.listenDone)
		if err := l.Listen(ctx, d.Wake, d.log); err != nil {
			d.log.Warn("ATPD: cannot listen for new tasks; finding them by polling only",
				"channel", djangodb.NotifyChannel, "poll_interval", d.cfg.PollInterval, "error", err)
		}
	}()
}

// persist runs a store write until it commits, the instance is gone
// (ErrNotFound, returned as is), the database refuses it for good (an
// error that is not djangodb.Transient: the same call would fail the same
// way forever), or Abort gives up on the database. Each attempt has its
// own timeout and none is tied to shutdown, because this is how a task's
// outcome reaches the database. A write refused for good leaves the task
// as it is, for the zombie sweep to take after its timeout.
func (d *Daemon) persist(what string, ref djangodb.InstanceRef, write func(ctx context.Context) error) error {
	err := d.retrying(what, ref, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
		defer cancel()
		return write(ctx)
	})
	if err != nil && !errors.Is(err, djangodb.ErrNotFound) && !errors.Is(err, errGaveUp) {
		d.log.Error("ATPD: store write refused; not retrying, the zombie sweep will take the task after its timeout",
			append(opAttrs(what, ref), "error", err)...)
		return fmt.Errorf("daemon: %s of instance %d: refused: %w", what, ref.ID, err)
	}
	return err
}

// retrying runs attempt until it succeeds or fails in a way a retry cannot
// mend (ErrNotFound, a panic in the store, an error that is not
// djangodb.Transient), retrying with capped exponential backoff; it gives
// up, with errGaveUp, when Abort stops waiting for the database.
func (d *Daemon) retrying(what string, ref djangodb.InstanceRef, attempt func() error) error {
	backoff := retryBackoffMin
	for n := 1; ; n++ {
		err := attempt()
		if !errors.Is(err, djangodb.ErrNotFound) {
			d.noteWrite(err)
		}
		var sp *storePanic
		if err == nil || errors.Is(err, djangodb.ErrNotFound) || errors.As(err, &sp) || !djangodb.Transient(err) {
			return err
		}
		d.log.Warn("ATPD: store write failed; retrying", append(opAttrs(what, ref), "attempt", n, "retry_in", backoff, "error", err)...)
		if !d.retryWait(backoff) {
			return fmt.Errorf("daemon: %s: %w after %d attempts: %w", what, errGaveUp, n, err)
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// opAttrs names an operation and, as far as known, its task for logs.
func opAttrs(what string, ref djangodb.InstanceRef) []any {
	attrs := []any{"operation", what}
	if ref.Type != "" { // unknown before the task's row was read
		attrs = append(attrs, "type", ref.Type, "identifier", ref.Identifier)
	}
	if ref.ID != 0 {
		attrs = append(attrs, "instance_id", ref.ID)
	}
	return attrs
}
