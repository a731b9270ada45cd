package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// The round-trip tests put atpd's Go store and tracker.py (the Django ORM,
// as EOxServer producers and the reference daemon use it) on the same
// database, in each of the four configurations, and check that each side
// reads exactly what the other wrote: types, inputs, statuses, log records,
// responses, queue order and timestamps to the microsecond. The sweep test
// checks that each side's time comparisons agree with the other's writes,
// which is where a wrong time zone or text form shows first.

// roundTrip is one database shared by a Go store and producer.py.
type roundTrip struct {
	t     *testing.T
	c     dbCase
	ctx   context.Context
	store djangodb.Store
	py    *producer
}

func newRoundTrip(t *testing.T, c dbCase) *roundTrip {
	t.Helper()
	dsn := c.newDB(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	t.Cleanup(cancel)
	store, err := djangodb.Open(ctx, dsn, testdb.Options(c.cfg))
	if err != nil {
		t.Fatalf("open Go store on %s: %v", djangodb.RedactDSN(dsn), err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close Go store: %v", err)
		}
	})
	return &roundTrip{t: t, c: c, ctx: ctx, store: store, py: newProducer(t, dsn, c.cfg)}
}

// JSON shapes of producer.py's output.
type (
	pyInstance struct {
		ID         int64  `json:"id"`
		Type       string `json:"type"`
		Identifier string `json:"identifier"`
		Status     int    `json:"status"`
		TimeInsert string `json:"timeInsert"`
		TimeUpdate string `json:"timeUpdate"`
	}
	pyLog struct {
		Status  int `json:"status"`
		Records []struct {
			Time    string `json:"time"`
			Status  int    `json:"status"`
			Text    string `json:"text"`
			Message string `json:"message"`
		} `json:"records"`
	}
	pyInput struct {
		Stored string `json:"stored"`
		Repr   string `json:"repr"`
	}
	pyResponse struct {
		B64      string `json:"response_b64"`
		MimeType string `json:"mimeType"`
	}
	pyStatus struct {
		Status int    `json:"status"`
		Text   string `json:"text"`
	}
	pyIDs struct {
		IDs []int64 `json:"ids"`
	}
	pyRef struct {
		ID   int64  `json:"id"`
		Task string `json:"task"`
	}
)

// ormTime parses a time producer.py printed: isoformat of the datetime the
// ORM returned, aware UTC under USE_TZ, naive TIME_ZONE wall time otherwise.
func (r *roundTrip) ormTime(s string) time.Time {
	r.t.Helper()
	var ts time.Time
	var err error
	if r.c.cfg.UseTZ {
		ts, err = time.Parse(time.RFC3339Nano, s)
		if err == nil {
			if _, off := ts.Zone(); off != 0 {
				err = fmt.Errorf("offset %ds, want UTC", off)
			}
		}
	} else {
		if strings.ContainsAny(s[10:], "+-Z") {
			err = fmt.Errorf("want a naive time")
		} else {
			ts, err = time.ParseInLocation("2006-01-02T15:04:05.999999", s, r.c.zone(r.t))
		}
	}
	if err != nil {
		r.t.Fatalf("ORM time %q (%s): %v", s, r.c.name, err)
	}
	return ts
}

// dumpText is the exact text `producer.py dump` shows for an instant Django
// stored: on SQLite the stored text, "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC or
// TIME_ZONE (ATP-SPEC.md section 7); on PostgreSQL what Django's cursor
// returns, the same with "+00:00" under USE_TZ.
func (r *roundTrip) dumpText(ts time.Time) string {
	s := ts.In(r.c.zone(r.t)).Format("2006-01-02 15:04:05")
	if us := ts.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	if r.c.postgres && r.c.cfg.UseTZ {
		s += "+00:00"
	}
	return s
}

func (r *roundTrip) instance(typ, id string) pyInstance {
	r.t.Helper()
	var v pyInstance
	r.py.run(&v, "instance", typ, id)
	return v
}

func (r *roundTrip) log(typ, id string) pyLog {
	r.t.Helper()
	var v pyLog
	r.py.run(&v, "log", typ, id)
	return v
}

