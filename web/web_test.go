package web_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/web"
)

func taskPath(typ, id string) string {
	return "/tasks/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

func refOf(typ, id string) string { return typ + "::" + id }

// TestTaskListAPI: filters, order and paging of /api/tasks against the
// fixture's known tasks.
func TestTaskListAPI(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		h, _ := newHandler(t, f.store, web.Options{})
		base := serve(t, h)

		want := func(keep func(task) bool) []string {
			var out []string
			for _, tk := range f.tasks {
				if keep(tk) {
					out = append(out, refOf(tk.typ, tk.id))
				}
			}
			sort.Strings(out)
			return out
		}
		cases := []struct {
			name  string
			query string
			want  []string
		}{
			{"all", "", want(func(task) bool { return true })},
			{"status by name", "?status=finished", want(func(tk task) bool { return tk.status == djangodb.Finished })},
			{"status by code", "?status=6", want(func(tk task) bool { return tk.status == djangodb.Failed })},
			{"type with URL characters", "?type=" + url.QueryEscape(typeOdd), want(func(tk task) bool { return tk.typ == typeOdd })},
			{"type and status", "?type=" + typeSum + "&status=ACCEPTED", want(func(tk task) bool { return tk.typ == typeSum && tk.status == djangodb.Accepted })},
			{"no match", "?status=PAUSED", nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got := getJSON[web.TaskListJSON](t, base+"/api/tasks"+tc.query, http.StatusOK)
				var refs []string
				for i, tk := range got.Tasks {
					refs = append(refs, refOf(tk.Type, tk.Identifier))
					if i > 0 && tk.TimeUpdate.After(*got.Tasks[i-1].TimeUpdate) {
						t.Errorf("task %d updated %v after task %d (%v): want newest first", i, tk.TimeUpdate, i-1, got.Tasks[i-1].TimeUpdate)
					}
					ft := f.find(tk.Type, tk.Identifier)
					if tk.StatusCode != int(ft.status) || tk.Status != ft.status.String() || tk.PageURL != taskPath(tk.Type, tk.Identifier) {
						t.Errorf("task %s: %+v, want status %v and page %s", refOf(tk.Type, tk.Identifier), tk, ft.status, taskPath(tk.Type, tk.Identifier))
					}
				}
				sort.Strings(refs)
				if !slices.Equal(refs, tc.want) || got.Total != len(tc.want) {
					t.Errorf("got %v (total %d), want %v", refs, got.Total, tc.want)
				}
			})
		}

		t.Run("pages", func(t *testing.T) {
			all := getJSON[web.TaskListJSON](t, base+"/api/tasks", http.StatusOK)
			var paged []web.TaskJSON
			for off := 0; off < all.Total; off += 3 {
				page := getJSON[web.TaskListJSON](t, fmt.Sprintf("%s/api/tasks?limit=3&offset=%d", base, off), http.StatusOK)
				if page.Total != all.Total || len(page.Tasks) > 3 {
					t.Fatalf("page at %d: %d tasks of %d", off, len(page.Tasks), page.Total)
				}
				paged = append(paged, page.Tasks...)
			}
			if len(paged) != len(all.Tasks) {
				t.Fatalf("pages hold %d tasks, the list %d", len(paged), len(all.Tasks))
			}
			for i := range paged {
				if paged[i].ID != all.Tasks[i].ID {
					t.Errorf("position %d: paged %s, listed %s", i, paged[i].Identifier, all.Tasks[i].Identifier)
				}
			}
		})

		for _, bad := range []struct{ query, want string }{
			{"?status=DONE", "status"},
			{"?limit=0", "limit"},
			{"?limit=x", "limit"},
			{"?offset=-1", "offset"},
		} {
			t.Run("bad "+bad.query, func(t *testing.T) {
				e := getJSON[web.ErrorJSON](t, base+"/api/tasks"+bad.query, http.StatusBadRequest)
				if e.Status != http.StatusBadRequest || !strings.Contains(e.Error, bad.want) {
					t.Errorf("error %+v does not name %q", e, bad.want)
				}
			})
		}
		t.Run("unknown type", func(t *testing.T) {
			e := getJSON[web.ErrorJSON](t, base+"/api/tasks?type=Nope", http.StatusNotFound)
			if !strings.Contains(e.Error, `"Nope"`) {
				t.Errorf("error %+v does not name the type", e)
			}
		})
	})
}

