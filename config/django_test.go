package config_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
	_ "modernc.org/sqlite"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/internal/testdb"
)

// setDjangoEnv makes the environment of testdb.DjangoEnv this test's, so
// that the settings reader (a child process) sees it, minus PYTHONPATH and
// DJANGO_SETTINGS_MODULE: the reader must get those from -p and -s.
func setDjangoEnv(t *testing.T, dsn string, c testdb.Config) {
	t.Helper()
	for _, kv := range testdb.DjangoEnv(t, dsn, c) {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ATPD_DJANGO_") {
			t.Setenv(k, v)
		}
	}
	t.Setenv("PYTHONPATH", "")
	t.Setenv(config.EnvDjangoSettings, "")
	t.Setenv("PYTHONDONTWRITEBYTECODE", "1")
}

func integrationDir(t *testing.T) string {
	return filepath.Join(testdb.RepoRoot(t), "integration")
}

func readSettings(t *testing.T, pythonPath []string, module, alias string) (config.DjangoSettings, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return config.ReadDjangoSettings(ctx, testdb.Python(t), pythonPath, module, alias)
}

// TestDjangoSettingsIntegration reads the integration project's settings for
// databases made by Django's migrate and proves the DSN reaches the very
// database Django uses.
func TestDjangoSettingsIntegration(t *testing.T) {
	cases := []struct {
		name   string
		engine string
		cfg    testdb.Config
	}{
		{"postgresql UTC", "postgresql", testdb.Config{UseTZ: true}},
		{"postgresql naive Vienna", "postgresql", testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
		{"sqlite3 UTC", "sqlite3", testdb.Config{UseTZ: true}},
		{"sqlite3 naive Vienna", "sqlite3", testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dsn string
			if tc.engine == "postgresql" {
				dsn = testdb.Postgres(t, tc.cfg)
			} else {
				dsn = testdb.SQLite(t, tc.cfg)
			}
			setDjangoEnv(t, dsn, tc.cfg)
			s, err := readSettings(t, []string{integrationDir(t)}, "atpdtest.settings", "default")
			if err != nil {
				t.Fatalf("ReadDjangoSettings: %v", err)
			}
			wantTZ := tc.cfg.TimeZone
			if wantTZ == "" {
				wantTZ = "UTC"
			}
			if s.UseTZ != tc.cfg.UseTZ || s.TimeZone != wantTZ {
				t.Errorf("USE_TZ=%v TIME_ZONE=%q, want %v %q", s.UseTZ, s.TimeZone, tc.cfg.UseTZ, wantTZ)
			}
			got, ignored, err := s.Database.DSN()
			if err != nil {
				t.Fatalf("DSN: %v", err)
			}
			if len(ignored) != 0 {
				t.Errorf("ignored options %v", ignored)
			}
			if tc.engine == "sqlite3" {
				if got != dsn {
					t.Errorf("DSN = %s, want %s", got, dsn)
				}
				assertMigrated(t, "sqlite", djangodb.SQLitePath(got))
				return
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatalf("DSN %s: %v", got, err)
			}
			want, _ := url.Parse(dsn)
			if u.Scheme != "postgres" || u.Hostname() != want.Hostname() || u.Port() != want.Port() || u.Path != want.Path {
				t.Errorf("DSN = %s, want the database of %s", got, dsn)
			}
			assertMigrated(t, "postgres", got)
		})
	}
}

