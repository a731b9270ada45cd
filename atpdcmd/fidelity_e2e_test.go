package atpdcmd

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// pointPickle is pickle.dumps(e2e_fidelity.Point with x=1, y=2, protocol 2):
// an object Go cannot represent, which the demo handler sums through its
// __iter__.
const pointPickle = "\x80\x02ce2e_fidelity\nPoint\nq\x00)\x81q\x01}q\x02(X\x01\x00\x00\x00xK\x01X\x01\x00\x00\x00yK\x02ub."

// TestE2EFidelity runs tasks whose rows the reference daemon's are known
// for (measured beside atpd) twice on PostgreSQL and SQLite: once through
// the reference (producer.py step: the tracker's dequeueTask, startTask,
// the upstream importer, stopTaskSuccessIfNotFinished or setFailure(str(e)))
// and once through the real binary (the Go demo handler, its fall-through
// to the Python one, the CPython workers). Both must end with the measured
// last log record and response. A NOT NULL violation on PostgreSQL ends in
// psycopg2's DETAIL line naming the refused row, whose id and time differ
// between the two runs: the texts must be equal but for them (see
// sameRefusal).
func TestE2EFidelity(t *testing.T) {
	for _, kind := range bothDBs {
		t.Run(kind.name, func(t *testing.T) {
			db := newE2EDB(t, kind)
			good := pickle.EncodeRaw([]byte("\x80\x02(K\x01K\x02K\x03K\x04K\x05tq\x00."))
			null := "NOT NULL constraint failed: processes_logrecord.message"
			nullMime := "NOT NULL constraint failed: processes_response.mimeType"
			if kind.pg {
				// The first line; the DETAIL line follows (sameRefusal).
				null = `null value in column "message" of relation "processes_logrecord" violates not-null constraint`
				nullMime = `null value in column "mimeType" of relation "processes_response" violates not-null constraint`
			}
			type want struct {
				typ, ident string
				input      string // stored text; "-" removes the input row
				status     int
				message    string
				response   string
				mime       string
			}
			wants := []want{
				// 6: the Go demo cannot represent a Point; the Python demo sums it.
				{"SequenceSum", "point", pickle.EncodeRaw([]byte(pointPickle)), 5, "", "3.0", "text/plain"},
				// 1: data after the padding, in the Go demo and in Python.
				{"SequenceSum", "padded", good + "QUJDRA==", 5, "", "15.0", "text/plain"},
				{"PySum", "padded", good + "QUJDRA==", 5, "", "15.0", "text/plain"},
				// 2: inputs that do not decode, Go and Python alike.
				{"SequenceSum", "base64", "this is not base64!", 6, "Incorrect padding", "", ""},
				{"PySum", "base64", "this is not base64!", 6, "Incorrect padding", "", ""},
				{"SequenceSum", "zlib", base64.StdEncoding.EncodeToString([]byte("plain text, not zlib")), 6, "Error -3 while decompressing data: incorrect header check", "", ""},
				{"PySum", "empty", "", 6, "Error -5 while decompressing data: incomplete or truncated stream", "", ""},
				{"SequenceSum", "noinput", "-", 6, "Input matching query does not exist.", "", ""},
				{"PySum", "noinput", "-", 6, "Input matching query does not exist.", "", ""},
				// 3: handler paths that do not import.
				{"NoDots", "n", good, 6, "Empty module name", "", ""},
				{"TrailingDot", "d", good, 6, "module 'e2e_fidpkg.mod' has no attribute ''", "", ""},
				{"Module", "m", good, 6, "'module' object is not callable", "", ""},
				// 4: a long message, whole.
				{"Long", "l", good, 6, strings.Repeat("x", 70000), "", ""},
				// 5: setSuccess(None), and a replaced response's MIME type.
				{"NoneSuccess", "s", good, 6, null, "", ""},
				{"NoneMime", "s", good, 6, nullMime, "", ""},
				// storeResponse(r, None) over a stored response (see enqueue):
				// setTaskResponse updates it and keeps its MIME type.
				{"NoneMimeOver", "s", good, 5, "", "15.0", "text/plain"},
				{"Twice", "t", good, 5, "", "second", "text/plain"},
			}
			db.batch(
				[]string{"register", "SequenceSum", "tools.atp_demo.handler", "--timeout", "60"},
				// The Python demo under another path, which no Go handler replaces.
				[]string{"register", "PySum", "e2e_fidelity.demo", "--timeout", "60"},
				[]string{"register", "NoDots", "nodots", "--timeout", "60"},
				[]string{"register", "TrailingDot", "e2e_fidpkg.mod.", "--timeout", "60"},
				[]string{"register", "Module", "e2e_fidpkg.mod", "--timeout", "60"},
				[]string{"register", "Long", "e2e_fidelity.long_message", "--timeout", "60"},
				[]string{"register", "NoneSuccess", "e2e_fidelity.none_success", "--timeout", "60"},
				[]string{"register", "NoneMime", "e2e_fidelity.none_mime", "--timeout", "60"},
				[]string{"register", "NoneMimeOver", "e2e_fidelity.none_mime", "--timeout", "60"},
				[]string{"register", "Twice", "e2e_fidelity.store_twice", "--timeout", "60"},
			)
			// enqueue gives every case an instance suffix+ident with its input.
			enqueue := func(suffix string) {
				var cmds [][]string
				for _, w := range wants {
					cmds = append(cmds, []string{"enqueue", w.typ, suffix + w.ident, "--literal", "None"})
				}
				db.batch(cmds...)
				for _, w := range wants {
					q := `UPDATE processes_input SET input = ? WHERE instance_id = (SELECT i.id FROM processes_instance i
						JOIN processes_type t ON t.id = i.type_id WHERE t.identifier = ? AND i.identifier = ?)`
					args := []any{w.input, w.typ, suffix + w.ident}
					if w.input == "-" {
						q, args = `DELETE FROM processes_input WHERE instance_id = (SELECT i.id FROM processes_instance i
							JOIN processes_type t ON t.id = i.type_id WHERE t.identifier = ? AND i.identifier = ?)`, args[1:]
					}
					if n := db.Exec(q, args...); n != 1 {
						t.Fatalf("%s::%s: input rows changed %d, want 1", w.typ, suffix+w.ident, n)
					}
					if w.typ == "NoneMimeOver" {
						// An earlier run's response: base64(zlib(b"earlier")).
						db.Exec(`INSERT INTO processes_response (instance_id, response, "mimeType") VALUES (?, ?, 'text/plain')`,
							db.instanceID(w.typ, suffix+w.ident), pickle.EncodeRaw([]byte("earlier")))
					}
				}
			}

			// The reference, one step per task, with the handlers on its path.
			enqueue("ref-")
			ref := *db.Producer
			ref.Env = nil
			for _, kv := range db.Env {
				if strings.HasPrefix(kv, "PYTHONPATH=") {
					kv += string(os.PathListSeparator) + db.hdlDir
				}
				ref.Env = append(ref.Env, kv)
			}
			var steps [][]any
			for range wants {
				steps = append(steps, []any{"step", "7"})
			}
			e2e.MustBatch(&ref, steps...)

			// atpd.
			enqueue("")
			p := startAtpd(t, "fidelity", baseEnv(), db.daemonArgs("-p", db.dir, "-n", "2")...)
			for _, w := range wants {
				waitTerminal(t, db, w.typ, w.ident, time.Minute)
			}

			for _, w := range wants {
				if kind.pg && strings.HasPrefix(w.typ, "None") && w.status == 6 {
					db.sameRefusal(w.typ, w.ident, w.message)
				}
				for _, side := range []string{"ref-", ""} {
					who := "atpd"
					if side != "" {
						who = "reference"
					}
					recs := db.taskLog(w.typ, side+w.ident)
					wantStatuses := []int{1, 2, 3, w.status}
					if strings.HasPrefix(w.message, "Error -") || w.message == "Incorrect padding" || w.message == "Input matching query does not exist." {
						wantStatuses = []int{1, 2, 6} // startTask failed before it saved RUNNING
					}
					if got := statuses(recs); !slices.Equal(got, wantStatuses) {
						t.Errorf("%s: %s::%s log statuses %v, want %v", who, w.typ, w.ident, got, wantStatuses)
						continue
					}
					msg, wantMsg := recs[len(recs)-1].Message, w.message
					if kind.pg && strings.HasPrefix(w.typ, "None") && w.status == 6 {
						msg, _, _ = strings.Cut(msg, "\n") // sameRefusal compared the rest
					}
					if msg != wantMsg {
						t.Errorf("%s: %s::%s ended with %.100q, want %.100q", who, w.typ, w.ident, msg, wantMsg)
					}
					if w.response == "" {
						continue
					}
					var resp struct {
						Text     string `json:"text"`
						MimeType string `json:"mimeType"`
					}
					if err := json.Unmarshal(db.producer("response", w.typ, side+w.ident), &resp); err != nil || resp.Text != w.response || resp.MimeType != w.mime {
						t.Errorf("%s: %s::%s response %q %s (%v), want %q %s", who, w.typ, w.ident, resp.Text, resp.MimeType, err, w.response, w.mime)
					}
				}
			}
			p.signal(syscall.SIGINT)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
		})
	}
}

