package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// NewTask is one task for EnqueueMany.
type NewTask struct {
	Identifier string
	Input      string // stored text, base64(zlib(pickle))
}

// EnqueueMany enqueues tasks of one type in one transaction, writing for
// each the rows Enqueue writes (instance, ACCEPTED log record with message,
// input, waiting task row), in order. Unlike Enqueue it ignores the queue
// limit, as Reenqueue does: it is for loading a queue on purpose (a
// benchmark, moving tasks between databases), not for producers, which
// should respect the limit Python producers respect. A duplicate identifier
// fails the whole call with ErrExists, an unknown type with ErrNotFound.
func EnqueueMany(ctx context.Context, s Store, typ string, tasks []NewTask, message string) ([]int64, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	switch s := s.(type) {
	case *pgStore:
		return s.enqueueMany(ctx, typ, tasks, message)
	case *sqliteStore:
		return s.enqueueMany(ctx, typ, tasks, message)
	}
	return nil, fmt.Errorf("djangodb: enqueue %d tasks of type %s: %w (store %T)", len(tasks), typ, ErrUnsupported, s)
}

// pgEnqueueMany inserts the k-th task's instance at tick 3k, its log record
// at 3k+1 and its task row at 3k+2 from the base $5, each table in k order
// so that ids follow the queue order.
const pgEnqueueMany = `WITH t AS (
		SELECT id FROM processes_type WHERE identifier = $1
	), v AS (
		SELECT * FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS v(identifier, input, n)
	), i AS (
		INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status)
		SELECT v.identifier, t.id, $5::timestamptz + 3 * (v.n - 1) * interval '1 microsecond',
			$5::timestamptz + 3 * (v.n - 1) * interval '1 microsecond', 1
		FROM v CROSS JOIN t ORDER BY v.n
		RETURNING id, identifier
	), j AS (
		SELECT i.id, v.n, v.input FROM i JOIN v ON v.identifier = i.identifier
	), l AS (
		INSERT INTO processes_logrecord (instance_id, time, status, message)
		SELECT id, $5::timestamptz + (3 * (n - 1) + 1) * interval '1 microsecond', 1, $4 FROM j ORDER BY n
	), p AS (
		INSERT INTO processes_input (instance_id, input) SELECT id, input FROM j ORDER BY n
	), k AS (
		INSERT INTO processes_task (instance_id, time, lock)
		SELECT id, $5::timestamptz + (3 * (n - 1) + 2) * interval '1 microsecond', 0 FROM j ORDER BY n
	)
	SELECT id FROM j ORDER BY n`

func (s *pgStore) enqueueMany(ctx context.Context, typ string, tasks []NewTask, message string) ([]int64, error) {
	idents := make([]string, len(tasks))
	inputs := make([]string, len(tasks))
	for i, t := range tasks {
		idents[i], inputs[i] = t.Identifier, t.Input
	}
	var ids []int64
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		ids, err = queryInt64s(ctx, tx, pgEnqueueMany, typ, pq.Array(idents), pq.Array(inputs), pgText(message),
			processClock.reserve(3*len(tasks)))
		var pe *pq.Error
		switch {
		case errors.As(err, &pe) && pe.Code == "23505":
			return fmt.Errorf("%w: %s", ErrExists, pe.Detail)
		case err != nil:
			return err
		case len(ids) == 0:
			return fmt.Errorf("type: %w", ErrNotFound)
		case len(ids) != len(tasks):
			// Two tasks with one identifier in this call.
			return fmt.Errorf("%w: %d tasks, %d distinct identifiers", ErrExists, len(tasks), len(ids))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("djangodb: enqueue %d tasks of type %s: %w", len(tasks), typ, err)
	}
	return ids, nil
}

func (s *sqliteStore) enqueueMany(ctx context.Context, typ string, tasks []NewTask, message string) ([]int64, error) {
	ids := make([]int64, 0, len(tasks))
	err := s.write(ctx, fmt.Sprintf("enqueue %d tasks of type %s", len(tasks), typ), func(ctx context.Context, tx *sql.Tx) error {
		ids = ids[:0]
		typeID, err := sqliteTypeID(ctx, tx, typ)
		if err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO processes_instance (identifier, "timeInsert", "timeUpdate", status, type_id) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		rest, err := tx.PrepareContext(ctx, `INSERT INTO processes_logrecord ("time", status, message, instance_id) VALUES (?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer rest.Close()
		inp, err := tx.PrepareContext(ctx, `INSERT INTO processes_input (input, instance_id) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		defer inp.Close()
		task, err := tx.PrepareContext(ctx, `INSERT INTO processes_task ("time", "lock", instance_id) VALUES (?, 0, ?)`)
		if err != nil {
			return err
		}
		defer task.Close()
		message := StorableText(message)
		for _, t := range tasks {
			base := processClock.reserve(3)
			now := s.tf.format(base)
			res, err := ins.ExecContext(ctx, t.Identifier, now, now, Accepted, typeID)
			if sqliteUniqueViolation(err) {
				return fmt.Errorf("%s: %w", t.Identifier, ErrExists)
			} else if err != nil {
				return err
			}
			id, err := res.LastInsertId()
			if err != nil {
				return err
			}
			if _, err := rest.ExecContext(ctx, s.tf.format(base.Add(time.Microsecond)), Accepted, message, id); err != nil {
				return err
			}
			if _, err := inp.ExecContext(ctx, t.Input, id); err != nil {
				return err
			}
			if _, err := task.ExecContext(ctx, s.tf.format(base.Add(2*time.Microsecond)), id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}