// TestTaskAPI: one task's row, input and log, its log alone, its response,
// for every task of the fixture.
func TestTaskAPI(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		h, _ := newHandler(t, f.store, web.Options{})
		base := serve(t, h)
		for _, tk := range f.tasks {
			t.Run(refOf(tk.typ, tk.id), func(t *testing.T) {
				api := base + "/api" + taskPath(tk.typ, tk.id)
				d := getJSON[web.TaskDetailJSON](t, api, http.StatusOK)
				if d.Type != tk.typ || d.Identifier != tk.id || d.StatusCode != int(tk.status) || d.Status != tk.status.String() || d.Handler != "tools.atp_demo.handler" {
					t.Errorf("task %+v", d.Task)
				}
				if !jsonEqual(t, d.Input, []byte(tk.input)) || d.InputError != "" {
					t.Errorf("input %s (error %q), want %s", d.Input, d.InputError, tk.input)
				}
				log := getJSON[[]web.LogRecordJSON](t, api+"/log", http.StatusOK)
				if !slices.Equal(statusesOf(log), tk.statuses) || !slices.Equal(statusesOf(d.Log), tk.statuses) {
					t.Errorf("log %v, detail log %v, want %v", statusesOf(log), statusesOf(d.Log), tk.statuses)
				}
				if last := log[len(log)-1]; last.Message != tk.message {
					t.Errorf("last message %q, want %q", last.Message, tk.message)
				}
				recs, err := f.store.Log(ctxT(t), d.ID)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range recs {
					if !log[i].Time.Equal(r.Time) {
						t.Errorf("record %d at %v, stored %v", i, log[i].Time, r.Time)
					}
				}

				if (d.Response != nil) != (tk.response != "") || d.Response != nil && (d.Response.Size != len(tk.response) || d.Response.MimeType != tk.mime) {
					t.Errorf("task response %+v, stored %q as %q", d.Response, tk.response, tk.mime)
				}
				if tk.response == "" {
					e := getJSON[web.ErrorJSON](t, api+"/response", http.StatusNotFound)
					if !strings.Contains(e.Error, tk.id) {
						t.Errorf("missing response error %q does not name the task", e.Error)
					}
					return
				}
				r := getJSON[web.ResponseJSON](t, api+"/response", http.StatusOK)
				data, _ := base64.StdEncoding.DecodeString(r.Base64)
				if string(data) != tk.response || r.Text == nil || *r.Text != tk.response || r.Type != tk.typ || r.Identifier != tk.id || r.MimeType != tk.mime || r.Size != len(tk.response) {
					t.Errorf("response %+v, want %q as %q", r, tk.response, tk.mime)
				}
			})
		}
		t.Run("missing task", func(t *testing.T) {
			for _, p := range []string{"/api/tasks/SequenceSum/nope", "/api/tasks/SequenceSum/nope/log", "/api/tasks/Nope/x/response"} {
				e := getJSON[web.ErrorJSON](t, base+p, http.StatusNotFound)
				if e.Status != http.StatusNotFound || !strings.Contains(e.Error, "no task") {
					t.Errorf("%s: %+v", p, e)
				}
			}
		})
	})
}

