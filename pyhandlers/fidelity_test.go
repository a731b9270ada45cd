package pyhandlers

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/compat/zlibpy"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/internal/testdb"
)

// The FAILED messages the reference daemon (EOxServer's worker over the
// tracker, Python 3.11, Django 3.2) wrote for these cases, measured beside
// atpd. They are Python's own words.
const (
	msgIncorrectPadding = "Incorrect padding"
	msgHeaderCheck      = "Error -3 while decompressing data: incorrect header check"
	msgTruncated        = "Error -5 while decompressing data: incomplete or truncated stream"
	msgNoInput          = "Input matching query does not exist."
	msgEmptyModule      = "Empty module name"
	msgNotCallable      = "'module' object is not callable"
	msgNotBytes         = "a bytes-like object is required, not 'int'"
	// setSuccess(None): the database's NOT NULL violation, as sqlite3 and
	// psycopg2 word it (psycopg2 adds a DETAIL line naming the refused row:
	// see fidelityCase.nullRow).
	msgNullSQLite   = "NOT NULL constraint failed: processes_logrecord.message"
	msgNullPostgres = `null value in column "message" of relation "processes_logrecord" violates not-null constraint`
	// storeResponse(r, None): the same for the response row (not measured:
	// what the original's setTaskResponse gives by the same path).
	msgNullMimeSQLite   = "NOT NULL constraint failed: processes_response.mimeType"
	msgNullMimePostgres = `null value in column "mimeType" of relation "processes_response" violates not-null constraint`
)

// fidelityCase is one task and the rows the reference daemon leaves.
type fidelityCase struct {
	name, handler string
	input         string // the stored input text
	noInput       bool   // the instance has no input row
	last          []logEntry
	response      string // "" when the task stores none
	mime          string
	// nullRow: the last message is a NOT NULL violation, which on
	// PostgreSQL goes on "\nDETAIL:  Failing row contains (ID, " nullRow
	// ", INSTANCE).\n" (see testdb.MaskFailingRow); nullSeq: ID is the
	// log record id the sequence handed out just before the last record's.
	nullRow string
	nullSeq bool
	// priorMime: an earlier run stored a response with this MIME type.
	priorMime string
}

// The pickle of (1, 2, 3, 4, 5) (protocol 2) and its stored form as
// Python's zlib and base64 write it.
const sum15 = "\x80\x02(K\x01K\x02K\x03K\x04K\x05tq\x00."

func fidelityCases(t *testing.T, database string) []fidelityCase {
	t.Helper()
	good := pickle.EncodeRaw([]byte(sum15))
	z := zlibpy.Compress([]byte(sum15))
	null, nullMime := msgNullSQLite, msgNullMimeSQLite
	if database == "postgresql" {
		null, nullMime = msgNullPostgres, msgNullMimePostgres
	}
	failed := func(msg string) []logEntry { return []logEntry{{djangodb.Failed, msg}} }
	finished := []logEntry{{djangodb.Finished, ""}}
	return []fidelityCase{
		// 1: data after the padding is ignored, as by base64.b64decode.
		{name: "data after the padding", handler: "tools.atp_demo.handler", input: good + "QUJDRA==", last: finished, response: "15.0", mime: "text/plain"},
		// 2: inputs that do not decode.
		{name: "bad base64", handler: "tools.atp_demo.handler", input: "this is not base64!", last: failed(msgIncorrectPadding)},
		{name: "not zlib", handler: "tools.atp_demo.handler", input: base64.StdEncoding.EncodeToString([]byte("plain text, not zlib")), last: failed(msgHeaderCheck)},
		{name: "truncated zlib", handler: "tools.atp_demo.handler", input: base64.StdEncoding.EncodeToString(z[:len(z)-3]), last: failed(msgTruncated)},
		{name: "empty input", handler: "tools.atp_demo.handler", input: "", last: failed(msgTruncated)},
		{name: "no input row", handler: "tools.atp_demo.handler", noInput: true, last: failed(msgNoInput)},
		// 3: handler paths that do not import.
		{name: "path without a dot", handler: "nodots", input: good, last: failed(msgEmptyModule)},
		{name: "path ending in a dot", handler: "fid_pkg.mod.", input: good, last: failed("module 'fid_pkg.mod' has no attribute ''")},
		{name: "path naming a module", handler: "fid_pkg.mod", input: good, last: failed(msgNotCallable)},
		// 4: a long exception message is stored whole.
		{name: "long message", handler: "fidelity_fixtures.long_message", input: good, last: failed(strings.Repeat("x", 70000))},
		// 5: TaskStatus.
		{name: "storeResponse(42)", handler: "fidelity_fixtures.store_int", input: good, last: failed(msgNotBytes)},
		{name: "setRunning(bytes)", handler: "fidelity_fixtures.bytes_running", input: good, last: []logEntry{{djangodb.Running, "b'bytes msg'"}, {djangodb.Finished, ""}}},
		{name: "setSuccess(None)", handler: "fidelity_fixtures.none_success", input: good, last: failed(null), nullRow: "TIME+00, 5, null", nullSeq: true},
		{name: "storeResponse(r, None)", handler: "fidelity_fixtures.none_mime", input: good, last: failed(nullMime), nullRow: "eJwzNNUzAAAB8wDF, null"},
		// setTaskResponse updates a stored response, keeping its MIME
		// type: the None is never written.
		{name: "storeResponse(r, None) over a response", handler: "fidelity_fixtures.none_mime", input: good, priorMime: "text/plain", last: finished, response: "15.0", mime: "text/plain"},
		{name: "dbLock", handler: "fidelity_fixtures.has_db_lock", input: good, last: finished, response: "task_id ", mime: "text/plain"},
		// A replaced response keeps its first MIME type (ATP-SPEC section 4).
		{name: "response stored twice", handler: "fidelity_fixtures.store_twice", input: good, last: finished, response: "second", mime: "text/plain"},
	}
}

