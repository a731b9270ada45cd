package djangodb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/eoxserver/atpd/compat/pickle"
	"slices"
	"sync/atomic"
	"time"
)

// store is the one implementation of Store: the ATP rules, written once
// over a dialect's statements (see dialect.go). OpenPostgres and
// OpenSQLite wrap it with their dialect.
type store struct {
	d        dialect
	q        *statements
	clock    *ticks
	maxQueue int
	maxInput int            // how far a claim inflates an input to check it
	loc      *time.Location // how times are returned
	group    grouper        // write transactions sharing commits (groupCommit dialects)
	idle     atomic.Bool    // the last claim found the queue empty
}

func newStore(d dialect, q *statements, opts Options) *store {
	s := &store{d: d, q: q, clock: &processClock, maxQueue: opts.MaxQueueSize, maxInput: opts.MaxInputSize, loc: newDjangoTime(opts).loc}
	s.idle.Store(true)
	if opts.Clock != nil {
		s.clock = &ticks{src: opts.Clock}
	}
	if s.maxQueue <= 0 {
		s.maxQueue = DefaultMaxQueueSize
	}
	return s
}

// Wrapper is a Store around another one (a fault injector, an observing
// layer): Unwrap returns the wrapped Store, so that what needs this
// package's own store (TrackerOf, EnqueueMany, CheckSchema, ProbeWrite)
// reaches it through the wrappers.
type Wrapper interface{ Unwrap() Store }

// ownStore is a Store this package opened: a dialect around the core.
type ownStore interface {
	Tracker
	core() *store
}

// ownOf finds the store this package opened inside s, through Wrappers;
// ErrUnsupported for a Store of anyone else's.
func ownOf(op string, s Store) (ownStore, error) {
	for {
		switch x := s.(type) {
		case ownStore:
			return x, nil
		case Wrapper:
			s = x.Unwrap()
		default:
			return nil, fmt.Errorf("djangodb: %s: %T: %w", op, s, ErrUnsupported)
		}
	}
}

// coreOf is ownOf's core.
func coreOf(op string, s Store) (*store, error) {
	o, err := ownOf(op, s)
	if err != nil {
		return nil, err
	}
	return o.core(), nil
}

func (s *store) core() *store      { return s }
func (s *store) Describe() string  { return s.d.name() }
func (s *store) MaxQueueSize() int { return s.maxQueue }
func (s *store) Close() error      { return s.d.closeDB() }

func (s *store) bind(v any) any {
	if t, ok := v.(time.Time); ok {
		return s.d.bindTime(t)
	}
	return v
}

// idRows is ids as the rows of a row-set statement.
func idRows(ids []int64) [][]any {
	rows := make([][]any, len(ids))
	for i, id := range ids {
		rows[i] = []any{id}
	}
	return rows
}

// empty reports whether the dialect has nothing to run for st.
func (st stmt) empty() bool {
	return !slices.ContainsFunc(st, func(q string) bool { return q != "" })
}

func (s *store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.d.callTimeout())
	defer cancel()
	if err := s.d.ping(ctx); err != nil {
		return fmt.Errorf("djangodb: ping %s: %w", s.Describe(), err)
	}
	return nil
}

// ---- running statements

// inTx runs fn in one write transaction under the call timeout, and again
// (up to three times) when nothing of it can have been committed and
// another try may well succeed: the dialect says the failure was
// transient within the database (a deadlock), or the connection was lost
// before COMMIT was sent (the server rolls back a transaction whose
// session ends). The transactions are short and idempotent until
// committed. A connection lost at COMMIT is not retried: the transaction
// may have committed, which only the caller can find out (the fence makes
// a completion's retry harmless). A lost connection also tells the
// dialect, which drops the pool's idle connections, so that the next try
// runs on a new one instead of failing on another dead one.
func (s *store) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		atCommit, err := s.tryTx(ctx, fn)
		if err == nil {
			return nil
		}
		lost := ConnectionLost(err)
		if lost {
			s.d.lostConn()
		}
		if attempt < 3 && (s.d.retry(err) || lost && !atCommit) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// tryTx runs fn in one transaction; atCommit reports that the error came
