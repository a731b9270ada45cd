package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Batch operations. A commit costs an fsync, so the daemon's throughput
// comes from doing many tasks' work per transaction, and each transaction
// here runs a fixed number of statements whatever the batch size: rows are
// passed as arrays and unnested, and timestamps are computed in SQL from a
// block of ticks reserved on processClock (base + k µs), so that every
// row's time is the one a sequence of single-task calls would have taken,
// in the same order.

// pgClaimTasks takes up to $1 waiting task rows, oldest first, as Dequeue
// does. Their instances' timestamps are reserved only once it returns: a
// task committed after the reservation but before the claim's snapshot
// would otherwise get log records older than its own ACCEPTED record.
const pgClaimTasks = `WITH picked AS (
		SELECT id FROM processes_task WHERE lock = 0 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
	)
	DELETE FROM processes_task t USING picked WHERE t.id = picked.id
	RETURNING t.id, t.instance_id`

// pgStartClaimed is Dequeue's and Start's writes for the instances $1 (in
// queue order, each once) plus what Start returns, in one statement. $2 is
// the first of 3 × len($1) reserved ticks, $3 the message. The k-th
// instance gets its SCHEDULED log record at tick 3k, timeUpdate at 3k+1
// and its RUNNING log record at 3k+2: Dequeue's SCHEDULED timeUpdate
// would be overwritten within the transaction, so it is not written. The
// log records are inserted in tick order, so that their ids follow their
// times. Start counts starts after writing RUNNING; the statement cannot
// see its own inserts, so the count runs over the existing records plus
// the two new ones, with ids above any existing one. An instance already
// SCHEDULED or RUNNING is skipped (see pgDropTwins, which also runs here).
// A FINISHED or FAILED one is started: its waiting row is a request to run
// it again, as the reference daemon treats it.
const pgStartClaimed = `WITH v AS (
		SELECT id, n - 1 AS k FROM unnest($1::bigint[]) WITH ORDINALITY AS v(id, n)
	), u AS (
		UPDATE processes_instance i SET status = 3, "timeUpdate" = $2::timestamptz + (3 * v.k + 1) * interval '1 microsecond'
		FROM v WHERE i.id = v.id AND i.status NOT IN (2, 3) RETURNING i.id, i.type_id, i.identifier, i."timeUpdate", v.k
	), d AS (` + pgDropTwins + `
	), l AS (
		INSERT INTO processes_logrecord (instance_id, time, status, message)
		SELECT u.id, $2::timestamptz + (3 * u.k + s.tick) * interval '1 microsecond', s.status, $3
		FROM u CROSS JOIN (VALUES (2, 0), (3, 2)) AS s(status, tick) ORDER BY u.k, s.tick
	)
	SELECT u.id, t.identifier, u.identifier, t.handler, t.timeout, t.maxstart, n.input, u."timeUpdate",
		(SELECT count(*) FROM (
			SELECT r.status, lag(r.status) OVER w AS prev, lead(r.status) OVER w AS next, lead(r.message) OVER w AS next_msg FROM (
				SELECT status, time, id, message FROM processes_logrecord WHERE instance_id = u.id
				UNION ALL SELECT 2, $2::timestamptz + 3 * u.k * interval '1 microsecond', 9223372036854775806, ''
				UNION ALL SELECT 3, $2::timestamptz + (3 * u.k + 2) * interval '1 microsecond', 9223372036854775807, ''
			) r WINDOW w AS (ORDER BY r.time, r.id)
		) s WHERE ` + pgCountedStart + `)
	FROM u JOIN processes_type t ON t.id = u.type_id
	LEFT JOIN processes_input n ON n.instance_id = u.id
	ORDER BY u.k`

