package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/internal/testdb"
)

// waitLimit guards every wait on a signal so that a broken daemon fails the
// test instead of hanging it.
const waitLimit = 60 * time.Second

// backend makes a fresh Django-migrated database.
type backend struct {
	name string
	make func(t testing.TB, c testdb.Config) string
	cfg  testdb.Config
}

var backends = []backend{
	{"postgres", testdb.Postgres, testdb.Config{UseTZ: true}},
	{"sqlite", testdb.SQLite, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
}

func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openStore opens a store on dsn; maxQueue 0 keeps the tracker's limit.
func openStore(t testing.TB, dsn string, c testdb.Config, maxQueue int) djangodb.Store {
	t.Helper()
	opts := testdb.Options(c)
	opts.MaxQueueSize = maxQueue
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := djangodb.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("open store %s: %v", djangodb.RedactDSN(dsn), err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	inputMu    sync.Mutex
	inputCache = map[string]string{}
)

// pyInput returns the stored input text a Python producer writes for a
// Python literal: base64(zlib(pickle.dumps(literal, protocol 2))).
func pyInput(t testing.TB, literal string) string {
	t.Helper()
	inputMu.Lock()
	defer inputMu.Unlock()
	if s, ok := inputCache[literal]; ok {
		return s
	}
	py := testdb.Python(t)
	out, err := exec.Command(py, "-c", `
import ast, base64, pickle, sys, zlib
sys.stdout.write(base64.b64encode(zlib.compress(pickle.dumps(ast.literal_eval(sys.argv[1]), 2))).decode())
`, literal).Output()
	if err != nil {
		t.Fatalf("pickle %s with python: %v", literal, err)
	}
	inputCache[literal] = string(out)
	return string(out)
}

func register(t testing.TB, s djangodb.Store, spec djangodb.TypeSpec) djangodb.TaskType {
	t.Helper()
	typ, err := s.RegisterType(ctxT(t), spec)
	if err != nil {
		t.Fatalf("register %s: %v", spec.Identifier, err)
	}
	return typ
}

func enqueue(t testing.TB, s djangodb.Store, typ, ident, input string) int64 {
	t.Helper()
	id, err := s.Enqueue(ctxT(t), typ, ident, input, "")
	if err != nil {
		t.Fatalf("enqueue %s %s: %v", typ, ident, err)
	}
	return id
}

type rec struct {
	Status  djangodb.Status
	Message string
}

func (r rec) String() string { return fmt.Sprintf("(%d,%q)", int(r.Status), r.Message) }

func logOf(t testing.TB, s djangodb.Store, id int64) []rec {
	t.Helper()
	log, err := s.Log(ctxT(t), id)
	if err != nil {
		t.Fatalf("log of instance %d: %v", id, err)
	}
	out := make([]rec, len(log))
	for i, r := range log {
		out[i] = rec{r.Status, r.Message}
	}
	return out
}

func checkLog(t testing.TB, s djangodb.Store, id int64, want ...rec) {
	t.Helper()
	got := logOf(t, s, id)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("log of instance %d:\n got %v\nwant %v", id, got, want)
	}
}

// hub is the state watchStores share, so that a test can await the writes
// of several daemons on one database.
type hub struct {
	mu        sync.Mutex
	changed   chan struct{}
	status    map[int64]djangodb.Status
	starts    map[int64]int
	deleted   map[int64]bool
	sweeps    int
	dequeues  []int // limits asked for (Dequeue or Claim)
	completes []int // sizes of committed Complete calls
	ended     int   // instances that reached FINISHED or FAILED
}

// set records a status; call it with mu held.
func (w *hub) set(id int64, s djangodb.Status) {
	if s.Terminal() && !w.status[id].Terminal() {
		w.ended++
	}
	w.status[id] = s
}

func newHub() *hub {
	return &hub{changed: make(chan struct{}), status: map[int64]djangodb.Status{},
		starts: map[int64]int{}, deleted: map[int64]bool{}}
}

// watchStore wraps a real store and signals every write the daemon commits,
// so tests await database states instead of sleeping.
type watchStore struct {
	djangodb.Store
	*hub
	// hooks, called without the hub's lock held
	beforeDequeue func(limit int)
	afterDequeue  func(ids []int64)
}

func watch(s djangodb.Store) *watchStore { return &watchStore{Store: s, hub: newHub()} }

func (w *hub) note(f func()) {
	w.mu.Lock()
	f()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// waitFor blocks until cond (called with the lock held) holds.
func (w *hub) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		w.mu.Lock()
		ok := cond()
		ch := w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-limit.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s; statuses %v", waitLimit, what, w.status)
		}
	}
}

