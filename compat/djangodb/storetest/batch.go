package storetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// shape is what the tracker's API can observe of one instance, minus ids
// and exact times: used to check that a batch method writes the rows the
// single-task methods write.
type shape struct {
	Status   int64
	Logs     []string // "status:message"
	Tasks    []int64  // locks of its task rows
	Response *ResponseRow
	Input    bool
}

// shapeOf returns the shape of instance id and checks the time order every
// status change must leave: log records in id order have strictly
// increasing times, and timeUpdate falls between the second-to-last and
// the last record when the last status change wrote both.
func (e *env) shapeOf(s Snapshot, id int64) shape {
	e.t.Helper()
	row, ok := s.instanceRow(id)
	if !ok {
		e.t.Fatalf("instance %d has no row", id)
	}
	sh := shape{Status: row.Status}
	logs := s.logsOf(id)
	for i, l := range logs {
		sh.Logs = append(sh.Logs, fmt.Sprintf("%d:%s", l.Status, l.Message))
		if i > 0 && !l.Time.After(logs[i-1].Time) {
			e.t.Errorf("instance %d: log record #%d at %v is not after #%d at %v", id, l.ID, l.Time, logs[i-1].ID, logs[i-1].Time)
		}
	}
	if n := len(logs); n > 1 && (!row.TimeUpdate.After(logs[n-2].Time) || !row.TimeUpdate.Before(logs[n-1].Time)) {
		e.t.Errorf("instance %d: timeUpdate %v not between its last two log records (%v, %v)", id, row.TimeUpdate, logs[n-2].Time, logs[n-1].Time)
	}
	for _, r := range s.Tasks {
		if r.InstanceID == id {
			sh.Tasks = append(sh.Tasks, r.Lock)
		}
	}
	for _, r := range s.Responses {
		if r.InstanceID == id {
			r.ID, r.InstanceID = 0, 0
			sh.Response = &r
		}
	}
	for _, r := range s.Inputs {
		sh.Input = sh.Input || r.InstanceID == id
	}
	return sh
}

func (e *env) claimAll(limit int, message string) []djangodb.StartedTask {
	e.t.Helper()
	got, err := e.store.Claim(e.ctx, 0x1234, limit, message)
	if err != nil {
		e.t.Fatalf("claim %d: %v", limit, err)
	}
	return got
}

func startedIDs(sts []djangodb.StartedTask) []int64 {
	var ids []int64
	for _, st := range sts {
		ids = append(ids, st.InstanceID)
	}
	return ids
}

// testClaimEqualsDequeueStart: Claim leaves the rows and returns what
// Dequeue followed by Start does.
func testClaimEqualsDequeueStart(t *testing.T, e *env) {
	typ := e.register("Seq", 90.5, -1, 4)
	for _, message := range []string{"", "by atpd"} {
		t.Run(fmt.Sprintf("message=%q", message), func(t *testing.T) {
			single := e.enqueue("Seq", "single"+message, "queued")
			e.dequeue(1, single)
			want, err := e.store.Start(e.ctx, single, "")
			if err != nil {
				t.Fatal(err)
			}
			// Dequeue and Start with the message on both, as Claim's.
			e.exec(`UPDATE processes_logrecord SET message = $1 WHERE instance_id = $2 AND status IN (2, 3)`, message, single)

			batched := e.enqueue("Seq", "batched"+message, "queued")
			before := time.Now().Truncate(time.Microsecond)
			got := e.claimAll(5, message)
			if len(got) != 1 || got[0].InstanceID != batched {
				t.Fatalf("claim = %+v, want instance %d only", got, batched)
			}
			st := got[0]
			want.InstanceID, want.Identifier, want.Input, want.StartedAt = batched, "batched"+message, input("batched"+message), st.StartedAt
			if !reflect.DeepEqual(st, want) {
				t.Errorf("Claim() = %+v\nStart() gave %+v", st, want)
			}
			if st.Handler != typ.Handler || st.Timeout != 90500*time.Millisecond || st.MaxStart != 5 || st.Starts != 1 {
				t.Errorf("Claim() = %+v, want the type's handler, timeout, maxstart and 1 start", st)
			}
			s := e.dump()
			row, _ := s.instanceRow(batched)
			if !row.TimeUpdate.Equal(st.StartedAt) || row.TimeUpdate.Before(before) {
				t.Errorf("timeUpdate %v, want StartedAt %v (after %v)", row.TimeUpdate, st.StartedAt, before)
			}
			if a, b := e.shapeOf(s, single), e.shapeOf(s, batched); !reflect.DeepEqual(a, b) {
				t.Errorf("rows after Claim:\n%+v\nafter Dequeue and Start:\n%+v", b, a)
			}
		})
	}
}

