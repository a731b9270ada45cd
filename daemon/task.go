package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// runTask takes one claimed (SCHEDULED) task from RUNNING to its outcome on
// worker slot. It never returns before the outcome is written, unless Abort
// gave up on the database.
func (d *Daemon) runTask(slot int, id int64) {
	ref := djangodb.InstanceRef{ID: id}
	written := false // whether the task's outcome is in the database
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("ATPD: panic while running a task", "worker", slot, "type", ref.Type,
				"identifier", ref.Identifier, "instance_id", id, "panic", r, "stack", string(debug.Stack()))
			if !written {
				d.failAfterPanic(ref, r)
			}
		}
		d.free <- slot
		d.tasks.Done()
	}()

	if d.isStopping() {
		d.shutdownUnstarted(id)
		written = true
		return
	}
	var st djangodb.StartedTask
	before := time.Now()
	err := d.persist("start", ref, func(ctx context.Context) error {
		var err error
		before = time.Now()
		st, err = d.store.Start(ctx, id, "")
		return err
	})
	switch {
	case errors.Is(err, djangodb.ErrNotFound):
		d.log.Warn("ATPD: claimed task was deleted before it started", "worker", slot, "instance_id", id)
		written = true
		return
	case err != nil:
		d.log.Error("ATPD: claimed task left SCHEDULED; the zombie sweep will re-enqueue it after its timeout",
			"worker", slot, "instance_id", id, "error", err)
		written = true
		return
	}
	ref = st.Ref()
	d.n.started.Add(1)
	d.obs.TaskStarted(st.Type)
	d.addBusy(1)
	defer d.addBusy(-1)
	if st.StartedAt.IsZero() {
		st.StartedAt = before
	}
	d.execute(slot, st, &written)
}

// execute runs the handler of a started task and writes the outcome.
func (d *Daemon) execute(slot int, st djangodb.StartedTask, written *bool) {
	log := d.log.With("worker", slot, "type", st.Type, "identifier", st.Identifier, "instance_id", st.InstanceID)
	margin := d.cfg.margin(st.Timeout)
	deadline := st.StartedAt.Add(st.Timeout - margin)
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
	ts := &taskStatus{d: d, st: st, tctx: tctx, extendBy: st.Timeout - margin}

	if st.HasInput {
		if err := checkInputSize(st.Input, d.cfg.MaxInputSize); err != nil {
			d.fail(st, err, log)
			*written = true
			return
		}
	}
	log.Info("PROCESS: "+st.Type+" "+st.Identifier+" is running ...",
		"handler", st.Handler, "start", st.Starts, "maxstart", st.MaxStart, "deadline", deadline)
	err := d.call(tctx, task, ts, log, margin)
	handlerSet := ts.release()
	cause := tctx.cause()

	switch {
	case err == nil:
		d.finish(st, handlerSet, log)
	case errors.Is(cause, errDeadline):
		d.n.timedOut.Add(1)
		d.timedOut(st, log)
	case errors.Is(cause, errShutdown):
		d.requeueRunning(st, djangodb.MsgShutdownReenqueue, "re-enqueued at shutdown", log)
	default:
		d.fail(st, err, log)
	}
	*written = true
}

// call runs the executor in its own goroutine so that a handler that ignores
// cancellation cannot hold the task past the point where another daemon's
// sweep would take it: after half the margin it is abandoned (its TaskStatus
// is already fenced by then) and the daemon writes the outcome.
func (d *Daemon) call(tctx *taskContext, task *executor.Task, ts *taskStatus, log *slog.Logger, margin time.Duration) error {
	res := make(chan error, 1)
	go func() {
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
		ts.release() // fence before logging, so no late write slips in
		log.Error("PROCESS: handler did not return after cancellation; abandoning it",
			"handler", task.Handler, "grace", grace, "cause", context.Cause(tctx))
		return fmt.Errorf("daemon: handler %s did not return within %v of cancellation: %w", task.Handler, grace, context.Cause(tctx))
	}
}

func (d *Daemon) finish(st djangodb.StartedTask, handlerSet djangodb.Status, log *slog.Logger) {
	var wrote bool
	err := d.persist("finish", st.Ref(), func(ctx context.Context) error {
		var err error
		wrote, err = d.store.FinishIfNotFinished(ctx, st.InstanceID, "")
		return err
	})
	if d.outcomeLost(st, err, log) {
		return
	}
	switch {
	case wrote || handlerSet == djangodb.Finished:
		d.n.finished.Add(1)
		d.obs.TaskFinished(st.Type, djangodb.Finished, time.Since(st.StartedAt))
		log.Info("PROCESS: " + st.Type + " " + st.Identifier + " is finished ...")
	case handlerSet == djangodb.Failed:
		d.n.failed.Add(1)
		d.obs.TaskFinished(st.Type, djangodb.Failed, time.Since(st.StartedAt))
		log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" is finished: the handler set FAILED", "status", handlerSet.String())
	default:
		log.Info("PROCESS: " + st.Type + " " + st.Identifier + " is finished: already terminal")
	}
}

