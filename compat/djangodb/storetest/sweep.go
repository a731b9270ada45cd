package storetest

import (
	"cmp"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// startedN runs an instance through n starts, re-enqueueing between them as
// the zombie sweep would, and leaves it RUNNING. The queue must be empty.
func (e *env) startedN(typ, identifier string, n int) int64 {
	e.t.Helper()
	id := e.running(typ, identifier)
	for range n - 1 {
		if err := e.store.Reenqueue(e.ctx, id, ""); err != nil {
			e.t.Fatal(err)
		}
		e.dequeue(1, id)
		if _, err := e.store.Start(e.ctx, id, ""); err != nil {
			e.t.Fatal(err)
		}
	}
	return id
}

func sortRefs(refs []djangodb.InstanceRef) []djangodb.InstanceRef {
	refs = slices.Clone(refs)
	slices.SortFunc(refs, func(a, b djangodb.InstanceRef) int { return cmp.Compare(a.ID, b.ID) })
	return refs
}

func testSweepZombies(t *testing.T, e *env) {
	e.register("Z", 60, -1, 2) // maxstart 3
	e.register("One", 60, -1, 0)
	const old = 2 * time.Hour

	type outcome int
	const (
		untouched outcome = iota
		reenqueued
		failed
	)
	tests := []struct {
		name   string
		setup  func() int64
		want   outcome
		starts int // for failed: the starts in the message
		max    int
	}{
		{"running timed out", func() int64 { id := e.running("Z", "running"); e.age(id, old); return id }, reenqueued, 0, 0},
		{"scheduled timed out", func() int64 { id := e.scheduled("Z", "scheduled"); e.age(id, old); return id }, reenqueued, 0, 0},
		{"paused timed out", func() int64 {
			id := e.running("Z", "paused")
			e.setStatus(id, djangodb.Paused, "")
			e.age(id, old)
			return id
		}, reenqueued, 0, 0},
		{"second start timed out", func() int64 { id := e.startedN("Z", "second", 2); e.age(id, old); return id }, reenqueued, 0, 0},
		{"third start timed out", func() int64 { id := e.startedN("Z", "third", 3); e.age(id, old); return id }, failed, 3, 3},
		{"only start timed out", func() int64 { id := e.running("One", "only"); e.age(id, old); return id }, failed, 1, 1},
		{"running within timeout", func() int64 { id := e.running("Z", "fresh"); e.age(id, 50*time.Second); return id }, untouched, 0, 0},
		{"finished long ago", func() int64 {
			id := e.running("Z", "finished")
			e.setStatus(id, djangodb.Finished, "")
			e.age(id, old)
			return id
		}, untouched, 0, 0},
		{"failed long ago", func() int64 {
			id := e.running("Z", "failed")
			e.setStatus(id, djangodb.Failed, "")
			e.age(id, old)
			return id
		}, untouched, 0, 0},
		// Last: it stays in the queue, which the helpers above need empty.
		{"waiting long", func() int64 { id := e.enqueue("Z", "waiting", ""); e.age(id, old); return id }, untouched, 0, 0},
	}
	ids := make([]int64, len(tests))
	for i, tc := range tests {
		ids[i] = tc.setup()
	}
	before := e.dump()
	res, err := e.store.SweepZombies(e.ctx, djangodb.MsgZombieReenqueued)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	after := e.dump()

	var wantRe, wantFailed []djangodb.InstanceRef
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := ids[i]
			in := e.instance(id)
			ref := djangodb.InstanceRef{ID: id, Type: in.Type, Identifier: in.Identifier}
			prev, _ := before.instanceRow(id)
			row, _ := after.instanceRow(id)
			logs := after.logsOf(id)
			last := logs[len(logs)-1]
			var tasks []TaskRow
			for _, r := range after.Tasks {
				if r.InstanceID == id {
					tasks = append(tasks, r)
				}
			}
			switch tc.want {
			case untouched:
				if row != prev || !reflect.DeepEqual(logs, before.logsOf(id)) {
					t.Errorf("instance changed: %+v -> %+v, log %+v", prev, row, logs)
				}
			case reenqueued:
				wantRe = append(wantRe, ref)
				if row.Status != int64(djangodb.Accepted) || last.Status != int64(djangodb.Accepted) || last.Message != djangodb.MsgZombieReenqueued {
					t.Errorf("instance %+v last log %+v, want ACCEPTED %q", row, last, djangodb.MsgZombieReenqueued)
				}
				if len(tasks) != 1 || tasks[0].Lock != 0 || !tasks[0].Time.After(last.Time) || !last.Time.After(row.TimeUpdate) {
					t.Errorf("task rows %+v, log time %v, timeUpdate %v: want one waiting row after the log record after the update", tasks, last.Time, row.TimeUpdate)
				}
			case failed:
				wantFailed = append(wantFailed, ref)
				msg := djangodb.MaxStartsMessage(tc.starts, tc.max)
				if row.Status != int64(djangodb.Failed) || last.Status != int64(djangodb.Failed) || last.Message != msg {
					t.Errorf("instance %+v last log %+v, want FAILED %q", row, last, msg)
				}
				if len(tasks) != 0 {
					t.Errorf("failed zombie has task rows %+v", tasks)
				}
			}
		})
	}
	if got := sortRefs(res.Reenqueued); !reflect.DeepEqual(got, wantRe) {
		t.Errorf("Reenqueued = %v, want %v", got, wantRe)
	}
	if got := sortRefs(res.Failed); !reflect.DeepEqual(got, wantFailed) {
		t.Errorf("Failed = %v, want %v", got, wantFailed)
	}
	if len(res.Unstuck) != 0 {
		t.Errorf("Unstuck = %v, want none", res.Unstuck)
	}

	again, err := e.store.SweepZombies(e.ctx, djangodb.MsgZombieReenqueued)
	if err != nil || len(again.Reenqueued)+len(again.Failed)+len(again.Unstuck) != 0 {
		t.Errorf("second sweep = %+v, %v; want nothing to do", again, err)
	}
}

