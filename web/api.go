package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// The JSON documents of /api. Times are RFC 3339 with the offset of the
// zone the store reads them in; statuses are given as code and text.

// TaskJSON is one task (processes_instance row).
type TaskJSON struct {
	ID          int64     `json:"id"`
	Type        string    `json:"type"`
	Identifier  string    `json:"identifier"`
	Status      int       `json:"status"`
	StatusText  string    `json:"status_text"`
	TimeInsert  time.Time `json:"time_insert"`
	TimeUpdate  time.Time `json:"time_update"`
	URL         string    `json:"url"`          // this task in /api
	PageURL     string    `json:"page_url"`     // its HTML page
	ResponseURL string    `json:"response_url"` // its raw response (404 until stored)
}

// TaskListJSON is GET /api/tasks.
type TaskListJSON struct {
	Type   string     `json:"type,omitempty"`
	Status *int       `json:"status,omitempty"`
	Total  int        `json:"total"`
	Offset int        `json:"offset"`
	Limit  int        `json:"limit"`
	Tasks  []TaskJSON `json:"tasks"`
}

// LogRecordJSON is one status change; Type and Identifier are set in the
// log of all tasks.
type LogRecordJSON struct {
	Time       time.Time `json:"time"`
	Status     int       `json:"status"`
	StatusText string    `json:"status_text"`
	Message    string    `json:"message"`
	Type       string    `json:"type,omitempty"`
	Identifier string    `json:"identifier,omitempty"`
}

// TaskDetailJSON is GET /api/tasks/{type}/{id}.
type TaskDetailJSON struct {
	TaskJSON
	Handler    string          `json:"handler,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`       // the input as JSON (see package pickle)
	InputError string          `json:"input_error,omitempty"` // why Input is missing
	Log        []LogRecordJSON `json:"log"`
}

// ResponseJSON is GET /api/tasks/{type}/{id}/response.
type ResponseJSON struct {
	MimeType string `json:"mime_type"`
	Size     int    `json:"size"`
	Text     string `json:"text,omitempty"` // the data when it is UTF-8
	Base64   string `json:"base64"`
}

// TypeJSON is one task type.
type TypeJSON struct {
	Identifier string  `json:"identifier"`
	Handler    string  `json:"handler"`
	MaxStart   int     `json:"maxstart"`
	Timeout    float64 `json:"timeout"`
	TimeRet    float64 `json:"timeret"`
}

// QueueJSON is GET /api/queue.
type QueueJSON struct {
	Waiting          int        `json:"waiting"`
	Limit            int        `json:"limit"`
	Oldest           *time.Time `json:"oldest,omitempty"`
	OldestAgeSeconds float64    `json:"oldest_age_seconds"`
	Daemon           *Stats     `json:"daemon,omitempty"`
}

// ErrorJSON is the body of every API error.
type ErrorJSON struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func (s *server) writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		s.log.Debug("web: writing JSON failed", "error", err)
	}
}

func (s *server) apiError(w http.ResponseWriter, r *http.Request, what string, err error) {
	code, msg := s.classify(r, what, err)
	if code == 499 {
		return
	}
	s.writeJSON(w, code, ErrorJSON{Error: msg, Status: code})
}

func (s *server) taskJSON(in djangodb.Instance) TaskJSON {
	u := urls{s.base}
	page := u.task(in.Type, in.Identifier)
	return TaskJSON{
		ID: in.ID, Type: in.Type, Identifier: in.Identifier,
		Status: int(in.Status), StatusText: in.Status.String(),
		TimeInsert: in.TimeInsert, TimeUpdate: in.TimeUpdate,
		URL:         s.base + "/api" + page[len(s.base):],
		PageURL:     page,
		ResponseURL: u.response(in.Type, in.Identifier),
	}
}

func logJSON(rec djangodb.LogRecord) LogRecordJSON {
	return LogRecordJSON{Time: rec.Time, Status: int(rec.Status), StatusText: rec.Status.String(), Message: rec.Message}
}

func (s *server) apiTaskList(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		s.apiError(w, r, "task list", err)
		return
	}
	list, err := s.loadTaskList(r, q)
	if err != nil {
		s.apiError(w, r, "task list", err)
		return
	}
	out := TaskListJSON{Type: q.Type, Total: list.Total, Offset: q.Offset, Limit: q.Limit, Tasks: []TaskJSON{}}
	if q.Status != nil {
		st := int(*q.Status)
		out.Status = &st
	}
	for _, in := range list.Tasks {
		out.Tasks = append(out.Tasks, s.taskJSON(in))
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiTask(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	d, err := s.loadTaskDetail(r, typ, id)
	if err != nil {
		s.apiError(w, r, "task "+taskName(typ, id), err)
		return
	}
	out := TaskDetailJSON{TaskJSON: s.taskJSON(d.Task), Handler: d.Handler, Log: []LogRecordJSON{}}
	if d.InputErr {
		out.InputError = d.Input
	} else {
		out.Input = json.RawMessage(d.Input)
	}
	for _, rec := range d.Log {
		out.Log = append(out.Log, logJSON(rec))
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiTaskLog(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	in, err := s.loadTask(r, typ, id)
	if err == nil {
		var recs []djangodb.LogRecord
		if recs, err = s.loadTaskLog(r, in); err == nil {
			out := []LogRecordJSON{}
			for _, rec := range recs {
				out = append(out, logJSON(rec))
			}
			s.writeJSON(w, http.StatusOK, out)
			return
		}
	}
	s.apiError(w, r, "log of task "+taskName(typ, id), err)
}

func (s *server) apiResponse(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	resp, err := s.loadResponse(r, typ, id)
	if err != nil {
		s.apiError(w, r, "response of task "+taskName(typ, id), err)
		return
	}
	out := ResponseJSON{MimeType: resp.MimeType, Size: len(resp.Data), Base64: base64.StdEncoding.EncodeToString(resp.Data)}
	if utf8.Valid(resp.Data) {
		out.Text = string(resp.Data)
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiLog(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r.URL.Query(), "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		s.apiError(w, r, "status log", err)
		return
	}
	entries, err := s.loadAllLog(r, limit)
	if err != nil {
		s.apiError(w, r, "status log", err)
		return
	}
	out := []LogRecordJSON{}
	for _, e := range entries {
		j := logJSON(e.LogRecord)
		j.Type, j.Identifier = e.Type, e.Identifier
		out = append(out, j)
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiTypes(w http.ResponseWriter, r *http.Request) {
	types, err := dbCall(s, r, s.store.Types)
	if err != nil {
		s.apiError(w, r, "task types", err)
		return
	}
	out := []TypeJSON{}
	for _, t := range types {
		out = append(out, TypeJSON{Identifier: t.Identifier, Handler: t.Handler, MaxStart: t.MaxStart, Timeout: t.Timeout, TimeRet: t.TimeRet})
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiQueue(w http.ResponseWriter, r *http.Request) {
	q, err := dbCall(s, r, s.store.QueueStats)
	if err != nil {
		s.apiError(w, r, "queue", err)
		return
	}
	out := QueueJSON{Waiting: q.Waiting, Limit: q.Max}
	if !q.Oldest.IsZero() {
		out.Oldest = &q.Oldest
		out.OldestAgeSeconds = max(0, time.Since(q.Oldest).Seconds())
	}
	if s.opts.Stats != nil {
		st := s.opts.Stats()
		out.Daemon = &st
	}
	s.writeJSON(w, http.StatusOK, out)
}
