package djangodb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lib/pq"
)

// The PostgreSQL store shares its tables with Django producers and possibly
// the original Python daemon, all under READ COMMITTED, so:
//
//   - Every status change is one statement (UPDATE of the instance plus the
//     INSERT of its log record in data-modifying CTEs), atomic on its own.
//   - Claims use FOR UPDATE SKIP LOCKED: concurrent atpd claimers never wait
//     for each other, and the reference daemon's `UPDATE ... WHERE lock = 0`
//     waits for our transaction and then finds the row gone.
//   - Where several rows are locked, task rows are locked before instance
//     rows, the order Dequeue needs, so that the two do not deadlock. Where
//     a task row is touched after an instance row (dropping a claim's
//     duplicate rows), it is with SKIP LOCKED, which never waits.
//   - Timestamps are instants from processClock bound as parameters, never
//     the server's now(): log order must follow the order this process
//     wrote in, and the columns are timestamptz so the session time zone
//     does not change what is stored.

// pgTimeout bounds each call to the database (one statement or one short
// transaction). Nothing here should take more than milliseconds; the bound
// is for a server that stopped answering.
const pgTimeout = 30 * time.Second

// pgMaxIdleConns is how many idle connections the pool keeps.
const pgMaxIdleConns = 8

// pgRetireBatch bounds how many instances one retirement transaction deletes.
const pgRetireBatch = 500

// pgMigrateLock is the advisory lock key that serialises concurrent Migrate
// calls ("atpd" "mig" in ASCII).
const pgMigrateLock = 0x61747064_6d6967

// pgEnqueueLock serialises atpd's enqueuers, so that the queue limit holds
// among them ("atpd" "enq"). Python producers do not take it; their check is
// as racy as it always was.
const pgEnqueueLock = 0x61747064_656e71

type pgStore struct {
	db       *sql.DB
	conn     string // connection string, for the LISTEN connection
	describe string
	maxQueue int
	loc      *time.Location // how times are returned: UTC, or TIME_ZONE without USE_TZ
	stmts    pgStmts
}

// OpenPostgres connects to PostgreSQL with lib/pq. dsn is a postgres:// URL
// or a key=value connection string. The session time zone is set as Django
// sets it (UTC with USE_TZ, else TIME_ZONE) unless the DSN names one.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (Store, error) {
	s := &pgStore{
		describe: "postgres " + RedactDSN(dsn),
		maxQueue: opts.MaxQueueSize,
		loc:      time.UTC,
	}
	if s.maxQueue <= 0 {
		s.maxQueue = DefaultMaxQueueSize
	}
	zone := "UTC"
	if !opts.UseTZ && opts.TimeZone != nil {
		s.loc = opts.TimeZone
		// time.Local has no IANA name to hand to the server; its default
		// zone is then the best guess.
		if name := opts.TimeZone.String(); name != "Local" && name != "" {
			zone = name
		} else {
			zone = ""
		}
	}
	// binary_parameters makes lib/pq send a parameterised statement in one
	// round trip instead of two; no []byte is ever bound here, so nothing
	// else changes.
	conn, err := pgWithParams(dsn, [2]string{"timezone", zone}, [2]string{"binary_parameters", "yes"})
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

func (s *pgStore) Describe() string  { return s.describe }
func (s *pgStore) MaxQueueSize() int { return s.maxQueue }
func (s *pgStore) Close() error      { return errors.Join(s.stmts.close(), s.db.Close()) }

func (s *pgStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("djangodb: ping %s: %w", s.describe, err)
	}
	return nil
}

// inTx runs fn in one transaction under its own timeout (see tryTx). The
// transaction is run again, up to twice, when nothing of it can have been
// committed and another try may well succeed: PostgreSQL aborted it for a
// deadlock or a serialization failure, or its connection was lost before
// COMMIT was sent (the server rolls back a transaction whose session
// ends). The transactions here are short and idempotent until committed.
// A connection lost at COMMIT is not retried: the transaction may have
// committed, which only the caller can find out.
//
// A lost connection also drops the pool's idle connections (see
// dropIdleConns), so that the next try runs on a new connection instead of
// failing on another dead one.
func (s *pgStore) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		atCommit, err := s.tryTx(ctx, fn)
		if err == nil {
			return nil
		}
		lost := ConnectionLost(err)
		if lost {
			s.dropIdleConns()
		}
		var pe *pq.Error
		aborted := errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
		if attempt < 3 && (aborted || lost && !atCommit) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// pgTxOptions are the options of every transaction: READ COMMITTED, stated