// from COMMIT, after fn succeeded.
func (s *store) tryTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) (atCommit bool, err error) {
	if s.d.groupCommit() {
		return s.tryGrouped(ctx, fn)
	}
	ctx, cancel := context.WithTimeout(ctx, s.d.callTimeout())
	defer cancel()
	tx, err := s.d.begin(ctx)
	if err != nil {
		return false, err
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback()
		return false, err
	}
	return true, tx.Commit()
}

// write is inTx with the error named by op.
func (s *store) write(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := s.inTx(ctx, fn); err != nil {
		return fmt.Errorf("djangodb: %s: %w", op, err)
	}
	return nil
}

// read runs fn on the read pool under the call timeout.
func (s *store) read(ctx context.Context, op string, fn func(ctx context.Context, db *sql.DB) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.d.callTimeout())
	defer cancel()
	if err := fn(ctx, s.d.reads()); err != nil {
		if ConnectionLost(err) {
			s.d.lostConn()
		}
		return fmt.Errorf("djangodb: %s: %w", op, err)
	}
	return nil
}

// run runs st once with args, in tx or, when tx is nil, on the read pool,
// and hands each row of its last text to scan.
func (s *store) run(ctx context.Context, tx *sql.Tx, st stmt, args []any, scan func(*sql.Rows) error) error {
	for i, a := range args {
		args[i] = s.bind(a)
	}
	for i, q := range st {
		if q == "" {
			continue
		}
		var x queryer = s.d.reads()
		if tx != nil {
			x = s.d.prep(ctx, tx, q)
		}
		if i < len(st)-1 || scan == nil {
			if _, err := x.ExecContext(ctx, q, args...); err != nil {
				return err
			}
			continue
		}
		rows, err := x.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// each runs the row-set statement st for rows (one value a column): once,
// with a column an array, on a batched dialect; once a row otherwise.
func (s *store) each(ctx context.Context, tx *sql.Tx, st stmt, rows [][]any, scan func(*sql.Rows) error) error {
	if len(rows) == 0 {
		return nil
	}
	if s.d.batched() {
		cols := make([]any, len(rows[0]))
		for c := range cols {
			col := make([]any, len(rows))
			for r := range rows {
				col[r] = rows[r][c]
			}
			cols[c] = s.d.array(col)
		}
		return s.run(ctx, tx, st, cols, scan)
	}
	for _, r := range rows {
		if err := s.run(ctx, tx, st, slices.Clone(r), scan); err != nil {
			return err
		}
	}
	return nil
}

// one scans the first row of st into dest; sql.ErrNoRows when there is none.
func (s *store) one(ctx context.Context, tx *sql.Tx, st stmt, args []any, dest ...any) error {
	found := false
	err := s.run(ctx, tx, st, args, func(r *sql.Rows) error {
		if found {
			return nil
		}
		found = true
		return r.Scan(dest...)
	})
	if err == nil && !found {
		err = sql.ErrNoRows
	}
	return err
}

// ids returns the single int64 column of st.
func (s *store) ids(ctx context.Context, tx *sql.Tx, st stmt, args ...any) ([]int64, error) {
	var out []int64
	err := s.run(ctx, tx, st, args, func(r *sql.Rows) error {
		var v int64
		err := r.Scan(&v)
		out = append(out, v)
		return err
	})
	return out, err
}

// readIDs is ids on the read pool, named by op.
func (s *store) readIDs(ctx context.Context, op string, st stmt, args ...any) (ids []int64, err error) {
	err = s.read(ctx, op, func(ctx context.Context, _ *sql.DB) error {
		ids, err = s.ids(ctx, nil, st, args...)
		return err
	})
	return ids, err
}

// timeDest scans a timestamp column as the dialect returns it.
type timeDest struct {
	s *store
	t *time.Time
}

func (d timeDest) Scan(v any) error {
	if *d.t = d.s.d.readTime(v); !d.t.IsZero() {
		*d.t = d.t.In(d.s.loc)
	}
	return nil
}

func (s *store) at(t *time.Time) timeDest { return timeDest{s, t} }

// ---- runs: what the rules read before they write

// run is an instance as the core reads it before writing to it.
type runRow struct {
	InstanceRef
	MaxStart   int
	TimeUpdate time.Time
	RunState
	locked bool // false: another transaction holds it (skip locks only)
}

// lockRuns locks the instances ids, in id order, and reads them after the
// locks were granted (under READ COMMITTED a statement of its own sees
// what was committed before). With skip, instances another transaction
// holds are not waited for: they come back with locked false. An instance
// that does not exist is missing from the map.
func (s *store) lockRuns(ctx context.Context, tx *sql.Tx, ids []int64, skip bool) (map[int64]*runRow, error) {
	lock := s.q.lockRun
	if skip {
		lock = s.q.lockRunSkip
	}
	rows := idRows(ids)
	locked := make(map[int64]bool, len(ids))
	err := s.each(ctx, tx, lock, rows, func(r *sql.Rows) error {
		var id int64
		err := r.Scan(&id)
		locked[id] = true
		return err
	})
	if err != nil {
		return nil, err
	}
	if lock.empty() { // the dialect locks otherwise (SQLite: the write lock)
		locked = nil
	}
	return s.readRuns(ctx, tx, ids, locked)
}

// readRuns reads the instances ids, which this transaction has locked
// (all of them when locked is nil, or those locked lists).
func (s *store) readRuns(ctx context.Context, tx *sql.Tx, ids []int64, locked map[int64]bool) (map[int64]*runRow, error) {
	out := make(map[int64]*runRow, len(ids))
	err := s.each(ctx, tx, s.q.runState, idRows(ids), func(r *sql.Rows) error {
		x := new(runRow)
		if err := r.Scan(&x.ID, &x.Type, &x.Identifier, &x.MaxStart, &x.Status, s.at(&x.TimeUpdate), &x.Queued, &x.Starts); err != nil {
			return err
		}
		x.locked = locked == nil || locked[x.ID]
		out[x.ID] = x
		return nil
	})
	return out, err
}

// lockRun is lockRuns for one instance, waiting for its lock; ErrNotFound
// when it does not exist.
func (s *store) lockRun(ctx context.Context, tx *sql.Tx, id int64) (*runRow, error) {
	runs, err := s.lockRuns(ctx, tx, []int64{id}, false)
	if err != nil {
		return nil, err
	}
	if r, ok := runs[id]; ok {
		return r, nil
	}
	return nil, ErrNotFound
}

// change is tracker._setTaskStatus: status, timeUpdate and a log record.
type change struct {
	id      int64
	status  Status
	message string
}

// setStatuses writes changes in order, each with its timeUpdate and, a
// tick later, its log record; it returns the timeUpdates.
func (s *store) setStatuses(ctx context.Context, tx *sql.Tx, changes []change) ([]time.Time, error) {
	base := s.clock.reserve(2 * len(changes))
	rows := make([][]any, len(changes))
	tus := make([]time.Time, len(changes))
	for k, c := range changes {
		tus[k] = base.Add(time.Duration(2*k) * time.Microsecond)
		rows[k] = []any{c.id, int64(c.status), StorableText(c.message), tus[k], tus[k].Add(time.Microsecond)}
	}
	return tus, s.each(ctx, tx, s.q.setStatus, rows, nil)
}

// moveTo changes the status of instance id; ACCEPTED is
// tracker.reenqueueTask: the change and then a new waiting task row.
func (s *store) moveTo(ctx context.Context, tx *sql.Tx, id int64, to Status, message string) error {
	if _, err := s.setStatuses(ctx, tx, []change{{id, to, message}}); err != nil || to != Accepted {
		return err
	}
	return s.each(ctx, tx, s.q.insertWaiting, [][]any{{id, s.clock.now()}}, nil)
}

// purge deletes instances with every row that references them, as
// Django's Python-side cascade does (the foreign keys have no ON DELETE);
// task rows first, the order claims lock in.
func (s *store) purge(ctx context.Context, tx *sql.Tx, ids []int64) error {
	return s.each(ctx, tx, s.q.purge, idRows(ids), nil)
}

// ---- claims

// take is the start of every claim: it deletes up to limit waiting task
// rows, oldest first, and every other waiting row of their instances
// (twins: one instance runs once at a time), and hands fn, in queue
// order, the instances to run with their state. Those are the instances
// that exist and are not SCHEDULED or RUNNING: such a one is a twin's
// run under way. A FINISHED or FAILED one is run again: its waiting row is
// a producer's request to, as the reference daemon treats it.
// ErrQueueEmpty when there is none.
func (s *store) take(ctx context.Context, op string, limit int, fn func(ctx context.Context, tx *sql.Tx, ids []int64, runs map[int64]*runRow, inputs map[int64]sql.NullString) error) error {
	if len(s.q.probe) > 0 && s.idle.Load() {
		// An idle daemon polls many times a second; the read pool answers
		// an empty queue without the write lock (SQLite). Only after a
		// claim found none: a reader waits for a commit under way, so a
		// busy daemon's probe would wait for its own completer.
		var one int
		err := s.read(ctx, op, func(ctx context.Context, _ *sql.DB) error { return s.one(ctx, nil, s.q.probe, nil, &one) })
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("djangodb: %s: %w", op, ErrQueueEmpty)
		} else if err != nil {
			return err
		}
	}
	var taken, started int
	err := s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		type claimed struct{ task, instance int64 }
		var got []claimed
		inputs := make(map[int64]sql.NullString, limit)
		err := s.run(ctx, tx, s.q.take, []any{max(limit, 1)}, func(r *sql.Rows) error {
			var c claimed
			var in sql.NullString
			err := r.Scan(&c.task, &c.instance, &in)
			got = append(got, c)
			inputs[c.instance] = in
			return err
		})
		if err != nil {
			return err
		}
		// RETURNING has no defined order.
		slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.task, b.task) })
		var ids []int64
		for _, c := range got {
			if !slices.Contains(ids, c.instance) {
				ids = append(ids, c.instance)
			}
		}
		taken, started = len(got), 0
		if len(ids) == 0 {
			return nil
		}
		// take locked them, after their task rows.
		runs, err := s.readRuns(ctx, tx, ids, nil)
		if err != nil {
			return err
		}
		var run []int64
		for _, id := range ids {
			if r, ok := runs[id]; ok && r.Status != Scheduled && r.Status != Running {
				run = append(run, id)
			}
		}
		if started = len(run); started == 0 {
			return nil
		}
		return fn(ctx, tx, run, runs, inputs)
	})
	s.idle.Store(err == nil && taken == 0)
	switch {
	case err == nil && taken == 0:
		err = fmt.Errorf("djangodb: %s: %w", op, ErrQueueEmpty)
	case err == nil && started == 0:
		// Committed: the orphan or duplicate rows are gone, so the next
		// call reaches the tasks behind them.
		err = fmt.Errorf("djangodb: %s: %w (%d orphan or duplicate task rows dropped)", op, ErrQueueEmpty, taken)
	}
	return err
}

