package pyhandlers

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

//go:embed worker.py
var workerScript []byte

// Pool runs Python handlers in persistent CPython worker processes, one task
// per worker at a time. It implements executor.Executor.
type Pool struct {
	cfg Config
	log *slog.Logger
	env []string

	slots    chan struct{} // one per busy worker
	stopping chan struct{}
	readers  sync.WaitGroup // output readers of every worker ever started

	mu      sync.Mutex
	started bool
	stopped bool
	dir     string // holds the worker script
	script  string
	idle    []*worker
	live    map[*worker]struct{}
}

var _ executor.Executor = (*Pool)(nil)

// New returns a pool for cfg; Start must be called before Execute.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Pool{
		cfg:      cfg,
		log:      cfg.Logger.With("executor", "cpython"),
		slots:    make(chan struct{}, cfg.Workers),
		stopping: make(chan struct{}),
		live:     make(map[*worker]struct{}),
	}
	p.env = cfg.environ()
	return p, nil
}

// environ is the environment of the Python processes cfg (with its
// defaults) starts: the daemon's own plus cfg.Env.
func (c Config) environ() []string {
	env := os.Environ()
	// Live output in the log, and a known encoding for it: Python 2 would
	// otherwise fail to print non-ASCII text to a pipe.
	if _, ok := os.LookupEnv("PYTHONUNBUFFERED"); !ok {
		env = append(env, "PYTHONUNBUFFERED=1")
	}
	if _, ok := os.LookupEnv("PYTHONIOENCODING"); !ok {
		env = append(env, "PYTHONIOENCODING=utf-8")
	}
	env = append(env, "ATPD_MAX_FRAME="+strconv.Itoa(c.MaxMessageSize+frameSlack))
	return append(env, c.Env...)
}

// Start writes the worker script to a temporary directory and starts one
// worker, so that a wrong interpreter, path or settings module is reported
// now rather than by the first task.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("pyhandlers: pool already started")
	}
	p.started = true
	p.mu.Unlock()

	dir, err := os.MkdirTemp("", "atpd-pyworker-")
	if err != nil {
		return fmt.Errorf("pyhandlers: worker script: %w", err)
	}
	script := filepath.Join(dir, "atpd_worker.py")
	if err := os.WriteFile(script, workerScript, 0o600); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("pyhandlers: worker script: %w", err)
	}
	p.mu.Lock()
	p.dir, p.script = dir, script
	p.mu.Unlock()

	w, err := p.spawn(ctx)
	if err != nil {
		p.Stop()
		return err
	}
	p.mu.Lock()
	p.idle = append(p.idle, w)
	p.mu.Unlock()
	p.log.Info("python handler pool started", "python", p.cfg.Python, "workers", p.cfg.Workers,
		"python_path", strings.Join(p.cfg.PythonPath, string(os.PathListSeparator)), "settings_module", p.cfg.SettingsModule)
	return nil
}

// Stop terminates every worker (SIGTERM, SIGKILL after KillGrace) and
// waits for them. Tasks still running return ErrStopped.
func (p *Pool) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.stopping)
	all := make([]*worker, 0, len(p.live))
	for w := range p.live {
		all = append(all, w)
	}
	p.idle = nil
	dir := p.dir
	p.mu.Unlock()

	var wg sync.WaitGroup
	for _, w := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stop(false)
		}()
	}
	wg.Wait()
	// Output readers end when the last holder of the pipes exits; a
	// subprocess that left the worker's process group may keep them open.
	done := make(chan struct{})
	go func() {
		p.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(p.cfg.KillGrace):
		p.log.Warn("python worker output still open after stop; a handler's subprocess outlived its worker")
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	if len(all) > 0 {
		p.log.Info("python handler pool stopped", "workers", len(all))
	}
}

// register records a new worker unless the pool is stopping.
func (p *Pool) register(w *worker) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrStopped
	}
	p.live[w] = struct{}{}
	p.readers.Add(2)
	return nil
}

func (p *Pool) unregister(w *worker) {
	p.mu.Lock()
	delete(p.live, w)
	p.mu.Unlock()
}

// acquire returns an idle worker or starts one, waiting while Workers tasks
// run.
func (p *Pool) acquire(ctx context.Context) (*worker, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stopping:
		return nil, ErrStopped
	}
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			<-p.slots
			return nil, ErrStopped
		}
		var w *worker
		if n := len(p.idle); n > 0 {
			w, p.idle = p.idle[n-1], p.idle[:n-1]
		}
		p.mu.Unlock()
		if w == nil {
			break
		}
		if !w.dead() {
			return w, nil
		}
		w.log.Warn("idle python worker died", "error", w.exitError().Error())
		w.stop(false)
	}
	w, err := p.spawn(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return w, nil
}