func (r *roundTrip) goInstance(typ, id string) djangodb.Instance {
	r.t.Helper()
	inst, err := r.store.InstanceByIdentifier(r.ctx, typ, id)
	if err != nil {
		r.t.Fatalf("Go InstanceByIdentifier(%s, %s): %v", typ, id, err)
	}
	return inst
}

func (r *roundTrip) goLog(id int64) []djangodb.LogRecord {
	r.t.Helper()
	recs, err := r.store.Log(r.ctx, id)
	if err != nil {
		r.t.Fatalf("Go Log(%d): %v", id, err)
	}
	return recs
}

// sameLog checks that the ORM's getTaskLog and the Go store's Log agree on
// every record: status, message and instant to the microsecond.
func (r *roundTrip) sameLog(typ, ident string, id int64) ([]djangodb.LogRecord, pyLog) {
	r.t.Helper()
	goRecs, pyRecs := r.goLog(id), r.log(typ, ident)
	if len(goRecs) != len(pyRecs.Records) {
		r.t.Fatalf("%s::%s log: Go reads %d records, the ORM %d: %+v vs %+v", typ, ident, len(goRecs), len(pyRecs.Records), goRecs, pyRecs.Records)
	}
	for i, g := range goRecs {
		p := pyRecs.Records[i]
		pt := r.ormTime(p.Time)
		if int(g.Status) != p.Status || g.Message != p.Message || !g.Time.Equal(pt) {
			r.t.Errorf("%s::%s log record %d: Go reads (%s, %d, %q), the ORM (%s, %d, %q)",
				typ, ident, i, g.Time.UTC().Format(time.RFC3339Nano), g.Status, g.Message, pt.UTC().Format(time.RFC3339Nano), p.Status, p.Message)
		}
	}
	return goRecs, pyRecs
}

func statuses(recs []djangodb.LogRecord) (codes []djangodb.Status, msgs []string) {
	for _, r := range recs {
		codes = append(codes, r.Status)
		msgs = append(msgs, r.Message)
	}
	return codes, msgs
}

func (r *roundTrip) wantLog(typ, ident string, id int64, codes []djangodb.Status, msgs []string) []djangodb.LogRecord {
	r.t.Helper()
	recs, _ := r.sameLog(typ, ident, id)
	gotCodes, gotMsgs := statuses(recs)
	if !reflect.DeepEqual(gotCodes, codes) || !reflect.DeepEqual(gotMsgs, msgs) {
		r.t.Errorf("%s::%s log = %v %q, want %v %q", typ, ident, gotCodes, gotMsgs, codes, msgs)
	}
	return recs
}

// within checks that Go wrote ts between two wall-clock readings around the
// call: a timestamp written in the wrong zone lands hours away.
func within(t *testing.T, what string, ts, from, to time.Time) {
	t.Helper()
	if ts.Before(from.Truncate(time.Microsecond)) || ts.After(to) {
		t.Errorf("%s = %s, want between %s and %s", what, ts.UTC(), from.UTC(), to.UTC())
	}
}

