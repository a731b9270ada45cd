package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "modernc.org/sqlite"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// DBOptions are what the callers' tests need differently of a DB: their
// workloads differ by orders of magnitude, so do their time limits.
type DBOptions struct {
	BusyTimeout   time.Duration // SQLite busy_timeout of the test's own connections
	AppName       string        // PostgreSQL application_name of the test's sessions, "" for none
	MaxOpenConns  int           // 0: unlimited
	QueryTimeout  time.Duration // of each QueryInt
	ExecTimeout   time.Duration // of each Exec
	PythonTimeout time.Duration // of each Python run
	BatchBuffer   int           // the longest answer line of a producer batch
}

// DB is one Django-migrated database with SQL access, the Python producer
// of integration/ and the settings to point atpd at it.
type DB struct {
	*Producer
	T    testing.TB
	DSN  string
	Cfg  testdb.Config
	PG   bool
	SQL  *sql.DB
	opts DBOptions
}

// OpenDB wraps the migrated database dsn (PostgreSQL when pg).
func OpenDB(t testing.TB, dsn string, pg bool, cfg testdb.Config, o DBOptions) *DB {
	t.Helper()
	d := &DB{Producer: NewProducer(t, dsn, cfg), T: t, DSN: dsn, Cfg: cfg, PG: pg, opts: o}
	d.Producer.Timeout = o.PythonTimeout
	d.Producer.Buffer = o.BatchBuffer
	driver, src := "postgres", dsn
	if pg && o.AppName != "" {
		src = WithAppName(t, dsn, o.AppName)
	}
	if !pg {
		driver = "sqlite"
		src = djangodb.SQLitePath(dsn) + "?_pragma=busy_timeout(" + strconv.FormatInt(o.BusyTimeout.Milliseconds(), 10) + ")"
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(o.MaxOpenConns)
	t.Cleanup(func() { db.Close() })
	d.SQL = db
	return d
}

// WithAppName returns the PostgreSQL URL dsn with its sessions named
// name, so that fault injection can tell them apart.
func WithAppName(t testing.TB, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", djangodb.RedactDSN(dsn), err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// Zone is the Django TIME_ZONE of the database.
func (d *DB) Zone() string {
	if d.Cfg.TimeZone == "" {
		return "UTC"
	}
	return d.Cfg.TimeZone
}

// DBArgs are the flags that point atpd at this database.
func (d *DB) DBArgs() []string {
	return []string{"--db", d.DSN, "--use-tz=" + strconv.FormatBool(d.Cfg.UseTZ), "--time-zone", d.Zone()}
}

var placeholder = regexp.MustCompile(`\?`)

// Rebind turns ? placeholders into PostgreSQL's $n.
func (d *DB) Rebind(q string) string {
	if !d.PG {
		return q
	}
	n := 0
	return placeholder.ReplaceAllStringFunc(q, func(string) string {
		n++
		return "$" + strconv.Itoa(n)
	})
}

// QueryInt runs a query of one integer.
func (d *DB) QueryInt(q string, args ...any) int {
	d.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.QueryTimeout)
	defer cancel()
	var n int
	if err := d.SQL.QueryRowContext(ctx, d.Rebind(q), args...).Scan(&n); err != nil {
		d.T.Fatalf("%s: %v", q, err)
	}
	return n
}

// Exec runs a statement and returns the rows it affected.
func (d *DB) Exec(q string, args ...any) int64 {
	d.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.ExecTimeout)
	defer cancel()
	res, err := d.SQL.ExecContext(ctx, d.Rebind(q), args...)
	if err != nil {
		d.T.Fatalf("%s: %v", q, err)
	}
	n, _ := res.RowsAffected()
	return n
}

// Batch runs producer.py commands in one Python process; each must succeed.
func (d *DB) Batch(cmds ...[]string) []json.RawMessage {
	d.T.Helper()
	return MustBatch(d.Producer, cmds...)
}

// LiveProducer starts the producer; it ends, and must end cleanly, with
// the test.
func (d *DB) LiveProducer() *LiveProducer {
	d.T.Helper()
	return d.Producer.Live()
}
