package web_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/web"
)

// row is one task row of the list as the browser renders it.
type row struct {
	Type, Identifier, Status string
}

const rowsJS = `Array.from(document.querySelectorAll('#tasks tbody tr')).map(tr => ({
	Type: tr.cells[2].innerText, Identifier: tr.cells[3].innerText, Status: tr.cells[4].innerText}))`

// TestBrowser drives headless Chromium through the pages as an operator
// would: the list renders every task, clicking a task opens its page,
// the filter links and the filter form narrow the list, a response opens
// with its content, and an HTML response's script does not run.
func TestBrowser(t *testing.T) {
	b := startBrowser(t)
	f := newFixture(t, dbCases[len(dbCases)-1])
	h, _ := newHandler(t, f.store, web.Options{})
	base := serve(t, h)

	var want []row
	for _, tk := range f.tasks {
		want = append(want, row{tk.typ, tk.id, tk.status.String()})
	}
	sortRows(want)

	b.navigate(base + "/tasks")
	var rows []row
	b.eval(rowsJS, &rows)
	sortRows(rows)
	if !slices.Equal(rows, want) {
		t.Fatalf("the browser shows rows\n%v\nwant\n%v", rows, want)
	}

	var links int
	b.eval(`document.querySelectorAll('#tasks a.task').length`, &links)
	if links != len(f.tasks) {
		t.Fatalf("%d task links, want %d", links, len(f.tasks))
	}
	for i := 0; i < links; i++ {
		b.navigate(base + "/tasks")
		var target string
		b.eval(`document.querySelectorAll('#tasks a.task')[`+itoa(i)+`].innerText`, &target)
		b.act(`document.querySelectorAll('#tasks a.task')[` + itoa(i) + `].click()`)
		var page struct {
			Path, Title, Status string
			LogRows             int
		}
		b.eval(`({Path: location.pathname, Title: document.querySelector('h1').innerText,
			Status: document.getElementById('status').innerText,
			LogRows: document.querySelectorAll('#log tbody tr').length})`, &page)
		tk := findByID(t, f, target)
		if page.Path != taskPath(tk.typ, tk.id) {
			t.Errorf("clicking %q opened %s, want %s", target, page.Path, taskPath(tk.typ, tk.id))
		}
		if page.Title != "Task "+tk.typ+" / "+tk.id || page.Status != tk.status.String() || page.LogRows != len(tk.statuses) {
			t.Errorf("page of %q: %+v, want status %v and %d log rows", target, page, tk.status, len(tk.statuses))
		}
	}

	t.Run("status link filters", func(t *testing.T) {
		b.navigate(base + "/tasks")
		b.act(`Array.from(document.querySelectorAll('#tasks a')).find(a => a.innerText === 'FAILED').click()`)
		var rows []row
		b.eval(rowsJS, &rows)
		if len(rows) != 1 || rows[0].Identifier != "fails" {
			t.Errorf("FAILED link shows %v", rows)
		}
	})
	t.Run("filter form", func(t *testing.T) {
		b.navigate(base + "/tasks")
		b.act(`(() => { const f = document.querySelector('form');
			f.status.value = 'ACCEPTED'; f.type.value = ` + jsString(typeOdd) + `; f.submit(); })()`)
		var got struct {
			Search string
			Rows   []row
		}
		b.eval(`({Search: location.search, Rows: `+rowsJS+`})`, &got)
		q, _ := url.ParseQuery(strings.TrimPrefix(got.Search, "?"))
		if q.Get("status") != "ACCEPTED" || q.Get("type") != typeOdd {
			t.Errorf("form submitted %s", got.Search)
		}
		if len(got.Rows) != 1 || got.Rows[0] != (row{typeOdd, idURLChars, djangodb.Accepted.String()}) {
			t.Errorf("form shows %v", got.Rows)
		}
	})
	t.Run("response link", func(t *testing.T) {
		for _, tc := range []struct{ id, text string }{{"ok", "15.0"}, {idScript, "hi"}} {
			b.navigate(base + taskPath(typeSum, tc.id))
			b.act(`document.querySelector('a.response').click()`)
			var got struct{ Text, Title string }
			b.eval(`({Text: document.body.innerText, Title: document.title})`, &got)
			if strings.TrimSpace(got.Text) != tc.text {
				t.Errorf("response of %s shows %q, want %q", tc.id, got.Text, tc.text)
			}
			if got.Title == "pwned" {
				t.Errorf("the script of the HTML response of %s ran", tc.id)
			}
		}
	})
}

func sortRows(r []row) {
	sort.Slice(r, func(i, j int) bool { return r[i].Type+"\x00"+r[i].Identifier < r[j].Type+"\x00"+r[j].Identifier })
}

func findByID(t *testing.T, f *fixture, id string) task {
	t.Helper()
	for _, tk := range f.tasks {
		if tk.id == id {
			return tk
		}
	}
	t.Fatalf("the page links an unknown task %q", id)
	return task{}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }
