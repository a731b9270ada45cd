// Package config owns atpd's settings: the Config struct and its defaults,
// loading it from a config file, ATPD_* environment variables and command-line
// flags (flags > environment > file > defaults), and reading the database and
// time-zone settings of a Django settings module (-s) by running Python, so
// that atpd can be pointed at an existing EOxServer deployment exactly like
// the reference daemon was.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Defaults. The daemon timings equal the daemon package's own defaults; they
// are repeated here so that `atpd -h` and the config file document them.
const (
	// DefaultDB is used when neither a DSN nor a Django settings module is
	// given: atpd then keeps its own SQLite queue next to where it runs and
	// creates the tables on first use.
	DefaultDB            = "sqlite:./atpd.sqlite3"
	DefaultDBAlias       = "default"
	DefaultPython        = "python3"
	DefaultLogFormat     = "text"
	DefaultLogLevel      = "info"
	DefaultPollInterval  = 50 * time.Millisecond
	DefaultSweepInterval = 30 * time.Second
	// DefaultDrainTimeout 0 lets running handlers finish however long their
	// own deadlines allow, as the reference daemon's SIGINT did.
	DefaultDrainTimeout = 0
	DefaultMaxQueueSize = djangodb.DefaultMaxQueueSize
	// DefaultUseTZ and DefaultTimeZone describe databases atpd did not get
	// from Django settings: those of Django's project template since 1.4.
	DefaultUseTZ    = true
	DefaultTimeZone = "UTC"
	// DefaultMaxTasksPerWorker 0 never recycles Python worker processes.
	DefaultMaxTasksPerWorker = 0
	// MaxWorkers bounds -n: more handlers than this on one host is a typo.
	MaxWorkers = 4096
	// DefaultMaxInputSize bounds a task input after decompression: 64 MiB,
	// compat/pickle's own bound.
	DefaultMaxInputSize = 64 << 20
	// minMaxInputSize keeps a typo (a size in MiB) from failing every task.
	minMaxInputSize = 1024
	// DefaultSyncTaskWrites false lets Go handlers' status writes be
	// committed with their tasks' outcomes, many tasks per transaction.
	DefaultSyncTaskWrites = false
	// DefaultFlushDelay equals the daemon package's: how long a held-back
	// status write may wait while its handler runs on.
	DefaultFlushDelay = 100 * time.Millisecond
	// maxFlushDelay keeps a typo (milliseconds written as a plain number,
	// which means seconds) from hiding a task's progress for minutes.
	maxFlushDelay = 10 * time.Second
	// DefaultListen true wakes the daemon by PostgreSQL LISTEN/NOTIFY;
	// polling stays on as the fallback either way.
	DefaultListen = true
	// DefaultSQLiteWAL false leaves an SQLite file's journal mode alone:
	// switching it changes the file for every process using it.
	DefaultSQLiteWAL = false
)

// Executor names accepted in Config.Executors.
const (
	ExecutorCPython  = "cpython"
	ExecutorEmbedded = "embedded"
	ExecutorGo       = "go"
)

// Log formats accepted in Config.LogFormat.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// ErrInvalid is wrapped by every validation error; FieldError says which
// field.
var ErrInvalid = errors.New("invalid configuration")

