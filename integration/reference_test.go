package integration

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var timeColumns = map[string]bool{"time": true, "timeInsert": true, "timeUpdate": true}

// TestProducerReproducesReferenceRows runs the scripted reference run of
// testdata/reference-rows/README.md through producer.py (tracker.py on the
// Django ORM) and checks that it leaves exactly the reference rows, up to
// the timestamps, whose form is checked instead. This is what makes
// tracker.py a faithful stand-in for EOxServer's producers in other tests.
func TestProducerReproducesReferenceRows(t *testing.T) {
	script := readScript(t, filepath.Join("testdata", "reference-run.jsonl"))
	for _, c := range dbCases {
		t.Run(c.name, func(t *testing.T) {
			p := newProducer(t, c.newDB(t), c.cfg)
			before := time.Now().Add(-time.Second)
			p.mustBatch(script)
			got := p.dump()
			after := time.Now().Add(time.Second)
			want := readJSONFile[rows](t, filepath.Join("testdata", "reference-rows", c.reference))

			if len(got) != len(want) {
				t.Errorf("tables = %d, want %d", len(got), len(want))
			}
			for table, wantRows := range want {
				gotRows := got[table]
				if len(gotRows) != len(wantRows) {
					t.Errorf("%s: %d rows, want %d:\n got %v\nwant %v", table, len(gotRows), len(wantRows), gotRows, wantRows)
					continue
				}
				for i := range wantRows {
					g, w := withoutTimes(t, c, table, gotRows[i], before, after), withoutTimes(t, c, table, wantRows[i], time.Time{}, time.Time{})
					if !reflect.DeepEqual(g, w) {
						t.Errorf("%s row %d = %v, want %v", table, i, g, w)
					}
				}
			}
			checkLogOrder(t, c, got["processes_logrecord"])
		})
	}
}

// withoutTimes returns row without its timestamp columns, checking their
// form first and, when from is set, that they lie between from and to.
func withoutTimes(t *testing.T, c dbCase, table string, row map[string]any, from, to time.Time) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range row {
		if !timeColumns[k] {
			out[k] = v
			continue
		}
		out[k] = nil // present, compared below by form, not value
		if from.IsZero() {
			continue // a reference row: recorded at another time
		}
		s, ok := v.(string)
		if !ok {
			t.Errorf("%s.%s = %v (%T), want text", table, k, v, v)
			continue
		}
		ts, err := storedTime(t, c, s)
		if err != nil {
			t.Errorf("%s.%s: %v", table, k, err)
			continue
		}
		if ts.Before(from) || ts.After(to) {
			t.Errorf("%s.%s = %s (%s), want between %s and %s: wrong zone?", table, k, s, ts.UTC(), from.UTC(), to.UTC())
		}
	}
	return out
}

// checkLogOrder checks that each instance's log records, in insertion
// order, have increasing times, as getTaskLog's ORDER BY time needs.
func checkLogOrder(t *testing.T, c dbCase, logs []map[string]any) {
	t.Helper()
	last := map[float64]time.Time{}
	for _, r := range logs {
		inst, _ := r["instance_id"].(float64)
		s, _ := r["time"].(string)
		ts, err := storedTime(t, c, s)
		if err != nil {
			continue // reported by withoutTimes
		}
		if prev, ok := last[inst]; ok && !ts.After(prev) {
			t.Errorf("log record %v of instance %v at %s is not after the previous one (%s)", r["id"], inst, ts, prev)
		}
		last[inst] = ts
	}
}

func readScript(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		cmds = append(cmds, decodeJSON[[]string](t, sc.Bytes()))
	}
	if len(cmds) == 0 {
		t.Fatalf("%s: no commands", path)
	}
	return cmds
}
