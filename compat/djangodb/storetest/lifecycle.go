package storetest

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

func testStart(t *testing.T, e *env) {
	typ := e.register("Seq", 90.5, -1, 4)
	id := e.scheduled("Seq", "s1")
	st, err := e.store.Start(e.ctx, id, "go")
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	want := djangodb.StartedTask{
		InstanceID: id, Type: "Seq", Identifier: "s1", Handler: typ.Handler,
		Input: input("s1"), HasInput: true, Timeout: 90500 * time.Millisecond,
		MaxStart: 5, Starts: 1, StartedAt: st.StartedAt,
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Start() = %+v, want %+v", st, want)
	}
	if st.Ref() != (djangodb.InstanceRef{ID: id, Type: "Seq", Identifier: "s1"}) {
		t.Errorf("Ref() = %+v", st.Ref())
	}
	s := e.dump()
	row, _ := s.instanceRow(id)
	logs := s.logsOf(id)
	last := logs[len(logs)-1]
	if row.Status != int64(djangodb.Running) || !row.TimeUpdate.Equal(st.StartedAt) {
		t.Errorf("instance row %+v, want RUNNING with timeUpdate = StartedAt %v", row, st.StartedAt)
	}
	if last.Status != int64(djangodb.Running) || last.Message != "go" || !last.Time.After(row.TimeUpdate) {
		t.Errorf("last log %+v, want RUNNING \"go\" after %v", last, row.TimeUpdate)
	}
	if _, err := e.store.Start(e.ctx, id+1000, ""); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("start of a missing instance: %v, want ErrNotFound", err)
	}
}

func testStartWithoutInput(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	id := e.scheduled("Seq", "no-input")
	e.exec(`DELETE FROM processes_input WHERE instance_id = $1`, id)
	st, err := e.store.Start(e.ctx, id, "")
	if err != nil {
		t.Fatalf("start of an instance without input row: %v", err)
	}
	if st.HasInput || st.Input != "" || st.Starts != 1 {
		t.Errorf("Start() = %+v, want HasInput false, empty input, 1 start", st)
	}
	if _, err := e.store.Input(e.ctx, id); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("Input() of an instance without input row: %v, want ErrNotFound", err)
	}
}

func testStartsCounted(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 5)
	id := e.scheduled("Seq", "s")
	start := func(want int) {
		t.Helper()
		st, err := e.store.Start(e.ctx, id, "")
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		if st.Starts != want {
			t.Errorf("Starts = %d after log %v, want %d", st.Starts, statuses(e.log(id)), want)
		}
	}
	start(1)
	// Pausing and resuming is not a start.
	e.setStatus(id, djangodb.Paused, "")
	e.setStatus(id, djangodb.Running, "")
	if err := e.store.Reenqueue(e.ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	e.dequeue(1, id)
	start(2)
	e.setStatus(id, djangodb.Paused, "")
	e.setStatus(id, djangodb.Running, "")
	e.setStatus(id, djangodb.Paused, "")
	// RUNNING straight after PAUSED through Start is a resume, not a start.
	start(2)
	if err := e.store.Reenqueue(e.ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	e.dequeue(1, id)
	start(3)
}

func testSetStatus(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	tests := []struct {
		status  djangodb.Status
		message string
	}{
		{djangodb.Finished, "done"},
		{djangodb.Failed, "KeyError: 'k'"},
		{djangodb.Paused, ""},
		{djangodb.Running, "resumed"},
	}
	for _, tc := range tests {
		t.Run(tc.status.String(), func(t *testing.T) {
			id := e.running("Seq", tc.status.String())
			prev := e.dump()
			prevRow, _ := prev.instanceRow(id)
			e.setStatus(id, tc.status, tc.message)
			s := e.dump()
			row, _ := s.instanceRow(id)
			logs := s.logsOf(id)
			last := logs[len(logs)-1]
			if row.Status != int64(tc.status) || !row.TimeUpdate.After(prevRow.TimeUpdate) || !row.TimeInsert.Equal(prevRow.TimeInsert) {
				t.Errorf("instance %+v (was %+v), want %s with a later timeUpdate and the same timeInsert", row, prevRow, tc.status)
			}
			if len(logs) != len(prev.logsOf(id))+1 || last.Status != int64(tc.status) || last.Message != tc.message || !last.Time.After(row.TimeUpdate) {
				t.Errorf("log %+v, want one new %s %q record after %v", logs, tc.status, tc.message, row.TimeUpdate)
			}
			if in := e.instance(id); in.Status != tc.status || !in.TimeUpdate.Equal(row.TimeUpdate) {
				t.Errorf("Instance() = %+v, want %s at %v", in, tc.status, row.TimeUpdate)
			}
		})
	}
}

func testSetStatusErrors(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	id := e.running("Seq", "r")
	tests := []struct {
		name   string
		id     int64
		status djangodb.Status
		want   error // nil: any error
	}{
		{"missing instance", id + 1000, djangodb.Finished, djangodb.ErrNotFound},
		{"unknown status", id, djangodb.Status(9), nil},
		{"negative status", id, djangodb.Status(-1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.dump()
			err := e.store.SetStatus(e.ctx, tc.id, tc.status, "x")
			if err == nil || (tc.want != nil && !isErr(err, tc.want)) {
				t.Fatalf("SetStatus(%d, %d): %v, want error %v", tc.id, tc.status, err, tc.want)
			}
			if after := e.dump(); !reflect.DeepEqual(after, before) {
				t.Errorf("failed SetStatus changed rows")
			}
		})
	}
}

func testFinishIfNotFinished(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	tests := []struct {
		from  djangodb.Status // Running means as left by Start
		wrote bool
	}{
		{djangodb.Running, true},
		{djangodb.Paused, true},
		{djangodb.Finished, false},
		{djangodb.Failed, false},
	}
	for _, tc := range tests {
		t.Run(tc.from.String(), func(t *testing.T) {
			id := e.running("Seq", tc.from.String())
			if tc.from != djangodb.Running {
				e.setStatus(id, tc.from, "set by handler")
			}
			before := e.dump()
			wrote, err := e.store.FinishIfNotFinished(e.ctx, id, "auto")
			if err != nil || wrote != tc.wrote {
				t.Fatalf("FinishIfNotFinished from %s = %v, %v; want %v", tc.from, wrote, err, tc.wrote)
			}
			after := e.dump()
			if !tc.wrote {
				if !reflect.DeepEqual(after, before) {
					t.Errorf("FinishIfNotFinished on %s changed rows", tc.from)
				}
				return
			}
			row, _ := after.instanceRow(id)
			logs := after.logsOf(id)
			last := logs[len(logs)-1]
			if row.Status != int64(djangodb.Finished) || last.Status != int64(djangodb.Finished) || last.Message != "auto" || len(logs) != len(before.logsOf(id))+1 {
				t.Errorf("after FinishIfNotFinished from %s: instance %+v log %+v", tc.from, row, logs)
			}
		})
	}
	if _, err := e.store.FinishIfNotFinished(e.ctx, 999999, ""); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("FinishIfNotFinished of a missing instance: %v, want ErrNotFound", err)
	}
}