// TestPythonWritesGoReads: rows made by tracker.py through the ORM are read
// correctly by the Go store.
func TestPythonWritesGoReads(t *testing.T) {
	for _, c := range dbCases {
		t.Run(c.name, func(t *testing.T) {
			r := newRoundTrip(t, c)
			out := r.py.mustBatch([][]string{
				{"register", "RT", "tools.atp_demo.handler", "--timeout", "60.5", "--timeret", "600", "--maxrestart", "3"},
				{"enqueue", "RT", "py1", "--literal", "(1, 2.5, 'x')", "--protocol", "2", "--message", "from python ✓"},
				{"enqueue", "RT", "py2", "--json", `{"a": [1, 2]}`},
				{"dequeue", "0x77"},
				{"start", "RT", "py1"},
				{"set-status", "RT", "py1", "PAUSED", "--message", "paused by python"},
				{"instance", "RT", "py1"},
				{"instance", "RT", "py2"},
				{"input", "RT", "py1"},
				{"input", "RT", "py2"},
			})

			typ, err := r.store.Type(r.ctx, "RT")
			if err != nil {
				t.Fatalf("Go Type(RT): %v", err)
			}
			wantType := djangodb.TaskType{ID: typ.ID, Identifier: "RT", Handler: "tools.atp_demo.handler", MaxStart: 4, Timeout: 60.5, TimeRet: 600}
			if typ != wantType {
				t.Errorf("Go Type(RT) = %+v, want %+v", typ, wantType)
			}
			if ids := decodeJSON[pyIDs](t, out[3]).IDs; len(ids) != 1 {
				t.Fatalf("python dequeue = %v, want one id", ids)
			}

			for i, want := range []struct {
				ident  string
				status djangodb.Status
				py     pyInstance
				input  pyInput
			}{
				{"py1", djangodb.Paused, decodeJSON[pyInstance](t, out[6]), decodeJSON[pyInput](t, out[8])},
				{"py2", djangodb.Accepted, decodeJSON[pyInstance](t, out[7]), decodeJSON[pyInput](t, out[9])},
			} {
				inst := r.goInstance("RT", want.ident)
				if inst.ID != want.py.ID || inst.Type != "RT" || inst.TypeID != typ.ID || inst.Status != want.status {
					t.Errorf("instance %d: Go reads %+v, want id %d, type RT (%d), status %s", i, inst, want.py.ID, typ.ID, want.status)
				}
				if ti := r.ormTime(want.py.TimeInsert); !inst.TimeInsert.Equal(ti) {
					t.Errorf("%s timeInsert: Go reads %s, the ORM %s", want.ident, inst.TimeInsert.UTC(), ti.UTC())
				}
				if tu := r.ormTime(want.py.TimeUpdate); !inst.TimeUpdate.Equal(tu) {
					t.Errorf("%s timeUpdate: Go reads %s, the ORM %s", want.ident, inst.TimeUpdate.UTC(), tu.UTC())
				}
				in, err := r.store.Input(r.ctx, inst.ID)
				if err != nil || in != want.input.Stored {
					t.Errorf("%s input: Go reads %q (%v), the ORM stored %q", want.ident, in, err, want.input.Stored)
				}
			}
			if in := decodeJSON[pyInput](t, out[8]); in.Repr != "(1, 2.5, 'x')" {
				t.Errorf("py1 input decodes to %s in Python", in.Repr)
			}

			py1 := r.goInstance("RT", "py1")
			r.wantLog("RT", "py1", py1.ID,
				[]djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Paused},
				[]string{"from python ✓", "", "", "paused by python"})

			qs, err := r.store.QueueStats(r.ctx)
			if err != nil {
				t.Fatalf("Go QueueStats: %v", err)
			}
			tasks := r.py.dump()["processes_task"]
			if qs.Waiting != 1 || len(tasks) != 1 {
				t.Fatalf("Go QueueStats = %+v, tasks %v: want py2 alone waiting", qs, tasks)
			}
			if taskTime, err := storedTime(t, c, tasks[0]["time"].(string)); err != nil || !qs.Oldest.Equal(taskTime) {
				t.Errorf("queue oldest: Go reads %s, the database holds %v (%v)", qs.Oldest.UTC(), tasks[0]["time"], err)
			}
		})
	}
}

