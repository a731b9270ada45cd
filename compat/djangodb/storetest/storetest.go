// Package storetest owns the conformance suite every djangodb.Store
// implementation must pass: the tracker semantics of ATP-SPEC.md section 4,
// checked on tables made by Django's own migrate and, where it matters, by
// reading the rows back behind the store's back.
//
// A wiring test file per dialect supplies a Harness and calls Run. The suite
// writes its own SQL once, in the subset both dialects accept ($N
// placeholders, double-quoted camelCase columns); the only thing that
// differs between dialects, how Django encodes a timestamp, stays in the
// harness.
package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// Harness adapts the suite to one Store implementation.
type Harness struct {
	// Name labels the implementation in failures ("postgres", "sqlite").
	Name string
	// New returns a store on a fresh database migrated by Django for c, and
	// the DSN djangodb.Open accepts for that database. The store is closed
	// by the harness at cleanup.
	New func(t testing.TB, c testdb.Config) (djangodb.Store, string)
	// DB opens a raw connection to dsn for the suite's own reads and writes;
	// the harness closes it at cleanup.
	DB func(t testing.TB, dsn string) *sql.DB
	// EncodeTime returns at as Django would bind it for a timestamp column
	// under c.
	EncodeTime func(c testdb.Config, at time.Time) any
	// DecodeTime turns a timestamp column value as the driver returns it
	// into an instant, reading it as Django would under c.
	DecodeTime func(c testdb.Config, v any) (time.Time, error)
}

// Configs are the Django settings the suite runs under: USE_TZ on and off,
// with a TIME_ZONE that equals UTC and one that does not (and has DST).
var Configs = []testdb.Config{
	{UseTZ: true, TimeZone: "UTC"},
	{UseTZ: true, TimeZone: "Europe/Vienna"},
	{UseTZ: false, TimeZone: "UTC"},
	{UseTZ: false, TimeZone: "Europe/Vienna"},
}

// ConfigName names c in subtest names, e.g. "usetz=false/Europe_Vienna".
func ConfigName(c testdb.Config) string {
	tz := c.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("usetz=%t/%s", c.UseTZ, tz)
}

type testCase struct {
	name string
	fn   func(t *testing.T, e *env)
}

// cases is every conformance test; each gets a fresh database.
var cases = []testCase{
	{"RegisterType", testRegisterType},
	{"TypeNotFound", testTypeNotFound},
	{"UnregisterType", testUnregisterType},
	{"Enqueue", testEnqueue},
	{"EnqueueErrors", testEnqueueErrors},
	{"QueueFull", testQueueFull},
	{"QueueFullCustomSize", testQueueFullCustomSize},
	{"Dequeue", testDequeue},
	{"DequeueSkipsClaimed", testDequeueSkipsClaimed},
	{"Start", testStart},
	{"StartWithoutInput", testStartWithoutInput},
	{"StartsCounted", testStartsCounted},
	{"SetStatus", testSetStatus},
	{"SetStatusErrors", testSetStatusErrors},
	{"FinishIfNotFinished", testFinishIfNotFinished},
	{"Response", testResponse},
	{"Reenqueue", testReenqueue},
	{"LogOrder", testLogOrder},
	{"Instances", testInstances},
	{"QueueStats", testQueueStats},
	{"SweepZombies", testSweepZombies},
	{"SweepStuckPull", testSweepStuckPull},
	{"SweepConcurrent", testSweepConcurrent},
	{"DeleteRetired", testDeleteRetired},
	{"Delete", testDelete},
	{"TimestampRoundTrip", testTimestampRoundTrip},
	{"ReferenceRun", testReferenceRun},
	{"ClaimEqualsDequeueStart", testClaimEqualsDequeueStart},
	{"Claim", testClaim},
	{"ClaimStartsAndInput", testClaimStartsAndInput},
	{"ClaimUndecodable", testClaimUndecodable},
	{"CompleteEqualsSingle", testCompleteEqualsSingle},
	{"CompleteSkips", testCompleteSkips},
	{"UnstorableText", testUnstorableText},
	{"EnqueueMany", testEnqueueMany},
	{"ClaimWhileEnqueueing", testClaimWhileEnqueueing},
	{"ClaimTwins", testClaimTwins},
	{"ClaimTwinRace", testClaimTwinRace},
	{"Release", testRelease},
	{"ShutdownStartNotCounted", testShutdownStartNotCounted},
	{"SweepStuckPullQueued", testSweepStuckPullQueued},
	{"DeleteRetiredLockOrder", testDeleteRetiredLockOrder},
	{"LateOutcome", testLateOutcome},
	{"ReenqueueDuringRun", testReenqueueDuringRun},
	{"RetriedCommit", testRetriedCommit},
	{"BusyRow", testBusyRow},
	{"SchemaCheck", testSchemaCheck},
	{"SweepRowError", testSweepRowError},
	{"UnstickNoScheduled", testUnstickNoScheduled},
	{"DeleteRetiredBatches", testDeleteRetiredBatches},
	{"ErrorTexts", testErrorTexts},
	{"InjectedClock", testInjectedClock},
	{"History", testHistory},
	{"Migrations", testMigrations},
	{"WriteNull", testWriteNull},
}

// Run runs the whole suite against h under every config in Configs.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.DB == nil || h.EncodeTime == nil || h.DecodeTime == nil {
		t.Fatalf("storetest: harness %q lacks a hook", h.Name)
	}
	for _, c := range Configs {
		t.Run(ConfigName(c), func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					// Each case has its own database; most of the time is
					// spent creating it, which overlaps well.
					t.Parallel()
					tc.fn(t, newEnv(t, h, c))
				})
			}
		})
	}
}

// env is one test's database: the store under test plus a raw handle.
type env struct {
	t     *testing.T
	h     Harness
	c     testdb.Config
	ctx   context.Context
	store djangodb.Tracker // the store under test, with its step-by-step API
	dsn   string
	db    *sql.DB
}

func newEnv(t *testing.T, h Harness, c testdb.Config) *env {
	t.Helper()
	s, dsn := h.New(t, c)
	// Through a wrapper, as the daemon's tests and observers hold a store.
	tr, err := djangodb.TrackerOf(wrapped{s})
	if err != nil {
		t.Fatalf("TrackerOf(wrapped %T): %v", s, err)
	}
	return &env{t: t, h: h, c: c, ctx: t.Context(), store: tr, dsn: dsn, db: h.DB(t, dsn)}
}

// wrapped is a Store around another, as a fault injector or an observing
// layer would be.
type wrapped struct{ djangodb.Store }

func (w wrapped) Unwrap() djangodb.Store { return w.Store }