func testClaim(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	tests := []struct {
		name    string
		waiting int
		setup   func(ids []int64) // before the claim
		limit   int
		want    func(ids []int64) []int64
	}{
		{"fewer than waiting, in queue order", 5, nil, 3, func(ids []int64) []int64 { return ids[:3] }},
		{"more than waiting", 2, nil, 10, func(ids []int64) []int64 { return ids }},
		{"limit below 1 claims one", 3, nil, 0, func(ids []int64) []int64 { return ids[:1] }},
		{"skips rows the reference daemon locked", 3, func(ids []int64) {
			if !e.claim(e.taskOf(e.dump(), ids[0]).ID, 777, time.Now()) {
				t.Fatal("claim of a waiting row failed")
			}
		}, 10, func(ids []int64) []int64 { return ids[1:] }},
		{"re-enqueued instance joins the back", 3, func(ids []int64) {
			e.exec(`DELETE FROM processes_task WHERE instance_id = $1`, ids[0])
			if err := e.store.Reenqueue(e.ctx, ids[0], ""); err != nil {
				t.Fatal(err)
			}
		}, 10, func(ids []int64) []int64 { return []int64{ids[1], ids[2], ids[0]} }},
		{"instance with two waiting rows is claimed once", 2, func(ids []int64) {
			if err := e.store.Reenqueue(e.ctx, ids[0], "twice"); err != nil {
				t.Fatal(err)
			}
		}, 10, func(ids []int64) []int64 { return ids }},
	}
	for n, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.exec(`DELETE FROM processes_task`)
			ids := e.fill(e.store, "Q", fmt.Sprintf("c%d-", n), tc.waiting)
			if tc.setup != nil {
				tc.setup(ids)
			}
			want := tc.want(ids)
			got := e.claimAll(tc.limit, "")
			if !slices.Equal(startedIDs(got), want) {
				t.Fatalf("claim %d = %v, want %v", tc.limit, startedIDs(got), want)
			}
			s := e.dump()
			for _, st := range got {
				sh := e.shapeOf(s, st.InstanceID)
				if sh.Status != int64(djangodb.Running) || len(sh.Tasks) != 0 || st.Starts != 1 {
					t.Errorf("claimed instance %d: %+v, %d starts; want RUNNING without task rows, 1 start", st.InstanceID, sh, st.Starts)
				}
				if tail := sh.Logs[len(sh.Logs)-2:]; !slices.Equal(tail, []string{"2:", "3:"}) {
					t.Errorf("claimed instance %d log %v, want it to end SCHEDULED, RUNNING", st.InstanceID, sh.Logs)
				}
			}
			for _, id := range ids {
				if slices.Contains(want, id) {
					continue
				}
				if sh := e.shapeOf(s, id); sh.Status != int64(djangodb.Accepted) || len(sh.Tasks) != 1 {
					t.Errorf("unclaimed instance %d: %+v, want ACCEPTED with its task row", id, sh)
				}
			}
		})
	}

	t.Run("empty queue", func(t *testing.T) {
		e.exec(`DELETE FROM processes_task WHERE lock = 0`)
		before := e.dump()
		if got, err := e.store.Claim(e.ctx, 0x1234, 4, ""); !isErr(err, djangodb.ErrQueueEmpty) {
			t.Fatalf("claim from an empty queue = %v, %v; want ErrQueueEmpty", got, err)
		}
		if after := e.dump(); !reflect.DeepEqual(after, before) {
			t.Errorf("claim from an empty queue changed rows")
		}
	})
}

func testClaimStartsAndInput(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 5)
	id := e.enqueue("Seq", "s", "")
	got := e.claimAll(2, "")
	if len(got) != 1 || got[0].Starts != 1 || !got[0].HasInput || got[0].Input != input("s") || got[0].Undecodable != nil {
		t.Fatalf("claim = %+v, want one start with its input", got)
	}
	for want := 2; want <= 3; want++ {
		if err := e.store.Reenqueue(e.ctx, id, djangodb.MsgZombieReenqueued); err != nil {
			t.Fatal(err)
		}
		got := e.claimAll(1, "")
		if len(got) != 1 || got[0].InstanceID != id || got[0].Starts != want {
			t.Fatalf("claim after %d starts = %+v, want instance %d with %d starts", want-1, got, id, want)
		}
	}
	checkLogTimes(t, e.log(id))
}

