package atpdcmd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/pyhandlers"
	"github.com/eoxserver/atpd/shadow"
)

// buildExecutor assembles the router: Go handlers first, then the
// configured routes, then CPython worker processes for every other path,
// as the reference daemon ran every handler in Python. The returned stop
// function ends the worker processes. CPython workers start when the
// first task needs one.
//
// Paths in cfg.Shadow run in shadow mode (package shadow): their Python
// handler for real and their Go port beside it; compared, when not nil, is
// told of every comparison.
func buildExecutor(ctx context.Context, cfg config.Config, log *slog.Logger, compared func(path string, match bool)) (executor.Executor, func(), *shadow.Executor, error) {
	goHandlers := gohandlers.Default
	goHandlers.SetLogger(log)

	pyCfg := pyhandlers.Config{
		Python:            cfg.Python,
		PythonPath:        cfg.PythonPath,
		SettingsModule:    cfg.Settings,
		Workers:           cfg.Workers,
		MaxTasksPerWorker: cfg.MaxTasksPerWorker,
		Database:          databaseVendor(cfg.DB),
		Logger:            log,
	}
	embedded, err := pyhandlers.NewEmbedded(pyCfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("embedded python handlers: %w", err)
	}
	// No CPython worker starts before a task needs one, whatever the
	// configuration says of Python: a daemon whose tasks all have Go
	// handlers stays small (about 25 MB, against some 36 MB with one idle
	// worker). When the configuration asks for Python, the interpreter
	// must exist (or start-up fails); whether the handlers import is
	// `atpd check`'s to say before the switch.
	if pythonRequired(cfg) {
		if err := pyCfg.Validate(); err != nil {
			return nil, nil, nil, fmt.Errorf("python handlers (set the interpreter with --python): %w", err)
		}
	}
	cpython := &lazyPool{cfg: pyCfg, log: log}
	router := &executor.Router{
		Go:     goHandlers,
		Routes: cfg.Executors,
		Executors: map[string]executor.Executor{
			config.ExecutorGo:       goHandlers,
			config.ExecutorCPython:  cpython,
			config.ExecutorEmbedded: embedded,
		},
		Default: cpython,
	}
	if err := router.Validate(); err != nil {
		cpython.Stop()
		return nil, nil, nil, err
	}
	var ex executor.Executor = router
	var sh *shadow.Executor
	if len(cfg.Shadow) > 0 {
		paths := make(map[string]bool, len(cfg.Shadow))
		for _, p := range cfg.Shadow {
			paths[p] = true
		}
		sh = &shadow.Executor{Primary: cpython, Ports: goHandlers, Paths: paths, Next: router, Compared: compared, Logger: log}
		if err := sh.Validate(); err != nil {
			cpython.Stop()
			return nil, nil, nil, err
		}
		log.Info("ATPD: shadow mode: Python handlers run for real, their Go ports beside them writing nothing", "paths", cfg.Shadow)
		ex = sh
	}
	if len(cfg.AllowHandlers) > 0 {
		ex = &allowList{next: ex, allow: cfg.AllowHandlers}
	}
	return ex, cpython.Stop, sh, nil
}

// databaseVendor names the database of a DSN for pyhandlers.Config.
func databaseVendor(dsn string) string {
	if strings.HasPrefix(dsn, "sqlite:") {
		return "sqlite"
	}
	return "postgresql"
}

// startPool starts CPython workers: one at once, so that a wrong
// interpreter, path or settings module is reported now.
func startPool(ctx context.Context, cfg pyhandlers.Config) (*pyhandlers.Pool, error) {
	p, err := pyhandlers.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Python, err)
	}
	return p, nil
}

// pythonRequired reports whether the configuration asks for CPython
// handlers, so that a broken interpreter is a start-up error rather than a
// warning.
func pythonRequired(cfg config.Config) bool {
	if cfg.Settings != "" || len(cfg.PythonPath) > 0 || cfg.Source(config.KeyPython) != config.SourceDefault {
		return true
	}
	for _, name := range cfg.Executors {
		if name == config.ExecutorCPython {
			return true
		}
	}
	return false
}

