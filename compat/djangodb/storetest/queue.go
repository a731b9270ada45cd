package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

func testEnqueue(t *testing.T, e *env) {
	typ := e.register("Seq", 60, -1, 2)
	tests := []struct{ identifier, message string }{
		{"with-message", "enqueued with a message"},
		{"no-message", ""},
		{"ünïcødé ✓", "mëssage ✓"},
	}
	for _, tc := range tests {
		t.Run(tc.identifier, func(t *testing.T) {
			before := time.Now().Truncate(time.Microsecond)
			id, err := e.store.Enqueue(e.ctx, "Seq", tc.identifier, input(tc.identifier), tc.message)
			if err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			s := e.dump()
			row, ok := s.instanceRow(id)
			if !ok {
				t.Fatalf("no instance row %d", id)
			}
			if row.TypeID != typ.ID || row.Identifier != tc.identifier || row.Status != int64(djangodb.Accepted) {
				t.Errorf("instance row %+v, want type %d, %q, ACCEPTED", row, typ.ID, tc.identifier)
			}
			if row.TimeInsert.Before(before) || row.TimeUpdate.Before(row.TimeInsert) {
				t.Errorf("instance times insert %v update %v, want both at or after %v, in that order", row.TimeInsert, row.TimeUpdate, before)
			}
			logs := s.logsOf(id)
			if len(logs) != 1 || logs[0].Status != int64(djangodb.Accepted) || logs[0].Message != tc.message {
				t.Fatalf("log rows %+v, want one ACCEPTED %q", logs, tc.message)
			}
			if !logs[0].Time.After(row.TimeUpdate) {
				t.Errorf("log time %v not after instance timeUpdate %v (Django saves the instance first)", logs[0].Time, row.TimeUpdate)
			}
			task := e.taskOf(s, id)
			if task.Lock != 0 || !task.Time.After(logs[0].Time) {
				t.Errorf("task row %+v, want lock 0 and time after the log record's %v", task, logs[0].Time)
			}
			var inputs []InputRow
			for _, r := range s.Inputs {
				if r.InstanceID == id {
					inputs = append(inputs, r)
				}
			}
			if len(inputs) != 1 || inputs[0].Input != input(tc.identifier) {
				t.Errorf("input rows %+v, want one with %q", inputs, input(tc.identifier))
			}
			if got, err := e.store.Input(e.ctx, id); err != nil || got != input(tc.identifier) {
				t.Errorf("Input() = %q, %v", got, err)
			}

			in := e.instance(id)
			want := djangodb.Instance{ID: id, TypeID: typ.ID, Type: "Seq", Identifier: tc.identifier, Status: djangodb.Accepted}
			if in.ID != want.ID || in.TypeID != want.TypeID || in.Type != want.Type || in.Identifier != want.Identifier || in.Status != want.Status ||
				!in.TimeInsert.Equal(row.TimeInsert) || !in.TimeUpdate.Equal(row.TimeUpdate) {
				t.Errorf("Instance() = %+v, want %+v with the row's times %v, %v", in, want, row.TimeInsert, row.TimeUpdate)
			}
			recs := e.log(id)
			if len(recs) != 1 || recs[0].Status != djangodb.Accepted || recs[0].Message != tc.message || !recs[0].Time.Equal(logs[0].Time) || recs[0].ID != logs[0].ID {
				t.Errorf("Log() = %+v, want the row %+v", recs, logs[0])
			}
		})
	}
}

