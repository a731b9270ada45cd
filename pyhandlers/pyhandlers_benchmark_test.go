package pyhandlers

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/testdb"
)

// memStatus is an in-memory TaskStatus: the benchmark measures what the
// executors add per task, not the database both paths share.
type memStatus struct {
	mu       sync.Mutex
	status   djangodb.Status
	response []byte
	mime     string
}

func (m *memStatus) Info(context.Context) (executor.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return executor.Info{Type: "Bench", Identifier: "b", Status: m.status}, nil
}
func (m *memStatus) Identifier() (string, string) { return "Bench", "b" }
func (m *memStatus) Status(context.Context) (djangodb.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status, nil
}
func (m *memStatus) set(s djangodb.Status) error {
	m.mu.Lock()
	m.status = s
	m.mu.Unlock()
	return nil
}
func (m *memStatus) SetSuccess(context.Context, string) error { return m.set(djangodb.Finished) }
func (m *memStatus) SetFailure(context.Context, string) error { return m.set(djangodb.Failed) }
func (m *memStatus) SetPaused(context.Context, string) error  { return m.set(djangodb.Paused) }
func (m *memStatus) SetRunning(context.Context, string) error { return m.set(djangodb.Running) }
func (m *memStatus) StoreResponse(_ context.Context, data []byte, mime string) error {
	m.mu.Lock()
	m.response, m.mime = append(m.response[:0], data...), mime
	m.mu.Unlock()
	return nil
}

// BenchmarkTaskOverhead runs the same trivial task through a Go handler
// (gohandlers.Registry) and through the CPython pool and the gpython
// executor, alternating, and reports each path's time per task and what the
// Python paths add over the Go path (target: under 1 ms for CPython).
func BenchmarkTaskOverhead(b *testing.B) {
	py := testdb.Python(b)
	abs, err := filepath.Abs(filepath.Join("testdata", "py"))
	if err != nil {
		b.Fatal(err)
	}
	gabs, _ := filepath.Abs(filepath.Join("testdata", "gpy"))
	pool := startPool(b, Config{Python: py, PythonPath: []string{abs}, Workers: 1,
		Env: []string{"PYTHONDONTWRITEBYTECODE=1"}, Logger: newLogRecorder().logger()})
	em, err := NewEmbedded(Config{PythonPath: []string{gabs}, Workers: 1, Logger: newLogRecorder().logger()})
	if err != nil {
		b.Fatal(err)
	}

	reg := gohandlers.NewRegistry()
	reg.SetLogger(newLogRecorder().logger())
	noop := func(context.Context, executor.TaskStatus, any) error { return nil }
	echo := func(ctx context.Context, ts executor.TaskStatus, input any) error {
		return ts.StoreResponse(ctx, []byte(fmt.Sprint(input)), "text/plain")
	}
	for path, h := range map[string]gohandlers.Handler{"bench.noop": noop, "bench.echo": echo} {
		if err := reg.Register(path, h); err != nil {
			b.Fatal(err)
		}
	}

	cases := []struct {
		name           string
		goPath, pyPath string
		gpyPath        string
	}{
		{"noop", "bench.noop", "atpd_fixtures.noop", "gpy_fixtures.noop"},
		{"store_response", "bench.echo", "atpd_fixtures.echo", "gpy_fixtures.echo"},
	}
	input := envelope([]byte("\x80\x02K\x01K\x02K\x03\x87q\x00.")) // (1, 2, 3), protocol 2
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			status := &memStatus{status: djangodb.Running}
			task := func(path string) *executor.Task {
				return &executor.Task{InstanceID: 1, Type: "Bench", Identifier: "b", Handler: path, Input: input, HasInput: true, Deadline: time.Now().Add(time.Hour)}
			}
			goTask, pyTask, gpyTask := task(c.goPath), task(c.pyPath), task(c.gpyPath)
			run := func(ex executor.Executor, t *executor.Task) time.Duration {
				began := time.Now()
				if err := ex.Execute(ctx, t, status); err != nil {
					b.Fatalf("%s: %v", t.Handler, err)
				}
				return time.Since(began)
			}
			// Warm up: the worker imports the handler, gpython compiles it.
			run(pool, pyTask)
			run(em, gpyTask)
			var goDur, pyDur, gpyDur time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				goDur += run(reg, goTask)
				pyDur += run(pool, pyTask)
				gpyDur += run(em, gpyTask)
			}
			n := float64(b.N)
			b.ReportMetric(float64(goDur.Nanoseconds())/n, "go-ns/task")
			b.ReportMetric(float64(pyDur.Nanoseconds())/n, "cpython-ns/task")
			b.ReportMetric(float64(gpyDur.Nanoseconds())/n, "gpython-ns/task")
			b.ReportMetric(float64((pyDur-goDur).Nanoseconds())/n, "cpython-overhead-ns/task")
			b.ReportMetric(float64((gpyDur-goDur).Nanoseconds())/n, "gpython-overhead-ns/task")
		})
	}
}
