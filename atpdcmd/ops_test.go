package atpdcmd

// Tests of the operator commands (register ... queue) against databases
// Django migrated, with what they write read back by the Python producer
// API (integration/producer.py over tracker.py) and by SQL.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/internal/testdb"
	"github.com/eoxserver/atpd/web/schema"
)

// opsCase is one command line and what it must do.
type opsCase struct {
	name   string
	args   []string // after the subcommand's name; the database flags are added
	stdin  string
	code   int
	stdout []string // substrings
	stderr []string
	// json, when set, receives stdout decoded as JSON.
	json  any
	check func(t *testing.T, stdout string)
}

// runOps runs c in-process against db and checks the common expectations.
func (db *e2eDB) runOps(t *testing.T, c opsCase) string {
	t.Helper()
	args := append(slices.Clone(c.args), db.dbArgs()...)
	code, stdout, stderr := runCLI(t, c.stdin, args...)
	if code != c.code {
		t.Fatalf("atpd %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, c.code, stdout, stderr)
	}
	for _, s := range c.stdout {
		if !strings.Contains(stdout, s) {
			t.Errorf("atpd %s: stdout lacks %q:\n%s", strings.Join(c.args, " "), s, stdout)
		}
	}
	for _, s := range c.stderr {
		if !strings.Contains(stderr, s) {
			t.Errorf("atpd %s: stderr lacks %q:\n%s", strings.Join(c.args, " "), s, stderr)
		}
	}
	if c.json != nil {
		if err := json.Unmarshal([]byte(stdout), c.json); err != nil {
			t.Fatalf("atpd %s: stdout is not the JSON expected: %v\n%s", strings.Join(c.args, " "), err, stdout)
		}
	}
	if c.check != nil {
		c.check(t, stdout)
	}
	return stdout
}

// pyInput returns repr() of a task's input as Python's tracker decodes it.
func (db *e2eDB) pyInput(typ, id string) string {
	db.t.Helper()
	var out struct {
		Repr string `json:"repr"`
	}
	if err := json.Unmarshal(db.producer("input", typ, id), &out); err != nil {
		db.t.Fatal(err)
	}
	return out.Repr
}

func (db *e2eDB) count(table string) int {
	db.t.Helper()
	return db.queryInt("SELECT count(*) FROM " + table)
}

// TestOperatorCommands runs every operator command against PostgreSQL and
// SQLite migrated by Django: tables and --json, exit codes, and what a
// Python producer then finds in the database.
func TestOperatorCommands(t *testing.T) {
	for _, k := range bothDBs {
		t.Run(k.name, func(t *testing.T) {
			db := newE2EDB(t, k)
			pickleFile := filepath.Join(t.TempDir(), "input.pickle")
			// A Python 3 pickle (protocol 4) of what no JSON can say.
			p := pythonBytes(t, `import pickle, sys, datetime; sys.stdout.buffer.write(pickle.dumps(((1, 2), {3, 4}, b"\x00\xff", datetime.date(2024, 2, 29)), protocol=4))`)
			if err := os.WriteFile(pickleFile, p, 0o644); err != nil {
				t.Fatal(err)
			}
			const doc = `{"b": 1, "a": [1.5, null, true, "x\u00e9"], "big": 123456789012345678901234567890, "e": 1e3}`
			db.producer("register", "PyEcho", "tools.atp_demo.handler")
			db.producer("enqueue", "PyEcho", "ref", "--json", doc, "--protocol", "2")
			var typ schema.Type
			var enq struct {
				ID         int64  `json:"id"`
				Type       string `json:"type"`
				Identifier string `json:"identifier"`
			}
			var inst schema.Task
			var recs []struct {
				Time       string `json:"time"`
				Status     string `json:"status"`
				StatusCode int    `json:"status_code"`
				Message    string `json:"message"`
			}
			var resp struct {
				MimeType string `json:"mime_type"`
				Text     string `json:"text"`
				Base64   string `json:"base64"`
				Size     int    `json:"size"`
			}
			var list schema.TaskList
			var queue struct {
				Waiting int      `json:"waiting"`
				Limit   int      `json:"limit"`
				Full    bool     `json:"full"`
				Oldest  *string  `json:"oldest"`
				Age     *float64 `json:"oldest_age_seconds"`
			}
			responseFile := filepath.Join(t.TempDir(), "out", "response.txt")
			if err := os.MkdirAll(filepath.Dir(responseFile), 0o755); err != nil {
				t.Fatal(err)
			}

			steps := []opsCase{
				{name: "register table", args: []string{"register", "SequenceSum", "tools.atp_demo.handler", "--timeout", "60", "--timeret", "600", "--maxrestart", "3"},
					stdout: []string{"TYPE", "MAXSTART", "SequenceSum", "tools.atp_demo.handler", "60s", "600s", " 4"},
					check: func(t *testing.T, _ string) {
						n := db.queryInt(`SELECT count(*) FROM processes_type WHERE identifier = 'SequenceSum' AND handler = 'tools.atp_demo.handler' AND maxstart = 4 AND timeout = 60 AND timeret = 600`)
						if n != 1 {
							t.Errorf("processes_type has no row SequenceSum/60/600/4")
						}
					}},
				{name: "register updates, tracker rules, json", args: []string{"register", "Other", "pkg.mod.func", "--timeout", "-5", "--timeret", "0", "--maxrestart", "-1", "--json"},
					json: &typ, check: func(t *testing.T, _ string) {
						want := schema.Type{Identifier: "Other", Handler: "pkg.mod.func", Timeout: 0, TimeRet: -1, MaxStart: 1}
						if typ != want {
							t.Errorf("register --json: %+v, want %+v", typ, want)
						}
					}},
				{name: "register refuses a long identifier", args: []string{"register", strings.Repeat("x", 65), "a.b"}, code: 1,
					stderr: []string{"64"}},
				{name: "enqueue json", args: []string{"enqueue", "SequenceSum", "j1", "--input-json", "[1, 2, 3]"},
					stdout: []string{"enqueued SequenceSum::j1 (instance "},
					check: func(t *testing.T, _ string) {
						if got := db.pyInput("SequenceSum", "j1"); got != "[1, 2, 3]" {
							t.Errorf("Python reads input %s, want [1, 2, 3]", got)
						}
						if st := db.status("SequenceSum", "j1"); st != int(djangodb.Accepted) {
							t.Errorf("status %d, want ACCEPTED", st)
						}
					}},
				{name: "enqueue json from stdin as json.loads reads it", args: []string{"enqueue", "SequenceSum", "j2", "--input-json", "-", "--message", "from stdin", "--format", "json"},
					stdin: doc, json: &enq,
					check: func(t *testing.T, _ string) {
						if enq.Type != "SequenceSum" || enq.Identifier != "j2" || enq.ID == 0 {
							t.Errorf("enqueue --format json: %+v", enq)
						}
						got, want := db.pyInput("SequenceSum", "j2"), db.pyInput("PyEcho", "ref")
						if got != want {
							t.Errorf("Python reads input %s, want what json.loads gives, %s", got, want)
						}
						recs := db.taskLog("SequenceSum", "j2")
						if len(recs) != 1 || recs[0] != (logRecord{1, "from stdin"}) {
							t.Errorf("log %v, want one ACCEPTED record with the message", recs)
						}
					}},
				{name: "enqueue pickle file", args: []string{"enqueue", "SequenceSum", "p1", "--pickle-file", pickleFile},
					stdout: []string{"enqueued SequenceSum::p1"},
					check: func(t *testing.T, _ string) {
						want := `((1, 2), {3, 4}, b'\x00\xff', datetime.date(2024, 2, 29))`
						if got := db.pyInput("SequenceSum", "p1"); got != want {
							t.Errorf("Python reads input %s, want %s", got, want)
						}
					}},
				{name: "enqueue without input is None", args: []string{"enqueue", "Other", "none"},
					check: func(t *testing.T, _ string) {
						if got := db.pyInput("Other", "none"); got != "None" {
							t.Errorf("Python reads input %s, want None", got)
						}
					}},
				{name: "enqueue duplicate", args: []string{"enqueue", "SequenceSum", "j1", "--input-json", "[1]"}, code: 1,
					stderr: []string{"SequenceSum::j1", "already exists"}},
				{name: "enqueue unknown type", args: []string{"enqueue", "Nope", "x", "--input-json", "[1]"}, code: 1,
					stderr: []string{"Nope::x", "task type \"Nope\" is not registered"}},
				{name: "enqueue bad json leaves nothing", args: []string{"enqueue", "SequenceSum", "bad", "--input-json", "[1, "}, code: 1,
					stderr: []string{"SequenceSum::bad", "json input"},
					check: func(t *testing.T, _ string) {
						if st := db.status("SequenceSum", "bad"); st != -1 {
							t.Errorf("a refused enqueue left an instance (status %d)", st)
						}
					}},
				{name: "enqueue bad pickle", args: []string{"enqueue", "SequenceSum", "bad", "--pickle-file", "-"}, stdin: "not a pickle", code: 1,
					stderr: []string{"SequenceSum::bad", "invalid argument"}},
				{name: "enqueue json and pickle", args: []string{"enqueue", "SequenceSum", "bad", "--input-json", "1", "--pickle-file", pickleFile}, code: 2,
					stderr: []string{"exclude each other", "See 'atpd enqueue --help'."}},
				{name: "status table", args: []string{"status", "SequenceSum", "j1"},
					stdout: []string{"TYPE", "SequenceSum", "STATUS", "ACCEPTED (1)", "INSTANCE"}},
				{name: "status json", args: []string{"status", "SequenceSum", "j1", "--json"}, json: &inst,
					check: func(t *testing.T, _ string) {
						var py struct {
							ID         int64  `json:"id"`
							TimeInsert string `json:"timeInsert"`
						}
						if err := json.Unmarshal(db.producer("instance", "SequenceSum", "j1"), &py); err != nil {
							t.Fatal(err)
						}
						if inst.ID != py.ID || inst.Status != "ACCEPTED" || inst.StatusCode != 1 || inst.Type != "SequenceSum" || inst.Identifier != "j1" {
							t.Errorf("status --json %+v, Django's instance id %d", inst, py.ID)
						}
						if inst.TimeInsert == nil || inst.TimeInsert.Location() != time.UTC || !sameInstant(t, inst.TimeInsert.Format(time.RFC3339Nano), py.TimeInsert, db.Cfg.TimeZone) {
							t.Errorf("time_insert %v, Django reads %s", inst.TimeInsert, py.TimeInsert)
						}
					}},
				{name: "status of a missing task", args: []string{"status", "SequenceSum", "nope"}, code: 1,
					stderr: []string{"SequenceSum::nope", "no such task"}},
				{name: "reference daemon runs the queue", args: []string{"queue"}, stdout: []string{"WAITING", "LIMIT"},
					check: func(t *testing.T, _ string) {
						// tracker.dequeueTask and the Python handler, as
						// asyncProcServer.py would: j1 FINISHED with 6.0.
						for db.count("processes_task") > 0 {
							db.producer("step", "77")
						}
					}},
				{name: "log table", args: []string{"log", "SequenceSum", "j1"},
					check: func(t *testing.T, out string) {
						lines := strings.Split(strings.TrimSpace(out), "\n")
						want := []string{"TIME", "ACCEPTED", "SCHEDULED", "RUNNING", "FINISHED"}
						if len(lines) != len(want) {
							t.Fatalf("log table has %d lines, want %d:\n%s", len(lines), len(want), out)
						}
						for i, w := range want {
							if !strings.Contains(lines[i], w) {
								t.Errorf("log line %d %q lacks %s", i, lines[i], w)
							}
						}
					}},
				{name: "log json", args: []string{"log", "SequenceSum", "j1", "--format", "json"}, json: &recs,
					check: func(t *testing.T, _ string) {
						py := db.taskLog("SequenceSum", "j1")
						if len(recs) != len(py) {
							t.Fatalf("log --json has %d records, Python %d", len(recs), len(py))
						}
						for i := range recs {
							if recs[i].StatusCode != py[i].Status || recs[i].Message != py[i].Message || recs[i].Status != djangodb.Status(py[i].Status).String() {
								t.Errorf("record %d: %+v, Python %+v", i, recs[i], py[i])
							}
							if _, err := time.Parse(time.RFC3339Nano, recs[i].Time); err != nil {
								t.Errorf("record %d time %q: %v", i, recs[i].Time, err)
							}
						}
					}},
				{name: "response to stdout", args: []string{"response", "SequenceSum", "j1"},
					stderr: []string{"3 bytes", "text/plain"},
					check: func(t *testing.T, out string) {
						if out != "6.0" {
							t.Errorf("response %q, want the handler's 6.0 as is", out)
						}
					}},
				{name: "response to a file", args: []string{"response", "SequenceSum", "j1", "-o", responseFile},
					check: func(t *testing.T, out string) {
						got, err := os.ReadFile(responseFile)
						if err != nil || string(got) != "6.0" || out != "" {
							t.Errorf("-o wrote %q (%v), stdout %q", got, err, out)
						}
					}},
				{name: "response json", args: []string{"response", "SequenceSum", "j1", "--json"}, json: &resp,
					check: func(t *testing.T, _ string) {
						if resp.MimeType != "text/plain" || resp.Text != "6.0" || resp.Base64 != "Ni4w" || resp.Size != 3 {
							t.Errorf("response --json %+v", resp)
						}
					}},
				{name: "response of a failed task", args: []string{"response", "SequenceSum", "j2"}, code: 1,
					stderr: []string{"SequenceSum::j2", "has no response"}},
				{name: "tasks by status", args: []string{"tasks", "--status", "finished", "--type", "SequenceSum"},
					check: func(t *testing.T, out string) {
						lines := strings.Split(strings.TrimSpace(out), "\n")
						if len(lines) != 2 || !strings.Contains(lines[1], "j1") || !strings.Contains(lines[1], "FINISHED") {
							t.Errorf("tasks --status finished:\n%s", out)
						}
					}},
				{name: "tasks json", args: []string{"tasks", "--json"}, json: &list,
					check: func(t *testing.T, _ string) {
						if len(list.Tasks) != db.count("processes_instance") || list.Total != len(list.Tasks) {
							t.Errorf("tasks --json lists %d tasks (total %d), the table has %d", len(list.Tasks), list.Total, db.count("processes_instance"))
						}
						byID := map[string]string{}
						for _, in := range list.Tasks {
							byID[in.Type+"::"+in.Identifier] = in.Status
						}
						want := map[string]string{"SequenceSum::j1": "FINISHED", "SequenceSum::j2": "FAILED", "PyEcho::ref": "FAILED", "Other::none": "FAILED"}
						for k, v := range want {
							if byID[k] != v {
								t.Errorf("tasks --json: %s is %q, want %s", k, byID[k], v)
							}
						}
					}},
				{name: "tasks bad status", args: []string{"tasks", "--status", "DONE"}, code: 2, stderr: []string{"DONE", "See 'atpd tasks --help'."}},
				{name: "queue json empty", args: []string{"queue", "--json"}, json: &queue,
					check: func(t *testing.T, _ string) {
						if queue.Waiting != 0 || queue.Limit != djangodb.DefaultMaxQueueSize || queue.Full || queue.Oldest != nil || queue.Age != nil {
							t.Errorf("queue --json %+v, want empty with limit 64", queue)
						}
					}},
				{name: "unregister protected", args: []string{"unregister", "SequenceSum"}, code: 1,
					stderr: []string{"SequenceSum", "--force"}},
				{name: "delete", args: []string{"delete", "SequenceSum", "j1"}, stdout: []string{"deleted SequenceSum::j1"},
					check: func(t *testing.T, _ string) {
						if db.status("SequenceSum", "j1") != -1 {
							t.Errorf("instance still there")
						}
						for _, tbl := range []string{"processes_logrecord", "processes_input", "processes_response"} {
							n := db.queryInt(`SELECT count(*) FROM ` + tbl + ` WHERE instance_id NOT IN (SELECT id FROM processes_instance)`)
							if n != 0 {
								t.Errorf("%d rows of %s left without their instance", n, tbl)
							}
						}
					}},
				{name: "delete again", args: []string{"delete", "SequenceSum", "j1", "--json"}, stdout: []string{`"deleted": false`}},
				{name: "delete unknown type", args: []string{"delete", "Nope", "j1"}, code: 1, stderr: []string{"Nope", "is not registered"}},
				{name: "unregister force", args: []string{"unregister", "SequenceSum", "--force"}, stdout: []string{"unregistered type SequenceSum"},
					check: func(t *testing.T, _ string) {
						if n := db.queryInt(`SELECT count(*) FROM processes_type WHERE identifier = 'SequenceSum'`); n != 0 {
							t.Errorf("type still there")
						}
						if n := db.queryInt(`SELECT count(*) FROM processes_instance i JOIN processes_type t ON t.id = i.type_id WHERE t.identifier = 'PyEcho'`); n != 1 {
							t.Errorf("another type's tasks were deleted")
						}
					}},
			}
			for _, c := range steps {
				t.Run(c.name, func(t *testing.T) { db.runOps(t, c) })
			}
		})
	}
}

// sameInstant compares an RFC 3339 time with Django's isoformat, which is
// naive local time of zone when USE_TZ is off.
func sameInstant(t *testing.T, rfc, iso, zone string) bool {
	t.Helper()
	a, err := time.Parse(time.RFC3339Nano, rfc)
	if err != nil {
		t.Errorf("%q: %v", rfc, err)
		return false
	}
	b, err := time.Parse("2006-01-02T15:04:05.999999Z07:00", iso)
	if err != nil {
		if zone == "" {
			zone = "UTC"
		}
		loc, lerr := time.LoadLocation(zone)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if b, err = time.ParseInLocation("2006-01-02T15:04:05.999999", iso, loc); err != nil {
			t.Errorf("%q: %v", iso, err)
			return false
		}
	}
	return a.Equal(b)
}

// TestQueueFull: with the queue at its limit, enqueue exits 75 and queues
// nothing; --wait gives up with 75 after --wait-timeout, and succeeds as
// soon as a task leaves the queue. Through the binary, as scripts run it.
func TestQueueFull(t *testing.T) {
	for _, k := range bothDBs {
		t.Run(k.name, func(t *testing.T) {
			db := newE2EDB(t, k)
			args := func(a ...string) []string { return append(append(a, db.dbArgs()...), "--max-queue-size", "2") }
			run := func(a ...string) (int, string, string) {
				t.Helper()
				p := startAtpd(t, strings.Join(a[:2], "-"), baseEnv(), args(a...)...)
				code := p.wait(time.Minute)
				return code, p.Out.String(), ""
			}
			db.producer("register", "SequenceSum", "tools.atp_demo.handler")
			for i := range 2 {
				if code, out, _ := run("enqueue", "SequenceSum", fmt.Sprint("t", i), "--input-json", "[1]"); code != 0 {
					t.Fatalf("enqueue %d: exit %d: %s", i, code, out)
				}
			}

			cases := []struct {
				name string
				args []string
				code int
				out  []string
			}{
				{"full", []string{"enqueue", "SequenceSum", "x", "--input-json", "[1]"}, exitQueueFull,
					[]string{"SequenceSum::x", "queue full", "--wait"}},
				{"full, json output", []string{"enqueue", "SequenceSum", "x", "--format", "json"}, exitQueueFull,
					[]string{"queue full"}},
				{"wait times out", []string{"enqueue", "SequenceSum", "x", "--wait", "--wait-timeout", "300ms"}, exitQueueFull,
					[]string{"--wait-timeout 300ms passed", "queue full"}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					code, out, _ := run(c.args...)
					if code != c.code {
						t.Fatalf("exit %d, want %d: %s", code, c.code, out)
					}
					for _, s := range c.out {
						if !strings.Contains(out, s) {
							t.Errorf("output lacks %q: %s", s, out)
						}
					}
					if st := db.status("SequenceSum", "x"); st != -1 {
						t.Errorf("a refused enqueue left an instance (status %d)", st)
					}
				})
			}

			t.Run("wait succeeds when room is made", func(t *testing.T) {
				p := startAtpd(t, "enqueue-wait", baseEnv(), args("enqueue", "SequenceSum", "w", "--input-json", "[2]", "--wait")...)
				p.waitLine(`queue full; waiting for room`, time.Minute)
				// A daemon takes a task: tracker.dequeueTask.
				db.producer("dequeue", "99")
				if code := p.wait(time.Minute); code != 0 {
					t.Fatalf("enqueue --wait: exit %d:\n%s", code, p.Out)
				}
				if !strings.Contains(p.Out.String(), "enqueued SequenceSum::w") {
					t.Errorf("output: %s", p.Out)
				}
				if got := db.pyInput("SequenceSum", "w"); got != "[2]" {
					t.Errorf("Python reads input %s", got)
				}
			})

			t.Run("wait interrupted", func(t *testing.T) {
				p := startAtpd(t, "enqueue-wait-int", baseEnv(), args("enqueue", "SequenceSum", "i", "--wait")...)
				p.waitLine(`queue full; waiting for room`, time.Minute)
				p.signal(syscall.SIGINT)
				if code := p.wait(time.Minute); code != exitQueueFull {
					t.Fatalf("interrupted enqueue --wait: exit %d, want %d:\n%s", code, exitQueueFull, p.Out)
				}
				if !strings.Contains(p.Out.String(), "interrupted") {
					t.Errorf("output does not say it was interrupted: %s", p.Out)
				}
				if st := db.status("SequenceSum", "i"); st != -1 {
					t.Errorf("an interrupted enqueue left an instance (status %d)", st)
				}
			})
		})
	}
}