// TestGoWritesPythonReads: rows the Go store writes are read back correctly
// by the ORM, and tracker.py can carry on with tasks the Go store touched.
func TestGoWritesPythonReads(t *testing.T) {
	for _, c := range dbCases {
		t.Run(c.name, func(t *testing.T) {
			r := newRoundTrip(t, c)
			if _, err := r.store.RegisterType(r.ctx, djangodb.TypeSpec{Identifier: "RT", Handler: "tools.atp_demo.handler", Timeout: 60, TimeRet: 600, MaxRestart: 2}); err != nil {
				t.Fatalf("Go RegisterType: %v", err)
			}
			out := r.py.mustBatch([][]string{
				{"enqueue", "RT", "a", "--literal", "(1, 2, 3)", "--protocol", "2"},
				{"enqueue", "RT", "b", "--json", "[4]"},
			})
			aStored := decodeJSON[struct {
				ID    int64  `json:"id"`
				Input string `json:"input"`
			}](t, out[0])
			written := map[int64]time.Time{} // log record id -> instant Go wrote

			// Claim, start, respond, finish: the daemon's path.
			from := time.Now()
			ids, err := djangodb.MustTrackerOf(r.store).Dequeue(r.ctx, -0x1234ABCD5678EF01, 1, "")
			if err != nil || !reflect.DeepEqual(ids, []int64{aStored.ID}) {
				t.Fatalf("Go Dequeue = %v, %v; want [%d] (oldest first)", ids, err, aStored.ID)
			}
			st, err := djangodb.MustTrackerOf(r.store).Start(r.ctx, aStored.ID, "started by go")
			if err != nil {
				t.Fatalf("Go Start: %v", err)
			}
			if st.Type != "RT" || st.Identifier != "a" || st.Handler != "tools.atp_demo.handler" || !st.HasInput || st.Input != aStored.Input {
				t.Errorf("Go Start = %+v, want RT::a with the ORM's input %q", st, aStored.Input)
			}
			within(t, "StartedAt", st.StartedAt, from, time.Now())
			if pi := r.instance("RT", "a"); pi.Status != int(djangodb.Running) || !r.ormTime(pi.TimeUpdate).Equal(st.StartedAt) {
				t.Errorf("after Go Start the ORM reads status %d, timeUpdate %s; want RUNNING at %s", pi.Status, pi.TimeUpdate, st.StartedAt.UTC())
			}
			if err := djangodb.MustTrackerOf(r.store).SetResponse(r.ctx, aStored.ID, []byte("6.0"), "text/plain"); err != nil {
				t.Fatalf("Go SetResponse: %v", err)
			}
			if done, err := djangodb.MustTrackerOf(r.store).FinishIfNotFinished(r.ctx, aStored.ID, ""); err != nil || !done {
				t.Fatalf("Go FinishIfNotFinished = %v, %v; want true", done, err)
			}
			if done, err := djangodb.MustTrackerOf(r.store).FinishIfNotFinished(r.ctx, aStored.ID, ""); err != nil || done {
				t.Errorf("second Go FinishIfNotFinished = %v, %v; want false", done, err)
			}
			to := time.Now()
			recs := r.wantLog("RT", "a", aStored.ID,
				[]djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Finished},
				[]string{"", "", "started by go", ""})
			for _, rec := range recs[1:] {
				within(t, fmt.Sprintf("log record %d", rec.ID), rec.Time, from, to)
				written[rec.ID] = rec.Time
			}
			var resp pyResponse
			r.py.run(&resp, "response", "RT", "a")
			if data, _ := base64.StdEncoding.DecodeString(resp.B64); string(data) != "6.0" || resp.MimeType != "text/plain" {
				t.Errorf("the ORM reads response %q (%s), want 6.0 (text/plain)", data, resp.MimeType)
			}

			// Re-enqueued by Go: the ORM must queue it behind b, which waited longer.
			from = time.Now()
			if err := djangodb.MustTrackerOf(r.store).Reenqueue(r.ctx, aStored.ID, "again by go"); err != nil {
				t.Fatalf("Go Reenqueue: %v", err)
			}
			out = r.py.mustBatch([][]string{{"status", "RT", "a"}, {"dequeue", "0x55"}, {"dequeue", "0x55"}})
			if s := decodeJSON[pyStatus](t, out[0]); s.Status != int(djangodb.Accepted) {
				t.Errorf("after Go Reenqueue the ORM reads status %+v, want ACCEPTED", s)
			}
			first, second := decodeJSON[pyIDs](t, out[1]).IDs, decodeJSON[pyIDs](t, out[2]).IDs
			b := r.goInstance("RT", "b")
			if !reflect.DeepEqual(first, []int64{b.ID}) || !reflect.DeepEqual(second, []int64{aStored.ID}) {
				t.Errorf("ORM dequeues %v then %v, want [%d] (b) then [%d] (a, re-enqueued by Go)", first, second, b.ID, aStored.ID)
			}

			// Status changes with messages the ORM must read back verbatim.
			for _, s := range []struct {
				status djangodb.Status
				msg    string
			}{
				{djangodb.Paused, "paused by go ✓"},
				{djangodb.Running, ""},
				{djangodb.Failed, `failed: 'quoted' "double" \ back`},
			} {
				if err := djangodb.MustTrackerOf(r.store).SetStatus(r.ctx, aStored.ID, s.status, s.msg); err != nil {
					t.Fatalf("Go SetStatus(%s): %v", s.status, err)
				}
			}
			to = time.Now()
			recs = r.wantLog("RT", "a", aStored.ID,
				[]djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Finished,
					djangodb.Accepted, djangodb.Scheduled, djangodb.Paused, djangodb.Running, djangodb.Failed},
				[]string{"", "", "started by go", "", "again by go", "", "paused by go ✓", "", `failed: 'quoted' "double" \ back`})
			for _, rec := range recs {
				if rec.Status == djangodb.Scheduled && rec.ID > recs[3].ID {
					continue // the ORM's dequeue wrote this one
				}
				if rec.ID > recs[3].ID {
					within(t, fmt.Sprintf("log record %d", rec.ID), rec.Time, from, to)
					written[rec.ID] = rec.Time
				}
			}

			// A task enqueued by Go is run by the reference daemon's steps.
			g1, err := r.store.Enqueue(r.ctx, "RT", "g1", aStored.Input, "from go")
			if err != nil {
				t.Fatalf("Go Enqueue: %v", err)
			}
			out = r.py.mustBatch([][]string{{"input", "RT", "g1"}, {"step", "0x66"}, {"response", "RT", "g1"}})
			if in := decodeJSON[pyInput](t, out[0]); in.Repr != "(1, 2, 3)" {
				t.Errorf("the ORM decodes the Go-enqueued input as %s, want (1, 2, 3)", in.Repr)
			}
			if step := decodeJSON[pyIDs](t, out[1]); !reflect.DeepEqual(step.IDs, []int64{g1}) {
				t.Errorf("reference step ran %v, want [%d]", step.IDs, g1)
			}
			if resp := decodeJSON[pyResponse](t, out[2]); resp.B64 != base64.StdEncoding.EncodeToString([]byte("6.0")) {
				t.Errorf("reference step on the Go-enqueued task responded %+v, want 6.0", resp)
			}
			recs = r.wantLog("RT", "g1", g1,
				[]djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Finished},
				[]string{"from go", "", "", ""})
			written[recs[0].ID] = recs[0].Time

			// Every timestamp Go wrote has exactly Django's stored form.
			for _, row := range r.py.dump()["processes_logrecord"] {
				id := int64(row["id"].(float64))
				ts, ok := written[id]
				if !ok {
					continue
				}
				if got, want := row["time"], r.dumpText(ts); got != want {
					t.Errorf("log record %d time stored as %q, want %q", id, got, want)
				}
				if _, err := storedTime(t, c, row["time"].(string)); err != nil {
					t.Errorf("log record %d: %v", id, err)
				}
			}

			// Go's delete leaves no row the ORM could trip over.
			if err := r.store.Delete(r.ctx, aStored.ID); err != nil {
				t.Fatalf("Go Delete: %v", err)
			}
			if _, code := r.py.runExit("status", "RT", "a"); code != 4 {
				t.Errorf("ORM status of the deleted instance: exit %d, want 4 (DoesNotExist)", code)
			}
			for table, rows := range r.py.dump() {
				for _, row := range rows {
					if v, ok := row["instance_id"]; ok && int64(v.(float64)) == aStored.ID {
						t.Errorf("%s row %v of deleted instance %d remains", table, row["id"], aStored.ID)
					}
				}
			}
		})
	}
}