// FieldError is one invalid setting, named by its config key (the flag and
// ATPD_ variable names derive from it).
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "config: " + e.Field + ": " + e.Reason }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Config is everything atpd's commands need. The zero value is not usable;
// start from Defaults() or Load.
type Config struct {
	// DB is the database DSN: postgres://user:pass@host:port/name?... or
	// sqlite:PATH. Filled from the Django settings when Settings is set and
	// DB was not given.
	DB string
	// Settings is the Django settings module (-s). When set, the database,
	// USE_TZ and TIME_ZONE are read from it (unless given explicitly) and
	// Python handlers run with it as DJANGO_SETTINGS_MODULE.
	Settings string
	// DBAlias selects the entry of settings.DATABASES (-d).
	DBAlias string
	// PythonPath is appended to sys.path of Python handlers and of the
	// settings reader (-p, repeatable), in order.
	PythonPath []string
	// Workers is the number of handlers run at once (-n); at least 1.
	Workers int
	// Python is the interpreter for Python handlers and settings (--python).
	Python string
	// LogFormat is "text" (the reference daemon's line format) or "json".
	LogFormat string
	// LogLevel is debug, info, warning or error.
	LogLevel string
	// PollInterval is the sleep between polls of an empty queue.
	PollInterval time.Duration
	// SweepInterval is the longest time between two zombie/retirement
	// clean-ups.
	SweepInterval time.Duration
	// DrainTimeout bounds how long SIGINT waits for running handlers before
	// acting like SIGTERM; 0 waits until their own deadlines.
	DrainTimeout time.Duration
	// MaxQueueSize is the producer-side limit on waiting tasks (the
	// tracker's MAX_QUEUE_SIZE), enforced by atpd's own enqueue commands.
	MaxQueueSize int
	// UseTZ and TimeZone mirror Django's USE_TZ and TIME_ZONE; they decide
	// how timestamps are stored. TimeZone "" means UTC; "Local" the host's.
	UseTZ    bool
	TimeZone string
	// DBTimeZone is the database's own TIME_ZONE from the Django settings
	// (DATABASES[alias]['TIME_ZONE']), "" for none; it counts with USE_TZ.
	DBTimeZone string
	// Executors chooses how handlers run, per exact dotted path or per
	// prefix ending in ".": "cpython", "embedded" (gpython) or "go". A Go
	// handler registered for a path always wins.
	Executors map[string]string
	// AllowHandlers, when not empty, restricts the dotted paths (or
	// prefixes ending in ".") atpd will run.
	AllowHandlers []string
	// Shadow lists handler paths run in shadow mode: the Python handler
	// runs for real and the path's Go port beside it on the same input,
	// writing nothing; differences are logged and counted. Each path
	// needs a Go port.
	Shadow []string
	// HTTPAddr is the host:port of the metrics/health endpoint; "" disables.
	HTTPAddr string
	// HTTPAllowedHosts are the host names (Host headers) the HTTP
	// endpoint answers besides IP addresses, localhost names and the host
	// of HTTPAddr: exact names, ".domain" suffixes or "*" (see
	// web.Options.AllowedHosts).
	HTTPAllowedHosts []string
	// MaxTasksPerWorker recycles a Python worker process after this many
	// tasks; 0 never.
	MaxTasksPerWorker int
	// MaxInputSize bounds a task's input after decompression, in bytes; a
	// larger one (a zlib bomb) fails the task without being decoded.
	MaxInputSize int
	// SyncTaskWrites commits each TaskStatus write of a Go handler before
	// the call returns, one transaction each, as the reference daemon
	// did. Python handlers always get this: their worker processes answer
	// only after the write committed, as tracker.py's callers expect.
	SyncTaskWrites bool
	// FlushDelay bounds how long a Go handler's held-back status write
	// waits to be committed while the handler runs on (without
	// SyncTaskWrites).
	FlushDelay time.Duration
	// Listen wakes the daemon as soon as a task is announced on
	// PostgreSQL (LISTEN/NOTIFY: atpd enqueue, the Go producer API, or
	// the trigger of atpd notify install); polling at PollInterval stays
	// as the fallback. Without effect on SQLite.
	Listen bool
	// SQLiteWAL switches an SQLite database file to write-ahead logging
	// when atpd opens it. The journal mode belongs to the file: every
	// client of it, Django included, then runs in WAL mode, which needs
	// shared memory beside the file (no network file systems). Off, the
	// file keeps the mode it has.
	SQLiteWAL bool

	// Sources records where each setting came from, by config key.
	Sources map[string]Source
}

// Source is the layer a setting was taken from.
type Source string

// Layers, strongest first.
const (
	SourceFlag    Source = "flag"
	SourceEnv     Source = "env"
	SourceFile    Source = "file"
	SourceDjango  Source = "django"
	SourceDefault Source = "default"
)

