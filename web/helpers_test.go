package web_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
	"github.com/eoxserver/atpd/producer"
	"github.com/eoxserver/atpd/web"
)

type dbCase struct {
	name     string
	postgres bool
	cfg      testdb.Config
}

// Both databases; naive local-time storage on one of them, where a wrong
// zone would shift what the pages show.
var dbCases = []dbCase{
	{"postgres/usetz", true, testdb.Config{UseTZ: true}},
	{"sqlite/naive-vienna", false, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
}

func forEachDB(t *testing.T, fn func(t *testing.T, c dbCase)) {
	t.Helper()
	for _, c := range dbCases {
		t.Run(c.name, func(t *testing.T) { fn(t, c) })
	}
}

func openStore(t *testing.T, c dbCase) djangodb.Store {
	t.Helper()
	return e2e.OpenStore(t, e2e.FreshDSN(t, c.postgres, c.cfg), testdb.Options(c.cfg))
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	return e2e.Context(t, time.Minute)
}

// Identifiers that exercise escaping: markup, and characters that mean
// something in a URL path or query.
const (
	typeSum    = "SequenceSum"
	typeOdd    = "Odd/Type & <b>"
	idScript   = `<script>alert("x")</script>`
	idURLChars = "a/b c?d#e%f"
)

// task is one task of the fixture with what the tests expect of it.
type task struct {
	typ, id  string
	status   djangodb.Status
	statuses []djangodb.Status // its log
	message  string            // message of its last record
	response string            // stored response, "" for none
	mime     string            // stored MIME type
	input    string            // the input as JSON
}

// fixture fills a fresh database the way producers and a daemon would:
// tasks in every interesting state, run through the Store as the daemon
// runs them.
type fixture struct {
	store djangodb.Store
	tasks []task
}

func newFixture(t *testing.T, c dbCase) *fixture {
	t.Helper()
	store := openStore(t, c)
	ctx := ctxT(t)
	p := producer.New(store, producer.Options{Logger: testLogger(t)})
	for _, typ := range []string{typeSum, typeOdd} {
		if _, err := p.RegisterType(ctx, djangodb.TypeSpec{Identifier: typ, Handler: "tools.atp_demo.handler", Timeout: 60, MaxRestart: 2}); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{store: store}
	// run takes the oldest waiting task, which is the one just enqueued.
	run := func(tk task, outcome func(id int64)) {
		ids, err := djangodb.MustTrackerOf(store).Dequeue(ctx, 0x1234, 1, "")
		if err != nil || len(ids) != 1 {
			t.Fatalf("dequeue %s: %v, %v", tk.id, ids, err)
		}
		st, err := djangodb.MustTrackerOf(store).Start(ctx, ids[0], "")
		if err != nil || st.Identifier != tk.id {
			t.Fatalf("start %s: %+v, %v", tk.id, st, err)
		}
		outcome(ids[0])
	}
	add := func(tk task, input any, outcome func(id int64)) {
		if _, err := p.Enqueue(ctx, tk.typ, tk.id, input, "enqueued "+tk.id); err != nil {
			t.Fatalf("enqueue %s: %v", tk.id, err)
		}
		if outcome != nil {
			run(tk, outcome)
		}
		f.tasks = append(f.tasks, tk)
	}
	finishWith := func(data, mime string) func(int64) {
		return func(id int64) {
			if err := djangodb.MustTrackerOf(store).SetResponse(ctx, id, []byte(data), mime); err != nil {
				t.Fatal(err)
			}
			if _, err := djangodb.MustTrackerOf(store).FinishIfNotFinished(ctx, id, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(task{typ: typeSum, id: "ok", status: djangodb.Finished, statuses: []djangodb.Status{1, 2, 3, 5}, response: "15.0", mime: "text/plain", input: `[1,2,3,4,5]`},
		pickle.Tuple{1, 2, 3, 4, 5}, finishWith("15.0", "text/plain"))
	add(task{typ: typeSum, id: "fails", status: djangodb.Failed, statuses: []djangodb.Status{1, 2, 3, 6}, message: "<b>boom</b> & co", input: `[1,"x"]`},
		[]any{1, "x"}, func(id int64) {
			if err := djangodb.MustTrackerOf(store).SetStatus(ctx, id, djangodb.Failed, "<b>boom</b> & co"); err != nil {
				t.Fatal(err)
			}
		})
	add(task{typ: typeSum, id: idScript, status: djangodb.Finished, statuses: []djangodb.Status{1, 2, 3, 5},
		response: `<html><body><script>document.title="pwned"</script>hi</body></html>`, mime: "text/html; charset=utf-8", input: `{"k":"<i>v</i>"}`},
		map[string]any{"k": "<i>v</i>"}, finishWith(`<html><body><script>document.title="pwned"</script>hi</body></html>`, "text/html; charset=utf-8"))
	add(task{typ: typeSum, id: "badmime", status: djangodb.Finished, statuses: []djangodb.Status{1, 2, 3, 5}, response: "raw", mime: "not a mime type\r\nX-Evil: 1", input: `null`},
		nil, finishWith("raw", "not a mime type\r\nX-Evil: 1"))
	add(task{typ: typeSum, id: "running", status: djangodb.Running, statuses: []djangodb.Status{1, 2, 3}, input: `[2.5]`},
		[]any{2.5}, func(int64) {})
	add(task{typ: typeSum, id: "waiting", status: djangodb.Accepted, statuses: []djangodb.Status{1}, message: "enqueued waiting", input: `[1]`},
		[]any{1}, nil)
	add(task{typ: typeOdd, id: idURLChars, status: djangodb.Accepted, statuses: []djangodb.Status{1}, message: "enqueued " + idURLChars, input: `"é"`},
		"é", nil)
	return f
}

func (f *fixture) find(typ, id string) task {
	for _, tk := range f.tasks {
		if tk.typ == typ && tk.id == id {
			return tk
		}
	}
	panic("no task " + typ + "/" + id)
}

// serve starts the handler on a test server and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// get fetches url and returns the response with its body read.
func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

// getJSON fetches url, checks the status code and decodes the body.
func getJSON[T any](t *testing.T, url string, wantCode int) T {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, wantCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET %s: decode %s: %v", url, body, err)
	}
	return v
}

func testLogger(t *testing.T) *slog.Logger { return e2e.Logger(t) }

// newHandler is web.New with a fresh registry and the test's logger.
func newHandler(t *testing.T, store djangodb.Store, opts web.Options) (http.Handler, *prometheus.Registry) {
	t.Helper()
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	return web.New(store, opts), opts.Registry
}
