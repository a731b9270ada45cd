package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/lib/pq"
)

// PostgreSQL can tell a daemon about a new task the moment it is committed
// (NOTIFY), instead of the daemon finding it at its next poll. Go producers
// notify directly (Notifier); for Python producers, whose code cannot be
// changed, `atpd notify install` adds a trigger that notifies on every
// insert into processes_task. Polling stays: a notification can be lost
// (a listener reconnecting), and SQLite has none.

// NotifyChannel is the channel new tasks are announced on.
const NotifyChannel = "atpd_task_queued"

// NotifyTrigger names both the trigger on processes_task and its function.
// The name says who added it: it is not part of Django's migrations, and
// an administrator looking at the table must be able to tell.
const NotifyTrigger = "atpd_notify_task_queued"

// Notifier is implemented by stores that can wake listening daemons at
// once (PostgreSQL). It satisfies producer.Notifier.
type Notifier interface {
	// Notify announces that tasks were queued.
	Notify(ctx context.Context) error
}

// Listener is implemented by stores that announce new tasks (PostgreSQL).
type Listener interface {
	// Listen calls wake after every announcement and after every
	// (re)connection, since announcements made while disconnected are
	// lost, until ctx is done; it then returns nil. Lost connections are
	// logged on log (nil: not logged) and re-established with backoff;
	// only a refused LISTEN ends it early, with an error.
	Listen(ctx context.Context, wake func(), log *slog.Logger) error
}

// TriggerInstaller is implemented by stores whose database can announce
// every new task row, whoever inserts it (PostgreSQL).
type TriggerInstaller interface {
	// InstallNotifyTrigger adds (or replaces) the trigger and its function;
	// it reports whether they were not there before.
	InstallNotifyTrigger(ctx context.Context) (added bool, err error)
	// RemoveNotifyTrigger drops them; it reports whether they were there.
	RemoveNotifyTrigger(ctx context.Context) (removed bool, err error)
	// NotifyTriggerInstalled reports whether the trigger is on processes_task.
	NotifyTriggerInstalled(ctx context.Context) (bool, error)
}

// pgNotifyLock serialises install and remove ("atpd" "ntf").
const pgNotifyLock = 0x61747064_6e7466

func (s *pgStore) Notify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, `SELECT pg_notify($1, '')`, NotifyChannel); err != nil {
		return fmt.Errorf("djangodb: notify %s on %s: %w", NotifyChannel, s.describe, err)
	}
	return nil
}

// pgTaskSchema returns the schema of the processes_task the session sees,
// so that the function lands beside the table whatever the search_path.
func pgTaskSchema(ctx context.Context, tx *sql.Tx) (string, error) {
	var schema sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass('processes_task')`).Scan(&schema)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !schema.Valid) {
		return "", fmt.Errorf("table processes_task: %w (run Django's migrate or atpd migrate first)", ErrNotFound)
	}
	return schema.String, err
}

func pgTriggerExists(ctx context.Context, tx *sql.Tx) (bool, error) {
	var exists bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger
		WHERE tgrelid = to_regclass('processes_task') AND tgname = $1 AND NOT tgisinternal)`, NotifyTrigger).Scan(&exists)
	return exists, err
}

func (s *pgStore) InstallNotifyTrigger(ctx context.Context) (bool, error) {
	// One notification per statement: a transaction's identical
	// notifications are delivered once anyway, and a daemon only needs to
	// know that there is something to claim.
	existed, err := s.changeNotifyTrigger(ctx, func(fn string) []string {
		return []string{
			`CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	-- Added by atpd notify install: wakes atpd daemons when a task is queued.
	PERFORM pg_notify('` + NotifyChannel + `', '');
	RETURN NULL;
END
$$`,
			`COMMENT ON FUNCTION ` + fn + `() IS 'atpd: announces new processes_task rows on channel ` + NotifyChannel + `; remove with atpd notify remove'`,
			`DROP TRIGGER IF EXISTS ` + pq.QuoteIdentifier(NotifyTrigger) + ` ON processes_task`,
			`CREATE TRIGGER ` + pq.QuoteIdentifier(NotifyTrigger) + ` AFTER INSERT ON processes_task
				FOR EACH STATEMENT EXECUTE PROCEDURE ` + fn + `()`,
		}
	})
	if err != nil {
		return false, fmt.Errorf("djangodb: install trigger %s on processes_task in %s: %w", NotifyTrigger, s.describe, err)
	}
	return !existed, nil
}