// assertMigrated proves the DSN opens the database Django migrated: the
// queue table is there.
func assertMigrated(t *testing.T, driver, dsn string) {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM processes_task`).Scan(&n); err != nil {
		t.Fatalf("query processes_task through %s: %v", djangodb.RedactDSN(dsn), err)
	}
}

func TestDjangoSettingsFixtures(t *testing.T) {
	fixtures, err := filepath.Abs(filepath.Join("testdata", "djsettings"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvDjangoSettings, "")
	t.Setenv("PYTHONDONTWRITEBYTECODE", "1")

	t.Run("refused engine", func(t *testing.T) {
		s, err := readSettings(t, []string{fixtures}, "mysql_settings", "default")
		if err != nil {
			t.Fatalf("ReadDjangoSettings: %v", err)
		}
		_, _, err = s.Database.DSN()
		if !errors.Is(err, config.ErrUnsupportedEngine) {
			t.Fatalf("DSN error = %v, want ErrUnsupportedEngine", err)
		}
		if !strings.Contains(err.Error(), "django.db.backends.mysql") {
			t.Errorf("error %q does not name the engine", err)
		}
		for _, shown := range []string{err.Error(), s.Database.String(), s.Database.GoString()} {
			if strings.Contains(shown, "s3cret") {
				t.Errorf("%q shows the password", shown)
			}
		}
	})
	t.Run("refused engine through ApplyDjango", func(t *testing.T) {
		c := config.Defaults()
		c.Python, c.PythonPath, c.Settings = testdb.Python(t), []string{fixtures}, "mysql_settings"
		_, _, err := c.ApplyDjango(context.Background())
		if !errors.Is(err, config.ErrUnsupportedEngine) || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("ApplyDjango = %v, want ErrUnsupportedEngine without the password", err)
		}
	})
	t.Run("alias, printing module, None TIME_ZONE", func(t *testing.T) {
		c := config.Defaults()
		c.Python, c.PythonPath, c.Settings, c.DBAlias = testdb.Python(t), []string{fixtures}, "noisy_settings", "queue"
		c.Sources = map[string]config.Source{config.KeyTimeZone: config.SourceFlag}
		c.TimeZone = "Europe/Vienna"
		s, ignored, err := c.ApplyDjango(context.Background())
		if err != nil {
			t.Fatalf("ApplyDjango: %v", err)
		}
		if s.Database.Engine != "django.contrib.gis.db.backends.postgis" || s.TimeZone != "Local" || s.UseTZ {
			t.Errorf("settings = %+v", s)
		}
		if !reflect.DeepEqual(ignored, []string{"init_command", "isolation_level"}) {
			t.Errorf("ignored options = %v", ignored)
		}
		// Explicit time zone kept, the rest from Django.
		if c.TimeZone != "Europe/Vienna" || c.Source(config.KeyTimeZone) != config.SourceFlag {
			t.Errorf("time zone %q from %s, want the flag's", c.TimeZone, c.Source(config.KeyTimeZone))
		}
		if c.UseTZ || c.Source(config.KeyUseTZ) != config.SourceDjango || c.Source(config.KeyDB) != config.SourceDjango {
			t.Errorf("use_tz %v from %s, db from %s", c.UseTZ, c.Source(config.KeyUseTZ), c.Source(config.KeyDB))
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
		// Over a socket lib/pq turns SSL off, so the option is checked in the URL.
		if u, err := url.Parse(c.DB); err != nil || u.Query().Get("sslmode") != "require" {
			t.Errorf("DSN %s does not carry sslmode=require (%v)", djangodb.RedactDSN(c.DB), err)
		}
		kv := libpqSees(t, c.DB)
		want := `dbname='eox db/1' host='/var/run/postgresql' password='p@ss:w/rd%?&#' port='5433' sslmode='disable' user='eox@site'`
		if kv != want {
			t.Errorf("libpq sees %s\nwant        %s", kv, want)
		}
	})
	t.Run("database TIME_ZONE", func(t *testing.T) {
		c := config.Defaults()
		c.Python, c.PythonPath, c.Settings = testdb.Python(t), []string{fixtures}, "dbtz_settings"
		if _, _, err := c.ApplyDjango(context.Background()); err != nil {
			t.Fatalf("ApplyDjango: %v", err)
		}
		opts, err := c.StoreOptions()
		if err != nil || c.DBTimeZone != "Europe/Vienna" || !opts.UseTZ || opts.DBTimeZone == nil || opts.DBTimeZone.String() != "Europe/Vienna" {
			t.Errorf("DBTimeZone %q, store options %+v, %v; want Europe/Vienna under USE_TZ", c.DBTimeZone, opts, err)
		}
	})
	t.Run("missing alias", func(t *testing.T) {
		_, err := readSettings(t, []string{fixtures}, "noisy_settings", "nope")
		if !errors.Is(err, config.ErrDjangoSettings) || !strings.Contains(err.Error(), `'nope'`) || !strings.Contains(err.Error(), "default, queue") {
			t.Fatalf("error = %v, want one naming the alias and the aliases there are", err)
		}
	})
	t.Run("module that fails to import", func(t *testing.T) {
		_, err := readSettings(t, []string{fixtures}, "broken_settings", "default")
		if !errors.Is(err, config.ErrDjangoSettings) || !strings.Contains(err.Error(), "module_that_does_not_exist") {
			t.Fatalf("error = %v, want one naming the missing module", err)
		}
	})
	t.Run("module not on the path", func(t *testing.T) {
		_, err := readSettings(t, nil, "mysql_settings", "default")
		if !errors.Is(err, config.ErrDjangoSettings) || !strings.Contains(err.Error(), "mysql_settings") {
			t.Fatalf("error = %v, want one naming the module", err)
		}
	})
	t.Run("interpreter missing", func(t *testing.T) {
		_, err := config.ReadDjangoSettings(context.Background(), filepath.Join(t.TempDir(), "python9"), nil, "x", "default")
		if !errors.Is(err, config.ErrDjangoSettings) || !strings.Contains(err.Error(), "python9") {
			t.Fatalf("error = %v, want one naming the interpreter", err)
		}
	})
}

func TestDjangoDatabaseDSN(t *testing.T) {
	cases := []struct {
		name    string
		db      config.DjangoDatabase
		want    string // libpq's reading of a postgres DSN (libpqSees), or the sqlite DSN
		ignored []string
		err     error
	}{
		{
			name: "postgresql with host and port",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", User: "u", Password: "pw", Host: "db.example.org", Port: "5432"},
			want: `dbname='eox' host='db.example.org' password='pw' port='5432' user='u'`,
		},
		{
			name: "psycopg2 alias, no user, default port",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql_psycopg2", Name: "eox", Host: "10.0.0.1"},
			want: `dbname='eox' host='10.0.0.1' port='5432' user='os-user'`,
		},
		{
			name: "IPv6 host",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", Host: "::1", Port: "5432"},
			want: `dbname='eox' host='::1' port='5432' user='os-user'`,
		},
		{
			name: "IPv6 host without port",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", Host: "fe80::1"},
			want: `dbname='eox' host='fe80::1' port='5432' user='os-user'`,
		},
		{
			name: "empty host is the default socket",
			db:   config.DjangoDatabase{Engine: "django.contrib.gis.db.backends.postgis", Name: "eox", User: "eox"},
			want: `dbname='eox' host='/var/run/postgresql' port='5432' sslmode='disable' user='eox'`,
		},
		{
			name: "socket directory host",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", Host: "/tmp/pg sock", Port: "6000"},
			want: `dbname='eox' host='/tmp/pg sock' port='6000' sslmode='disable' user='os-user'`,
		},
		{
			name: "escaping in every part",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "a/b?c#d", User: "us:er@x", Password: "p w/:@?#%'", Host: "h"},
			want: `dbname='a/b?c#d' host='h' password='p w/:@?#%\'' port='5432' user='us:er@x'`,
		},
		{
			name:    "options",
			db:      config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", Host: "h", Options: map[string]any{"sslmode": "verify-full", "connect_timeout": float64(10), "isolation_level": float64(1)}, SkippedOptions: []string{"pool"}},
			want:    `connect_timeout='10' dbname='eox' host='h' port='5432' sslmode='verify-full' user='os-user'`,
			ignored: []string{"pool", "isolation_level"},
		},
		{
			name: "sqlite3",
			db:   config.DjangoDatabase{Engine: "django.db.backends.sqlite3", Name: "/srv/eox/db.sqlite3"},
			want: "sqlite:/srv/eox/db.sqlite3",
		},
		{
			name:    "spatialite relative, options ignored",
			db:      config.DjangoDatabase{Engine: "django.contrib.gis.db.backends.spatialite", Name: "data/db.sqlite3", Options: map[string]any{"timeout": float64(20)}},
			want:    "sqlite:data/db.sqlite3",
			ignored: []string{"timeout"},
		},
		{name: "sqlite memory", db: config.DjangoDatabase{Engine: "django.db.backends.sqlite3", Name: ":memory:"}, err: config.ErrDjangoSettings},
		{name: "postgres without name", db: config.DjangoDatabase{Engine: "django.db.backends.postgresql"}, err: config.ErrDjangoSettings},
		{name: "oracle", db: config.DjangoDatabase{Engine: "django.db.backends.oracle", Name: "x", Password: "hunter2"}, err: config.ErrUnsupportedEngine},
		{name: "empty engine", db: config.DjangoDatabase{Name: "x"}, err: config.ErrUnsupportedEngine},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn, ignored, err := tc.db.DSN()
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("DSN = %q, %v; want %v", dsn, err, tc.err)
				}
				if tc.db.Password != "" && strings.Contains(err.Error(), tc.db.Password) {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DSN: %v", err)
			}
			got := dsn
			if strings.HasPrefix(dsn, "postgres://") {
				got = libpqSees(t, dsn)
				if tc.db.Password != "" && strings.Contains(djangodb.RedactDSN(dsn), tc.db.Password) {
					t.Errorf("RedactDSN(%s) shows the password", dsn)
				}
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !reflect.DeepEqual(ignored, tc.ignored) {
				t.Errorf("ignored = %v, want %v", ignored, tc.ignored)
			}
		})
	}
}

// libpqSees renders the connection parameters lib/pq derives from dsn, as
// the driver does when it connects: sorted key='value' pairs, \' and \\
// escaped. dbname, host, port and user are always shown (port 5432 and user
// os-user are lib/pq's defaults), the rest when set. The test's PG*
// environment is cleared and USER is os-user, so that only dsn counts.
func libpqSees(t *testing.T, dsn string) string {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PG") {
			t.Setenv(k, v)
			os.Unsetenv(k)
		}
	}
	t.Setenv("USER", "os-user")
	c, err := pq.NewConfig(dsn)
	if err != nil {
		t.Fatalf("libpq cannot read %s: %v", djangodb.RedactDSN(dsn), err)
	}
	esc := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	var kvs []string
	add := func(k, v string, always bool) {
		if always || v != "" {
			kvs = append(kvs, k+"='"+esc.Replace(v)+"'")
		}
	}
	if c.ConnectTimeout != 0 {
		add("connect_timeout", strconv.Itoa(int(c.ConnectTimeout/time.Second)), true)
	}
	add("dbname", c.Database, true)
	add("host", c.Host, true)
	add("password", c.Password, false)
	add("port", strconv.Itoa(int(c.Port)), true)
	add("sslmode", string(c.SSLMode), false)
	add("user", c.User, true)
	return strings.Join(kvs, " ")
}

// TestDjangoSettingsPython2: `-s` with `--python python2.7` reads a Python 2
// settings module (print statement, long literal, unicode) without
// Django, which Python 2 cannot have here.
func TestDjangoSettingsPython2(t *testing.T) {
	const py2 = "/usr/bin/python2.7"
	if _, err := os.Stat(py2); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must provide it (scripts/setup-python2.sh)", py2)
		}
		t.Skip("no python2.7")
	}
	fixtures, err := filepath.Abs(filepath.Join("testdata", "djsettings"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvDjangoSettings, "")
	t.Setenv("PYTHONDONTWRITEBYTECODE", "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := config.ReadDjangoSettings(ctx, py2, []string{fixtures}, "py2_settings", "default")
	if err != nil {
		t.Fatalf("ReadDjangoSettings under python2.7: %v", err)
	}
	if s.TimeZone != "Europe/Vienna" || !s.UseTZ || s.Database.Name != "eoxserver" || s.Database.User != "eox" ||
		s.Database.Host != "db1,db2" || s.Database.Port != "5432" {
		t.Errorf("settings %+v", s)
	}
	dsn, _, err := s.Database.DSN()
	if err != nil || !strings.Contains(dsn, "target_session_attrs=read-write") {
		t.Errorf("DSN %q, %v", djangodb.RedactDSN(dsn), err)
	}
}