// testClaimUndecodable: tracker.startTask decodes the input before it
// saves RUNNING, so an input that does not open leaves 1, 2, 6 with
// Python's message (measured on the reference daemon), and the claim goes
// on with the tasks beside it. A broken pickle inside a sound envelope is
// started: its interpreter reads it.
func testClaimUndecodable(t *testing.T, e *env) {
	e.register("Bad", 60, -1, 5)
	z := djangodb.EncodeResponse([]byte("\x80\x02K\x05."))
	raw, _ := base64.StdEncoding.DecodeString(z)
	cases := []struct {
		name, input string // "-": no input row
		message     string // "": started
	}{
		{"good", input("good"), ""},
		{"bad base64", "this is not base64!", "Incorrect padding"},
		{"not zlib", base64.StdEncoding.EncodeToString([]byte("plain text, not zlib")), "Error -3 while decompressing data: incorrect header check"},
		{"truncated zlib", base64.StdEncoding.EncodeToString(raw[:len(raw)-3]), "Error -5 while decompressing data: incomplete or truncated stream"},
		{"empty", "", "Error -5 while decompressing data: incomplete or truncated stream"},
		{"no input row", "-", "Input matching query does not exist."},
		{"data after the padding", z + "QUJDRA==", ""},
		{"broken pickle", djangodb.EncodeResponse([]byte("\x80\x02K")), ""},
	}
	ids := make([]int64, len(cases))
	for i, c := range cases {
		ids[i] = e.enqueue("Bad", c.name, "")
		if c.input == "-" {
			e.exec(`DELETE FROM processes_input WHERE instance_id = $1`, ids[i])
		} else {
			e.exec(`UPDATE processes_input SET input = $1 WHERE instance_id = $2`, c.input, ids[i])
		}
	}
	got := e.claimAll(len(cases), "msg")
	if !slices.Equal(startedIDs(got), ids) {
		t.Fatalf("claim = %v, want every task in queue order %v", startedIDs(got), ids)
	}
	s := e.dump()
	for i, c := range cases {
		st, sh := got[i], e.shapeOf(s, ids[i])
		if c.message == "" {
			if st.Undecodable != nil || sh.Status != int64(djangodb.Running) || !slices.Equal(sh.Logs, []string{"1:", "2:msg", "3:msg"}) {
				t.Errorf("%s: %+v, rows %+v; want it started", c.name, st, sh)
			}
			continue
		}
		if st.Undecodable == nil || st.Undecodable.Error() != c.message || st.Type != "Bad" || st.Identifier != c.name {
			t.Errorf("%s: claimed %+v, want Undecodable %q with its reference", c.name, st, c.message)
		}
		if want := []string{"1:", "2:msg", "6:" + c.message}; sh.Status != int64(djangodb.Failed) || !slices.Equal(sh.Logs, want) || len(sh.Tasks) != 0 {
			t.Errorf("%s: rows %+v, want FAILED with log %q and no task row", c.name, sh, want)
		}
	}
}

// completionCase is one task's way from RUNNING (left by Claim) to an end.
type completionCase struct {
	name   string
	before func(id int64) // after the claim, as a producer or handler might
	c      djangodb.Completion
	// single does the same with the single-task methods.
	single     func(id int64)
	wantStatus djangodb.Status
	wantWrote  bool
	// wantDiscard is the fence's reason when the completion must be
	// dropped; single then writes what is left without it.
	wantDiscard string
}