func testResponse(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	id := e.running("Seq", "r")
	other := e.running("Seq", "other")
	if _, err := e.store.Response(e.ctx, id); !isErr(err, djangodb.ErrNotFound) {
		t.Fatalf("Response() before any was set: %v, want ErrNotFound", err)
	}
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	var rowID int64
	// A replaced response keeps its first MIME type, as the original's
	// setTaskResponse did (ATP-SPEC section 4).
	steps := []struct {
		name     string
		data     []byte
		mimeType string // given
		stored   string // kept
	}{
		{"create", []byte("15.0"), "text/plain", "text/plain"},
		{"replace with new mime type", []byte("<xml>ü</xml>"), "text/xml", "text/plain"},
		{"replace with binary", binary, "application/octet-stream", "text/plain"},
		{"replace with empty", []byte{}, "text/plain", "text/plain"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := e.store.SetResponse(e.ctx, id, st.data, st.mimeType); err != nil {
				t.Fatalf("SetResponse: %v", err)
			}
			var mine []ResponseRow
			for _, r := range e.dump().Responses {
				if r.InstanceID == id {
					mine = append(mine, r)
				}
			}
			if len(mine) != 1 {
				t.Fatalf("response rows %+v, want exactly one", mine)
			}
			if rowID == 0 {
				rowID = mine[0].ID
			}
			if mine[0].ID != rowID || mine[0].Response != djangodb.EncodeResponse(st.data) || mine[0].MimeType != st.stored {
				t.Errorf("response row %+v, want id %d, %q, %q", mine[0], rowID, djangodb.EncodeResponse(st.data), st.stored)
			}
			got, err := e.store.Response(e.ctx, id)
			if err != nil || !bytes.Equal(got.Data, st.data) || got.MimeType != st.stored {
				t.Errorf("Response() = %q %q, %v; want %q %q", got.Data, got.MimeType, err, st.data, st.stored)
			}
		})
	}
	if _, err := e.store.Response(e.ctx, other); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("Response() of the other instance: %v, want ErrNotFound", err)
	}
	before := e.dump()
	if err := e.store.SetResponse(e.ctx, 999999, []byte("x"), "text/plain"); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("SetResponse of a missing instance: %v, want ErrNotFound", err)
	}
	if after := e.dump(); !reflect.DeepEqual(after, before) {
		t.Errorf("failed SetResponse changed rows")
	}
}

