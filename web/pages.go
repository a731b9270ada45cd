package web

import (
	"bytes"
	"context"
	"embed"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages holds one template set per page, each the layout plus the page's
// "content".
type pages struct {
	tasks, task, log, error *template.Template
}

// base is what the layout needs; every page's data embeds it.
type base struct {
	Base    string
	Title   string
	Refresh int // seconds; 0 for none
	Header  queueState
}

// mustParsePages parses the embedded templates, which are part of the
// binary: an error is a bug that every test run finds.
func mustParsePages(u urls) *pages {
	parse := func(page string) *template.Template {
		t := template.New(page).Funcs(funcs(u))
		return template.Must(t.ParseFS(templateFS, "templates/layout.html", "templates/"+page))
	}
	return &pages{
		tasks: parse("tasks.html"),
		task:  parse("task.html"),
		log:   parse("log.html"),
		error: parse("error.html"),
	}
}

// urls builds the pages' links; every path segment taken from the
// database is escaped, so identifiers with "/", "?" or "#" stay one
// segment.
type urls struct{ base string }

func (u urls) task(typ, id string) string {
	return u.base + "/tasks/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

func (u urls) response(typ, id string) string { return u.task(typ, id) + "/response" }

func (u urls) list(key, value string) string {
	return u.base + "/tasks?" + url.Values{key: {value}}.Encode()
}

func funcs(u urls) template.FuncMap {
	return template.FuncMap{
		"taskURL":     u.task,
		"responseURL": u.response,
		"listURL":     u.list,
		"ts":          func(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") },
		"iso":         func(t time.Time) string { return t.Format(time.RFC3339Nano) },
		"age":         func(d time.Duration) string { return d.Round(time.Second).String() },
	}
}

// render writes a page, or a plain 500 when the template fails: rendering
// into a buffer first keeps a half-written page from being sent as 200.
func (s *server) render(w http.ResponseWriter, r *http.Request, t *template.Template, code int, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("web: cannot render page", "request", r.URL.Path, "template", t.Name(), "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	securityHeaders(h)
	// The pages use only their own inline stylesheet and forms.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *server) newBase(r *http.Request, title string, refresh bool) base {
	b := base{Base: s.base, Title: title, Header: s.loadQueueState(r)}
	if refresh && s.opts.Refresh > 0 {
		b.Refresh = max(1, int(s.opts.Refresh.Round(time.Second)/time.Second))
	}
	return b
}

type errorPage struct {
	base
	Code     int
	CodeText string
	Message  string
}

func (s *server) pageError(w http.ResponseWriter, r *http.Request, what string, err error) {
	code, msg := s.classify(r, what, err)
	if code == 499 {
		return
	}
	b := base{Base: s.base, Title: http.StatusText(code)}
	if code < 500 {
		// The database answers (the request was wrong): the header shows
		// the queue as on every page. After a database failure it would
		// only wait for another timeout.
		b = s.newBase(r, http.StatusText(code), false)
	}
	s.render(w, r, s.pages.error, code, errorPage{
		base:     b,
		Code:     code,
		CodeText: http.StatusText(code),
		Message:  msg,
	})
}

type tasksPage struct {
	base
	List       taskList
	Statuses   []djangodb.Status
	SelStatus  string
	Types      []djangodb.TaskType
	First      int
	Last       int
	Prev, Next string
}

func (s *server) taskListPage(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		s.pageError(w, r, "task list", err)
		return
	}
	list, err := s.loadTaskList(r, q)
	if err != nil {
		s.pageError(w, r, "task list", err)
		return
	}
	types, err := dbCall(s, r, s.store.Types)
	if err != nil {
		s.pageError(w, r, "task types", err)
		return
	}
	p := tasksPage{
		base:     s.newBase(r, "Tasks", true),
		List:     list,
		Statuses: []djangodb.Status{djangodb.Undefined, djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Paused, djangodb.Finished, djangodb.Failed},
		Types:    types,
		First:    q.Offset + 1,
		Last:     q.Offset + len(list.Tasks),
	}
	if q.Status != nil {
		p.SelStatus = q.Status.String()
	}
	page := func(offset int) string {
		v := q.values()
		if offset > 0 {
			v.Set("offset", strconv.Itoa(offset))
		}
		if len(v) == 0 {
			return s.base + "/tasks"
		}
		return s.base + "/tasks?" + v.Encode()
	}
	if q.Offset > 0 {
		p.Prev = page(max(0, q.Offset-q.Limit))
	}
	if q.Offset+q.Limit < list.Total {
		p.Next = page(q.Offset + q.Limit)
	}
	s.render(w, r, s.pages.tasks, http.StatusOK, p)
}

type taskPageData struct {
	base
	Detail taskDetail
}

func (s *server) taskPage(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	d, err := s.loadTaskDetail(r, typ, id)
	if err != nil {
		s.pageError(w, r, "task "+taskName(typ, id), err)
		return
	}
	s.render(w, r, s.pages.task, http.StatusOK, taskPageData{base: s.newBase(r, "Task "+taskName(typ, id), !d.Task.Status.Terminal()), Detail: d})
}

type logPageData struct {
	base
	Entries []logEntry
}

func (s *server) logPage(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r.URL.Query(), "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		s.pageError(w, r, "status log", err)
		return
	}
	entries, err := s.loadAllLog(r, limit)
	if err != nil {
		s.pageError(w, r, "status log", err)
		return
	}
	s.render(w, r, s.pages.log, http.StatusOK, logPageData{base: s.newBase(r, "Status log", true), Entries: entries})
}

// responseRaw serves a task's response as the handler stored it, with its
// MIME type, like the reference response view. The type comes from the
// handler, so the document is sandboxed: an HTML or SVG response cannot
// run script as the pages' origin.
func (s *server) responseRaw(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	resp, err := s.loadResponse(r, typ, id)
	if err != nil {
		code, msg := s.classify(r, "response of task "+taskName(typ, id), err)
		if code == 499 {
			return
		}
		securityHeaders(w.Header())
		http.Error(w, msg, code)
		return
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Content-Type", s.contentType(r, typ, id, resp.MimeType))
	h.Set("Content-Length", strconv.Itoa(len(resp.Data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(resp.Data)
	}
}

func (s *server) loadResponse(r *http.Request, typ, id string) (djangodb.Response, error) {
	in, err := s.loadTask(r, typ, id)
	if err != nil {
		return djangodb.Response{}, err
	}
	resp, err := dbCall(s, r, func(ctx context.Context) (djangodb.Response, error) { return s.store.Response(ctx, in.ID) })
	if err != nil {
		return resp, notFound(err, "task %s (status %s) has no response", taskName(typ, id), in.Status)
	}
	return resp, nil
}

// contentType checks the stored MIME type: a handler may store anything,
// and a malformed value must neither break the header nor be guessed at.
func (s *server) contentType(r *http.Request, typ, id, stored string) string {
	if stored == "" {
		return "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(stored)
	if err != nil {
		s.log.Warn("web: task response has an invalid MIME type; serving it as application/octet-stream",
			"request", r.URL.Path, "type", typ, "identifier", id, "mime_type", stored, "error", err)
		return "application/octet-stream"
	}
	return mime.FormatMediaType(mt, params)
}