func completionCases(e *env) []completionCase {
	t := e.t
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	finish := func(id int64) {
		t.Helper()
		_, err := e.store.FinishIfNotFinished(e.ctx, id, "")
		must(err)
	}
	resp := func(id int64, data, mime string) {
		t.Helper()
		must(e.store.SetResponse(e.ctx, id, []byte(data), mime))
	}
	return []completionCase{
		{
			name:       "demo handler",
			c:          djangodb.Completion{Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("15.0"), "text/plain")}, Outcome: djangodb.OutcomeFinish},
			single:     func(id int64) { resp(id, "15.0", "text/plain"); finish(id) },
			wantStatus: djangodb.Finished, wantWrote: true,
		},
		{
			name:       "finish without writes",
			c:          djangodb.Completion{Outcome: djangodb.OutcomeFinish, Message: "done"},
			single:     func(id int64) { _, err := e.store.FinishIfNotFinished(e.ctx, id, "done"); must(err) },
			wantStatus: djangodb.Finished, wantWrote: true,
		},
		{
			name: "handler set FAILED, finish leaves it",
			c: djangodb.Completion{Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Failed, "Input must be a sequence of numbers!")},
				Outcome: djangodb.OutcomeFinish},
			single:     func(id int64) { e.setStatus(id, djangodb.Failed, "Input must be a sequence of numbers!"); finish(id) },
			wantStatus: djangodb.Failed,
		},
		{
			name: "handler set FINISHED itself",
			c: djangodb.Completion{Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Finished, "early")},
				Outcome: djangodb.OutcomeFinish},
			single:     func(id int64) { e.setStatus(id, djangodb.Finished, "early"); finish(id) },
			wantStatus: djangodb.Finished,
		},
		{
			name:       "handler error",
			c:          djangodb.Completion{Outcome: djangodb.OutcomeFail, Message: "KeyError: \"missing ['k']\""},
			single:     func(id int64) { e.setStatus(id, djangodb.Failed, "KeyError: \"missing ['k']\"") },
			wantStatus: djangodb.Failed, wantWrote: true,
		},
		{
			name: "fail after the handler finished",
			c: djangodb.Completion{Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Finished, "")},
				Outcome: djangodb.OutcomeFail, Message: "late"},
			single:     func(id int64) { e.setStatus(id, djangodb.Finished, ""); e.setStatus(id, djangodb.Failed, "late") },
			wantStatus: djangodb.Failed, wantWrote: true,
		},
		{
			name: "pause, resume, two responses, finish",
			c: djangodb.Completion{Writes: []djangodb.Write{
				djangodb.StatusWrite(djangodb.Paused, "waiting"),
				djangodb.ResponseWrite([]byte("<a/>"), "text/xml"),
				djangodb.StatusWrite(djangodb.Running, "resumed"),
				djangodb.ResponseWrite([]byte{0, 1, 2, 255}, "application/octet-stream"),
			}, Outcome: djangodb.OutcomeFinish},
			single: func(id int64) {
				e.setStatus(id, djangodb.Paused, "waiting")
				resp(id, "<a/>", "text/xml")
				e.setStatus(id, djangodb.Running, "resumed")
				resp(id, "\x00\x01\x02\xff", "application/octet-stream")
				finish(id)
			},
			wantStatus: djangodb.Finished, wantWrote: true,
		},
		{
			name: "flush only",
			c: djangodb.Completion{Writes: []djangodb.Write{
				djangodb.ResponseWrite([]byte("partial"), "text/plain"),
				djangodb.StatusWrite(djangodb.Paused, "p"),
			}},
			single:     func(id int64) { resp(id, "partial", "text/plain"); e.setStatus(id, djangodb.Paused, "p") },
			wantStatus: djangodb.Paused,
		},
		{
			name:       "flush of nothing",
			c:          djangodb.Completion{},
			single:     func(int64) {},
			wantStatus: djangodb.Running,
		},
		{
			name: "replaces a response stored before",
			before: func(id int64) {
				resp(id, "old", "text/plain")
			},
			c:          djangodb.Completion{Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("new"), "text/csv")}, Outcome: djangodb.OutcomeFinish},
			single:     func(id int64) { resp(id, "new", "text/csv"); finish(id) },
			wantStatus: djangodb.Finished, wantWrote: true,
		},
		{
			// The run no longer owns an instance someone else ended: its
			// writes are dropped, as Release would drop its re-enqueue.
			name:       "producer stopped it while it ran",
			before:     func(id int64) { e.setStatus(id, djangodb.Finished, "stopped by producer") },
			c:          djangodb.Completion{Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("x"), "text/plain")}, Outcome: djangodb.OutcomeFinish},
			single:     func(int64) {},
			wantStatus: djangodb.Finished, wantDiscard: djangodb.DiscardEnded,
		},
		{
			name:       "producer re-enqueued it while it ran",
			before:     func(id int64) { e.reenqueue(id, "again") },
			c:          djangodb.Completion{Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Running, "50%")}, Outcome: djangodb.OutcomeFinish},
			single:     func(int64) {},
			wantStatus: djangodb.Accepted, wantDiscard: djangodb.DiscardRequeued,
		},
		{
			name:   "response after the run's own SetSuccess",
			before: func(id int64) { e.setStatus(id, djangodb.Finished, "done early") },
			c: djangodb.Completion{Ended: djangodb.Finished, Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("late"), "text/plain")},
				Outcome: djangodb.OutcomeFinish},
			single:     func(id int64) { resp(id, "late", "text/plain"); finish(id) },
			wantStatus: djangodb.Finished,
		},
	}
}

