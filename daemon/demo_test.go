package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/testdb"
)

// producer runs integration/producer.py (EOxServer's tracker API on the
// Django ORM) with one command per element of cmds, and returns each
// command's JSON result.
func producer(t testing.TB, dsn string, c testdb.Config, cmds ...[]string) []json.RawMessage {
	t.Helper()
	root := testdb.RepoRoot(t)
	var in strings.Builder
	for _, c := range cmds {
		line, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		in.Write(line)
		in.WriteByte('\n')
	}
	cmd := exec.Command(testdb.Python(t), filepath.Join(root, "integration", "producer.py"), "batch")
	cmd.Env = testdb.DjangoEnv(t, dsn, c)
	cmd.Stdin = strings.NewReader(in.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("producer.py batch: %v\n%s", err, stderr.String())
	}
	var results []json.RawMessage
	for i, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			Exit    int
			Result  json.RawMessage
			Message string
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("producer.py answer %q: %v", line, err)
		}
		if r.Exit != 0 {
			t.Fatalf("producer.py %v: exit %d: %s", cmds[i], r.Exit, r.Message)
		}
		results = append(results, r.Result)
	}
	if len(results) != len(cmds) {
		t.Fatalf("producer.py answered %d of %d commands", len(results), len(cmds))
	}
	return results
}

// TestDemoWithPythonProducer: tasks a Python producer enqueues run through
// the daemon with the Go port of the demo handler; the Python producer reads
// back exactly what the reference daemon leaves (ATP-SPEC section 6), and
// failures (a raising handler, an undecodable input, an unknown path, a
// non-number) do not stop later tasks.
func TestDemoWithPythonProducer(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		producer(t, dsn, b.cfg,
			[]string{"register", "SequenceSum", "tools.atp_demo.handler", "--timeout", "60", "--timeret", "600", "--maxrestart", "2"},
			[]string{"register", "Raiser", "tests.raiser", "--timeout", "5", "--maxrestart", "1"},
			[]string{"register", "Unknown", "tools.nothing.handler"},
			[]string{"enqueue", "SequenceSum", "ok", "--literal", "(1, 2, 3, 4, 5)", "--protocol", "2"},
			[]string{"enqueue", "SequenceSum", "notnum", "--literal", "(1, 'x')"},
			[]string{"enqueue", "Raiser", "raises", "--json", `{"k": 1}`, "--message", "enqueued with a message"},
			[]string{"enqueue", "Unknown", "unknown", "--literal", "1", "--protocol", "0"},
		)
		garbage := enqueue(t, store, "SequenceSum", "garbage", "this is not base64(zlib(pickle))")
		producer(t, dsn, b.cfg, []string{"enqueue", "SequenceSum", "later", "--literal", "[1.5, 2.5]", "--protocol", "4"})

		reg := gohandlers.NewDefault()
		if err := reg.Register("tests.raiser", func(_ context.Context, _ executor.TaskStatus, input any) error {
			return errors.New("missing ['k']") // the reference run's KeyError text
		}); err != nil {
			t.Fatal(err)
		}
		router := &executor.Router{Go: reg, Default: executor.NoHandler{}}
		idOf := func(typ, ident string) int64 {
			in, err := store.InstanceByIdentifier(ctxT(t), typ, ident)
			if err != nil {
				t.Fatalf("%s %s: %v", typ, ident, err)
			}
			return in.ID
		}
		ids := map[string]int64{
			"ok": idOf("SequenceSum", "ok"), "notnum": idOf("SequenceSum", "notnum"), "raises": idOf("Raiser", "raises"),
			"unknown": idOf("Unknown", "unknown"), "garbage": garbage, "later": idOf("SequenceSum", "later"),
		}
		d, _ := newDaemon(t, store, router, Config{Workers: 1})
		for _, id := range ids {
			store.waitTerminal(t, id)
		}
		d.Stop()

		type logRec struct {
			Status  djangodb.Status
			Message string
		}
		type response struct {
			MimeType string
			Text     string
		}
		tests := []struct {
			typ, ident string
			log        []rec
			prefix     bool // the last message is a prefix
			response   *response
		}{
			{"SequenceSum", "ok", []rec{{1, ""}, {2, ""}, {3, ""}, {5, ""}}, false, &response{"text/plain", "15.0"}},
			{"SequenceSum", "notnum", []rec{{1, ""}, {2, ""}, {3, ""}, {6, "Input must be a sequence of numbers!"}}, false, nil},
			{"Raiser", "raises", []rec{{1, "enqueued with a message"}, {2, ""}, {3, ""}, {6, "missing ['k']"}}, false, nil},
			{"Unknown", "unknown", []rec{{1, ""}, {2, ""}, {3, ""}, {6, "executor: no handler for tools.nothing.handler"}}, false, nil},
			// binascii.Error's words, as the reference wrote them.
			{"SequenceSum", "garbage", []rec{{1, ""}, {2, ""}, {6, "Invalid base64-encoded string: number of data characters (25) cannot be 1 more than a multiple of 4"}}, false, nil},
			{"SequenceSum", "later", []rec{{1, ""}, {2, ""}, {3, ""}, {5, ""}}, false, &response{"text/plain", "4.0"}},
		}
		for _, tt := range tests {
			// Read back as a Python producer does (getTaskLog, getTaskResponse).
			cmds := [][]string{{"log", tt.typ, tt.ident}}
			if tt.response != nil {
				cmds = append(cmds, []string{"response", tt.typ, tt.ident})
			}
			res := producer(t, dsn, b.cfg, cmds...)
			var log struct {
				Status  djangodb.Status
				Records []logRec
			}
			if err := json.Unmarshal(res[0], &log); err != nil {
				t.Fatal(err)
			}
			got := make([]rec, len(log.Records))
			for i, r := range log.Records {
				got[i] = rec(r)
			}
			if last := tt.log[len(tt.log)-1].Status; log.Status != last {
				t.Errorf("%s %s: status %s, want %s", tt.typ, tt.ident, log.Status, last)
			}
			if tt.prefix && len(got) == len(tt.log) && strings.HasPrefix(got[len(got)-1].Message, tt.log[len(got)-1].Message) {
				got[len(got)-1].Message = tt.log[len(got)-1].Message
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.log) {
				t.Errorf("%s %s: log %v, want %v", tt.typ, tt.ident, got, tt.log)
			}
			if tt.response != nil {
				var r response
				if err := json.Unmarshal(res[1], &r); err != nil {
					t.Fatal(err)
				}
				if r != *tt.response {
					t.Errorf("%s %s: response %+v, want %+v", tt.typ, tt.ident, r, *tt.response)
				}
			}
		}

		// The stored text itself, byte for byte as the reference wrote it.
		var dump map[string][]map[string]any
		if err := json.Unmarshal(producer(t, dsn, b.cfg, []string{"dump"})[0], &dump); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, row := range dump["processes_response"] {
			if fmt.Sprint(row["instance_id"]) == fmt.Sprint(ids["ok"]) {
				found = true
				if row["response"] != "eJwzNNUzAAAB8wDF" || row["mimeType"] != "text/plain" {
					t.Errorf("stored response %v %v, want eJwzNNUzAAAB8wDF text/plain", row["response"], row["mimeType"])
				}
			}
		}
		if !found {
			t.Error("no response row for the demo task")
		}
		if st := d.Stats(); st.Finished != 2 || st.Failed != 4 {
			t.Errorf("stats %+v: want 2 finished, 4 failed", st)
		}
	})
}
