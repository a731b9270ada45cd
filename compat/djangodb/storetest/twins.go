package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Cases for one instance holding two waiting task rows ("twins"), which
// must never lead to two runs of it, and for the daemon's conditional
// release of its own run.

// addWaitingRow inserts one more waiting task row for an instance, as a
// second re-enqueue by a producer or a sweep would.
func (e *env) addWaitingRow(id int64) {
	e.t.Helper()
	e.exec(`INSERT INTO processes_task (instance_id, time, lock) VALUES ($1, $2, 0)`, id, e.h.EncodeTime(e.c, time.Now()))
}

// claimers runs the case body once through Dequeue and once through Claim.
var claimers = []struct {
	name   string
	status djangodb.Status // what the claim leaves
	claim  func(e *env, limit int) ([]int64, error)
}{
	{"Dequeue", djangodb.Scheduled, func(e *env, limit int) ([]int64, error) {
		return e.store.Dequeue(e.ctx, 0x1234, limit, "")
	}},
	{"Claim", djangodb.Running, func(e *env, limit int) ([]int64, error) {
		sts, err := e.store.Claim(e.ctx, 0x1234, limit, "")
		return startedIDs(sts), err
	}},
}

// testClaimTwins: a twin row of an instance another claimer scheduled or
// started is dropped without touching the instance, a waiting row of an
// instance that ended is claimed (a producer asked for another run), and
// claiming an instance drops all its other waiting rows.
func testClaimTwins(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	for n, cl := range claimers {
		t.Run(cl.name, func(t *testing.T) {
			for _, taken := range []djangodb.Status{djangodb.Scheduled, djangodb.Running} {
				t.Run("twin of "+taken.String(), func(t *testing.T) {
					e.exec(`DELETE FROM processes_task`)
					id := e.enqueue("Q", fmt.Sprintf("t%d-%s", n, taken), "")
					e.exec(`UPDATE processes_instance SET status = $1 WHERE id = $2`, int(taken), id)
					before := e.shapeOf(e.dump(), id)
					got, err := cl.claim(e, 4)
					if !isErr(err, djangodb.ErrQueueEmpty) {
						t.Fatalf("%s of a %s instance's twin row = %v, %v; want ErrQueueEmpty", cl.name, taken, got, err)
					}
					after := e.shapeOf(e.dump(), id)
					if after.Status != int64(taken) || !slices.Equal(after.Logs, before.Logs) || len(after.Tasks) != 0 {
						t.Errorf("%s instance after the claim of its twin: %+v, want %+v without task rows", taken, after, before)
					}
				})
			}
			for _, ended := range []djangodb.Status{djangodb.Finished, djangodb.Failed} {
				t.Run("row of "+ended.String(), func(t *testing.T) {
					e.exec(`DELETE FROM processes_task`)
					id := e.enqueue("Q", fmt.Sprintf("e%d-%s", n, ended), "")
					e.exec(`UPDATE processes_instance SET status = $1 WHERE id = $2`, int(ended), id)
					got, err := cl.claim(e, 4)
					if err != nil || !slices.Equal(got, []int64{id}) {
						t.Fatalf("%s of a %s instance's waiting row = %v, %v; want [%d]", cl.name, ended, got, err, id)
					}
					if sh := e.shapeOf(e.dump(), id); sh.Status != int64(cl.status) || len(sh.Tasks) != 0 {
						t.Errorf("%s instance after its claim: %+v, want %s without task rows", ended, sh, cl.status)
					}
				})
			}
			t.Run("all rows of a claimed instance go", func(t *testing.T) {
				e.exec(`DELETE FROM processes_task`)
				a := e.enqueue("Q", fmt.Sprintf("a%d", n), "")
				b := e.enqueue("Q", fmt.Sprintf("b%d", n), "")
				e.addWaitingRow(a)
				got, err := cl.claim(e, 1)
				if err != nil || !slices.Equal(got, []int64{a}) {
					t.Fatalf("%s 1 = %v, %v; want [%d]", cl.name, got, err, a)
				}
				s := e.dump()
				if sh := e.shapeOf(s, a); sh.Status != int64(cl.status) || len(sh.Tasks) != 0 {
					t.Errorf("claimed instance: %+v, want %s without task rows", sh, cl.status)
				}
				if sh := e.shapeOf(s, b); sh.Status != int64(djangodb.Accepted) || !slices.Equal(sh.Tasks, []int64{0}) {
					t.Errorf("next instance: %+v, want ACCEPTED with its waiting row", sh)
				}
				// The next call gets b, not a again.
				got, err = cl.claim(e, 4)
				if err != nil || !slices.Equal(got, []int64{b}) {
					t.Errorf("second %s = %v, %v; want [%d]", cl.name, got, err, b)
				}
			})
		})
	}
}

