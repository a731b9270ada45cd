package executor_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// goSet is a Go handler set whose handler cannot run its input.
type goSet struct{ err error }

func (g goSet) Execute(context.Context, *executor.Task, executor.TaskStatus) error { return g.err }
func (goSet) Has(path string) bool                                                 { return path == "tools.atp_demo.handler" }

// pyExec is a Python executor: it sets RUNNING and succeeds, or fails
// with err; sync says whether it wants each write committed.
type pyExec struct {
	err  error
	sync bool
	ran  *int
}

func (p pyExec) Execute(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
	*p.ran++
	if p.err != nil {
		return p.err
	}
	return ts.SetRunning(ctx, "python")
}

func (p pyExec) SyncWrites(string) bool { return p.sync }

// calls records TaskStatus calls in order.
type calls struct{ log []string }

func (c *calls) Info(context.Context) (executor.Info, error) { return executor.Info{}, nil }
func (c *calls) Identifier() (string, string)                { return "", "" }
func (c *calls) Status(context.Context) (djangodb.Status, error) {
	c.log = append(c.log, "Status")
	return djangodb.Running, nil
}
func (c *calls) SetSuccess(_ context.Context, m string) error { return c.add("SetSuccess " + m) }
func (c *calls) SetFailure(_ context.Context, m string) error { return c.add("SetFailure " + m) }
func (c *calls) SetPaused(_ context.Context, m string) error  { return c.add("SetPaused " + m) }
func (c *calls) SetRunning(_ context.Context, m string) error { return c.add("SetRunning " + m) }
func (c *calls) StoreResponse(_ context.Context, d []byte, mt string) error {
	return c.add("StoreResponse " + string(d) + " " + mt)
}
func (c *calls) add(s string) error { c.log = append(c.log, s); return nil }

// TestRouterUnsupportedFallsThrough: a Go handler that cannot run its
// input hands the task to the path's Python executor, whose writes are
// then committed one by one; without a Python executor, or with one that
// is unavailable, the Go handler's error stands.
func TestRouterUnsupportedFallsThrough(t *testing.T) {
	notIterable := executor.Unsupported(errors.New("'Point' object is not iterable"))
	unavailable := fmt.Errorf("handler needs Python, which is unavailable: %w", executor.ErrNoHandler)
	tests := []struct {
		name  string
		goErr error
		py    *pyExec // nil: no default executor
		want  string  // the error's text; "" for success
		ran   int
		calls string
	}{
		{"falls through to python", notIterable, &pyExec{sync: true}, "", 1, "[SetRunning python Status]"},
		{"falls through, write-behind executor", notIterable, &pyExec{}, "", 1, "[SetRunning python]"},
		{"python's own failure", notIterable, &pyExec{err: errors.New("boom")}, "boom", 1, "[]"},
		{"python unavailable", notIterable, &pyExec{err: unavailable}, "'Point' object is not iterable", 1, "[]"},
		{"no python", notIterable, nil, "'Point' object is not iterable", 0, "[]"},
		{"other go errors stay", errors.New("go failed"), &pyExec{}, "go failed", 0, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := 0
			r := &executor.Router{Go: goSet{err: tt.goErr}}
			if tt.py != nil {
				tt.py.ran = &ran
				r.Default = *tt.py
			}
			ts := &calls{}
			err := r.Execute(context.Background(), &executor.Task{Handler: "tools.atp_demo.handler"}, ts)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			if ran != tt.ran {
				t.Errorf("python ran %d times, want %d", ran, tt.ran)
			}
			if fmt.Sprint(ts.log) != tt.calls {
				t.Errorf("TaskStatus calls %v, want %s", ts.log, tt.calls)
			}
		})
	}
}

// TestRouterFallThroughRoute: the task goes where the path is routed
// without its Go handler, and never back to the Go executor.
func TestRouterFallThroughRoute(t *testing.T) {
	ran, other := 0, 0
	g := &goOnce{}
	r := &executor.Router{
		Go:        g,
		Routes:    map[string]string{"tools.": "cpython", "tools.atp_demo.handler": "go"},
		Executors: map[string]executor.Executor{"cpython": pyExec{ran: &other}, "go": g},
		Default:   pyExec{ran: &ran},
	}
	err := r.Execute(context.Background(), &executor.Task{Handler: "tools.atp_demo.handler"}, &calls{})
	if err == nil || err.Error() != "unsupported" || g.n != 1 || ran != 0 || other != 0 {
		t.Errorf("exact route to go: error %v, go ran %d, default %d, cpython %d; want the go error, once", err, g.n, ran, other)
	}
	delete(r.Routes, "tools.atp_demo.handler")
	g.n = 0
	if err := r.Execute(context.Background(), &executor.Task{Handler: "tools.atp_demo.handler"}, &calls{}); err != nil || g.n != 1 || other != 1 || ran != 0 {
		t.Errorf("prefix route: error %v, go ran %d, cpython %d, default %d; want cpython once", err, g.n, other, ran)
	}
}

type goOnce struct{ n int }

func (g *goOnce) Execute(context.Context, *executor.Task, executor.TaskStatus) error {
	g.n++
	return executor.Unsupported(errors.New("unsupported"))
}
func (g *goOnce) Has(path string) bool { return path == "tools.atp_demo.handler" }
