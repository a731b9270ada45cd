package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// runTask takes one claimed task (RUNNING since the claim) to its outcome
// on worker slot. The slot is given back as soon as the outcome is handed
// to the completer, so that the loop can claim the next task while the
// outcome is written; the goroutine itself ends only once the outcome is
// written, unless Abort gave up on the database.
func (d *Daemon) runTask(slot int, st djangodb.StartedTask) {
	ref := st.Ref()
	log := d.log.With("worker", slot, "type", st.Type, "identifier", st.Identifier, "instance_id", st.InstanceID)
	written := false // whether the task's outcome is in the database
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
	ts := &taskStatus{d: d, st: st, tctx: tctx, extendBy: run, margin: margin,
		sync: d.cfg.SyncTaskWrites || executor.WantsSyncWrites(d.exec, st.Handler)}
	tctx.beforeExpire = ts.flushBeforeDeadline
	// Released on every way out, a panic included, so that no flush
	// timer outlives the task and writes after the completer is gone.
	defer ts.release()

	if st.HasInput {
		if err := checkInputSize(st.Input, d.cfg.MaxInputSize); err != nil {
			d.fail(st, nil, err, log, free)
			*written = true
			return
		}
	}
	log.Info("PROCESS: "+st.Type+" "+st.Identifier+" is running ...",
		"handler", st.Handler, "start", st.Starts, "maxstart", st.MaxStart, "deadline", deadline)
	d.addBusy(1)
	err := d.call(tctx, task, ts, log, margin)
	d.addBusy(-1)
	left := ts.release()
	cause := tctx.cause()

	switch {
	case err == nil && left.refused != nil && !errors.Is(left.refused, djangodb.ErrNotFound):
		// The handler returned as if all went well, but some of its writes
		// are not in the database: its result is not what it meant.
		d.fail(st, left.pending, fmt.Errorf("atpd: the handler's writes could not be stored: %w", left.refused), log, free)
	case err == nil:
		d.finish(st, left, log, free)
	case errors.Is(cause, errDeadline):
		d.n.timedOut.Add(1)
		if d.flushHeld(st, left.pending, left.inflight, log) {
			d.timedOut(st, log)
		}
	case errors.Is(cause, errShutdown):
		if d.flushHeld(st, left.pending, left.inflight, log) {
			d.requeueRunning(st, djangodb.MsgShutdownReenqueue, "re-enqueued at shutdown", log)
		}
	default:
		d.fail(st, left.pending, err, log, free)
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

// submit hands a completion to the completer; its result comes on the
// returned channel.
func (d *Daemon) submit(c djangodb.Completion, ref djangodb.InstanceRef) *completion {
	req := &completion{c: c, ref: ref, done: make(chan completionResult, 1)}
	d.completions <- req
	return req
}

// writeOutcome writes a task's held-back writes and outcome through the
// completer, after any flush the handler abandoned (which is ahead of it in
// the completer's queue). The worker is freed once the outcome is handed
// over. When the database refuses the writes for good, the task is failed
// without them, with a message that says so.
func (d *Daemon) writeOutcome(st djangodb.StartedTask, c djangodb.Completion, inflight *completion, log *slog.Logger, free func()) (completionResult, bool) {
	req := d.submit(c, st.Ref())
	free()
	if inflight != nil {
		<-inflight.done
	}
	r := <-req.done
	var sp *storePanic
	switch {
	case r.err == nil:
		return r, true
	case errors.As(r.err, &sp):
		d.failAfterPanic(st.Ref(), st.Starts, sp.value)
		return r, false
	case errors.Is(r.err, djangodb.ErrNotFound), errors.Is(r.err, errGaveUp):
		d.outcomeLost(st, r.err, log)
		return r, false
	case len(c.Writes) > 0:
		msg := cleanText("atpd: the handler's writes could not be stored: " + r.err.Error())
		log.Error("PROCESS: "+st.Type+" "+st.Identifier+" failed: the database refused the handler's writes", "error", r.err)
		retry := d.submit(djangodb.Completion{InstanceID: st.InstanceID, Outcome: djangodb.OutcomeFail, Message: msg}, st.Ref())
		if r2 := <-retry.done; r2.err != nil {
			d.outcomeLost(st, r2.err, log)
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

func (d *Daemon) finish(st djangodb.StartedTask, left released, log *slog.Logger, free func()) {
	c := djangodb.Completion{InstanceID: st.InstanceID, Writes: left.pending, Outcome: djangodb.OutcomeFinish}
	r, ok := d.writeOutcome(st, c, left.inflight, log, free)
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

func (d *Daemon) fail(st djangodb.StartedTask, pending []djangodb.Write, cause error, log *slog.Logger, free func()) {
	msg := cleanText(cause.Error())
	c := djangodb.Completion{InstanceID: st.InstanceID, Writes: pending, Outcome: djangodb.OutcomeFail, Message: msg}
	if _, ok := d.writeOutcome(st, c, nil, log, free); !ok {
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

// flushHeld commits a cancelled handler's held-back writes before the
// daemon decides the task's fate from its status, so that they land in
// the order the handler made them and before the daemon's own write. It
// reports whether the daemon should go on (false: nothing more can be
// written for the task, and why is logged).
func (d *Daemon) flushHeld(st djangodb.StartedTask, pending []djangodb.Write, inflight *completion, log *slog.Logger) bool {
	if inflight != nil {
		<-inflight.done
	}
	if len(pending) == 0 {
		return true
	}
	r := <-d.submit(djangodb.Completion{InstanceID: st.InstanceID, Writes: pending}, st.Ref()).done
	switch {
	case r.err == nil:
		return true
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
// writes only while the run is still ours: RUNNING or PAUSED, not started
// again since (by a sweep's re-enqueue and another daemon's claim) and
// not already queued. Checking first and writing after, as two calls,
// could re-enqueue a task another daemon had meanwhile started. It
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
	}
	return wrote
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
	msg := cleanText(fmt.Sprintf("atpd: internal error while running the task: %v", r))
	var wrote bool
	err := d.persist("set FAILED after panic", ref, func(ctx context.Context) error {
		var err error
		wrote, err = d.store.Release(ctx, ref.ID, starts, djangodb.Failed, msg)
		return err
	})
	if err != nil {
		d.log.Error("ATPD: could not fail the task after a panic", "instance_id", ref.ID, "error", err)
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
	// beforeExpire runs when the deadline is reached, before the deadline
	// is checked again: it commits held-back status writes, which move
	// the deadline.
	beforeExpire func()

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
	if c.beforeExpire != nil {
		c.beforeExpire()
	}
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

// taskStatus is the handler's executor.TaskStatus. Its writes are held
// back (write-behind) and committed through the completer: with the
// task's outcome when the handler returns, within FlushDelay while it runs
// on, before it reads its status, and before its deadline is enforced, in
// the order it made them. With Config.SyncTaskWrites, or for an executor
// that asks for it (executor.SyncWriter: Python handlers), each write is
// committed before the setter returns. After release, setters fail with
// ErrTaskReleased so that nothing the handler does lands after the
// daemon's outcome.
type taskStatus struct {
	d        *Daemon
	st       djangodb.StartedTask
	tctx     *taskContext
	extendBy time.Duration
	margin   time.Duration
	// sync commits each write before the setter returns: SyncTaskWrites,
	// or an executor that wants it for this path (Python handlers).
	sync bool

	mu       sync.Mutex
	released bool
	terminal djangodb.Status // last FINISHED/FAILED the handler set
	pending  []djangodb.Write
	timer    *time.Timer // flushes pending after FlushDelay
	// inflight is a flush the handler stopped waiting for (its deadline
	// came); the daemon waits for it before writing the outcome.
	inflight *completion
	// refused is why the database refused a flush for good; the writes
	// after it fail with it, as they would have on their own.
	refused error
	left    released // what release returned
}

var _ executor.TaskStatus = (*taskStatus)(nil)

// released is what the handler left when the daemon took the task back.
type released struct {
	terminal djangodb.Status  // last FINISHED/FAILED the handler set
	pending  []djangodb.Write // held back, to go with the outcome
	inflight *completion      // a flush still in the completer
	refused  error            // why a flush was refused for good
}

// release fences the handler's writes, waiting for a flush in progress;
// called again, it returns what the first call did.
func (s *taskStatus) release() released {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.released {
		s.released = true
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		s.left = released{terminal: s.terminal, pending: s.pending, inflight: s.inflight, refused: s.refused}
		s.pending, s.inflight = nil, nil
	}
	return s.left
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

// instance reads the task's row after committing what the handler wrote,
// so that the handler reads its own writes.
func (s *taskStatus) instance(ctx context.Context) (djangodb.Instance, error) {
	s.mu.Lock()
	if len(s.pending) > 0 && !s.released {
		if err := s.flushLocked(ctx, "read status"); err != nil {
			s.mu.Unlock()
			return djangodb.Instance{}, err
		}
	}
	s.mu.Unlock()
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
	return s.add(ctx, "set "+status.String(), djangodb.StatusWrite(status, cleanText(message)))
}

// StoreResponse does not move the deadline: setTaskResponse does not save
// the instance, so timeUpdate stays as it was.
func (s *taskStatus) StoreResponse(ctx context.Context, data []byte, mimeType string) error {
	return s.add(ctx, "store response", djangodb.ResponseWrite(data, cleanText(mimeType)))
}

// add holds back one write, or commits it at once when s.sync.
func (s *taskStatus) add(ctx context.Context, what string, w djangodb.Write) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.released:
		return s.wrap(what, ErrTaskReleased)
	case s.refused != nil:
		return s.wrap(what, s.refused)
	}
	s.pending = append(s.pending, w)
	if s.sync {
		if err := s.flushLocked(ctx, what); err != nil {
			return err
		}
	} else if s.timer == nil {
		s.timer = time.AfterFunc(s.d.cfg.FlushDelay, s.flushLater)
	}
	if !w.IsResponse && w.Status.Terminal() {
		s.terminal = w.Status
	}
	return nil
}

func (s *taskStatus) wrap(what string, err error) error {
	return fmt.Errorf("daemon: %s of %s (instance %d): %w", what, s.st.Ref(), s.st.InstanceID, err)
}

// flushLater commits held-back writes once FlushDelay has passed.
func (s *taskStatus) flushLater() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if s.released || len(s.pending) == 0 {
		return
	}
	// An error is kept in refused or reported at the next write.
	_ = s.flushLocked(context.Background(), "flush held-back writes")
}

// flushBeforeDeadline commits held-back status writes when the deadline
// comes: a status write moves timeUpdate, and with it the deadline, and
// the handler made it in time. It waits at most half the margin, the rest
// being the daemon's to write the outcome.
func (s *taskStatus) flushBeforeDeadline() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released || !slices.ContainsFunc(s.pending, func(w djangodb.Write) bool { return !w.IsResponse }) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.margin/2)
	defer cancel()
	_ = s.flushLocked(ctx, "flush held-back writes at the deadline")
}

// flushLocked commits the held-back writes through the completer and
// waits, with s.mu held, so that writes stay in order. It stops waiting
// when the handler's context or the task's ends; the flush then stays in
// the completer's queue, ahead of the outcome, which waits for it. A
// committed status write moves the deadline as it moved timeUpdate.
func (s *taskStatus) flushLocked(ctx context.Context, what string) error {
	if len(s.pending) == 0 {
		return nil
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	writes := s.pending
	s.pending = nil
	req := s.d.submit(djangodb.Completion{InstanceID: s.st.InstanceID, Writes: writes}, s.st.Ref())
	var r completionResult
	select {
	case r = <-req.done:
	case <-ctx.Done():
		s.inflight = req
		return s.wrap(what, context.Cause(ctx))
	case <-s.tctx.Done():
		s.inflight = req
		return s.wrap(what, context.Cause(s.tctx))
	}
	if r.err != nil {
		s.refused = r.err
		return s.wrap(what, r.err)
	}
	if !r.TimeUpdate.IsZero() {
		s.tctx.extend(r.TimeUpdate.Add(s.extendBy))
	}
	return nil
}
