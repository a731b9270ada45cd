package djangodb

import (
	"context"
	"database/sql"
	"time"
)

// A dialect is what one database contributes to the store: how to begin a
// transaction, how to bind and read values, and the SQL of each
// single-purpose statement. Every decision (what to claim, whom the fence
// lets write, what a sweep does) is made once, in core*.go, over these
// statements; a dialect's SQL decides nothing the core does not ask for.
type dialect interface {
	// begin opens a write transaction (PostgreSQL: READ COMMITTED;
	// SQLite: BEGIN IMMEDIATE on the one write connection).
	begin(ctx context.Context) (*sql.Tx, error)
	// groupCommit reports whether write transactions that wait for one
	// another share commits (groupcommit.go): SQLite, whose one write
	// connection serialises them anyway and whose commit costs fsyncs.
	groupCommit() bool
	// retry reports whether a failed transaction should run again
	// (PostgreSQL: deadlock or serialization failure).
	retry(err error) bool
	// lostConn is told that a call lost its connection (ConnectionLost),
	// so that the dialect can drop connections that are likely dead too.
	lostConn()
	// reads is the pool for statements outside a transaction.
	reads() *sql.DB
	// prep returns query ready to run in tx (PostgreSQL prepares the
	// statements per connection).
	prep(ctx context.Context, tx *sql.Tx, query string) queryer
	// batched reports whether row-set statements take one array per
	// column (one call for all rows) instead of one call per row.
	batched() bool
	// array binds one column of a row set (batched dialects only).
	array(col []any) any
	// bindTime and readTime convert timestamps to and from the database.
	bindTime(t time.Time) any
	readTime(v any) time.Time
	// unique reports a unique-constraint violation.
	unique(err error) bool
	callTimeout() time.Duration
	ping(ctx context.Context) error
	closeDB() error
	name() string
}

// stmt is one single-purpose statement: its SQL texts run in order with
// the same arguments (a dialect that cannot combine writes in one
// statement lists several); the rows of the last text are the result.
// An empty text is skipped: the dialect has nothing to do for it.
type stmt []string

// statements is a dialect's SQL. Scalar statements take the arguments
// listed; row-set statements (marked "rows") take one argument per column,
// as arrays on a batched dialect and per row otherwise.
type statements struct {
	upsertType    stmt // $1 identifier, $2 handler, $3 maxstart, $4 timeout, $5 timeret -> id
	typeByName    stmt // $1 identifier -> typeColumns
	lockType      stmt // $1 identifier -> id, the type row locked
	types         stmt // -> typeColumns, by id
	typeInstances stmt // $1 type id -> instance ids
	deleteType    stmt // $1 type id
	lockQueue     stmt // serialises enqueuers
	countWaiting  stmt // -> waiting task rows
	queueStats    stmt // -> waiting rows, oldest time
	probe         stmt // -> a row when a task waits
	// take deletes the limit oldest waiting task rows and the other
	// waiting rows of their instances, and locks the instances (after the
	// task rows): -> task id, instance id, input (NULL: no row) of every
	// row deleted.
	take           stmt // $1 limit
	instances      stmt // instance columns; a WHERE clause follows
	log            stmt // $1 instance -> id, time, status, message, in getTaskLog's order
	exists         stmt // $1 instance -> count
	response       stmt // $1 instance -> response, mime type
	input          stmt // $1 instance -> input
	zombies        stmt // $1 type id, $2 cutoff -> ids of SCHEDULED/RUNNING/PAUSED instances updated before
	stuck          stmt // $1 cutoff -> ids of claimed task rows older
	takeStuck      stmt // $1 task id, $2 cutoff -> instance id of the row deleted
	retired        stmt // $1 type id, $2 cutoff, $3 after id, $4 limit -> ids of FINISHED/FAILED instances updated before
	lockWaiting    stmt // rows(instance): locks their task rows
	lockRun        stmt // rows(instance) -> ids locked, waiting for locks
	lockRunSkip    stmt // rows(instance) -> ids locked, skipping those held
	runState       stmt // rows(instance) -> runColumns
	setStatus      stmt // rows(instance, status, message, timeUpdate, log time)
	insertWaiting  stmt // rows(instance, time): a waiting task row
	setResponse    stmt // rows(instance, response, mime type)
	startRun       stmt // rows(instance, SCHEDULED time, timeUpdate, RUNNING time, message) -> startColumns
	startInfo      stmt // rows(instance) -> startColumns
	insertInstance stmt // rows(type id, identifier, input, timeInsert, log time, task time, message) -> instance id
	purge          stmt // rows(instance): deletes it with every row referencing it
	schema         stmt // -> table, column of every processes_* table
	history        stmt // $1, $2 the sweep's and a shutdown's message -> historyColumns, every log record
	// nullWrite is the insert the tracker made with a handler's None, which
	// the NOT NULL column refuses: $1 instance, $2 the column left NULL
	// ("message": a log record of status $4 at $3; "mimeType": the
	// response row of text $5, unless the instance has one: the tracker
	// updated that one instead).
	nullWrite stmt
}

