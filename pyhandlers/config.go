package pyhandlers

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// Config configures a Pool. The zero value of every field means its default.
type Config struct {
	// Python is the interpreter, a path or a name looked up in PATH
	// (default "python3"). Python 2.7 works too.
	Python string
	// PythonPath is appended to the workers' sys.path in order (the
	// reference daemon's -p). PYTHONPATH in the environment still applies.
	PythonPath []string
	// SettingsModule, when set, becomes DJANGO_SETTINGS_MODULE and each
	// worker runs django.setup() before its first task (the daemon's -s).
	SettingsModule string
	// Workers is the most worker processes running at once (default: the
	// CPU count, like the reference's -n). Each runs one task at a time.
	Workers int
	// MaxTasksPerWorker replaces a worker after that many tasks, bounding
	// what a leaky handler can accumulate (default 0: never).
	MaxTasksPerWorker int
	// KillGrace is how long a worker has to exit after SIGTERM before it
	// gets SIGKILL (default 5 s).
	KillGrace time.Duration
	// StartTimeout bounds a worker's start, django.setup() included
	// (default 60 s).
	StartTimeout time.Duration
	// MaxMessageSize bounds a task's decompressed input and anything a
	// handler sends back (a response), in bytes (default 256 MiB).
	MaxMessageSize int
	// MaxLineLength truncates longer lines of handler output (default 4096).
	MaxLineLength int
	// MaxOutputLines is how many output lines one task may log; the rest are
	// counted and reported in one line when the task ends (default 10000,
	// negative: no limit).
	MaxOutputLines int
	// Database is the database atpd writes to, "postgresql" or "sqlite":
	// a TaskStatus write the database would refuse (a None message) raises
	// in the handler the error that database gives. The daemon's
	// TaskStatus has the database word it (executor.NullWriter); with any
	// other, the error is written from what Database names (default:
	// SQLite's), without PostgreSQL's DETAIL line.
	Database string
	// Env is added to the workers' environment (KEY=value), after the
	// daemon's own.
	Env []string
	// Logger receives worker events and handler output (default
	// slog.Default()).
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultPython         = "python3"
	DefaultKillGrace      = 5 * time.Second
	DefaultStartTimeout   = 60 * time.Second
	DefaultMaxMessageSize = 256 << 20
	DefaultMaxLineLength  = 4096
	DefaultMaxOutputLines = 10000
)

// dotted matches a Python module path such as "atpdtest.settings".
var dotted = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// Validate reports every problem with c at once, including an interpreter
// that cannot be found.
func (c Config) Validate() error {
	var errs []error
	c = c.withDefaults()
	if _, err := exec.LookPath(c.Python); err != nil {
		errs = append(errs, fmt.Errorf("python interpreter %q: %w", c.Python, err))
	}
	for _, p := range c.PythonPath {
		if p == "" {
			errs = append(errs, errors.New("python path: empty directory"))
		}
	}
	if c.SettingsModule != "" && !dotted.MatchString(c.SettingsModule) {
		errs = append(errs, fmt.Errorf("settings module %q is not a dotted module path", c.SettingsModule))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers: %d, want at least 1", c.Workers))
	}
	if c.MaxTasksPerWorker < 0 {
		errs = append(errs, fmt.Errorf("max tasks per worker: %d, want 0 (no limit) or more", c.MaxTasksPerWorker))
	}
	if c.KillGrace < 0 {
		errs = append(errs, fmt.Errorf("kill grace: %v, want 0 or more", c.KillGrace))
	}
	if c.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("start timeout: %v, want 0 or more", c.StartTimeout))
	}
	if c.MaxMessageSize < 1024 || c.MaxMessageSize > 1<<31-1024 {
		errs = append(errs, fmt.Errorf("max message size: %d, want 1 KiB to 2 GiB", c.MaxMessageSize))
	}
	if c.MaxLineLength < 16 {
		errs = append(errs, fmt.Errorf("max line length: %d, want at least 16", c.MaxLineLength))
	}
	if c.Database != "" && c.Database != "postgresql" && c.Database != "sqlite" {
		errs = append(errs, fmt.Errorf("database %q: want postgresql or sqlite", c.Database))
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("environment entry %q: want KEY=value", kv))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pyhandlers: invalid config: %w", err)
	}
	return nil
}

// withDefaults fills zero fields. Negative values are left for Validate.
func (c Config) withDefaults() Config {
	if c.Python == "" {
		c.Python = DefaultPython
	}
	if c.Workers == 0 {
		c.Workers = max(1, runtime.NumCPU())
	}
	if c.KillGrace == 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxLineLength == 0 {
		c.MaxLineLength = DefaultMaxLineLength
	}
	if c.MaxOutputLines == 0 {
		c.MaxOutputLines = DefaultMaxOutputLines
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
