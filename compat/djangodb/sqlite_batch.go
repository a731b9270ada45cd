package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Batch operations on SQLite. Statements are in-process calls here, so
// each task keeps its own statements; what batching saves is the commit,
// which syncs the journal and the database file.

func (s *sqliteStore) Claim(ctx context.Context, serverID int64, limit int, message string) ([]StartedTask, error) {
	op := fmt.Sprintf("claim for server 0x%016X", uint64(serverID))
	limit = max(limit, 1)
	message = StorableText(message)
	if err := s.probeQueue(ctx, op); err != nil {
		return nil, err
	}
	var out []StartedTask
	claimed := 0
	err := s.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		out, claimed = out[:0], 0
		insts, n, err := sqliteTakeWaiting(ctx, tx, limit)
		if err != nil {
			return err
		}
		claimed = n
		for _, inst := range insts {
			st, err := s.claimOne(ctx, tx, inst, message)
			if errors.Is(err, ErrNotFound) {
				// A task row whose instance is gone (written with foreign
				// keys off) names no task; dropping it loses nothing.
				continue
			} else if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		// Only orphan or duplicate rows were claimed; they are gone now, so
		// the next call reaches the tasks behind them.
		if claimed == 0 {
			return nil, fmt.Errorf("djangodb: %s: %w", op, ErrQueueEmpty)
		}
		return nil, fmt.Errorf("djangodb: %s: %w (%d orphan or duplicate task rows dropped)", op, ErrQueueEmpty, claimed)
	}
	return out, nil
}

// claimOne takes one claimed instance to RUNNING as Dequeue and Start
// would: a SCHEDULED log record, then timeUpdate and a RUNNING log record,
// in that time order. The SCHEDULED timeUpdate Dequeue would write is
// overwritten within the transaction, so it is not written.
func (s *sqliteStore) claimOne(ctx context.Context, tx *sql.Tx, id int64, message string) (StartedTask, error) {
	st := StartedTask{InstanceID: id}
	var timeout float64
	err := tx.QueryRowContext(ctx, `SELECT i.identifier, t.identifier, t.handler, t.timeout, t.maxstart
		FROM processes_instance i JOIN processes_type t ON t.id = i.type_id WHERE i.id = ?`, id).
		Scan(&st.Identifier, &st.Type, &st.Handler, &timeout, &st.MaxStart)
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("instance %d: %w", id, ErrNotFound)
	} else if err != nil {
		return st, err
	}
	st.Timeout = secondsToDuration(timeout)
	err = tx.QueryRowContext(ctx, `SELECT input FROM processes_input WHERE instance_id = ?`, id).Scan(&st.Input)
	switch {
	case err == nil:
		st.HasInput = true
	case !errors.Is(err, sql.ErrNoRows):
		return st, err
	}
	base := processClock.reserve(3)
	st.StartedAt = base.Add(time.Microsecond)
	if _, err := tx.ExecContext(ctx, `UPDATE processes_instance SET status = ?, "timeUpdate" = ? WHERE id = ?`,
		Running, s.tf.format(st.StartedAt), id); err != nil {
		return st, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO processes_logrecord ("time", status, message, instance_id) VALUES (?, ?, ?, ?), (?, ?, ?, ?)`,
		s.tf.format(base), Scheduled, message, id,
		s.tf.format(base.Add(2*time.Microsecond)), Running, message, id); err != nil {
		return st, err
	}
	st.Starts, err = sqliteCountStarts(ctx, tx, id)
	return st, err
}

func (s *sqliteStore) Complete(ctx context.Context, cs []Completion) ([]CompletionResult, error) {
	res, encoded := prepareCompletions(cs)
	if len(cs) == 0 {
		return res, nil
	}
	err := s.write(ctx, fmt.Sprintf("complete %d tasks", len(cs)), func(ctx context.Context, tx *sql.Tx) error {
		for i, c := range cs {
			if c.check() != nil {
				continue
			}
			r, err := s.completeOne(ctx, tx, c, encoded[i])
			if err != nil {
				return err
			}
			res[i] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// completeOne applies one completion inside tx. The instance's status is
// read once and then followed locally: the transaction holds the file's
// write lock, so nobody else changes it meanwhile.
func (s *sqliteStore) completeOne(ctx context.Context, tx *sql.Tx, c Completion, encoded []string) (CompletionResult, error) {
	r := CompletionResult{InstanceID: c.InstanceID}
	st, err := s.runState(ctx, tx, c.InstanceID)
	if errors.Is(err, ErrNotFound) {
		r.Err = fmt.Errorf("djangodb: complete instance %d: %w", c.InstanceID, ErrNotFound)
		return r, nil
	} else if err != nil {
		return r, err
	}
	r.Status = st.Status
	if reason := c.Fence(st); reason != "" {
		return c.discard(r, reason), nil
	}
	apply := func(w Write, j int) error {
		if w.IsResponse {
			return s.upsertResponse(ctx, tx, c.InstanceID, encoded[j], w.MimeType)
		}
		t, err := s.setStatusAt(ctx, tx, c.InstanceID, w.Status, w.Message)
		if err != nil {
			return err
		}
		r.Status, r.TimeUpdate = w.Status, t
		return nil
	}
	for j, w := range c.Writes {
		if err := apply(w, j); err != nil {
			return r, err
		}
	}
	if w, ifNotTerminal, ok := c.outcomeWrite(); ok && !(ifNotTerminal && r.Status.Terminal()) {
		if err := apply(w, -1); err != nil {
			return r, err
		}
		r.Wrote = true
	}
	return r, nil
}

// runState reads the fence's state of instance id (see Completion.Fence);
// the caller's transaction holds the file's write lock.
func (s *sqliteStore) runState(ctx context.Context, tx *sql.Tx, id int64) (RunState, error) {
	var st RunState
	err := tx.QueryRowContext(ctx, `SELECT status, EXISTS (SELECT 1 FROM processes_task WHERE instance_id = ? AND "lock" = 0)
		FROM processes_instance WHERE id = ?`, id, id).Scan(&st.Status, &st.Queued)
	if errors.Is(err, sql.ErrNoRows) {
		return st, ErrNotFound
	} else if err != nil {
		return st, err
	}
	st.Starts, err = sqliteCountStarts(ctx, tx, id)
	return st, err
}

// upsertResponse creates or replaces the instance's one response row,
// keeping the row's id as Django's save() of the existing object does.
func (s *sqliteStore) upsertResponse(ctx context.Context, tx *sql.Tx, id int64, text, mimeType string) error {
	mimeType = StorableText(mimeType)
	res, err := tx.ExecContext(ctx, `UPDATE processes_response SET response = ?, "mimeType" = ? WHERE instance_id = ?`, text, mimeType, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO processes_response (response, "mimeType", instance_id) VALUES (?, ?, ?)`, text, mimeType, id)
	return err
}