func testLogOrder(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	id := e.running("Seq", "busy")
	want := []djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running}
	for i := range 40 {
		s := []djangodb.Status{djangodb.Paused, djangodb.Running}[i%2]
		e.setStatus(id, s, fmt.Sprint(i))
		want = append(want, s)
	}
	e.setStatus(id, djangodb.Finished, "end")
	want = append(want, djangodb.Finished)
	recs := e.log(id)
	if got := statuses(recs); !slices.Equal(got, want) {
		t.Fatalf("log statuses %v, want %v", got, want)
	}
	checkLogTimes(t, recs)
	for i, r := range recs[3 : len(recs)-1] {
		if r.Message != fmt.Sprint(i) {
			t.Errorf("record %d message %q, want %q", i+3, r.Message, fmt.Sprint(i))
		}
	}
	if _, err := e.store.Log(e.ctx, id+1000); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("Log() of a missing instance: %v, want ErrNotFound", err)
	}
}

func testInstances(t *testing.T, e *env) {
	e.register("A", 60, -1, 2)
	e.register("B", 60, -1, 2)
	a1 := e.running("A", "a1")
	e.setStatus(a1, djangodb.Finished, "")
	a2 := e.running("A", "a2")
	b1 := e.running("B", "b1")
	e.setStatus(b1, djangodb.Finished, "")
	a3 := e.enqueue("A", "a3", "")
	b2 := e.enqueue("B", "b2", "")

	ptr := func(s djangodb.Status) *djangodb.Status { return &s }
	tests := []struct {
		name string
		f    djangodb.InstanceFilter
		want []int64
	}{
		{"all", djangodb.InstanceFilter{}, []int64{a1, a2, b1, a3, b2}},
		{"type", djangodb.InstanceFilter{Type: "A"}, []int64{a1, a2, a3}},
		{"status", djangodb.InstanceFilter{Status: ptr(djangodb.Finished)}, []int64{a1, b1}},
		{"type and status", djangodb.InstanceFilter{Type: "B", Status: ptr(djangodb.Accepted)}, []int64{b2}},
		{"limit", djangodb.InstanceFilter{Limit: 2}, []int64{a1, a2}},
		{"type and limit", djangodb.InstanceFilter{Type: "B", Limit: 1}, []int64{b1}},
		{"no match", djangodb.InstanceFilter{Status: ptr(djangodb.Paused)}, nil},
		{"unknown type", djangodb.InstanceFilter{Type: "Nope"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.store.Instances(e.ctx, tc.f)
			if err != nil {
				t.Fatalf("Instances(%+v): %v", tc.f, err)
			}
			var ids []int64
			for _, in := range got {
				ids = append(ids, in.ID)
				if one := e.instance(in.ID); !reflect.DeepEqual(one, in) {
					t.Errorf("Instances() gave %+v, Instance() gives %+v", in, one)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("Instances(%+v) = %v, want %v", tc.f, ids, tc.want)
			}
		})
	}

	in, err := e.store.InstanceByIdentifier(e.ctx, "B", "b1")
	if err != nil || in.ID != b1 || in.Type != "B" || in.Identifier != "b1" || in.Status != djangodb.Finished {
		t.Errorf("InstanceByIdentifier(B, b1) = %+v, %v", in, err)
	}
	for _, k := range [][2]string{{"A", "b1"}, {"Nope", "a1"}} {
		if _, err := e.store.InstanceByIdentifier(e.ctx, k[0], k[1]); !isErr(err, djangodb.ErrNotFound) {
			t.Errorf("InstanceByIdentifier(%s, %s): %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	if _, err := e.store.Instance(e.ctx, 999999); !isErr(err, djangodb.ErrNotFound) {
		t.Errorf("Instance(missing): %v, want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	kept := e.running("Seq", "kept")
	if err := e.store.SetResponse(e.ctx, kept, []byte("k"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	withAll := e.running("Seq", "with-all")
	if err := e.store.SetResponse(e.ctx, withAll, []byte("r"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Reenqueue(e.ctx, withAll, ""); err != nil { // a task row too
		t.Fatal(err)
	}
	waiting := e.enqueue("Seq", "waiting", "")

	for _, id := range []int64{withAll, waiting} {
		before := e.dump()
		if err := e.store.Delete(e.ctx, id); err != nil {
			t.Fatalf("delete instance %d: %v", id, err)
		}
		if after, want := e.dump(), before.without(id); !reflect.DeepEqual(after, want) {
			t.Errorf("after deleting %d:\n%+v\nwant\n%+v", id, after, want)
		}
	}
	before := e.dump()
	if err := e.store.Delete(e.ctx, withAll); err != nil {
		t.Errorf("deleting a deleted instance: %v, want nil", err)
	}
	if after := e.dump(); !reflect.DeepEqual(after, before) || len(after.Instances) != 1 || after.Instances[0].ID != kept {
		t.Errorf("rows after deleting twice: %+v", after)
	}
	// The identifier is free again.
	e.enqueue("Seq", "with-all", "")
}