// rather than left to the server's default_transaction_isolation, because
// the statements here are written for it (see the top of this file).
var pgTxOptions = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// tryTx runs fn in one READ COMMITTED transaction under its own timeout.
// atCommit reports that the error came from COMMIT, after fn succeeded.
func (s *pgStore) tryTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) (atCommit bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, pgTxOptions)
	if err != nil {
		return false, err
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback()
		return false, err
	}
	return true, tx.Commit()
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

// queryRow runs one single-row query under its own timeout and scans it.
func (s *pgStore) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	err := s.db.QueryRowContext(ctx, query, args...).Scan(dest...)
	if ConnectionLost(err) {
		s.dropIdleConns()
	}
	return err
}

// ---- types

func (s *pgStore) RegisterType(ctx context.Context, spec TypeSpec) (TaskType, error) {
	t := spec.Normalize()
	err := s.queryRow(ctx, `INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (identifier) DO UPDATE SET handler = EXCLUDED.handler, maxstart = EXCLUDED.maxstart,
			timeout = EXCLUDED.timeout, timeret = EXCLUDED.timeret
		RETURNING id`, []any{t.Identifier, t.Handler, t.MaxStart, t.Timeout, t.TimeRet}, &t.ID)
	if err != nil {
		return TaskType{}, fmt.Errorf("djangodb: register type %s: %w", spec.Identifier, err)
	}
	return t, nil
}

