package djangodb_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
	"github.com/eoxserver/atpd/producer"
)

// wakeWait bounds how long a test waits for an announcement that must come.
const wakeWait = 20 * time.Second

// listening runs s.Listen until the test ends and returns its wake-ups,
// after the first one (Listen wakes once when LISTEN has taken effect).
func listening(t *testing.T, s djangodb.Store) <-chan struct{} {
	t.Helper()
	l, ok := s.(djangodb.Listener)
	if !ok {
		t.Fatalf("%s does not implement djangodb.Listener", s.Describe())
	}
	wakes := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(ctx, func() { wakes <- struct{}{} }, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen after cancel: %v, want nil", err)
		}
	})
	awaitWake(t, wakes, "LISTEN taking effect")
	return wakes
}

func awaitWake(t *testing.T, wakes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wakes:
	case <-time.After(wakeWait):
		t.Fatalf("no wake-up within %v after %s", wakeWait, what)
	}
}

// drain empties wakes, so that the next wait sees only new announcements.
func drain(wakes <-chan struct{}) {
	for {
		select {
		case <-wakes:
		default:
			return
		}
	}
}

func TestPostgresNotifyTrigger(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	s := openPostgres(t, dsn, testdb.Options(c))
	ti := s.(djangodb.TriggerInstaller)
	ctx := t.Context()
	django(t, dsn, c, "producer.py", "register", "Sum", "tools.atp_demo.handler")
	wakes := listening(t, s)

	steps := []struct {
		name    string
		do      func() (bool, error)
		want    bool // what install or remove reports
		present bool
	}{
		{"install", func() (bool, error) { return ti.InstallNotifyTrigger(ctx) }, true, true},
		{"install again", func() (bool, error) { return ti.InstallNotifyTrigger(ctx) }, false, true},
		{"remove", func() (bool, error) { return ti.RemoveNotifyTrigger(ctx) }, true, false},
		{"remove again", func() (bool, error) { return ti.RemoveNotifyTrigger(ctx) }, false, false},
		{"install after remove", func() (bool, error) { return ti.InstallNotifyTrigger(ctx) }, true, true},
	}
	db := rawDB(t, dsn)
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := st.do()
			if err != nil || got != st.want {
				t.Fatalf("%s = %v, %v; want %v", st.name, got, err, st.want)
			}
			installed, err := ti.NotifyTriggerInstalled(ctx)
			if err != nil || installed != st.present {
				t.Fatalf("NotifyTriggerInstalled() = %v, %v; want %v", installed, err, st.present)
			}
			var functions int
			if err := db.QueryRow(`SELECT count(*) FROM pg_proc WHERE proname = $1`, djangodb.NotifyTrigger).Scan(&functions); err != nil {
				t.Fatal(err)
			}
			if (functions == 1) != st.present {
				t.Errorf("%d trigger functions after %s", functions, st.name)
			}
			// A Python producer's enqueue, unchanged, announces the task
			// while the trigger is there.
			drain(wakes)
			django(t, dsn, c, "producer.py", "enqueue", "Sum", "t"+string(rune('a'+i)), "--json", "[1, 2]")
			if st.present {
				awaitWake(t, wakes, "a Django enqueue with the trigger installed")
			}
		})
	}
	// The trigger writes nothing: the rows are those of the tracker.
	var logs, tasks int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM processes_logrecord), (SELECT count(*) FROM processes_task)`).Scan(&logs, &tasks); err != nil {
		t.Fatal(err)
	}
	if logs != len(steps) || tasks != len(steps) {
		t.Errorf("%d log records and %d task rows after %d enqueues", logs, tasks, len(steps))
	}
}

func TestPostgresNotifyTriggerWithoutTables(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	empty := emptyPostgres(t, testdb.Postgres(t, c))
	s := openPostgres(t, empty, testdb.Options(c))
	if _, err := s.(djangodb.TriggerInstaller).InstallNotifyTrigger(t.Context()); !errors.Is(err, djangodb.ErrNotFound) {
		t.Errorf("install on a database without processes_task: %v, want ErrNotFound", err)
	}
}

// TestPostgresNotifier: a Go producer with the store as its Notifier wakes
// a listener on another connection, without any trigger.
func TestPostgresNotifier(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	daemonSide := openPostgres(t, dsn, testdb.Options(c))
	producerSide := openPostgres(t, dsn, testdb.Options(c))
	wakes := listening(t, daemonSide)
	n, ok := producerSide.(djangodb.Notifier)
	if !ok {
		t.Fatalf("postgres store is not a djangodb.Notifier")
	}
	p := producer.New(producerSide, producer.Options{Notifier: n})
	if _, err := p.RegisterType(t.Context(), djangodb.TypeSpec{Identifier: "Sum", Handler: "tools.atp_demo.handler", Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		drain(wakes)
		if _, err := p.Enqueue(t.Context(), "Sum", id, []any{int64(1), int64(2)}, ""); err != nil {
			t.Fatal(err)
		}
		awaitWake(t, wakes, "a Go producer's enqueue "+id)
	}
}

// TestPostgresListenReconnects: when the server ends the LISTEN connection,
// the listener reconnects, wakes its caller (announcements may have been
// lost) and hears later announcements.
func TestPostgresListenReconnects(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	s := openPostgres(t, dsn, testdb.Options(c))
	wakes := listening(t, s)
	db := rawDB(t, dsn)
	var killed int
	if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN "` + djangodb.NotifyChannel + `"'`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d LISTEN connections, want 1", killed)
	}
	awaitWake(t, wakes, "the LISTEN connection was terminated")
	// Announcements reach the new connection.
	deadline := time.Now().Add(wakeWait)
	for {
		drain(wakes)
		if err := s.(djangodb.Notifier).Notify(t.Context()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wakes:
			return
		case <-time.After(100 * time.Millisecond):
			// The notification may have raced the re-LISTEN; announce again.
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wake-up for a notification within %v of reconnecting", wakeWait)
		}
	}
}