// testCompleteEqualsSingle: every completion, alone and all in one call,
// writes the rows the single-task methods write, and reports what it did.
func testCompleteEqualsSingle(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	cases := completionCases(e)
	for _, together := range []bool{false, true} {
		t.Run(fmt.Sprintf("one_call=%t", together), func(t *testing.T) {
			var singles, batched []int64
			for i := range cases {
				singles = append(singles, e.enqueue("Seq", fmt.Sprintf("s%t%d", together, i), ""))
				batched = append(batched, e.enqueue("Seq", fmt.Sprintf("b%t%d", together, i), ""))
			}
			e.claimAll(2*len(cases), "")
			var cs []djangodb.Completion
			for i, tc := range cases {
				if tc.before != nil {
					tc.before(singles[i])
					tc.before(batched[i])
				}
				tc.single(singles[i])
				c := tc.c
				c.InstanceID, c.Starts = batched[i], 1
				cs = append(cs, c)
			}
			var res []djangodb.CompletionResult
			if together {
				var err error
				if res, err = e.store.Complete(e.ctx, cs); err != nil {
					t.Fatalf("complete %d tasks: %v", len(cs), err)
				}
			} else {
				for _, c := range cs {
					r, err := e.store.Complete(e.ctx, []djangodb.Completion{c})
					if err != nil || len(r) != 1 {
						t.Fatalf("complete %+v: %v, %v", c, r, err)
					}
					res = append(res, r[0])
				}
			}
			s := e.dump()
			// Waiting rows left by a case (a producer's re-enqueue) must
			// not be claimed by the next round.
			e.exec(`DELETE FROM processes_task`)
			for i, tc := range cases {
				want, got := e.shapeOf(s, singles[i]), e.shapeOf(s, batched[i])
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: rows after Complete:\n%+v\nafter single calls:\n%+v", tc.name, got, want)
				}
				r := res[i]
				if tc.wantDiscard != "" {
					if !isErr(r.Err, djangodb.ErrNotOwned) || r.Discarded != tc.wantDiscard || r.Wrote || !r.TimeUpdate.IsZero() {
						t.Errorf("%s: result %+v, want discarded (%s)", tc.name, r, tc.wantDiscard)
					}
					continue
				}
				if r.Err != nil || r.InstanceID != batched[i] || r.Status != tc.wantStatus || r.Wrote != tc.wantWrote {
					t.Errorf("%s: result %+v, want status %s, wrote %t", tc.name, r, tc.wantStatus, tc.wantWrote)
				}
				row, _ := s.instanceRow(batched[i])
				wroteStatus := tc.wantWrote || slices.ContainsFunc(tc.c.Writes, func(w djangodb.Write) bool { return !w.IsResponse })
				if wroteStatus != !r.TimeUpdate.IsZero() || (wroteStatus && !r.TimeUpdate.Equal(row.TimeUpdate)) {
					t.Errorf("%s: result timeUpdate %v, row %v (status written: %t)", tc.name, r.TimeUpdate, row.TimeUpdate, wroteStatus)
				}
			}
		})
	}
}