// testClaimTwinRace: a claimer whose twin row's instance is being started by
// another transaction waits for it and then leaves the instance alone
// (PostgreSQL under READ COMMITTED must re-check the committed status).
// SQLite serialises writers, so there the other claim simply comes first.
func testClaimTwinRace(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	for n, cl := range claimers {
		t.Run(cl.name, func(t *testing.T) {
			e.exec(`DELETE FROM processes_task`)
			id := e.enqueue("Q", fmt.Sprintf("r%d", n), "")
			before := e.shapeOf(e.dump(), id)
			ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
			defer cancel()
			other, err := e.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Rollback()
			// The other claimer took the first row and starts the instance.
			if _, err := other.ExecContext(ctx, `DELETE FROM processes_task WHERE instance_id = $1`, id); err != nil {
				t.Fatal(err)
			}
			if _, err := other.ExecContext(ctx, `UPDATE processes_instance SET status = 3 WHERE id = $1`, id); err != nil {
				t.Fatal(err)
			}
			// Our claimer sees the twin row the other has not deleted yet
			// (it was inserted before and is not locked by the other).
			e.addWaitingRowTx(ctx, other, id)
			if e.h.Name != "postgres" {
				if err := other.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			var got []int64
			go func() {
				var err error
				got, err = cl.claim(e, 4)
				done <- err
			}()
			if e.h.Name == "postgres" {
				e.awaitLockWait(t, ctx)
				if err := other.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			if err := <-done; !isErr(err, djangodb.ErrQueueEmpty) {
				t.Fatalf("%s beside a concurrent start = %v, %v; want ErrQueueEmpty", cl.name, got, err)
			}
			after := e.shapeOf(e.dump(), id)
			if after.Status != int64(djangodb.Running) || !slices.Equal(after.Logs, before.Logs) || len(after.Tasks) != 0 {
				t.Errorf("instance after both claims: %+v, want RUNNING with log %v and no task rows", after, before.Logs)
			}
		})
	}
}

// addWaitingRowTx commits a twin waiting row from its own connection, so
// that it is visible to the claimer while other is still open.
func (e *env) addWaitingRowTx(ctx context.Context, other *sql.Tx, id int64) {
	e.t.Helper()
	if e.h.Name == "postgres" {
		e.addWaitingRow(id)
		return
	}
	// SQLite: the open transaction holds the write lock; write in it.
	if _, err := other.ExecContext(ctx, `INSERT INTO processes_task (instance_id, time, lock) VALUES ($1, $2, 0)`,
		id, e.h.EncodeTime(e.c, time.Now())); err != nil {
		e.t.Fatal(err)
	}
}

// awaitLockWait returns once some PostgreSQL backend waits for a row lock.
func (e *env) awaitLockWait(t *testing.T, ctx context.Context) {
	t.Helper()
	for {
		var waiting bool
		err := e.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE NOT l.granted AND a.datname = current_database())`).Scan(&waiting)
		if err != nil {
			t.Fatalf("await a lock wait: %v", err)
		}
		if waiting {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("no backend waited for a lock")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// testRelease: the daemon's conditional release writes only while the run is
// still its own, and at most once.
func testRelease(t *testing.T, e *env) {
	e.register("R", 60, -1, 5)
	tests := []struct {
		name   string
		setup  func(id int64) // the instance is RUNNING after one start
		starts int
		to     djangodb.Status
		wrote  bool
		want   func(before shape) shape
	}{
		{"re-enqueue", nil, 1, djangodb.Accepted, true, func(b shape) shape {
			b.Status, b.Logs, b.Tasks = 1, append(b.Logs, "1:bye"), []int64{0}
			return b
		}},
		{"fail", nil, 1, djangodb.Failed, true, func(b shape) shape {
			b.Status, b.Logs = 6, append(b.Logs, "6:bye")
			return b
		}},
		{"paused", func(id int64) { e.setStatus(id, djangodb.Paused, "") }, 1, djangodb.Accepted, true, func(b shape) shape {
			b.Status, b.Logs, b.Tasks = 1, append(b.Logs, "1:bye"), []int64{0}
			return b
		}},
		{"started again since", func(id int64) {
			if err := e.store.Reenqueue(e.ctx, id, ""); err != nil {
				t.Fatal(err)
			}
			e.claimAll(1, "")
		}, 1, djangodb.Accepted, false, nil},
		{"re-enqueued by a sweep", func(id int64) {
			if err := e.store.Reenqueue(e.ctx, id, djangodb.MsgZombieReenqueued); err != nil {
				t.Fatal(err)
			}
		}, 1, djangodb.Failed, false, nil},
		{"finished", func(id int64) { e.setStatus(id, djangodb.Finished, "") }, 1, djangodb.Accepted, false, nil},
		{"has a waiting row", func(id int64) { e.addWaitingRow(id) }, 1, djangodb.Accepted, false, nil},
	}
	for n, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.exec(`DELETE FROM processes_task`)
			e.enqueue("R", fmt.Sprintf("r%d", n), "")
			sts := e.claimAll(1, "")
			if len(sts) != 1 || sts[0].Starts != 1 {
				t.Fatalf("claim = %+v, want one task's first start", sts)
			}
			id := sts[0].InstanceID
			if tc.setup != nil {
				tc.setup(id)
			}
			before := e.shapeOf(e.dump(), id)
			want := before
			if tc.want != nil {
				want = tc.want(before)
			}
			for attempt := 1; attempt <= 2; attempt++ {
				wrote, err := e.store.Release(e.ctx, id, tc.starts, tc.to, "bye")
				if err != nil {
					t.Fatalf("release #%d: %v", attempt, err)
				}
				if wantWrote := tc.wrote && attempt == 1; wrote != wantWrote {
					t.Errorf("release #%d wrote = %t, want %t", attempt, wrote, wantWrote)
				}
				if got := e.shapeOf(e.dump(), id); !reflect.DeepEqual(got, want) {
					t.Errorf("after release #%d: %+v\nwant %+v", attempt, got, want)
				}
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		if _, err := e.store.Release(e.ctx, 2_000_000_000, 1, djangodb.Accepted, ""); !isErr(err, djangodb.ErrNotFound) {
			t.Errorf("release of a missing instance: %v, want ErrNotFound", err)
		}
		e.exec(`DELETE FROM processes_task`)
		id := e.running("R", "bad-to")
		before := e.dump()
		for _, to := range []djangodb.Status{djangodb.Finished, djangodb.Running, djangodb.Status(42)} {
			if wrote, err := e.store.Release(e.ctx, id, 1, to, ""); err == nil || wrote || errors.Is(err, djangodb.ErrNotFound) {
				t.Errorf("release to %s = %t, %v; want an error", to, wrote, err)
			}
		}
		if !reflect.DeepEqual(e.dump(), before) {
			t.Error("a rejected release changed rows")
		}
	})
}

// testShutdownStartNotCounted: a start ended by a shutdown's re-enqueue does
// not count toward maxstart, in Start, Claim and the zombie sweep.
func testShutdownStartNotCounted(t *testing.T, e *env) {
	e.register("S", 60, -1, 1) // maxstart 2
	id := e.running("S", "s")  // start 1
	release := func(starts int, message string) {
		t.Helper()
		if wrote, err := e.store.Release(e.ctx, id, starts, djangodb.Accepted, message); err != nil || !wrote {
			t.Fatalf("release after start %d = %t, %v", starts, wrote, err)
		}
	}
	release(1, djangodb.MsgShutdownReenqueue)
	// Through Dequeue and Start: still the first counted start.
	e.dequeue(1, id)
	st, err := e.store.Start(e.ctx, id, "")
	if err != nil || st.Starts != 1 {
		t.Fatalf("start after a shutdown = %d starts, %v; want 1 (log %v)", st.Starts, err, statuses(e.log(id)))
	}
	release(1, djangodb.MsgShutdownReenqueue)
	// Through Claim: the same count.
	sts := e.claimAll(1, "")
	if len(sts) != 1 || sts[0].Starts != 1 {
		t.Fatalf("claim after two shutdowns = %+v, want 1 start", sts)
	}
	// Timed out: with one counted start of two, the sweep re-enqueues.
	e.age(id, 2*time.Minute)
	res, err := e.store.SweepZombies(e.ctx, djangodb.MsgZombieReenqueued)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Reenqueued) != 1 || res.Reenqueued[0].ID != id || len(res.Failed) != 0 {
		t.Fatalf("sweep = %+v, want instance %d re-enqueued (shutdowns are not starts)", res, id)
	}
	// Any other re-enqueue does count: the next start is the second.
	sts = e.claimAll(1, "")
	if len(sts) != 1 || sts[0].Starts != 2 {
		t.Fatalf("claim after a timeout = %+v, want 2 starts", sts)
	}
}

// testSweepStuckPullQueued: recovering a stuck claimed row of an instance
// that already waits again adds no second waiting row.
func testSweepStuckPullQueued(t *testing.T, e *env) {
	e.register("Z", 3600, -1, 2)
	id := e.enqueue("Z", "queued", "")
	e.exec(`INSERT INTO processes_task (instance_id, time, lock) VALUES ($1, $2, 777)`,
		id, e.h.EncodeTime(e.c, time.Now().Add(-djangodb.PullTimeout-time.Minute)))
	before := e.shapeOf(e.dump(), id)
	if _, err := e.store.SweepZombies(e.ctx, "msg"); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	after := e.shapeOf(e.dump(), id)
	if !slices.Equal(after.Tasks, []int64{0}) || after.Status != int64(djangodb.Accepted) || !slices.Equal(after.Logs, before.Logs) {
		t.Errorf("after the sweep: %+v (before %+v), want one waiting row and the log unchanged", after, before)
	}
}

// testDeleteRetiredLockOrder: retirement locks a task row before its
// instance, as claims do. A transaction holding a retired instance's task
// row and then asking for the instance must get it at once (PostgreSQL;
// SQLite has no row locks).
func testDeleteRetiredLockOrder(t *testing.T, e *env) {
	if e.h.Name != "postgres" {
		t.Skip("row lock order is a PostgreSQL matter")
	}
	e.register("D", 60, 10, 2)
	id := e.running("D", "old")
	e.setStatus(id, djangodb.Finished, "")
	e.age(id, time.Minute)
	e.addWaitingRow(id) // a stray row, held by a claimer below
	task := e.taskOf(e.dump(), id)
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	claimer, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer claimer.Rollback()
	if _, err := claimer.ExecContext(ctx, `SELECT id FROM processes_task WHERE id = $1 FOR UPDATE`, task.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.store.DeleteRetired(e.ctx)
		done <- err
	}()
	e.awaitLockWait(t, ctx)
	// Shorter than deadlock_timeout: a retirement holding the instance
	// row makes this fail instead of being resolved as a deadlock.
	if _, err := claimer.ExecContext(ctx, `SET LOCAL lock_timeout = '500ms'`); err != nil {
		t.Fatal(err)
	}
	if _, err := claimer.ExecContext(ctx, `SELECT id FROM processes_instance WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatalf("claimer holding a task row could not lock its instance during retirement: %v", err)
	}
	if err := claimer.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("delete retired: %v", err)
	}
}