func claimOp(verb string, serverID int64) string {
	return fmt.Sprintf("%s for server 0x%016X", verb, uint64(serverID))
}

func (s *store) Claim(ctx context.Context, serverID int64, limit int, message string) ([]StartedTask, error) {
	var out []StartedTask
	err := s.take(ctx, claimOp("claim", serverID), limit, func(ctx context.Context, tx *sql.Tx, ids []int64, runs map[int64]*runRow, inputs map[int64]sql.NullString) error {
		message := StorableText(message)
		// tracker.startTask decodes the input before it saves RUNNING: an
		// input that does not open ends FAILED right after SCHEDULED, in
		// Python's words, and is not run.
		var start []int64
		var failed []change
		bad := map[int64]error{}
		for _, id := range ids {
			if err := checkInput(inputs[id], s.maxInput); err != nil {
				bad[id] = err
				failed = append(failed, change{id, Scheduled, message}, change{id, Failed, err.Error()})
				continue
			}
			start = append(start, id)
		}
		if _, err := s.setStatuses(ctx, tx, failed); err != nil {
			return err
		}
		// Dequeue's and Start's writes, a tick apart: the SCHEDULED log
		// record, timeUpdate, the RUNNING log record. Dequeue's SCHEDULED
		// timeUpdate would be overwritten within the transaction, so it is
		// not written.
		base := s.clock.reserve(3 * len(start))
		rows := make([][]any, len(start))
		for k, id := range start {
			t := base.Add(time.Duration(3*k) * time.Microsecond)
			rows[k] = []any{id, t, t.Add(time.Microsecond), t.Add(2 * time.Microsecond), message}
		}
		got, err := s.startInfo(ctx, tx, s.q.startRun, rows)
		out = out[:0]
		for _, id := range ids {
			r := runs[id]
			if err := bad[id]; err != nil {
				out = append(out, StartedTask{InstanceID: id, Type: r.Type, Identifier: r.Identifier, MaxStart: r.MaxStart, Undecodable: err})
			} else if st, ok := got[id]; ok {
				st.StartedAt = base.Add(time.Duration(3*slices.Index(start, id)+1) * time.Microsecond).In(s.loc)
				// The new start is the log's last record.
				st.Starts = r.Starts + 1
				out = append(out, st)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkInput is tracker.startTask's decoding of a task's input, the
// pickle aside: ErrNoInput for a missing row, a *pickle.EnvelopeError for
// text that is not base64 of zlib; each error's text is Python's. The
// pickle is read by the executor, in the handler's interpreter (Go,
// Python 2 or 3).
func checkInput(in sql.NullString, limit int) error {
	if !in.Valid {
		return ErrNoInput
	}
	return pickle.CheckEnvelope(in.String, limit)
}

// startInfo runs st (startRun or startInfo) and reads what a start
// returns, by instance.
func (s *store) startInfo(ctx context.Context, tx *sql.Tx, st stmt, rows [][]any) (map[int64]StartedTask, error) {
	out := make(map[int64]StartedTask, len(rows))
	err := s.each(ctx, tx, st, rows, func(r *sql.Rows) error {
		var st StartedTask
		var timeout float64
		var input sql.NullString
		if err := r.Scan(&st.InstanceID, &st.Type, &st.Identifier, &st.Handler, &timeout, &st.MaxStart, &input); err != nil {
			return err
		}
		st.Timeout = secondsToDuration(timeout)
		st.Input, st.HasInput = input.String, input.Valid
		out[st.InstanceID] = st
		return nil
	})
	return out, err
}

// ---- completions

func (s *store) Complete(ctx context.Context, cs []Completion) ([]CompletionResult, error) {
	res, encoded := prepareCompletions(cs)
	if len(cs) == 0 {
		return res, nil
	}
	err := s.write(ctx, fmt.Sprintf("complete %d tasks", len(cs)), func(ctx context.Context, tx *sql.Tx) error {
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
					res[i].Err = completeErr(cs[i].InstanceID, ErrBusy)
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
		return nil, err
	}
	return res, nil
}

func completeErr(id int64, err error) error {
	return fmt.Errorf("djangodb: complete instance %d: %w", id, err)
}

// completeRound applies completions whose instances are distinct: it
// locks them (skipping rows another transaction holds: one slow
// transaction must not hold back the other outcomes), drops those the
// fence rejects, and writes the rest layer by layer (every completion's
// first write, then every second write, ..., then the outcomes), one
// statement per kind of write and layer.
func (s *store) completeRound(ctx context.Context, tx *sql.Tx, cs []Completion, encoded [][]string, res []CompletionResult, round []int) error {
	var live []int
	var ids []int64
	layers := 0
	for _, i := range round {
		if res[i].Err == nil {
			live = append(live, i)
			ids = append(ids, cs[i].InstanceID)
			layers = max(layers, len(cs[i].Writes)+1)
		}
	}
	if len(live) == 0 {
		return nil
	}
	runs, err := s.lockRuns(ctx, tx, ids, true)
	if err != nil {
		return err
	}
	var owned []int
	for _, i := range live {
		c := cs[i]
		r, ok := runs[c.InstanceID]
		switch {
		case !ok:
			res[i].Err = completeErr(c.InstanceID, ErrNotFound)
		case !r.locked:
			res[i].Err = completeErr(c.InstanceID, ErrBusy)
		default:
			res[i].Status = r.Status
			if reason := c.Fence(r.RunState); reason != "" {
				res[i] = c.discard(res[i], reason)
				continue
			}
			owned = append(owned, i)
		}
	}
	for layer := range layers {
		var changes []change
		var changed []int
		var responses [][]any
		for _, i := range owned {
			c := cs[i]
			var w Write
			write := layer < len(c.Writes)
			if write {
				w = c.Writes[layer]
			} else if layer == len(c.Writes) {
				// stopTaskSuccessIfNotFinished leaves an ended instance
				// alone; the row is locked, so the status followed here
				// is the instance's.
				var ifNotTerminal bool
				w, ifNotTerminal, write = c.outcomeWrite()
				write = write && !(ifNotTerminal && res[i].Status.Terminal())
				res[i].Wrote = write
			}
			switch {
			case !write:
			case w.IsResponse:
				responses = append(responses, []any{c.InstanceID, encoded[i][layer], StorableText(w.MimeType)})
			default:
				changes, changed = append(changes, change{c.InstanceID, w.Status, w.Message}), append(changed, i)
			}
		}
		if err := s.each(ctx, tx, s.q.setResponse, responses, nil); err != nil {
			return err
		}
		tus, err := s.setStatuses(ctx, tx, changes)
		if err != nil {
			return err
		}
		for k, i := range changed {
			res[i].Status, res[i].TimeUpdate = changes[k].status, tus[k].In(s.loc)
		}
	}
	return nil
}

// prepareCompletions checks each completion and encodes its responses
// before any transaction: encoding is the expensive part of a response,
// and doing it here does it once even if the transaction is retried.
// res carries each completion's instance and, for an invalid one, its
// error; encoded[i][j] is the encoded Data of cs[i].Writes[j] when that
// write is a response.
func prepareCompletions(cs []Completion) (res []CompletionResult, encoded [][]string) {
	res = make([]CompletionResult, len(cs))
	encoded = make([][]string, len(cs))
	for i, c := range cs {
		res[i].InstanceID = c.InstanceID
		if err := c.check(); err != nil {
			res[i].Err = fmt.Errorf("djangodb: complete: %w", err)
			continue
		}
		for j, w := range c.Writes {
			if w.IsResponse {
				if encoded[i] == nil {
					encoded[i] = make([]string, len(c.Writes))
				}
				encoded[i][j] = EncodeResponse(w.Data)
			}
		}
	}
	return res, encoded
}

func (s *store) Release(ctx context.Context, id int64, starts int, to Status, message string) (bool, error) {
	op := fmt.Sprintf("release instance %d (start %d) to %s", id, starts, to)
	if to != Accepted && to != Failed {
		return false, fmt.Errorf("djangodb: %s: only ACCEPTED or FAILED", op)
	}
	var wrote bool
	err := s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		wrote = false
		r, err := s.lockRun(ctx, tx, id)
		if err != nil || (Completion{InstanceID: id, Starts: starts}).Fence(r.RunState) != "" {
			return err
		}
		wrote = true
		return s.moveTo(ctx, tx, id, to, message)
	})
	return wrote && err == nil, err
}

// ---- clean-up

func (s *store) SweepZombies(ctx context.Context, message string) (SweepResult, error) {
	var res SweepResult
	types, err := s.Types(ctx)
	if err != nil {
		return res, err
	}
	now := s.clock.now()
	// Candidates are listed without locks; each is then handled in a
	// transaction of its own that locks it and checks again: a task may
	// have reported in, or another sweeper taken it, since. A row that
	// fails is reported and the others are still swept.
	var errs []error
	// sweep runs fn in a transaction: the instance it reports goes to
	// the list it names.
	sweep := func(op string, fn func(ctx context.Context, tx *sql.Tx) (*runRow, *[]InstanceRef, error)) {
		var r *runRow
		var to *[]InstanceRef
		err := s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) (err error) {
			r, to, err = fn(ctx, tx)
			return err
		})
		if err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		} else if err == nil && r != nil {
			*to = append(*to, r.InstanceRef)
		}
	}
	for _, typ := range types {
		cut := now.Add(-typ.TimeoutDuration())
		ids, err := s.readIDs(ctx, "list zombies of type "+typ.Identifier, s.q.zombies, typ.ID, cut)
		errs = append(errs, err)
		for _, id := range ids {
			sweep(fmt.Sprintf("sweep zombie instance %d", id), func(ctx context.Context, tx *sql.Tx) (*runRow, *[]InstanceRef, error) {
				runs, err := s.lockRuns(ctx, tx, []int64{id}, true)
				r := runs[id]
				if err != nil || r == nil || !r.locked || !r.TimeUpdate.Before(cut) ||
					r.Status != Scheduled && r.Status != Running && r.Status != Paused {
					return nil, nil, err
				}
				if r.Starts >= r.MaxStart {
					return r, &res.Failed, s.moveTo(ctx, tx, id, Failed, MaxStartsMessage(r.Starts, r.MaxStart))
				}
				return r, &res.Reenqueued, s.moveTo(ctx, tx, id, Accepted, message)
			})
		}
	}
	// Task rows claimed (lock != 0) by a daemon that died before turning
	// them into SCHEDULED instances. The tracker sets the instance
	// SCHEDULED with a bare UPDATE (no timeUpdate, no log record) before
	// re-enqueueing it; inside one transaction that state is invisible and
	// leaves no trace, so it is not written.
	cut := now.Add(-PullTimeout)
	tasks, err := s.readIDs(ctx, "list stuck task rows", s.q.stuck, cut)
	errs = append(errs, err)
	for _, task := range tasks {
		sweep(fmt.Sprintf("unstick task row %d", task), func(ctx context.Context, tx *sql.Tx) (*runRow, *[]InstanceRef, error) {
			var instance int64
			if err := s.one(ctx, tx, s.q.takeStuck, []any{task, cut}, &instance); err != nil {
				return nil, nil, ignore(err, sql.ErrNoRows)
			}
			r, err := s.lockRun(ctx, tx, instance)
			if err != nil || r.Queued {
				// No instance: deleting the row was all. Waiting again
				// already: one queue entry is enough.
				return r, &res.Unstuck, ignore(err, ErrNotFound)
			}
			return r, &res.Unstuck, s.moveTo(ctx, tx, instance, Accepted, message)
		})
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("djangodb: sweep zombies: %w", err))
	}
	return res, errors.Join(errs...)
}

