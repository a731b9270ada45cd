package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
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
	path     string
	rw       *sql.DB // one connection, BEGIN IMMEDIATE
	ro       *sql.DB // query_only readers
	tf       djangoTime
	maxQueue int
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
	maxQueue := opts.MaxQueueSize
	if maxQueue <= 0 {
		maxQueue = DefaultMaxQueueSize
	}
	s := &sqliteStore{
		path:     path,
		tf:       newDjangoTime(opts),
		maxQueue: maxQueue,
		timeout:  2*busy + 10*time.Second,
	}
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
	if !equalFold(mode, "wal") {
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

func (s *sqliteStore) Describe() string { return "sqlite:" + s.path }

func (s *sqliteStore) Close() error {
	return errors.Join(s.rw.Close(), s.ro.Close())
}

func (s *sqliteStore) Ping(ctx context.Context) error {
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("djangodb: ping %s: %w", s.Describe(), err)
	}
	return nil
}

// ping reads the schema, which fails on a file that is not a database
// (opening alone succeeds on any file).
func (s *sqliteStore) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var n int
	return s.ro.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n)
}

func (s *sqliteStore) MaxQueueSize() int { return s.maxQueue }

// write runs fn in one BEGIN IMMEDIATE transaction under the call timeout and
// wraps any error with "djangodb: <op>: ".
func (s *sqliteStore) write(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("djangodb: %s: begin: %w", op, err)
	}
	defer tx.Rollback()
	if err := fn(ctx, tx); err != nil {
		return fmt.Errorf("djangodb: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("djangodb: %s: commit: %w", op, err)
	}
	return nil
}

// read gives fn the read pool under the call timeout and wraps its error.
func (s *sqliteStore) read(ctx context.Context, op string, fn func(ctx context.Context, db *sql.DB) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := fn(ctx, s.ro); err != nil {
		return fmt.Errorf("djangodb: %s: %w", op, err)
	}
	return nil
}

// readTime parses a stored timestamp for display. A value no parser accepts
// reads as the zero time instead of failing the whole read: timestamps are
// only compared inside SQL, as text, so a corrupt one cannot affect
// scheduling, while failing would hide every other row of a listing.
func (s *sqliteStore) readTime(v sql.NullString) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	t, err := s.tf.parse(v.String)
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

// ---- Types ----

const sqliteTypeColumns = `id, identifier, handler, maxstart, timeout, timeret`

func sqliteScanType(row interface{ Scan(...any) error }) (TaskType, error) {
	var t TaskType
	err := row.Scan(&t.ID, &t.Identifier, &t.Handler, &t.MaxStart, &t.Timeout, &t.TimeRet)
	return t, err
}

func (s *sqliteStore) RegisterType(ctx context.Context, spec TypeSpec) (TaskType, error) {
	t := spec.Normalize()
	err := s.write(ctx, "register type "+strconv.Quote(t.Identifier), func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE processes_type SET handler = ?, maxstart = ?, timeout = ?, timeret = ? WHERE identifier = ?`,
			t.Handler, t.MaxStart, t.Timeout, t.TimeRet, t.Identifier)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret) VALUES (?, ?, ?, ?, ?)`,
				t.Identifier, t.Handler, t.MaxStart, t.Timeout, t.TimeRet); err != nil {
				return err
			}
		}
		t, err = sqliteScanType(tx.QueryRowContext(ctx, `SELECT `+sqliteTypeColumns+` FROM processes_type WHERE identifier = ?`, t.Identifier))
		return err
	})
	return t, err
}

func (s *sqliteStore) UnregisterType(ctx context.Context, identifier string, force bool) error {
	return s.write(ctx, "unregister type "+strconv.Quote(identifier), func(ctx context.Context, tx *sql.Tx) error {
		var typeID int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM processes_type WHERE identifier = ?`, identifier).Scan(&typeID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		ids, err := queryInt64s(ctx, tx, `SELECT id FROM processes_instance WHERE type_id = ? ORDER BY id`, typeID)
		if err != nil {
			return err
		}
		if len(ids) > 0 && !force {
			return fmt.Errorf("%d instances: %w", len(ids), ErrProtected)
		}
		for _, id := range ids {
			if err := sqliteDeleteInstance(ctx, tx, id); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM processes_type WHERE id = ?`, typeID)
		return err
	})
}

