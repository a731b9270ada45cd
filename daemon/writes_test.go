package daemon

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
)

// writeFaults fails the Complete calls that carry a handler's writes (a
// response, a status change) with a chosen error a number of times.
type writeFaults struct {
	*flakyStore
	err   error
	fails atomic.Int32 // failures left
}

func (w *writeFaults) Complete(ctx context.Context, cs []djangodb.Completion) ([]djangodb.CompletionResult, error) {
	for _, c := range cs {
		if len(c.Writes) > 0 && w.fails.Add(-1) >= 0 {
			return nil, w.err
		}
	}
	return w.flakyStore.Complete(ctx, cs)
}

// TestHandlerWritesRetried: a handler's TaskStatus writes that fail because
// the database is away are retried until they commit, so the task ends as
// the handler meant. Writes the database refuses for good are not retried:
// held back (the default), they fail the task with a message that says
// so; committed at once (SyncTaskWrites), the error reaches the handler.
func TestHandlerWritesRetried(t *testing.T) {
	head := []rec{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}}
	done := append(slices.Clone(head), rec{djangodb.Finished, "done by the handler"})
	cases := []struct {
		name      string
		sync      bool
		err       error
		retries   int
		wantLog   []rec
		wantReply bool // the handler's StoreResponse returned an error
	}{
		{"dropped connection", false, errors.New("driver: bad connection"), 2, done, false},
		{"dropped connection, sync", true, errors.New("driver: bad connection"), 2, done, false},
		{"server shutting down", false, &pq.Error{Code: "57P01", Message: "terminating connection due to administrator command"}, 2, done, false},
		{"data error", false, &pq.Error{Code: "22001", Message: "value too long"}, 0,
			append(slices.Clone(head), rec{djangodb.Failed, "atpd: the handler's writes could not be stored: pq: value too long (22001)"}), false},
		{"data error, sync", true, &pq.Error{Code: "22001", Message: "value too long"}, 0,
			append(slices.Clone(head), rec{djangodb.Failed, "store failed"}), true},
	}
	b := backends[0]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn := b.make(t, b.cfg)
			ws := watch(openStore(t, dsn, b.cfg, 0))
			store := &writeFaults{flakyStore: &flakyStore{watchStore: ws, failures: map[string]int{}, panics: map[string]int{}}, err: c.err}
			store.fails.Store(2)
			register(t, store, djangodb.TypeSpec{Identifier: "W", Handler: "tests.writes", Timeout: 60})
			var replyFailed atomic.Bool
			handlers := funcs{"tests.writes": func(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error {
				if err := ts.StoreResponse(ctx, []byte("15.0"), "text/plain"); err != nil {
					replyFailed.Store(true)
					return errors.New("store failed")
				}
				return ts.SetSuccess(ctx, "done by the handler")
			}}
			id := enqueue(t, store, "W", "w", pyInput(t, "(1,)"))
			d, logs := newDaemon(t, store, handlers, Config{Workers: 1, SyncTaskWrites: c.sync})
			ws.waitTerminal(t, id)
			d.Stop()
			checkLog(t, store, id, c.wantLog...)
			if got := strings.Count(logs.String(), "store write failed; retrying"); got != c.retries {
				t.Errorf("%d retries logged, want %d", got, c.retries)
			}
			if replyFailed.Load() != c.wantReply {
				t.Errorf("StoreResponse failed: %t, want %t", replyFailed.Load(), c.wantReply)
			}
			r, err := store.Response(ctxT(t), id)
			if got := err == nil && string(r.Data) == "15.0"; got != (c.retries > 0) {
				t.Errorf("response %q, %v; want it stored: %t", r.Data, err, c.retries > 0)
			}
		})
	}
}

func zlibBase64(t testing.TB, data []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestCheckInputSize(t *testing.T) {
	const limit = 64 << 10
	small := zlibBase64(t, []byte("N."))
	cases := []struct {
		name  string
		text  string
		large bool
	}{
		{"small", small, false},
		{"exactly the limit", zlibBase64(t, make([]byte, limit)), false},
		{"one byte over", zlibBase64(t, make([]byte, limit+1)), true},
		{"bomb", zlibBase64(t, make([]byte, 64<<20)), true},
		{"bomb with line breaks", strings.Join(strings.SplitAfter(zlibBase64(t, make([]byte, 1<<20)), "AAAA"), "\n"), true},
		{"bomb as b'...'", "b'" + zlibBase64(t, make([]byte, 1<<20)) + "'", true},
		// Broken envelopes are the executors' to report.
		{"not base64", "this is not base64!", false},
		{"not zlib", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 1<<10)), false},
		{"empty", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkInputSize(c.text, limit)
			if got := errors.Is(err, pickle.ErrTooLarge) && errors.Is(err, executor.ErrInput); got != c.large {
				t.Fatalf("checkInputSize = %v, want too large: %t", err, c.large)
			}
			if c.large && !strings.Contains(err.Error(), "65536 bytes") {
				t.Errorf("message %q does not name the limit", err)
			}
		})
	}
}

// TestInputTooLarge: a zlib bomb fails its task before the executor sees it,
// and the daemon goes on.
func TestInputTooLarge(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		ws := watch(openStore(t, dsn, b.cfg, 0))
		register(t, ws, djangodb.TypeSpec{Identifier: "B", Handler: "tests.ok", Timeout: 60})
		var ran atomic.Int32
		handlers := funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error {
			ran.Add(1)
			return nil
		}}
		bomb := enqueue(t, ws, "B", "bomb", zlibBase64(t, make([]byte, 8<<20)))
		after := enqueue(t, ws, "B", "after", pyInput(t, "(1,)"))
		d, _ := newDaemon(t, ws, handlers, Config{Workers: 1, MaxInputSize: 1 << 20})
		ws.waitTerminal(t, bomb, after)
		d.Stop()
		checkLog(t, ws, bomb, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Failed, "cannot decode input: pickle: pickle too large: decompressed input exceeds 1048576 bytes (max_input_size)"})
		checkLog(t, ws, after, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
		if n := ran.Load(); n != 1 {
			t.Errorf("handler ran %d times, want once (not for the bomb)", n)
		}
	})
}
