package daemon

import (
	"context"
	"errors"
	"sync"
	"time"
)

// taskContext is a handler's context. Its deadline moves on with every
// status write of the handler that commits, because each such write moves
// the instance's timeUpdate, from which the zombie sweep measures the
// timeout. Reaching the deadline never waits for the database: a write
// still held back or in flight at that instant does not save the run
// (the deadline is a margin before any sweep could take the task, and a
// held-back write is committed within FlushDelay).
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

// extend moves the deadline to to, if later; once the context has ended
// it has no effect.
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
