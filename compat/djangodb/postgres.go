package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// The PostgreSQL dialect shares its tables with Django producers and
// possibly the original Python daemon, all under READ COMMITTED (begun
// explicitly). Timestamps are instants from the store's clock bound as
// parameters, never the server's now(): log order must follow the order
// this process wrote in, and the columns are timestamptz so the session
// time zone does not change what is stored. Its SQL is in postgres_sql.go.

// pgTimeout bounds each call to the database (one statement or one short
// transaction). Nothing here should take more than milliseconds; the bound
// is for a server that stopped answering.
const pgTimeout = 30 * time.Second

// PGConnectTimeout bounds one connection attempt (lib/pq's
// connect_timeout) unless the DSN or PGCONNECT_TIMEOUT sets one.
const PGConnectTimeout = 10 * time.Second

// pgMaxIdleConns is how many idle connections the pool keeps.
const pgMaxIdleConns = 8

// pgMigrateLock is the advisory lock key that serialises concurrent Migrate
// calls ("atpd" "mig" in ASCII).
const pgMigrateLock = 0x61747064_6d6967

// pgEnqueueLock serialises atpd's enqueuers, so that the queue limit holds
// among them ("atpd" "enq"). Python producers do not take it; their check is
// as racy as it always was.
const pgEnqueueLock = 0x61747064_656e71

type pgStore struct {
	*store
	db       *sql.DB
	conn     string // connection string, for the LISTEN connection
	describe string
	stmts    pgStmts
}

