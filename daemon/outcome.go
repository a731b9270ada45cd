package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// A run's outcome: what the daemon writes once the handler has returned,
// through the completer (finish, fail) or Store.Release (deadline,
// shutdown). Every one of these writes is fenced on the run (see
// djangodb.Completion.Fence): a run that lost its task writes nothing.

// submit hands a completion to the completer; wait on the result with
// completion.wait.
func (d *Daemon) submit(c djangodb.Completion, ref djangodb.InstanceRef, onDone func(completionResult)) *completion {
	req := &completion{c: c, ref: ref, onDone: onDone, done: make(chan struct{})}
	d.completions <- req
	return req
}

// writeOutcome writes a task's held-back writes and outcome through the
// completer, after any flush of the run (the completer keeps one
// instance's completions in order). When the database refuses the writes
// for good, the task is failed without them, with a message that says so.
func (d *Daemon) writeOutcome(st djangodb.StartedTask, c djangodb.Completion, log *slog.Logger) (completionResult, bool) {
	r := d.submit(c, st.Ref(), nil).wait()
	var sp *storePanic
	switch {
	case r.err == nil:
		return r, true
	case errors.As(r.err, &sp):
		d.failAfterPanic(st.Ref(), st.Starts, sp.value)
		return r, false
	case errors.Is(r.err, djangodb.ErrNotOwned):
		d.discarded(st, r.err, log)
		return r, false
	case errors.Is(r.err, djangodb.ErrNotFound), errors.Is(r.err, errGaveUp):
		d.outcomeLost(st, r.err, log)
		return r, false
	case len(c.Writes) > 0:
		msg := djangodb.StorableText("atpd: the handler's writes could not be stored: " + r.err.Error())
		log.Error("PROCESS: "+st.Type+" "+st.Identifier+" failed: the database refused the handler's writes", "error", r.err)
		retry := djangodb.Completion{InstanceID: st.InstanceID, Starts: c.Starts, Ended: c.Ended, Outcome: djangodb.OutcomeFail, Message: msg}
		if r2 := d.submit(retry, st.Ref(), nil).wait(); r2.err != nil {
			if errors.Is(r2.err, djangodb.ErrNotOwned) {
				d.discarded(st, r2.err, log)
			} else {
				d.outcomeLost(st, r2.err, log)
			}
			return r2, false
		}
		d.n.failed.Add(1)
		d.obs.TaskFinished(st.Type, djangodb.Failed, time.Since(st.StartedAt))
		return r, false
	default:
		d.outcomeLost(st, r.err, log)
		return r, false
	}
}

// completionOf is the run's completion of its held-back writes and an
// outcome.
func completionOf(st djangodb.StartedTask, left leftover, o djangodb.Outcome, message string) djangodb.Completion {
	return djangodb.Completion{InstanceID: st.InstanceID, Starts: st.Starts, Ended: left.ended,
		Writes: left.pending, Outcome: o, Message: message}
}

func (d *Daemon) finish(st djangodb.StartedTask, left leftover, log *slog.Logger) {
	r, ok := d.writeOutcome(st, completionOf(st, left, djangodb.OutcomeFinish, ""), log)
	if !ok {
		return
	}
	switch handlerSet := left.terminal; {
	case r.Wrote || handlerSet == djangodb.Finished:
		d.n.finished.Add(1)
		d.obs.TaskFinished(st.Type, djangodb.Finished, time.Since(st.StartedAt))
		log.Info("PROCESS: " + st.Type + " " + st.Identifier + " is finished ...")
	case handlerSet == djangodb.Failed:
		d.n.failed.Add(1)
		d.obs.TaskFinished(st.Type, djangodb.Failed, time.Since(st.StartedAt))
		log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" is finished: the handler set FAILED", "status", handlerSet.String())
	default:
		log.Info("PROCESS: "+st.Type+" "+st.Identifier+" is finished: already terminal", "status", r.Status.String())
	}
}

func (d *Daemon) fail(st djangodb.StartedTask, left leftover, cause error, log *slog.Logger) {
	msg := djangodb.StorableText(cause.Error())
	if _, ok := d.writeOutcome(st, completionOf(st, left, djangodb.OutcomeFail, msg), log); !ok {
		return
	}
	d.n.failed.Add(1)
	d.obs.TaskFinished(st.Type, djangodb.Failed, time.Since(st.StartedAt))
	if errors.Is(cause, context.Canceled) {
		log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" failed: "+msg, "reason", cause)
		return
	}
	log.Error("PROCESS: "+st.Type+" "+st.Identifier+" failed: "+msg, "error", cause)
}

// undecodable reports a task the claim ended FAILED because its input
// does not decode: it was never started, as the reference daemon's
// startTask never saved RUNNING for it.
func (d *Daemon) undecodable(st djangodb.StartedTask) {
	d.n.failed.Add(1)
	d.obs.TaskFinished(st.Type, djangodb.Failed, 0)
	d.log.Error("PROCESS: "+st.Type+" "+st.Identifier+" failed: "+st.Undecodable.Error(),
		"type", st.Type, "identifier", st.Identifier, "instance_id", st.InstanceID, "error", st.Undecodable)
}