// TestFidelityRows: each case on the CPython workers and on gpython, on
// SQLite and PostgreSQL, leaves the rows the reference daemon left: the
// same log records (ACCEPTED, SCHEDULED, RUNNING, then the measured ones;
// the reference decoded the input before it saved RUNNING, so its log of
// an input that does not decode lacks the RUNNING record) and response.
func TestFidelityRows(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			e := newEnvOn(t, db)
			database := map[string]string{"sqlite": "sqlite", "postgres": "postgresql"}[db]
			fid, err := filepath.Abs(filepath.Join("testdata", "fid"))
			if err != nil {
				t.Fatal(err)
			}
			logs := newLogRecorder()
			cfg := e.poolConfig(t, logs)
			cfg.PythonPath = append([]string{fid}, cfg.PythonPath...)
			cfg.Database = database
			gcfg := Config{PythonPath: []string{fid, filepath.Join(e.root, "integration")}, Workers: 1, Database: database, Logger: logs.logger()}
			em, err := NewEmbedded(gcfg)
			if err != nil {
				t.Fatal(err)
			}
			executors := []struct {
				name string
				ex   executor.Executor
			}{{"cpython", startPool(t, cfg)}, {"gpython", em}}
			for _, x := range executors {
				for i, c := range fidelityCases(t, database) {
					t.Run(x.name+"/"+c.name, func(t *testing.T) {
						typ := x.name + strconv.Itoa(i)
						e.register(t, typ, c.handler)
						e.enqueueText(t, typ, "f", c.input)
						ex := x.ex
						if c.noInput {
							ex = &noInput{ex}
						}
						o := e.runNextWith(t, ex, context.Background(), func(s executor.TaskStatus) executor.TaskStatus {
							if c.priorMime != "" {
								if err := s.StoreResponse(context.Background(), []byte("earlier"), c.priorMime); err != nil {
									t.Fatal(err)
								}
							}
							return s
						})
						want := append([]logEntry{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}}, c.last...)
						got := e.log(t, o.id)
						if c.nullRow != "" && database == "postgresql" && len(got) > 0 {
							got[len(got)-1].Message = nullRefusal(t, e, o.id, got[len(got)-1].Message, c)
						}
						if !sameLog(got, want) {
							t.Errorf("log %s\nwant %s\n(error %v)", short(got), short(want), o.err)
						}
						if c.response == "" {
							return
						}
						r := e.response(t, o.id)
						wantText := c.response
						if c.name == "dbLock" {
							wantText += strconv.FormatInt(o.id, 10)
						}
						if string(r.Data) != wantText || r.MimeType != c.mime {
							t.Errorf("response %q %s, want %q %s", r.Data, r.MimeType, wantText, c.mime)
						}
					})
				}
			}
		})
	}
}

// nullRefusal checks psycopg2's DETAIL line on the NOT NULL violation msg
// of instance id (its form c.nullRow) and returns msg without it.
func nullRefusal(t *testing.T, e *env, id int64, msg string, c fidelityCase) string {
	t.Helper()
	head, _, _ := strings.Cut(msg, "\n")
	want := head + "\nDETAIL:  Failing row contains (ID, " + c.nullRow + ", INSTANCE).\n"
	masked, rowID, ok := testdb.MaskFailingRow(msg, id)
	if !ok || masked != want {
		t.Errorf("last message %q, want the form %q (instance %d)", msg, want, id)
		return msg
	}
	if c.nullSeq {
		recs, err := e.store.Log(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if last := recs[len(recs)-1].ID; last != rowID+1 {
			t.Errorf("failing row's id %d, then the FAILED record got %d: want the one the sequence handed out before", rowID, last)
		}
	}
	return head
}

// short shortens long messages for failure output.
func short(log []logEntry) string {
	var b strings.Builder
	for _, r := range log {
		m := r.Message
		if len(m) > 80 {
			m = m[:40] + "..." + m[len(m)-20:] + " (" + strconv.Itoa(len(m)) + " bytes)"
		}
		b.WriteString("(" + strconv.Itoa(int(r.Status)) + " " + strconv.Quote(m) + ") ")
	}
	return b.String()
}