// testCompleteSkips: a deleted instance or a malformed completion is
// reported in its result and does not keep the rest from being written; an
// instance named twice gets both completions, in order.
func testCompleteSkips(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	var ids []int64
	for i := range 4 {
		ids = append(ids, e.enqueue("Seq", fmt.Sprint("t", i), ""))
	}
	e.claimAll(4, "")
	if err := e.store.Delete(e.ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	before := e.dump()
	res, err := e.store.Complete(e.ctx, []djangodb.Completion{
		{InstanceID: ids[0], Starts: 1, Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Paused, "first")}},
		{InstanceID: ids[1], Starts: 1, Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("r"), "text/plain")}, Outcome: djangodb.OutcomeFinish},
		{InstanceID: ids[2], Starts: 1, Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Status(9), "bad")}, Outcome: djangodb.OutcomeFinish},
		{InstanceID: ids[3], Starts: 1, Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("ok"), "text/plain")}, Outcome: djangodb.OutcomeFinish},
		{InstanceID: ids[0], Starts: 1, Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Running, "second")}, Outcome: djangodb.OutcomeFinish, Message: "third"},
	})
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	if len(res) != 5 {
		t.Fatalf("%d results for 5 completions", len(res))
	}
	if !isErr(res[1].Err, djangodb.ErrNotFound) || res[1].Wrote {
		t.Errorf("deleted instance: %+v, want ErrNotFound and nothing written", res[1])
	}
	if res[2].Err == nil || isErr(res[2].Err, djangodb.ErrNotFound) || !strings.Contains(res[2].Err.Error(), "status 9") {
		t.Errorf("unknown status: %+v, want an error naming status 9", res[2])
	}
	for _, i := range []int{0, 3, 4} {
		if res[i].Err != nil {
			t.Errorf("result %d: %v", i, res[i].Err)
		}
	}
	if res[0].Status != djangodb.Paused || res[4].Status != djangodb.Finished || !res[4].Wrote || res[3].Status != djangodb.Finished {
		t.Errorf("results %+v", res)
	}
	s := e.dump()
	if got := e.shapeOf(s, ids[0]).Logs; !slices.Equal(got, []string{"1:", "2:", "3:", "4:first", "3:second", "5:third"}) {
		t.Errorf("instance named twice: log %v", got)
	}
	if got, want := e.shapeOf(s, ids[2]), e.shapeOf(before, ids[2]); !reflect.DeepEqual(got, want) {
		t.Errorf("malformed completion wrote: %+v, was %+v", got, want)
	}
	if sh := e.shapeOf(s, ids[3]); sh.Status != int64(djangodb.Finished) || sh.Response == nil || sh.Response.Response != djangodb.EncodeResponse([]byte("ok")) {
		t.Errorf("instance completed beside a deleted one: %+v", sh)
	}
	for _, r := range s.Responses {
		if r.InstanceID == ids[1] {
			t.Errorf("response written for a deleted instance: %+v", r)
		}
	}
	if res, err := e.store.Complete(e.ctx, nil); err != nil || len(res) != 0 {
		t.Errorf("complete nothing = %v, %v", res, err)
	}
}

