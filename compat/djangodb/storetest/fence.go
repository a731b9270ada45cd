package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Cases for the fence on a run's writes (Completion.Fence): an outcome
// that arrives after its run lost the instance is dropped, whoever took
// it, and a retried commit does not write twice.

func (e *env) reenqueue(id int64, message string) {
	e.t.Helper()
	if err := e.store.Reenqueue(e.ctx, id, message); err != nil {
		e.t.Fatalf("reenqueue instance %d: %v", id, err)
	}
}

// claimOne claims the one waiting task and returns it.
func (e *env) claimOne(want int64) djangodb.StartedTask {
	e.t.Helper()
	sts := e.claimAll(1, "")
	if len(sts) != 1 || sts[0].InstanceID != want {
		e.t.Fatalf("claim = %+v, want instance %d", sts, want)
	}
	return sts[0]
}

// completeRes runs one completion and returns its result.
func (e *env) completeRes(c djangodb.Completion) djangodb.CompletionResult {
	e.t.Helper()
	res, err := e.store.Complete(e.ctx, []djangodb.Completion{c})
	if err != nil || len(res) != 1 {
		e.t.Fatalf("complete %+v = %+v, %v", c, res, err)
	}
	return res[0]
}

func (e *env) wantDiscarded(r djangodb.CompletionResult, reason string) {
	e.t.Helper()
	if !isErr(r.Err, djangodb.ErrNotOwned) || r.Discarded != reason || r.Wrote {
		e.t.Errorf("late completion of instance %d: %+v (err %v); want discarded as %q", r.InstanceID, r, r.Err, reason)
	}
}

// logShape renders an instance's log as "status:message" strings.
func (e *env) logShape(id int64) []string {
	e.t.Helper()
	var out []string
	for _, r := range e.log(id) {
		out = append(out, fmt.Sprintf("%d:%s", r.Status, r.Message))
	}
	return out
}

// testLateOutcome (exactly-once fault 1): run A's outcome, delayed past the
// type's timeout, arrives after a sweep re-enqueued the task (dropped as
// requeued) or after run B started it (dropped as restarted); B's outcome
// is the one that lands.
func testLateOutcome(t *testing.T, e *env) {
	e.register("Late", 60, -1, 2)
	for _, restarted := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarted=%t", restarted), func(t *testing.T) {
			id := e.enqueue("Late", fmt.Sprintf("late-%t", restarted), "")
			a := e.claimOne(id)
			e.age(id, 2*time.Hour)
			if res, err := e.store.SweepZombies(e.ctx, djangodb.MsgZombieReenqueued); err != nil || len(res.Reenqueued) != 1 {
				t.Fatalf("sweep = %+v, %v; want instance %d re-enqueued", res, err, id)
			}
			var b djangodb.StartedTask
			if restarted {
				b = e.claimOne(id)
			}
			late := djangodb.Completion{InstanceID: id, Starts: a.Starts, Outcome: djangodb.OutcomeFinish,
				Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Running, "A 90%"), djangodb.ResponseWrite([]byte("A"), "text/plain")}}
			before := e.logShape(id)
			r := e.completeRes(late)
			if restarted {
				e.wantDiscarded(r, djangodb.DiscardRestarted)
			} else {
				e.wantDiscarded(r, djangodb.DiscardRequeued)
			}
			if got := e.logShape(id); !slices.Equal(got, before) {
				t.Errorf("log after the late outcome %v, was %v", got, before)
			}
			if _, err := e.store.Response(e.ctx, id); !isErr(err, djangodb.ErrNotFound) {
				t.Errorf("response after the late outcome: %v; want none", err)
			}
			if !restarted {
				b = e.claimOne(id)
			}
			if b.Starts != a.Starts+1 {
				t.Errorf("run B start %d, run A %d", b.Starts, a.Starts)
			}
			r = e.completeRes(djangodb.Completion{InstanceID: id, Starts: b.Starts, Outcome: djangodb.OutcomeFinish,
				Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("B"), "text/plain")}})
			if r.Err != nil || !r.Wrote || r.Status != djangodb.Finished {
				t.Errorf("run B's outcome: %+v", r)
			}
			if resp, err := e.store.Response(e.ctx, id); err != nil || string(resp.Data) != "B" {
				t.Errorf("response = %q, %v; want run B's", resp.Data, err)
			}
			// A's outcome, retried once more after B finished: still A's.
			e.wantDiscarded(e.completeRes(late), djangodb.DiscardRestarted)
		})
	}
}