func statusesOf(recs []web.LogRecordJSON) []djangodb.Status {
	var out []djangodb.Status
	for _, r := range recs {
		if r.Status != djangodb.Status(r.StatusCode).String() {
			panic("status " + r.Status + " does not match its code")
		}
		out = append(out, djangodb.Status(r.StatusCode))
	}
	return out
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		return false
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("bad expected JSON %s: %v", b, err)
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// TestResponseRaw: the response view serves the stored bytes with the
// stored MIME type, sandboxed, and copes with a MIME type that is not one.
func TestResponseRaw(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		h, _ := newHandler(t, f.store, web.Options{})
		base := serve(t, h)
		cases := []struct {
			typ, id  string
			code     int
			ctype    string
			body     string
			sandbox  bool
			bodyPart string
		}{
			{typeSum, "ok", 200, "text/plain", "15.0", true, ""},
			{typeSum, idScript, 200, "text/html; charset=utf-8", f.find(typeSum, idScript).response, true, ""},
			{typeSum, "badmime", 200, "application/octet-stream", "raw", true, ""},
			{typeSum, "running", 404, "text/plain; charset=utf-8", "", false, "(status RUNNING) has no response"},
			{typeSum, "nope", 404, "text/plain; charset=utf-8", "", false, "no task SequenceSum::nope"},
		}
		for _, tc := range cases {
			t.Run(tc.id, func(t *testing.T) {
				resp, body := get(t, base+taskPath(tc.typ, tc.id)+"/response")
				if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != tc.ctype {
					t.Fatalf("%d %q, want %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.code, tc.ctype, body)
				}
				if tc.body != "" && body != tc.body {
					t.Errorf("body %q, want %q", body, tc.body)
				}
				if tc.bodyPart != "" && !strings.Contains(body, tc.bodyPart) {
					t.Errorf("body %q does not say %q", body, tc.bodyPart)
				}
				if got := resp.Header.Get("Content-Security-Policy"); tc.sandbox && got != "sandbox" {
					t.Errorf("Content-Security-Policy %q, want sandbox", got)
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Evil") != "" {
					t.Errorf("headers %v", resp.Header)
				}
			})
		}
	})
}

var hrefRe = regexp.MustCompile(`href="([^"]*)"`)

