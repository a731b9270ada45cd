package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config keys: the names in a config file; ATPD_<KEY upper-cased> in the
// environment; flags are the same words with dashes.
const (
	KeyDB                = "db"
	KeySettings          = "settings"
	KeyDBAlias           = "db_alias"
	KeyPythonPath        = "python_path"
	KeyWorkers           = "workers"
	KeyPython            = "python"
	KeyLogFormat         = "log_format"
	KeyLogLevel          = "log_level"
	KeyPollInterval      = "poll_interval"
	KeySweepInterval     = "sweep_interval"
	KeyDrainTimeout      = "drain_timeout"
	KeyMaxQueueSize      = "max_queue_size"
	KeyUseTZ             = "use_tz"
	KeyTimeZone          = "time_zone"
	KeyExecutors         = "executors"
	KeyAllowHandlers     = "allow_handlers"
	KeyShadow            = "shadow"
	KeyHTTPAddr          = "http_addr"
	KeyHTTPAllowedHosts  = "http_allowed_hosts"
	KeyMaxTasksPerWorker = "max_tasks_per_worker"
	KeyMaxInputSize      = "max_input_size"
	KeySyncTaskWrites    = "sync_task_writes"
	KeyFlushDelay        = "flush_delay"
	KeyListen            = "listen"
	KeySQLiteWAL         = "sqlite_wal"
)

// FlagConfig names the config file flag; EnvConfig the variable that can
// name it instead.
const (
	FlagConfig = "config"
	EnvConfig  = "ATPD_CONFIG"
	EnvPrefix  = "ATPD"
	// EnvDjangoSettings is honoured like the reference daemon did, but only
	// when neither a database nor a settings module is configured otherwise.
	EnvDjangoSettings = "DJANGO_SETTINGS_MODULE"
)

type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindDuration
	kindList     // comma-separated in the environment
	kindPathList // os.PathListSeparator-separated in the environment, like PYTHONPATH
	kindRules    // "path=executor" items
)

type setting struct {
	key   string
	flag  string // long flag name
	short string
	kind  kind
	// daemon settings only make sense for the root command.
	daemon bool
	usage  string
	field  func(*Config) any // pointer to the field
}