// Defaults returns the configuration used when nothing is given.
func Defaults() Config {
	return Config{
		DB:                DefaultDB,
		DBAlias:           DefaultDBAlias,
		Workers:           max(1, runtime.NumCPU()),
		Python:            DefaultPython,
		LogFormat:         DefaultLogFormat,
		LogLevel:          DefaultLogLevel,
		PollInterval:      DefaultPollInterval,
		SweepInterval:     DefaultSweepInterval,
		DrainTimeout:      DefaultDrainTimeout,
		MaxQueueSize:      DefaultMaxQueueSize,
		UseTZ:             DefaultUseTZ,
		TimeZone:          DefaultTimeZone,
		MaxTasksPerWorker: DefaultMaxTasksPerWorker,
		MaxInputSize:      DefaultMaxInputSize,
		SyncTaskWrites:    DefaultSyncTaskWrites,
		FlushDelay:        DefaultFlushDelay,
		Listen:            DefaultListen,
		SQLiteWAL:         DefaultSQLiteWAL,
		Sources:           map[string]Source{},
	}
}

// Source returns where the setting with the given key came from.
func (c Config) Source(key string) Source {
	if s, ok := c.Sources[key]; ok {
		return s
	}
	return SourceDefault
}

// EmbeddedDB reports whether DB is atpd's own default database, which atpd
// creates and migrates itself.
func (c Config) EmbeddedDB() bool { return c.DB == DefaultDB && c.Source(KeyDB) == SourceDefault }

