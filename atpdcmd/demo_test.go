package atpdcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/testdb"
)

// noPythonEnv is baseEnv with a PATH in which no python3 can be found.
func noPythonEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, kv := range baseEnv() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+t.TempDir())
}

// openTestStore opens a SQLite file atpd made, for checking its rows.
func openTestStore(t *testing.T, path string) djangodb.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := djangodb.OpenSQLite(ctx, path, djangodb.Options{UseTZ: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDemo runs `atpd demo` end to end in fresh directories, on a machine
// without Python: the tasks are enqueued past the queue limit, all finish
// with the demo handler's responses, and the database is one that Django
// and the Python producer API read as their own.
func TestDemo(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		count int
		db    string // file the demo writes, relative to its directory
		json  bool
	}{
		{name: "default database", args: []string{"demo", "--count", "40", "--max-queue-size", "8", "-n", "2"},
			count: 40, db: "atpd.sqlite3"},
		{name: "named database, json summary", args: []string{"demo", "--count", "12", "--db", "sqlite:named.sqlite3", "--json"},
			count: 12, db: "named.sqlite3", json: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startAtpd(t, "demo", noPythonEnv(t), c.args...)
			if code := p.wait(2 * time.Minute); code != 0 {
				t.Fatalf("atpd demo: exit %d\n%s", code, p.Out)
			}
			out := p.Out.String()
			if !regexp.MustCompile(fmt.Sprintf(`demo: %d/%d tasks done \(100%%\): %d finished, 0 failed`, c.count, c.count, c.count)).MatchString(out) {
				t.Errorf("no final progress line:\n%s", out)
			}
			if c.json {
				var sum demoSummary
				start := strings.Index(out, "{")
				if start < 0 {
					t.Fatalf("no JSON summary:\n%s", out)
				}
				if err := json.NewDecoder(strings.NewReader(out[start:])).Decode(&sum); err != nil {
					t.Fatalf("summary: %v\n%s", err, out)
				}
				if sum.Total != c.count || sum.Correct != c.count || sum.Statuses["FINISHED"] != c.count || sum.Interrupted || sum.Throughput <= 0 {
					t.Errorf("summary %+v", sum)
				}
			} else {
				for _, want := range []string{
					fmt.Sprintf("FINISHED    %d", c.count), "FAILED      0",
					fmt.Sprintf("responses   %d of %d correct", c.count, c.count), "tasks/s", "atpd log SequenceSum demo-",
				} {
					if !strings.Contains(out, want) {
						t.Errorf("summary lacks %q:\n%s", want, out)
					}
				}
			}

			path := filepath.Join(p.Cmd.Dir, c.db)
			store := openTestStore(t, path)
			ctx := context.Background()
			typ, err := store.Type(ctx, demoType)
			if err != nil || typ.Handler != gohandlers.DemoPath || typ.Timeout != 60 || typ.TimeRet != 600 || typ.MaxStart != 4 {
				t.Errorf("type %+v (%v), want atp_demo.py's registration", typ, err)
			}
			list, err := store.Instances(ctx, djangodb.InstanceFilter{Type: demoType})
			if err != nil || len(list) != c.count {
				t.Fatalf("%d instances (%v), want %d", len(list), err, c.count)
			}
			for _, in := range list {
				n, err := strconv.Atoi(in.Identifier[strings.LastIndex(in.Identifier, "-")+1:])
				if err != nil || in.Status != djangodb.Finished {
					t.Errorf("%s: %v (%v)", in.Identifier, in.Status, err)
					continue
				}
				_, want := demoInput(n)
				resp, err := store.Response(ctx, in.ID)
				if err != nil || string(resp.Data) != want || resp.MimeType != "text/plain" {
					t.Errorf("%s: response %q %q (%v), want %q", in.Identifier, resp.Data, resp.MimeType, err, want)
				}
			}
			if q, err := store.QueueStats(ctx); err != nil || q.Waiting != 0 {
				t.Errorf("queue %+v (%v), want empty", q, err)
			}

			t.Run("django reads it", func(t *testing.T) {
				py := testdb.Python(t)
				dsn := "sqlite:" + path
				env := testdb.DjangoEnv(t, dsn, testdb.Config{UseTZ: true})
				dir := filepath.Join(testdb.RepoRoot(t), "integration")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				check := exec.CommandContext(ctx, py, "manage.py", "migrate", "--check")
				check.Dir, check.Env = dir, env
				if out, err := check.CombinedOutput(); err != nil {
					t.Errorf("Django migrate --check on the demo's database: %v\n%s", err, out)
				}
				logCmd := exec.CommandContext(ctx, py, "producer.py", "log", demoType, list[0].Identifier)
				logCmd.Dir, logCmd.Env = dir, env
				raw, err := logCmd.Output()
				if err != nil {
					t.Fatalf("producer.py log: %v", err)
				}
				var got struct {
					Records []logRecord `json:"records"`
				}
				if err := json.Unmarshal(raw, &got); err != nil {
					t.Fatal(err)
				}
				if want := []logRecord{{1, ""}, {2, ""}, {3, ""}, {5, ""}}; !slices.Equal(got.Records, want) {
					t.Errorf("tracker.getTaskLog: %v, want %v", got.Records, want)
				}
			})
		})
	}
}