// ignore is err unless it is target.
func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// retireBatch bounds how many instances one retirement transaction deletes.
const retireBatch = 500

func (s *store) DeleteRetired(ctx context.Context) ([]InstanceRef, error) {
	types, err := s.Types(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clock.now()
	var out []InstanceRef
	for _, typ := range types {
		if typ.TimeRet <= 0 {
			continue
		}
		cut := now.Add(-secondsToDuration(typ.TimeRet))
		for after := int64(0); ; {
			// Candidates are chosen without locks; the transaction locks
			// their task rows before the instances, the order claims lock
			// in, and checks each instance again.
			ids, err := s.readIDs(ctx, "list retired instances of type "+typ.Identifier, s.q.retired, typ.ID, cut, after, retireBatch)
			if err != nil {
				return out, err
			}
			if len(ids) == 0 {
				break
			}
			after = ids[len(ids)-1]
			var batch []InstanceRef
			err = s.write(ctx, fmt.Sprintf("delete %d retired instances of type %s", len(ids), typ.Identifier), func(ctx context.Context, tx *sql.Tx) error {
				batch = batch[:0]
				if err := s.each(ctx, tx, s.q.lockWaiting, idRows(ids), nil); err != nil {
					return err
				}
				runs, err := s.lockRuns(ctx, tx, ids, true)
				if err != nil {
					return err
				}
				var gone []int64
				for _, id := range ids {
					if r, ok := runs[id]; ok && r.locked && r.Status.Terminal() && r.TimeUpdate.Before(cut) {
						gone, batch = append(gone, id), append(batch, r.InstanceRef)
					}
				}
				return s.purge(ctx, tx, gone)
			})
			if err != nil {
				return out, err
			}
			out = append(out, batch...)
			if len(ids) < retireBatch {
				break
			}
		}
	}
	return out, nil
}

func (s *store) Delete(ctx context.Context, id int64) error {
	return s.write(ctx, fmt.Sprintf("delete instance %d", id), func(ctx context.Context, tx *sql.Tx) error {
		return s.purge(ctx, tx, []int64{id})
	})
}
