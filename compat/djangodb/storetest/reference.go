package storetest

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// referenceRows holds /work/shared/reference-rows: every row after one
// scripted run of the reference tracker and daemon steps (see its README).
//
//go:embed testdata/reference-rows/*.json
var referenceRows embed.FS

// loadReference parses one reference file into a Snapshot. Its timestamps
// are text as the driver returned it: with a UTC offset from PostgreSQL,
// naive from SQLite (read as UTC, which keeps their order within a file).
func loadReference(name string) (Snapshot, error) {
	var s Snapshot
	raw, err := referenceRows.ReadFile(path.Join("testdata/reference-rows", name))
	if err != nil {
		return s, err
	}
	var f struct {
		Types []struct {
			ID               int64
			Identifier       string
			Handler          string
			MaxStart         int64 `json:"maxstart"`
			Timeout, TimeRet float64
		} `json:"processes_type"`
		Instances []struct {
			ID                     int64
			TypeID                 int64 `json:"type_id"`
			Identifier             string
			TimeInsert, TimeUpdate string
			Status                 int64
		} `json:"processes_instance"`
		Tasks []struct {
			ID, Lock   int64
			InstanceID int64 `json:"instance_id"`
			Time       string
		} `json:"processes_task"`
		Logs []struct {
			ID, Status int64
			InstanceID int64 `json:"instance_id"`
			Time       string
			Message    string
		} `json:"processes_logrecord"`
		Inputs []struct {
			ID         int64
			InstanceID int64 `json:"instance_id"`
			Input      string
		} `json:"processes_input"`
		Responses []struct {
			ID         int64
			InstanceID int64 `json:"instance_id"`
			Response   string
			MimeType   string `json:"mimeType"`
		} `json:"processes_response"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return s, fmt.Errorf("%s: %w", name, err)
	}
	var bad error
	tm := func(text string) time.Time {
		for _, layout := range []string{"2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999"} {
			if t, err := time.Parse(layout, text); err == nil {
				return t.UTC()
			}
		}
		bad = fmt.Errorf("%s: unparsable time %q", name, text)
		return time.Time{}
	}
	for _, r := range f.Types {
		s.Types = append(s.Types, TypeRow{r.ID, r.Identifier, r.Handler, r.MaxStart, r.Timeout, r.TimeRet})
	}
	for _, r := range f.Instances {
		s.Instances = append(s.Instances, InstanceRow{r.ID, r.TypeID, r.Identifier, tm(r.TimeInsert), tm(r.TimeUpdate), r.Status})
	}
	for _, r := range f.Tasks {
		s.Tasks = append(s.Tasks, TaskRow{r.ID, r.InstanceID, tm(r.Time), r.Lock})
	}
	for _, r := range f.Logs {
		s.Logs = append(s.Logs, LogRow{r.ID, r.InstanceID, tm(r.Time), r.Status, r.Message})
	}
	for _, r := range f.Inputs {
		s.Inputs = append(s.Inputs, InputRow{r.ID, r.InstanceID, r.Input})
	}
	for _, r := range f.Responses {
		s.Responses = append(s.Responses, ResponseRow{r.ID, r.InstanceID, r.Response, r.MimeType})
	}
	return s, bad
}

// normalized renders a snapshot without ids and times: what must match the
// reference row for row, in id order.
func (s Snapshot) normalized() map[string][]string {
	types := map[int64]string{}
	out := map[string][]string{}
	for _, r := range s.Types {
		types[r.ID] = r.Identifier
		out["type"] = append(out["type"], fmt.Sprintf("%s handler=%s maxstart=%d timeout=%g timeret=%g", r.Identifier, r.Handler, r.MaxStart, r.Timeout, r.TimeRet))
	}
	inst := map[int64]string{}
	for _, r := range s.Instances {
		inst[r.ID] = types[r.TypeID] + "/" + r.Identifier
		out["instance"] = append(out["instance"], fmt.Sprintf("%s status=%d", inst[r.ID], r.Status))
	}
	for _, r := range s.Tasks {
		out["task"] = append(out["task"], fmt.Sprintf("%s lock=%d", inst[r.InstanceID], r.Lock))
	}
	for _, r := range s.Logs {
		out["logrecord"] = append(out["logrecord"], fmt.Sprintf("%s status=%d message=%q", inst[r.InstanceID], r.Status, r.Message))
	}
	for _, r := range s.Inputs {
		out["input"] = append(out["input"], fmt.Sprintf("%s %s", inst[r.InstanceID], r.Input))
	}
	for _, r := range s.Responses {
		out["response"] = append(out["response"], fmt.Sprintf("%s %s %s", inst[r.InstanceID], r.Response, r.MimeType))
	}
	return out
}

// checkTimeOrder asserts the order Django's saves leave in the timestamps of
// a single-threaded run: log records in id order have strictly increasing
// times; an instance's timeInsert is not after its first record; its
// timeUpdate falls between its last two records (the status save comes
// before its log record); a task row is younger than its instance's last
// record.
func checkTimeOrder(t *testing.T, label string, s Snapshot) {
	t.Helper()
	for i := 1; i < len(s.Logs); i++ {
		if !s.Logs[i].Time.After(s.Logs[i-1].Time) {
			t.Errorf("%s: log record %d at %v is not after record %d at %v", label, s.Logs[i].ID, s.Logs[i].Time, s.Logs[i-1].ID, s.Logs[i-1].Time)
		}
	}
	for _, in := range s.Instances {
		logs := s.logsOf(in.ID)
		if len(logs) == 0 {
			t.Errorf("%s: instance %+v has no log", label, in)
			continue
		}
		last := logs[len(logs)-1]
		if in.TimeInsert.After(logs[0].Time) || !in.TimeUpdate.Before(last.Time) {
			t.Errorf("%s: instance %s times %v/%v, its log runs %v..%v", label, in.Identifier, in.TimeInsert, in.TimeUpdate, logs[0].Time, last.Time)
		}
		if len(logs) > 1 && !in.TimeUpdate.After(logs[len(logs)-2].Time) {
			t.Errorf("%s: instance %s timeUpdate %v not after its second-last record at %v", label, in.Identifier, in.TimeUpdate, logs[len(logs)-2].Time)
		}
	}
	for _, task := range s.Tasks {
		logs := s.logsOf(task.InstanceID)
		if len(logs) == 0 || !task.Time.After(logs[len(logs)-1].Time) {
			t.Errorf("%s: task row %+v not after its instance's last log record", label, task)
		}
	}
}

// testReferenceRun replays the reference run of reference-rows/README.md
// through the store and compares every row with each reference file.
func testReferenceRun(t *testing.T, e *env) {
	inputs := map[string]string{}
	ref, err := loadReference("postgresql-usetz-true.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ref.Inputs {
		for _, in := range ref.Instances {
			if in.ID == r.InstanceID {
				inputs[in.Identifier] = r.Input
			}
		}
	}
	// "notnum" is deleted by the run, so no file holds its pickled input;
	// any text serves, the store never decodes it.
	inputs["notnum"] = input("notnum")

	// 1. Types.
	for _, spec := range []djangodb.TypeSpec{
		{Identifier: "SequenceSum", Handler: "tools.atp_demo.handler", Timeout: 60, TimeRet: 600, MaxRestart: 2},
		{Identifier: "Raiser", Handler: "tools.golden_handlers.raiser", Timeout: 5, TimeRet: -1, MaxRestart: 1},
	} {
		if _, err := e.store.RegisterType(e.ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	// 2. Enqueue.
	ids := map[string]int64{}
	for _, q := range []struct{ typ, identifier, message string }{
		{"SequenceSum", "ok", ""},
		{"SequenceSum", "notnum", ""},
		{"Raiser", "raises", "enqueued with a message"},
		{"SequenceSum", "zombie", ""},
	} {
		id, err := e.store.Enqueue(e.ctx, q.typ, q.identifier, inputs[q.identifier], q.message)
		if err != nil {
			t.Fatal(err)
		}
		ids[q.identifier] = id
	}
	// 3. Four daemon steps; the handlers' effects as the reference daemon
	// recorded them.
	handlers := map[string]func(id int64) error{
		"ok":     func(id int64) error { return e.store.SetResponse(e.ctx, id, []byte("15.0"), "text/plain") },
		"notnum": func(int64) error { return fmt.Errorf("unsupported operand type(s) for +: 'float' and 'str'") },
		"raises": func(int64) error { return fmt.Errorf("%s", `"missing ['k']"`) },
		"zombie": func(id int64) error { return e.store.SetResponse(e.ctx, id, []byte("1.5"), "text/plain") },
	}
	for _, name := range []string{"ok", "notnum", "raises", "zombie"} {
		e.dequeue(1, ids[name])
		if _, err := e.store.Start(e.ctx, ids[name], ""); err != nil {
			t.Fatal(err)
		}
		if herr := handlers[name](ids[name]); herr != nil {
			e.setStatus(ids[name], djangodb.Failed, herr.Error())
		} else if _, err := e.store.FinishIfNotFinished(e.ctx, ids[name], ""); err != nil {
			t.Fatal(err)
		}
	}
	// 4. A zombie.
	z, err := e.store.Enqueue(e.ctx, "SequenceSum", "zombie2", inputs["zombie2"], "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.Dequeue(e.ctx, 0x5678, 1, ""); err != nil || !slices.Equal(got, []int64{z}) {
		t.Fatalf("dequeue zombie2: %v, %v", got, err)
	}
	if _, err := e.store.Start(e.ctx, z, ""); err != nil {
		t.Fatal(err)
	}
	e.setTime("processes_instance", "timeUpdate", z, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	sw, err := e.store.SweepZombies(e.ctx, djangodb.MsgZombieReenqueued)
	want := []djangodb.InstanceRef{{ID: z, Type: "SequenceSum", Identifier: "zombie2"}}
	if err != nil || !slices.Equal(sw.Reenqueued, want) || len(sw.Failed)+len(sw.Unstuck) != 0 {
		t.Fatalf("sweep = %+v, %v; want %v re-enqueued", sw, err, want)
	}
	// 5. Retirement.
	e.setTime("processes_instance", "timeUpdate", ids["notnum"], time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	gone, err := e.store.DeleteRetired(e.ctx)
	want = []djangodb.InstanceRef{{ID: ids["notnum"], Type: "SequenceSum", Identifier: "notnum"}}
	if err != nil || !slices.Equal(gone, want) {
		t.Fatalf("DeleteRetired = %v, %v; want %v", gone, err, want)
	}

	got := e.dump()
	checkTimeOrder(t, "atpd", got)
	ours := got.normalized()
	files, err := referenceRows.ReadDir("testdata/reference-rows")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(f.Name(), func(t *testing.T) {
			ref, err := loadReference(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			checkTimeOrder(t, f.Name(), ref)
			theirs := ref.normalized()
			for _, table := range []string{"type", "instance", "task", "logrecord", "input", "response"} {
				if !slices.Equal(ours[table], theirs[table]) {
					t.Errorf("processes_%s differs from the reference:\natpd:      %q\nreference: %q", table, ours[table], theirs[table])
				}
			}
		})
	}
}
