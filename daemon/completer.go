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

// completion is one request to the completer; its result comes back on
// done, which has room for it.
type completion struct {
	c    djangodb.Completion
	ref  djangodb.InstanceRef
	done chan completionResult
}

type completionResult struct {
	djangodb.CompletionResult
	// err is set when the completion was not written: ErrNotFound (in
	// CompletionResult.Err), a failure the database will not get over
	// (its writes were refused), or Abort giving up on the database.
	err error
}

// maxCompleteBatch bounds one Complete call: a transaction that holds many
// row locks holds them for longer, and the statements carry arrays of
// responses.
const maxCompleteBatch = 256

// completer runs until completions is closed, which happens once every
// task goroutine has ended.
func (d *Daemon) completer() {
	defer close(d.completerDone)
	var batch []*completion
	for {
		req, ok := <-d.completions
		if !ok {
			return
		}
		batch = append(batch[:0], req)
		batch = d.gather(batch)
		d.writeBatch(batch)
	}
}

// gather adds whatever completions are waiting, and waits up to
// CompleteWindow for more while tasks still hold workers.
func (d *Daemon) gather(batch []*completion) []*completion {
	return gatherMore(batch, d.completions, maxCompleteBatch, d.cfg.CompleteWindow, &d.n.holding, nil)
}

// writeBatch writes a batch, retrying while the database is away. When
// the batch fails for good (one completion the database refuses, or a
// panic in the store), each completion is written on its own, so that one
// bad task cannot keep the others from being written.
func (d *Daemon) writeBatch(batch []*completion) {
	cs := make([]djangodb.Completion, len(batch))
	for i, req := range batch {
		cs[i] = req.c
	}
	res, err := d.completeRetrying(cs, fmt.Sprintf("complete %d tasks", len(cs)), djangodb.InstanceRef{})
	if err == nil {
		for i, req := range batch {
			req.done <- resultOf(res[i])
		}
		return
	}
	if len(batch) == 1 || errors.Is(err, errGaveUp) {
		for _, req := range batch {
			req.done <- completionResult{err: err}
		}
		return
	}
	d.log.Warn("ATPD: a batch of task outcomes failed; writing them one by one", "tasks", len(batch), "error", err)
	for i, req := range batch {
		res, err := d.completeRetrying(cs[i:i+1], "complete", req.ref)
		if err != nil {
			req.done <- completionResult{err: err}
			continue
		}
		req.done <- resultOf(res[0])
	}
}

func resultOf(r djangodb.CompletionResult) completionResult {
	return completionResult{CompletionResult: r, err: r.Err}
}

// errGaveUp marks a write abandoned because Abort stopped waiting for the
// database.
var errGaveUp = errors.New("gave up at shutdown")

// completeRetrying calls Store.Complete until it commits, retrying
// transient failures with backoff; a panic in the store is an error. It
// gives up when Abort stops waiting for the database.
func (d *Daemon) completeRetrying(cs []djangodb.Completion, what string, ref djangodb.InstanceRef) (res []djangodb.CompletionResult, err error) {
	backoff := retryBackoffMin
	for attempt := 1; ; attempt++ {
		res, err = d.completeOnce(cs)
		var sp *storePanic
		if err == nil || errors.As(err, &sp) || !djangodb.Transient(err) {
			return res, err
		}
		attrs := []any{"operation", what}
		if ref.Type != "" {
			attrs = append(attrs, "type", ref.Type, "identifier", ref.Identifier)
		}
		if ref.ID != 0 {
			attrs = append(attrs, "instance_id", ref.ID)
		}
		attrs = append(attrs, "attempt", attempt, "retry_in", backoff, "error", err)
		d.log.Warn("ATPD: store write failed; retrying", attrs...)
		if !d.retryWait(backoff) {
			return nil, fmt.Errorf("daemon: %s: %w after %d attempts: %w", what, errGaveUp, attempt, err)
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
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