func (s *pgStore) Claim(ctx context.Context, serverID int64, limit int, message string) ([]StartedTask, error) {
	limit = max(limit, 1)
	var out []StartedTask
	var dropped int
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		out = out[:0]
		rows, err := s.stmts.in(ctx, s.db, tx, pgClaimTasks).QueryContext(ctx, pgClaimTasks, limit)
		if err != nil {
			return err
		}
		// An instance is not started at all when another claimer started
		// it from its twin row (pgStartClaimed skips it).
		ids, claimedRows, err := claimedInstances(rows)
		if err != nil {
			return err
		}
		rows, err = s.stmts.in(ctx, s.db, tx, pgStartClaimed).QueryContext(ctx, pgStartClaimed,
			pq.Array(ids), processClock.reserve(3*len(ids)), pgText(message))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				st      StartedTask
				timeout float64
				input   sql.NullString
				started time.Time
			)
			if err := rows.Scan(&st.InstanceID, &st.Type, &st.Identifier, &st.Handler, &timeout, &st.MaxStart,
				&input, &started, &st.Starts); err != nil {
				return err
			}
			st.Timeout = secondsToDuration(timeout)
			st.Input, st.HasInput = input.String, input.Valid
			st.StartedAt = started.In(s.loc)
			out = append(out, st)
		}
		dropped = claimedRows
		return rows.Err()
	})
	if err == nil && len(out) == 0 {
		// Committed: the duplicates are gone, so the next call reaches
		// the tasks behind them.
		err = fmt.Errorf("%w (%d duplicate task rows of scheduled or running instances dropped)", ErrQueueEmpty, dropped)
	}
	if err != nil {
		return nil, fmt.Errorf("djangodb: claim for server 0x%016X: %w", uint64(serverID), err)
	}
	return out, nil
}

// pgBatchStatus is one status change for each of many instances: $1 ids,
// $2 statuses, $3 messages, $4 per row whether it applies only to a
// non-terminal instance (stopTaskSuccessIfNotFinished), $5 per row its tick
// index k, $6 the base tick: timeUpdate at base + 2k µs, the log record at
// base + 2k + 1. It returns the instances it changed.
const pgBatchStatus = `WITH v AS (
		SELECT * FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::boolean[], $5::bigint[]) AS v(id, status, msg, cond, k)
	), u AS (
		UPDATE processes_instance i SET status = v.status, "timeUpdate" = $6::timestamptz + 2 * v.k * interval '1 microsecond'
		FROM v WHERE i.id = v.id AND (NOT v.cond OR i.status NOT IN (5, 6))
		RETURNING i.id
	), l AS (
		INSERT INTO processes_logrecord (instance_id, time, status, message)
		SELECT v.id, $6::timestamptz + (2 * v.k + 1) * interval '1 microsecond', v.status, v.msg
		FROM v JOIN u ON u.id = v.id ORDER BY v.k
	)
	SELECT id FROM u`

// pgBatchResponse is setTaskResponse for many instances ($1 ids, $2
// encoded responses, $3 MIME types); an instance that does not exist is
// skipped, and those that do are locked against deletion until commit (the
// foreign key is only checked then). It returns the instances it wrote.
const pgBatchResponse = `WITH v AS (
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, response, mime)
	), i AS (
		SELECT i.id FROM processes_instance i JOIN v ON v.id = i.id FOR KEY SHARE OF i
	)
	INSERT INTO processes_response (instance_id, response, "mimeType")
	SELECT v.id, v.response, v.mime FROM v JOIN i ON i.id = v.id
	ON CONFLICT (instance_id) DO UPDATE SET response = EXCLUDED.response, "mimeType" = EXCLUDED."mimeType"
	RETURNING instance_id`

// pgLockRunState locks the instances $1 of a round and reads the fence's
// state (RunState) of each, in one statement. It locks in id order, so
// that two completers cannot deadlock, and skips rows another
// transaction holds: one task's row held by a slow transaction (a
// producer, a sweep) must not hold back the others' outcomes. FOR UPDATE
// also conflicts with the KEY SHARE lock a producer's re-enqueue takes to
// insert its task row.
//
// The subqueries see the statement's snapshot, taken before the locks: a
// row changed by a transaction that committed in between is locked in its
// new version (READ COMMITTED rechecks it) while the subqueries still
// describe the old one. The last column tells: the locked version's xmin
// against the one the snapshot sees. Every tracker write that matters to
// the fence (a claim, a re-enqueue, a status change) updates the instance
// row, so equal xmins mean the state read is the state locked; the caller
// treats a mismatch as a busy row, to be tried again.
const pgLockRunState = `SELECT i.id, i.status,
		(SELECT true FROM processes_task k WHERE k.instance_id = i.id AND k.lock = 0 LIMIT 1) IS NOT NULL,
		(SELECT count(*) FROM (
			SELECT status, lag(status) OVER w AS prev, lead(status) OVER w AS next, lead(message) OVER w AS next_msg
			FROM processes_logrecord WHERE instance_id = i.id WINDOW w AS (ORDER BY time, id)
		) s WHERE ` + pgCountedStart + `),
		i.xmin::text = (SELECT o.xmin::text FROM processes_instance o WHERE o.id = i.id)
	FROM processes_instance i WHERE i.id = ANY($1) ORDER BY i.id FOR UPDATE OF i SKIP LOCKED`