var settings = []setting{
	{KeyDB, "db", "", kindString, false, "database DSN: postgres://USER:PASS@HOST:PORT/NAME or sqlite:PATH (default " + DefaultDB + " unless -s is given)", func(c *Config) any { return &c.DB }},
	{KeySettings, "settings", "s", kindString, false, "Django settings module to read the database and time zone from (also DJANGO_SETTINGS_MODULE)", func(c *Config) any { return &c.Settings }},
	{KeyDBAlias, "db-alias", "d", kindString, false, "Django database alias in settings.DATABASES", func(c *Config) any { return &c.DBAlias }},
	{KeyPythonPath, "python-path", "p", kindPathList, false, "directory to append to the Python search path (repeatable)", func(c *Config) any { return &c.PythonPath }},
	{KeyPython, "python", "", kindString, false, "Python interpreter for Python handlers and the Django settings", func(c *Config) any { return &c.Python }},
	{KeyLogFormat, "log-format", "", kindString, false, "log format: text or json", func(c *Config) any { return &c.LogFormat }},
	{KeyLogLevel, "log-level", "", kindString, false, "log level: debug, info, warning or error", func(c *Config) any { return &c.LogLevel }},
	{KeyMaxQueueSize, "max-queue-size", "", kindInt, false, "most waiting tasks an enqueue accepts", func(c *Config) any { return &c.MaxQueueSize }},
	{KeyUseTZ, "use-tz", "", kindBool, false, "Django USE_TZ of the database (read from -s when not given)", func(c *Config) any { return &c.UseTZ }},
	{KeyTimeZone, "time-zone", "", kindString, false, "Django TIME_ZONE of the database (read from -s when not given)", func(c *Config) any { return &c.TimeZone }},
	{KeySQLiteWAL, "sqlite-wal", "", kindBool, false, "switch an SQLite database file to WAL journal mode (a property of the file: Django and every other client use it too)", func(c *Config) any { return &c.SQLiteWAL }},
	{KeyWorkers, "workers", "n", kindInt, true, "number of tasks run at once, 1 to 4096 (default: the number of CPUs)", func(c *Config) any { return &c.Workers }},
	{KeyPollInterval, "poll-interval", "", kindDuration, true, "sleep between polls of an empty queue", func(c *Config) any { return &c.PollInterval }},
	{KeySweepInterval, "sweep-interval", "", kindDuration, true, "longest time between two clean-ups of timed-out and expired tasks", func(c *Config) any { return &c.SweepInterval }},
	{KeyDrainTimeout, "drain-timeout", "", kindDuration, true, "how long SIGINT lets running tasks finish before aborting them (0: until their timeout)", func(c *Config) any { return &c.DrainTimeout }},
	{KeyExecutors, "executor", "", kindRules, true, "PATH=EXECUTOR: run the handler PATH (or prefix ending in \".\") with cpython, embedded or go (repeatable)", func(c *Config) any { return &c.Executors }},
	{KeyAllowHandlers, "allow-handler", "", kindList, true, "only run handlers with this dotted path or prefix ending in \".\" (repeatable, or comma-separated; also --allow-handlers)", func(c *Config) any { return &c.AllowHandlers }},
	{KeyShadow, "shadow", "", kindList, true, "run the Python handler of this dotted path for real and its Go port beside it, writing nothing, and log and count where they differ (repeatable)", func(c *Config) any { return &c.Shadow }},
	{KeyHTTPAddr, "http-addr", "", kindString, true, "host:port of the metrics and health endpoint (empty: off)", func(c *Config) any { return &c.HTTPAddr }},
	{KeyHTTPAllowedHosts, "http-allowed-hosts", "", kindList, true, "host names the HTTP endpoint answers besides IP addresses, localhost and the --http-addr host: NAME, .DOMAIN (it and its subdomains) or * (repeatable, or comma-separated)", func(c *Config) any { return &c.HTTPAllowedHosts }},
	{KeyMaxTasksPerWorker, "max-tasks-per-worker", "", kindInt, true, "restart a Python worker process after this many tasks (0: never)", func(c *Config) any { return &c.MaxTasksPerWorker }},
	{KeyMaxInputSize, "max-input-size", "", kindInt, true, "largest task input, in bytes after decompression, that is decoded; larger ones fail", func(c *Config) any { return &c.MaxInputSize }},
	{KeyListen, "listen", "", kindBool, true, "on PostgreSQL, wake up at once for tasks announced by NOTIFY (polling stays as the fallback; --listen=false: poll only)", func(c *Config) any { return &c.Listen }},
	{KeySyncTaskWrites, "sync-task-writes", "", kindBool, true, "commit each status write of a Go handler before it returns (Python handlers always do)", func(c *Config) any { return &c.SyncTaskWrites }},
	{KeyFlushDelay, "flush-delay", "", kindDuration, true, "longest wait of a Go handler's held-back status write before it is committed", func(c *Config) any { return &c.FlushDelay }},
}

// flagAlias is a further name of a flag: --allow-handlers is how the issue
// that asked for the allow list spelled it, --http the short form the
// demo's documentation uses.
type flagAlias struct {
	name  string // the flag it stands for
	usage string // "" means "same as --name"
}

// flagAliases, by alias. A list flag's alias shares its value, so that
// items given under both names add up; any other alias has a value of its
// own, so that Load can refuse two names that disagree instead of letting
// the last one silently win.
var flagAliases = map[string]flagAlias{
	"allow-handlers": {name: "allow-handler"},
	"http":           {name: "http-addr", usage: "serve the task pages, /healthz and /metrics on host:port (same as --http-addr; off by default)"},
}

