package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// The run path: a claimed task on a worker slot, its handler under a
// deadline, and the hand-over of its outcome (outcome.go). The slot is
// given back as soon as the handler has returned (or was abandoned):
// writing the outcome never holds a worker, so a slow database cannot
// keep the daemon from running what it already claimed.

// runTask takes one claimed task (RUNNING since the claim) to its outcome
// on worker slot. The goroutine ends once the outcome is written, unless
// Abort gave up on the database.
func (d *Daemon) runTask(slot int, st djangodb.StartedTask) {
	ref := st.Ref()
	log := d.log.With("worker", slot, "type", st.Type, "identifier", st.Identifier, "instance_id", st.InstanceID)
	written := false // whether the task's outcome is decided
	freed := false
	free := func() {
		if !freed {
			freed = true
			d.n.holding.Add(-1)
			d.free <- slot
		}
	}
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("ATPD: panic while running a task", "worker", slot, "type", ref.Type,
				"identifier", ref.Identifier, "instance_id", ref.ID, "panic", r, "stack", string(debug.Stack()))
			if !written {
				d.failAfterPanic(ref, st.Starts, r)
			}
		}
		free()
		d.tasks.Done()
	}()
	if d.isAborting() {
		// Claimed in the moment Abort came: give it back untouched.
		free()
		d.requeueRunning(st, djangodb.MsgShutdownReenqueue, "re-enqueued at shutdown", log)
		written = true
		return
	}
	d.execute(st, log, &written, free)
}

func (d *Daemon) isAborting() bool {
	select {
	case <-d.aborting:
		return true
	default:
		return false
	}
}

// execute runs the handler of a started task and writes the outcome.
func (d *Daemon) execute(st djangodb.StartedTask, log *slog.Logger, written *bool, free func()) {
	margin, run := d.cfg.margin(st.Timeout), d.cfg.runWindow(st.Timeout)
	deadline := st.StartedAt.Add(run)
	if floor := time.Now().Add(minRunWindow); st.Timeout < 2*minRunWindow && deadline.Before(floor) {
		// A near-zero timeout measured from the claim's commit could have
		// passed before the handler starts; it gets its least window
		// from now instead.
		deadline = floor
	}
	tctx := newTaskContext(d.handlerCtx, deadline)
	defer tctx.stop()

	task := &executor.Task{
		InstanceID: st.InstanceID,
		Type:       st.Type,
		Identifier: st.Identifier,
		Handler:    st.Handler,
		Input:      st.Input,
		HasInput:   st.HasInput,
		Deadline:   deadline,
	}
	ts := &taskStatus{d: d, st: st, tctx: tctx, extendBy: run,
		sync: d.cfg.SyncTaskWrites || executor.WantsSyncWrites(d.exec, st.Handler)}
	// Fenced on every way out, a panic included, so that no flush timer
	// outlives the task and writes after the completer is gone.
	defer ts.fence()

	if st.HasInput {
		if err := checkInputSize(st.Input, d.cfg.MaxInputSize); err != nil {
			free()
			d.fail(st, ts.fence(), err, log)
			*written = true
			return
		}
	}
	log.Info("PROCESS: "+st.Type+" "+st.Identifier+" is running ...",
		"handler", st.Handler, "start", st.Starts, "maxstart", st.MaxStart, "deadline", deadline)
	d.addBusy(1)
	err := d.call(tctx, task, ts, log, margin)
	d.addBusy(-1)
	left := ts.fence()
	free()
	cause := tctx.cause()
	// The run's last flush decides whether its writes landed; the
	// outcome is written after it, in the completer's order.
	refused := left.settled()

	switch {
	case errors.Is(refused, djangodb.ErrNotOwned):
		d.discarded(st, refused, log)
	case errors.Is(cause, errDeadline):
		d.n.timedOut.Add(1)
		if d.flushHeld(st, left, log) {
			d.timedOut(st, log)
		}
	case errors.Is(cause, errShutdown):
		if d.flushHeld(st, left, log) {
			d.requeueRunning(st, djangodb.MsgShutdownReenqueue, "re-enqueued at shutdown", log)
		}
	case err == nil && refused != nil && !errors.Is(refused, djangodb.ErrNotFound):
		// The handler returned as if all went well, but some of its writes
		// are not in the database: its result is not what it meant.
		d.fail(st, left, fmt.Errorf("atpd: the handler's writes could not be stored: %w", refused), log)
	case err == nil:
		d.finish(st, left, log)
	default:
		d.fail(st, left, err, log)
	}
	*written = true
}