// Portable SQL, written once: both databases accept it as it is ($N
// placeholders, quoted column names).
const (
	typeColumns = `id, identifier, handler, maxstart, timeout, timeret`
	sqlTypeBy   = `SELECT ` + typeColumns + ` FROM processes_type WHERE identifier = $1`
	sqlUpsert   = `INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (identifier) DO UPDATE SET handler = excluded.handler, maxstart = excluded.maxstart,
			timeout = excluded.timeout, timeret = excluded.timeret
		RETURNING id`
	sqlTypes         = `SELECT ` + typeColumns + ` FROM processes_type ORDER BY id`
	sqlTypeInstances = `SELECT id FROM processes_instance WHERE type_id = $1 ORDER BY id`
	sqlDeleteType    = `DELETE FROM processes_type WHERE id = $1`
	sqlExists        = `SELECT count(*) FROM processes_instance WHERE id = $1`
	sqlResponse      = `SELECT response, "mimeType" FROM processes_response WHERE instance_id = $1`
	sqlInput         = `SELECT input FROM processes_input WHERE instance_id = $1`
	sqlStuck         = `SELECT id FROM processes_task WHERE "lock" <> 0 AND "time" < $1 ORDER BY id`
	sqlWaiting       = `SELECT count(*) FROM processes_task WHERE "lock" = 0`
	sqlProbe         = `SELECT 1 FROM processes_task WHERE "lock" = 0 LIMIT 1`
	// sqlProbeWrite is ProbeWrite's task row for no instance: the foreign
	// key is checked only at commit, which never comes.
	sqlProbeWrite = `INSERT INTO processes_task (instance_id, "time", "lock") VALUES ($1, $2, $3)`
	sqlLogWhere   = ` FROM processes_logrecord WHERE instance_id = $1 ORDER BY "time", id`
	sqlZombies    = `SELECT id FROM processes_instance WHERE type_id = $1 AND status IN (2, 3, 4) AND "timeUpdate" < $2 ORDER BY id`
	sqlRetired    = `SELECT id FROM processes_instance WHERE type_id = $1 AND status IN (5, 6) AND "timeUpdate" < $2 AND id > $3
		ORDER BY id LIMIT $4`
	// startColumns is what a claim returns of each started instance.
	startColumns = `i.id, t.identifier, i.identifier, t.handler, t.timeout, t.maxstart, n.input
		FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
		LEFT JOIN processes_input n ON n.instance_id = i.id`
)

// startsOf counts the starts of the instance the SQL expression inst
// names: RUNNING records that follow a SCHEDULED one (a RUNNING after
// PAUSED is a resume), except those whose next record is a shutdown's
// re-enqueue (see MsgShutdownReenqueue). It is the one definition of a
// start; StartedTask.Starts, the fence and maxstart all count with it.
func startsOf(inst string) string {
	return `(SELECT count(*) FROM (
		SELECT status, lag(status) OVER w AS prev, lead(status) OVER w AS next, lead(message) OVER w AS next_msg
		FROM processes_logrecord WHERE instance_id = ` + inst + ` WINDOW w AS (ORDER BY "time", id)
	) s WHERE s.status = 3 AND s.prev = 2 AND (s.next IS DISTINCT FROM 1 OR s.next_msg IS DISTINCT FROM '` + MsgShutdownReenqueue + `'))`
}

// runColumns is what the core reads of an instance before it writes to
// it: its reference, maxstart, and the fence's RunState.
func runColumns(timeUpdate string) string {
	return `i.id, t.identifier, i.identifier, t.maxstart, i.status, ` + timeUpdate + `,
		(SELECT true FROM processes_task k WHERE k.instance_id = i.id AND k."lock" = 0 LIMIT 1) IS NOT NULL, ` + startsOf("i.id") + `
		FROM processes_instance i JOIN processes_type t ON t.id = i.type_id`
}

// historyColumns is what EachLogRecord reads of every log record, in
// getTaskLog's order by instance; the mark is 1 for the sweep's
// re-enqueue, 2 for a shutdown's, 0 otherwise.
func historyColumns(time string) string {
	return `SELECT l.instance_id, i.type_id, t.identifier, i.identifier, ` + time + `, l.status,
		CASE WHEN l.status = 1 AND l.message = $1 THEN 1 WHEN l.status = 1 AND l.message = $2 THEN 2 ELSE 0 END
		FROM processes_logrecord l JOIN processes_instance i ON i.id = l.instance_id JOIN processes_type t ON t.id = i.type_id
		ORDER BY l.instance_id, l."time", l.id`
}

// instanceColumns is what Instance reads.
func instanceColumns(timeInsert, timeUpdate string) string {
	return `SELECT i.id, i.type_id, t.identifier, i.identifier, i.status, ` + timeInsert + `, ` + timeUpdate + `
		FROM processes_instance i JOIN processes_type t ON t.id = i.type_id `
}

// queryer runs a statement: a transaction, or a statement prepared in it
// (whose query text is fixed, hence ignored).
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type stmtQueryer struct{ st *sql.Stmt }

func (q stmtQueryer) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return q.st.ExecContext(ctx, args...)
}

func (q stmtQueryer) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}