// aliasesOf returns the aliases of the flag name, sorted.
func aliasesOf(name string) []string {
	var out []string
	for alias, a := range flagAliases {
		if a.name == name {
			out = append(out, alias)
		}
	}
	sort.Strings(out)
	return out
}

// FlagName returns the long flag that sets the config key, or "" for an
// unknown key.
func FlagName(key string) string {
	for _, s := range settings {
		if s.key == key {
			return s.flag
		}
	}
	return ""
}

// Keys returns every config key, in documentation order.
func Keys() []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}

// AddFlags defines the flags every command shares (database, Python, time
// zone, logging) and --config on fs.
func AddFlags(fs *pflag.FlagSet) { addFlags(fs, false) }

// AddDaemonFlags defines the flags only the daemon uses (workers, timings,
// executors).
func AddDaemonFlags(fs *pflag.FlagSet) { addFlags(fs, true) }

func addFlags(fs *pflag.FlagSet, daemon bool) {
	d := Defaults()
	if !daemon {
		fs.String(FlagConfig, "", "config file (YAML or TOML; also "+EnvConfig+")")
	}
	for _, s := range settings {
		if s.daemon != daemon {
			continue
		}
		p := s.field(&d)
		define := func(name, short, usage string) {
			switch p := p.(type) {
			case *string:
				def := *p
				if s.key == KeyDB {
					def = "" // its usage explains the default, which depends on -s
				}
				fs.StringP(name, short, def, usage)
			case *int:
				fs.IntP(name, short, *p, usage)
			case *bool:
				fs.BoolP(name, short, *p, usage)
			case *time.Duration:
				fs.DurationP(name, short, *p, usage)
			case *[]string, *map[string]string:
				// StringArray, not StringSlice: a directory may contain a comma.
				fs.StringArrayP(name, short, nil, usage)
			}
		}
		define(s.flag, s.short, s.usage)
		if s.key == KeyWorkers {
			// The usage says the default (this host's CPU count would
			// be printed again as "(default N)").
			fs.Lookup(s.flag).DefValue = "0"
		}
		for _, alias := range aliasesOf(s.flag) {
			usage := flagAliases[alias].usage
			if usage == "" {
				usage = "same as --" + s.flag
			}
			if f := fs.Lookup(s.flag); f.Value.Type() == "stringArray" {
				fs.Var(f.Value, alias, usage)
			} else {
				define(alias, "", usage)
			}
		}
	}
}

// setFlag returns the flag the setting was given by on the command line,
// under its own name or an alias, or nil when it was not. Two names given
// different values are an error rather than a silent choice.
func setFlag(fs *pflag.FlagSet, s setting) (*pflag.Flag, error) {
	var set *pflag.Flag
	for _, name := range append([]string{s.flag}, aliasesOf(s.flag)...) {
		f := fs.Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		if set != nil && set.Value != f.Value && set.Value.String() != f.Value.String() {
			return nil, &FieldError{Field: s.key, Reason: fmt.Sprintf("from flag: --%s and --%s name different values (%q, %q)",
				f.Name, set.Name, f.Value.String(), set.Value.String())}
		}
		if set == nil {
			set = f
		}
	}
	return set, nil
}

// envKeys turns a config key, upper-cased, into the rest of its environment
// variable's name after ATPD_: '-' and '.' become '_'. Config keys have
// neither; the replacer keeps flag-style and dotted names well-formed.
var envKeys = strings.NewReplacer("-", "_", ".", "_")