// pgExisting lists which of $1 exist, without waiting for their locks.
const pgExisting = `SELECT id FROM processes_instance WHERE id = ANY($1)`

// pgRunState reads the fence's state (RunState) of the instances $1, for
// Release, which locks its one row in a statement of its own first.
const pgRunState = `SELECT i.id, i.status,
		(SELECT true FROM processes_task k WHERE k.instance_id = i.id AND k.lock = 0 LIMIT 1) IS NOT NULL,
		(SELECT count(*) FROM (
			SELECT status, lag(status) OVER w AS prev, lead(status) OVER w AS next, lead(message) OVER w AS next_msg
			FROM processes_logrecord WHERE instance_id = i.id WINDOW w AS (ORDER BY time, id)
		) s WHERE ` + pgCountedStart + `)
	FROM processes_instance i WHERE i.id = ANY($1)`

// fenceRound locks the instances of live and drops from it the
// completions whose run no longer owns its instance, those whose row
// another transaction holds (or changed while it was being locked), and
// those whose instance is gone, recording why in res. It returns the
// completions still to write and the status each instance has now.
func (s *pgStore) fenceRound(ctx context.Context, tx *sql.Tx, cs []Completion, res []CompletionResult, live []int) ([]int, map[int64]Status, error) {
	ids := make([]int64, len(live))
	for k, i := range live {
		ids[k] = cs[i].InstanceID
	}
	rows, err := s.stmts.in(ctx, s.db, tx, pgLockRunState).QueryContext(ctx, pgLockRunState, pq.Array(ids))
	if err != nil {
		return nil, nil, err
	}
	state := make(map[int64]RunState, len(ids))
	changed := make(map[int64]bool)
	for rows.Next() {
		var id int64
		var st RunState
		var same bool
		if err := rows.Scan(&id, &st.Status, &st.Queued, &st.Starts, &same); err != nil {
			rows.Close()
			return nil, nil, err
		}
		state[id] = st
		if !same {
			changed[id] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	var existing []int64
	if len(state) < len(ids) {
		if existing, err = queryInt64s(ctx, tx, pgExisting, pq.Array(ids)); err != nil {
			return nil, nil, err
		}
	}
	status := make(map[int64]Status, len(state))
	owned := live[:0:0]
	for _, i := range live {
		c := cs[i]
		st, ok := state[c.InstanceID]
		switch {
		case ok && changed[c.InstanceID]:
			res[i].Err = fmt.Errorf("djangodb: complete instance %d: changed while locked: %w", c.InstanceID, ErrBusy)
		case ok:
			res[i].Status = st.Status
			if reason := c.Fence(st); reason != "" {
				res[i] = c.discard(res[i], reason)
				continue
			}
			status[c.InstanceID] = st.Status
			owned = append(owned, i)
		case slices.Contains(existing, c.InstanceID):
			res[i].Err = fmt.Errorf("djangodb: complete instance %d: %w", c.InstanceID, ErrBusy)
		default:
			res[i].Err = fmt.Errorf("djangodb: complete instance %d: %w", c.InstanceID, ErrNotFound)
		}
	}
	return owned, status, nil
}

func (s *pgStore) Complete(ctx context.Context, cs []Completion) ([]CompletionResult, error) {
	res, encoded := prepareCompletions(cs)
	if len(cs) == 0 {
		return res, nil
	}
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i := range res {
			if cs[i].check() == nil {
				res[i] = CompletionResult{InstanceID: cs[i].InstanceID}
			}
		}
		busy := make(map[int64]bool)
		for _, round := range rounds(cs) {
			// A later completion of an instance found busy must wait
			// for the earlier one: it is busy too.
			for _, i := range round {
				if busy[cs[i].InstanceID] && res[i].Err == nil {
					res[i].Err = fmt.Errorf("djangodb: complete instance %d: %w", cs[i].InstanceID, ErrBusy)
				}
			}
			if err := s.completeRound(ctx, tx, cs, encoded, res, round); err != nil {
				return err
			}
			for _, i := range round {
				if errors.Is(res[i].Err, ErrBusy) {
					busy[cs[i].InstanceID] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("djangodb: complete %d tasks: %w", len(cs), err)
	}
	return res, nil
}

// completeRound applies completions whose instances are distinct: layer by
// layer (every completion's first write, then every second write, ...,
// then the outcomes), one statement per kind of write and layer.
func (s *pgStore) completeRound(ctx context.Context, tx *sql.Tx, cs []Completion, encoded [][]string, res []CompletionResult, round []int) error {
	var live []int
	layers := 0
	for _, i := range round {
		if res[i].Err == nil {
			live = append(live, i)
			layers = max(layers, len(cs[i].Writes)+1)
		}
	}
	if len(live) == 0 {
		return nil
	}
	live, status, err := s.fenceRound(ctx, tx, cs, res, live)
	if err != nil || len(live) == 0 {
		return err
	}
	lastUpdate := make(map[int]time.Time)
	for layer := range layers {
		var (
			sIdx         []int
			sIDs, sKs    []int64
			sStatus      []int64
			sMsg         []string
			sCond        []bool
			rIDs         []int64
			rText, rMime []string
		)
		for _, i := range live {
			c := cs[i]
			var w Write
			cond := false
			switch {
			case layer < len(c.Writes):
				w = c.Writes[layer]
			case layer == len(c.Writes):
				var ok bool
				if w, cond, ok = c.outcomeWrite(); !ok {
					continue
				}
			default:
				continue
			}
			if w.IsResponse {
				rIDs = append(rIDs, c.InstanceID)
				rText = append(rText, encoded[i][layer])
				rMime = append(rMime, pgText(w.MimeType))
				continue
			}
			sIdx = append(sIdx, i)
			sIDs = append(sIDs, c.InstanceID)
			sStatus = append(sStatus, int64(w.Status))
			sMsg = append(sMsg, pgText(w.Message))
			sCond = append(sCond, cond)
			sKs = append(sKs, int64(len(sKs)))
		}
		if len(rIDs) > 0 {
			if _, err := queryInt64s(ctx, s.stmts.in(ctx, s.db, tx, pgBatchResponse), pgBatchResponse, pq.Array(rIDs), pq.Array(rText), pq.Array(rMime)); err != nil {
				return err
			}
		}
		if len(sIDs) > 0 {
			base := processClock.reserve(2 * len(sIDs))
			changed, err := queryInt64s(ctx, s.stmts.in(ctx, s.db, tx, pgBatchStatus), pgBatchStatus, pq.Array(sIDs), pq.Array(sStatus), pq.Array(sMsg),
				pq.Array(sCond), pq.Array(sKs), base)
			if err != nil {
				return err
			}
			did := make(map[int64]bool, len(changed))
			for _, id := range changed {
				did[id] = true
			}
			for k, i := range sIdx {
				if did[cs[i].InstanceID] {
					status[cs[i].InstanceID] = Status(sStatus[k])
					lastUpdate[i] = base.Add(time.Duration(2*k) * time.Microsecond)
					if layer == len(cs[i].Writes) {
						res[i].Wrote = true
					}
				}
			}
		}
	}
	// The instances are locked: the status each ends with is the last
	// one written, or the one the fence read.
	for _, i := range live {
		st := status[cs[i].InstanceID]
		res[i].Status = st
		if t, ok := lastUpdate[i]; ok {
			res[i].TimeUpdate = t.In(s.loc)
		}
	}
	return nil
}

// pgStmts prepares the batch statements once per connection: they run for
// every batch, and planning them costs about as much server time as
// running them for a batch of eight.
type pgStmts struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// in returns query prepared, for use within tx. A failed preparation falls
// back to running the query unprepared: it would fail the same way there,
// with an error that names the problem.
func (p *pgStmts) in(ctx context.Context, db *sql.DB, tx *sql.Tx, query string) queryer {
	p.mu.Lock()
	st, ok := p.stmts[query]
	if !ok {
		var err error
		if st, err = db.PrepareContext(ctx, query); err != nil {
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
		errs = append(errs, st.Close())
	}
	p.stmts = nil
	return errors.Join(errs...)
}

// queryer is what a batch statement runs on: the transaction, or a
// statement prepared in it (whose query text is fixed, hence ignored).
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type stmtQueryer struct{ st *sql.Stmt }

func (q stmtQueryer) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}
