package storetest

import (
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// pgFailingRow is PostgreSQL's NOT NULL violation as psycopg2's str()
// gives it: the message, then the DETAIL line with the refused row.
var pgFailingRow = regexp.MustCompile(`^null value in column "([^"]+)" of relation "([^"]+)" violates not-null constraint\n` +
	`DETAIL:  Failing row contains \((\d+), (.*)\)\.\n$`)

// testWriteNull: the write the tracker made with a handler's None (the
// log record of setSuccess(None), the response row of storeResponse(r,
// None)) is refused by the NOT NULL column with the words the original's
// Python read, and leaves no row behind. On PostgreSQL the failing row
// names an id the sequence handed out (the next real row gets the one
// after it), the time as the session prints it and the instance.
func testWriteNull(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	tests := []struct {
		name   string
		w      djangodb.Write
		table  string
		column string
		// row is the failing row after its id, on PostgreSQL: %t the
		// time, %i the instance.
		row string
	}{
		{"setSuccess", djangodb.StatusWrite(djangodb.Finished, "ignored"), "processes_logrecord", "message", "%t, 5, null, %i"},
		{"setPaused", djangodb.StatusWrite(djangodb.Paused, ""), "processes_logrecord", "message", "%t, 4, null, %i"},
		{"storeResponse", djangodb.ResponseWrite([]byte("15.0"), "ignored"), "processes_response", "mimeType", "eJwzNNUzAAAB8wDF, null, %i"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := e.running("Seq", tc.name)
			before := e.dump()
			began := time.Now()
			text, err := djangodb.WriteNull(e.ctx, wrapped{e.store}, id, tc.w)
			if err != nil {
				t.Fatalf("WriteNull(%d, %s): %v", id, tc.w, err)
			}
			if after := e.dump(); !reflect.DeepEqual(after, before) {
				t.Errorf("WriteNull changed rows:\n%+v\nwant\n%+v", after, before)
			}
			if e.h.Name != "postgres" {
				if want := "NOT NULL constraint failed: " + tc.table + "." + tc.column; text != want {
					t.Errorf("WriteNull = %q, want %q", text, want)
				}
				return
			}
			m := pgFailingRow.FindStringSubmatch(text)
			if m == nil || m[1] != tc.column || m[2] != tc.table {
				t.Fatalf("WriteNull = %q, want the NOT NULL violation of %s.%s with its DETAIL line", text, tc.table, tc.column)
			}
			rowID, _ := strconv.ParseInt(m[3], 10, 64)
			row := m[4]
			inst := strconv.FormatInt(id, 10)
			wantRow := regexp.QuoteMeta(tc.row)
			wantRow = regexp.MustCompile(`%t`).ReplaceAllString(wantRow, `(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?[+-]\d\d(?::\d\d)?)`)
			wantRow = regexp.MustCompile(`%i`).ReplaceAllString(wantRow, inst)
			rm := regexp.MustCompile(`^` + wantRow + `$`).FindStringSubmatch(row)
			if rm == nil {
				t.Fatalf("failing row %q, want the form %q with instance %s", row, tc.row, inst)
			}
			if len(rm) > 1 {
				at, err := time.Parse("2006-01-02 15:04:05-07", rm[1])
				if err != nil || at.Before(began.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
					t.Errorf("failing row's time %q (%v, %v), want the time of the write, %v", rm[1], at, err, began)
				}
			}
			// The next real row gets the sequence's next value.
			var next int64
			if tc.w.IsResponse {
				if err := e.store.SetResponse(e.ctx, id, []byte("x"), "text/plain"); err != nil {
					t.Fatal(err)
				}
				for _, r := range e.dump().Responses {
					if r.InstanceID == id {
						next = r.ID
					}
				}
			} else {
				e.setStatus(id, djangodb.Failed, "x")
				logs := e.dump().logsOf(id)
				next = logs[len(logs)-1].ID
			}
			if next != rowID+1 {
				t.Errorf("failing row's id %d, then a real row got %d: want the id the sequence handed out", rowID, next)
			}
		})
	}
}
