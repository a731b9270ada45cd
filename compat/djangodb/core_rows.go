package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Types, the queue and the reads: the rest of Store over the dialect.

func (s *store) RegisterType(ctx context.Context, spec TypeSpec) (TaskType, error) {
	t := spec.Normalize()
	err := s.write(ctx, "register type "+spec.Identifier, func(ctx context.Context, tx *sql.Tx) error {
		return s.one(ctx, tx, s.q.upsertType, []any{t.Identifier, t.Handler, t.MaxStart, t.Timeout, t.TimeRet}, &t.ID)
	})
	if err != nil {
		return TaskType{}, err
	}
	return t, nil
}

func (s *store) UnregisterType(ctx context.Context, identifier string, force bool) error {
	return s.write(ctx, "unregister type "+identifier, func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		if err := s.one(ctx, tx, s.q.lockType, []any{identifier}, &id); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		ids, err := s.ids(ctx, tx, s.q.typeInstances, id)
		if err != nil {
			return err
		}
		if len(ids) > 0 && !force {
			return fmt.Errorf("%w (%d instances)", ErrProtected, len(ids))
		}
		if err := s.purge(ctx, tx, ids); err != nil {
			return err
		}
		return s.run(ctx, tx, s.q.deleteType, []any{id}, nil)
	})
}

// cols lists t's fields in typeColumns order, to scan into.
func (t *TaskType) cols() []any {
	return []any{&t.ID, &t.Identifier, &t.Handler, &t.MaxStart, &t.Timeout, &t.TimeRet}
}

// get scans the one row st returns into dest, on the read pool;
// ErrNotFound when there is none.
func (s *store) get(ctx context.Context, op string, st stmt, args []any, dest ...any) error {
	return s.read(ctx, op, func(ctx context.Context, _ *sql.DB) error {
		if err := s.one(ctx, nil, st, args, dest...); !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return ErrNotFound
	})
}

func (s *store) Type(ctx context.Context, identifier string) (TaskType, error) {
	var t TaskType
	err := s.get(ctx, "type "+identifier, s.q.typeByName, []any{identifier}, t.cols()...)
	return t, err
}

func (s *store) Types(ctx context.Context) ([]TaskType, error) {
	var out []TaskType
	err := s.read(ctx, "list types", func(ctx context.Context, _ *sql.DB) error {
		return s.run(ctx, nil, s.q.types, nil, func(r *sql.Rows) error {
			var t TaskType
			err := r.Scan(t.cols()...)
			out = append(out, t)
			return err
		})
	})
	return out, err
}

// ---- queue

func (s *store) Enqueue(ctx context.Context, typ, identifier, input, message string) (int64, error) {
	var ids []int64
	err := s.write(ctx, "enqueue "+typ+"::"+identifier, func(ctx context.Context, tx *sql.Tx) error {
		var waiting int
		if err := s.run(ctx, tx, s.q.lockQueue, nil, nil); err != nil {
			return err
		}
		if err := s.one(ctx, tx, s.q.countWaiting, nil, &waiting); err != nil {
			return err
		}
		if waiting >= s.maxQueue {
			return fmt.Errorf("%w (%d tasks waiting, limit %d)", ErrQueueFull, waiting, s.maxQueue)
		}
		var err error
		ids, err = s.insert(ctx, tx, typ, []NewTask{{identifier, input}}, message)
		return err
	})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

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
	op := fmt.Sprintf("enqueue %d tasks of type %s", len(tasks), typ)
	c, err := coreOf(op, s)
	if err != nil || len(tasks) == 0 {
		return nil, err
	}
	var ids []int64
	err = c.write(ctx, op, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		ids, err = c.insert(ctx, tx, typ, tasks, message)
		return err
	})
	return ids, err
}

