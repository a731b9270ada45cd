package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/eoxserver/atpd/config"
)

// cleanEnv blanks every variable Load reads, so that the developer's own
// environment cannot leak into a case.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, k := range config.Keys() {
		t.Setenv(config.EnvPrefix+"_"+strings.ToUpper(k), "")
	}
	t.Setenv(config.EnvConfig, "")
	t.Setenv(config.EnvDjangoSettings, "")
}

// load runs Load with the given file contents (name decides the format),
// environment and command line.
func load(t *testing.T, fileName, fileText string, env map[string]string, args ...string) (config.Config, error) {
	t.Helper()
	cleanEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	if fileName != "" {
		path := filepath.Join(t.TempDir(), fileName)
		if err := os.WriteFile(path, []byte(fileText), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	fs := pflag.NewFlagSet("atpd", pflag.ContinueOnError)
	config.AddFlags(fs)
	config.AddDaemonFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return config.Load(fs)
}

const yamlFile = `
db: sqlite:/srv/file.sqlite3
workers: 3
poll_interval: 2s
sweep_interval: 10        # plain numbers are seconds
drain_timeout: 1.5
python_path: [/file/a, /file/b]
log_format: json
use_tz: false
time_zone: Europe/Vienna
executors: ["tools.=go", "eoxserver.services.Handler=cpython"]
max_tasks_per_worker: 100
sync_task_writes: true
flush_delay: 250ms
listen: false
sqlite_wal: true
`

const tomlFile = `
db = "sqlite:/srv/toml.sqlite3"
workers = 4
poll_interval = "250ms"
python_path = ["/toml"]
`

func TestLoadLayers(t *testing.T) {
	type want struct {
		key    string
		value  any
		source config.Source
	}
	get := func(c config.Config, key string) any {
		switch key {
		case config.KeyDB:
			return c.DB
		case config.KeySettings:
			return c.Settings
		case config.KeyWorkers:
			return c.Workers
		case config.KeyPollInterval:
			return c.PollInterval
		case config.KeySweepInterval:
			return c.SweepInterval
		case config.KeyDrainTimeout:
			return c.DrainTimeout
		case config.KeyPythonPath:
			return c.PythonPath
		case config.KeyLogFormat:
			return c.LogFormat
		case config.KeyUseTZ:
			return c.UseTZ
		case config.KeyTimeZone:
			return c.TimeZone
		case config.KeyExecutors:
			return c.Executors
		case config.KeyMaxTasksPerWorker:
			return c.MaxTasksPerWorker
		case config.KeyAllowHandlers:
			return c.AllowHandlers
		case config.KeyHTTPAddr:
			return c.HTTPAddr
		case config.KeySyncTaskWrites:
			return c.SyncTaskWrites
		case config.KeyFlushDelay:
			return c.FlushDelay
		case config.KeyListen:
			return c.Listen
		case config.KeySQLiteWAL:
			return c.SQLiteWAL
		}
		t.Fatalf("test asks for unknown key %s", key)
		return nil
	}
	cases := []struct {
		name     string
		fileName string
		fileText string
		env      map[string]string
		args     []string
		want     []want
	}{
		{
			name: "defaults",
			want: []want{
				{config.KeyDB, config.DefaultDB, config.SourceDefault},
				{config.KeyWorkers, max(1, runtime.NumCPU()), config.SourceDefault},
				{config.KeyPollInterval, config.DefaultPollInterval, config.SourceDefault},
				{config.KeyUseTZ, config.DefaultUseTZ, config.SourceDefault},
				{config.KeyPythonPath, []string(nil), config.SourceDefault},
				{config.KeySyncTaskWrites, false, config.SourceDefault},
				{config.KeyFlushDelay, 100 * time.Millisecond, config.SourceDefault},
				{config.KeyListen, true, config.SourceDefault},
				{config.KeySQLiteWAL, false, config.SourceDefault},
			},
		},
		{
			name:     "yaml file",
			fileName: "atpd.yaml", fileText: yamlFile,
			want: []want{
				{config.KeyDB, "sqlite:/srv/file.sqlite3", config.SourceFile},
				{config.KeyWorkers, 3, config.SourceFile},
				{config.KeyPollInterval, 2 * time.Second, config.SourceFile},
				{config.KeySweepInterval, 10 * time.Second, config.SourceFile},
				{config.KeyDrainTimeout, 1500 * time.Millisecond, config.SourceFile},
				{config.KeyPythonPath, []string{"/file/a", "/file/b"}, config.SourceFile},
				{config.KeyLogFormat, "json", config.SourceFile},
				{config.KeyUseTZ, false, config.SourceFile},
				{config.KeyTimeZone, "Europe/Vienna", config.SourceFile},
				// Case kept: viper would lower-case mapping keys.
				{config.KeyExecutors, map[string]string{"tools.": "go", "eoxserver.services.Handler": "cpython"}, config.SourceFile},
				{config.KeyMaxTasksPerWorker, 100, config.SourceFile},
				{config.KeySyncTaskWrites, true, config.SourceFile},
				{config.KeyFlushDelay, 250 * time.Millisecond, config.SourceFile},
				{config.KeyListen, false, config.SourceFile},
				{config.KeySQLiteWAL, true, config.SourceFile},
			},
		},
		{
			name:     "toml file",
			fileName: "atpd.toml", fileText: tomlFile,
			want: []want{
				{config.KeyDB, "sqlite:/srv/toml.sqlite3", config.SourceFile},
				{config.KeyWorkers, 4, config.SourceFile},
				{config.KeyPollInterval, 250 * time.Millisecond, config.SourceFile},
				{config.KeyPythonPath, []string{"/toml"}, config.SourceFile},
			},
		},
		{
			name:     "environment over file",
			fileName: "atpd.yaml", fileText: yamlFile,
			env: map[string]string{
				"ATPD_WORKERS":        "5",
				"ATPD_PYTHON_PATH":    "/env/a" + string(os.PathListSeparator) + "/env/b,c",
				"ATPD_POLL_INTERVAL":  "0.1",
				"ATPD_USE_TZ":         "true",
				"ATPD_EXECUTORS":      "x.y=embedded, z.=go",
				"ATPD_ALLOW_HANDLERS": "tools.,x.y",
				"ATPD_LISTEN":         "true",
				"ATPD_FLUSH_DELAY":    "0.5",
				"ATPD_SQLITE_WAL":     "false",
			},
			want: []want{
				{config.KeyWorkers, 5, config.SourceEnv},
				{config.KeyPythonPath, []string{"/env/a", "/env/b,c"}, config.SourceEnv},
				{config.KeyPollInterval, 100 * time.Millisecond, config.SourceEnv},
				{config.KeyUseTZ, true, config.SourceEnv},
				{config.KeyExecutors, map[string]string{"x.y": "embedded", "z.": "go"}, config.SourceEnv},
				{config.KeyAllowHandlers, []string{"tools.", "x.y"}, config.SourceEnv},
				{config.KeyListen, true, config.SourceEnv},
				{config.KeyFlushDelay, 500 * time.Millisecond, config.SourceEnv},
				{config.KeySQLiteWAL, false, config.SourceEnv},
				{config.KeySyncTaskWrites, true, config.SourceFile},
				// Untouched by the environment: still the file's.
				{config.KeyDB, "sqlite:/srv/file.sqlite3", config.SourceFile},
				{config.KeySweepInterval, 10 * time.Second, config.SourceFile},
			},
		},
		{
			name:     "flags over environment over file",
			fileName: "atpd.yaml", fileText: yamlFile,
			env: map[string]string{"ATPD_WORKERS": "5", "ATPD_DB": "sqlite:/env.sqlite3", "ATPD_LOG_FORMAT": "text",
				"ATPD_LISTEN": "false", "ATPD_FLUSH_DELAY": "1s"},
			args: []string{"-n", "7", "-p", "/flag/a", "-p", "/flag/b,with,commas", "--poll-interval", "3s", "--use-tz=true", "--executor", "A.b=go",
				"--sync-task-writes=false", "--listen", "--flush-delay", "20ms", "--sqlite-wal=false"},
			want: []want{
				{config.KeyWorkers, 7, config.SourceFlag},
				{config.KeyPythonPath, []string{"/flag/a", "/flag/b,with,commas"}, config.SourceFlag},
				{config.KeyPollInterval, 3 * time.Second, config.SourceFlag},
				{config.KeyUseTZ, true, config.SourceFlag},
				{config.KeyExecutors, map[string]string{"A.b": "go"}, config.SourceFlag},
				{config.KeyDB, "sqlite:/env.sqlite3", config.SourceEnv},
				{config.KeyLogFormat, "text", config.SourceEnv},
				{config.KeyTimeZone, "Europe/Vienna", config.SourceFile},
				{config.KeySyncTaskWrites, false, config.SourceFlag},
				{config.KeyListen, true, config.SourceFlag},
				{config.KeyFlushDelay, 20 * time.Millisecond, config.SourceFlag},
				{config.KeySQLiteWAL, false, config.SourceFlag},
			},
		},
		{
			name: "--listen=false turns LISTEN off",
			args: []string{"--listen=false"},
			want: []want{{config.KeyListen, false, config.SourceFlag}},
		},
		{
			name: "--http is --http-addr",
			env:  map[string]string{"ATPD_HTTP_ADDR": "127.0.0.1:1"},
			args: []string{"--http", "127.0.0.1:9090"},
			want: []want{{config.KeyHTTPAddr, "127.0.0.1:9090", config.SourceFlag}},
		},
		{
			name: "--http and --http-addr agreeing",
			args: []string{"--http", ":9090", "--http-addr", ":9090"},
			want: []want{{config.KeyHTTPAddr, ":9090", config.SourceFlag}},
		},
		{
			name: "--allow-handlers adds to --allow-handler",
			args: []string{"--allow-handler", "a.", "--allow-handlers", "b.c,d."},
			want: []want{{config.KeyAllowHandlers, []string{"a.", "b.c", "d."}, config.SourceFlag}},
		},
		{
			name: "config file named by the environment",
			env:  map[string]string{config.EnvConfig: ""}, // replaced below
			want: []want{{config.KeyWorkers, 3, config.SourceFile}},
		},
		{
			name: "DJANGO_SETTINGS_MODULE when nothing names a database",
			env:  map[string]string{config.EnvDjangoSettings: "proj.settings"},
			want: []want{{config.KeySettings, "proj.settings", config.SourceEnv}},
		},
		{
			name: "DJANGO_SETTINGS_MODULE does not override --db",
			env:  map[string]string{config.EnvDjangoSettings: "proj.settings"},
			args: []string{"--db", "sqlite:/x.sqlite3"},
			want: []want{{config.KeySettings, "", config.SourceDefault}, {config.KeyDB, "sqlite:/x.sqlite3", config.SourceFlag}},
		},
		{
			name: "-s over DJANGO_SETTINGS_MODULE",
			env:  map[string]string{config.EnvDjangoSettings: "proj.settings"},
			args: []string{"-s", "other.settings"},
			want: []want{{config.KeySettings, "other.settings", config.SourceFlag}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.env[config.EnvConfig]; ok {
				path := filepath.Join(t.TempDir(), "from-env.yml")
				if err := os.WriteFile(path, []byte("workers: 3\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				tc.env = map[string]string{config.EnvConfig: path}
			}
			c, err := load(t, tc.fileName, tc.fileText, tc.env, tc.args...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			for _, w := range tc.want {
				if got := get(c, w.key); !reflect.DeepEqual(got, w.value) {
					t.Errorf("%s = %#v, want %#v", w.key, got, w.value)
				}
				if got := c.Source(w.key); got != w.source {
					t.Errorf("%s came from %s, want %s", w.key, got, w.source)
				}
			}
			if embedded := c.DB == config.DefaultDB && c.Source(config.KeyDB) == config.SourceDefault; c.EmbeddedDB() != embedded {
				t.Errorf("EmbeddedDB() = %v for db %s from %s", c.EmbeddedDB(), c.DB, c.Source(config.KeyDB))
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name      string
		fileName  string
		fileText  string
		env       map[string]string
		args      []string
		wantField string // "" when the error is not about one field
		wantText  string
	}{
		{name: "unknown key in file", fileName: "a.yaml", fileText: "workers: 2\nwrokers: 3\n", wantText: "unknown keys wrokers"},
		{name: "executors as a mapping", fileName: "a.yaml", fileText: "executors:\n  Tools.X: go\n", wantField: config.KeyExecutors, wantText: "list"},
		{name: "unknown file type", fileName: "a.ini", fileText: "workers=2", wantText: "unknown type"},
		{name: "broken yaml", fileName: "a.yaml", fileText: "workers: [", wantText: "a.yaml"},
		{name: "bad integer in environment", env: map[string]string{"ATPD_WORKERS": "four"}, wantField: config.KeyWorkers, wantText: "from env"},
		{name: "bad duration in file", fileName: "a.toml", fileText: `poll_interval = "soon"`, wantField: config.KeyPollInterval, wantText: "from file"},
		{name: "bad bool in environment", env: map[string]string{"ATPD_USE_TZ": "perhaps"}, wantField: config.KeyUseTZ, wantText: "perhaps"},
		{name: "bad executor rule", env: map[string]string{"ATPD_EXECUTORS": "tools.go"}, wantField: config.KeyExecutors, wantText: "path=executor"},
		{name: "list of numbers", fileName: "a.yaml", fileText: "python_path: [1, 2]\n", wantField: config.KeyPythonPath, wantText: "want a string"},
		{name: "bad bool for listen in environment", env: map[string]string{"ATPD_LISTEN": "sometimes"}, wantField: config.KeyListen, wantText: "sometimes"},
		{name: "bad flush delay in file", fileName: "a.yaml", fileText: "flush_delay: later\n", wantField: config.KeyFlushDelay, wantText: "from file"},
		{name: "sqlite_wal not a bool in file", fileName: "a.yaml", fileText: "sqlite_wal: [true]\n", wantField: config.KeySQLiteWAL, wantText: "true or false"},
		{name: "--http and --http-addr disagree", args: []string{"--http", ":1", "--http-addr", ":2"}, wantField: config.KeyHTTPAddr, wantText: "--http and --http-addr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.fileName, tc.fileText, tc.env, tc.args...)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, config.ErrInvalid) && tc.wantField != "" {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var fe *config.FieldError
			if tc.wantField != "" && (!errors.As(err, &fe) || fe.Field != tc.wantField) {
				t.Errorf("error %v does not name field %s", err, tc.wantField)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		modify func(*config.Config)
		field  string // "" = valid
	}{
		{"defaults", func(c *config.Config) {}, ""},
		{"postgres url", func(c *config.Config) { c.DB = "postgres://u:p@h:1/d" }, ""},
		{"mysql url", func(c *config.Config) { c.DB = "mysql://u:secret@h/d" }, config.KeyDB},
		{"sqlite without path", func(c *config.Config) { c.DB = "sqlite:" }, config.KeyDB},
		{"empty db", func(c *config.Config) { c.DB = "" }, config.KeyDB},
		{"settings not a module", func(c *config.Config) { c.Settings = "my-settings.py" }, config.KeySettings},
		{"empty alias", func(c *config.Config) { c.DBAlias = "" }, config.KeyDBAlias},
		{"zero workers", func(c *config.Config) { c.Workers = 0 }, config.KeyWorkers},
		{"too many workers", func(c *config.Config) { c.Workers = config.MaxWorkers + 1 }, config.KeyWorkers},
		{"no python", func(c *config.Config) { c.Python = "" }, config.KeyPython},
		{"log format", func(c *config.Config) { c.LogFormat = "xml" }, config.KeyLogFormat},
		{"log level warning", func(c *config.Config) { c.LogLevel = "WARNING" }, ""},
		{"log level", func(c *config.Config) { c.LogLevel = "loud" }, config.KeyLogLevel},
		{"poll interval", func(c *config.Config) { c.PollInterval = 0 }, config.KeyPollInterval},
		{"sweep interval", func(c *config.Config) { c.SweepInterval = -time.Second }, config.KeySweepInterval},
		{"drain timeout", func(c *config.Config) { c.DrainTimeout = -1 }, config.KeyDrainTimeout},
		{"queue size", func(c *config.Config) { c.MaxQueueSize = 0 }, config.KeyMaxQueueSize},
		{"time zone", func(c *config.Config) { c.TimeZone = "Mars/Olympus" }, config.KeyTimeZone},
		{"local time zone", func(c *config.Config) { c.TimeZone = "Local" }, ""},
		{"executor name", func(c *config.Config) { c.Executors = map[string]string{"a.b": "jython"} }, config.KeyExecutors},
		{"executor path", func(c *config.Config) { c.Executors = map[string]string{"a b": "go"} }, config.KeyExecutors},
		{"executor prefix", func(c *config.Config) { c.Executors = map[string]string{"a.": "embedded"} }, ""},
		{"allow handler", func(c *config.Config) { c.AllowHandlers = []string{"a..b"} }, config.KeyAllowHandlers},
		{"http addr", func(c *config.Config) { c.HTTPAddr = "9090" }, config.KeyHTTPAddr},
		{"http addr ok", func(c *config.Config) { c.HTTPAddr = ":9090" }, ""},
		{"max tasks per worker", func(c *config.Config) { c.MaxTasksPerWorker = -1 }, config.KeyMaxTasksPerWorker},
		{"zero flush delay", func(c *config.Config) { c.FlushDelay = 0 }, config.KeyFlushDelay},
		{"negative flush delay", func(c *config.Config) { c.FlushDelay = -time.Millisecond }, config.KeyFlushDelay},
		{"flush delay in seconds by mistake", func(c *config.Config) { c.FlushDelay = 100 * time.Second }, config.KeyFlushDelay},
		{"longest flush delay", func(c *config.Config) { c.FlushDelay = 10 * time.Second }, ""},
		{"sync writes without listen", func(c *config.Config) { c.SyncTaskWrites, c.Listen = true, false }, ""},
		{"sqlite wal on sqlite", func(c *config.Config) { c.SQLiteWAL = true }, ""},
		{"sqlite wal on postgres", func(c *config.Config) { c.DB, c.SQLiteWAL = "postgres://u:secret@h/d", true }, config.KeySQLiteWAL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Defaults()
			tc.modify(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestStoreOptions(t *testing.T) {
	c := config.Defaults()
	c.UseTZ, c.TimeZone, c.MaxQueueSize, c.SQLiteWAL = false, "Europe/Vienna", 9, true
	o, err := c.StoreOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.UseTZ || o.TimeZone == nil || o.TimeZone.String() != "Europe/Vienna" || o.MaxQueueSize != 9 || !o.SQLiteWAL {
		t.Errorf("StoreOptions = %+v", o)
	}
	c.TimeZone = ""
	if o, err = c.StoreOptions(); err != nil || o.TimeZone != time.UTC {
		t.Errorf("empty time zone gave %v, %v; want UTC", o.TimeZone, err)
	}
}

// Without a flag set, the environment (ATPD_CONFIG included) and the file
// still go through the same layers.
func TestLoadWithoutFlags(t *testing.T) {
	cleanEnv(t)
	path := filepath.Join(t.TempDir(), "atpd.yaml")
	if err := os.WriteFile(path, []byte(yamlFile), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvConfig, path)
	t.Setenv("ATPD_WORKERS", "5")
	c, err := config.Load(nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Workers != 5 || c.Source(config.KeyWorkers) != config.SourceEnv {
		t.Errorf("workers %d from %s, want 5 from env", c.Workers, c.Source(config.KeyWorkers))
	}
	if c.DB != "sqlite:/srv/file.sqlite3" || c.Source(config.KeyDB) != config.SourceFile {
		t.Errorf("db %s from %s, want the file's", c.DB, c.Source(config.KeyDB))
	}
}
