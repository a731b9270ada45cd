package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// Cases for behaviours the two dialects used to differ in, and for the
// store's injected clock.

// refuseUpdates makes the database refuse every UPDATE of an instance row
// for which cond (over OLD and NEW, in the SQL both databases accept)
// holds, as a broken row or a foreign constraint would.
func (e *env) refuseUpdates(cond string) {
	e.t.Helper()
	if e.h.Name == "postgres" {
		e.exec(`CREATE FUNCTION atpd_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'refused by the test'; END $$`)
		e.exec(`CREATE TRIGGER atpd_test_refuse BEFORE UPDATE ON processes_instance
			FOR EACH ROW WHEN (` + cond + `) EXECUTE FUNCTION atpd_test_refuse()`)
		return
	}
	e.exec(`CREATE TRIGGER atpd_test_refuse BEFORE UPDATE ON processes_instance
		WHEN (` + cond + `) BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`)
}

func refIDs(refs []djangodb.InstanceRef) []int64 {
	var ids []int64
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// testSweepRowError: a zombie the sweep cannot write is reported in the
// error and the other zombies are still swept: an operator's one bad row
// must not keep every later task from being recovered.
func testSweepRowError(t *testing.T, e *env) {
	e.register("Z", 60, -1, 2)
	a, b, c := e.running("Z", "a"), e.running("Z", "b"), e.running("Z", "c")
	for _, id := range []int64{a, b, c} {
		e.age(id, time.Hour)
	}
	e.refuseUpdates(fmt.Sprintf("OLD.id = %d", b))
	res, err := e.store.SweepZombies(e.ctx, "msg")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("instance %d", b)) {
		t.Errorf("sweep error = %v, want one naming instance %d", err, b)
	}
	if got := refIDs(res.Reenqueued); !slices.Equal(got, []int64{a, c}) || len(res.Failed) != 0 {
		t.Errorf("sweep = %+v, want %d and %d re-enqueued", res, a, c)
	}
	if in := e.instance(b); in.Status != djangodb.Running {
		t.Errorf("refused instance is %s, want it left RUNNING", in.Status)
	}
}

// testUnstickNoScheduled: recovering a stuck claimed row writes ACCEPTED
// and a new waiting row only. The tracker's bare UPDATE to SCHEDULED
// before its re-enqueue leaves no row behind (no log record, timeUpdate
// overwritten), so the store does not write it at all; here the database
// refuses it.
func testUnstickNoScheduled(t *testing.T, e *env) {
	e.register("Z", 3600, -1, 2)
	id := e.enqueue("Z", "stuck", "")
	if !e.claim(e.taskOf(e.dump(), id).ID, 0x5678, time.Now().Add(-djangodb.PullTimeout-time.Minute)) {
		t.Fatal("claim failed")
	}
	e.refuseUpdates(fmt.Sprintf("NEW.status = %d", djangodb.Scheduled))
	res, err := e.store.SweepZombies(e.ctx, "msg")
	if err != nil || !slices.Equal(refIDs(res.Unstuck), []int64{id}) {
		t.Fatalf("sweep = %+v, %v; want instance %d unstuck", res, err, id)
	}
	if got := statuses(e.log(id)); !slices.Equal(got, []djangodb.Status{djangodb.Accepted, djangodb.Accepted}) {
		t.Errorf("log %v, want ACCEPTED twice", got)
	}
}