func (s *sqliteStore) Type(ctx context.Context, identifier string) (TaskType, error) {
	var t TaskType
	err := s.read(ctx, "type "+strconv.Quote(identifier), func(ctx context.Context, db *sql.DB) error {
		var err error
		t, err = sqliteScanType(db.QueryRowContext(ctx, `SELECT `+sqliteTypeColumns+` FROM processes_type WHERE identifier = ?`, identifier))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	return t, err
}

func (s *sqliteStore) Types(ctx context.Context) ([]TaskType, error) {
	var out []TaskType
	err := s.read(ctx, "list types", func(ctx context.Context, db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT `+sqliteTypeColumns+` FROM processes_type ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := sqliteScanType(rows)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// ---- Queue ----

func (s *sqliteStore) Enqueue(ctx context.Context, typ, identifier, input, message string) (int64, error) {
	var id int64
	err := s.write(ctx, "enqueue "+typ+"::"+identifier, func(ctx context.Context, tx *sql.Tx) error {
		var waiting int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM processes_task WHERE "lock" = 0`).Scan(&waiting); err != nil {
			return err
		}
		if waiting >= s.maxQueue {
			return fmt.Errorf("%d tasks waiting: %w", waiting, ErrQueueFull)
		}
		typeID, err := sqliteTypeID(ctx, tx, typ)
		if err != nil {
			return err
		}
		now := s.tf.format(processClock.now())
		res, err := tx.ExecContext(ctx, `INSERT INTO processes_instance (identifier, "timeInsert", "timeUpdate", status, type_id) VALUES (?, ?, ?, ?, ?)`,
			identifier, now, now, Accepted, typeID)
		if sqliteUniqueViolation(err) {
			return ErrExists
		} else if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		if err := s.insertLog(ctx, tx, id, Accepted, message); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO processes_input (input, instance_id) VALUES (?, ?)`, input, id); err != nil {
			return err
		}
		return s.insertTask(ctx, tx, id)
	})
	return id, err
}

func (s *sqliteStore) QueueStats(ctx context.Context) (QueueStats, error) {
	st := QueueStats{Max: s.maxQueue}
	err := s.read(ctx, "queue stats", func(ctx context.Context, db *sql.DB) error {
		var oldest sql.NullString
		if err := db.QueryRowContext(ctx, `SELECT count(*), min(CAST("time" AS TEXT)) FROM processes_task WHERE "lock" = 0`).Scan(&st.Waiting, &oldest); err != nil {
			return err
		}
		st.Oldest = s.readTime(oldest)
		return nil
	})
	return st, err
}

func (s *sqliteStore) Dequeue(ctx context.Context, serverID int64, limit int, message string) ([]int64, error) {
	op := fmt.Sprintf("dequeue for server 0x%016X", uint64(serverID))
	if limit < 1 {
		limit = 1
	}
	if err := s.probeQueue(ctx, op); err != nil {
		return nil, err
	}
	var ids []int64
	var dropped int
	err := s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		ids = ids[:0]
		insts, n, err := sqliteTakeWaiting(ctx, tx, limit)
		if err != nil || n == 0 {
			return err
		}
		dropped = n
		for _, inst := range insts {
			err := s.setStatusTx(ctx, tx, inst, Scheduled, message)
			if errors.Is(err, ErrNotFound) {
				// A task row whose instance is gone (written with foreign
				// keys off) names no task; dropping it loses nothing.
				continue
			} else if err != nil {
				return err
			}
			ids = append(ids, inst)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		// Only orphan or duplicate rows were claimed; they are gone now, so
		// the next call reaches the tasks behind them.
		if dropped == 0 {
			return nil, fmt.Errorf("djangodb: %s: %w", op, ErrQueueEmpty)
		}
		return nil, fmt.Errorf("djangodb: %s: %w (%d orphan or duplicate task rows dropped)", op, ErrQueueEmpty, dropped)
	}
	return ids, nil
}

// probeQueue returns ErrQueueEmpty when no task row waits, from the read
// pool: an idle daemon polls many times a second, and taking the file's
// write lock for each poll would compete with Django producers for nothing.
// A row committed just after the probe is found by the next poll.
func (s *sqliteStore) probeQueue(ctx context.Context, op string) error {
	var one int
	err := s.read(ctx, op, func(ctx context.Context, db *sql.DB) error {
		return db.QueryRowContext(ctx, `SELECT 1 FROM processes_task WHERE "lock" = 0 LIMIT 1`).Scan(&one)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("djangodb: %s: %w", op, ErrQueueEmpty)
	}
	return err
}

// sqliteTakeWaiting deletes up to limit waiting task rows, oldest first,
// and returns the instances to schedule, in queue order and each once, with
// the number of rows taken. An instance that is already SCHEDULED, RUNNING,
// FINISHED or FAILED is left out (its row was a duplicate of a task being
// or having been run), and
// every other waiting row of the instances seen is deleted as a duplicate:
// one instance runs once. The transaction holds the file's write lock, so
// nothing changes between these statements.
func sqliteTakeWaiting(ctx context.Context, tx *sql.Tx, limit int) ([]int64, int, error) {
	// Ordering by id is the tracker's FIFO order (rows are inserted with
	// time = now) and uses the primary key instead of scanning the table.
	rows, err := tx.QueryContext(ctx, `DELETE FROM processes_task WHERE id IN (
		SELECT id FROM processes_task WHERE "lock" = 0 ORDER BY id LIMIT ?) RETURNING id, instance_id`, limit)
	if err != nil {
		return nil, 0, err
	}
	type claim struct{ task, inst int64 }
	var claims []claim
	for rows.Next() {
		var c claim
		if err := rows.Scan(&c.task, &c.inst); err != nil {
			rows.Close()
			return nil, 0, err
		}
		claims = append(claims, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	// RETURNING has no defined order.
	sort.Slice(claims, func(i, j int) bool { return claims[i].task < claims[j].task })
	seen := make(map[int64]bool, len(claims))
	var out []int64
	for _, c := range claims {
		if seen[c.inst] {
			continue
		}
		seen[c.inst] = true
		if _, err := tx.ExecContext(ctx, `DELETE FROM processes_task WHERE instance_id = ? AND "lock" = 0`, c.inst); err != nil {
			return nil, 0, err
		}
		var status Status
		err := tx.QueryRowContext(ctx, `SELECT status FROM processes_instance WHERE id = ?`, c.inst).Scan(&status)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Left in: the caller drops an orphan row as it always did.
		case err != nil:
			return nil, 0, err
		case status == Scheduled || status == Running:
			// A twin of a run under way. A waiting row of an ended
			// instance is a producer's request to run it again.
			continue
		}
		out = append(out, c.inst)
	}
	return out, len(claims), nil
}

// ---- Status changes ----

// setStatusTx is the tracker's status change: the instance's status and
// timeUpdate, plus one log record.
func (s *sqliteStore) setStatusTx(ctx context.Context, tx *sql.Tx, id int64, status Status, message string) error {
	_, err := s.setStatusAt(ctx, tx, id, status, message)
	return err
}

// setStatusAt is setStatusTx returning the timeUpdate it wrote.
func (s *sqliteStore) setStatusAt(ctx context.Context, tx *sql.Tx, id int64, status Status, message string) (time.Time, error) {
	now := processClock.now()
	res, err := tx.ExecContext(ctx, `UPDATE processes_instance SET status = ?, "timeUpdate" = ? WHERE id = ?`, status, s.tf.format(now), id)
	if err != nil {
		return time.Time{}, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return time.Time{}, err
	} else if n == 0 {
		return time.Time{}, fmt.Errorf("instance %d: %w", id, ErrNotFound)
	}
	return now, s.insertLog(ctx, tx, id, status, message)
}

// insertLog writes one log record. Its time is a tick of its own, after the
// instance's timeUpdate, as Django's auto_now on LogRecord.time gives.
func (s *sqliteStore) insertLog(ctx context.Context, tx *sql.Tx, id int64, status Status, message string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO processes_logrecord ("time", status, message, instance_id) VALUES (?, ?, ?, ?)`,
		s.tf.format(processClock.now()), status, StorableText(message), id)
	return err
}

func (s *sqliteStore) insertTask(ctx context.Context, tx *sql.Tx, id int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO processes_task ("time", "lock", instance_id) VALUES (?, 0, ?)`,
		s.tf.format(processClock.now()), id)
	return err
}

// countStarts counts RUNNING records that follow a SCHEDULED one: each
// start by a daemon, but not a resume from PAUSED, nor a start whose next
// record is a shutdown's re-enqueue (see MsgShutdownReenqueue).
func sqliteCountStarts(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM (
		SELECT status, LAG(status) OVER w AS prev, LEAD(status) OVER w AS next, LEAD(message) OVER w AS next_msg
		FROM processes_logrecord WHERE instance_id = ? WINDOW w AS (ORDER BY "time", id))
		WHERE status = ? AND prev = ? AND (next IS NOT ? OR next_msg IS NOT ?)`,
		id, Running, Scheduled, Accepted, MsgShutdownReenqueue).Scan(&n)
	return n, err
}

func (s *sqliteStore) Release(ctx context.Context, id int64, starts int, to Status, message string) (bool, error) {
	op := fmt.Sprintf("release instance %d (start %d) to %s", id, starts, to)
	if to != Accepted && to != Failed {
		return false, fmt.Errorf("djangodb: %s: only ACCEPTED or FAILED", op)
	}
	var wrote bool
	err := s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		wrote = false
		st, err := s.runState(ctx, tx, id)
		if err != nil {
			return err
		}
		if (Completion{InstanceID: id, Starts: starts}).Fence(st) != "" {
			return nil
		}
		if err := s.setStatusTx(ctx, tx, id, to, message); err != nil {
			return err
		}
		wrote = true
		if to == Accepted {
			return s.insertTask(ctx, tx, id)
		}
		return nil
	})
	return wrote && err == nil, err
}

func (s *sqliteStore) Start(ctx context.Context, id int64, message string) (StartedTask, error) {
	st := StartedTask{InstanceID: id}
	err := s.write(ctx, fmt.Sprintf("start instance %d", id), func(ctx context.Context, tx *sql.Tx) error {
		var timeout float64
		err := tx.QueryRowContext(ctx, `SELECT i.identifier, t.identifier, t.handler, t.timeout, t.maxstart
			FROM processes_instance i JOIN processes_type t ON t.id = i.type_id WHERE i.id = ?`, id).
			Scan(&st.Identifier, &st.Type, &st.Handler, &timeout, &st.MaxStart)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		st.Timeout = TaskType{Timeout: timeout}.TimeoutDuration()
		err = tx.QueryRowContext(ctx, `SELECT input FROM processes_input WHERE instance_id = ?`, id).Scan(&st.Input)
		switch {
		case err == nil:
			st.HasInput = true
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if st.StartedAt, err = s.setStatusAt(ctx, tx, id, Running, message); err != nil {
			return err
		}
		st.Starts, err = sqliteCountStarts(ctx, tx, id)
		return err
	})
	if err != nil {
		return StartedTask{}, err
	}
	return st, nil
}

func (s *sqliteStore) SetStatus(ctx context.Context, id int64, status Status, message string) error {
	op := fmt.Sprintf("set instance %d %s", id, status)
	if status < Undefined || status > Failed {
		return fmt.Errorf("djangodb: %s: invalid status code %d", op, int(status))
	}
	return s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		return s.setStatusTx(ctx, tx, id, status, message)
	})
}

func (s *sqliteStore) FinishIfNotFinished(ctx context.Context, id int64, message string) (bool, error) {
	var wrote bool
	err := s.write(ctx, fmt.Sprintf("finish instance %d", id), func(ctx context.Context, tx *sql.Tx) error {
		var status Status
		err := tx.QueryRowContext(ctx, `SELECT status FROM processes_instance WHERE id = ?`, id).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if status.Terminal() {
			return nil
		}
		wrote = true
		return s.setStatusTx(ctx, tx, id, Finished, message)
	})
	return wrote && err == nil, err
}

func (s *sqliteStore) SetResponse(ctx context.Context, id int64, data []byte, mimeType string) error {
	text := EncodeResponse(data)
	return s.write(ctx, fmt.Sprintf("set response of instance %d", id), func(ctx context.Context, tx *sql.Tx) error {
		if err := sqliteInstanceExists(ctx, tx, id); err != nil {
			return err
		}
		return s.upsertResponse(ctx, tx, id, text, mimeType)
	})
}

func sqliteInstanceExists(ctx context.Context, tx *sql.Tx, id int64) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM processes_instance WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

func (s *sqliteStore) Reenqueue(ctx context.Context, id int64, message string) error {
	return s.write(ctx, fmt.Sprintf("reenqueue instance %d", id), func(ctx context.Context, tx *sql.Tx) error {
		if err := s.setStatusTx(ctx, tx, id, Accepted, message); err != nil {
			return err
		}
		return s.insertTask(ctx, tx, id)
	})
}

// ---- Reads ----

const sqliteInstanceSelect = `SELECT i.id, i.type_id, t.identifier, i.identifier, i.status,
	CAST(i."timeInsert" AS TEXT), CAST(i."timeUpdate" AS TEXT)
	FROM processes_instance i JOIN processes_type t ON t.id = i.type_id `

func (s *sqliteStore) scanInstance(row interface{ Scan(...any) error }) (Instance, error) {
	var in Instance
	var ins, upd sql.NullString
	if err := row.Scan(&in.ID, &in.TypeID, &in.Type, &in.Identifier, &in.Status, &ins, &upd); err != nil {
		return Instance{}, err
	}
	in.TimeInsert, in.TimeUpdate = s.readTime(ins), s.readTime(upd)
	return in, nil
}

func (s *sqliteStore) Instance(ctx context.Context, id int64) (Instance, error) {
	var in Instance
	err := s.read(ctx, fmt.Sprintf("instance %d", id), func(ctx context.Context, db *sql.DB) error {
		var err error
		in, err = s.scanInstance(db.QueryRowContext(ctx, sqliteInstanceSelect+`WHERE i.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	return in, err
}

func (s *sqliteStore) InstanceByIdentifier(ctx context.Context, typ, identifier string) (Instance, error) {
	var in Instance
	err := s.read(ctx, "instance "+typ+"::"+identifier, func(ctx context.Context, db *sql.DB) error {
		var err error
		in, err = s.scanInstance(db.QueryRowContext(ctx, sqliteInstanceSelect+`WHERE t.identifier = ? AND i.identifier = ?`, typ, identifier))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	return in, err
}

func (s *sqliteStore) Instances(ctx context.Context, f InstanceFilter) ([]Instance, error) {
	q := sqliteInstanceSelect + `WHERE 1 = 1`
	var args []any
	if f.Type != "" {
		q += ` AND t.identifier = ?`
		args = append(args, f.Type)
	}
	if f.Status != nil {
		q += ` AND i.status = ?`
		args = append(args, int(*f.Status))
	}
	q += ` ORDER BY i.id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	var out []Instance
	err := s.read(ctx, "list instances", func(ctx context.Context, db *sql.DB) error {
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			in, err := s.scanInstance(rows)
			if err != nil {
				return err
			}
			out = append(out, in)
		}
		return rows.Err()
	})
	return out, err
}

func (s *sqliteStore) Log(ctx context.Context, id int64) ([]LogRecord, error) {
	var out []LogRecord
	err := s.read(ctx, fmt.Sprintf("log of instance %d", id), func(ctx context.Context, db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT id, CAST("time" AS TEXT), status, message FROM processes_logrecord
			WHERE instance_id = ? ORDER BY "time", id`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r LogRecord
			var ts sql.NullString
			if err := rows.Scan(&r.ID, &ts, &r.Status, &r.Message); err != nil {
				return err
			}
			r.Time = s.readTime(ts)
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			var one int
			err := db.QueryRowContext(ctx, `SELECT 1 FROM processes_instance WHERE id = ?`, id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		return nil
	})
	return out, err
}

func (s *sqliteStore) Response(ctx context.Context, id int64) (Response, error) {
	var r Response
	err := s.read(ctx, fmt.Sprintf("response of instance %d", id), func(ctx context.Context, db *sql.DB) error {
		var text string
		err := db.QueryRowContext(ctx, `SELECT response, "mimeType" FROM processes_response WHERE instance_id = ?`, id).Scan(&text, &r.MimeType)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		r.Data, err = DecodeResponse(text)
		return err
	})
	return r, err
}

func (s *sqliteStore) Input(ctx context.Context, id int64) (string, error) {
	var text string
	err := s.read(ctx, fmt.Sprintf("input of instance %d", id), func(ctx context.Context, db *sql.DB) error {
		err := db.QueryRowContext(ctx, `SELECT input FROM processes_input WHERE instance_id = ?`, id).Scan(&text)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	return text, err
}

// ---- Clean-up ----

// readIDs is queryInt64s in a read (see read), described by what.
func (s *sqliteStore) readIDs(ctx context.Context, what, query string, args ...any) ([]int64, error) {
	var ids []int64
	err := s.read(ctx, what, func(ctx context.Context, db *sql.DB) error {
		var err error
		ids, err = queryInt64s(ctx, db, query, args...)
		return err
	})
	return ids, err
}

// sqliteTypeID is the id of task type typ; a missing type is ErrNotFound.
func sqliteTypeID(ctx context.Context, tx *sql.Tx, typ string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM processes_type WHERE identifier = ?`, typ).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("type %q: %w", typ, ErrNotFound)
	}
	return id, err
}

func sqliteInstanceRef(ctx context.Context, tx *sql.Tx, id int64) (InstanceRef, error) {
	r := InstanceRef{ID: id}
	err := tx.QueryRowContext(ctx, `SELECT i.identifier, t.identifier FROM processes_instance i
		JOIN processes_type t ON t.id = i.type_id WHERE i.id = ?`, id).Scan(&r.Identifier, &r.Type)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// cutoff is now minus d as stored text. Stored timestamps compare as text,
// which is time order as long as both sides have one form and one offset.
func (s *sqliteStore) cutoff(now time.Time, d time.Duration) string {
	return s.tf.format(now.Add(-d))
}

var errSQLiteSkip = errors.New("condition no longer holds")

func (s *sqliteStore) SweepZombies(ctx context.Context, message string) (SweepResult, error) {
	var res SweepResult
	types, err := s.Types(ctx)
	if err != nil {
		return res, err
	}
	now := time.Now()
	// Each instance gets its own transaction that re-checks the condition:
	// a daemon may finish or a producer delete it between the listing and
	// the change, and one bad row must not hold the lock for the rest.
	for _, typ := range types {
		cut := s.cutoff(now, typ.TimeoutDuration())
		ids, err := s.readIDs(ctx, "list zombies of type "+strconv.Quote(typ.Identifier), `SELECT id FROM processes_instance
			WHERE type_id = ? AND status IN (?, ?, ?) AND "timeUpdate" < ? ORDER BY id`,
			typ.ID, Scheduled, Running, Paused, cut)
		if err != nil {
			return res, err
		}
		for _, id := range ids {
			var ref InstanceRef
			var failed bool
			err := s.write(ctx, fmt.Sprintf("sweep zombie instance %d of type %q", id, typ.Identifier), func(ctx context.Context, tx *sql.Tx) error {
				var maxStart int
				err := tx.QueryRowContext(ctx, `SELECT t.maxstart FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
					WHERE i.id = ? AND i.status IN (?, ?, ?) AND i."timeUpdate" < ?`,
					id, Scheduled, Running, Paused, cut).Scan(&maxStart)
				if errors.Is(err, sql.ErrNoRows) {
					return errSQLiteSkip
				} else if err != nil {
					return err
				}
				if ref, err = sqliteInstanceRef(ctx, tx, id); err != nil {
					return err
				}
				starts, err := sqliteCountStarts(ctx, tx, id)
				if err != nil {
					return err
				}
				if starts >= maxStart {
					failed = true
					return s.setStatusTx(ctx, tx, id, Failed, MaxStartsMessage(starts, maxStart))
				}
				if err := s.setStatusTx(ctx, tx, id, Accepted, message); err != nil {
					return err
				}
				return s.insertTask(ctx, tx, id)
			})
			switch {
			case errors.Is(err, errSQLiteSkip):
			case err != nil:
				return res, err
			case failed:
				res.Failed = append(res.Failed, ref)
			default:
				res.Reenqueued = append(res.Reenqueued, ref)
			}
		}
	}

	cut := s.cutoff(now, PullTimeout)
	tasks, err := s.readIDs(ctx, "list stuck task rows", `SELECT id FROM processes_task WHERE "lock" <> 0 AND "time" < ? ORDER BY id`, cut)
	if err != nil {
		return res, err
	}
	for _, taskID := range tasks {
		var ref InstanceRef
		err := s.write(ctx, fmt.Sprintf("unstick task row %d", taskID), func(ctx context.Context, tx *sql.Tx) error {
			var instID int64
			err := tx.QueryRowContext(ctx, `DELETE FROM processes_task WHERE id = ? AND "lock" <> 0 AND "time" < ? RETURNING instance_id`,
				taskID, cut).Scan(&instID)
			if errors.Is(err, sql.ErrNoRows) {
				return errSQLiteSkip
			} else if err != nil {
				return err
			}
			ref, err = sqliteInstanceRef(ctx, tx, instID)
			if errors.Is(err, ErrNotFound) {
				// The row named no instance; deleting it was all there was to do.
				return nil
			} else if err != nil {
				return err
			}
			// Already waiting again (re-enqueued meanwhile): one queue
			// entry is enough.
			var queued bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM processes_task WHERE instance_id = ? AND "lock" = 0)`,
				instID).Scan(&queued); err != nil {
				return err
			}
			if queued {
				return nil
			}
			// tracker.reenqueueZombieTasks sets SCHEDULED with a bare
			// UPDATE (no timeUpdate, no log record) before re-enqueueing.
			if _, err := tx.ExecContext(ctx, `UPDATE processes_instance SET status = ? WHERE id = ?`, Scheduled, instID); err != nil {
				return err
			}
			if err := s.setStatusTx(ctx, tx, instID, Accepted, message); err != nil {
				return err
			}
			return s.insertTask(ctx, tx, instID)
		})
		switch {
		case errors.Is(err, errSQLiteSkip):
		case err != nil:
			return res, err
		case ref.Type != "":
			res.Unstuck = append(res.Unstuck, ref)
		}
	}
	return res, nil
}

func (s *sqliteStore) DeleteRetired(ctx context.Context) ([]InstanceRef, error) {
	types, err := s.Types(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []InstanceRef
	for _, typ := range types {
		if typ.TimeRet <= 0 {
			continue
		}
		cut := s.cutoff(now, secondsToDuration(typ.TimeRet))
		ids, err := s.readIDs(ctx, "list retired instances of type "+strconv.Quote(typ.Identifier), `SELECT id FROM processes_instance
			WHERE type_id = ? AND status IN (?, ?) AND "timeUpdate" < ? ORDER BY id`, typ.ID, Finished, Failed, cut)
		if err != nil {
			return out, err
		}
		for _, id := range ids {
			var ref InstanceRef
			err := s.write(ctx, fmt.Sprintf("delete retired instance %d of type %q", id, typ.Identifier), func(ctx context.Context, tx *sql.Tx) error {
				var one int
				err := tx.QueryRowContext(ctx, `SELECT 1 FROM processes_instance WHERE id = ? AND status IN (?, ?) AND "timeUpdate" < ?`,
					id, Finished, Failed, cut).Scan(&one)
				if errors.Is(err, sql.ErrNoRows) {
					return errSQLiteSkip
				} else if err != nil {
					return err
				}
				if ref, err = sqliteInstanceRef(ctx, tx, id); err != nil {
					return err
				}
				return sqliteDeleteInstance(ctx, tx, id)
			})
			switch {
			case errors.Is(err, errSQLiteSkip):
			case err != nil:
				return out, err
			default:
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

func (s *sqliteStore) Delete(ctx context.Context, id int64) error {
	return s.write(ctx, fmt.Sprintf("delete instance %d", id), func(ctx context.Context, tx *sql.Tx) error {
		return sqliteDeleteInstance(ctx, tx, id)
	})
}

// deleteInstanceTx is Django's Python-side cascade: the schema's foreign keys
// have no ON DELETE, so the dependent rows go first.
func sqliteDeleteInstance(ctx context.Context, tx *sql.Tx, id int64) error {
	for _, q := range []string{
		`DELETE FROM processes_task WHERE instance_id = ?`,
		`DELETE FROM processes_logrecord WHERE instance_id = ?`,
		`DELETE FROM processes_input WHERE instance_id = ?`,
		`DELETE FROM processes_response WHERE instance_id = ?`,
		`DELETE FROM processes_instance WHERE id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, id); err != nil {
			return err
		}
	}
	return nil
}
