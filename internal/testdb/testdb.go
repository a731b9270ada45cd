// Package testdb owns the databases tests run against: throwaway PostgreSQL
// databases and SQLite files whose ATP tables were made by the real Django
// `manage.py migrate` of the integration/ project, never by atpd itself, so
// that every test checks atpd against the schema EOxServer deployments have.
//
// Migrating takes seconds, so each (schema, config) is migrated once into a
// cache (a PostgreSQL template database, a SQLite file in os.TempDir) keyed by
// a hash of the migration sources, the Django version and the config; each
// test then gets a cheap copy that is removed when it ends.
//
// When PostgreSQL or Python with Django is missing, tests are skipped on a
// developer machine and fail when CI=true, so that CI cannot go green by
// skipping everything.
package testdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Config is the part of Django's settings that changes what is stored.
type Config struct {
	UseTZ    bool
	TimeZone string // Django TIME_ZONE, "" = "UTC"
}

func (c Config) zone() string {
	if c.TimeZone == "" {
		return "UTC"
	}
	return c.TimeZone
}

func (c Config) String() string {
	return fmt.Sprintf("USE_TZ=%t TIME_ZONE=%s", c.UseTZ, c.zone())
}

// Options returns the store options matching the Django settings of c.
// An unknown time zone is a mistake in the test itself, so it panics.
func Options(c Config) djangodb.Options {
	loc, err := time.LoadLocation(c.zone())
	if err != nil {
		panic(fmt.Sprintf("testdb: TIME_ZONE %q: %v", c.zone(), err))
	}
	return djangodb.Options{UseTZ: c.UseTZ, TimeZone: loc}
}

// inCI reports whether missing prerequisites must fail rather than skip.
func inCI() bool {
	ok, _ := strconv.ParseBool(os.Getenv("CI"))
	return ok
}

// unavailable skips the test locally and fails it in CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("testdb: %s (CI=true: prerequisites must be installed, run scripts/setup.sh)", msg)
	}
	t.Skipf("testdb: %s; skipping (run scripts/setup.sh to install)", msg)
}

// RepoRoot returns the directory holding go.mod and integration/.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	// This file's own location is stable; the test's working directory is
	// whatever package is under test.
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Join(filepath.Dir(file), "..", "..")
		if isRoot(dir) {
			return filepath.Clean(dir), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if isRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod with integration/manage.py above the working directory")
		}
		dir = parent
	}
}

func isRoot(dir string) bool {
	_, err1 := os.Stat(filepath.Join(dir, "go.mod"))
	_, err2 := os.Stat(filepath.Join(dir, "integration", "manage.py"))
	return err1 == nil && err2 == nil
}

// python is what the one probe of the interpreter found.
type python struct {
	path          string
	djangoVersion string
	djangoErr     error
	psycopgErr    error
}

var (
	probeOnce sync.Once
	probed    python
)

// probePython checks once per test binary which interpreter has Django and
// whether it also has psycopg2 (needed for PostgreSQL only).
func probePython() python {
	probeOnce.Do(func() {
		p := os.Getenv("ATPD_TEST_PYTHON")
		if p == "" {
			// Debian's interpreter: a pyenv python3 earlier on PATH has no Django.
			p = "/usr/bin/python3"
		}
		probed.path = p
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, p, "-c", "import django; print(django.get_version())").CombinedOutput()
		if err != nil {
			probed.djangoErr = fmt.Errorf("%s cannot import django: %w: %s", p, err, strings.TrimSpace(string(out)))
			return
		}
		probed.djangoVersion = strings.TrimSpace(string(out))
		out, err = exec.CommandContext(ctx, p, "-c", "import psycopg2").CombinedOutput()
		if err != nil {
			probed.psycopgErr = fmt.Errorf("%s cannot import psycopg2: %w: %s", p, err, strings.TrimSpace(string(out)))
		}
	})
	return probed
}

// Python returns the path of the python3 that has Django, skipping (or, in
// CI, failing) the test when there is none.
func Python(t testing.TB) string {
	t.Helper()
	p := probePython()
	if p.djangoErr != nil {
		unavailable(t, "%v", p.djangoErr)
	}
	return p.path
}