// testUnstorableText: messages and MIME types with invalid UTF-8 or NUL are
// stored with the bad bytes replaced by U+FFFD, on every path that writes
// them, so that the status change happens and Django can read the rows back.
func testUnstorableText(t *testing.T, e *env) {
	e.register("T", 60, -1, 2)
	id, err := e.store.Enqueue(e.ctx, "T", "t", input("t"), "enqueued \x00 here")
	if err != nil {
		t.Fatalf("enqueue with a NUL in the message: %v", err)
	}
	claimed := e.claimAll(1, "claimed \xff")
	if len(claimed) != 1 {
		t.Fatalf("claim = %+v", claimed)
	}
	tests := []struct {
		name        string
		write       func(msg string) error
		msg, stored string
	}{
		{"SetStatus invalid UTF-8", func(m string) error { return e.store.SetStatus(e.ctx, id, djangodb.Paused, m) },
			"KeyError: '\xff\xfe'", "KeyError: '\uFFFD'"},
		{"SetStatus NUL", func(m string) error { return e.store.SetStatus(e.ctx, id, djangodb.Running, m) },
			"a\x00b", "a\uFFFDb"},
		{"SetStatus valid text unchanged", func(m string) error { return e.store.SetStatus(e.ctx, id, djangodb.Paused, m) },
			"ünïcødé ✓ \U0001F600", "ünïcødé ✓ \U0001F600"},
		{"Complete write", func(m string) error {
			return e.complete1(djangodb.Completion{InstanceID: id, Starts: 1, Writes: []djangodb.Write{djangodb.StatusWrite(djangodb.Running, m)}})
		}, "bad \xc3", "bad \uFFFD"},
		{"Complete outcome", func(m string) error {
			return e.complete1(djangodb.Completion{InstanceID: id, Starts: 1, Outcome: djangodb.OutcomeFail, Message: m})
		}, "fail\x00\xff", "fail\uFFFD\uFFFD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.write(tc.msg); err != nil {
				t.Fatalf("write %q: %v", tc.msg, err)
			}
			recs := e.log(id)
			if got := recs[len(recs)-1].Message; got != tc.stored {
				t.Errorf("stored message %q, want %q", got, tc.stored)
			}
		})
	}
	if err := e.store.SetResponse(e.ctx, id, []byte{0, 0xff}, "text/\xffplain"); err != nil {
		t.Fatalf("SetResponse with a bad MIME type: %v", err)
	}
	if r, err := e.store.Response(e.ctx, id); err != nil || string(r.Data) != "\x00\xff" || r.MimeType != "text/\uFFFDplain" {
		t.Errorf("Response() = %q %q, %v", r.Data, r.MimeType, err)
	}
	// A replaced response keeps its first MIME type: start afresh, so
	// that Complete's own MIME type is the one stored.
	e.exec(`DELETE FROM processes_response WHERE instance_id = $1`, id)
	if err := e.complete1(djangodb.Completion{InstanceID: id, Starts: 1, Ended: djangodb.Failed,
		Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("r"), "a/\x00b")}}); err != nil {
		t.Fatal(err)
	}
	if r, err := e.store.Response(e.ctx, id); err != nil || r.MimeType != "a/\uFFFDb" {
		t.Errorf("Response() after Complete = %q, %v", r.MimeType, err)
	}
	recs := e.log(id)
	if recs[0].Message != "enqueued \uFFFD here" || recs[1].Message != "claimed \uFFFD" || recs[2].Message != "claimed \uFFFD" {
		t.Errorf("enqueue and claim messages stored as %q, %q, %q", recs[0].Message, recs[1].Message, recs[2].Message)
	}
	for _, l := range e.dump().Logs {
		if !utf8.ValidString(l.Message) || strings.ContainsRune(l.Message, 0) {
			t.Errorf("raw log row %d holds %q", l.ID, l.Message)
		}
	}
	var messages []string
	for _, r := range recs {
		messages = append(messages, r.Message)
	}
	e.djangoReads("T", "t", messages, "a/\uFFFDb")
}

func (e *env) complete1(c djangodb.Completion) error {
	res, err := e.store.Complete(e.ctx, []djangodb.Completion{c})
	if err != nil {
		return err
	}
	return res[0].Err
}

// djangoReads reads a task's log and response through the Django ORM
// (integration/producer.py) and checks that it gets these log messages,
// oldest first, and this MIME type.
func (e *env) djangoReads(typ, id string, logs []string, mime string) {
	e.t.Helper()
	root := testdb.RepoRoot(e.t)
	cmd := exec.Command(testdb.Python(e.t), filepath.Join(root, "integration", "producer.py"), "batch")
	cmd.Env = testdb.DjangoEnv(e.t, e.dsn, e.c)
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`["log", %q, %q]`+"\n"+`["response", %q, %q]`+"\n", typ, id, typ, id))
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("producer.py batch: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		e.t.Fatalf("producer.py batch printed %q", out)
	}
	var log struct {
		Exit   int
		Result struct {
			Records []struct{ Message string }
		}
	}
	var resp struct {
		Exit   int
		Result struct {
			MimeType string `json:"mimeType"`
		}
	}
	var got []string
	if err := json.Unmarshal([]byte(lines[0]), &log); err != nil || log.Exit != 0 {
		e.t.Errorf("Django's getTaskLog: %s (%v)", lines[0], err)
	}
	for _, r := range log.Result.Records {
		got = append(got, r.Message)
	}
	if !slices.Equal(got, logs) {
		e.t.Errorf("Django's getTaskLog messages %q, want %q", got, logs)
	}
	if err := json.Unmarshal([]byte(lines[1]), &resp); err != nil || resp.Exit != 0 || resp.Result.MimeType != mime {
		e.t.Errorf("Django's getTaskResponse: %s (%v), want MIME type %q", lines[1], err, mime)
	}
}

