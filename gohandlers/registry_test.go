package gohandlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

func nop(context.Context, executor.TaskStatus, any) error { return nil }

func TestRegister(t *testing.T) {
	tests := []struct {
		path string
		want error
	}{
		{"tools.atp_demo.handler", nil},
		{"a.b", nil},
		{"_p.m2.f_", nil},
		{"ünï.cödé", nil}, // Python 3 identifiers may be non-ASCII
		{"handler", ErrBadPath},
		{"", ErrBadPath},
		{"a..b", ErrBadPath},
		{".a.b", ErrBadPath},
		{"a.b.", ErrBadPath},
		{"a.2b", ErrBadPath},
		{"a.b-c", ErrBadPath},
		{"a b.c", ErrBadPath},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := NewRegistry()
			err := r.Register(tt.path, nop)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Register(%q) = %v, want %v", tt.path, err, tt.want)
			}
			if tt.want != nil {
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.path)) {
					t.Errorf("error %q does not name the path", err)
				}
				return
			}
			if err := r.Register(tt.path, nop); !errors.Is(err, ErrDuplicate) {
				t.Errorf("second Register = %v, want ErrDuplicate", err)
			}
			if !r.Has(tt.path) {
				t.Errorf("Has(%q) = false after Register", tt.path)
			}
		})
	}
	if err := NewRegistry().Register("a.b", nil); err == nil {
		t.Error("Register accepted a nil handler")
	}
}

func TestLookupAndPaths(t *testing.T) {
	r := NewRegistry()
	for _, p := range []string{"z.h", "a.h", "m.h"} {
		if err := r.Register(p, nop); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(r.Paths()); got != "[a.h m.h z.h]" {
		t.Errorf("Paths = %s", got)
	}
	if _, ok := r.Lookup("m.h"); !ok {
		t.Error("Lookup(m.h) failed")
	}
	if _, ok := r.Lookup("m.x"); ok {
		t.Error("Lookup(m.x) found something")
	}
	if !Default.Has(DemoPath) || !NewDefault().Has(DemoPath) {
		t.Errorf("the default registry lacks %s", DemoPath)
	}
	if NewDefault() == Default {
		t.Error("NewDefault returned the shared registry")
	}
}

func TestExecute(t *testing.T) {
	input, err := pickle.Encode(pickle.Tuple{int64(1), "two"})
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	r := NewRegistry()
	r.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	var got any
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Register("t.echo", func(_ context.Context, _ executor.TaskStatus, in any) error { got = in; return nil }))
	must(r.Register("t.panics", func(context.Context, executor.TaskStatus, any) error { panic("boom") }))
	must(r.Register("t.fails", func(context.Context, executor.TaskStatus, any) error { return errors.New("missing ['k']") }))

	tests := []struct {
		name     string
		task     executor.Task
		sentinel error
		message  string // the task's FAILED message; "" for success
	}{
		{"decodes the input", executor.Task{Handler: "t.echo", Input: input, HasInput: true}, nil, ""},
		{"unknown path", executor.Task{Handler: "t.nothing", Input: input, HasInput: true}, executor.ErrNoHandler,
			"gohandlers: no handler for t.nothing"},
		// The reference daemon's messages (Django, binascii, zlib).
		{"no input row", executor.Task{Handler: "t.echo"}, ErrInput, "Input matching query does not exist."},
		{"bad base64", executor.Task{Handler: "t.echo", Input: "this is not base64!", HasInput: true}, pickle.ErrBase64, "Incorrect padding"},
		{"bad zlib", executor.Task{Handler: "t.echo", Input: "aGVsbG8=", HasInput: true}, pickle.ErrZlib, "Error -3 while decompressing data: incorrect header check"},
		{"empty input", executor.Task{Handler: "t.echo", Input: "", HasInput: true}, pickle.ErrZlib, "Error -5 while decompressing data: incomplete or truncated stream"},
		{"bad pickle: Python's to read", executor.Task{Handler: "t.echo", Input: pickle.EncodeRaw([]byte("\x80\x02X\x05\x00\x00\x00ab")), HasInput: true}, executor.ErrUnsupported,
			"cannot decode input: pickle: BINUNICODE at offset 2: declared length 5 exceeds the 2 bytes left"},
		{"handler error", executor.Task{Handler: "t.fails", Input: input, HasInput: true}, nil, "missing ['k']"},
		{"panic", executor.Task{Handler: "t.panics", Input: input, HasInput: true, Type: "P", Identifier: "p1"}, nil,
			"handler t.panics panicked: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := tt.task
			err := r.Execute(context.Background(), &task, &recorder{})
			if tt.message == "" {
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Execute succeeded")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tt.sentinel)
			}
			if tt.sentinel == pickle.ErrBase64 || tt.sentinel == pickle.ErrZlib || tt.sentinel == executor.ErrUnsupported {
				if !errors.Is(err, ErrInput) {
					t.Errorf("error %q: want ErrInput", err)
				}
			}
			if err.Error() != tt.message {
				t.Errorf("message %q, want %q", err, tt.message)
			}
		})
	}
	if fmt.Sprint(got) != fmt.Sprint(pickle.Tuple{int64(1), "two"}) {
		t.Errorf("handler got %#v", got)
	}
	var pe *PanicError
	task := executor.Task{Handler: "t.panics", Input: input, HasInput: true}
	if err := r.Execute(context.Background(), &task, &recorder{}); !errors.As(err, &pe) || len(pe.Stack) == 0 {
		t.Errorf("panic error %v lacks a stack", err)
	}
	if !strings.Contains(logs.String(), "panic while running a task") || !strings.Contains(logs.String(), "type=P identifier=p1") {
		t.Errorf("panic not logged with the task: %s", logs.String())
	}
}
