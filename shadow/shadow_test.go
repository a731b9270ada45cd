package shadow_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/gohandlers/handlertest"
	"github.com/eoxserver/atpd/internal/testdb"
	"github.com/eoxserver/atpd/pyhandlers"
	"github.com/eoxserver/atpd/shadow"
)

// counts records Compared calls.
type counts struct {
	mu                sync.Mutex
	match, mismatches int
}

func (c *counts) compared(_ string, match bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if match {
		c.match++
	} else {
		c.mismatches++
	}
}

// fn is an executor running one Go function as if it were the Python
// handler.
type fn func(ctx context.Context, ts executor.TaskStatus, input any) error

func (f fn) Execute(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error {
	v, err := pickle.Decode(task.Input)
	if err != nil {
		return err
	}
	return f(ctx, ts, v)
}

func registry(t *testing.T, path string, h gohandlers.Handler) *gohandlers.Registry {
	t.Helper()
	r := gohandlers.NewRegistry()
	if err := r.Register(path, h); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCompare: the same records match; another message, another response,
// a missing write or another outcome is a mismatch naming the record; the
// primary's writes reach the real TaskStatus, the port's do not; other
// paths go to Next untouched.
func TestCompare(t *testing.T) {
	const path = "app.tasks.sum"
	primary := fn(func(ctx context.Context, ts executor.TaskStatus, in any) error {
		if err := ts.SetRunning(ctx, "half"); err != nil {
			return err
		}
		return ts.StoreResponse(ctx, []byte("3.0"), "text/plain")
	})
	tests := []struct {
		name string
		port gohandlers.Handler
		diff string // "" for a match
	}{
		{"same", func(ctx context.Context, ts executor.TaskStatus, in any) error {
			_ = ts.SetRunning(ctx, "half")
			return ts.StoreResponse(ctx, []byte("3.0"), "text/plain")
		}, ""},
		{"other message", func(ctx context.Context, ts executor.TaskStatus, in any) error {
			_ = ts.SetRunning(ctx, "50%")
			return ts.StoreResponse(ctx, []byte("3.0"), "text/plain")
		}, `record 1: Python wrote 3 "half", Go wrote 3 "50%"`},
		{"other response", func(ctx context.Context, ts executor.TaskStatus, in any) error {
			_ = ts.SetRunning(ctx, "half")
			return ts.StoreResponse(ctx, []byte("3"), "text/plain")
		}, `record 2: Python wrote response "3.0" (text/plain), Go wrote response "3" (text/plain)`},
		{"fails instead", func(context.Context, executor.TaskStatus, any) error { return errors.New("boom") },
			`record 1: Python wrote 3 "half", Go wrote 6 "boom"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c counts
			next := fn(func(context.Context, executor.TaskStatus, any) error { return errors.New("next ran") })
			var logs strings.Builder
			ex := &shadow.Executor{Primary: primary, Ports: registry(t, path, tc.port), Paths: map[string]bool{path: true},
				Next: next, Compared: c.compared, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if err := ex.Validate(); err != nil {
				t.Fatal(err)
			}
			in, err := pickle.Encode([]any{int64(1), int64(2)})
			if err != nil {
				t.Fatal(err)
			}
			real := handlertest.NewRecorder("Sum", "s1")
			err = ex.Execute(t.Context(), &executor.Task{Type: "Sum", Identifier: "s1", Handler: path, Input: in, HasInput: true}, real)
			if err != nil {
				t.Fatalf("primary's result %v", err)
			}
			if got := real.Records(); len(got) != 2 || got[1].String() != `response "3.0" (text/plain)` {
				t.Errorf("the real TaskStatus got %v, want the primary's writes only", got)
			}
			if tc.diff == "" {
				if c.match != 1 || c.mismatches != 0 || strings.Contains(logs.String(), "differs") {
					t.Errorf("match counted %d/%d, log %s", c.match, c.mismatches, logs.String())
				}
				return
			}
			if c.mismatches != 1 || !strings.Contains(logs.String(), "difference="+strconv.Quote(tc.diff)) || !strings.Contains(logs.String(), "identifier=s1") {
				t.Errorf("mismatch counted %d, log %s; want %q", c.mismatches, logs.String(), tc.diff)
			}
			if r := ex.Recent(); len(r) != 1 || r[0].Difference != tc.diff || r[0].Path != path || r[0].Identifier != "s1" {
				t.Errorf("Recent() = %+v, want the one mismatch", r)
			}
			if err := ex.Execute(t.Context(), &executor.Task{Handler: "other.path", Input: in, HasInput: true}, real); err == nil || err.Error() != "next ran" {
				t.Errorf("another path = %v, want Next's result", err)
			}
		})
	}
	bad := &shadow.Executor{Primary: primary, Ports: gohandlers.NewRegistry(), Paths: map[string]bool{path: true}, Next: primary}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Validate without a port = %v", err)
	}
}

// TestDemoBesidePython: the demo port shadows EOxServer's Python demo
// handler, run for real in CPython workers, on inputs pickled by python3
// with every protocol: no mismatch; a deliberately wrong port is caught.
func TestDemoBesidePython(t *testing.T) {
	py := testdb.Python(t)
	root := testdb.RepoRoot(t)
	script := `
import base64, json, pickle, sys, zlib
values = [(1, 2, 3, 4, 5), [1.5, "2.5"], [], ["x"], None, "123", {"1": 0, "2": 0}, [10**400], [1e16], [-0.0]]
out = []
for proto in range(pickle.HIGHEST_PROTOCOL + 1):
    for v in values:
        out.append(base64.b64encode(zlib.compress(pickle.dumps(v, proto))).decode())
json.dump(out, sys.stdout)
`
	raw, err := exec.Command(py, "-c", script).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var inputs []string
	if err := json.Unmarshal(raw, &inputs); err != nil {
		t.Fatal(err)
	}
	pool, err := pyhandlers.New(pyhandlers.Config{Python: py, PythonPath: []string{filepath.Join(root, "integration")},
		Workers: 2, Env: []string{"PYTHONDONTWRITEBYTECODE=1"}, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := pool.Start(ctx); err != nil {
		t.Fatalf("start CPython workers: %v", err)
	}
	defer pool.Stop()
	wrong := func(ctx context.Context, ts executor.TaskStatus, in any) error {
		if items, ok := in.([]any); ok && len(items) == 0 {
			return ts.StoreResponse(ctx, []byte("0.0"), "text/plain") // Python's sum of nothing is the int 0
		}
		return gohandlers.Demo(ctx, ts, in)
	}
	for _, port := range []struct {
		name       string
		h          gohandlers.Handler
		mismatches int
	}{{"demo port", gohandlers.Demo, 0}, {"wrong port", wrong, 0}} {
		t.Run(port.name, func(t *testing.T) {
			var c counts
			ex := &shadow.Executor{Primary: pool, Ports: registry(t, gohandlers.DemoPath, port.h),
				Paths: map[string]bool{gohandlers.DemoPath: true}, Next: pool, Compared: c.compared,
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
			if !ex.SyncWrites(gohandlers.DemoPath) {
				t.Error("a shadowed Python path must keep its committed writes")
			}
			for i, in := range inputs {
				task := &executor.Task{Type: "Sum", Identifier: "s" + strings.Repeat("i", i%3), Handler: gohandlers.DemoPath, Input: in, HasInput: true}
				_ = ex.Execute(ctx, task, handlertest.NewRecorder("Sum", "s"))
			}
			if c.match+c.mismatches != len(inputs) {
				t.Fatalf("%d comparisons for %d inputs", c.match+c.mismatches, len(inputs))
			}
			protocols := len(inputs) / 10
			want := 0
			if port.name == "wrong port" {
				want = protocols // the empty list, once per protocol
			}
			if c.mismatches != want {
				t.Errorf("%d mismatches, want %d", c.mismatches, want)
			}
		})
	}
}