func testEnqueueErrors(t *testing.T, e *env) {
	e.register("A", 60, -1, 2)
	e.register("B", 60, -1, 2)
	finished := e.running("A", "finished")
	e.setStatus(finished, djangodb.Finished, "")
	e.enqueue("A", "dup", "")

	tests := []struct {
		name, typ, identifier string
		want                  error
	}{
		{"missing type", "Nope", "x", djangodb.ErrNotFound},
		{"duplicate waiting", "A", "dup", djangodb.ErrExists},
		{"duplicate finished", "A", "finished", djangodb.ErrExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.dump()
			_, err := e.store.Enqueue(e.ctx, tc.typ, tc.identifier, input(tc.identifier), "")
			if !isErr(err, tc.want) {
				t.Fatalf("enqueue %s/%s: %v, want %v", tc.typ, tc.identifier, err, tc.want)
			}
			if after := e.dump(); !reflect.DeepEqual(after, before) {
				t.Errorf("failed enqueue changed rows:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	// The identifier is unique per type only.
	if _, err := e.store.Enqueue(e.ctx, "B", "dup", input("dup"), ""); err != nil {
		t.Errorf("enqueue B/dup beside A/dup: %v", err)
	}
}

// fill enqueues n instances of typ named prefix0.. and returns their ids.
func (e *env) fill(s djangodb.Store, typ, prefix string, n int) []int64 {
	e.t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		name := fmt.Sprintf("%s%d", prefix, i)
		id, err := s.Enqueue(e.ctx, typ, name, input(name), "")
		if err != nil {
			e.t.Fatalf("enqueue %s/%s (#%d of %d): %v", typ, name, i+1, n, err)
		}
		ids[i] = id
	}
	return ids
}

// expectFull asserts that s refuses one more enqueue with ErrQueueFull and
// writes nothing.
func (e *env) expectFull(s djangodb.Store, typ, identifier string) {
	e.t.Helper()
	before := e.dump()
	_, err := s.Enqueue(e.ctx, typ, identifier, input(identifier), "")
	if !isErr(err, djangodb.ErrQueueFull) {
		e.t.Fatalf("enqueue %s/%s into a full queue: %v, want ErrQueueFull", typ, identifier, err)
	}
	if after := e.dump(); !reflect.DeepEqual(after, before) {
		e.t.Errorf("refused enqueue changed rows")
	}
}

func testQueueFull(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	if got := e.store.MaxQueueSize(); got != djangodb.DefaultMaxQueueSize {
		t.Fatalf("MaxQueueSize() = %d, want the default %d", got, djangodb.DefaultMaxQueueSize)
	}
	ids := e.fill(e.store, "Q", "t", djangodb.DefaultMaxQueueSize)
	e.expectFull(e.store, "Q", "overflow")

	// A task row claimed by a daemon (lock != 0) no longer waits: room for one.
	s := e.dump()
	if !e.claim(e.taskOf(s, ids[0]).ID, 42, time.Now()) {
		t.Fatal("claim of a waiting task row failed")
	}
	e.enqueue("Q", "after-claim", "")
	e.expectFull(e.store, "Q", "overflow")

	// Dequeueing frees a slot too.
	e.dequeue(1, ids[1])
	e.enqueue("Q", "after-dequeue", "")
	e.expectFull(e.store, "Q", "overflow")
}

func testQueueFullCustomSize(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	for _, size := range []int{1, 3} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			opts := testdb.Options(e.c)
			opts.MaxQueueSize = size
			s := e.open(opts)
			if got := s.MaxQueueSize(); got != size {
				t.Fatalf("MaxQueueSize() = %d, want %d", got, size)
			}
			ids := e.fill(s, "Q", fmt.Sprintf("size%d-", size), size)
			e.expectFull(s, "Q", fmt.Sprintf("size%d-overflow", size))
			got, err := s.Dequeue(e.ctx, 1, size, "")
			if err != nil || !reflect.DeepEqual(got, ids) {
				t.Fatalf("dequeue all = %v, %v; want %v", got, err, ids)
			}
		})
	}
}

func testDequeue(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	ids := e.fill(e.store, "Q", "t", 5)
	before := time.Now().Truncate(time.Microsecond)
	got, err := e.store.Dequeue(e.ctx, 0x1234, 2, "picked")
	if err != nil || !reflect.DeepEqual(got, ids[:2]) {
		t.Fatalf("dequeue 2 = %v, %v; want %v", got, err, ids[:2])
	}
	s := e.dump()
	for _, id := range ids[:2] {
		row, _ := s.instanceRow(id)
		logs := s.logsOf(id)
		last := logs[len(logs)-1]
		if row.Status != int64(djangodb.Scheduled) || row.TimeUpdate.Before(before) {
			t.Errorf("claimed instance %+v, want SCHEDULED updated after %v", row, before)
		}
		if len(logs) != 2 || last.Status != int64(djangodb.Scheduled) || last.Message != "picked" || !last.Time.After(row.TimeUpdate) {
			t.Errorf("claimed instance %d log %+v, want ACCEPTED then SCHEDULED \"picked\" after timeUpdate %v", id, logs, row.TimeUpdate)
		}
	}
	for _, r := range s.Tasks {
		if r.InstanceID == ids[0] || r.InstanceID == ids[1] {
			t.Errorf("claimed instance %d still has task row %+v", r.InstanceID, r)
		}
	}
	if len(s.Tasks) != 3 {
		t.Errorf("task rows after claiming 2 of 5: %+v", s.Tasks)
	}
	for _, id := range ids[2:] {
		if row, _ := s.instanceRow(id); row.Status != int64(djangodb.Accepted) {
			t.Errorf("unclaimed instance %+v is not ACCEPTED", row)
		}
	}

	// A limit below 1 claims one task, as the tracker's dequeueTask does.
	e.dequeue(0, ids[2])
	e.dequeue(10, ids[3:]...)
	if _, err := e.store.Dequeue(e.ctx, 0x1234, 10, ""); !isErr(err, djangodb.ErrQueueEmpty) {
		t.Fatalf("dequeue from an empty queue: %v, want ErrQueueEmpty", err)
	}

	// A re-enqueued task joins the back of the queue.
	late := e.enqueue("Q", "late", "")
	if err := e.store.Reenqueue(e.ctx, ids[0], "again"); err != nil {
		t.Fatal(err)
	}
	last := e.enqueue("Q", "last", "")
	e.dequeue(10, late, ids[0], last)
}

