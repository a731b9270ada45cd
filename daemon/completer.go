package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// The completer writes what tasks leave behind (a handler's held-back
// writes, the outcome) for many tasks in one Store.Complete transaction.
// A commit costs a sync to disk, so this, with Claim taking a batch of
// tasks, is where the daemon's throughput comes from (ATP-SPEC.md section
// 8). It is river's batch completer, adapted: a completion waits at most
// CompleteWindow for others, and not at all when no other task holds a
// worker (and so could add one), so that a lone task is not delayed.
//
// One instance's completions are written in the order they were
// submitted. A completion whose instance row another transaction holds
// (djangodb.ErrBusy) is parked with every later completion of that
// instance and tried again after a backoff, so that one blocked row never
// holds back the other tasks' outcomes.

// completion is one request to the completer. Its result is in res once
// done is closed; onDone, when set, gets it first, on the completer's
// goroutine (it must not block).
type completion struct {
	c      djangodb.Completion
	ref    djangodb.InstanceRef
	onDone func(completionResult)
	res    completionResult
	done   chan struct{}
	busy   int // times the instance's row was found held
}

// wait returns the completion's result once it is written (or given up).
func (c *completion) wait() completionResult {
	<-c.done
	return c.res
}

func (c *completion) finish(r completionResult) {
	c.res = r
	if c.onDone != nil {
		c.onDone(r)
	}
	close(c.done)
}

type completionResult struct {
	djangodb.CompletionResult
	// err is set when the completion was not written: ErrNotFound,
	// ErrNotOwned (in CompletionResult.Err), a failure the database will
	// not get over (its writes were refused), or Abort giving up on the
	// database.
	err error
}

// maxCompleteBatch bounds one Complete call: a transaction that holds many
// row locks holds them for longer, and the statements carry arrays of
// responses.
const maxCompleteBatch = 256

// completer runs until completions is closed, which happens once every
// task goroutine has ended (and so no completion is parked: each task
// waits for its own).
func (d *Daemon) completer() {
	defer close(d.completerDone)
	parked := make(map[int64][]*completion)
	retry := make(chan int64)
	var batch []*completion
	for {
		select {
		case req, ok := <-d.completions:
			if !ok {
				return
			}
			batch = d.gather(append(batch[:0], req))
		case id := <-retry:
			batch = append(batch[:0], parked[id]...)
			delete(parked, id)
		}
		for _, req := range d.writeBatch(batch, parked) {
			id := req.c.InstanceID
			if len(parked[id]) > 0 {
				parked[id] = append(parked[id], req)
				continue
			}
			parked[id] = []*completion{req}
			req.busy++
			backoff := min(retryBackoffMin<<min(req.busy, 10), retryBackoffMax)
			d.log.Info("ATPD: task row held by another transaction; its outcome is written later",
				"type", req.ref.Type, "identifier", req.ref.Identifier, "instance_id", id, "attempt", req.busy, "retry_in", backoff)
			go func() {
				// After hardStop, the retry comes at once and gives up.
				d.retryWait(backoff)
				retry <- id
			}()
		}
	}
}

// gather adds whatever completions are waiting, and waits up to
// CompleteWindow for more while tasks still hold workers.
func (d *Daemon) gather(batch []*completion) []*completion {
	return gatherMore(batch, d.completions, maxCompleteBatch, d.cfg.CompleteWindow, &d.n.holding, nil)
}

// writeBatch writes a batch, retrying while the database is away, and
// returns, in order, the completions to park: those found busy and those
// behind a parked or busy completion of the same instance. When the batch
// fails for good (one completion the database refuses, or a panic in the
// store), each completion is written on its own, so that one bad task
// cannot keep the others from being written.
func (d *Daemon) writeBatch(batch []*completion, parked map[int64][]*completion) (park []*completion) {
	isHardStop := false
	select {
	case <-d.hardStop:
		isHardStop = true
	default:
	}
	blocked := make(map[int64]bool)
	var todo []*completion
	for _, req := range batch {
		id := req.c.InstanceID
		switch {
		case isHardStop:
			req.finish(completionResult{err: fmt.Errorf("daemon: complete instance %d: %w", id, errGaveUp)})
		case blocked[id] || len(parked[id]) > 0:
			blocked[id] = true
			park = append(park, req)
		default:
			todo = append(todo, req)
		}
	}
	if len(todo) == 0 {
		return park
	}
	cs := make([]djangodb.Completion, len(todo))
	for i, req := range todo {
		cs[i] = req.c
	}
	res, err := d.completeRetrying(cs, fmt.Sprintf("complete %d tasks", len(cs)), djangodb.InstanceRef{})
	switch {
	case err == nil:
	case len(todo) == 1 || errors.Is(err, errGaveUp):
		for _, req := range todo {
			req.finish(completionResult{err: err})
		}
		return park
	default:
		d.log.Warn("ATPD: a batch of task outcomes failed; writing them one by one", "tasks", len(todo), "error", err)
		res = make([]djangodb.CompletionResult, len(todo))
		for i, req := range todo {
			r, err := d.completeRetrying(cs[i:i+1], "complete", req.ref)
			if err != nil {
				res[i] = djangodb.CompletionResult{InstanceID: req.c.InstanceID, Err: err}
				continue
			}
			res[i] = r[0]
		}
	}
	for i, req := range todo {
		id := req.c.InstanceID
		if blocked[id] || errors.Is(res[i].Err, djangodb.ErrBusy) {
			// The store reports every later completion of a busy
			// instance busy too; park them all, in order.
			blocked[id] = true
			park = append(park, req)
			continue
		}
		req.finish(completionResult{CompletionResult: res[i], err: res[i].Err})
	}
	return park
}

// errGaveUp marks a write abandoned because Abort stopped waiting for the
// database.
var errGaveUp = errors.New("gave up at shutdown")

// completeRetrying calls Store.Complete until it commits, retrying
// transient failures with backoff; a panic in the store is an error. It
// gives up when Abort stops waiting for the database.
func (d *Daemon) completeRetrying(cs []djangodb.Completion, what string, ref djangodb.InstanceRef) (res []djangodb.CompletionResult, err error) {
	err = d.retrying(what, ref, func() error {
		res, err = d.completeOnce(cs)
		return err
	})
	return res, err
}

// storePanic is a panic in Store.Complete, as an error. It is not
// retried: the same call would panic again.
type storePanic struct{ value any }

func (p *storePanic) Error() string { return fmt.Sprintf("store panicked: %v", p.value) }

func (d *Daemon) completeOnce(cs []djangodb.Completion) (res []djangodb.CompletionResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("ATPD: panic in the store while writing task outcomes", "tasks", len(cs), "panic", r, "stack", string(debug.Stack()))
			err = &storePanic{value: r}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StoreTimeout)
	defer cancel()
	res, err = d.store.Complete(ctx, cs)
	if err == nil && len(res) != len(cs) {
		err = &storePanic{value: fmt.Sprintf("%d results for %d completions", len(res), len(cs))}
	}
	return res, err
}
