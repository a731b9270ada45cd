package executor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// HandlerSet is an executor that knows which handler paths it can run; the
// Go handler registry (gohandlers.Registry) is one.
type HandlerSet interface {
	Executor
	Has(path string) bool
}

// Router picks the executor for each task by its handler path:
//
//  1. a Go handler registered for the exact path (Go) wins, because it is
//     the deliberate replacement of that Python handler;
//  2. else the configured route: Routes maps a dotted path, or a prefix
//     ending in ".", to a name in Executors; the exact path wins over
//     prefixes and a longer prefix over a shorter one;
//  3. else Default; a nil Default fails the task with ErrNoHandler.
//
// A Go handler that cannot run a task (its error matches ErrUnsupported,
// returned before it wrote anything: an input it cannot represent) hands
// it on: the task runs on the executor the path has without its Go
// handler (2 or 3), normally the Python handler the Go one replaces, so
// that the task ends as the reference daemon would end it. When there is
// none, or it is unavailable (ErrNoHandler), the Go handler's error
// stands. When that executor wants each TaskStatus write committed before
// the call returns (SyncWriter) and the Go handler did not, its writes are
// committed one by one through TaskStatus.Status, which commits the
// writes before it.
//
// A Router is read-only after construction and safe for concurrent use.
type Router struct {
	Go        HandlerSet
	Routes    map[string]string
	Executors map[string]Executor
	Default   Executor
}

var _ Executor = (*Router)(nil)

// Validate reports routes that name no executor, so that configuration
// errors show at start-up rather than as failed tasks.
func (r *Router) Validate() error {
	var bad []string
	for route, name := range r.Routes {
		if route == "" {
			bad = append(bad, fmt.Sprintf("empty path routed to %q", name))
			continue
		}
		if r.Executors[name] == nil {
			bad = append(bad, fmt.Sprintf("%q routed to unknown executor %q", route, name))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("executor: router: %s (known executors: %s)", strings.Join(bad, "; "), strings.Join(r.names(), ", "))
	}
	return nil
}

func (r *Router) names() []string {
	names := make([]string, 0, len(r.Executors))
	for n := range r.Executors {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// Route returns the executor for a handler path and a name for logs: "go",
// the route's executor name, or "default".
func (r *Router) Route(path string) (string, Executor, error) {
	if r.Go != nil && r.Go.Has(path) {
		return "go", r.Go, nil
	}
	if route, name, ok := r.match(path); ok {
		ex := r.Executors[name]
		if ex == nil {
			return name, nil, fmt.Errorf("executor: handler %s: route %q names unknown executor %q: %w", path, route, name, ErrNoHandler)
		}
		return name, ex, nil
	}
	if r.Default != nil {
		return "default", r.Default, nil
	}
	return "default", nil, fmt.Errorf("executor: %w for %s", ErrNoHandler, path)
}

func (r *Router) match(path string) (route, name string, ok bool) {
	if name, ok := r.Routes[path]; ok {
		return path, name, true
	}
	best := -1
	for p, n := range r.Routes {
		if strings.HasSuffix(p, ".") && strings.HasPrefix(path, p) && len(p) > best {
			route, name, best = p, n, len(p)
		}
	}
	return route, name, best >= 0
}

// Execute runs the task on the executor Route picks, and hands a task
// its Go handler cannot run to the path's other executor.
func (r *Router) Execute(ctx context.Context, task *Task, status TaskStatus) error {
	name, ex, err := r.Route(task.Handler)
	if err != nil {
		return err
	}
	err = ex.Execute(ctx, task, status)
	if name != "go" || !errors.Is(err, ErrUnsupported) || ctx.Err() != nil {
		return err
	}
	next := r.Default
	if _, n, ok := r.match(task.Handler); ok {
		next = r.Executors[n]
	}
	if next == nil || sameExecutor(next, ex) {
		return err
	}
	if WantsSyncWrites(next, task.Handler) && !WantsSyncWrites(ex, task.Handler) {
		status = syncStatus{status}
	}
	if nerr := next.Execute(ctx, task, status); !errors.Is(nerr, ErrNoHandler) {
		return nerr
	}
	return err
}

// sameExecutor compares two executors without panicking on dynamic types
// that are not comparable.
func sameExecutor(a, b Executor) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

// syncStatus commits each write before it returns: Status commits the
// writes made before it.
type syncStatus struct{ TaskStatus }

func (s syncStatus) commit(ctx context.Context, err error) error {
	if err != nil {
		return err
	}
	_, err = s.TaskStatus.Status(ctx)
	return err
}

func (s syncStatus) SetSuccess(ctx context.Context, m string) error {
	return s.commit(ctx, s.TaskStatus.SetSuccess(ctx, m))
}

func (s syncStatus) SetFailure(ctx context.Context, m string) error {
	return s.commit(ctx, s.TaskStatus.SetFailure(ctx, m))
}

func (s syncStatus) SetPaused(ctx context.Context, m string) error {
	return s.commit(ctx, s.TaskStatus.SetPaused(ctx, m))
}

func (s syncStatus) SetRunning(ctx context.Context, m string) error {
	return s.commit(ctx, s.TaskStatus.SetRunning(ctx, m))
}

func (s syncStatus) StoreResponse(ctx context.Context, data []byte, mimeType string) error {
	return s.commit(ctx, s.TaskStatus.StoreResponse(ctx, data, mimeType))
}

// SyncWrites asks the executor path is routed to.
func (r *Router) SyncWrites(path string) bool {
	_, ex, err := r.Route(path)
	return err == nil && WantsSyncWrites(ex, path)
}

// NoHandler is an Executor that runs nothing: every task fails with an error
// wrapping ErrNoHandler that names the path. It stands in where no executor
// is configured for a path.
type NoHandler struct{}

// Execute fails with ErrNoHandler.
func (NoHandler) Execute(_ context.Context, task *Task, _ TaskStatus) error {
	return fmt.Errorf("executor: %w for %s", ErrNoHandler, task.Handler)
}
