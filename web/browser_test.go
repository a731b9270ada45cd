package web_test

import (
	"context"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	rows := eval[[]row](b, rowsJS)
	sortRows(rows)
	if !slices.Equal(rows, want) {
		t.Fatalf("the browser shows rows\n%v\nwant\n%v", rows, want)
	}

	links := run(b, chromedp.Nodes(chromedp.CSSAll(`#tasks a.task`)))
	if len(links) != len(f.tasks) {
		t.Fatalf("%d task links, want %d", len(links), len(f.tasks))
	}
	for i := range links {
		b.navigate(base + "/tasks")
		// The nodes of an earlier visit are gone: look them up again.
		links := run(b, chromedp.Nodes(chromedp.CSSAll(`#tasks a.task`)))
		if len(links) <= i {
			t.Fatalf("the list has %d task links on a later visit, want %d", len(links), len(f.tasks))
		}
		target := run(b, chromedp.Text(chromedp.NodeIDs{links[i].NodeID}))
		b.act(chromedp.MouseClickNode(links[i]))
		page := eval[struct {
			Path, Title, Status string
			LogRows             int
		}](b, `({Path: location.pathname, Title: document.querySelector('h1').innerText,
			Status: document.getElementById('status').innerText,
			LogRows: document.querySelectorAll('#log tbody tr').length})`)
		tk := findByID(t, f, target)
		if page.Path != taskPath(tk.typ, tk.id) {
			t.Errorf("clicking %q opened %s, want %s", target, page.Path, taskPath(tk.typ, tk.id))
		}
		if page.Title != "Task "+tk.typ+" / "+tk.id || page.Status != tk.status.String() || page.LogRows != len(tk.statuses) {
			t.Errorf("page of %q: %+v, want status %v and %d log rows", target, page, tk.status, len(tk.statuses))
		}
	}

	t.Run("status link filters", func(t *testing.T) {
		b := b.with(t)
		b.navigate(base + "/tasks")
		b.act(chromedp.Click(chromedp.JSPath(`Array.from(document.querySelectorAll('#tasks a')).find(a => a.innerText === 'FAILED')`)))
		rows := eval[[]row](b, rowsJS)
		if len(rows) != 1 || rows[0].Identifier != "fails" {
			t.Errorf("FAILED link shows %v", rows)
		}
	})
	t.Run("filter form", func(t *testing.T) {
		b := b.with(t)
		b.navigate(base + "/tasks")
		b.act(
			chromedp.SetValue(chromedp.CSS(`form select[name=status]`), "ACCEPTED"),
			chromedp.SetValue(chromedp.CSS(`form select[name=type]`), typeOdd),
			chromedp.Submit(chromedp.CSS(`form`)),
		)
		got := eval[struct {
			Search string
			Rows   []row
		}](b, `({Search: location.search, Rows: `+rowsJS+`})`)
		q, _ := url.ParseQuery(strings.TrimPrefix(got.Search, "?"))
		if q.Get("status") != "ACCEPTED" || q.Get("type") != typeOdd {
			t.Errorf("form submitted %s", got.Search)
		}
		if len(got.Rows) != 1 || got.Rows[0] != (row{typeOdd, idURLChars, djangodb.Accepted.String()}) {
			t.Errorf("form shows %v", got.Rows)
		}
	})
	t.Run("response link", func(t *testing.T) {
		b := b.with(t)
		for _, tc := range []struct{ id, text string }{{"ok", "15.0"}, {idScript, "hi"}} {
			b.navigate(base + taskPath(typeSum, tc.id))
			b.act(chromedp.Click(chromedp.CSS(`a.response`)))
			got := eval[struct{ Text, Title string }](b, `({Text: document.body.innerText, Title: document.title})`)
			if strings.TrimSpace(got.Text) != tc.text {
				t.Errorf("response of %s shows %q, want %q", tc.id, got.Text, tc.text)
			}
			if got.Title == "pwned" {
				t.Errorf("the script of the HTML response of %s ran", tc.id)
			}
		}
	})
}

// chromiumPath is where Debian's chromium package (scripts/setup.sh)
// installs the browser.
const chromiumPath = "/usr/bin/chromium"

// Bounds on the browser: its start, one step (a load, a click and the
// page it opens, a script), and its shutdown.
const (
	startTimeout = 30 * time.Second
	stepTimeout  = 30 * time.Second
	closeTimeout = 30 * time.Second
)

// browser is one tab of a headless Chromium that chromedp drives, and
// the test that uses it.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// startBrowser starts Chromium with one tab, or skips (fails in CI) when
// it is missing. The test's cleanup closes the browser and waits for its
// process to exit before the profile directory goes.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if ok, _ := strconv.ParseBool(os.Getenv("CI")); ok {
			t.Fatalf("%s: %v (CI=true: install Debian's chromium package)", chromiumPath, err)
		}
		t.Skipf("%s not installed (apt-get install chromium); skipping the browser test", chromiumPath)
	}
	// TempDir before the browser: cleanups run last-in first-out, so the
	// browser is gone when the directory is removed.
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(profile),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// A graceful close (Browser.close), waiting for the process to
		// exit; past the deadline chromedp kills it and still waits.
		closeCtx, cancelClose := context.WithTimeout(ctx, closeTimeout)
		defer cancelClose()
		if err := chromedp.Cancel(closeCtx); err != nil {
			t.Errorf("close %s: %v", chromiumPath, err)
		}
		cancel()
		cancelAlloc() // waits until the allocator has let go of everything
	})
	// The first run starts the browser and lives as long as its context,
	// so it cannot take a timeout of its own: bound it from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v", chromiumPath, err)
		}
	case <-time.After(startTimeout):
		cancel()
		<-started
		t.Fatalf("%s did not start within %v", chromiumPath, startTimeout)
	}
	return &browser{t: t, ctx: ctx}
}

// with returns the same tab for the subtest t.
func (b *browser) with(t *testing.T) *browser { return &browser{t: t, ctx: b.ctx} }

// run runs one action with the step timeout and returns its value.
func run[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("chromium: %v", err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page (DevTools is not
// bound by the page's CSP) and decodes its JSON-able value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// navigate loads u and waits for its load event.
func (b *browser) navigate(u string) {
	b.t.Helper()
	resp := run(b, chromedp.NavigateResponse(u))
	if resp == nil {
		b.t.Fatalf("navigate to %s: no response", u)
	}
	if resp.Status != 200 {
		b.t.Fatalf("navigate to %s: HTTP %d %s", u, resp.Status, resp.StatusText)
	}
}

// act runs steps that navigate (a click, a form submission) and waits
// for the next page's load event.
func (b *browser) act(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("chromium: %v", err)
	}
	if resp == nil {
		b.t.Fatal("the page loaded without a response")
	}
	if resp.Status != 200 {
		b.t.Fatalf("%s: HTTP %d %s", resp.URL, resp.Status, resp.StatusText)
	}
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
