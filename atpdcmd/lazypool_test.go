package atpdcmd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eoxserver/atpd/pyhandlers"
)

// A task that arrives while another one is starting Python waits for that
// start or for its own context, whichever ends first; it does not queue on
// a lock for the whole start-up.
func TestLazyPoolWaitersHonourTheirContext(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	slow := filepath.Join(dir, "python3")
	// An "interpreter" that hangs until the test lets it fail.
	script := "#!/bin/sh\nwhile [ ! -e " + release + " ]; do sleep 0.02; done\nexit 1\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l := &lazyPool{cfg: pyhandlers.Config{Python: slow, Workers: 1, StartTimeout: time.Minute}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Cleanup(l.Stop)

	first := make(chan error, 1)
	go func() {
		_, err := l.get(context.Background())
		first <- err
	}()
	waitFor(t, 30*time.Second, func() string { return "the first task to start Python" }, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.starting != nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter during start-up: err = %v, want its own deadline", err)
	}
	select {
	case err := <-first:
		t.Fatalf("start-up ended before the interpreter did: %v", err)
	default:
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err == nil {
		t.Fatal("a failing interpreter started a pool")
	}
	// Within lazyRetry, later tasks get the last error at once.
	if _, err := l.get(context.Background()); err == nil {
		t.Fatal("get after a failed start succeeded")
	}
}