// testEnqueueMany: EnqueueMany writes the rows Enqueue writes, in queue
// order, ignores the queue limit, and writes nothing when it fails.
func testEnqueueMany(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	single := e.enqueue("Q", "single", "bulk")
	n := djangodb.DefaultMaxQueueSize + 6
	var tasks []djangodb.NewTask
	for i := range n {
		tasks = append(tasks, djangodb.NewTask{Identifier: fmt.Sprint("m", i), Input: input(fmt.Sprint("m", i))})
	}
	ids, err := djangodb.EnqueueMany(e.ctx, e.store, "Q", tasks, "bulk")
	if err != nil {
		t.Fatalf("enqueue %d tasks: %v", n, err)
	}
	if len(ids) != n || !slices.IsSorted(ids) || ids[0] <= single {
		t.Fatalf("ids %v, want %d rising ids after %d", ids, n, single)
	}
	s := e.dump()
	want := e.shapeOf(s, single)
	for i, id := range ids {
		if got := e.shapeOf(s, id); !reflect.DeepEqual(got, want) {
			t.Fatalf("task %d: rows %+v, Enqueue wrote %+v", i, got, want)
		}
		in, err := e.store.Instance(e.ctx, id)
		if err != nil || in.Identifier != tasks[i].Identifier || in.Type != "Q" {
			t.Fatalf("Instance(%d) = %+v, %v; want Q/%s", id, in, err, tasks[i].Identifier)
		}
		if got, err := e.store.Input(e.ctx, id); err != nil || got != tasks[i].Input {
			t.Fatalf("Input(%d) = %q, %v", id, got, err)
		}
	}
	// Queue order: the single task first, then the bulk ones in order.
	var order []int64
	for _, r := range s.Tasks {
		order = append(order, r.InstanceID)
	}
	if !slices.Equal(order, append([]int64{single}, ids...)) {
		t.Errorf("task rows in id order name %v", order)
	}

	tests := []struct {
		name  string
		typ   string
		tasks []djangodb.NewTask
		want  error
	}{
		{"existing identifier", "Q", []djangodb.NewTask{{Identifier: "new", Input: "x"}, {Identifier: "m3", Input: "x"}}, djangodb.ErrExists},
		{"identifier twice", "Q", []djangodb.NewTask{{Identifier: "twice", Input: "x"}, {Identifier: "twice", Input: "x"}}, djangodb.ErrExists},
		{"unknown type", "Nope", []djangodb.NewTask{{Identifier: "x", Input: "x"}}, djangodb.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.dump()
			if _, err := djangodb.EnqueueMany(e.ctx, e.store, tc.typ, tc.tasks, ""); !isErr(err, tc.want) {
				t.Fatalf("EnqueueMany: %v, want %v", err, tc.want)
			}
			if after := e.dump(); !reflect.DeepEqual(after, before) {
				t.Errorf("failed EnqueueMany changed rows")
			}
		})
	}
}

// testClaimWhileEnqueueing: tasks claimed while a producer enqueues keep
// their log in order: a claim must not stamp a task with times older
// than the task's own ACCEPTED record, whatever the interleaving.
func testClaimWhileEnqueueing(t *testing.T, e *env) {
	e.register("Q", 60, -1, 2)
	const n = 150
	opts := testdb.Options(e.c)
	opts.MaxQueueSize = n
	producer := e.open(opts)
	enqueued := make(chan error, 1)
	go func() {
		for i := range n {
			name := fmt.Sprint("r", i)
			if _, err := producer.Enqueue(e.ctx, "Q", name, input(name), ""); err != nil {
				enqueued <- err
				return
			}
		}
		enqueued <- nil
	}()
	var claimed []int64
	producing := true
	for len(claimed) < n {
		sts, err := e.store.Claim(e.ctx, 0x1234, 3, "")
		switch {
		case isErr(err, djangodb.ErrQueueEmpty):
			if !producing {
				t.Fatalf("queue empty after %d of %d claims", len(claimed), n)
			}
			select {
			case err := <-enqueued:
				if err != nil {
					t.Fatalf("enqueue: %v", err)
				}
				producing = false
			default:
			}
			continue
		case err != nil:
			t.Fatalf("claim: %v", err)
		}
		claimed = append(claimed, startedIDs(sts)...)
	}
	if producing {
		if err := <-enqueued; err != nil {
			t.Fatalf("enqueue: %v", err)
		}
	}
	for _, id := range claimed {
		recs := e.log(id)
		if got := statuses(recs); !slices.Equal(got, []djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running}) {
			t.Fatalf("instance %d: log by time %v, want ACCEPTED, SCHEDULED, RUNNING", id, got)
		}
		checkLogTimes(t, recs)
	}
}