func (s *pgStore) RemoveNotifyTrigger(ctx context.Context) (bool, error) {
	existed, err := s.changeNotifyTrigger(ctx, func(fn string) []string {
		return []string{
			`DROP TRIGGER IF EXISTS ` + pq.QuoteIdentifier(NotifyTrigger) + ` ON processes_task`,
			`DROP FUNCTION IF EXISTS ` + fn + `()`,
		}
	})
	if err != nil {
		return false, fmt.Errorf("djangodb: remove trigger %s from processes_task in %s: %w", NotifyTrigger, s.describe, err)
	}
	return existed, nil
}

// changeNotifyTrigger runs the statements that install or remove the
// trigger in one transaction, serialized with other installers and
// removers by an advisory lock, and reports whether the trigger existed
// before. statements gets the quoted, schema-qualified trigger function
// name (the schema of processes_task).
func (s *pgStore) changeNotifyTrigger(ctx context.Context, statements func(fn string) []string) (existed bool, err error) {
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgNotifyLock)); err != nil {
			return err
		}
		schema, err := pgTaskSchema(ctx, tx)
		if err != nil {
			return err
		}
		if existed, err = pgTriggerExists(ctx, tx); err != nil {
			return err
		}
		for _, q := range statements(pq.QuoteIdentifier(schema) + "." + pq.QuoteIdentifier(NotifyTrigger)) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	return existed, err
}

func (s *pgStore) NotifyTriggerInstalled(ctx context.Context) (bool, error) {
	var exists bool
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		exists, err = pgTriggerExists(ctx, tx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("djangodb: look for trigger %s in %s: %w", NotifyTrigger, s.describe, err)
	}
	return exists, nil
}

// Reconnection backoff of the LISTEN connection, and how often it is
// pinged so that a silently dead connection is noticed.
const (
	listenMinReconnect = 100 * time.Millisecond
	listenMaxReconnect = 10 * time.Second
	listenPing         = 60 * time.Second
)

func (s *pgStore) Listen(ctx context.Context, wake func(), log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	attrs := []any{"database", s.describe, "channel", NotifyChannel}
	l := pq.NewListener(s.conn, listenMinReconnect, listenMaxReconnect, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnected:
			log.Debug("djangodb: LISTEN connection established", attrs...)
		case pq.ListenerEventDisconnected:
			if ctx.Err() == nil {
				log.Warn("djangodb: LISTEN connection lost; reconnecting, polling meanwhile", append(attrs, "error", err)...)
			}
		case pq.ListenerEventReconnected:
			log.Info("djangodb: LISTEN connection re-established", attrs...)
		case pq.ListenerEventConnectionAttemptFailed:
			if ctx.Err() == nil {
				log.Warn("djangodb: LISTEN connection attempt failed; retrying", append(attrs, "error", err)...)
			}
		}
	})
	defer l.Close()
	listening := make(chan error, 1)
	// Listen blocks until connected, which may take forever; Close ends it.
	go func() { listening <- l.Listen(NotifyChannel) }()
	select {
	case err := <-listening:
		if err != nil {
			return fmt.Errorf("djangodb: listen on %s in %s: %w", NotifyChannel, s.describe, err)
		}
	case <-ctx.Done():
		return nil
	}
	// Tasks may have been queued before LISTEN took effect.
	wake()
	ping := time.NewTicker(listenPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.Notify:
			// A nil notification follows a reconnection: anything may have
			// been missed, which a wake-up covers too.
			wake()
		case <-ping.C:
			if err := l.Ping(); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Debug("djangodb: LISTEN connection ping failed; the listener reconnects", append(attrs, "error", err)...)
			}
		}
	}
}