// newViper returns the one viper instance Load reads every layer through:
// ATPD_* environment variables for all keys, and the flags of fs that the
// settings name, each bound to its config key (flag names differ from the
// keys: dashes, aliases). The config file is read into it by Load.
func newViper(fs *pflag.FlagSet) (*viper.Viper, error) {
	// "::" as the key delimiter leaves dotted handler paths whole.
	v := viper.NewWithOptions(viper.KeyDelimiter("::"), viper.EnvKeyReplacer(envKeys))
	v.SetEnvPrefix(EnvPrefix)
	v.AutomaticEnv()
	if fs == nil {
		return v, nil
	}
	if f := fs.Lookup(FlagConfig); f != nil {
		if err := v.BindPFlag(FlagConfig, f); err != nil {
			return nil, err
		}
	}
	for _, s := range settings {
		// The name the setting was given under, if any, else its own.
		f, err := setFlag(fs, s)
		if err != nil {
			return nil, err
		}
		if f == nil {
			if f = fs.Lookup(s.flag); f == nil {
				continue // not a flag of this command
			}
		}
		if err := v.BindPFlag(s.key, f); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Load builds the configuration from defaults, the config file (--config or
// ATPD_CONFIG), ATPD_* environment variables and the flags in fs that were
// set, each layer overriding the ones before. All three are read through
// one viper instance, whose order this is. fs may be nil. It does not run
// Python: see ApplyDjango.
func Load(fs *pflag.FlagSet) (Config, error) {
	v, err := newViper(fs)
	if err != nil {
		return Config{}, err
	}
	// --config, else ATPD_CONFIG.
	if file := v.GetString(FlagConfig); file != "" {
		v.SetConfigFile(file)
		switch strings.ToLower(filepath.Ext(file)) {
		case ".yaml", ".yml", ".toml", ".json":
		default:
			return Config{}, fmt.Errorf("config: file %s: unknown type %q (want .yaml, .yml, .toml or .json)", file, filepath.Ext(file))
		}
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", file, err)
		}
		// AllKeys has the bound flags' keys too: the settings', known
		// anyway, and --config's, which is no key of the file (unless the
		// file has it).
		var keys []string
		for _, k := range v.AllKeys() {
			if k != FlagConfig || v.InConfig(k) {
				keys = append(keys, k)
			}
		}
		if err := checkFileKeys(file, keys); err != nil {
			return Config{}, err
		}
	}

	c := Defaults()
	c.Sources = map[string]Source{}
	for _, s := range settings {
		// Defaults stay Defaults()'s: viper has none, so IsSet means a
		// flag given, a non-empty ATPD_ variable or a file entry.
		if !v.IsSet(s.key) {
			continue
		}
		src := source(fs, s)
		if err := decode(s, v.Get(s.key), src, s.field(&c)); err != nil {
			return Config{}, err
		}
		c.Sources[s.key] = src
	}
	// The reference daemon took its settings module from the environment;
	// do the same, but only when nothing else says which database to use,
	// so that a stray variable cannot override an explicit --db. It is no
	// ATPD_ variable, so viper does not read it.
	if c.Source(KeySettings) == SourceDefault && c.Source(KeyDB) == SourceDefault {
		if m := os.Getenv(EnvDjangoSettings); m != "" {
			c.Settings = m
			c.Sources[KeySettings] = SourceEnv
		}
	}
	// -n below 1 is refused by Validate: the reference daemon ran one
	// worker then, which silently hid a typo.
	return c, nil
}

// source names the layer viper took the value of s from, for Config.Sources,
// by viper's precedence: a flag given, else the ATPD_ variable (viper skips
// empty ones), else the file.
func source(fs *pflag.FlagSet, s setting) Source {
	if fs != nil {
		if f, _ := setFlag(fs, s); f != nil {
			return SourceFlag
		}
	}
	if os.Getenv(EnvPrefix+"_"+envKeys.Replace(strings.ToUpper(s.key))) != "" {
		return SourceEnv
	}
	return SourceFile
}

func checkFileKeys(file string, keys []string) error {
	known := map[string]bool{}
	for _, s := range settings {
		known[s.key] = true
	}
	var unknown []string
	for _, k := range keys {
		top, _, nested := strings.Cut(k, "::")
		if top == KeyExecutors && nested {
			// Viper lower-cases map keys, and handler paths are case
			// sensitive: insist on a list.
			return &FieldError{Field: KeyExecutors, Reason: fmt.Sprintf("in %s: write a list of \"path=executor\" strings, not a mapping (mapping keys lose their case)", file)}
		}
		if !known[top] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config: file %s: unknown keys %s: %w", file, strings.Join(unknown, ", "), ErrInvalid)
	}
	return nil
}

// decode stores raw (a flag's text, an environment string or a value parsed
// from the file) into the field p, naming the key on failure.
func decode(s setting, raw any, src Source, p any) error {
	bad := func(format string, args ...any) error {
		return &FieldError{Field: s.key, Reason: fmt.Sprintf("from %s: ", src) + fmt.Sprintf(format, args...)}
	}
	switch p := p.(type) {
	case *string:
		switch r := raw.(type) {
		case string:
			*p = r
		case int, int64, float64, bool:
			*p = fmt.Sprint(r)
		default:
			return bad("want a string, got %T", raw)
		}
	case *int:
		n, err := toInt(raw)
		if err != nil {
			return bad("%v", err)
		}
		*p = n
	case *bool:
		switch r := raw.(type) {
		case bool:
			*p = r
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(r))
			if err != nil {
				return bad("%q is not true or false", r)
			}
			*p = b
		default:
			return bad("want true or false, got %T", raw)
		}
	case *time.Duration:
		d, err := toDuration(raw)
		if err != nil {
			return bad("%v", err)
		}
		*p = d
	case *[]string:
		sep := ","
		if s.kind == kindPathList {
			sep = string(os.PathListSeparator)
		}
		if r, ok := raw.([]string); ok && s.kind == kindList {
			// Repeated flags may each hold a comma-separated list too.
			raw = strings.Join(r, sep)
		}
		l, err := toList(raw, sep)
		if err != nil {
			return bad("%v", err)
		}
		*p = l
	case *map[string]string:
		l, err := toList(raw, ",")
		if err != nil {
			return bad("%v", err)
		}
		m := make(map[string]string, len(l))
		for _, item := range l {
			path, name, ok := strings.Cut(item, "=")
			path, name = strings.TrimSpace(path), strings.TrimSpace(name)
			if !ok || path == "" || name == "" {
				return bad("%q is not path=executor", item)
			}
			m[path] = name
		}
		*p = m
	default:
		panic(fmt.Sprintf("config: setting %s has unhandled field type %T", s.key, p))
	}
	return nil
}

func toInt(raw any) (int, error) {
	switch r := raw.(type) {
	case int:
		return r, nil
	case int64:
		return int(r), nil
	case float64:
		if r != math.Trunc(r) || math.Abs(r) > math.MaxInt32 {
			return 0, fmt.Errorf("%v is not an integer", r)
		}
		return int(r), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", r)
		}
		return n, nil
	}
	return 0, fmt.Errorf("want an integer, got %T", raw)
}