// lazyRetry is how often lazyPool tries again to start Python; in between,
// tasks fail at once with the last error.
const lazyRetry = 10 * time.Second

// lazyPool is the CPython executor after a failed start: it starts a pool
// when a task needs one, so that installing Python fixes a running daemon,
// and fails the task with the reason while Python does not start.
type lazyPool struct {
	cfg pyhandlers.Config
	log *slog.Logger

	mu       sync.Mutex
	pool     *pyhandlers.Pool
	starting chan struct{} // closed when the start under way ends
	lastErr  error
	lastTry  time.Time
	stopped  bool
}

// SyncWrites: it runs CPython handlers (see pyhandlers.Pool.SyncWrites).
func (l *lazyPool) SyncWrites(string) bool { return true }

func (l *lazyPool) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) error {
	pool, err := l.get(ctx)
	if err != nil {
		return fmt.Errorf("handler %s needs Python, which is unavailable (%s: %v): %w", task.Handler, l.cfg.Python, err, executor.ErrNoHandler)
	}
	return pool.Execute(ctx, task, status)
}

// get returns the pool, starting it if it is time to try again. Python can
// take up to StartTimeout to start; tasks arriving meanwhile wait for that
// one attempt (or their own ctx) instead of queueing on the mutex.
func (l *lazyPool) get(ctx context.Context) (*pyhandlers.Pool, error) {
	for {
		l.mu.Lock()
		switch {
		case l.pool != nil:
			p := l.pool
			l.mu.Unlock()
			return p, nil
		case l.stopped:
			l.mu.Unlock()
			return nil, pyhandlers.ErrStopped
		case l.starting != nil:
			ch := l.starting
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case time.Since(l.lastTry) < lazyRetry:
			err := l.lastErr
			l.mu.Unlock()
			return nil, err
		}
		ch := make(chan struct{})
		l.starting = ch
		l.lastTry = time.Now()
		l.mu.Unlock()

		// The pool outlives the task that happened to start it.
		p, err := startPool(context.WithoutCancel(ctx), l.cfg)

		l.mu.Lock()
		l.starting = nil
		close(ch)
		switch {
		case err != nil:
			l.lastErr = err
			l.mu.Unlock()
			return nil, err
		case l.stopped:
			l.mu.Unlock()
			p.Stop()
			return nil, pyhandlers.ErrStopped
		}
		l.pool = p
		l.mu.Unlock()
		l.log.Info("ATPD: python handlers available now", "python", l.cfg.Python)
		return p, nil
	}
}

// Stop ends the pool if one was started; later tasks fail.
func (l *lazyPool) Stop() {
	l.mu.Lock()
	p := l.pool
	l.stopped = true
	l.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// allowList refuses handler paths outside AllowHandlers: task types are
// rows anyone with write access to the database can add, and a dotted path
// names arbitrary code.
type allowList struct {
	next  executor.Executor
	allow []string
}

// SyncWrites is the wrapped executor's.
func (a *allowList) SyncWrites(path string) bool { return executor.WantsSyncWrites(a.next, path) }

func (a *allowList) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) error {
	if handlerAllowed(a.allow, task.Handler) {
		return a.next.Execute(ctx, task, status)
	}
	return fmt.Errorf("handler %s is not in allow_handlers: %w", task.Handler, executor.ErrNoHandler)
}

// handlerAllowed reports whether allow (allow_handlers: exact paths and
// prefixes ending in ".") lets path run; an empty list allows all.
func handlerAllowed(allow []string, path string) bool {
	if len(allow) == 0 {
		return true
	}
	for _, p := range allow {
		if path == p || (strings.HasSuffix(p, ".") && strings.HasPrefix(path, p)) {
			return true
		}
	}
	return false
}
