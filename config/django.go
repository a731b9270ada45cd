package config

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

//go:embed djangosettings.py
var djangoScript string

// djangoMark prefixes the script's JSON line, so that whatever a settings
// module prints while being imported cannot be mistaken for it.
const djangoMark = "ATPD-DJANGO-SETTINGS: "

// DjangoTimeout bounds reading a settings module; importing EOxServer's
// settings can take seconds, a hang must not stall start-up forever.
const DjangoTimeout = 60 * time.Second

// DefaultPostgresSocketDir is where Debian's libpq looks for the server's
// socket; Django's empty HOST means "connect through it".
const DefaultPostgresSocketDir = "/var/run/postgresql"

// Errors callers branch on.
var (
	// ErrDjangoSettings: the settings module could not be read.
	ErrDjangoSettings = errors.New("cannot read Django settings")
	// ErrUnsupportedEngine: settings.DATABASES names a backend atpd has no
	// store for.
	ErrUnsupportedEngine = errors.New("unsupported Django database engine")
)

// DjangoDatabase is one entry of settings.DATABASES.
type DjangoDatabase struct {
	Engine   string
	Name     string
	User     string
	Password string
	Host     string
	Port     string
	// Options holds the scalar OPTIONS; SkippedOptions names the others.
	Options        map[string]any
	SkippedOptions []string
}

// LogValue keeps the password out of logs.
func (d DjangoDatabase) LogValue() slog.Value {
	return slog.GroupValue(slog.String("engine", d.Engine), slog.String("name", d.Name),
		slog.String("user", d.User), slog.String("host", d.Host), slog.String("port", d.Port))
}

// String keeps the password out of %v.
func (d DjangoDatabase) String() string {
	return fmt.Sprintf("%s %s@%s:%s/%s", d.Engine, d.User, d.Host, d.Port, d.Name)
}

// GoString keeps the password out of %#v.
func (d DjangoDatabase) GoString() string { return d.String() }

// DjangoSettings is what atpd reads from a settings module.
type DjangoSettings struct {
	Module   string
	Alias    string
	Database DjangoDatabase
	// TimeZone is settings.TIME_ZONE; "Local" when it is None (the host's
	// time zone, as Django does).
	TimeZone string
	UseTZ    bool
	// DBTimeZone is the alias's DATABASES[alias]['TIME_ZONE'], "" when
	// unset: with USE_TZ, the zone SQLite's naive timestamps are in and
	// PostgreSQL's connection time zone.
	DBTimeZone string
}

// Engines atpd can talk to, by the store they map to.
var (
	postgresEngines = map[string]bool{
		"django.db.backends.postgresql":          true,
		"django.db.backends.postgresql_psycopg2": true,
		"django.contrib.gis.db.backends.postgis": true,
	}
	sqliteEngines = map[string]bool{
		"django.db.backends.sqlite3":                true,
		"django.contrib.gis.db.backends.spatialite": true,
	}
)

// libpq connection parameters that may come from OPTIONS; Django passes
// every OPTIONS entry to psycopg2.connect, but isolation_level and the like
// are psycopg2's own and mean nothing in a DSN.
var libpqOptions = map[string]bool{
	"sslmode": true, "sslcert": true, "sslkey": true, "sslrootcert": true, "sslpassword": true,
	"connect_timeout": true, "application_name": true, "options": true,
	"target_session_attrs": true, "load_balance_hosts": true, "sslsni": true, "sslinline": true,
}

// DSN returns the store DSN for the database, and the OPTIONS that had to
// be left out. An ENGINE atpd has no store for wraps ErrUnsupportedEngine.
func (d DjangoDatabase) DSN() (dsn string, ignored []string, err error) {
	ignored = append(ignored, d.SkippedOptions...)
	switch {
	case postgresEngines[d.Engine]:
		if d.Name == "" {
			return "", nil, fmt.Errorf("config: Django database %s has no NAME: %w", d.Engine, ErrDjangoSettings)
		}
		u := url.URL{Scheme: "postgres", Path: "/" + d.Name}
		switch {
		case d.Password != "":
			u.User = url.UserPassword(d.User, d.Password)
		case d.User != "":
			u.User = url.User(d.User)
		}
		q := url.Values{}
		switch {
		case d.Host == "", strings.HasPrefix(d.Host, "/"), strings.Contains(d.Host, ","):
			// A socket directory cannot be the URL's host, nor can a list
			// of hosts ("db1,db2": a primary and its standbys, picked by
			// OPTIONS target_session_attrs), which lib/pq reads as the
			// host= and port= lists, one port for all or one per host,
			// as psycopg2 passes them to libpq.
			dir := d.Host
			if dir == "" {
				dir = DefaultPostgresSocketDir
			}
			q.Set("host", dir)
			if d.Port != "" {
				q.Set("port", d.Port)
			}
		case d.Port != "":
			u.Host = net.JoinHostPort(d.Host, d.Port)
		case strings.Contains(d.Host, ":"):
			// lib/pq cannot read a bracketed URL host without a port.
			q.Set("host", d.Host)
		default:
			u.Host = d.Host
		}
		keys := make([]string, 0, len(d.Options))
		for k := range d.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !libpqOptions[k] {
				ignored = append(ignored, k)
				continue
			}
			q.Set(k, fmt.Sprint(d.Options[k]))
		}
		u.RawQuery = q.Encode()
		return u.String(), ignored, nil
	case sqliteEngines[d.Engine]:
		if d.Name == "" || d.Name == ":memory:" || strings.HasPrefix(d.Name, "file:") {
			return "", nil, fmt.Errorf("config: Django SQLite database NAME %q is not a file atpd can share with Django: %w", d.Name, ErrDjangoSettings)
		}
		for k := range d.Options {
			ignored = append(ignored, k)
		}
		sort.Strings(ignored)
		return "sqlite:" + d.Name, ignored, nil
	}
	return "", nil, fmt.Errorf("config: Django ENGINE %q: %w (atpd supports PostgreSQL/PostGIS and SQLite/SpatiaLite)", d.Engine, ErrUnsupportedEngine)
}