// testReenqueueDuringRun (exactly-once fault 2): a producer re-enqueues a
// task while it runs; the run's outcome is dropped, the waiting row stays
// and the next claim runs the task again, as the reference daemon does.
// A waiting row of an instance that ended is a request to run it again too.
func testReenqueueDuringRun(t *testing.T, e *env) {
	e.register("Again", 60, -1, 2)
	id := e.enqueue("Again", "again", "")
	a := e.claimOne(id)
	e.reenqueue(id, "run it again")
	e.wantDiscarded(e.completeRes(djangodb.Completion{InstanceID: id, Starts: a.Starts, Outcome: djangodb.OutcomeFinish}), djangodb.DiscardRequeued)
	if in := e.instance(id); in.Status != djangodb.Accepted {
		t.Fatalf("status after the dropped outcome %s, want ACCEPTED", in.Status)
	}
	b := e.claimOne(id)
	if b.Starts != 2 {
		t.Errorf("second run's start %d, want 2", b.Starts)
	}
	if r := e.completeRes(djangodb.Completion{InstanceID: id, Starts: b.Starts, Outcome: djangodb.OutcomeFinish}); r.Err != nil || !r.Wrote {
		t.Fatalf("second run's outcome: %+v", r)
	}
	// Re-enqueued once FINISHED: claimed and run a third time.
	e.reenqueue(id, "and again")
	c := e.claimOne(id)
	if c.Starts != 3 {
		t.Errorf("third run's start %d, want 3", c.Starts)
	}
	want := []string{"1:", "2:", "3:", "1:run it again", "2:", "3:", "5:", "1:and again", "2:", "3:"}
	if got := e.logShape(id); !slices.Equal(got, want) {
		t.Errorf("log %v, want %v", got, want)
	}
}

// testRetriedCommit (exactly-once fault 6): Complete committed but its
// acknowledgement was lost; the same completion sent again writes nothing.
func testRetriedCommit(t *testing.T, e *env) {
	e.register("Retry", 60, -1, 2)
	id := e.enqueue("Retry", "retry", "")
	a := e.claimOne(id)
	c := djangodb.Completion{InstanceID: id, Starts: a.Starts, Outcome: djangodb.OutcomeFinish, Writes: []djangodb.Write{
		djangodb.StatusWrite(djangodb.Paused, "p"), djangodb.ResponseWrite([]byte("r"), "text/plain"),
		djangodb.StatusWrite(djangodb.Running, "r")}}
	if r := e.completeRes(c); r.Err != nil || !r.Wrote {
		t.Fatalf("first commit: %+v", r)
	}
	first := e.logShape(id)
	e.wantDiscarded(e.completeRes(c), djangodb.DiscardEnded)
	if got := e.logShape(id); !slices.Equal(got, first) {
		t.Errorf("log after the retry %v, want %v", got, first)
	}
	want := []string{"1:", "2:", "3:", "4:p", "3:r", "5:"}
	if !slices.Equal(first, want) {
		t.Errorf("log %v, want %v", first, want)
	}
}

// testBusyRow (exactly-once fault 5): a transaction holding one
// instance's row does not keep the other tasks' outcomes from being
// written, nor makes Complete wait for it; the held one is reported busy
// and lands when retried after the lock is gone. SQLite locks the whole
// file for a writer, so no single row can be held there.
func testBusyRow(t *testing.T, e *env) {
	if e.h.Name != "postgres" {
		t.Skip("SQLite has no row locks: a writer holds the whole file")
	}
	e.register("Busy", 60, -1, 2)
	held := e.enqueue("Busy", "held", "")
	free := e.enqueue("Busy", "free", "")
	sts := e.claimAll(2, "")
	if len(sts) != 2 {
		t.Fatalf("claim = %+v", sts)
	}
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	other, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.ExecContext(ctx, `SELECT id FROM processes_instance WHERE id = $1 FOR UPDATE`, held); err != nil {
		t.Fatal(err)
	}
	cs := []djangodb.Completion{
		{InstanceID: held, Starts: 1, Outcome: djangodb.OutcomeFinish},
		{InstanceID: free, Starts: 1, Outcome: djangodb.OutcomeFinish},
	}
	res, err := e.store.Complete(ctx, cs)
	if err != nil {
		t.Fatalf("complete beside a held row: %v", err)
	}
	if !isErr(res[0].Err, djangodb.ErrBusy) || res[0].Wrote {
		t.Errorf("held instance: %+v (%v); want ErrBusy", res[0], res[0].Err)
	}
	if res[1].Err != nil || !res[1].Wrote {
		t.Errorf("free instance: %+v; want FINISHED", res[1])
	}
	if err := other.Rollback(); err != nil {
		t.Fatal(err)
	}
	if r := e.completeRes(cs[0]); r.Err != nil || !r.Wrote {
		t.Errorf("held instance retried after the lock: %+v", r)
	}
}

// testSchemaCheck: a Django-migrated database passes the schema check; one
// whose tables were partly dropped or altered is named exactly, and
// Migrate refuses to call it migrated.
func testSchemaCheck(t *testing.T, e *env) {
	if err := djangodb.CheckSchema(e.ctx, e.store); err != nil {
		t.Fatalf("schema of a migrated database: %v", err)
	}
	e.exec(`DROP TABLE processes_response`)
	e.exec(`ALTER TABLE processes_task DROP COLUMN "lock"`)
	err := djangodb.CheckSchema(e.ctx, e.store)
	if !isErr(err, djangodb.ErrSchema) || !strings.Contains(err.Error(), "missing table processes_response; processes_task columns lock") {
		t.Errorf("schema check of a partial database = %v", err)
	}
	if created, err := e.store.Migrate(e.ctx); created || !isErr(err, djangodb.ErrSchema) || !strings.Contains(err.Error(), "table processes_response") {
		t.Errorf("Migrate on a partial database = %t, %v; want an error naming what is missing", created, err)
	}
}
