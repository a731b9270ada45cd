// Package gohandlers owns the task handlers written in Go: a Registry that
// maps Python dotted handler paths ("tools.atp_demo.handler") to Go
// functions, implements executor.Executor for them, and holds the built-in
// ports of EOxServer's handlers. A Go handler registered for a path replaces
// the Python function of that path for every task whose type names it, so a
// port must behave exactly like the Python original: same status writes,
// same messages, same response bytes.
package gohandlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// Handler is a Go task handler: the counterpart of a Python
// handler(taskStatus, input). input is the unpickled task input as
// compat/pickle maps it to Go values. A returned error ends the task FAILED
// with err.Error() as the message, as an exception does in Python; a nil
// return ends it FINISHED unless the handler set FINISHED or FAILED itself.
type Handler func(ctx context.Context, ts executor.TaskStatus, input any) error

// Errors callers branch on.
var (
	ErrDuplicate = errors.New("handler already registered")
	ErrBadPath   = errors.New("bad handler path")
	// ErrInput wraps every input decoding failure.
	ErrInput = executor.ErrInput
)

// PanicError is what Execute returns when a handler panics. Its message is
// the task's FAILED message; Stack is for the log.
type PanicError struct {
	Path  string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler %s panicked: %v", e.Path, e.Value) }

// Registry maps dotted handler paths to Go handlers. It is safe for
// concurrent use.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	log      *slog.Logger
}

var _ executor.HandlerSet = (*Registry)(nil)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[string]Handler{}}
}

// Default holds the built-in handlers.
var Default = NewDefault()

// NewDefault returns a new registry holding the built-in handlers.
func NewDefault() *Registry {
	r := NewRegistry()
	for path, h := range builtins {
		if err := r.Register(path, h); err != nil {
			panic(err) // a broken built-in table is a programming error
		}
	}
	return r
}

var builtins = map[string]Handler{
	DemoPath: Demo,
}

// SetLogger sets where handler panics are logged (default slog.Default()).
func (r *Registry) SetLogger(l *slog.Logger) {
	r.mu.Lock()
	r.log = l
	r.mu.Unlock()
}

// Register adds h for path, a Python dotted path "pkg.module.func".
func (r *Registry) Register(path string, h Handler) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("gohandlers: register %s: nil handler", path)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.handlers[path]; ok {
		return fmt.Errorf("gohandlers: register %s: %w", path, ErrDuplicate)
	}
	r.handlers[path] = h
	return nil
}

// checkPath accepts what the reference daemon's importer could resolve: a
// module path and a function name separated by dots, each part a Python
// identifier.
func checkPath(path string) error {
	parts := strings.Split(path, ".")
	if len(parts) < 2 {
		return fmt.Errorf("gohandlers: %w %q: want module.function", ErrBadPath, path)
	}
	for _, p := range parts {
		if !isIdentifier(p) {
			return fmt.Errorf("gohandlers: %w %q: %q is not a Python identifier", ErrBadPath, path, p)
		}
	}
	return nil
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c > 0x7F
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Lookup returns the handler for path.
func (r *Registry) Lookup(path string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[path]
	return h, ok
}

// Has reports whether a handler is registered for path.
func (r *Registry) Has(path string) bool {
	_, ok := r.Lookup(path)
	return ok
}

// Paths returns the registered paths, sorted.
func (r *Registry) Paths() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	paths := make([]string, 0, len(r.handlers))
	for p := range r.handlers {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

func (r *Registry) logger() *slog.Logger {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.log != nil {
		return r.log
	}
	return slog.Default()
}

// Execute decodes the task's input and runs the handler registered for its
// path. Decoding failures, a missing handler and panics come back as errors
// whose text is the task's FAILED message: for an input that is not base64
// of zlib, or has no row, the words Python raises (executor.InputError). A
// pickle Go cannot read comes back matching executor.ErrUnsupported, so
// that the Router hands it to the path's Python handler, which reads it or
// fails it in Python's words.
func (r *Registry) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) (err error) {
	h, ok := r.Lookup(task.Handler)
	if !ok {
		return fmt.Errorf("gohandlers: %w for %s", executor.ErrNoHandler, task.Handler)
	}
	if !task.HasInput {
		// tracker.startTask raised Input.DoesNotExist here.
		return executor.ErrNoInputRow
	}
	decoding := true
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		stack := debug.Stack()
		r.logger().Error("gohandlers: panic while running a task", "handler", task.Handler,
			"type", task.Type, "identifier", task.Identifier, "instance_id", task.InstanceID,
			"decoding_input", decoding, "panic", fmt.Sprint(v), "stack", string(stack))
		if decoding {
			// A decoder bug must not read as the handler's fault.
			err = executor.Unsupported(fmt.Errorf("%w: decoder panicked: %v", ErrInput, v))
			return
		}
		err = &PanicError{Path: task.Handler, Value: v, Stack: stack}
	}()
	input, err := pickle.Decode(task.Input)
	if err != nil {
		err = executor.NewInputError(err)
		var env *pickle.EnvelopeError
		if !errors.As(err, &env) {
			// A pickle Go cannot read: Python's pickle may, or fails it in
			// its own words; the Router hands it to the path's Python
			// handler when there is one.
			err = executor.Unsupported(err)
		}
		return err
	}
	decoding = false
	return h(ctx, status, input)
}