// TestDemoInterrupted: SIGINT ends the demo early with 130; what was
// started is finished, nothing is left SCHEDULED or RUNNING, and the rest
// stays queued for a daemon.
func TestDemoInterrupted(t *testing.T) {
	p := startAtpd(t, "demo", noPythonEnv(t), "demo", "--count", "100000", "--max-queue-size", "16")
	p.waitLine(`^demo: [1-9]\d*/100000 tasks done`, time.Minute)
	p.signal(syscall.SIGINT)
	if code := p.wait(time.Minute); code != 128+int(syscall.SIGINT) {
		t.Fatalf("exit %d, want 130\n%s", code, p.Out)
	}
	if !strings.Contains(p.Out.String(), "atpd demo interrupted") {
		t.Errorf("the summary does not say it was interrupted:\n%s", p.Out)
	}
	store := openTestStore(t, filepath.Join(p.Cmd.Dir, "atpd.sqlite3"))
	list, err := store.Instances(context.Background(), djangodb.InstanceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 || len(list) >= 100000 {
		t.Fatalf("%d tasks enqueued", len(list))
	}
	for _, in := range list {
		if in.Status == djangodb.Scheduled || in.Status == djangodb.Running || in.Status == djangodb.Failed {
			t.Errorf("%s left %s", in.Identifier, in.Status)
		}
	}
}

// TestDemoProducerFails: when enqueueing fails for good (an operator
// removes the demo's type mid-run), the demo stops, says why, and exits 1
// rather than waiting for tasks that will never exist.
func TestDemoProducerFails(t *testing.T) {
	p := startAtpd(t, "demo", noPythonEnv(t), "demo", "--count", "100000", "--max-queue-size", "16")
	p.waitLine(`^demo: [1-9]\d*/100000 tasks done`, time.Minute)
	db := "sqlite:" + filepath.Join(p.Cmd.Dir, "atpd.sqlite3")
	if code, stdout, stderr := runCLI(t, "", "unregister", demoType, "--force", "--db", db); code != 0 {
		t.Fatalf("unregister --force: exit %d\n%s%s", code, stdout, stderr)
	}
	if code := p.wait(time.Minute); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, p.Out)
	}
	p.waitLine(`demo: enqueueing stopped: .*SequenceSum::demo-.*not found`, time.Second)
}

