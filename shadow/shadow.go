// Package shadow owns shadow mode: for a handler path that has both a Go
// port and a Python handler, the Python handler runs for real (its writes
// committed as always) while the Go port runs on the same input against a
// recording TaskStatus that writes nothing; the two runs' records (status
// changes with their messages, responses with their MIME types, and the
// outcome the daemon writes) are compared, and a mismatch is logged with
// the first difference and counted. It is how an operator learns, on real
// traffic, that a port behaves like the original before switching to it.
package shadow

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/gohandlers/handlertest"
)

// Executor runs the shadowed paths as described in the package comment
// and hands every other path to Next.
type Executor struct {
	// Primary runs a shadowed path for real: the executor of its Python
	// handler (the CPython pool).
	Primary executor.Executor
	// Ports holds the Go ports of the shadowed paths.
	Ports *gohandlers.Registry
	// Paths are the shadowed handler paths.
	Paths map[string]bool
	// Next runs every other path (the daemon's router).
	Next executor.Executor
	// Compared, when set, is told of every comparison: the path and
	// whether the records matched.
	Compared func(path string, match bool)
	// Logger receives mismatches (default slog.Default()).
	Logger *slog.Logger

	mu     sync.Mutex
	recent []Mismatch // newest last, at most Kept
}

// Kept is how many mismatches Recent keeps.
const Kept = 100

// Mismatch is one run whose Go port's records differed from the Python
// handler's.
type Mismatch struct {
	Time       time.Time
	Path       string
	Type       string
	Identifier string
	InstanceID int64
	Difference string
}

// Recent returns the last Kept mismatches, newest first.
func (e *Executor) Recent() []Mismatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Mismatch, len(e.recent))
	for i, m := range e.recent {
		out[len(out)-1-i] = m
	}
	return out
}

func (e *Executor) keep(m Mismatch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recent = append(e.recent, m)
	if len(e.recent) > Kept {
		e.recent = append(e.recent[:0:0], e.recent[len(e.recent)-Kept:]...)
	}
}

// Validate reports a shadowed path without a Go port.
func (e *Executor) Validate() error {
	for p := range e.Paths {
		if e.Ports == nil || !e.Ports.Has(p) {
			return fmt.Errorf("shadow: %s has no Go port to shadow it", p)
		}
	}
	if e.Primary == nil || e.Next == nil {
		return fmt.Errorf("shadow: primary and next executors are required")
	}
	return nil
}

// SyncWrites keeps the primary's contract for shadowed paths (Python
// handlers commit each write before it returns) and Next's for the rest.
func (e *Executor) SyncWrites(path string) bool {
	if e.Paths[path] {
		return executor.WantsSyncWrites(e.Primary, path)
	}
	return executor.WantsSyncWrites(e.Next, path)
}

// Execute runs task; for a shadowed path the result is the primary's.
func (e *Executor) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) error {
	if !e.Paths[task.Handler] {
		return e.Next.Execute(ctx, task, status)
	}
	port, _ := e.Ports.Lookup(task.Handler)
	var (
		wg     sync.WaitGroup
		shadow handlertest.Result
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A panic in the port is the port's result, not the daemon's.
		shadow = handlertest.RunStored(ctx, port, task.Input, handlertest.Options{
			Path: task.Handler, Type: task.Type, Identifier: task.Identifier})
	}()
	tee := &tee{TaskStatus: status, rec: handlertest.NewRecorder(task.Type, task.Identifier)}
	err := e.Primary.Execute(ctx, task, tee)
	wg.Wait()
	if ctx.Err() != nil {
		// Cancelled: neither run reached its end.
		return err
	}
	primary := tee.rec.End(err)
	diff := Diff(primary, shadow.Records)
	if e.Compared != nil {
		e.Compared(task.Handler, diff == "")
	}
	if diff != "" {
		e.keep(Mismatch{Time: time.Now(), Path: task.Handler, Type: task.Type, Identifier: task.Identifier,
			InstanceID: task.InstanceID, Difference: diff})
		e.logger().Warn("SHADOW: the Go port differs from the Python handler", "handler", task.Handler,
			"type", task.Type, "identifier", task.Identifier, "instance_id", task.InstanceID, "difference", diff)
	}
	return err
}

func (e *Executor) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// tee passes the primary's writes on and records those that succeeded.
type tee struct {
	executor.TaskStatus
	rec *handlertest.Recorder
}

func (t *tee) both(err error, record func() error) error {
	if err == nil {
		_ = record()
	}
	return err
}

func (t *tee) SetSuccess(ctx context.Context, m string) error {
	return t.both(t.TaskStatus.SetSuccess(ctx, m), func() error { return t.rec.SetSuccess(ctx, m) })
}

func (t *tee) SetFailure(ctx context.Context, m string) error {
	return t.both(t.TaskStatus.SetFailure(ctx, m), func() error { return t.rec.SetFailure(ctx, m) })
}

func (t *tee) SetPaused(ctx context.Context, m string) error {
	return t.both(t.TaskStatus.SetPaused(ctx, m), func() error { return t.rec.SetPaused(ctx, m) })
}

func (t *tee) SetRunning(ctx context.Context, m string) error {
	return t.both(t.TaskStatus.SetRunning(ctx, m), func() error { return t.rec.SetRunning(ctx, m) })
}

func (t *tee) StoreResponse(ctx context.Context, data []byte, mime string) error {
	return t.both(t.TaskStatus.StoreResponse(ctx, data, mime), func() error { return t.rec.StoreResponse(ctx, data, mime) })
}

// Diff describes the first difference between two runs' records, "" when
// they are the same.
func Diff(primary, port []handlertest.Record) string {
	for i := 0; i < max(len(primary), len(port)); i++ {
		switch {
		case i >= len(primary):
			return fmt.Sprintf("record %d: Python wrote nothing more, Go wrote %v", i+1, port[i])
		case i >= len(port):
			return fmt.Sprintf("record %d: Python wrote %v, Go wrote nothing more", i+1, primary[i])
		case primary[i].String() != port[i].String():
			return fmt.Sprintf("record %d: Python wrote %v, Go wrote %v", i+1, primary[i], port[i])
		}
	}
	return ""
}