func (s *pgStore) UnregisterType(ctx context.Context, identifier string, force bool) error {
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM processes_type WHERE identifier = $1 FOR UPDATE`, identifier).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		ids, err := queryInt64s(ctx, tx, `SELECT id FROM processes_instance WHERE type_id = $1 ORDER BY id`, id)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			if !force {
				return fmt.Errorf("%w (%d instances)", ErrProtected, len(ids))
			}
			if _, err := pgPurge(ctx, tx, ids); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM processes_type WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("djangodb: unregister type %s: %w", identifier, err)
	}
	return nil
}

const pgTypeColumns = `id, identifier, handler, maxstart, timeout, timeret`

func scanType(row interface{ Scan(...any) error }) (TaskType, error) {
	var t TaskType
	err := row.Scan(&t.ID, &t.Identifier, &t.Handler, &t.MaxStart, &t.Timeout, &t.TimeRet)
	return t, err
}

func (s *pgStore) Type(ctx context.Context, identifier string) (TaskType, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	t, err := scanType(s.db.QueryRowContext(ctx, `SELECT `+pgTypeColumns+` FROM processes_type WHERE identifier = $1`, identifier))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return TaskType{}, fmt.Errorf("djangodb: type %s: %w", identifier, err)
	}
	return t, nil
}

func (s *pgStore) Types(ctx context.Context) ([]TaskType, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT `+pgTypeColumns+` FROM processes_type ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("djangodb: list types: %w", err)
	}
	defer rows.Close()
	var out []TaskType
	for rows.Next() {
		t, err := scanType(rows)
		if err != nil {
			return nil, fmt.Errorf("djangodb: list types: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("djangodb: list types: %w", err)
	}
	return out, nil
}

// ---- queue

func (s *pgStore) Enqueue(ctx context.Context, typ, identifier, input, message string) (int64, error) {
	var id int64
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgEnqueueLock)); err != nil {
			return err
		}
		var waiting int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM processes_task WHERE lock = 0`).Scan(&waiting); err != nil {
			return err
		}
		if waiting >= s.maxQueue {
			return fmt.Errorf("%w (%d tasks waiting, limit %d)", ErrQueueFull, waiting, s.maxQueue)
		}
		// Django's order: the instance (timeInsert = timeUpdate = now), its
		// log record, the input, then the task row, each a later now().
		tInst, tLog, tTask := processClock.now(), processClock.now(), processClock.now()
		err := tx.QueryRowContext(ctx, `WITH i AS (
				INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status)
				SELECT $2, t.id, $3, $3, 1 FROM processes_type t WHERE t.identifier = $1
				ON CONFLICT DO NOTHING
				RETURNING id
			), l AS (
				INSERT INTO processes_logrecord (instance_id, time, status, message) SELECT id, $4, 1, $5 FROM i
			), n AS (
				INSERT INTO processes_input (instance_id, input) SELECT id, $6 FROM i
			), k AS (
				INSERT INTO processes_task (instance_id, time, lock) SELECT id, $7, 0 FROM i
			)
			SELECT id FROM i`,
			typ, identifier, tInst, tLog, pgText(message), input, tTask).Scan(&id)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var typeExists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM processes_type WHERE identifier = $1)`, typ).Scan(&typeExists); err != nil {
			return err
		}
		if !typeExists {
			return fmt.Errorf("type: %w", ErrNotFound)
		}
		return ErrExists
	})
	if err != nil {
		return 0, fmt.Errorf("djangodb: enqueue %s/%s: %w", typ, identifier, err)
	}
	return id, nil
}

func (s *pgStore) QueueStats(ctx context.Context) (QueueStats, error) {
	st := QueueStats{Max: s.maxQueue}
	var oldest sql.NullTime
	if err := s.queryRow(ctx, `SELECT count(*), min(time) FROM processes_task WHERE lock = 0`, nil, &st.Waiting, &oldest); err != nil {
		return QueueStats{}, fmt.Errorf("djangodb: queue stats: %w", err)
	}
	if oldest.Valid {
		st.Oldest = oldest.Time.In(s.loc)
	}
	return st, nil
}

func (s *pgStore) Dequeue(ctx context.Context, serverID int64, limit int, message string) ([]int64, error) {
	limit = max(limit, 1)
	var ids []int64
	var dropped int
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		ids = ids[:0]
		// Ordering by id follows the primary key: the same FIFO order as
		// the tracker's order by time, without scanning the queue.
		rows, err := tx.QueryContext(ctx, `WITH picked AS (
				SELECT id FROM processes_task WHERE lock = 0 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
			)
			DELETE FROM processes_task t USING picked WHERE t.id = picked.id
			RETURNING t.id, t.instance_id`, limit)
		if err != nil {
			return err
		}
		seen, claimedRows, err := claimedInstances(rows)
		if err != nil {
			return err
		}
		var updates, logs []string
		for range seen {
			updates = append(updates, pgTime(processClock.now()))
			logs = append(logs, pgTime(processClock.now()))
		}
		scheduled, err := queryInt64s(ctx, tx, `WITH v AS (
				SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS v(id, tu, tl)
			), u AS (
				UPDATE processes_instance i SET status = 2, "timeUpdate" = v.tu FROM v
				WHERE i.id = v.id AND i.status NOT IN (2, 3) RETURNING i.id
			), l AS (
				INSERT INTO processes_logrecord (instance_id, time, status, message)
				SELECT v.id, v.tl, 2, $4 FROM v JOIN u ON u.id = v.id
			), d AS (`+pgDropTwins+`)
			SELECT id FROM u`,
			pq.Array(seen), pq.Array(updates), pq.Array(logs), pgText(message))
		if err != nil {
			return err
		}
		for _, id := range seen {
			if slices.Contains(scheduled, id) {
				ids = append(ids, id)
			}
		}
		dropped = claimedRows
		return nil
	})
	if err == nil && len(ids) == 0 {
		// Committed: the duplicates are gone, so the next call reaches
		// the tasks behind them.
		err = fmt.Errorf("%w (%d duplicate task rows of scheduled or running instances dropped)", ErrQueueEmpty, dropped)
	}
	if err != nil {
		return nil, fmt.Errorf("djangodb: dequeue for server 0x%016X: %w", uint64(serverID), err)
	}
	return ids, nil
}

// pgDropTwins deletes the other waiting rows of the instances $1 a claim
// took rows of: duplicates of a task that is now scheduled by this claim
// or by another claimer (the UPDATE beside it skips instances already
// SCHEDULED or RUNNING: under READ COMMITTED it waits for a concurrent
// claimer's row lock and re-checks the status that claimer committed).
// It is a CTE of the claiming statement so that it shares the statement's
// snapshot: a row committed later (a re-enqueue after this run) is not
// seen. SKIP LOCKED: a row another claimer holds is that claimer's to
// drop, and waiting for a task row while holding instance rows would
// invert the task-then-instance lock order.
const pgDropTwins = `DELETE FROM processes_task WHERE id IN (
		SELECT id FROM processes_task WHERE instance_id = ANY($1) AND lock = 0 FOR UPDATE SKIP LOCKED
	)`

// pgText makes free text storable (see StorableText).
func pgText(s string) string { return StorableText(s) }

// pgTime renders t for a timestamptz[] array literal, to the microsecond.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999Z07:00") }

// ---- status changes

// pgStatusChange is tracker._setTaskStatus in one statement: the instance's
// status and timeUpdate ($3), then its log record ($4, a later instant).
// %s is an extra condition on the instance; $1 id, $2 status, $5 message.
// It returns the instance's type and identifier, no row if none matched.
const pgStatusChange = `WITH u AS (
		UPDATE processes_instance SET status = $2, "timeUpdate" = $3 WHERE id = $1 %s
		RETURNING id, type_id, identifier
	), l AS (
		INSERT INTO processes_logrecord (instance_id, time, status, message) SELECT id, $4, $2, $5 FROM u
	)%s
	SELECT t.identifier, u.identifier FROM u JOIN processes_type t ON t.id = u.type_id`

// pgStatusStmt is one of the status-change statements.
type pgStatusStmt struct {
	query   string
	newTask bool // it also inserts a waiting task row, time $6
}

var (
	pgSetStatus = pgStatusStmt{query: fmt.Sprintf(pgStatusChange, "", "")}
	pgFinish    = pgStatusStmt{query: fmt.Sprintf(pgStatusChange, "AND status NOT IN (5, 6)", "")}
	// pgReenqueue is tracker.reenqueueTask: ACCEPTED, the log record and a
	// new waiting task row after it.
	pgReenqueue = pgStatusStmt{newTask: true, query: fmt.Sprintf(pgStatusChange, "", `, k AS (
		INSERT INTO processes_task (instance_id, time, lock) SELECT id, $6, 0 FROM u
	)`)}
)

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// pgChangeStatus runs a status change on q; found is false when the
// instance does not exist (or does not meet the statement's condition).
func pgChangeStatus(ctx context.Context, q querier, stmt pgStatusStmt, id int64, status Status, message string) (ref InstanceRef, found bool, err error) {
	args := []any{id, int(status), processClock.now(), processClock.now(), pgText(message)}
	if stmt.newTask {
		args = append(args, processClock.now())
	}
	ref.ID = id
	err = q.QueryRowContext(ctx, stmt.query, args...).Scan(&ref.Type, &ref.Identifier)
	if errors.Is(err, sql.ErrNoRows) {
		return ref, false, nil
	}
	return ref, err == nil, err
}

func (s *pgStore) SetStatus(ctx context.Context, id int64, status Status, message string) error {
	if status < Undefined || status > Failed {
		return fmt.Errorf("djangodb: set instance %d to status %d: no such status", id, int(status))
	}
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	_, found, err := pgChangeStatus(ctx, s.db, pgSetStatus, id, status, message)
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("djangodb: set instance %d %s: %w", id, status, err)
	}
	return nil
}

func (s *pgStore) FinishIfNotFinished(ctx context.Context, id int64, message string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	_, found, err := pgChangeStatus(ctx, s.db, pgFinish, id, Finished, message)
	if err == nil && !found {
		var exists bool
		err = s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM processes_instance WHERE id = $1)`, id).Scan(&exists)
		if err == nil && !exists {
			err = ErrNotFound
		}
	}
	if err != nil {
		return false, fmt.Errorf("djangodb: finish instance %d: %w", id, err)
	}
	return found, nil
}