// TestDaemonWithoutPython: a daemon that needs no Python starts on a
// machine without it and runs Go handlers; one configured for Python
// handlers refuses to start.
func TestDaemonWithoutPython(t *testing.T) {
	cases := []struct {
		name  string
		extra []string
		start bool
	}{
		{"python not configured", nil, true},
		{"python asked for", []string{"--python", "python3"}, false},
		{"python path given", []string{"-p", "/nonexistent"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := newE2EDB(t, sqliteUTC)
			db.batch(
				[]string{"register", "SequenceSum", gohandlers.DemoPath},
				[]string{"register", "Py", "tools.golden_handlers.echo"},
				[]string{"enqueue", "SequenceSum", "go", "--literal", "(1, 2, 3, 4, 5)"},
			)
			args := append(db.dbArgs(), "--poll-interval", "20ms", "-n", "1")
			p := startAtpd(t, "nopython", noPythonEnv(t), append(args, c.extra...)...)
			if !c.start {
				if code := p.wait(time.Minute); code != 1 {
					t.Fatalf("exit %d, want 1\n%s", code, p.Out)
				}
				p.waitLine(`start-up failed.*python`, time.Second)
				return
			}
			p.waitLine(`ATPD: started`, startTimeout)
			db.waitStatus("SequenceSum", "go", djangodb.Finished, time.Minute)
			// A task that needs Python fails saying why, and the daemon
			// carries on.
			db.producer("enqueue", "Py", "py", "--literal", "1")
			db.waitStatus("Py", "py", djangodb.Failed, time.Minute)
			recs := db.taskLog("Py", "py")
			if last := recs[len(recs)-1].Message; !strings.Contains(last, "needs Python, which is unavailable") {
				t.Errorf("FAILED message %q does not say Python is missing", last)
			}
			db.producer("enqueue", "SequenceSum", "go2", "--literal", "[1]")
			db.waitStatus("SequenceSum", "go2", djangodb.Finished, time.Minute)
			p.signal(syscall.SIGINT)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit %d after SIGINT", code)
			}
		})
	}
}

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestDaemonHTTP: with --http the running daemon serves /healthz, the page
// and API document of a task it ran, and metrics that count it.
func TestDaemonHTTP(t *testing.T) {
	for _, k := range bothDBs {
		t.Run(k.name, func(t *testing.T) {
			db := newE2EDB(t, k)
			db.batch(
				[]string{"register", "SequenceSum", "tools.atp_demo.handler"},
				[]string{"enqueue", "SequenceSum", "web<1>", "--literal", "(1, 2, 3, 4, 5)"},
				[]string{"register", "Registered", "tools.atp_demo.handler"},
			)
			p := startAtpd(t, "http", noPythonEnv(t), append(db.dbArgs(), "--poll-interval", "20ms", "--http", "127.0.0.1:0", "-n", "3")...)
			line := p.waitLine(`ATPD: serving the task pages.*http_addr=`, startTimeout)
			addr := regexp.MustCompile(`http_addr=(\S+)`).FindStringSubmatch(line)[1]
			base := "http://" + addr

			code, body := httpGet(t, base+"/healthz")
			var health struct {
				Status   string `json:"status"`
				Database struct {
					OK bool `json:"ok"`
				} `json:"database"`
				Loop *struct {
					OK bool `json:"ok"`
				} `json:"loop"`
			}
			if err := json.Unmarshal([]byte(body), &health); err != nil || code != 200 || health.Status != "ok" || !health.Database.OK || health.Loop == nil || !health.Loop.OK {
				t.Errorf("/healthz: %d %s (%v)", code, body, err)
			}

			db.waitStatus("SequenceSum", "web<1>", djangodb.Finished, time.Minute)
			code, body = httpGet(t, base+"/tasks/SequenceSum/web%3C1%3E")
			if code != 200 || !strings.Contains(body, "web&lt;1&gt;") || !strings.Contains(body, "FINISHED") {
				t.Errorf("task page: %d\n%s", code, body)
			}
			code, body = httpGet(t, base+"/api/tasks/SequenceSum/web%3C1%3E")
			var task struct {
				Identifier string `json:"identifier"`
				Status     string `json:"status"`
				Log        []struct {
					StatusCode int `json:"status_code"`
				} `json:"log"`
			}
			if err := json.Unmarshal([]byte(body), &task); err != nil || code != 200 || task.Identifier != "web<1>" || task.Status != "FINISHED" || len(task.Log) != 4 {
				t.Errorf("task API: %d %s (%v)", code, body, err)
			}
			sameAsCLI(t, base, db.dbArgs())
			code, body = httpGet(t, base+"/tasks/SequenceSum/web%3C1%3E/response")
			if code != 200 || body != "15.0" {
				t.Errorf("response: %d %q", code, body)
			}
			code, body = httpGet(t, base+"/metrics")
			for _, want := range []string{
				`atpd_queue_limit 64`, `atpd_tasks{status="FINISHED",type="SequenceSum"} 1`, // the database's
				`atpd_tasks_started_total{type="SequenceSum"} 1`, `atpd_tasks_finished_total{type="SequenceSum"} 1`, // the daemon's
				`atpd_task_run_seconds_count{type="SequenceSum"} 1`, `atpd_workers_busy 0`,
				`atpd_build_info{goversion="go1.`,                                                                    // which atpd this is
				`atpd_tasks_failed_total{type="SequenceSum"} 0`, `atpd_tasks_reenqueued_total{type="SequenceSum"} 0`, // before any failure
				`atpd_tasks_failed_total{type="Registered"} 0`, `atpd_tasks_started_total{type="Registered"} 0`, // a type without tasks
				"atpd_workers 3",
			} {
				if code != 200 || !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %q (%d)", want, code)
				}
			}

			p.signal(syscall.SIGINT)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit %d after SIGINT", code)
			}
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Errorf("still serving after the daemon exited")
			}
		})
	}
}