// hrefs returns the links of a page, unescaped from HTML.
func hrefs(page string) []string {
	var out []string
	for _, m := range hrefRe.FindAllStringSubmatch(page, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

// TestHTMLPages: the task list links every task, its filters and
// responses; every link answers; stored text is escaped everywhere.
func TestHTMLPages(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		h, _ := newHandler(t, f.store, web.Options{Stats: func() web.Stats {
			return web.Stats{ServerID: "0x0000000000001234", Workers: 4, Busy: 1, Started: 5, Finished: 3, Failed: 1}
		}})
		base := serve(t, h)

		resp, page := get(t, base+"/tasks")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("/tasks: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("CSP %q", resp.Header.Get("Content-Security-Policy"))
		}
		checkEscaped(t, "/tasks", page)
		if !strings.Contains(page, "1 of 4 workers busy") || !strings.Contains(page, "Queue: 2 waiting of 64") {
			t.Errorf("/tasks header lacks the daemon stats and queue: %s", between(page, `id="summary"`, "</p>"))
		}
		links := hrefs(page)
		for _, tk := range f.tasks {
			for _, want := range []string{taskPath(tk.typ, tk.id), "/tasks?type=" + url.QueryEscape(tk.typ), "/tasks?status=" + tk.status.String()} {
				if !slices.Contains(links, want) {
					t.Errorf("/tasks has no link %s (links %v)", want, links)
				}
			}
		}
		// The list cannot know which tasks have a response: it links
		// the task pages, which do.
		for _, l := range links {
			if strings.HasSuffix(l, "/response") {
				t.Errorf("/tasks links a response directly: %s", l)
			}
		}
		// Every link on the page answers; task pages show their log.
		for _, l := range links {
			resp, body := get(t, base+l)
			wantCode := http.StatusOK
			if strings.HasSuffix(l, "/response") && f.find(unpath(t, l)).response == "" {
				wantCode = http.StatusNotFound
			}
			if resp.StatusCode != wantCode {
				t.Errorf("link %s: %d, want %d", l, resp.StatusCode, wantCode)
			}
			if strings.HasPrefix(l, "/tasks/") && !strings.HasSuffix(l, "/response") {
				tk := f.find(unpath(t, l))
				checkEscaped(t, l, body)
				// A response link exactly where a response is stored,
				// and it answers.
				respLinks := 0
				for _, rl := range hrefs(body) {
					if strings.HasSuffix(rl, "/response") {
						respLinks++
						if r, _ := get(t, base+rl); r.StatusCode != http.StatusOK {
							t.Errorf("%s: response link %s answers %d", l, rl, r.StatusCode)
						}
					}
				}
				if want := map[bool]int{true: 1, false: 0}[tk.response != ""]; respLinks != want {
					t.Errorf("%s has %d response links, want %d (response %q)", l, respLinks, want, tk.response)
				}
				if tk.response == "" && tk.status.Terminal() && !strings.Contains(body, `id="response">none stored<`) {
					t.Errorf("%s does not say that no response is stored", l)
				}
				if !strings.Contains(body, `id="status">`+tk.status.String()+"<") {
					t.Errorf("%s does not show status %v", l, tk.status)
				}
				if got := strings.Count(between(body, `id="log"`, "</table>"), "<tr><td"); got != len(tk.statuses) {
					t.Errorf("%s shows %d log rows, want %d", l, got, len(tk.statuses))
				}
			}
		}

		t.Run("filter", func(t *testing.T) {
			_, page := get(t, base+"/tasks?status=FAILED")
			var shown []string
			for _, l := range hrefs(page) {
				if strings.HasPrefix(l, "/tasks/") && !strings.HasSuffix(l, "/response") {
					shown = append(shown, l)
				}
			}
			if !slices.Equal(shown, []string{taskPath(typeSum, "fails")}) {
				t.Errorf("FAILED filter shows %v", shown)
			}
			if !strings.Contains(page, `<option value="FAILED" selected>`) {
				t.Error("the status filter is not preselected")
			}
		})
		t.Run("all tasks log", func(t *testing.T) {
			resp, page := get(t, base+"/log")
			if resp.StatusCode != 200 {
				t.Fatalf("/log: %d", resp.StatusCode)
			}
			checkEscaped(t, "/log", page)
			for _, l := range hrefs(page) {
				if strings.HasSuffix(l, "/response") {
					t.Errorf("/log links a response directly: %s", l)
				}
			}
			rows := strings.Count(between(page, `id="log"`, "</table>"), "<tr>\n<td")
			total := 0
			for _, tk := range f.tasks {
				total += len(tk.statuses)
			}
			if rows != total {
				t.Errorf("/log shows %d records, the tasks have %d", rows, total)
			}
		})
		t.Run("errors are pages", func(t *testing.T) {
			for _, tc := range []struct {
				path string
				code int
			}{{"/tasks?status=bogus", 400}, {"/tasks/SequenceSum/nope", 404}, {"/tasks?type=" + url.QueryEscape(idScript), 404}} {
				resp, body := get(t, base+tc.path)
				if resp.StatusCode != tc.code || !strings.Contains(body, `id="error"`) {
					t.Errorf("%s: %d %s", tc.path, resp.StatusCode, body)
				}
				// The header shows the queue as it is, not an empty one.
				if !strings.Contains(body, "Queue: 2 waiting of 64") {
					t.Errorf("%s: header %s", tc.path, between(body, `id="summary"`, "</p>"))
				}
				checkEscaped(t, tc.path, body)
			}
		})
	})
}

// unpath splits /tasks/{type}/{id}[/response] back into its identifiers.
func unpath(t *testing.T, p string) (string, string) {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(strings.TrimSuffix(p, "/response"), "/tasks/"), "/")
	if len(parts) != 2 {
		t.Fatalf("link %s is not /tasks/{type}/{id}", p)
	}
	typ, err1 := url.PathUnescape(parts[0])
	id, err2 := url.PathUnescape(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("link %s: %v %v", p, err1, err2)
	}
	return typ, id
}

// checkEscaped fails when stored markup of the fixture reaches a page
// unescaped.
func checkEscaped(t *testing.T, where, page string) {
	t.Helper()
	for _, raw := range []string{idScript, "<b>boom</b>", "<i>v</i>", "Type & <b>"} {
		if strings.Contains(page, raw) {
			t.Errorf("%s contains %q unescaped", where, raw)
		}
	}
	if strings.Contains(page, "<script") {
		t.Errorf("%s contains a script element", where)
	}
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	in, _, _ := strings.Cut(after, to)
	return in
}

