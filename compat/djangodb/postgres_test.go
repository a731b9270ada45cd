package djangodb_test

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/djangodb/storetest"
	"github.com/eoxserver/atpd/internal/testdb"
)

// postgresHarness runs the conformance suite on throwaway databases made by
// Django's migrate.
var postgresHarness = storetest.Harness{
	Name: "postgres",
	New: func(t testing.TB, c testdb.Config) (djangodb.Store, string) {
		t.Helper()
		dsn := testdb.Postgres(t, c)
		return openPostgres(t, dsn, testdb.Options(c)), dsn
	},
	DB: func(t testing.TB, dsn string) *sql.DB {
		t.Helper()
		db, err := sql.Open("postgres", dsn)
		if err != nil {
			t.Fatalf("open %s: %v", djangodb.RedactDSN(dsn), err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	},
	// The columns are timestamp with time zone: an instant binds as itself
	// whatever USE_TZ says.
	EncodeTime: func(_ testdb.Config, at time.Time) any { return at },
	DecodeTime: func(_ testdb.Config, v any) (time.Time, error) {
		t, ok := v.(time.Time)
		if !ok {
			return time.Time{}, fmt.Errorf("timestamptz scanned as %T", v)
		}
		return t, nil
	},
}

func openPostgres(t testing.TB, dsn string, opts djangodb.Options) djangodb.Store {
	t.Helper()
	s, err := djangodb.OpenPostgres(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("open postgres store %s: %v", djangodb.RedactDSN(dsn), err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close postgres store: %v", err)
		}
	})
	return s
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, postgresHarness)
}
