package executor_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/executor"
)

// named is an executor that records which one ran.
type named struct {
	name  string
	paths map[string]bool // for the Go set
	ran   *[]string
}

func (n named) Execute(_ context.Context, task *executor.Task, _ executor.TaskStatus) error {
	*n.ran = append(*n.ran, n.name+":"+task.Handler)
	return nil
}

func (n named) Has(path string) bool { return n.paths[path] }

func TestRouterPicksExecutor(t *testing.T) {
	var ran []string
	goSet := named{name: "go", paths: map[string]bool{"tools.atp_demo.handler": true, "pkg.mod.gofunc": true}, ran: &ran}
	r := &executor.Router{
		Go: goSet,
		Routes: map[string]string{
			"pkg.":            "cpython",
			"pkg.sub.":        "embedded",
			"pkg.sub.exact.f": "cpython",
			"tools.":          "embedded", // the Go handler still wins for its path
			"pkg.mod.gofunc":  "cpython",  // and over an exact route
		},
		Executors: map[string]executor.Executor{
			"cpython":  named{name: "cpython", ran: &ran},
			"embedded": named{name: "embedded", ran: &ran},
		},
		Default: named{name: "default", ran: &ran},
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tests := []struct {
		path, want string
	}{
		{"tools.atp_demo.handler", "go"},
		{"pkg.mod.gofunc", "go"},
		{"tools.other.handler", "embedded"},
		{"pkg.mod.func", "cpython"},
		{"pkg.sub.mod.func", "embedded"},
		{"pkg.sub.exact.f", "cpython"},
		{"pkg.sub.exact.g", "embedded"},
		{"pkgx.mod.func", "default"}, // "pkg." is a prefix of dotted parts, not of text
		{"other.mod.func", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ran = nil
			name, _, err := r.Route(tt.path)
			if err != nil {
				t.Fatalf("Route: %v", err)
			}
			if name != tt.want {
				t.Errorf("Route(%q) = %q, want %q", tt.path, name, tt.want)
			}
			if err := r.Execute(context.Background(), &executor.Task{Handler: tt.path}, nil); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if len(ran) != 1 || ran[0] != tt.want+":"+tt.path {
				t.Errorf("Execute ran %v, want [%s:%s]", ran, tt.want, tt.path)
			}
		})
	}
}

func TestRouterNoHandler(t *testing.T) {
	tests := []struct {
		name string
		r    *executor.Router
		path string
	}{
		{"empty router", &executor.Router{}, "a.b.c"},
		{"nil Default", &executor.Router{Go: named{paths: map[string]bool{"x.y": true}}}, "a.b.c"},
		{"NoHandler default", &executor.Router{Default: executor.NoHandler{}}, "a.b.c"},
		{"route to unknown executor", &executor.Router{Routes: map[string]string{"a.": "nope"}}, "a.b.c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Execute(context.Background(), &executor.Task{Handler: tt.path}, nil)
			if !errors.Is(err, executor.ErrNoHandler) {
				t.Fatalf("Execute = %v, want ErrNoHandler", err)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the path %s", err, tt.path)
			}
		})
	}
}

func TestRouterValidate(t *testing.T) {
	r := &executor.Router{
		Routes:    map[string]string{"a.": "cpython", "b.": "gpython", "": "cpython"},
		Executors: map[string]executor.Executor{"cpython": executor.NoHandler{}},
	}
	err := r.Validate()
	if err == nil {
		t.Fatal("Validate accepted a route to an unknown executor and an empty path")
	}
	for _, want := range []string{`"b." routed to unknown executor "gpython"`, "empty path", "known executors: cpython"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q lacks %q", err, want)
		}
	}
}

// syncNamed is an executor that wants committed writes, like pyhandlers'.
type syncNamed struct{ named }

func (syncNamed) SyncWrites(string) bool { return true }

// TestRouterSyncWrites: the router answers for the executor a path is
// routed to, so Go handlers keep write-behind while Python paths do not.
func TestRouterSyncWrites(t *testing.T) {
	var ran []string
	r := &executor.Router{
		Go:        named{name: "go", paths: map[string]bool{"tools.atp_demo.handler": true}, ran: &ran},
		Routes:    map[string]string{"gpy.": "embedded"},
		Executors: map[string]executor.Executor{"embedded": syncNamed{named{name: "embedded", ran: &ran}}},
		Default:   syncNamed{named{name: "cpython", ran: &ran}},
	}
	for path, want := range map[string]bool{
		"tools.atp_demo.handler": false, // Go handler
		"gpy.mod.f":              true,  // routed to a SyncWriter
		"eox.mod.f":              true,  // the default CPython executor
	} {
		if got := executor.WantsSyncWrites(r, path); got != want {
			t.Errorf("WantsSyncWrites(router, %q) = %v, want %v", path, got, want)
		}
	}
	if executor.WantsSyncWrites(named{}, "x.y") {
		t.Error("an executor without SyncWrites wants synchronous writes")
	}
}
