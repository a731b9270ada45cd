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

// TestPostgresUnstorableText: PostgreSQL refuses invalid UTF-8 and NUL in
// text, and a handler's error message may carry either; the status change
// must still be written, with the bad bytes replaced.
func TestPostgresUnstorableText(t *testing.T) {
	c := testdb.Config{UseTZ: true, TimeZone: "UTC"}
	s := openPostgres(t, testdb.Postgres(t, c), testdb.Options(c))
	ctx := t.Context()
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "T", Handler: "h.h", Timeout: 60}); err != nil {
		t.Fatal(err)
	}
	id, err := s.Enqueue(ctx, "T", "t", "", "enqueued \x00 here")
	if err != nil {
		t.Fatalf("enqueue with a NUL in the message: %v", err)
	}
	tests := []struct{ name, message, want string }{
		{"invalid UTF-8", "KeyError: '\xff\xfe'", "KeyError: '\uFFFD'"},
		{"NUL", "a\x00b", "a\uFFFDb"},
		{"valid text unchanged", "ünïcødé ✓ \U0001F600", "ünïcødé ✓ \U0001F600"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetStatus(ctx, id, djangodb.Failed, tc.message); err != nil {
				t.Fatalf("SetStatus(FAILED, %q): %v", tc.message, err)
			}
			recs, err := s.Log(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got := recs[len(recs)-1].Message; got != tc.want {
				t.Errorf("stored message %q, want %q", got, tc.want)
			}
		})
	}
	if err := s.SetResponse(ctx, id, []byte{0, 0xff}, "text/\xffplain"); err != nil {
		t.Fatalf("SetResponse with a bad MIME type: %v", err)
	}
	r, err := s.Response(ctx, id)
	if err != nil || string(r.Data) != "\x00\xff" || r.MimeType != "text/\uFFFDplain" {
		t.Errorf("Response() = %q %q, %v", r.Data, r.MimeType, err)
	}
	recs, _ := s.Log(ctx, id)
	if recs[0].Message != "enqueued \uFFFD here" {
		t.Errorf("enqueue message stored as %q", recs[0].Message)
	}
}