// ReadDjangoSettings imports the settings module with the given Python
// interpreter (pythonPath appended to sys.path, as -p does) and returns the
// alias's database, TIME_ZONE and USE_TZ.
func ReadDjangoSettings(ctx context.Context, python string, pythonPath []string, module, alias string) (DjangoSettings, error) {
	ctx, cancel := context.WithTimeout(ctx, DjangoTimeout)
	defer cancel()
	args := append([]string{"-c", djangoScript, alias}, pythonPath...)
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Env = append(os.Environ(), EnvDjangoSettings+"="+module)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()

	var out struct {
		Error          string         `json:"error"`
		NoDjango       bool           `json:"no_django"`
		Executable     string         `json:"executable"`
		Version        string         `json:"version"`
		Engine         string         `json:"engine"`
		Name           string         `json:"name"`
		User           string         `json:"user"`
		Password       string         `json:"password"`
		Host           string         `json:"host"`
		Port           string         `json:"port"`
		Options        map[string]any `json:"options"`
		SkippedOptions []string       `json:"skipped_options"`
		TimeZone       *string        `json:"time_zone"`
		DBTimeZone     *string        `json:"db_time_zone"`
		UseTZ          bool           `json:"use_tz"`
	}
	line, found := lastMarked(stdout.Bytes())
	if !found {
		reason := lastLine(stderr.Bytes())
		if runErr != nil {
			reason = runErr.Error() + ": " + reason
		}
		if ctx.Err() != nil {
			reason = "timed out after " + DjangoTimeout.String()
		}
		if errors.Is(runErr, exec.ErrNotFound) {
			return DjangoSettings{}, fmt.Errorf("config: settings module %s: no Python interpreter %q (%v); name the one of the EOxServer deployment with --python: %w", module, python, runErr, ErrDjangoSettings)
		}
		return DjangoSettings{}, fmt.Errorf("config: settings module %s (python %s): %s: %w", module, python, reason, ErrDjangoSettings)
	}
	if err := json.Unmarshal(line, &out); err != nil {
		return DjangoSettings{}, fmt.Errorf("config: settings module %s: bad reply from the settings reader: %v: %w", module, err, ErrDjangoSettings)
	}
	if out.NoDjango {
		used := python
		if out.Executable != "" && out.Executable != python {
			used += " = " + out.Executable
		}
		return DjangoSettings{}, fmt.Errorf("config: settings module %s: the Python interpreter %s (Python %s) cannot import Django (%s); install Django for it, or name the interpreter of the EOxServer deployment with --python (e.g. --python /srv/eoxserver/venv/bin/python): %w",
			module, used, out.Version, out.Error, ErrDjangoSettings)
	}
	if out.Error != "" {
		return DjangoSettings{}, fmt.Errorf("config: settings module %s: %s: %w", module, out.Error, ErrDjangoSettings)
	}
	s := DjangoSettings{
		Module: module,
		Alias:  alias,
		Database: DjangoDatabase{
			Engine: out.Engine, Name: out.Name, User: out.User, Password: out.Password,
			Host: out.Host, Port: out.Port, Options: out.Options, SkippedOptions: out.SkippedOptions,
		},
		TimeZone: "Local",
		UseTZ:    out.UseTZ,
	}
	if out.TimeZone != nil {
		s.TimeZone = *out.TimeZone
	}
	if out.DBTimeZone != nil {
		s.DBTimeZone = *out.DBTimeZone
	}
	return s, nil
}

func lastMarked(b []byte) ([]byte, bool) {
	var found []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(djangoMark)); ok {
			found = append(found[:0], rest...)
		}
	}
	return found, found != nil
}

// lastLine is the line of a Python traceback that says what went wrong.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "no output"
}

// ApplyDjango reads the settings module when Settings is set and fills DB,
// UseTZ and TimeZone from it, except those given explicitly (flag,
// environment or file). It returns the settings read, or nil when there was
// nothing to read. Ignored OPTIONS are returned for the caller to log.
func (c *Config) ApplyDjango(ctx context.Context) (*DjangoSettings, []string, error) {
	if c.Settings == "" {
		return nil, nil, nil
	}
	needDB := c.Source(KeyDB) == SourceDefault
	needTZ := c.Source(KeyUseTZ) == SourceDefault || c.Source(KeyTimeZone) == SourceDefault
	if !needDB && !needTZ {
		return nil, nil, nil
	}
	s, err := ReadDjangoSettings(ctx, c.Python, c.PythonPath, c.Settings, c.DBAlias)
	if err != nil {
		return nil, nil, err
	}
	if c.Sources == nil {
		c.Sources = map[string]Source{}
	}
	var ignored []string
	if needDB {
		dsn, ign, err := s.Database.DSN()
		if err != nil {
			return nil, nil, fmt.Errorf("config: settings module %s, database %q: %w", s.Module, s.Alias, err)
		}
		c.DB, c.Sources[KeyDB], ignored = dsn, SourceDjango, ign
	}
	if c.Source(KeyUseTZ) == SourceDefault {
		c.UseTZ, c.Sources[KeyUseTZ] = s.UseTZ, SourceDjango
	}
	if c.Source(KeyTimeZone) == SourceDefault {
		c.TimeZone, c.Sources[KeyTimeZone] = s.TimeZone, SourceDjango
	}
	if c.Source(KeyUseTZ) == SourceDjango {
		c.DBTimeZone = s.DBTimeZone
	}
	return &s, ignored, nil
}