func (s *pgStore) Reenqueue(ctx context.Context, id int64, message string) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	_, found, err := pgChangeStatus(ctx, s.db, pgReenqueue, id, Accepted, message)
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("djangodb: reenqueue instance %d: %w", id, err)
	}
	return nil
}

func (s *pgStore) Release(ctx context.Context, id int64, starts int, to Status, message string) (bool, error) {
	if to != Accepted && to != Failed {
		return false, fmt.Errorf("djangodb: release instance %d to %s: only ACCEPTED or FAILED", id, to)
	}
	var wrote bool
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		wrote = false
		// Lock the instance in a statement of its own: under READ COMMITTED
		// a statement that waits for a row lock re-reads only the locked
		// row, while its subqueries keep the snapshot from before the wait,
		// so a start committed meanwhile by another daemon would go unseen.
		// The checks run after, on a fresh snapshot. The waiting-row check
		// takes no task lock, which keeps the task-then-instance order safe.
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM processes_instance WHERE id = $1 FOR UPDATE`, id).Scan(new(int))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var st RunState
		var rid int64
		err = tx.QueryRowContext(ctx, pgRunState, pq.Array([]int64{id})).Scan(&rid, &st.Status, &st.Queued, &st.Starts)
		if err != nil || (Completion{InstanceID: id, Starts: starts}).Fence(st) != "" {
			return err
		}
		stmt := pgSetStatus
		if to == Accepted {
			stmt = pgReenqueue
		}
		_, wrote, err = pgChangeStatus(ctx, tx, stmt, id, to, message)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("djangodb: release instance %d (start %d) to %s: %w", id, starts, to, err)
	}
	return wrote, nil
}

// pgStarts counts an instance's starts: RUNNING records that follow a
// SCHEDULED one (a RUNNING after PAUSED is a resume), except those whose
// next record is a shutdown's re-enqueue (see MsgShutdownReenqueue).
const pgStarts = `SELECT count(*) FROM (
		SELECT status, lag(status) OVER w AS prev, lead(status) OVER w AS next, lead(message) OVER w AS next_msg
		FROM processes_logrecord WHERE instance_id = $1 WINDOW w AS (ORDER BY time, id)
	) s WHERE ` + pgCountedStart

// pgCountedStart is the start condition over a window's status, prev, next
// and next_msg columns.
const pgCountedStart = `s.status = 3 AND s.prev = 2 AND (s.next IS DISTINCT FROM 1 OR s.next_msg IS DISTINCT FROM '` + MsgShutdownReenqueue + `')`

func (s *pgStore) Start(ctx context.Context, id int64, message string) (StartedTask, error) {
	var st StartedTask
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st = StartedTask{InstanceID: id}
		ref, found, err := pgChangeStatus(ctx, tx, pgSetStatus, id, Running, message)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		st.Type, st.Identifier = ref.Type, ref.Identifier
		var (
			timeout float64
			input   sql.NullString
			started time.Time
		)
		err = tx.QueryRowContext(ctx, `SELECT t.handler, t.timeout, t.maxstart, n.input, i."timeUpdate", (`+pgStarts+`)
			FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
			LEFT JOIN processes_input n ON n.instance_id = i.id
			WHERE i.id = $1`, id).Scan(&st.Handler, &timeout, &st.MaxStart, &input, &started, &st.Starts)
		if err != nil {
			return err
		}
		st.Timeout = secondsToDuration(timeout)
		st.Input, st.HasInput = input.String, input.Valid
		st.StartedAt = started.In(s.loc)
		return nil
	})
	if err != nil {
		return StartedTask{}, fmt.Errorf("djangodb: start instance %d: %w", id, err)
	}
	return st, nil
}

func (s *pgStore) SetResponse(ctx context.Context, id int64, data []byte, mimeType string) error {
	var rowID int64
	err := s.queryRow(ctx, `WITH i AS (SELECT id FROM processes_instance WHERE id = $1 FOR KEY SHARE)
		INSERT INTO processes_response (instance_id, response, "mimeType") SELECT id, $2, $3 FROM i
		ON CONFLICT (instance_id) DO UPDATE SET response = EXCLUDED.response, "mimeType" = EXCLUDED."mimeType"
		RETURNING id`, []any{id, EncodeResponse(data), pgText(mimeType)}, &rowID)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("djangodb: set response of instance %d: %w", id, err)
	}
	return nil
}

// ---- reads

const pgInstanceSelect = `SELECT i.id, i.type_id, t.identifier, i.identifier, i.status, i."timeInsert", i."timeUpdate"
	FROM processes_instance i JOIN processes_type t ON t.id = i.type_id `

func (s *pgStore) scanInstance(row interface{ Scan(...any) error }) (Instance, error) {
	var in Instance
	err := row.Scan(&in.ID, &in.TypeID, &in.Type, &in.Identifier, &in.Status, &in.TimeInsert, &in.TimeUpdate)
	in.TimeInsert, in.TimeUpdate = in.TimeInsert.In(s.loc), in.TimeUpdate.In(s.loc)
	return in, err
}

func (s *pgStore) instanceWhere(ctx context.Context, what, cond string, args ...any) (Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	in, err := s.scanInstance(s.db.QueryRowContext(ctx, pgInstanceSelect+cond, args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Instance{}, fmt.Errorf("djangodb: instance %s: %w", what, err)
	}
	return in, nil
}

func (s *pgStore) Instance(ctx context.Context, id int64) (Instance, error) {
	return s.instanceWhere(ctx, fmt.Sprint(id), `WHERE i.id = $1`, id)
}

func (s *pgStore) InstanceByIdentifier(ctx context.Context, typ, identifier string) (Instance, error) {
	return s.instanceWhere(ctx, typ+"/"+identifier, `WHERE t.identifier = $1 AND i.identifier = $2`, typ, identifier)
}

func (s *pgStore) Instances(ctx context.Context, f InstanceFilter) ([]Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	var status, limit sql.NullInt64
	if f.Status != nil {
		status = sql.NullInt64{Int64: int64(*f.Status), Valid: true}
	}
	if f.Limit > 0 {
		limit = sql.NullInt64{Int64: int64(f.Limit), Valid: true}
	}
	rows, err := s.db.QueryContext(ctx, pgInstanceSelect+`
		WHERE ($1 = '' OR t.identifier = $1) AND ($2::integer IS NULL OR i.status = $2)
		ORDER BY i.id LIMIT $3`, f.Type, status, limit)
	if err != nil {
		return nil, fmt.Errorf("djangodb: list instances %+v: %w", f, err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		in, err := s.scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("djangodb: list instances: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("djangodb: list instances: %w", err)
	}
	return out, nil
}

func (s *pgStore) Log(ctx context.Context, id int64) ([]LogRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	recs, err := func() ([]LogRecord, error) {
		rows, err := s.db.QueryContext(ctx, `SELECT id, time, status, message FROM processes_logrecord
			WHERE instance_id = $1 ORDER BY time, id`, id)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []LogRecord
		for rows.Next() {
			var r LogRecord
			if err := rows.Scan(&r.ID, &r.Time, &r.Status, &r.Message); err != nil {
				return nil, err
			}
			r.Time = r.Time.In(s.loc)
			out = append(out, r)
		}
		return out, rows.Err()
	}()
	if err == nil && len(recs) == 0 {
		var exists bool
		err = s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM processes_instance WHERE id = $1)`, id).Scan(&exists)
		if err == nil && !exists {
			err = ErrNotFound
		}
	}
	if err != nil {
		return nil, fmt.Errorf("djangodb: log of instance %d: %w", id, err)
	}
	return recs, nil
}