// release returns a worker after a task, replacing it when it is broken or
// has run MaxTasksPerWorker tasks.
func (p *Pool) release(w *worker) {
	defer func() { <-p.slots }()
	recycle := p.cfg.MaxTasksPerWorker > 0 && w.tasks >= p.cfg.MaxTasksPerWorker
	if !w.broken && !recycle && !w.dead() {
		p.mu.Lock()
		if !p.stopped {
			p.idle = append(p.idle, w)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	if recycle && !w.broken {
		w.log.Info("replacing python worker", "tasks", w.tasks, "max_tasks_per_worker", p.cfg.MaxTasksPerWorker)
	}
	// The slot is free at once; a replacement may start while this one
	// exits, which KillGrace bounds.
	go w.stop(!w.broken && !w.dead())
}

// Execute runs task's handler in a worker: handler(taskStatus, input) with
// input decoded by Python as tracker.startTask decoded it (base64, zlib,
// pickle), after checkInput. It returns a *HandlerError when
// the handler raised, an *ExitError when the worker died, ctx's error when
// ctx ended first (the worker is then stopped), and ErrStopped when Stop
// interrupted it.
// SyncWrites: Python handlers keep the tracker's contract, each TaskStatus
// call answers once its write is committed (executor.SyncWriter).
func (p *Pool) SyncWrites(string) bool { return true }

func (p *Pool) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) error {
	p.mu.Lock()
	ready := p.started && !p.stopped
	p.mu.Unlock()
	if !ready {
		return ErrStopped
	}
	if !task.HasInput {
		return executor.ErrNoInputRow
	}
	if err := checkInput(task.Input, p.cfg.MaxMessageSize); err != nil {
		return err
	}
	w, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	err = w.run(ctx, task, []byte(task.Input), status)
	p.release(w)
	return err
}

// run carries out one task's conversation with the worker.
func (w *worker) run(ctx context.Context, task *executor.Task, input []byte, status executor.TaskStatus) error {
	p := w.pool
	w.seq++
	w.tasks++
	seq := w.seq
	log := w.log.With("task_type", task.Type, "task_identifier", task.Identifier, "instance_id", task.InstanceID, "handler", task.Handler)
	out := &taskOutput{log: log, max: int64(p.cfg.MaxOutputLines)}
	w.current.Store(out)
	defer func() {
		w.current.Store(nil)
		if n := out.dropped.Load(); n > 0 {
			log.Warn("python handler output: lines dropped", "dropped_lines", n, "max_output_lines", out.max)
		}
	}()

	// has_input is always 1: Execute fails tasks without input before this,
	// as the reference did; the worker also accepts 0 (it passes None).
	frame := encodeFrame(kindTask,
		[]byte(strconv.FormatUint(seq, 10)),
		[]byte(strconv.FormatInt(task.InstanceID, 10)),
		[]byte(task.Type), []byte(task.Identifier), []byte(task.Handler),
		[]byte("1"), input)
	if err := w.write(ctx, frame); err != nil {
		if ctx.Err() == nil && !w.dead() {
			w.broken = true
			return fmt.Errorf("pyhandlers: send task to python worker %d: %w", w.pid, err)
		}
		// A dead worker or a done ctx is handled below.
	}
	for {
		select {
		case m, ok := <-w.frames:
			if !ok {
				return w.lost(ctx, log)
			}
			switch {
			case m.kind == kindCall && len(m.fields) >= 1:
				reply := w.call(ctx, m, status)
				if err := w.write(ctx, reply); err != nil && ctx.Err() == nil && !w.dead() {
					w.broken = true
					return fmt.Errorf("pyhandlers: reply to python worker %d: %w", w.pid, err)
				}
			case m.kind == kindDone && len(m.fields) == 2:
				w.finish(ctx, seq, m.fields[0], m.fields[1])
				return nil
			case m.kind == kindException && len(m.fields) == 5:
				herr := &HandlerError{Message: string(m.fields[0]), Class: string(m.fields[1]), Traceback: string(m.fields[2])}
				log.Warn("python handler raised an exception", "exception", herr.Class, "error", herr.Message, "traceback", herr.Traceback)
				w.finish(ctx, seq, m.fields[3], m.fields[4])
				return herr
			default:
				w.broken = true
				log.Error("python worker protocol error", "frame_kind", string(rune(m.kind)), "fields", len(m.fields))
				return fmt.Errorf("pyhandlers: python worker %d protocol error: unexpected %q frame with %d fields", w.pid, m.kind, len(m.fields))
			}
		case <-w.exited:
			if m, ok := w.frameAfterExit(); ok && m.kind == kindDone {
				return nil
			}
			if p.isStopping() {
				// Stop killed it; that says nothing about the task.
				return ErrStopped
			}
			return w.died(log)
		case <-ctx.Done():
			w.broken = true
			log.Warn("stopping python worker: task interrupted", "cause", context.Cause(ctx).Error(), "grace", p.cfg.KillGrace)
			return fmt.Errorf("python handler %s interrupted: %w", task.Handler, ctx.Err())
		case <-p.stopping:
			w.broken = true
			return ErrStopped
		}
	}
}

// finish waits for the task's output; a worker whose sync lines do not come
// is replaced so that the next task's output is not blamed on this one.
func (w *worker) finish(ctx context.Context, seq uint64, stdoutOK, stderrOK []byte) {
	if !w.awaitSync(ctx, seq, string(stdoutOK) == "1", string(stderrOK) == "1") && !w.dead() {
		w.log.Warn("python handler output not in sync, replacing worker (did the handler redirect stdout or stderr?)")
		w.broken = true
	}
}

// lost handles the protocol pipe ending during a task.
func (w *worker) lost(ctx context.Context, log *slog.Logger) error {
	w.broken = true
	if w.frameErr != nil && !errors.Is(w.frameErr, os.ErrClosed) {
		select {
		case <-w.exited:
			return w.died(log)
		case <-time.After(exitDrain):
		}
		log.Error("python worker protocol error", "error", w.frameErr)
		return fmt.Errorf("pyhandlers: python worker %d protocol error: %w", w.pid, w.frameErr)
	}
	select {
	case <-w.exited:
		return w.died(log)
	case <-time.After(w.pool.cfg.KillGrace):
		return fmt.Errorf("pyhandlers: python worker %d closed its protocol pipe", w.pid)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pool) isStopping() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

func (w *worker) died(log *slog.Logger) error {
	w.broken = true
	if w.pool.isStopping() {
		return ErrStopped
	}
	err := w.exitError()
	log.Warn("python worker died during a task", "error", err.Error())
	return err
}

// setterStatus is the status each TaskStatus setter writes.
var setterStatus = map[string]djangodb.Status{
	"setSuccess": djangodb.Finished,
	"setFailure": djangodb.Failed,
	"setPaused":  djangodb.Paused,
	"setRunning": djangodb.Running,
}

// call carries out one TaskStatus call and returns the reply frame.
func (w *worker) call(ctx context.Context, m message, status executor.TaskStatus) []byte {
	method, args := string(m.fields[0]), m.fields[1:]
	fail := func(err error) []byte {
		return encodeFrame(kindReplyErr, []byte(err.Error()))
	}
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("pyhandlers: TaskStatus.%s: %d arguments, want %d", method, len(args), n)
		}
		return nil
	}
	var set func(context.Context, string) error
	switch method {
	case "getInfo":
		info, err := status.Info(ctx)
		if err != nil {
			return fail(err)
		}
		return encodeFrame(kindReplyOK, []byte(info.Type), []byte(info.Identifier), []byte(strconv.Itoa(int(info.Status))))
	case "getIdentifier":
		typ, id := status.Identifier()
		return encodeFrame(kindReplyOK, []byte(typ), []byte(id))
	case "getStatus":
		st, err := status.Status(ctx)
		if err != nil {
			return fail(err)
		}
		return encodeFrame(kindReplyOK, []byte(strconv.Itoa(int(st))))
	case "storeResponse":
		if err := want(2); err != nil {
			return fail(err)
		}
		if err := status.StoreResponse(ctx, args[0], string(args[1])); err != nil {
			return fail(err)
		}
		return encodeFrame(kindReplyOK)
	case "nullWrite":
		// The write of None (writeNone): args are the method and, for
		// storeResponse, the response; the reply is the refusal, "" when
		// the write was made.
		if err := want(2); err != nil {
			return fail(err)
		}
		var null djangodb.Write
		if string(args[0]) == "storeResponse" {
			null = djangodb.ResponseWrite(args[1], "")
		} else if st, ok := setterStatus[string(args[0])]; ok {
			null = djangodb.StatusWrite(st, "")
		} else {
			return fail(fmt.Errorf("pyhandlers: TaskStatus.nullWrite: unknown method %q", args[0]))
		}
		refusal, err := writeNone(ctx, status, w.pool.cfg.Database, null)
		if err != nil {
			return fail(err)
		}
		return encodeFrame(kindReplyOK, []byte(refusal))
	case "setSuccess":
		set = status.SetSuccess
	case "setFailure":
		set = status.SetFailure
	case "setPaused":
		set = status.SetPaused
	case "setRunning":
		set = status.SetRunning
	default:
		return fail(fmt.Errorf("pyhandlers: unknown TaskStatus method %q", method))
	}
	if err := want(1); err != nil {
		return fail(err)
	}
	if err := set(ctx, string(args[0])); err != nil {
		return fail(err)
	}
	return encodeFrame(kindReplyOK)
}