var (
	modulePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	// An allowed host: a name, ".domain" or "*".
	hostPattern = regexp.MustCompile(`^(\*|\.?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?)$`)
	// A handler path or a prefix of one: "pkg.mod.func" or "pkg.mod.".
	pathPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.?$`)
)

// Validate checks every field and returns all problems, each a *FieldError
// naming its config key.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case c.DB == "":
		bad(KeyDB, "empty; want postgres://... or sqlite:PATH")
	case strings.HasPrefix(c.DB, "postgres://"), strings.HasPrefix(c.DB, "postgresql://"):
	case strings.HasPrefix(c.DB, "sqlite:"):
		if djangodb.SQLitePath(c.DB) == "" {
			bad(KeyDB, "%q names no file", c.DB)
		}
	default:
		bad(KeyDB, "%q is not postgres://... nor sqlite:PATH", djangodb.RedactDSN(c.DB))
	}
	if c.Settings != "" && !modulePattern.MatchString(c.Settings) {
		bad(KeySettings, "%q is not a Python module name", c.Settings)
	}
	if c.DBAlias == "" {
		bad(KeyDBAlias, "empty")
	}
	for _, p := range c.PythonPath {
		if p == "" {
			bad(KeyPythonPath, "empty directory")
		}
	}
	if c.Workers < 1 || c.Workers > MaxWorkers {
		bad(KeyWorkers, "%d is not between 1 and %d", c.Workers, MaxWorkers)
	}
	if c.Python == "" {
		bad(KeyPython, "empty")
	}
	if c.LogFormat != LogFormatText && c.LogFormat != LogFormatJSON {
		bad(KeyLogFormat, "%q is neither %q nor %q", c.LogFormat, LogFormatText, LogFormatJSON)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad(KeyLogLevel, "%q is not debug, info, warning or error", c.LogLevel)
	}
	if c.PollInterval <= 0 {
		bad(KeyPollInterval, "%v is not positive", c.PollInterval)
	}
	if c.SweepInterval <= 0 {
		bad(KeySweepInterval, "%v is not positive", c.SweepInterval)
	}
	if c.DrainTimeout < 0 {
		bad(KeyDrainTimeout, "%v is negative", c.DrainTimeout)
	}
	if c.MaxQueueSize < 1 {
		bad(KeyMaxQueueSize, "%d is not positive", c.MaxQueueSize)
	}
	if _, err := loadLocation(c.TimeZone); err != nil {
		bad(KeyTimeZone, "%q: %v", c.TimeZone, err)
	}
	for path, name := range c.Executors {
		if !pathPattern.MatchString(path) {
			bad(KeyExecutors, "%q is not a dotted path nor a prefix ending in \".\"", path)
		}
		if name != ExecutorCPython && name != ExecutorEmbedded && name != ExecutorGo {
			bad(KeyExecutors, "%s=%q: executor is not %s, %s or %s", path, name, ExecutorCPython, ExecutorEmbedded, ExecutorGo)
		}
	}
	for _, path := range c.AllowHandlers {
		if !pathPattern.MatchString(path) {
			bad(KeyAllowHandlers, "%q is not a dotted path nor a prefix ending in \".\"", path)
		}
	}
	for _, path := range c.Shadow {
		if !pathPattern.MatchString(path) || strings.HasSuffix(path, ".") {
			bad(KeyShadow, "%q is not a dotted path", path)
		}
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad(KeyHTTPAddr, "%q is not host:port", c.HTTPAddr)
		}
	}
	for _, h := range c.HTTPAllowedHosts {
		if !hostPattern.MatchString(h) {
			bad(KeyHTTPAllowedHosts, "%q is not a host name, .domain or *", h)
		}
	}
	if c.MaxTasksPerWorker < 0 {
		bad(KeyMaxTasksPerWorker, "%d is negative", c.MaxTasksPerWorker)
	}
	if c.MaxInputSize < minMaxInputSize {
		bad(KeyMaxInputSize, "%d bytes is less than %d", c.MaxInputSize, minMaxInputSize)
	}
	if c.FlushDelay <= 0 || c.FlushDelay > maxFlushDelay {
		bad(KeyFlushDelay, "%v is not between 0 and %v (plain numbers are seconds)", c.FlushDelay, maxFlushDelay)
	}
	if c.SQLiteWAL && c.DB != "" && !strings.HasPrefix(c.DB, "sqlite:") {
		bad(KeySQLiteWAL, "true, but the database %s is not SQLite", djangodb.RedactDSN(c.DB))
	}
	return errors.Join(errs...)
}

// Location returns TimeZone as a location ("" is UTC).
func (c Config) Location() (*time.Location, error) {
	loc, err := loadLocation(c.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("config: time_zone %q: %w", c.TimeZone, err)
	}
	return loc, nil
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}

// StoreOptions returns the djangodb options this configuration asks for.
func (c Config) StoreOptions() (djangodb.Options, error) {
	loc, err := c.Location()
	if err != nil {
		return djangodb.Options{}, err
	}
	opts := djangodb.Options{MaxQueueSize: c.MaxQueueSize, MaxInputSize: c.MaxInputSize, UseTZ: c.UseTZ, TimeZone: loc, SQLiteWAL: c.SQLiteWAL}
	if c.DBTimeZone != "" {
		if opts.DBTimeZone, err = loadLocation(c.DBTimeZone); err != nil {
			return djangodb.Options{}, fmt.Errorf("config: database TIME_ZONE %q: %w", c.DBTimeZone, err)
		}
	}
	return opts, nil
}

// Level returns LogLevel parsed.
func (c Config) Level() slog.Level {
	l, _ := ParseLevel(c.LogLevel)
	return l
}

// ParseLevel accepts debug, info, warn/warning and error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("config: unknown log level %q", s)
}

// LogValue keeps the password of DB out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("db", djangodb.RedactDSN(c.DB)),
		slog.String("settings", c.Settings),
		slog.String("db_alias", c.DBAlias),
		slog.Any("python_path", c.PythonPath),
		slog.Int("workers", c.Workers),
		slog.String("python", c.Python),
		slog.Bool("use_tz", c.UseTZ),
		slog.String("time_zone", c.TimeZone),
		slog.Bool("sqlite_wal", c.SQLiteWAL),
		slog.Bool("listen", c.Listen),
		slog.Bool("sync_task_writes", c.SyncTaskWrites),
		slog.Duration("flush_delay", c.FlushDelay),
	)
}