func (s *pgStore) Response(ctx context.Context, id int64) (Response, error) {
	var text string
	var r Response
	err := s.queryRow(ctx, `SELECT response, "mimeType" FROM processes_response WHERE instance_id = $1`, []any{id}, &text, &r.MimeType)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err == nil {
		r.Data, err = DecodeResponse(text)
	}
	if err != nil {
		return Response{}, fmt.Errorf("djangodb: response of instance %d: %w", id, err)
	}
	return r, nil
}

func (s *pgStore) Input(ctx context.Context, id int64) (string, error) {
	var text string
	err := s.queryRow(ctx, `SELECT input FROM processes_input WHERE instance_id = $1`, []any{id}, &text)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("djangodb: input of instance %d: %w", id, err)
	}
	return text, nil
}

// ---- clean-up

func (s *pgStore) SweepZombies(ctx context.Context, message string) (SweepResult, error) {
	var res SweepResult
	now := processClock.now()
	// The candidates are read without locks; each is then handled in its
	// own transaction that locks it and checks again, so that a task that
	// reported in since, or that another sweeper took, is left alone.
	ids, err := s.int64s(ctx, `SELECT i.id FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
		WHERE i.status IN (2, 3, 4) AND EXTRACT(EPOCH FROM ($1::timestamptz - i."timeUpdate")) > t.timeout
		ORDER BY i.id`, now)
	if err != nil {
		return res, fmt.Errorf("djangodb: sweep zombies: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("djangodb: sweep zombies: %w", err)
		}
		var ref InstanceRef
		var failed, done bool
		err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var maxStart int
			err := tx.QueryRowContext(ctx, `SELECT i.id, t.identifier, i.identifier, t.maxstart
				FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
				WHERE i.id = $1 AND i.status IN (2, 3, 4) AND EXTRACT(EPOCH FROM ($2::timestamptz - i."timeUpdate")) > t.timeout
				FOR UPDATE OF i SKIP LOCKED`, id, now).Scan(&ref.ID, &ref.Type, &ref.Identifier, &maxStart)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			var starts int
			if err := tx.QueryRowContext(ctx, pgStarts, id).Scan(&starts); err != nil {
				return err
			}
			failed = starts >= maxStart
			if failed {
				_, done, err = pgChangeStatus(ctx, tx, pgSetStatus, id, Failed, MaxStartsMessage(starts, maxStart))
			} else {
				_, done, err = pgChangeStatus(ctx, tx, pgReenqueue, id, Accepted, message)
			}
			return err
		})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("djangodb: sweep zombie instance %d: %w", id, err))
		case done && failed:
			res.Failed = append(res.Failed, ref)
		case done:
			res.Reenqueued = append(res.Reenqueued, ref)
		}
	}

	// Task rows claimed (lock != 0) by a daemon that died before turning
	// them into SCHEDULED instances. The tracker sets the instance
	// SCHEDULED before re-enqueueing it; inside one transaction that
	// intermediate state is invisible, so it is not written.
	tasks, err := s.int64s(ctx, `SELECT id FROM processes_task WHERE lock <> 0 AND time < $1 ORDER BY id`, now.Add(-PullTimeout))
	if err != nil {
		errs = append(errs, fmt.Errorf("djangodb: sweep stuck task rows: %w", err))
		return res, errors.Join(errs...)
	}
	for _, task := range tasks {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("djangodb: sweep stuck task rows: %w", err)
		}
		var ref InstanceRef
		var done bool
		err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var instance int64
			err := tx.QueryRowContext(ctx, `DELETE FROM processes_task WHERE id = (
					SELECT id FROM processes_task WHERE id = $1 AND lock <> 0 AND time < $2 FOR UPDATE SKIP LOCKED
				) RETURNING instance_id`, task, now.Add(-PullTimeout)).Scan(&instance)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			// Already waiting again (re-enqueued above, say): one queue
			// entry is enough.
			var queued bool
			err = tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM processes_task WHERE instance_id = $1 AND lock = 0)`, instance).Scan(&queued)
			if err != nil {
				return err
			}
			if queued {
				ref.ID = instance
				err = tx.QueryRowContext(ctx, `SELECT t.identifier, i.identifier FROM processes_instance i
					JOIN processes_type t ON t.id = i.type_id WHERE i.id = $1`, instance).Scan(&ref.Type, &ref.Identifier)
				done = err == nil
				return err
			}
			ref, done, err = pgChangeStatus(ctx, tx, pgReenqueue, instance, Accepted, message)
			return err
		})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("djangodb: sweep stuck task row %d: %w", task, err))
		case done:
			res.Unstuck = append(res.Unstuck, ref)
		}
	}
	return res, errors.Join(errs...)
}

// pgRetiredCond is the retention condition on instance i of type t at $1.
const pgRetiredCond = `t.timeret > 0 AND i.status IN (5, 6) AND EXTRACT(EPOCH FROM ($1::timestamptz - i."timeUpdate")) > t.timeret`

func (s *pgStore) DeleteRetired(ctx context.Context) ([]InstanceRef, error) {
	var out []InstanceRef
	now := processClock.now()
	after := int64(0)
	for {
		// Candidates are chosen without locks; the transaction then locks
		// task rows before instance rows, the order Dequeue and Claim lock
		// in, so that retirement cannot deadlock with a claim.
		ids, err := s.int64s(ctx, `SELECT i.id FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
			WHERE `+pgRetiredCond+` AND i.id > $2 ORDER BY i.id LIMIT $3`, now, after, pgRetireBatch)
		if err != nil {
			return out, fmt.Errorf("djangodb: delete retired instances: %w", err)
		}
		if len(ids) == 0 {
			return out, nil
		}
		after = ids[len(ids)-1]
		var batch []InstanceRef
		err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			// A terminal instance normally has no task rows. Only those of
			// instances that still qualify go: a re-enqueued one is ACCEPTED
			// in the same snapshot as its new row.
			if _, err := tx.ExecContext(ctx, `DELETE FROM processes_task k USING processes_instance i, processes_type t
				WHERE k.instance_id = i.id AND t.id = i.type_id AND i.id = ANY($2) AND `+pgRetiredCond,
				now, pq.Array(ids)); err != nil {
				return err
			}
			locked, err := queryInt64s(ctx, tx, `SELECT i.id FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
				WHERE i.id = ANY($2) AND `+pgRetiredCond+` ORDER BY i.id FOR UPDATE OF i SKIP LOCKED`, now, pq.Array(ids))
			if err != nil || len(locked) == 0 {
				batch = nil
				return err
			}
			batch, err = pgPurge(ctx, tx, locked)
			return err
		})
		if err != nil {
			return out, fmt.Errorf("djangodb: delete retired instances: %w", err)
		}
		out = append(out, batch...)
		if len(ids) < pgRetireBatch {
			return out, nil
		}
	}
}

func (s *pgStore) Delete(ctx context.Context, id int64) error {
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := pgPurge(ctx, tx, []int64{id})
		return err
	})
	if err != nil {
		return fmt.Errorf("djangodb: delete instance %d: %w", id, err)
	}
	return nil
}

// pgPurge deletes instances with every row that references them, as
// Django's Python-side cascade does (the foreign keys have no ON DELETE).
// Task rows go first: locking them before the instance is the order
// Dequeue locks in.
func pgPurge(ctx context.Context, tx *sql.Tx, ids []int64) ([]InstanceRef, error) {
	if _, err := tx.ExecContext(ctx, `DELETE FROM processes_task WHERE instance_id = ANY($1)`, pq.Array(ids)); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `WITH l AS (
			DELETE FROM processes_logrecord WHERE instance_id = ANY($1)
		), n AS (
			DELETE FROM processes_input WHERE instance_id = ANY($1)
		), r AS (
			DELETE FROM processes_response WHERE instance_id = ANY($1)
		)
		DELETE FROM processes_instance i USING processes_type t WHERE i.id = ANY($1) AND t.id = i.type_id
		RETURNING i.id, t.identifier, i.identifier`, pq.Array(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs []InstanceRef
	for rows.Next() {
		var r InstanceRef
		if err := rows.Scan(&r.ID, &r.Type, &r.Identifier); err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	slices.SortFunc(refs, func(a, b InstanceRef) int { return cmp.Compare(a.ID, b.ID) })
	return refs, rows.Err()
}

func (s *pgStore) int64s(ctx context.Context, query string, args ...any) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	return queryInt64s(ctx, s.db, query, args...)
}
