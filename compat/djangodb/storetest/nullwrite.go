package storetest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// testWriteNull: the write the tracker made with a handler's None (the
// log record of setSuccess(None), the response row of storeResponse(r,
// None)) is refused by the NOT NULL column with the words the original's
// Python read, and leaves no row behind; over a stored response, which the
// tracker updated instead, it is taken (and not made either). On PostgreSQL the failing row
// names an id the sequence handed out (the next real row gets the one
// after it), the time with the session's offset, and the instance.
func testWriteNull(t *testing.T, e *env) {
	e.register("Seq", 60, -1, 2)
	tests := []struct {
		name   string
		w      djangodb.Write
		table  string
		column string
		// row is the failing row between its id and its instance, on
		// PostgreSQL: %t the time; "" when the database takes the write.
		row string
		// prior: the instance has a response row, which the tracker
		// updated instead of inserting one.
		prior bool
	}{
		{"setSuccess", djangodb.StatusWrite(djangodb.Finished, "ignored"), "processes_logrecord", "message", "%t, 5, null", false},
		{"setPaused", djangodb.StatusWrite(djangodb.Paused, ""), "processes_logrecord", "message", "%t, 4, null", false},
		{"storeResponse", djangodb.ResponseWrite([]byte("15.0"), "ignored"), "processes_response", "mimeType", "eJwzNNUzAAAB8wDF, null", false},
		{"storeResponse over a response", djangodb.ResponseWrite([]byte("15.0"), "ignored"), "processes_response", "mimeType", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := e.running("Seq", tc.name)
			if tc.prior {
				if err := e.store.SetResponse(e.ctx, id, []byte("earlier"), "text/plain"); err != nil {
					t.Fatal(err)
				}
			}
			before := e.dump()
			began := time.Now()
			text, err := djangodb.WriteNull(e.ctx, wrapped{e.store}, id, tc.w)
			if err != nil {
				t.Fatalf("WriteNull(%d, %s): %v", id, tc.w, err)
			}
			if after := e.dump(); !reflect.DeepEqual(after, before) {
				t.Errorf("WriteNull changed rows:\n%+v\nwant\n%+v", after, before)
			}
			if tc.row == "" {
				if text != "" {
					t.Errorf("WriteNull = %q, want \"\": the database takes it", text)
				}
				return
			}
			if e.h.Name != "postgres" {
				if want := "NOT NULL constraint failed: " + tc.table + "." + tc.column; text != want {
					t.Errorf("WriteNull = %q, want %q", text, want)
				}
				return
			}
			offset := "+00"
			if !e.c.UseTZ && e.c.TimeZone != "" {
				loc, err := time.LoadLocation(e.c.TimeZone)
				if err != nil {
					t.Fatal(err)
				}
				offset = began.In(loc).Format("-07")
			}
			row := strings.ReplaceAll(tc.row, "%t", "TIME"+offset)
			want := `null value in column "` + tc.column + `" of relation "` + tc.table + `" violates not-null constraint` +
				"\nDETAIL:  Failing row contains (ID, " + row + ", INSTANCE).\n"
			masked, rowID, ok := testdb.MaskFailingRow(text, id)
			if !ok || masked != want {
				t.Fatalf("WriteNull = %q, want the form %q (instance %d)", text, want, id)
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