// TestAllTasksLogAPI: /api/log is the newest records across all tasks,
// and a limit keeps the newest.
func TestAllTasksLogAPI(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		h, _ := newHandler(t, f.store, web.Options{})
		base := serve(t, h)
		// Every record, from the store, newest first.
		var want []web.LogRecordJSON
		for _, tk := range f.tasks {
			in, err := f.store.InstanceByIdentifier(ctxT(t), tk.typ, tk.id)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := f.store.Log(ctxT(t), in.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				want = append(want, web.LogRecordJSON{Time: &r.Time, Status: r.Status.String(), StatusCode: int(r.Status), Message: r.Message, Type: tk.typ, Identifier: tk.id})
			}
		}
		slices.SortStableFunc(want, func(a, b web.LogRecordJSON) int { return b.Time.Compare(*a.Time) })
		for _, limit := range []int{len(want) + 10, len(want), 5, 1} {
			t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
				got := getJSON[[]web.LogRecordJSON](t, fmt.Sprintf("%s/api/log?limit=%d", base, limit), http.StatusOK)
				n := min(limit, len(want))
				if len(got) != n {
					t.Fatalf("%d records, want %d", len(got), n)
				}
				for i := range got {
					w := want[i]
					if !got[i].Time.Equal(*w.Time) || got[i].Status != w.Status || got[i].StatusCode != w.StatusCode || got[i].Message != w.Message || got[i].Type != w.Type || got[i].Identifier != w.Identifier {
						t.Errorf("record %d: %+v, want %+v", i, got[i], w)
					}
				}
			})
		}
	})
}

// TestTypesAndQueueAPI: /api/types and /api/queue report the database and
// the daemon's stats.
func TestTypesAndQueueAPI(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		stats := web.Stats{ServerID: "0x00000000000000AB", Workers: 2, Busy: 2, Started: 9}
		h, _ := newHandler(t, f.store, web.Options{Stats: func() web.Stats { return stats }})
		base := serve(t, h)
		types := getJSON[[]web.TypeJSON](t, base+"/api/types", http.StatusOK)
		if len(types) != 2 || types[0].Identifier != typeSum || types[1].Identifier != typeOdd || types[0].MaxStart != 3 || types[0].Timeout != 60 || types[0].TimeRet != -1 {
			t.Errorf("types %+v", types)
		}
		q := getJSON[web.QueueJSON](t, base+"/api/queue", http.StatusOK)
		st, err := f.store.QueueStats(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if q.Waiting != st.Waiting || q.Limit != st.Max || q.Oldest == nil || !q.Oldest.Equal(st.Oldest) || q.OldestAgeSeconds == nil || *q.OldestAgeSeconds <= 0 || q.Full || q.Daemon == nil || *q.Daemon != stats {
			t.Errorf("queue %+v, store says %+v", q, st)
		}
	})
}

// TestBasePath: mounted under a prefix, routes and links carry it.
func TestBasePath(t *testing.T) {
	f := newFixture(t, dbCases[len(dbCases)-1])
	h, _ := newHandler(t, f.store, web.Options{BasePath: "/atp/"})
	base := serve(t, h)
	for _, tc := range []struct {
		path     string
		code     int
		location string
	}{
		{"/atp/tasks", 200, ""},
		{"/atp/api/tasks", 200, ""},
		{"/atp/healthz", 200, ""},
		{"/atp", 302, "/atp/tasks"},
		{"/atp/", 302, "/atp/tasks"},
		{"/tasks", 404, ""},
	} {
		resp, _ := get(t, base+tc.path)
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: %d Location %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.code, tc.location)
		}
	}
	_, page := get(t, base+"/atp/tasks")
	for _, l := range hrefs(page) {
		if !strings.HasPrefix(l, "/atp/") {
			t.Errorf("link %s is outside the base path", l)
		}
	}
	list := getJSON[web.TaskListJSON](t, base+"/atp/api/tasks", 200)
	for _, tk := range list.Tasks {
		if !strings.HasPrefix(tk.URL, "/atp/api/tasks/") || !strings.HasPrefix(tk.PageURL, "/atp/tasks/") {
			t.Errorf("task URLs %s %s", tk.URL, tk.PageURL)
		}
		if resp, _ := get(t, base+tk.URL); resp.StatusCode != 200 {
			t.Errorf("%s: %d", tk.URL, resp.StatusCode)
		}
	}
}