func (w *hub) waitStatus(t testing.TB, id int64, want ...djangodb.Status) {
	t.Helper()
	w.waitFor(t, fmt.Sprintf("instance %d to reach %v", id, want), func() bool {
		for _, s := range want {
			if w.status[id] == s {
				return true
			}
		}
		return false
	})
}

func (w *hub) waitTerminal(t testing.TB, ids ...int64) {
	t.Helper()
	w.waitFor(t, fmt.Sprintf("%d instances to end", len(ids)), func() bool {
		for _, id := range ids {
			if !w.status[id].Terminal() && !w.deleted[id] {
				return false
			}
		}
		return true
	})
}

func (w *watchStore) Dequeue(ctx context.Context, serverID int64, limit int, message string) ([]int64, error) {
	if w.beforeDequeue != nil {
		w.beforeDequeue(limit)
	}
	ids, err := djangodb.MustTrackerOf(w.Store).Dequeue(ctx, serverID, limit, message)
	w.note(func() {
		w.dequeues = append(w.dequeues, limit)
		for _, id := range ids {
			w.status[id] = djangodb.Scheduled
		}
	})
	if w.afterDequeue != nil {
		w.afterDequeue(ids)
	}
	return ids, err
}

// Claim is watched as Dequeue is: the hooks see its limit and the ids it
// claimed.
func (w *watchStore) Claim(ctx context.Context, serverID int64, limit int, message string) ([]djangodb.StartedTask, error) {
	if w.beforeDequeue != nil {
		w.beforeDequeue(limit)
	}
	sts, err := w.Store.Claim(ctx, serverID, limit, message)
	var ids []int64
	for _, st := range sts {
		ids = append(ids, st.InstanceID)
	}
	w.note(func() {
		w.dequeues = append(w.dequeues, limit)
		for _, st := range sts {
			if st.Undecodable != nil {
				w.status[st.InstanceID] = djangodb.Failed // never started
				continue
			}
			w.status[st.InstanceID] = djangodb.Running
			w.starts[st.InstanceID]++
		}
	})
	if w.afterDequeue != nil {
		w.afterDequeue(ids)
	}
	return sts, err
}

func (w *watchStore) Complete(ctx context.Context, cs []djangodb.Completion) ([]djangodb.CompletionResult, error) {
	res, err := w.Store.Complete(ctx, cs)
	if err == nil {
		w.note(func() {
			w.completes = append(w.completes, len(cs))
			for _, r := range res {
				switch {
				case r.Err == nil:
					w.set(r.InstanceID, r.Status)
				case errors.Is(r.Err, djangodb.ErrNotFound):
					w.deleted[r.InstanceID] = true
				}
			}
		})
	}
	return res, err
}

func (w *watchStore) Start(ctx context.Context, id int64, message string) (djangodb.StartedTask, error) {
	st, err := djangodb.MustTrackerOf(w.Store).Start(ctx, id, message)
	if err == nil {
		w.note(func() { w.status[id] = djangodb.Running; w.starts[id]++ })
	}
	return st, err
}

func (w *watchStore) SetStatus(ctx context.Context, id int64, s djangodb.Status, message string) error {
	err := djangodb.MustTrackerOf(w.Store).SetStatus(ctx, id, s, message)
	if err == nil {
		w.note(func() { w.set(id, s) })
	}
	return err
}

func (w *watchStore) FinishIfNotFinished(ctx context.Context, id int64, message string) (bool, error) {
	wrote, err := djangodb.MustTrackerOf(w.Store).FinishIfNotFinished(ctx, id, message)
	switch {
	case err == nil && wrote:
		w.note(func() { w.set(id, djangodb.Finished) })
	case errors.Is(err, djangodb.ErrNotFound):
		w.note(func() { w.deleted[id] = true })
	}
	return wrote, err
}