// toDuration accepts Go durations ("1.5s", "50ms") and, like the tracker's
// timeouts, plain numbers as seconds.
func toDuration(raw any) (time.Duration, error) {
	var secs float64
	switch r := raw.(type) {
	case string:
		r = strings.TrimSpace(r)
		if d, err := time.ParseDuration(r); err == nil {
			return d, nil
		}
		f, err := strconv.ParseFloat(r, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (like 1.5s or 50ms) nor a number of seconds", r)
		}
		secs = f
	case int:
		secs = float64(r)
	case int64:
		secs = float64(r)
	case float64:
		secs = r
	default:
		return 0, fmt.Errorf("want a duration, got %T", raw)
	}
	if math.IsNaN(secs) || math.Abs(secs) > float64(math.MaxInt64)/float64(time.Second) {
		return 0, fmt.Errorf("%v seconds is out of range", secs)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

func toList(raw any, sep string) ([]string, error) {
	var out []string
	switch r := raw.(type) {
	case []string:
		out = append(out, r...)
	case []any:
		for _, item := range r {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("list item %v is %T, want a string", item, item)
			}
			out = append(out, s)
		}
	case string:
		for _, s := range strings.Split(r, sep) {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	default:
		return nil, fmt.Errorf("want a list of strings, got %T", raw)
	}
	return out, nil
}