func testSweepStuckPull(t *testing.T, e *env) {
	e.register("Z", 3600, -1, 2)
	stuck := e.enqueue("Z", "stuck", "")
	fresh := e.enqueue("Z", "fresh", "")
	s := e.dump()
	stuckTask, freshTask := e.taskOf(s, stuck), e.taskOf(s, fresh)
	// A daemon claimed both rows and died before processing them.
	if !e.claim(stuckTask.ID, 0x5678, time.Now().Add(-djangodb.PullTimeout-time.Minute)) ||
		!e.claim(freshTask.ID, 0x5678, time.Now().Add(-djangodb.PullTimeout+20*time.Second)) {
		t.Fatal("claim failed")
	}
	before := e.dump()
	res, err := e.store.SweepZombies(e.ctx, "msg")
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	want := []djangodb.InstanceRef{{ID: stuck, Type: "Z", Identifier: "stuck"}}
	if !reflect.DeepEqual(res.Unstuck, want) || len(res.Reenqueued)+len(res.Failed) != 0 {
		t.Errorf("sweep = %+v, want only %v unstuck", res, want)
	}
	after := e.dump()
	row, _ := after.instanceRow(stuck)
	logs := after.logsOf(stuck)
	last := logs[len(logs)-1]
	task := e.taskOf(after, stuck)
	if task.ID == stuckTask.ID || task.Lock != 0 || !task.Time.After(last.Time) {
		t.Errorf("stuck instance's task row %+v (was %+v), want a new waiting row", task, stuckTask)
	}
	if row.Status != int64(djangodb.Accepted) || len(logs) != 2 || last.Status != int64(djangodb.Accepted) || last.Message != "msg" {
		t.Errorf("stuck instance %+v log %+v, want ACCEPTED with a second ACCEPTED \"msg\" record", row, logs)
	}
	if got := e.taskOf(after, fresh); got != e.taskOf(before, fresh) {
		t.Errorf("recently claimed row changed: %+v -> %+v", e.taskOf(before, fresh), got)
	}
	e.dequeue(10, stuck)
}

func testSweepConcurrent(t *testing.T, e *env) {
	e.register("Z", 60, -1, 2)
	const n = 20
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = e.running("Z", "z"+string(rune('a'+i)))
		e.age(ids[i], time.Hour)
	}
	stores := []djangodb.Tracker{e.store, e.open(testdb.Options(e.c)), e.open(testdb.Options(e.c))}
	results := make([]djangodb.SweepResult, len(stores))
	errs := make([]error, len(stores))
	var start, done sync.WaitGroup
	start.Add(1)
	for i, s := range stores {
		done.Go(func() {
			start.Wait()
			results[i], errs[i] = s.SweepZombies(e.ctx, djangodb.MsgZombieReenqueued)
		})
	}
	start.Done()
	done.Wait()
	seen := map[int64]int{}
	for i := range stores {
		if errs[i] != nil {
			t.Errorf("sweeper %d: %v", i, errs[i])
		}
		for _, r := range results[i].Reenqueued {
			seen[r.ID]++
		}
	}
	s := e.dump()
	for _, id := range ids {
		var msgs int
		for _, l := range s.logsOf(id) {
			if l.Message == djangodb.MsgZombieReenqueued {
				msgs++
			}
		}
		if seen[id] != 1 || msgs != 1 {
			t.Errorf("instance %d re-enqueued %d times by the sweepers, %d sweep records in its log; want 1 and 1", id, seen[id], msgs)
		}
		e.taskOf(s, id)
	}
}