func (d *Daemon) fail(st djangodb.StartedTask, cause error, log *slog.Logger) {
	msg := cleanText(cause.Error())
	err := d.persist("set FAILED", st.Ref(), func(ctx context.Context) error {
		return d.store.SetStatus(ctx, st.InstanceID, djangodb.Failed, msg)
	})
	if d.outcomeLost(st, err, log) {
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

// timedOut handles a handler cancelled at its deadline, the way the zombie
// sweep would have a little later: re-enqueue, or FAILED once the starts are
// used up.
func (d *Daemon) timedOut(st djangodb.StartedTask, log *slog.Logger) {
	if st.Starts < st.MaxStart {
		d.requeueRunning(st, djangodb.MsgZombieReenqueued, "timed out and was re-enqueued", log)
		return
	}
	if !d.stillRunning(st, log) {
		return
	}
	msg := djangodb.MaxStartsMessage(st.Starts, st.MaxStart)
	err := d.persist("set FAILED after timeout", st.Ref(), func(ctx context.Context) error {
		return d.store.SetStatus(ctx, st.InstanceID, djangodb.Failed, msg)
	})
	if d.outcomeLost(st, err, log) {
		return
	}
	d.n.failed.Add(1)
	d.obs.TaskFinished(st.Type, djangodb.Failed, time.Since(st.StartedAt))
	log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" timed out and failed: "+msg,
		"timeout", st.Timeout, "start", st.Starts, "maxstart", st.MaxStart)
}

// requeueRunning puts a cancelled task back on the queue, unless the handler
// or a producer already moved it out of RUNNING/PAUSED.
func (d *Daemon) requeueRunning(st djangodb.StartedTask, message, what string, log *slog.Logger) {
	if !d.stillRunning(st, log) {
		return
	}
	err := d.persist("re-enqueue", st.Ref(), func(ctx context.Context) error {
		return d.store.Reenqueue(ctx, st.InstanceID, message)
	})
	if d.outcomeLost(st, err, log) {
		return
	}
	d.n.reenqueued.Add(1)
	d.obs.TaskReenqueued(st.Type)
	log.Warn("PROCESS: "+st.Type+" "+st.Identifier+" "+what,
		"timeout", st.Timeout, "start", st.Starts, "maxstart", st.MaxStart)
}

func (d *Daemon) stillRunning(st djangodb.StartedTask, log *slog.Logger) bool {
	var inst djangodb.Instance
	err := d.persist("read status", st.Ref(), func(ctx context.Context) error {
		var err error
		inst, err = d.store.Instance(ctx, st.InstanceID)
		return err
	})
	if d.outcomeLost(st, err, log) {
		return false
	}
	if inst.Status != djangodb.Running && inst.Status != djangodb.Paused {
		log.Info("PROCESS: "+st.Type+" "+st.Identifier+" was cancelled but is no longer running; left as is",
			"status", inst.Status.String())
		return false
	}
	return true
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

func (d *Daemon) failAfterPanic(ref djangodb.InstanceRef, r any) {
	defer func() {
		if r2 := recover(); r2 != nil {
			d.log.Error("ATPD: panic while failing a task after a panic", "instance_id", ref.ID, "panic", r2)
		}
	}()
	msg := cleanText(fmt.Sprintf("atpd: internal error while running the task: %v", r))
	err := d.persist("set FAILED after panic", ref, func(ctx context.Context) error {
		return d.store.SetStatus(ctx, ref.ID, djangodb.Failed, msg)
	})
	if err != nil {
		d.log.Error("ATPD: could not fail the task after a panic", "instance_id", ref.ID, "error", err)
		return
	}
	d.n.failed.Add(1)
	d.obs.TaskFinished(ref.Type, djangodb.Failed, 0)
}

// cleanText makes a handler's text storable: PostgreSQL text holds neither
// NUL nor invalid UTF-8, and a write that can never succeed would be retried
// forever.
func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// taskContext is a handler's context. Its deadline moves on with every
// status write the handler commits, because each such write moves the
// instance's timeUpdate, from which the zombie sweep measures the timeout.
type taskContext struct {
	context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	deadline time.Time
	timer    *time.Timer
}

func newTaskContext(parent context.Context, deadline time.Time) *taskContext {
	ctx, cancel := context.WithCancelCause(parent)
	c := &taskContext{Context: ctx, cancel: cancel, deadline: deadline}
	c.mu.Lock()
	c.timer = time.AfterFunc(time.Until(deadline), c.expire)
	c.mu.Unlock()
	return c
}

func (c *taskContext) expire() {
	c.mu.Lock()
	if left := time.Until(c.deadline); left > 0 {
		c.timer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.cancel(errDeadline)
}

// Deadline reports the current deadline, which may move later.
func (c *taskContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

// Err reports context.DeadlineExceeded after the deadline, as a context made
// by context.WithDeadline would.
func (c *taskContext) Err() error {
	err := c.Context.Err()
	if err != nil && errors.Is(context.Cause(c.Context), errDeadline) {
		return context.DeadlineExceeded
	}
	return err
}

func (c *taskContext) extend(to time.Time) {
	c.mu.Lock()
	if to.After(c.deadline) {
		c.deadline = to
	}
	c.mu.Unlock()
}

// cause returns why the context ended, or nil while it is live.
func (c *taskContext) cause() error {
	if c.Context.Err() == nil {
		return nil
	}
	return context.Cause(c.Context)
}

func (c *taskContext) stop() {
	c.mu.Lock()
	c.timer.Stop()
	c.mu.Unlock()
	c.cancel(context.Canceled)
}

// taskStatus is the handler's executor.TaskStatus. Each setter is one
// committed store call; after release, setters fail with ErrTaskReleased so
// that nothing the handler does lands after the daemon's outcome.
type taskStatus struct {
	d        *Daemon
	st       djangodb.StartedTask
	tctx     *taskContext
	extendBy time.Duration

	mu       sync.Mutex
	released bool
	terminal djangodb.Status // last FINISHED/FAILED the handler set
}

var _ executor.TaskStatus = (*taskStatus)(nil)

// release fences the handler's writes, waiting for one in flight, and
// returns the last terminal status the handler set.
func (s *taskStatus) release() djangodb.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	return s.terminal
}

func (s *taskStatus) Identifier() (typ, identifier string) { return s.st.Type, s.st.Identifier }

func (s *taskStatus) Info(ctx context.Context) (executor.Info, error) {
	inst, err := s.instance(ctx)
	if err != nil {
		return executor.Info{}, err
	}
	return executor.Info{Type: inst.Type, Identifier: inst.Identifier, Status: inst.Status}, nil
}

func (s *taskStatus) Status(ctx context.Context) (djangodb.Status, error) {
	inst, err := s.instance(ctx)
	if err != nil {
		return 0, err
	}
	return inst.Status, nil
}

func (s *taskStatus) instance(ctx context.Context) (djangodb.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.StoreTimeout)
	defer cancel()
	inst, err := s.d.store.Instance(ctx, s.st.InstanceID)
	if err != nil {
		return djangodb.Instance{}, fmt.Errorf("daemon: read status of %s (instance %d): %w", s.st.Ref(), s.st.InstanceID, err)
	}
	return inst, nil
}

func (s *taskStatus) SetSuccess(ctx context.Context, message string) error {
	return s.setStatus(ctx, djangodb.Finished, message)
}

func (s *taskStatus) SetFailure(ctx context.Context, message string) error {
	return s.setStatus(ctx, djangodb.Failed, message)
}

func (s *taskStatus) SetPaused(ctx context.Context, message string) error {
	return s.setStatus(ctx, djangodb.Paused, message)
}

func (s *taskStatus) SetRunning(ctx context.Context, message string) error {
	return s.setStatus(ctx, djangodb.Running, message)
}

func (s *taskStatus) setStatus(ctx context.Context, status djangodb.Status, message string) error {
	message = cleanText(message)
	return s.write(ctx, "set "+status.String(), func(ctx context.Context) error {
		began := time.Now()
		if err := s.d.store.SetStatus(ctx, s.st.InstanceID, status, message); err != nil {
			return err
		}
		s.tctx.extend(began.Add(s.extendBy))
		if status.Terminal() {
			s.terminal = status
		}
		return nil
	})
}

// StoreResponse does not move the deadline: setTaskResponse does not save
// the instance, so timeUpdate stays as it was.
func (s *taskStatus) StoreResponse(ctx context.Context, data []byte, mimeType string) error {
	mimeType = cleanText(mimeType)
	return s.write(ctx, "store response", func(ctx context.Context) error {
		return s.d.store.SetResponse(ctx, s.st.InstanceID, data, mimeType)
	})
}

// write commits one of the handler's writes. A write that failed for a
// reason that may pass (the database restarting, a dropped connection) is
// retried with backoff for as long as the task is the handler's, because
// failing it would make the handler fail a task that did nothing wrong.
// Each attempt has its own timeout and ends when the daemon takes the task
// back, so that release never waits longer than one statement.
func (s *taskStatus) write(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wrap := func(err error) error {
		return fmt.Errorf("daemon: %s of %s (instance %d): %w", what, s.st.Ref(), s.st.InstanceID, err)
	}
	backoff := retryBackoffMin
	for attempt := 1; ; attempt++ {
		if s.released {
			return wrap(ErrTaskReleased)
		}
		actx, cancel := context.WithTimeout(ctx, s.d.cfg.StoreTimeout)
		stop := context.AfterFunc(s.tctx, cancel)
		err := fn(actx)
		stop()
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || s.tctx.Err() != nil || !djangodb.Transient(err) {
			return wrap(err)
		}
		s.d.log.Warn("PROCESS: handler's store write failed; retrying", "operation", what,
			"type", s.st.Type, "identifier", s.st.Identifier, "instance_id", s.st.InstanceID,
			"attempt", attempt, "retry_in", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return wrap(err)
		case <-s.tctx.Done():
			t.Stop()
			return wrap(err)
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}
