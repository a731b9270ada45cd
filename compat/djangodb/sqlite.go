package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The SQLite store shares one database file with Django processes that write
// it at the same time (producers enqueueing, perhaps the Python daemon), so
// everything here is about short, lock-friendly transactions:
//
//   - Every write is one transaction begun with BEGIN IMMEDIATE
//     (_txlock=immediate): the RESERVED lock is taken before the first read, so
//     a transaction never has to upgrade a read lock, the case in which
//     SQLite returns SQLITE_BUSY without waiting (to break a deadlock).
//   - busy_timeout makes SQLite wait for locks other processes hold instead of
//     failing with "database is locked"; Django's own default is the same 5 s.
//     The wait is not fair (the busy handler polls with growing sleeps while
//     a producer's back-to-back autocommit statements keep taking the lock):
//     against one Django producer, waits of 0.25 s were seen on an idle
//     2-core machine and 1.4 s on a loaded one, and a 100 ms timeout failed
//     within a second, so the default is kept and should not be lowered.
//   - Writes go through a pool of exactly one connection. SQLite admits one
//     writer per file anyway; a second connection of our own would only wait
//     in the busy handler, which polls with sleeps, while a pool of one queues
//     our writers on a channel and leaves the file lock to other processes.
//     Their transactions share commits (groupcommit.go), which pauses when
//     it has held the lock for long without a gap, so that those processes'
//     busy handlers find it free.
//   - Reads use a separate small pool of query_only connections outside any
//     explicit transaction, so that an operator's listing is not queued
//     behind the daemon's writes and can never write by mistake.
//   - The journal mode is left as the file has it unless Options.SQLiteWAL
//     asks for WAL. WAL changes the file for every Django process using it
//     (and needs shared memory, so not on network file systems), so it is
//     an explicit opt-in; rollback-journal mode with the settings above
//     was enough for a producer and the daemon writing at the same time.
//     Its cost is throughput: every commit syncs the journal and the file,
//     which is why the daemon commits many tasks per transaction (Claim,
//     Complete).

// sqliteBusyTimeout is Django's (Python sqlite3's) default lock wait.
const sqliteBusyTimeout = 5 * time.Second

// sqliteReaders bounds the read pool; reads are short point queries.
const sqliteReaders = 4

type sqliteStore struct {
	*store
	path string
	rw   *sql.DB // one connection, BEGIN IMMEDIATE
	ro   *sql.DB // query_only readers
	tf   djangoTime
	// timeout bounds each call: a write may wait busy_timeout for the lock at
	// BEGIN and again at COMMIT, plus its own work.
	timeout time.Duration
}

// OpenSQLite opens the SQLite database file at path, creating an empty file
// if there is none (Migrate then creates the tables). It checks that the file
// can be read.
func OpenSQLite(ctx context.Context, path string, opts Options) (Store, error) {
	if path == "" {
		return nil, errors.New("djangodb: open sqlite: empty path")
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = sqliteBusyTimeout
	}
	s := &sqliteStore{path: path, tf: newDjangoTime(opts), timeout: 2*busy + 10*time.Second}
	s.store = newStore(s, &sqliteSQL, opts)
	var err error
	if s.rw, err = sql.Open("sqlite", sqliteDSN(path, busy, "_txlock=immediate")); err != nil {
		return nil, fmt.Errorf("djangodb: open sqlite %s: %w", path, err)
	}
	s.rw.SetMaxOpenConns(1)
	s.rw.SetMaxIdleConns(1)
	if s.ro, err = sql.Open("sqlite", sqliteDSN(path, busy, "_pragma=query_only(1)")); err != nil {
		s.rw.Close()
		return nil, fmt.Errorf("djangodb: open sqlite %s: %w", path, err)
	}
	s.ro.SetMaxOpenConns(sqliteReaders)
	s.ro.SetMaxIdleConns(sqliteReaders)
	if opts.SQLiteWAL {
		// Before any reader connects: a connection opened earlier would
		// keep reporting the old mode.
		if err := s.useWAL(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("djangodb: open sqlite %s: switch to WAL: %w", path, err)
		}
	}
	if err := s.ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("djangodb: open sqlite %s: %w", path, err)
	}
	return s, nil
}

// useWAL puts the file in WAL mode; SQLite answers with the mode it is in
// afterwards, which is not WAL when the file system cannot do it.
func (s *sqliteStore) useWAL(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var mode string
	if err := s.rw.QueryRowContext(ctx, `PRAGMA journal_mode=WAL`).Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q after asking for WAL", mode)
	}
	return nil
}

// JournalMode returns the SQLite file's journal mode ("delete", "wal", ...).
func (s *sqliteStore) JournalMode(ctx context.Context) (string, error) {
	var mode string
	err := s.read(ctx, "journal mode", func(ctx context.Context, db *sql.DB) error {
		return db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode)
	})
	return mode, err
}

// sqliteDSN builds a file: URI so that any path works (SQLite ignores the
// driver's underscore parameters); busy_timeout is listed first because the
// driver applies pragmas in order and later ones may need the lock.
func sqliteDSN(path string, busy time.Duration, extra string) string {
	u := url.URL{Path: path}
	ms := busy.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return "file:" + u.EscapedPath() + "?_pragma=busy_timeout(" + strconv.FormatInt(ms, 10) + ")" +
		"&_pragma=foreign_keys(1)&" + extra
}

// The dialect.

func (s *sqliteStore) name() string                                         { return "sqlite:" + s.path }
func (s *sqliteStore) closeDB() error                                       { return errors.Join(s.rw.Close(), s.ro.Close()) }
func (s *sqliteStore) begin(ctx context.Context) (*sql.Tx, error)           { return s.rw.BeginTx(ctx, nil) }
func (s *sqliteStore) retry(error) bool                                     { return false }
func (s *sqliteStore) groupCommit() bool                                    { return true }
func (s *sqliteStore) lostConn()                                            {}
func (s *sqliteStore) reads() *sql.DB                                       { return s.ro }
func (s *sqliteStore) prep(_ context.Context, tx *sql.Tx, _ string) queryer { return tx }
func (s *sqliteStore) batched() bool                                        { return false }
func (s *sqliteStore) array([]any) any                                      { panic("djangodb: sqlite binds rows one by one") }
func (s *sqliteStore) bindTime(t time.Time) any                             { return s.tf.format(t) }
func (s *sqliteStore) unique(err error) bool                                { return sqliteUniqueViolation(err) }
func (s *sqliteStore) callTimeout() time.Duration                           { return s.timeout }

// ping reads the schema, which fails on a file that is not a database
// (opening alone succeeds on any file).
func (s *sqliteStore) ping(ctx context.Context) error {
	var n int
	return s.ro.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n)
}

// readTime parses a stored timestamp (read as text). A value no parser
// accepts reads as the zero time instead of failing the whole read:
// timestamps are only compared inside SQL, as text, so a corrupt one
// cannot affect scheduling, while failing would hide every other row of a
// listing.
func (s *sqliteStore) readTime(v any) time.Time {
	var text string
	switch v := v.(type) {
	case string:
		text = v
	case []byte:
		text = string(v)
	default:
		return time.Time{}
	}
	t, err := s.tf.parse(text)
	if err != nil {
		return time.Time{}
	}
	return t
}

func sqliteUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