// call runs the executor in its own goroutine so that a handler that ignores
// cancellation cannot hold the task past the point where another daemon's
// sweep would take it: after half the margin it is abandoned (its TaskStatus
// is fenced first) and the daemon writes the outcome. An abandoned handler
// is counted (Observer.SetAbandoned) until it returns, and a new run of the
// same task on this daemon waits for it, so that this daemon never runs a
// task twice at once.
func (d *Daemon) call(tctx *taskContext, task *executor.Task, ts *taskStatus, log *slog.Logger, margin time.Duration) error {
	if prev := d.abandonedRun(task.InstanceID); prev != nil {
		log.Warn("PROCESS: an abandoned run of this task still runs; waiting for it to return", "handler", task.Handler)
		select {
		case <-prev:
		case <-tctx.Done():
			return fmt.Errorf("daemon: handler %s: an abandoned run of the same task did not return: %w", task.Handler, context.Cause(tctx))
		}
	}
	res := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		defer func() {
			if r := recover(); r != nil {
				log.Error("PROCESS: handler panicked", "handler", task.Handler, "panic", r, "stack", string(debug.Stack()))
				res <- fmt.Errorf("handler %s panicked: %v", task.Handler, r)
			}
		}()
		res <- d.exec.Execute(tctx, task, ts)
	}()
	select {
	case err := <-res:
		return err
	case <-tctx.Done():
	}
	grace := margin / 2
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		ts.fence() // before logging, so no late write slips in
		d.abandon(task.InstanceID, returned)
		log.Error("PROCESS: handler did not return after cancellation; abandoning it",
			"handler", task.Handler, "grace", grace, "cause", context.Cause(tctx))
		return fmt.Errorf("daemon: handler %s did not return within %v of cancellation: %w", task.Handler, grace, context.Cause(tctx))
	}
}

// abandon records a handler goroutine that ignored cancellation, until
// returned is closed.
func (d *Daemon) abandon(id int64, returned chan struct{}) {
	d.abandonedMu.Lock()
	if d.abandoned == nil {
		d.abandoned = make(map[int64]chan struct{})
	}
	d.abandoned[id] = returned
	n := len(d.abandoned)
	d.abandonedMu.Unlock()
	d.obs.SetAbandoned(n)
	go func() {
		<-returned
		d.abandonedMu.Lock()
		if d.abandoned[id] == returned {
			delete(d.abandoned, id)
		}
		n := len(d.abandoned)
		d.abandonedMu.Unlock()
		d.obs.SetAbandoned(n)
		d.log.Info("PROCESS: an abandoned handler returned", "instance_id", id)
	}()
}

// abandonedRun returns the channel closed when the abandoned handler of
// instance id returns, or nil when there is none.
func (d *Daemon) abandonedRun(id int64) <-chan struct{} {
	d.abandonedMu.Lock()
	defer d.abandonedMu.Unlock()
	if ch, ok := d.abandoned[id]; ok {
		return ch
	}
	return nil
}

// Abandoned returns how many handlers ignored cancellation and still run.
func (d *Daemon) Abandoned() int {
	d.abandonedMu.Lock()
	defer d.abandonedMu.Unlock()
	return len(d.abandoned)
}