func testDeleteRetired(t *testing.T, e *env) {
	e.register("Ret", 60, 600, 2)
	e.register("Keep", 60, -1, 2)
	const old = time.Hour
	finish := func(typ, name string, s djangodb.Status, age time.Duration) int64 {
		id := e.running(typ, name)
		if err := e.store.SetResponse(e.ctx, id, []byte(name), "text/plain"); err != nil {
			t.Fatal(err)
		}
		if s != djangodb.Running {
			e.setStatus(id, s, "")
		}
		e.age(id, age)
		return id
	}
	doomed := []int64{
		finish("Ret", "finished-old", djangodb.Finished, old),
		finish("Ret", "failed-old", djangodb.Failed, old),
	}
	finish("Ret", "finished-recent", djangodb.Finished, 590*time.Second)
	finish("Ret", "failed-now", djangodb.Failed, 0)
	finish("Ret", "running-old", djangodb.Running, old)
	finish("Keep", "finished-ancient", djangodb.Finished, 24*365*time.Hour)
	finish("Ret", "paused-old", djangodb.Paused, old)
	waiting := e.enqueue("Ret", "waiting-old", "")
	e.age(waiting, old)

	before := e.dump()
	got, err := e.store.DeleteRetired(e.ctx)
	if err != nil {
		t.Fatalf("DeleteRetired: %v", err)
	}
	want := []djangodb.InstanceRef{
		{ID: doomed[0], Type: "Ret", Identifier: "finished-old"},
		{ID: doomed[1], Type: "Ret", Identifier: "failed-old"},
	}
	if !reflect.DeepEqual(sortRefs(got), want) {
		t.Errorf("DeleteRetired() = %v, want %v", got, want)
	}
	if after, wantRows := e.dump(), before.without(doomed...); !reflect.DeepEqual(after, wantRows) {
		t.Errorf("rows after DeleteRetired:\n%+v\nwant\n%+v", after, wantRows)
	}
	if again, err := e.store.DeleteRetired(e.ctx); err != nil || len(again) != 0 {
		t.Errorf("second DeleteRetired() = %v, %v; want nothing", again, err)
	}
}

func testTimestampRoundTrip(t *testing.T, e *env) {
	e.register("T", 60, -1, 2)
	id := e.running("T", "t")
	waiting := e.enqueue("T", "w", "")
	s := e.dump()
	row, _ := s.instanceRow(id)
	in := e.instance(id)
	// What the store writes has microsecond precision and reads back as written.
	for _, ts := range []time.Time{row.TimeInsert, row.TimeUpdate, in.TimeInsert, in.TimeUpdate} {
		if !ts.Equal(ts.Truncate(time.Microsecond)) {
			t.Errorf("stored time %v is finer than a microsecond", ts)
		}
	}
	if !in.TimeInsert.Equal(row.TimeInsert) || !in.TimeUpdate.Equal(row.TimeUpdate) {
		t.Errorf("Instance() times %v %v, rows hold %v %v", in.TimeInsert, in.TimeUpdate, row.TimeInsert, row.TimeUpdate)
	}

	logID := s.logsOf(id)[0].ID
	taskID := e.taskOf(s, waiting).ID
	instants := []time.Time{
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),              // no fraction: SQLite omits it
		time.Date(2021, 7, 15, 12, 34, 56, 123456000, time.UTC),  // summer time in Vienna
		time.Date(2021, 12, 31, 23, 59, 59, 999999000, time.UTC), // next day and year in Vienna
		time.Date(1999, 3, 28, 0, 59, 59, 1000, time.UTC),        // just before Vienna's DST switch
		time.Date(2038, 1, 19, 3, 14, 8, 500000000, time.UTC),    // past 32-bit Unix time
	}
	for _, at := range instants {
		t.Run(at.Format(time.RFC3339Nano), func(t *testing.T) {
			e.setTime("processes_instance", "timeInsert", id, at)
			e.setTime("processes_instance", "timeUpdate", id, at.Add(time.Microsecond))
			e.setTime("processes_logrecord", "time", logID, at)
			e.setTime("processes_task", "time", taskID, at)
			in := e.instance(id)
			if !in.TimeInsert.Equal(at) || !in.TimeUpdate.Equal(at.Add(time.Microsecond)) {
				t.Errorf("Instance() times %v, %v; want %v and a microsecond later", in.TimeInsert, in.TimeUpdate, at)
			}
			for _, r := range e.log(id) {
				if r.ID == logID && !r.Time.Equal(at) {
					t.Errorf("Log() record %d time %v, want %v", logID, r.Time, at)
				}
			}
			if st, err := e.store.QueueStats(e.ctx); err != nil || !st.Oldest.Equal(at) {
				t.Errorf("QueueStats().Oldest = %v, %v; want %v", st.Oldest, err, at)
			}
			s := e.dump()
			if r, _ := s.instanceRow(id); !r.TimeInsert.Equal(at) {
				t.Errorf("raw timeInsert %v, want %v", r.TimeInsert, at)
			}
		})
	}
}