// DjangoEnv returns the environment that points integration/'s manage.py,
// producer.py and tracker.py at the database dsn with the settings of c.
// Inherited ATPD_DJANGO_* and Django variables are replaced, not merged.
func DjangoEnv(t testing.TB, dsn string, c Config) []string {
	t.Helper()
	env, err := djangoEnv(RepoRoot(t), dsn, c)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return env
}

func djangoEnv(root, dsn string, c Config) ([]string, error) {
	vars, err := djangoVars(dsn, c)
	if err != nil {
		return nil, err
	}
	return append(baseEnv(), append(vars, "PYTHONPATH="+filepath.Join(root, "integration"))...), nil
}

func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "ATPD_DJANGO_") || name == "DJANGO_SETTINGS_MODULE" || name == "PYTHONPATH" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func djangoVars(dsn string, c Config) ([]string, error) {
	useTZ := "0"
	if c.UseTZ {
		useTZ = "1"
	}
	vars := []string{
		"DJANGO_SETTINGS_MODULE=atpdtest.settings",
		"ATPD_DJANGO_USE_TZ=" + useTZ,
		"ATPD_DJANGO_TIME_ZONE=" + c.zone(),
		// Keep the checkout free of __pycache__ written by test runs.
		"PYTHONDONTWRITEBYTECODE=1",
	}
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := djangodb.SQLitePath(dsn)
		if path == "" {
			return nil, fmt.Errorf("django env for %q: empty SQLite path", dsn)
		}
		return append(vars, "ATPD_DJANGO_ENGINE=sqlite3", "ATPD_DJANGO_NAME="+path), nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		pg, err := parsePG(dsn)
		if err != nil {
			return nil, err
		}
		return append(vars,
			"ATPD_DJANGO_ENGINE=postgresql",
			"ATPD_DJANGO_NAME="+pg.dbname,
			"ATPD_DJANGO_USER="+pg.user,
			"ATPD_DJANGO_PASSWORD="+pg.password,
			"ATPD_DJANGO_HOST="+pg.host,
			"ATPD_DJANGO_PORT="+pg.port,
		), nil
	default:
		return nil, fmt.Errorf("django env for %q: %w", djangodb.RedactDSN(dsn), djangodb.ErrUnsupported)
	}
}

// sourceHash identifies the schema Django's migrate produces: the migration
// sources, models and settings of integration/, and the Django version. A
// change in any of them makes a new cache entry instead of reusing a stale one.
func sourceHash(root, djangoVersion string, c Config) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "testdb cache v1\x00django %s\x00%s\x00", djangoVersion, c)
	var files []string
	for _, dir := range []string{"integration/processes", "integration/atpdtest"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(path, ".py") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash migration sources: %w", err)
		}
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("hash migration sources: %w", err)
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// migrate runs the real `manage.py migrate` against dsn. It takes no
// testing.TB because it runs inside a sync.Once, where t.Fatal's Goexit would
// leave the once marked done without a result.
func migrate(py, root, dsn string, c Config) error {
	env, err := djangoEnv(root, dsn, c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "manage.py", "migrate", "--no-input", "-v", "0")
	cmd.Dir = filepath.Join(root, "integration")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("django migrate of %s (%s): %w\n%s", djangodb.RedactDSN(dsn), c, err, out)
	}
	return nil
}

// keyedOnce runs a build at most once per key in this process and remembers
// its result; builders in other processes are kept apart by locks on disk or
// in PostgreSQL.
type keyedOnce struct {
	mu   sync.Mutex
	done map[string]*onceResult
}

type onceResult struct {
	once sync.Once
	val  string
	err  error
}

func (k *keyedOnce) do(key string, build func() (string, error)) (string, error) {
	k.mu.Lock()
	if k.done == nil {
		k.done = make(map[string]*onceResult)
	}
	r, ok := k.done[key]
	if !ok {
		r = &onceResult{}
		k.done[key] = r
	}
	k.mu.Unlock()
	r.once.Do(func() { r.val, r.err = build() })
	return r.val, r.err
}