// open returns a second store on the same database, with opts.
func (e *env) open(opts djangodb.Options) djangodb.Tracker {
	e.t.Helper()
	s, err := djangodb.Open(e.ctx, e.dsn, opts)
	if err != nil {
		e.t.Fatalf("open second store on %s: %v", djangodb.RedactDSN(e.dsn), err)
	}
	e.t.Cleanup(func() { s.Close() })
	tr, err := djangodb.TrackerOf(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return tr
}

func (e *env) register(identifier string, timeout, timeret float64, maxrestart int) djangodb.TaskType {
	e.t.Helper()
	tt, err := e.store.RegisterType(e.ctx, djangodb.TypeSpec{
		Identifier: identifier, Handler: "tests.handlers." + identifier,
		Timeout: timeout, TimeRet: timeret, MaxRestart: maxrestart,
	})
	if err != nil {
		e.t.Fatalf("register type %s: %v", identifier, err)
	}
	return tt
}

// input returns a valid stored input text for identifier: base64(zlib()) of
// a protocol-2 pickle of the identifier as a unicode string.
func input(identifier string) string {
	p := []byte{0x80, 0x02, 'X'}
	n := len(identifier)
	p = append(p, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	p = append(p, identifier...)
	p = append(p, '.')
	return djangodb.EncodeResponse(p)
}

func (e *env) enqueue(typ, identifier, message string) int64 {
	e.t.Helper()
	id, err := e.store.Enqueue(e.ctx, typ, identifier, input(identifier), message)
	if err != nil {
		e.t.Fatalf("enqueue %s/%s: %v", typ, identifier, err)
	}
	return id
}

// dequeue claims up to limit tasks and fails unless it gets want.
func (e *env) dequeue(limit int, want ...int64) {
	e.t.Helper()
	got, err := e.store.Dequeue(e.ctx, 0x1234, limit, "")
	if err != nil {
		e.t.Fatalf("dequeue %d (want %v): %v", limit, want, err)
	}
	if !slices.Equal(got, want) {
		e.t.Fatalf("dequeue %d = %v, want %v", limit, got, want)
	}
}

// scheduled enqueues an instance and claims it, leaving it SCHEDULED. The
// queue must be otherwise empty.
func (e *env) scheduled(typ, identifier string) int64 {
	e.t.Helper()
	id := e.enqueue(typ, identifier, "")
	e.dequeue(1, id)
	return id
}

// running enqueues, claims and starts an instance.
func (e *env) running(typ, identifier string) int64 {
	e.t.Helper()
	id := e.scheduled(typ, identifier)
	if _, err := e.store.Start(e.ctx, id, ""); err != nil {
		e.t.Fatalf("start %s/%s: %v", typ, identifier, err)
	}
	return id
}

func (e *env) setStatus(id int64, s djangodb.Status, message string) {
	e.t.Helper()
	if err := e.store.SetStatus(e.ctx, id, s, message); err != nil {
		e.t.Fatalf("set instance %d %s: %v", id, s, err)
	}
}

func (e *env) instance(id int64) djangodb.Instance {
	e.t.Helper()
	in, err := e.store.Instance(e.ctx, id)
	if err != nil {
		e.t.Fatalf("instance %d: %v", id, err)
	}
	return in
}

func (e *env) log(id int64) []djangodb.LogRecord {
	e.t.Helper()
	recs, err := e.store.Log(e.ctx, id)
	if err != nil {
		e.t.Fatalf("log of instance %d: %v", id, err)
	}
	return recs
}

// exec runs a statement on the raw handle and returns the rows affected.
func (e *env) exec(query string, args ...any) int64 {
	e.t.Helper()
	res, err := e.db.ExecContext(e.ctx, query, args...)
	if err != nil {
		e.t.Fatalf("exec %q: %v", query, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		e.t.Fatalf("exec %q: rows affected: %v", query, err)
	}
	return n
}

// setTime writes at into a timestamp column of one row, as Django would.
func (e *env) setTime(table, column string, id int64, at time.Time) {
	e.t.Helper()
	q := fmt.Sprintf(`UPDATE %s SET "%s" = $1 WHERE id = $2`, table, column)
	if n := e.exec(q, e.h.EncodeTime(e.c, at), id); n != 1 {
		e.t.Fatalf("set %s.%s of row %d: %d rows updated", table, column, id, n)
	}
}

// age moves an instance's timeUpdate back by d.
func (e *env) age(id int64, d time.Duration) {
	e.t.Helper()
	e.setTime("processes_instance", "timeUpdate", id, time.Now().Add(-d))
}

// claim is the reference daemon's claim of one task row (tracker.dequeueTask):
// it reports whether the row was still waiting.
func (e *env) claim(taskID, server int64, at time.Time) bool {
	e.t.Helper()
	return e.exec(`UPDATE processes_task SET lock = $1, time = $2 WHERE id = $3 AND lock = 0`,
		server, e.h.EncodeTime(e.c, at), taskID) == 1
}

// taskOf returns the one task row of an instance.
func (e *env) taskOf(s Snapshot, instanceID int64) TaskRow {
	e.t.Helper()
	var found []TaskRow
	for _, r := range s.Tasks {
		if r.InstanceID == instanceID {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("instance %d has task rows %+v, want exactly one", instanceID, found)
	}
	return found[0]
}

func isErr(err, target error) bool { return err != nil && errors.Is(err, target) }

// statuses lists the statuses of records.
func statuses(recs []djangodb.LogRecord) []djangodb.Status {
	out := make([]djangodb.Status, len(recs))
	for i, r := range recs {
		out[i] = r.Status
	}
	return out
}

// checkLogTimes asserts what getTaskLog's order by time relies on: records
// in id order have strictly increasing times.
func checkLogTimes(t testing.TB, recs []djangodb.LogRecord) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if !recs[i].Time.After(recs[i-1].Time) || recs[i].ID <= recs[i-1].ID {
			t.Errorf("log records out of order: #%d %v (%s) then #%d %v (%s)",
				recs[i-1].ID, recs[i-1].Time, recs[i-1].Status, recs[i].ID, recs[i].Time, recs[i].Status)
		}
	}
}
