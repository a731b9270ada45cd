package e2e

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// FreshDSN is a fresh Django-migrated database, PostgreSQL when pg, SQLite
// otherwise; it is dropped with the test.
func FreshDSN(t testing.TB, pg bool, cfg testdb.Config) string {
	t.Helper()
	if pg {
		return testdb.Postgres(t, cfg)
	}
	return testdb.SQLite(t, cfg)
}

// OpenStore opens a store on dsn, closed with the test.
func OpenStore(t testing.TB, dsn string, opts djangodb.Options) djangodb.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := djangodb.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("open %s: %v", djangodb.RedactDSN(dsn), err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// Context is a context of timeout, cancelled with the test.
func Context(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// Logger sends log lines, debug ones too, to the test's log, so that they
// show with the test that wrote them.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