func TestHTTPFlagConflict(t *testing.T) {
	code, _, stderr := runCLI(t, "", "--http", "127.0.0.1:1", "--http-addr", "127.0.0.1:2")
	if code != 2 || !strings.Contains(stderr, "--http and --http-addr") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat("atpd.sqlite3"); err == nil {
		t.Errorf("a refused start created ./atpd.sqlite3")
	}
}

// TestPythonStartsOnDemand: a daemon whose tasks have Go handlers starts
// no CPython worker, even when its configuration names Python; the first
// task that needs Python starts them, and it runs.
func TestPythonStartsOnDemand(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(db *e2eDB) []string
	}{
		// The handlers' directory comes through PYTHONPATH, which the
		// workers inherit.
		{"nothing asks for Python", func(*e2eDB) []string { return nil }},
		{"--python and -p given", func(db *e2eDB) []string { return []string{"--python", "/usr/bin/python3", "-p", db.dir} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newE2EDB(t, sqliteUTC)
			db.batch(
				[]string{"register", "SequenceSum", gohandlers.DemoPath},
				[]string{"register", "Py", "tools.ledger.other"},
				[]string{"enqueue", "SequenceSum", "go", "--literal", "(1, 2, 3)"},
			)
			ledger := filepath.Join(t.TempDir(), "ledger")
			env := append(baseEnv(), "PYTHONPATH="+db.dir)
			args := append(db.dbArgs(), "--poll-interval", "20ms", "-n", "2")
			p := startAtpd(t, "ondemand", env, append(args, tc.args(db)...)...)
			db.waitStatus("SequenceSum", "go", djangodb.Finished, time.Minute)
			if lines := p.Grep(`python worker started`); len(lines) != 0 {
				t.Errorf("a CPython worker started for Go tasks: %v", lines)
			}
			db.producer("enqueue", "Py", "py", "--literal", fmt.Sprintf("{'ledger': %q}", ledger))
			db.waitStatus("Py", "py", djangodb.Finished, time.Minute)
			p.waitLine(`python worker started`, time.Second)
			p.signal(syscall.SIGINT)
			if code := p.wait(exitTimeout); code != 0 {
				t.Errorf("exit %d after SIGINT", code)
			}
		})
	}
}