// TestOpsMissingDatabase: read commands never create a SQLite file, and
// say which file is missing.
func TestOpsMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sqlite3")
	cases := []struct {
		name string
		args []string
	}{
		{"status", []string{"status", "T", "i", "--db", "sqlite:" + missing}},
		{"tasks", []string{"tasks", "--db", "sqlite:" + missing}},
		{"enqueue into a named file", []string{"enqueue", "T", "i", "--db", "sqlite:" + missing}},
		{"queue on the default database", []string{"queue"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", c.args...)
			if code != 1 || !regexp.MustCompile(`no such file`).MatchString(stderr) {
				t.Errorf("exit %d, stderr %q, stdout %q; want 1 and the missing file named", code, stderr, stdout)
			}
			for _, f := range []string{missing, "atpd.sqlite3"} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("%s was created", f)
				}
			}
		})
	}
}

// TestJSONInput: JSON becomes the values Python's json.loads returns, as
// Python reads them back from the pickle.
func TestJSONInput(t *testing.T) {
	py := testdb.Python(t)
	cases := []string{
		`[1, 2, 3]`,
		`{"b": 1, "a": 2, "b": 3}`,
		`[1.0, 1e3, -0.0, 1E-7, 12345678901234567890123, -9223372036854775809, 9223372036854775807]`,
		`"\u00e9\ud83d\ude00 \u0000"`,
		`{"nested": {"x": [[], {}, null, true, false]}}`,
		`1e400`,
		`  7  `,
	}
	const script = `import json, pickle, sys
with open(sys.argv[1], "rb") as f:
    print(repr(pickle.load(f)))
print(repr(json.loads(sys.argv[2])))`
	for i, doc := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			v, err := jsonToPython([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			p, err := pickle.Pickle(v)
			if err != nil {
				t.Fatalf("%s: pickle: %v", doc, err)
			}
			file := filepath.Join(t.TempDir(), "v.pickle")
			if err := os.WriteFile(file, p, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(py, "-c", script, file, doc).CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != 2 || lines[0] != lines[1] {
				t.Errorf("%s: Python reads the pickle as / json.loads gives:\n%s", doc, out)
			}
		})
	}
	for _, bad := range []string{``, `[1,`, `{"a" 1}`, `1 2`, `[1]]`, strings.Repeat("[", 1100) + strings.Repeat("]", 1100)} {
		if _, err := jsonToPython([]byte(bad)); err == nil {
			t.Errorf("%.40q: no error", bad)
		}
	}
}
