package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// taskStatus is the handler's executor.TaskStatus. Its writes are held
// back (write-behind) and committed through the completer: with the
// task's outcome when the handler returns, within FlushDelay while it runs
// on, and before it reads its status, in the order it made them. With
// Config.SyncTaskWrites, or for an executor that asks for it
// (executor.SyncWriter: Python handlers), each write is committed before
// the setter returns. Every flush is a completion of the run, fenced like
// its outcome. Once fenced (the handler returned or was given up), setters
// fail with ErrTaskReleased so that nothing the handler does lands after
// the daemon's outcome.
//
// No lock is held while a write waits for the database: the mutex only
// orders submissions (the completer keeps one instance's completions in
// the order they were submitted), so the deadline and the fence never
// wait on a flush.
type taskStatus struct {
	d        *Daemon
	st       djangodb.StartedTask
	tctx     *taskContext
	extendBy time.Duration
	// sync commits each write before the setter returns: SyncTaskWrites,
	// or an executor that wants it for this path (Python handlers).
	sync bool

	mu       sync.Mutex
	fenced   bool
	terminal djangodb.Status // last FINISHED/FAILED the handler set
	ended    djangodb.Status // last FINISHED/FAILED among submitted writes
	pending  []djangodb.Write
	timer    *time.Timer // flushes pending after FlushDelay
	last     *completion // the run's latest flush
	left     leftover    // what fence returned

	// refusedMu guards refused apart from mu: the completer sets it and
	// must never wait for a handler's setter.
	refusedMu sync.Mutex
	// refused is why the database refused a flush for good, or the
	// fence dropped it; the writes after it fail with it.
	refused error
}

var (
	_ executor.TaskStatus = (*taskStatus)(nil)
	_ executor.NullWriter = (*taskStatus)(nil)
)

// leftover is what the handler left when the daemon took the task back.
type leftover struct {
	terminal djangodb.Status  // last FINISHED/FAILED the handler set
	ended    djangodb.Status  // last FINISHED/FAILED submitted (Completion.Ended)
	pending  []djangodb.Write // held back, to go with the outcome
	last     *completion      // the latest flush, perhaps still in the completer
	ts       *taskStatus
}

// settled waits for the run's last flush and returns why a flush was
// refused or dropped, nil if none was.
func (l leftover) settled() error {
	if l.last != nil {
		l.last.wait()
	}
	if l.ts == nil {
		return nil
	}
	return l.ts.refusedErr()
}

// fence stops the handler's writes and returns what is left of them;
// called again, it returns what the first call did. It does not wait.
func (s *taskStatus) fence() leftover {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fenced {
		s.fenced = true
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		s.left = leftover{terminal: s.terminal, ended: s.ended, pending: s.pending, last: s.last, ts: s}
		s.pending = nil
	}
	return s.left
}

func (s *taskStatus) refusedErr() error {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	return s.refused
}

// settle takes a flush's result; the completer calls it, so it must not
// wait for s.mu.
func (s *taskStatus) settle(r completionResult) {
	if r.err != nil {
		s.refusedMu.Lock()
		if s.refused == nil {
			s.refused = r.err
		}
		s.refusedMu.Unlock()
		return
	}
	if !r.TimeUpdate.IsZero() {
		s.tctx.extend(r.TimeUpdate.Add(s.extendBy))
	}
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
	var req *completion
	if !s.fenced {
		req = s.submitLocked()
	}
	s.mu.Unlock()
	if err := s.await(ctx, req, "read status"); err != nil {
		return djangodb.Instance{}, err
	}
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
	return s.add(ctx, "set "+status.String(), djangodb.StatusWrite(status, djangodb.StorableText(message)))
}

// StoreResponse does not move the deadline: setTaskResponse does not save
// the instance, so timeUpdate stays as it was.
func (s *taskStatus) StoreResponse(ctx context.Context, data []byte, mimeType string) error {
	return s.add(ctx, "store response", djangodb.ResponseWrite(data, djangodb.StorableText(mimeType)))
}

// NullWrite makes the write the original made with a handler's None
// (djangodb.WriteNull): the database refuses it, or takes it ("": the
// executor makes it as an ordinary write), and nothing is written.
// The handler's earlier writes are committed first, as the original's
// were, so that the refused row's id follows theirs. The original saved
// the instance (status, timeUpdate) before the refused insert; that save
// is not made (see djangodb.WriteNull): the refusal fails the task at
// once, which saves the instance again.
func (s *taskStatus) NullWrite(ctx context.Context, w djangodb.Write) (string, error) {
	what := "write NULL for " + w.String()
	s.mu.Lock()
	if s.fenced {
		s.mu.Unlock()
		return "", s.wrap(what, ErrTaskReleased)
	}
	if err := s.refusedErr(); err != nil {
		s.mu.Unlock()
		return "", s.wrap(what, err)
	}
	req := s.submitLocked()
	s.mu.Unlock()
	if err := s.await(ctx, req, what); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.StoreTimeout)
	defer cancel()
	refusal, err := djangodb.WriteNull(ctx, s.d.store, s.st.InstanceID, w)
	if err != nil {
		return "", s.wrap(what, err)
	}
	return refusal, nil
}

// add holds back one write, or commits it at once when s.sync.
func (s *taskStatus) add(ctx context.Context, what string, w djangodb.Write) error {
	s.mu.Lock()
	if s.fenced {
		s.mu.Unlock()
		return s.wrap(what, ErrTaskReleased)
	}
	if err := s.refusedErr(); err != nil {
		s.mu.Unlock()
		return s.wrap(what, err)
	}
	s.pending = append(s.pending, w)
	if !w.IsResponse && w.Status.Terminal() {
		s.terminal = w.Status
	}
	var req *completion
	if s.sync {
		req = s.submitLocked()
	} else if s.timer == nil {
		s.timer = time.AfterFunc(s.d.cfg.FlushDelay, s.flushLater)
	}
	s.mu.Unlock()
	return s.await(ctx, req, what)
}

func (s *taskStatus) wrap(what string, err error) error {
	return fmt.Errorf("daemon: %s of %s (instance %d): %w", what, s.st.Ref(), s.st.InstanceID, err)
}

// flushLater submits held-back writes once FlushDelay has passed; their
// result reaches settle.
func (s *taskStatus) flushLater() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if !s.fenced {
		s.submitLocked()
	}
}

// submitLocked hands the held-back writes to the completer as one
// completion of the run and returns it; with nothing held back it returns
// the latest flush, if any, so that a caller waiting on it sees every
// earlier write committed. s.mu is held: submissions keep the handler's
// order.
func (s *taskStatus) submitLocked() *completion {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(s.pending) == 0 {
		return s.last
	}
	c := djangodb.Completion{InstanceID: s.st.InstanceID, Starts: s.st.Starts, Ended: s.ended, Writes: s.pending}
	for _, w := range s.pending {
		if !w.IsResponse && w.Status.Terminal() {
			s.ended = w.Status
		}
	}
	s.pending = nil
	s.last = s.d.submit(c, s.st.Ref(), s.settle)
	return s.last
}

// await waits for req (nil: nothing to wait for) until the handler's
// context or the task's ends; the flush then stays in the completer's
// queue, ahead of the outcome.
func (s *taskStatus) await(ctx context.Context, req *completion, what string) error {
	if req == nil {
		return nil
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		return s.wrap(what, context.Cause(ctx))
	case <-s.tctx.Done():
		return s.wrap(what, context.Cause(s.tctx))
	}
	if req.res.err != nil {
		return s.wrap(what, req.res.err)
	}
	return nil
}