// flushHeld commits a cancelled handler's held-back writes before the
// daemon decides the task's fate from its status, so that they land in
// the order the handler made them and before the daemon's own write. It
// reports whether the daemon should go on (false: nothing more can be
// written for the task, and why is logged).
func (d *Daemon) flushHeld(st djangodb.StartedTask, left leftover, log *slog.Logger) bool {
	if len(left.pending) == 0 {
		return true
	}
	r := d.submit(completionOf(st, left, djangodb.OutcomeNone, ""), st.Ref(), nil).wait()
	switch {
	case r.err == nil:
		return true
	case errors.Is(r.err, djangodb.ErrNotOwned):
		d.discarded(st, r.err, log)
		return false
	case errors.Is(r.err, djangodb.ErrNotFound), errors.Is(r.err, errGaveUp):
		d.outcomeLost(st, r.err, log)
		return false
	default:
		// The held-back writes are lost; the task's fate does not depend
		// on them.
		log.Error("PROCESS: "+st.Type+" "+st.Identifier+" the handler's writes could not be stored", "error", r.err)
		return true
	}
}

// timedOut handles a handler cancelled at its deadline, the way the zombie
// sweep would have a little later: re-enqueue, or FAILED once the starts are
// used up.
func (d *Daemon) timedOut(st djangodb.StartedTask, log *slog.Logger) {
	if st.Starts < st.MaxStart {
		d.requeueRunning(st, djangodb.MsgZombieReenqueued, "timed out and was re-enqueued", log)
		return
	}
	msg := djangodb.MaxStartsMessage(st.Starts, st.MaxStart)
	if !d.releaseRun(st, djangodb.Failed, msg, log) {
		return
	}
	d.n.failed.Add(1)
	d.obs.TaskFinished(st.Type, djangodb.Failed, time.Since(st.StartedAt))
	log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" timed out and failed: "+msg,
		"timeout", st.Timeout, "start", st.Starts, "maxstart", st.MaxStart)
}

// requeueRunning puts a cancelled task back on the queue, unless the run is
// no longer this daemon's (see releaseRun).
func (d *Daemon) requeueRunning(st djangodb.StartedTask, message, what string, log *slog.Logger) {
	if !d.releaseRun(st, djangodb.Accepted, message, log) {
		return
	}
	d.n.reenqueued.Add(1)
	d.obs.TaskReenqueued(st.Type)
	log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" "+what,
		"timeout", st.Timeout, "start", st.Starts, "maxstart", st.MaxStart)
}

// releaseRun gives up this daemon's run of st with Store.Release, which
// writes only while the run is still ours (the fence of
// djangodb.Completion.Fence). Checking first and writing after, as two
// calls, could re-enqueue a task another daemon had meanwhile started. It
// reports whether it wrote.
func (d *Daemon) releaseRun(st djangodb.StartedTask, to djangodb.Status, message string, log *slog.Logger) bool {
	var wrote bool
	err := d.persist("release to "+to.String(), st.Ref(), func(ctx context.Context) error {
		var err error
		wrote, err = d.store.Release(ctx, st.InstanceID, st.Starts, to, message)
		return err
	})
	if d.outcomeLost(st, err, log) {
		return false
	}
	if !wrote {
		log.Info("PROCESS: "+st.Type+" "+st.Identifier+" was cancelled but is no longer ours (finished, re-enqueued or started again); left as is",
			"start", st.Starts, "to", to.String())
		d.obs.OutcomeDiscarded(st.Type, "released")
	}
	return wrote
}

// discarded logs and counts a run whose writes the fence dropped: the
// task was re-enqueued, started again or ended by someone else while the
// run's writes waited, so they belong to no run any more.
func (d *Daemon) discarded(st djangodb.StartedTask, err error, log *slog.Logger) {
	reason := "not owned"
	var r interface{ DiscardReason() string }
	if errors.As(err, &r) {
		reason = r.DiscardReason()
	}
	log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" outcome discarded: the run no longer owns the task ("+reason+")",
		"start", st.Starts, "reason", reason)
	d.obs.OutcomeDiscarded(st.Type, reason)
}

// outcomeLost logs why a task's outcome could not be written and reports
// whether there was such a reason.
func (d *Daemon) outcomeLost(st djangodb.StartedTask, err error, log *slog.Logger) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, djangodb.ErrNotFound):
		log.Warn("PROCESS: " + st.Type + " " + st.Identifier + " was deleted while it ran; nothing to write")
	default:
		log.Error("PROCESS: "+st.Type+" "+st.Identifier+" outcome not written; the zombie sweep will re-enqueue it after its timeout",
			"error", err)
	}
	return true
}

// failAfterPanic ends a task FAILED after a panic in the daemon. It writes
// through Release, so that a panic after the task's outcome was
// committed (in an observer or a log call) cannot turn FINISHED into FAILED.
func (d *Daemon) failAfterPanic(ref djangodb.InstanceRef, starts int, r any) {
	defer func() {
		if r2 := recover(); r2 != nil {
			d.log.Error("ATPD: panic while failing a task after a panic", "instance_id", ref.ID, "panic", r2)
		}
	}()
	msg := djangodb.StorableText(fmt.Sprintf("atpd: internal error while running the task: %v", r))
	var wrote bool
	err := d.persist("set FAILED after panic", ref, func(ctx context.Context) error {
		var err error
		wrote, err = d.store.Release(ctx, ref.ID, starts, djangodb.Failed, msg)
		return err
	})
	if err != nil {
		d.log.Error("ATPD: could not fail the task after a panic", "type", ref.Type, "identifier", ref.Identifier,
			"instance_id", ref.ID, "error", err)
		return
	}
	if !wrote {
		d.log.Warn("ATPD: task already ended or moved on before the panic; left as is", "type", ref.Type,
			"identifier", ref.Identifier, "instance_id", ref.ID)
		return
	}
	d.n.failed.Add(1)
	d.obs.TaskFinished(ref.Type, djangodb.Failed, 0)
}