// insert writes the tasks' rows in Django's order, each a tick after the
// other: the instance (timeInsert = timeUpdate), its log record, the
// input and the waiting task row.
func (s *store) insert(ctx context.Context, tx *sql.Tx, typ string, tasks []NewTask, message string) ([]int64, error) {
	var t TaskType
	if err := s.one(ctx, tx, s.q.typeByName, []any{typ}, t.cols()...); errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("type %s: %w", typ, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	base := s.clock.reserve(3 * len(tasks))
	message = StorableText(message)
	rows := make([][]any, len(tasks))
	for k, task := range tasks {
		at := base.Add(time.Duration(3*k) * time.Microsecond)
		rows[k] = []any{t.ID, task.Identifier, task.Input, at, at.Add(time.Microsecond), at.Add(2 * time.Microsecond), message}
	}
	var ids []int64
	err := s.each(ctx, tx, s.q.insertInstance, rows, func(r *sql.Rows) error {
		var id int64
		err := r.Scan(&id)
		ids = append(ids, id)
		return err
	})
	if s.d.unique(err) {
		return nil, fmt.Errorf("%w: %v", ErrExists, err)
	}
	return ids, err
}

func (s *store) QueueStats(ctx context.Context) (QueueStats, error) {
	st := QueueStats{Max: s.maxQueue}
	err := s.get(ctx, "queue stats", s.q.queueStats, nil, &st.Waiting, s.at(&st.Oldest))
	return st, err
}

// ---- reads

func (s *store) scanInstance(r interface{ Scan(...any) error }) (Instance, error) {
	var in Instance
	err := r.Scan(&in.ID, &in.TypeID, &in.Type, &in.Identifier, &in.Status, s.at(&in.TimeInsert), s.at(&in.TimeUpdate))
	return in, err
}

// instances lists the instances the WHERE clause cond selects.
func (s *store) instances(ctx context.Context, op, cond string, args ...any) ([]Instance, error) {
	var out []Instance
	err := s.read(ctx, op, func(ctx context.Context, _ *sql.DB) error {
		return s.run(ctx, nil, stmt{s.q.instances[0] + cond}, args, func(r *sql.Rows) error {
			in, err := s.scanInstance(r)
			out = append(out, in)
			return err
		})
	})
	return out, err
}

func (s *store) instance(ctx context.Context, op, cond string, args ...any) (Instance, error) {
	ins, err := s.instances(ctx, op, cond, args...)
	if err == nil && len(ins) == 0 {
		err = fmt.Errorf("djangodb: %s: %w", op, ErrNotFound)
	}
	if err != nil {
		return Instance{}, err
	}
	return ins[0], nil
}

func (s *store) Instance(ctx context.Context, id int64) (Instance, error) {
	return s.instance(ctx, fmt.Sprintf("instance %d", id), `WHERE i.id = $1`, id)
}

func (s *store) InstanceByIdentifier(ctx context.Context, typ, identifier string) (Instance, error) {
	return s.instance(ctx, "instance "+typ+"::"+identifier, `WHERE t.identifier = $1 AND i.identifier = $2`, typ, identifier)
}

func (s *store) Instances(ctx context.Context, f InstanceFilter) ([]Instance, error) {
	cond, args := `WHERE 1 = 1`, []any{}
	if f.Type != "" {
		args = append(args, f.Type)
		cond += fmt.Sprintf(` AND t.identifier = $%d`, len(args))
	}
	if f.Status != nil {
		args = append(args, int(*f.Status))
		cond += fmt.Sprintf(` AND i.status = $%d`, len(args))
	}
	cond += ` ORDER BY i.id`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		cond += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	return s.instances(ctx, "list instances", cond, args...)
}

func (s *store) Log(ctx context.Context, id int64) ([]LogRecord, error) {
	var out []LogRecord
	err := s.read(ctx, fmt.Sprintf("log of instance %d", id), func(ctx context.Context, _ *sql.DB) error {
		err := s.run(ctx, nil, s.q.log, []any{id}, func(r *sql.Rows) error {
			var l LogRecord
			err := r.Scan(&l.ID, s.at(&l.Time), &l.Status, &l.Message)
			out = append(out, l)
			return err
		})
		if err != nil || len(out) > 0 {
			return err
		}
		var n int
		if err := s.one(ctx, nil, s.q.exists, []any{id}, &n); err != nil || n > 0 {
			return err
		}
		return ErrNotFound
	})
	return out, err
}

func (s *store) Response(ctx context.Context, id int64) (Response, error) {
	var r Response
	var text string
	err := s.get(ctx, fmt.Sprintf("response of instance %d", id), s.q.response, []any{id}, &text, &r.MimeType)
	if err == nil {
		r.Data, err = DecodeResponse(text)
	}
	return r, err
}

func (s *store) Input(ctx context.Context, id int64) (string, error) {
	var text string
	err := s.get(ctx, fmt.Sprintf("input of instance %d", id), s.q.input, []any{id}, &text)
	return text, err
}
