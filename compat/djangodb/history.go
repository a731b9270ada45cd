package djangodb

import (
	"context"
	"database/sql"
	"slices"
	"time"
)

// HistoryRecord is one log record as a history read returns it: its instance,
// its time and status, and which of the daemon's re-enqueue messages it
// carries (the messages themselves, exception texts, are not read).
type HistoryRecord struct {
	Instance InstanceRef
	TypeID   int64
	Time     time.Time
	Status   Status
	// Timeout: the sweep's re-enqueue (MsgZombieReenqueued); Shutdown: a
	// shutdown's (MsgShutdownReenqueue).
	Timeout, Shutdown bool
}

// EachLogRecord calls fn with every log record of every instance, an
// instance's records together and in getTaskLog's order (instances by
// id). It reads them in one statement on the read pool, without a call
// timeout of its own: ctx bounds it. An error of fn ends the read.
func EachLogRecord(ctx context.Context, st Store, fn func(HistoryRecord) error) error {
	s, err := coreOf("read the log", st)
	if err != nil {
		return err
	}
	return s.read(ctx, "read the log", func(ctx context.Context, _ *sql.DB) error {
		return s.run(ctx, nil, s.q.history, []any{MsgZombieReenqueued, MsgShutdownReenqueue}, func(r *sql.Rows) error {
			var l HistoryRecord
			var mark int
			if err := r.Scan(&l.Instance.ID, &l.TypeID, &l.Instance.Type, &l.Instance.Identifier, s.at(&l.Time), &l.Status, &mark); err != nil {
				return err
			}
			l.Timeout, l.Shutdown = mark == 1, mark == 2
			return fn(l)
		})
	})
}

// Migrations returns the names of the processes app's migrations that
// django_migrations lists as applied, in the order they were applied.
// Without that table (a database atpd did not migrate and Django never
// did) the error is the database's.
func Migrations(ctx context.Context, st Store) ([]string, error) {
	c, err := coreOf("read django_migrations", st)
	if err != nil {
		return nil, err
	}
	var names []string
	err = c.read(ctx, "read django_migrations", func(ctx context.Context, db *sql.DB) error {
		return c.run(ctx, nil, stmt{sqlMigrations}, nil, func(r *sql.Rows) error {
			var n string
			err := r.Scan(&n)
			names = append(names, n)
			return err
		})
	})
	return names, err
}

const sqlMigrations = `SELECT name FROM django_migrations WHERE app = 'processes' ORDER BY id`

// ExpectedMigrations are the processes app's migrations, oldest first:
// what Migrations returns for a database Django or atpd migrated.
func ExpectedMigrations() []string { return slices.Clone(pgMigrations) }