// sameRefusal compares the last log messages of typ::ident as the
// reference and atpd wrote them, NOT NULL violations on PostgreSQL: the
// first line is head, and psycopg2's DETAIL line names the refused row.
// Its id, time and instance differ between the runs; the texts must be
// equal but for them (testdb.MaskFailingRow), the instance must be the
// task's own and the id one the table's sequence handed out (not above its
// last value) that no row has.
func (d *e2eDB) sameRefusal(typ, ident, head string) {
	d.t.Helper()
	table := "processes_logrecord"
	if !strings.Contains(head, `"`+table+`"`) {
		table = "processes_response"
	}
	var masked [2]string
	for i, side := range []string{"ref-", ""} {
		inst := d.instanceID(typ, side+ident)
		recs := d.taskLog(typ, side+ident)
		if len(recs) == 0 {
			d.t.Errorf("%s::%s: no log records", typ, side+ident)
			return
		}
		msg := recs[len(recs)-1].Message
		m, id, ok := testdb.MaskFailingRow(msg, int64(inst))
		if !ok || !strings.HasPrefix(m, head+"\nDETAIL:  ") {
			d.t.Errorf("%s::%s ended with %q, want %q and psycopg2's DETAIL line naming a row of instance %d", typ, side+ident, msg, head, inst)
			return
		}
		masked[i] = m
		if n := d.queryInt(`SELECT count(*) FROM `+table+` WHERE id = ?`, id); n != 0 {
			d.t.Errorf("%s::%s: the refused row's id %d is a row of %s", typ, side+ident, id, table)
		}
		if last := d.queryInt(`SELECT pg_sequence_last_value(pg_get_serial_sequence('` + table + `', 'id')::regclass)`); int64(last) < id || id < 1 {
			d.t.Errorf("%s::%s: the refused row's id %d is not one %s's sequence handed out (its last value %d)", typ, side+ident, id, table, last)
		}
	}
	if masked[0] != masked[1] {
		d.t.Errorf("%s::%s: atpd's refusal %q, the reference's %q (ID, TIME, INSTANCE masked)", typ, ident, masked[1], masked[0])
	}
}

// instanceID returns the id of the instance typ::ident.
func (d *e2eDB) instanceID(typ, ident string) int {
	d.t.Helper()
	return d.queryInt(`SELECT i.id FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
		WHERE t.identifier = ? AND i.identifier = ?`, typ, ident)
}
