package djangodb

import (
	"context"
	"database/sql"
	"fmt"
)

// Tracker is the tracker's step-by-step API (ATP-SPEC.md section 4) that
// the daemon does not use: it claims and starts with Claim, writes with
// Complete and gives up with Release. Tests and tools that drive a task
// through its states one call at a time use it; every store Open returns
// has it (see TrackerOf).
type Tracker interface {
	Store
	// Dequeue claims up to limit waiting tasks for serverID as Claim
	// does, but only takes them to SCHEDULED (with a log record).
	Dequeue(ctx context.Context, serverID int64, limit int, message string) ([]int64, error)
	// Start sets RUNNING and returns the task's parameters and input text.
	Start(ctx context.Context, id int64, message string) (StartedTask, error)
	// SetStatus is stopTaskSuccess, stopTaskFailure, pauseTask and resumeTask.
	SetStatus(ctx context.Context, id int64, status Status, message string) error
	// FinishIfNotFinished is stopTaskSuccessIfNotFinished; it reports
	// whether it wrote FINISHED.
	FinishIfNotFinished(ctx context.Context, id int64, message string) (bool, error)
	SetResponse(ctx context.Context, id int64, data []byte, mimeType string) error
	// Reenqueue sets ACCEPTED with a log record and inserts a waiting task
	// row, regardless of the queue limit.
	Reenqueue(ctx context.Context, id int64, message string) error
}

// TrackerOf returns the step-by-step API of a store this package opened,
// through any Wrappers around it (whose methods the tracker's calls then
// bypass); ErrUnsupported for any other Store.
func TrackerOf(s Store) (Tracker, error) {
	return ownOf("tracker", s)
}

// MustTrackerOf is TrackerOf for tests and set-up code that hold a store
// of this package: it panics where TrackerOf returns an error.
func MustTrackerOf(s Store) Tracker {
	t, err := TrackerOf(s)
	if err != nil {
		panic(err)
	}
	return t
}

func (t *store) Dequeue(ctx context.Context, serverID int64, limit int, message string) ([]int64, error) {
	var out []int64
	err := t.take(ctx, claimOp("dequeue", serverID), limit, func(ctx context.Context, tx *sql.Tx, ids []int64, _ map[int64]*runRow, _ map[int64]sql.NullString) error {
		changes := make([]change, len(ids))
		for i, id := range ids {
			changes[i] = change{id, Scheduled, message}
		}
		out = ids
		_, err := t.setStatuses(ctx, tx, changes)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// step runs fn on the locked instance id in one transaction.
func (t *store) step(ctx context.Context, op string, id int64, fn func(ctx context.Context, tx *sql.Tx, r *runRow) error) error {
	return t.write(ctx, fmt.Sprintf("%s instance %d", op, id), func(ctx context.Context, tx *sql.Tx) error {
		r, err := t.lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		return fn(ctx, tx, r)
	})
}

func (t *store) Start(ctx context.Context, id int64, message string) (StartedTask, error) {
	var st StartedTask
	err := t.step(ctx, "start", id, func(ctx context.Context, tx *sql.Tx, _ *runRow) error {
		tus, err := t.setStatuses(ctx, tx, []change{{id, Running, message}})
		if err != nil {
			return err
		}
		got, err := t.startInfo(ctx, tx, t.q.startInfo, idRows([]int64{id}))
		if err != nil {
			return err
		}
		r, err := t.lockRun(ctx, tx, id) // the starts, counted again
		st = got[id]
		st.StartedAt = tus[0].In(t.loc)
		if r != nil {
			st.Starts = r.Starts
		}
		return err
	})
	return st, err
}

func (t *store) SetStatus(ctx context.Context, id int64, status Status, message string) error {
	if status < Undefined || status > Failed {
		return fmt.Errorf("djangodb: set instance %d to status %d: no such status", id, int(status))
	}
	return t.step(ctx, "set status of", id, func(ctx context.Context, tx *sql.Tx, _ *runRow) error {
		_, err := t.setStatuses(ctx, tx, []change{{id, status, message}})
		return err
	})
}

func (t *store) FinishIfNotFinished(ctx context.Context, id int64, message string) (bool, error) {
	var wrote bool
	err := t.step(ctx, "finish", id, func(ctx context.Context, tx *sql.Tx, r *runRow) error {
		if wrote = !r.Status.Terminal(); !wrote {
			return nil
		}
		_, err := t.setStatuses(ctx, tx, []change{{id, Finished, message}})
		return err
	})
	return wrote && err == nil, err
}

func (t *store) SetResponse(ctx context.Context, id int64, data []byte, mimeType string) error {
	text := EncodeResponse(data)
	return t.step(ctx, "set response of", id, func(ctx context.Context, tx *sql.Tx, _ *runRow) error {
		return t.each(ctx, tx, t.q.setResponse, [][]any{{id, text, StorableText(mimeType)}}, nil)
	})
}

func (t *store) Reenqueue(ctx context.Context, id int64, message string) error {
	return t.step(ctx, "reenqueue", id, func(ctx context.Context, tx *sql.Tx, _ *runRow) error {
		return t.moveTo(ctx, tx, id, Accepted, message)
	})
}