func testDequeueSkipsClaimed(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	ids := e.fill(e.store, "Q", "t", 3)
	s := e.dump()
	claimed := e.taskOf(s, ids[0])
	if !e.claim(claimed.ID, 777, time.Now()) {
		t.Fatal("claim failed")
	}
	e.dequeue(10, ids[1:]...)
	if _, err := e.store.Dequeue(e.ctx, 0x1234, 10, ""); !isErr(err, djangodb.ErrQueueEmpty) {
		t.Fatalf("dequeue with only a claimed row left: %v, want ErrQueueEmpty", err)
	}
	after := e.dump()
	if len(after.Tasks) != 1 || after.Tasks[0].ID != claimed.ID || after.Tasks[0].Lock != 777 {
		t.Errorf("task rows %+v, want only the row claimed by 777", after.Tasks)
	}
	if row, _ := after.instanceRow(ids[0]); row.Status != int64(djangodb.Accepted) {
		t.Errorf("instance of the claimed row changed: %+v", row)
	}
}

func testReenqueue(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	opts := testdb.Options(e.c)
	opts.MaxQueueSize = 1
	small := e.open(opts)
	id := e.running("Q", "r")
	e.enqueue("Q", "fills-the-queue", "")

	// Reenqueue ignores the limit: the queue of size 1 now holds 2.
	if err := small.Reenqueue(e.ctx, id, "again"); err != nil {
		t.Fatalf("reenqueue into a full queue: %v", err)
	}
	s := e.dump()
	row, _ := s.instanceRow(id)
	logs := s.logsOf(id)
	last := logs[len(logs)-1]
	task := e.taskOf(s, id)
	if row.Status != int64(djangodb.Accepted) || last.Status != int64(djangodb.Accepted) || last.Message != "again" {
		t.Errorf("after reenqueue instance %+v last log %+v, want ACCEPTED \"again\"", row, last)
	}
	if !(row.TimeUpdate.Before(last.Time) && last.Time.Before(task.Time)) || task.Lock != 0 {
		t.Errorf("times instance %v log %v task %v (lock %d), want increasing and lock 0", row.TimeUpdate, last.Time, task.Time, task.Lock)
	}
	if st, err := e.store.QueueStats(e.ctx); err != nil || st.Waiting != 2 {
		t.Errorf("QueueStats() = %+v, %v; want 2 waiting", st, err)
	}
	if err := e.store.Reenqueue(e.ctx, id+1000, ""); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("reenqueue of a missing instance: %v, want ErrNotFound", err)
	}
}

func testQueueStats(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	st, err := e.store.QueueStats(e.ctx)
	if err != nil || st.Waiting != 0 || !st.Oldest.IsZero() || st.Max != e.store.MaxQueueSize() {
		t.Fatalf("QueueStats() on an empty queue = %+v, %v", st, err)
	}
	ids := e.fill(e.store, "Q", "t", 3)
	s := e.dump()
	st, err = e.store.QueueStats(e.ctx)
	if err != nil || st.Waiting != 3 || !st.Oldest.Equal(e.taskOf(s, ids[0]).Time) || st.Max != djangodb.DefaultMaxQueueSize {
		t.Errorf("QueueStats() = %+v, %v; want 3 waiting, oldest %v", st, err, e.taskOf(s, ids[0]).Time)
	}
	e.claim(e.taskOf(s, ids[0]).ID, 9, time.Now())
	st, err = e.store.QueueStats(e.ctx)
	if err != nil || st.Waiting != 2 || !st.Oldest.Equal(e.taskOf(s, ids[1]).Time) {
		t.Errorf("QueueStats() with one row claimed = %+v, %v; want 2 waiting, oldest %v", st, err, e.taskOf(s, ids[1]).Time)
	}
}