// testDeleteRetiredBatches: retirement deletes in bounded transactions
// (500 instances each on both databases) and reports every instance, in
// id order.
func testDeleteRetiredBatches(t *testing.T, e *env) {
	e.register("R", 60, 10, 2)
	tasks := make([]djangodb.NewTask, 1001)
	for i := range tasks {
		tasks[i] = djangodb.NewTask{Identifier: fmt.Sprint("r", i), Input: input("r")}
	}
	// A longer lock wait, which on SQLite lengthens the call timeout with
	// it: under -race on a loaded machine, enqueueing 1,001 tasks in one
	// transaction outlasted the default one (20 s).
	opts := testdb.Options(e.c)
	opts.BusyTimeout = time.Minute
	s := e.open(opts)
	ids, err := djangodb.EnqueueMany(e.ctx, s, "R", tasks, "")
	if err != nil {
		t.Fatal(err)
	}
	e.exec(`DELETE FROM processes_task`)
	e.exec(`UPDATE processes_instance SET status = 5, "timeUpdate" = $1`, e.h.EncodeTime(e.c, time.Now().Add(-time.Hour)))
	refs, err := s.DeleteRetired(e.ctx)
	if err != nil || len(refs) != len(ids) || !slices.IsSortedFunc(refs, func(a, b djangodb.InstanceRef) int { return int(a.ID - b.ID) }) ||
		!slices.Equal(refIDs(refs), ids) {
		t.Fatalf("DeleteRetired = %d refs, %v; want all %d in id order", len(refs), err, len(ids))
	}
	if s := e.dump(); len(s.Instances)+len(s.Logs)+len(s.Inputs) != 0 {
		t.Errorf("%d instances, %d log records, %d inputs left", len(s.Instances), len(s.Logs), len(s.Inputs))
	}
}

// testErrorTexts: both databases word their errors alike.
func testErrorTexts(t *testing.T, e *env) {
	e.register("T", 60, -1, 2)
	opts := testdb.Options(e.c)
	opts.MaxQueueSize = 1
	s := e.open(opts)
	if _, err := s.Claim(e.ctx, 1, 1, ""); err == nil || err.Error() != "djangodb: claim for server 0x0000000000000001: queue empty" {
		t.Errorf("claim on an empty queue: %v", err)
	}
	e.enqueue("T", "a", "")
	if _, err := s.Enqueue(e.ctx, "T", "b", "", ""); err == nil || err.Error() != "djangodb: enqueue T::b: queue full (1 tasks waiting, limit 1)" {
		t.Errorf("enqueue on a full queue: %v", err)
	}
	if err := s.UnregisterType(e.ctx, "T", false); err == nil || err.Error() != "djangodb: unregister type T: type has instances (1 instances)" {
		t.Errorf("unregister a type in use: %v", err)
	}
}

// testInjectedClock: the timestamps and the sweep's notion of now come
// from Options.Clock, one tick apart at least whatever the clock says.
// The clock stands just before Vienna's spring-forward gap and moves past
// it: the timeout is measured in real time across a DST change.
func testInjectedClock(t *testing.T, e *env) {
	e.register("C", 60, -1, 2)
	t0 := time.Date(2030, 3, 31, 0, 59, 30, 0, time.UTC) // 01:59:30 CET, the gap starts at 02:00
	clock := &ScriptClock{t: t0}
	opts := testdb.Options(e.c)
	opts.Clock = clock
	s := e.open(opts)
	id, err := s.Enqueue(e.ctx, "C", "c", input("c"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(e.ctx, 1, 1, ""); err != nil {
		t.Fatal(err)
	}
	recs := e.log(id)
	checkLogTimes(t, recs)
	if len(recs) != 3 || !recs[0].Time.Equal(t0.Add(time.Microsecond)) || !recs[2].Time.Before(t0.Add(time.Millisecond)) {
		t.Errorf("log %+v, want three records from %v (the clock plus a tick) on", recs, t0)
	}
	if res, err := s.SweepZombies(e.ctx, "msg"); err != nil || len(res.Reenqueued) != 0 {
		t.Errorf("sweep before the timeout = %+v, %v", res, err)
	}
	clock.Set(t0.Add(61 * time.Second)) // 03:00:31 CEST
	if res, err := s.SweepZombies(e.ctx, "msg"); err != nil || !slices.Equal(refIDs(res.Reenqueued), []int64{id}) {
		t.Errorf("sweep after the timeout = %+v, %v; want %d re-enqueued", res, err, id)
	}
	in := e.instance(id)
	if d := in.TimeUpdate.Sub(t0.Add(61 * time.Second)); d < 0 || d > time.Millisecond || in.Status != djangodb.Accepted {
		t.Errorf("instance %+v, want ACCEPTED at the clock's time", in)
	}
}
