package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/pyhandlers"
)

// buildExecutor assembles the router: Go handlers first, then the
// configured routes, then CPython worker processes for every other path,
// as the reference daemon ran every handler in Python. The returned stop
// function ends the worker processes.
func buildExecutor(ctx context.Context, cfg config.Config, log *slog.Logger) (executor.Executor, func(), error) {
	goHandlers := gohandlers.Default
	goHandlers.SetLogger(log)

	pyCfg := pyhandlers.Config{
		Python:            cfg.Python,
		PythonPath:        cfg.PythonPath,
		SettingsModule:    cfg.Settings,
		Workers:           cfg.Workers,
		MaxTasksPerWorker: cfg.MaxTasksPerWorker,
		Logger:            log,
	}
	embedded, err := pyhandlers.NewEmbedded(pyCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded python handlers: %w", err)
	}
	pool, err := pyhandlers.New(pyCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("python handlers (set the interpreter with --python): %w", err)
	}
	if err := pool.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("python handlers: start %s: %w", cfg.Python, err)
	}
	router := &executor.Router{
		Go:     goHandlers,
		Routes: cfg.Executors,
		Executors: map[string]executor.Executor{
			config.ExecutorGo:       goHandlers,
			config.ExecutorCPython:  pool,
			config.ExecutorEmbedded: embedded,
		},
		Default: pool,
	}
	if err := router.Validate(); err != nil {
		pool.Stop()
		return nil, nil, err
	}
	var ex executor.Executor = router
	if len(cfg.AllowHandlers) > 0 {
		ex = &allowList{next: router, allow: cfg.AllowHandlers}
	}
	return ex, pool.Stop, nil
}

// allowList refuses handler paths outside AllowHandlers: task types are
// rows anyone with write access to the database can add, and a dotted path
// names arbitrary code.
type allowList struct {
	next  executor.Executor
	allow []string
}

func (a *allowList) Execute(ctx context.Context, task *executor.Task, status executor.TaskStatus) error {
	for _, p := range a.allow {
		if task.Handler == p || (strings.HasSuffix(p, ".") && strings.HasPrefix(task.Handler, p)) {
			return a.next.Execute(ctx, task, status)
		}
	}
	return fmt.Errorf("handler %s is not in allow_handlers: %w", task.Handler, executor.ErrNoHandler)
}