// OpenPostgres connects to PostgreSQL with lib/pq. dsn is a postgres:// URL
// or a key=value connection string. The session time zone is set as Django
// sets it (the database's TIME_ZONE or UTC with USE_TZ, else TIME_ZONE)
// unless the DSN names one.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (Store, error) {
	s := &pgStore{describe: "postgres " + RedactDSN(dsn)}
	s.store = newStore(s, &pgSQL, opts)
	// time.Local has no IANA name to hand to the server; its default
	// zone is then the best guess.
	zone := s.loc.String()
	if zone == "Local" {
		zone = ""
	}
	// binary_parameters makes lib/pq send a parameterised statement in one
	// round trip instead of two; no []byte is ever bound here, so nothing
	// else changes.
	// A server that accepts the TCP connection and never answers would
	// hold a connection attempt forever: lib/pq bounds the start-up
	// exchange by connect_timeout only. The DSN's own value (or
	// PGCONNECT_TIMEOUT) wins.
	timeout := ""
	if os.Getenv("PGCONNECT_TIMEOUT") == "" {
		timeout = strconv.Itoa(int(PGConnectTimeout / time.Second))
	}
	conn, err := pgWithParams(dsn, [2]string{"timezone", zone}, [2]string{"binary_parameters", "yes"},
		[2]string{"connect_timeout", timeout})
	if err != nil {
		return nil, fmt.Errorf("djangodb: open %s: %w", s.describe, err)
	}
	s.conn = conn
	s.db, err = sql.Open("postgres", conn)
	if err != nil {
		return nil, fmt.Errorf("djangodb: open %s: %w", s.describe, err)
	}
	// The daemon's workers each hold a connection only for a statement;
	// keeping some idle saves a connection setup per task.
	s.db.SetMaxIdleConns(pgMaxIdleConns)
	s.db.SetConnMaxIdleTime(5 * time.Minute)
	if err := s.Ping(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// pgWithParams adds connection parameters to dsn (a URL or key=value
// string), each unless dsn sets it already; empty values are skipped.
func pgWithParams(dsn string, params ...[2]string) (string, error) {
	isURL := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	var u *url.URL
	var q url.Values
	if isURL {
		var err error
		if u, err = url.Parse(dsn); err != nil {
			// url.Error quotes the whole URL, password included.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return "", fmt.Errorf("parse URL: %w", err)
		}
		q = u.Query()
	}
	for _, p := range params {
		key, value := p[0], p[1]
		if value == "" {
			continue
		}
		if isURL {
			set := false
			for k := range q {
				set = set || strings.EqualFold(k, key)
			}
			if !set {
				q.Set(key, value)
			}
			continue
		}
		if !strings.Contains(strings.ToLower(dsn), strings.ToLower(key)+"=") {
			dsn = strings.TrimSpace(dsn + " " + key + "='" + strings.ReplaceAll(value, "'", `\'`) + "'")
		}
	}
	if isURL {
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn, nil
}

// The dialect.

func (s *pgStore) groupCommit() bool          { return false } // the server groups concurrent commits' WAL flushes
func (s *pgStore) name() string               { return s.describe }
func (s *pgStore) reads() *sql.DB             { return s.db }
func (s *pgStore) batched() bool              { return true }
func (s *pgStore) callTimeout() time.Duration { return pgTimeout }

// ping returns when ctx ends even if the connection attempt does not:
// lib/pq does not watch ctx during the start-up exchange, which
// connect_timeout ends later.
func (s *pgStore) ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.db.PingContext(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
func (s *pgStore) closeDB() error {
	err := s.db.Close()
	if ConnectionLost(err) {
		// Saying goodbye on a connection the server already ended.
		err = nil
	}
	return errors.Join(s.stmts.close(), err)
}
func (s *pgStore) bindTime(t time.Time) any { return t }

func (s *pgStore) begin(ctx context.Context) (*sql.Tx, error) {
	return s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
}

// dropIdleConns closes the pool's idle connections. It is called when a
// connection was found lost: whatever ended that session (a restart of
// the server, a failover, pg_terminate_backend of the daemon's sessions)
// has most likely ended the idle ones too, and database/sql would
// otherwise hand them out one by one, each failing a call or costing a
// round trip before it is found dead. Connections in use are left alone:
// each is discarded when it reports bad.
func (s *pgStore) dropIdleConns() {
	s.db.SetMaxIdleConns(0)
	s.db.SetMaxIdleConns(pgMaxIdleConns)
}

func (s *pgStore) lostConn() { s.dropIdleConns() }

func (s *pgStore) retry(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func (s *pgStore) unique(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (s *pgStore) readTime(v any) time.Time {
	t, _ := v.(time.Time)
	return t
}

// array binds a column as a PostgreSQL array; timestamps as text, to the
// microsecond, which the statements cast to timestamptz[].
func (s *pgStore) array(col []any) any {
	switch col[0].(type) {
	case int64:
		return pq.Array(column(col, func(v any) int64 { return v.(int64) }))
	case time.Time:
		return pq.Array(column(col, func(v any) string { return v.(time.Time).UTC().Format("2006-01-02 15:04:05.999999Z07:00") }))
	}
	return pq.Array(column(col, func(v any) string { return v.(string) }))
}

func column[T any](col []any, f func(any) T) []T {
	out := make([]T, len(col))
	for i, v := range col {
		out[i] = f(v)
	}
	return out
}

// pgStmts prepares the statements once per connection: the batch
// statements run for every batch, and planning them costs about as much
// server time as running them for a batch of eight.
type pgStmts struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// prep returns query prepared, for use within tx. A failed preparation
// falls back to running the query unprepared: it would fail the same way
// there, with an error that names the problem.
func (s *pgStore) prep(ctx context.Context, tx *sql.Tx, query string) queryer {
	p := &s.stmts
	p.mu.Lock()
	st, ok := p.stmts[query]
	if !ok {
		var err error
		if st, err = s.db.PrepareContext(ctx, query); err != nil {
			p.mu.Unlock()
			return tx
		}
		if p.stmts == nil {
			p.stmts = make(map[string]*sql.Stmt)
		}
		p.stmts[query] = st
	}
	p.mu.Unlock()
	return stmtQueryer{tx.StmtContext(ctx, st)}
}

func (p *pgStmts) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, st := range p.stmts {
		// A statement prepared on a connection that was lost went with
		// its session: nothing is left to close.
		if err := st.Close(); !ConnectionLost(err) {
			errs = append(errs, err)
		}
	}
	p.stmts = nil
	return errors.Join(errs...)
}