func (w *watchStore) Reenqueue(ctx context.Context, id int64, message string) error {
	err := djangodb.MustTrackerOf(w.Store).Reenqueue(ctx, id, message)
	if err == nil {
		w.note(func() { w.status[id] = djangodb.Accepted })
	}
	return err
}

func (w *watchStore) Release(ctx context.Context, id int64, starts int, to djangodb.Status, message string) (bool, error) {
	wrote, err := w.Store.Release(ctx, id, starts, to, message)
	switch {
	case err == nil && wrote:
		w.note(func() { w.set(id, to) })
	case errors.Is(err, djangodb.ErrNotFound):
		w.note(func() { w.deleted[id] = true })
	}
	return wrote, err
}

func (w *watchStore) SweepZombies(ctx context.Context, message string) (djangodb.SweepResult, error) {
	res, err := w.Store.SweepZombies(ctx, message)
	w.note(func() {
		w.sweeps++
		for _, r := range res.Reenqueued {
			w.status[r.ID] = djangodb.Accepted
		}
		for _, r := range res.Unstuck {
			w.status[r.ID] = djangodb.Accepted
		}
		for _, r := range res.Failed {
			w.set(r.ID, djangodb.Failed)
		}
	})
	return res, err
}

func (w *watchStore) DeleteRetired(ctx context.Context) ([]djangodb.InstanceRef, error) {
	refs, err := w.Store.DeleteRetired(ctx)
	w.note(func() {
		for _, r := range refs {
			w.deleted[r.ID] = true
		}
	})
	return refs, err
}

// funcs is an executor of test handlers keyed by handler path.
type funcs map[string]func(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error

func (f funcs) Execute(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error {
	h, ok := f[task.Handler]
	if !ok {
		return fmt.Errorf("test: %w for %s", executor.ErrNoHandler, task.Handler)
	}
	return h(ctx, task, ts)
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newDaemon starts a daemon with test-friendly defaults; it is aborted at
// cleanup if the test did not stop it.
func newDaemon(t testing.TB, s djangodb.Store, ex executor.Executor, cfg Config) (*Daemon, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.ServerID == 0 {
		cfg.ServerID = NewServerID()
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, testWriter{t})
	}
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := New(s, ex, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		d.Abort()
		if strings.Contains(logs.String(), "level=ERROR") && t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return d, logs
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// gate lets a test hold handlers and learn when they started.
type gate struct {
	started chan int64
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan int64, 1000), release: make(chan struct{})} }

// hold is a handler that signals its start and returns when released or
// cancelled.
func (g *gate) hold(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error {
	g.started <- task.InstanceID
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) awaitStarts(t testing.TB, n int) []int64 {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	var ids []int64
	for len(ids) < n {
		select {
		case id := <-g.started:
			ids = append(ids, id)
		case <-limit.C:
			t.Fatalf("only %d of %d handlers started", len(ids), n)
		}
	}
	return ids
}

func awaitDone(t testing.TB, d *Daemon) {
	t.Helper()
	select {
	case <-d.Done():
	case <-time.After(waitLimit):
		t.Fatal("daemon did not end")
	}
}

// noneInFlight checks that no instance is left SCHEDULED or RUNNING and that
// every ACCEPTED one has a waiting task row.
func noneInFlight(t testing.TB, s djangodb.Store) {
	t.Helper()
	insts, err := s.Instances(ctxT(t), djangodb.InstanceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for _, in := range insts {
		switch in.Status {
		case djangodb.Scheduled, djangodb.Running, djangodb.Paused:
			t.Errorf("instance %d %s::%s left %s", in.ID, in.Type, in.Identifier, in.Status)
		case djangodb.Accepted:
			accepted++
		}
	}
	q, err := s.QueueStats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if q.Waiting != accepted {
		t.Errorf("%d ACCEPTED instances but %d waiting task rows", accepted, q.Waiting)
	}
}

var errBoom = errors.New("missing ['k']")
