package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	// The admin connection that creates and drops the throwaway databases.
	_ "github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// DefaultAdminURL is the PostgreSQL that scripts/setup.sh prepares; the
// environment variable ATPD_TEST_PG overrides it. The admin role must be
// allowed to create and drop databases.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// dbTimeout bounds each administrative statement; CREATE DATABASE copies the
// template and may have to wait for the template's last session to end.
const dbTimeout = time.Minute

func adminURL() string {
	if u := os.Getenv("ATPD_TEST_PG"); u != "" {
		return u
	}
	return DefaultAdminURL
}

type adminConn struct {
	once sync.Once
	db   *sql.DB
	err  error
}

var (
	adminMu    sync.Mutex
	adminConns = map[string]*adminConn{}
	templates  keyedOnce
)

// admin returns the process-wide pool for the admin URL, pinging it once so
// that a missing server skips every test quickly instead of each timing out.
func admin(u string) (*sql.DB, error) {
	adminMu.Lock()
	a, ok := adminConns[u]
	if !ok {
		a = &adminConn{}
		adminConns[u] = a
	}
	adminMu.Unlock()
	a.once.Do(func() {
		db, err := sql.Open("postgres", u)
		if err != nil {
			a.err = fmt.Errorf("open admin connection: %w", err)
			return
		}
		db.SetMaxOpenConns(4)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			a.err = fmt.Errorf("connect: %w", err)
			return
		}
		a.db = db
	})
	return a.db, a.err
}

// Postgres creates a throwaway PostgreSQL database whose tables Django's
// migrate made with the settings of c, drops it (forcibly) when the test
// ends, and returns its postgres:// URL.
func Postgres(t testing.TB, c Config) string {
	t.Helper()
	py := probePython()
	if py.djangoErr != nil {
		unavailable(t, "%v", py.djangoErr)
	}
	if py.psycopgErr != nil {
		unavailable(t, "%v", py.psycopgErr)
	}
	root := RepoRoot(t)
	au := adminURL()
	db, err := admin(au)
	if err != nil {
		unavailable(t, "PostgreSQL at %s: %v", djangodb.RedactDSN(au), err)
	}
	hash, err := sourceHash(root, py.djangoVersion, c)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	tpl, err := templates.do(au+"\x00"+hash, func() (string, error) {
		return buildTemplate(db, au, py.path, root, c, hash)
	})
	if err != nil {
		t.Fatalf("testdb: PostgreSQL template for %s: %v", c, err)
	}

	name := "atpd_t_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", quoteIdent(name), quoteIdent(tpl))); err != nil {
		t.Fatalf("testdb: create database %s from template %s: %v", name, tpl, err)
	}
	t.Cleanup(func() {
		// FORCE: a test that failed half-way may leave connections open, and
		// a leaked database per failed test would pile up on the server.
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		defer cancel()
		if _, err := db.ExecContext(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", quoteIdent(name))); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(au, name)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return dsn
}

// buildTemplate makes sure the migrated template database for hash exists.
// Test binaries of different packages run in parallel and share the server,
// so creation is serialised by an advisory lock, and the template is migrated
// under a temporary name and renamed when complete: a template name that
// exists is always a fully migrated database.
func buildTemplate(db *sql.DB, au, py, root string, c Config, hash string) (string, error) {
	tpl := "atpd_tpl_" + hash
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("template %s: connect: %w", tpl, err)
	}
	defer conn.Close()

	raw, _ := hex.DecodeString(hash)
	key := int64(binary.BigEndian.Uint64(raw))
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return "", fmt.Errorf("template %s: advisory lock: %w", tpl, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		defer cancel()
		// A failed unlock is harmless: closing the session releases it.
		conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key)
	}()

	exists, err := databaseExists(conn, tpl)
	if err != nil || exists {
		return tpl, err
	}

	// Holding the lock, any build database of this hash is left over from a
	// test binary that died while migrating.
	prefix := "atpd_tplbuild_" + hash + "_"
	stale, err := databasesWithPrefix(conn, prefix)
	if err != nil {
		return "", fmt.Errorf("template %s: %w", tpl, err)
	}
	for _, name := range stale {
		if err := dropDatabase(conn, name); err != nil {
			return "", fmt.Errorf("template %s: %w", tpl, err)
		}
	}

	build := prefix + randomHex(4)
	if err := execTimeout(conn, "CREATE DATABASE "+quoteIdent(build)); err != nil {
		return "", fmt.Errorf("template %s: create database %s: %w", tpl, build, err)
	}
	dsn, err := withDatabase(au, build)
	if err == nil {
		err = migrate(py, root, dsn, c)
	}
	if err == nil {
		err = execTimeout(conn, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", quoteIdent(build), quoteIdent(tpl)))
	}
	if err != nil {
		if derr := dropDatabase(conn, build); derr != nil {
			err = errors.Join(err, derr)
		}
		return "", fmt.Errorf("template %s: %w", tpl, err)
	}
	return tpl, nil
}

func execTimeout(conn *sql.Conn, query string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	_, err := conn.ExecContext(ctx, query, args...)
	return err
}

func databaseExists(conn *sql.Conn, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var n int
	err := conn.QueryRowContext(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	return n > 0, nil
}

func databasesWithPrefix(conn *sql.Conn, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	rows, err := conn.QueryContext(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix)
	if err != nil {
		return nil, fmt.Errorf("list databases %s*: %w", prefix, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list databases %s*: %w", prefix, err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list databases %s*: %w", prefix, err)
	}
	return names, nil
}

func dropDatabase(conn *sql.Conn, name string) error {
	if err := execTimeout(conn, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", quoteIdent(name))); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("testdb: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// withDatabase returns the URL u pointing at database name instead.
func withDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("parse PostgreSQL URL %s: %w", djangodb.RedactDSN(u), err)
	}
	p.Path = "/" + name
	p.RawPath = ""
	return p.String(), nil
}

// pgParams are the parts of a postgres:// URL Django's settings need.
type pgParams struct {
	user, password, host, port, dbname string
}

func parsePG(dsn string) (pgParams, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return pgParams{}, fmt.Errorf("parse PostgreSQL URL %s: %w", djangodb.RedactDSN(dsn), err)
	}
	var p pgParams
	if u.User != nil {
		p.user = u.User.Username()
		p.password, _ = u.User.Password()
	}
	q := u.Query()
	p.host = u.Hostname()
	if h := q.Get("host"); h != "" {
		p.host = h // a Unix socket directory
	}
	p.port = u.Port()
	if p.port == "" {
		p.port = "5432"
	}
	if p.user == "" {
		p.user = q.Get("user")
	}
	if p.password == "" {
		p.password = q.Get("password")
	}
	p.dbname = strings.TrimPrefix(u.Path, "/")
	if p.dbname == "" {
		p.dbname = q.Get("dbname")
	}
	if p.dbname == "" {
		return pgParams{}, fmt.Errorf("PostgreSQL URL %s names no database", djangodb.RedactDSN(dsn))
	}
	return p, nil
}