// TestSweepsAgreeAcrossImplementations: each side's zombie and retirement
// sweeps read the other side's timestamps as the instants they are. A
// timestamp in the wrong zone or text form would look hours old (or new) to
// the other side and be swept (or not) wrongly.
func TestSweepsAgreeAcrossImplementations(t *testing.T) {
	const ancient = "2020-01-01T00:00:00" // naive: Django reads it in TIME_ZONE
	for _, c := range dbCases {
		t.Run(c.name, func(t *testing.T) {
			r := newRoundTrip(t, c)
			r.py.mustBatch([][]string{
				{"register", "Z", "tools.atp_demo.handler", "--timeout", "60", "--timeret", "600", "--maxrestart", "2"},
				{"enqueue", "Z", "old", "--json", "[1]"},
				{"enqueue", "Z", "fresh", "--json", "[2]"},
				{"dequeue", "1"}, {"start", "Z", "old"},
				{"dequeue", "1"}, {"start", "Z", "fresh"},
				{"age", "Z", "old", "--time-update", ancient},
			})
			old, fresh := r.goInstance("Z", "old"), r.goInstance("Z", "fresh")

			// Go sweeps what the ORM aged, and only that.
			res, err := r.store.SweepZombies(r.ctx, djangodb.MsgZombieReenqueued)
			if err != nil {
				t.Fatalf("Go SweepZombies: %v", err)
			}
			wantRef := []djangodb.InstanceRef{{ID: old.ID, Type: "Z", Identifier: "old"}}
			if !reflect.DeepEqual(res.Reenqueued, wantRef) || len(res.Failed) != 0 || len(res.Unstuck) != 0 {
				t.Errorf("Go SweepZombies = %+v, want only %v re-enqueued", res, wantRef)
			}
			r.wantLog("Z", "old", old.ID,
				[]djangodb.Status{djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Accepted},
				[]string{"", "", "", djangodb.MsgZombieReenqueued})

			// The ORM's sweep must see Go's fresh RUNNING timestamp as fresh.
			if ids, err := djangodb.MustTrackerOf(r.store).Dequeue(r.ctx, 2, 1, ""); err != nil || !reflect.DeepEqual(ids, []int64{old.ID}) {
				t.Fatalf("Go Dequeue = %v, %v; want [%d]", ids, err, old.ID)
			}
			if _, err := djangodb.MustTrackerOf(r.store).Start(r.ctx, old.ID, ""); err != nil {
				t.Fatalf("Go Start: %v", err)
			}
			var swept []pyRef
			r.py.run(&swept, "sweep")
			if len(swept) != 0 {
				t.Errorf("ORM sweep after Go Start re-enqueued %v; Go's timestamps look old to Django", swept)
			}
			if res, err := r.store.SweepZombies(r.ctx, djangodb.MsgZombieReenqueued); err != nil || len(res.Reenqueued)+len(res.Failed)+len(res.Unstuck) != 0 {
				t.Errorf("second Go SweepZombies = %+v, %v; want nothing", res, err)
			}

			// Retirement, both ways: Go deletes what the ORM aged; the ORM
			// keeps what Go has just finished.
			for _, id := range []int64{old.ID, fresh.ID} {
				if _, err := djangodb.MustTrackerOf(r.store).FinishIfNotFinished(r.ctx, id, ""); err != nil {
					t.Fatalf("Go FinishIfNotFinished(%d): %v", id, err)
				}
			}
			r.py.run(nil, "age", "Z", "fresh", "--time-update", ancient)
			retired, err := r.store.DeleteRetired(r.ctx)
			wantRef = []djangodb.InstanceRef{{ID: fresh.ID, Type: "Z", Identifier: "fresh"}}
			if err != nil || !reflect.DeepEqual(retired, wantRef) {
				t.Errorf("Go DeleteRetired = %v, %v; want %v", retired, err, wantRef)
			}
			var pyRetired []pyRef
			r.py.run(&pyRetired, "retire")
			if len(pyRetired) != 0 {
				t.Errorf("ORM retire deleted %v, which Go finished just now", pyRetired)
			}
			out := r.py.batch([][]string{{"status", "Z", "fresh"}, {"status", "Z", "old"}})
			if out[0].Exit != 4 {
				t.Errorf("ORM status of the retired instance: %+v, want exit 4", out[0])
			}
			if s := decodeJSON[pyStatus](t, out[1].Result); out[1].Exit != 0 || s.Status != int(djangodb.Finished) {
				t.Errorf("ORM status of the kept instance: %+v, want FINISHED", out[1])
			}
		})
	}
}
