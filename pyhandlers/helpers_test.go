package pyhandlers

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// testServerID is the daemon id the tests dequeue with.
const testServerID = 0x1234

// callTimeout bounds each store call of storeStatus, as the daemon's does.
const callTimeout = 10 * time.Second

// storeStatus is executor.TaskStatus over a real store, as the daemon
// provides it.
type storeStatus struct {
	store djangodb.Store
	task  *executor.Task
}

func (s *storeStatus) Info(ctx context.Context) (executor.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	inst, err := s.store.Instance(ctx, s.task.InstanceID)
	if err != nil {
		return executor.Info{}, err
	}
	return executor.Info{Type: inst.Type, Identifier: inst.Identifier, Status: inst.Status}, nil
}

func (s *storeStatus) Identifier() (string, string) { return s.task.Type, s.task.Identifier }

func (s *storeStatus) Status(ctx context.Context) (djangodb.Status, error) {
	info, err := s.Info(ctx)
	return info.Status, err
}

func (s *storeStatus) set(ctx context.Context, st djangodb.Status, message string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return djangodb.MustTrackerOf(s.store).SetStatus(ctx, s.task.InstanceID, st, message)
}

func (s *storeStatus) SetSuccess(ctx context.Context, m string) error {
	return s.set(ctx, djangodb.Finished, m)
}
func (s *storeStatus) SetFailure(ctx context.Context, m string) error {
	return s.set(ctx, djangodb.Failed, m)
}
func (s *storeStatus) SetPaused(ctx context.Context, m string) error {
	return s.set(ctx, djangodb.Paused, m)
}
func (s *storeStatus) SetRunning(ctx context.Context, m string) error {
	return s.set(ctx, djangodb.Running, m)
}

func (s *storeStatus) StoreResponse(ctx context.Context, data []byte, mime string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return djangodb.MustTrackerOf(s.store).SetResponse(ctx, s.task.InstanceID, data, mime)
}

// NullWrite is the daemon's: the database's refusal of the write of None
// (executor.NullWriter).
func (s *storeStatus) NullWrite(ctx context.Context, w djangodb.Write) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return djangodb.WriteNull(ctx, s.store, s.task.InstanceID, w)
}

// env is one test's database with its store.
type env struct {
	dsn   string
	cfg   testdb.Config
	store djangodb.Store
	py    string
	root  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, "sqlite")
}

