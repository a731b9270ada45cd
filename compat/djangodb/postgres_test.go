package djangodb_test

import (
	"database/sql"
	"errors"
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

func openPostgres(t testing.TB, dsn string, opts djangodb.Options) djangodb.Tracker {
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
	return mustTracker(t, s)
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, postgresHarness)
}

// TestPostgresClaimStampsAfterTheClaim: a task committed while a claim
// waits (here for a table lock a producer holds) is claimed with times
// after its own. Stamping times reserved before the claim's snapshot would
// put its SCHEDULED record before its ACCEPTED one in getTaskLog.
func TestPostgresClaimStampsAfterTheClaim(t *testing.T) {
	c := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, c)
	s := openPostgres(t, dsn, testdb.Options(c))
	ctx := t.Context()
	typ, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "T", Handler: "h.h", Timeout: 60})
	if err != nil {
		t.Fatal(err)
	}
	// A claim on the empty queue first, so that the wait below is the
	// claim's own and not the preparation of its statements.
	if _, err := s.Claim(ctx, 1, 1, ""); !errors.Is(err, djangodb.ErrQueueEmpty) {
		t.Fatalf("claim from an empty queue: %v", err)
	}
	db := rawDB(t, dsn)
	producer, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Rollback()
	if _, err := producer.Exec(`LOCK TABLE processes_task IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	type claimResult struct {
		sts []djangodb.StartedTask
		err error
	}
	claimed := make(chan claimResult, 1)
	go func() {
		sts, err := s.Claim(ctx, 1, 1, "")
		claimed <- claimResult{sts, err}
	}()
	// Wait until the claim waits for the lock.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var waiting bool
		if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'processes_task'::regclass)`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim never waited for the producer's lock")
		}
		time.Sleep(time.Millisecond)
	}
	// The producer enqueues as the tracker does, with times taken now,
	// after the claim began, and commits.
	now := time.Now().Truncate(time.Microsecond)
	var id int64
	if err := producer.QueryRow(`INSERT INTO processes_instance (identifier, type_id, "timeInsert", "timeUpdate", status)
		VALUES ('late', $1, $2, $2, 1) RETURNING id`, typ.ID, now).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO processes_logrecord (instance_id, time, status, message) VALUES ($1, $2::timestamptz + interval '1 microsecond', 1, '')`,
		`INSERT INTO processes_task (instance_id, time, lock) VALUES ($1, $2::timestamptz + interval '2 microseconds', 0)`,
	} {
		if _, err := producer.Exec(q, id, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := producer.Exec(`INSERT INTO processes_input (instance_id, input) VALUES ($1, $2)`, id, okInput); err != nil {
		t.Fatal(err)
	}
	if err := producer.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-claimed
	if r.err != nil || len(r.sts) != 1 || r.sts[0].InstanceID != id {
		t.Fatalf("claim = %+v, %v; want the producer's task %d", r.sts, r.err, id)
	}
	recs, err := s.Log(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []djangodb.Status
	for _, rec := range recs {
		got = append(got, rec.Status)
	}
	if fmt.Sprint(got) != fmt.Sprint([]djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running}) {
		t.Errorf("log by time %v, want ACCEPTED, SCHEDULED, RUNNING (records %+v)", got, recs)
	}
}