// newEnvOn is newEnv on "sqlite" or "postgres".
func newEnvOn(t testing.TB, db string) *env {
	t.Helper()
	cfg := testdb.Config{UseTZ: true}
	py := testdb.Python(t)
	var dsn string
	switch db {
	case "sqlite":
		dsn = testdb.SQLite(t, cfg)
	case "postgres":
		dsn = testdb.Postgres(t, cfg)
	default:
		t.Fatalf("unknown database %q", db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	store, err := djangodb.Open(ctx, dsn, testdb.Options(cfg))
	if err != nil {
		t.Fatalf("open store %s: %v", dsn, err)
	}
	t.Cleanup(func() { store.Close() })
	return &env{dsn: dsn, cfg: cfg, store: store, py: py, root: testdb.RepoRoot(t)}
}

// fixturePath is what the pools' sys.path gets: the test fixtures and the
// integration project (tools.atp_demo, tools.golden_handlers, processes).
func (e *env) fixturePath(t testing.TB) []string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", "py"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{abs, filepath.Join(e.root, "integration")}
}

// poolConfig is a small pool on the test interpreter.
func (e *env) poolConfig(t testing.TB, logs *logRecorder) Config {
	t.Helper()
	return Config{
		Python:     e.py,
		PythonPath: e.fixturePath(t),
		Workers:    1,
		KillGrace:  2 * time.Second,
		Env:        []string{"PYTHONDONTWRITEBYTECODE=1"},
		Logger:     slog.New(logs),
	}
}

// startPool starts a pool that the test stops at its end.
func startPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new pool: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("start pool: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

// produce runs integration/producer.py batch with one command per element
// and returns each command's result; a failing command fails the test.
func (e *env) produce(t testing.TB, cmds ...[]any) []json.RawMessage {
	t.Helper()
	return e2e.MustBatch(e2e.NewProducer(t, e.dsn, e.cfg), cmds...)
}

// register registers a task type through the Go store.
func (e *env) register(t testing.TB, typ, handler string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := e.store.RegisterType(ctx, djangodb.TypeSpec{Identifier: typ, Handler: handler, Timeout: 60}); err != nil {
		t.Fatalf("register %s: %v", typ, err)
	}
}

// enqueueRaw enqueues a task whose input is the given pickle bytes.
func (e *env) enqueueRaw(t testing.TB, typ, ident string, pickle []byte) {
	t.Helper()
	e.enqueueText(t, typ, ident, envelope(pickle))
}

func (e *env) enqueueText(t testing.TB, typ, ident, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := e.store.Enqueue(ctx, typ, ident, text, ""); err != nil {
		t.Fatalf("enqueue %s::%s: %v", typ, ident, err)
	}
}

// envelope is base64(zlib(data)), the stored input form.
func envelope(data []byte) string {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(data)
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// outcome is one task run as the daemon runs it.
type outcome struct {
	id   int64
	task *executor.Task
	err  error
	took time.Duration
}

// runNext does what the daemon does with the oldest waiting task: dequeue,
// start, Execute, then FINISHED if not finished, or FAILED with err.Error();
// a context error leaves the task as it is (the daemon re-enqueues it).
func (e *env) runNext(t testing.TB, ex executor.Executor, ctx context.Context) outcome {
	t.Helper()
	return e.runNextWith(t, ex, ctx, func(s executor.TaskStatus) executor.TaskStatus { return s })
}

func (e *env) runNextWith(t testing.TB, ex executor.Executor, ctx context.Context, wrap func(executor.TaskStatus) executor.TaskStatus) outcome {
	t.Helper()
	dbctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	ids, err := djangodb.MustTrackerOf(e.store).Dequeue(dbctx, testServerID, 1, "")
	if err != nil {
		t.Fatalf("dequeue: %v", err)
	}
	st, err := djangodb.MustTrackerOf(e.store).Start(dbctx, ids[0], "")
	if err != nil {
		t.Fatalf("start %d: %v", ids[0], err)
	}
	task := &executor.Task{
		InstanceID: st.InstanceID, Type: st.Type, Identifier: st.Identifier, Handler: st.Handler,
		Input: st.Input, HasInput: st.HasInput, Deadline: st.StartedAt.Add(st.Timeout),
	}
	began := time.Now()
	xerr := ex.Execute(ctx, task, wrap(&storeStatus{store: e.store, task: task}))
	took := time.Since(began)
	switch {
	case xerr == nil:
		_, err = djangodb.MustTrackerOf(e.store).FinishIfNotFinished(dbctx, task.InstanceID, "")
	case errors.Is(xerr, context.Canceled), errors.Is(xerr, context.DeadlineExceeded), errors.Is(xerr, ErrStopped):
	default:
		err = djangodb.MustTrackerOf(e.store).SetStatus(dbctx, task.InstanceID, djangodb.Failed, xerr.Error())
	}
	if err != nil {
		t.Fatalf("finish %s: %v", task.Ref(), err)
	}
	return outcome{id: task.InstanceID, task: task, err: xerr, took: took}
}

// logEntry is a log record without its time.
type logEntry struct {
	Status  djangodb.Status
	Message string
}

func (e *env) log(t testing.TB, id int64) []logEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	recs, err := e.store.Log(ctx, id)
	if err != nil {
		t.Fatalf("log of %d: %v", id, err)
	}
	out := make([]logEntry, len(recs))
	for i, r := range recs {
		out[i] = logEntry{r.Status, r.Message}
	}
	return out
}

func (e *env) response(t testing.TB, id int64) djangodb.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	r, err := e.store.Response(ctx, id)
	if err != nil {
		t.Fatalf("response of %d: %v", id, err)
	}
	return r
}

func (e *env) status(t testing.TB, id int64) djangodb.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	inst, err := e.store.Instance(ctx, id)
	if err != nil {
		t.Fatalf("instance %d: %v", id, err)
	}
	return inst.Status
}

// logs: the reference sequence of a task that ran and ended with last.
func ranAndEnded(last djangodb.Status, message string) []logEntry {
	return []logEntry{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}, {last, message}}
}

func sameLog(a, b []logEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// logRecorder is a slog.Handler keeping every record with its attributes
// flattened, for assertions on what was logged and with which task.
type logRecorder struct {
	mu    *sync.Mutex
	recs  *[]logged
	attrs []slog.Attr
}

type logged struct {
	Level   slog.Level
	Message string
	Attrs   map[string]string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), recs: new([]logged)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l := logged{Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		l.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		l.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, l)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{mu: h.mu, recs: h.recs, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// find returns the records with message msg whose attributes include match.
func (h *logRecorder) find(msg string, match map[string]string) []logged {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logged
next:
	for _, l := range *h.recs {
		if l.Message != msg {
			continue
		}
		for k, v := range match {
			if l.Attrs[k] != v {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func (h *logRecorder) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, l := range *h.recs {
		fmt.Fprintf(&b, "%v %q %v\n", l.Level, l.Message, l.Attrs)
	}
	return b.String()
}
