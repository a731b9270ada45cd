package web

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/web/schema"
)

// The JSON documents of /api are package schema's, which the operator
// commands' --json output shares; these names are kept for the package's
// users.
type (
	TaskJSON       = schema.Task
	TaskListJSON   = schema.TaskList
	LogRecordJSON  = schema.LogRecord
	TaskDetailJSON = schema.TaskDetail
	ResponseJSON   = schema.Response
	TypeJSON       = schema.Type
	QueueJSON      = schema.Queue
	ErrorJSON      = schema.Error
)

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
	t := schema.NewTask(in)
	t.URL = s.base + "/api" + page[len(s.base):]
	t.PageURL = page
	t.ResponseURL = u.response(in.Type, in.Identifier)
	return t
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
		st := q.Status.String()
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
	out := TaskDetailJSON{Task: s.taskJSON(d.Task), Handler: d.Handler, Log: schema.NewLog(d.Log)}
	out.Response = d.Response
	if d.InputErr {
		out.InputError = d.Input
	} else {
		out.Input = json.RawMessage(d.Input)
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiTaskLog(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	in, err := s.loadTask(r, typ, id)
	if err == nil {
		var recs []djangodb.LogRecord
		if recs, err = s.loadTaskLog(r, in); err == nil {
			s.writeJSON(w, http.StatusOK, schema.NewLog(recs))
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
	s.writeJSON(w, http.StatusOK, schema.NewResponse(typ, id, resp))
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
		j := schema.NewLogRecord(e.LogRecord)
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
		out = append(out, schema.NewType(t))
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *server) apiQueue(w http.ResponseWriter, r *http.Request) {
	q, err := dbCall(s, r, s.store.QueueStats)
	if err != nil {
		s.apiError(w, r, "queue", err)
		return
	}
	out := schema.NewQueue(q, time.Now())
	if s.opts.Stats != nil {
		st := s.opts.Stats()
		out.Daemon = &st
	}
	s.writeJSON(w, http.StatusOK, out)
}

// apiShadow lists the shadow-mode mismatches the daemon kept.
func (s *server) apiShadow(w http.ResponseWriter, r *http.Request) {
	if s.opts.Shadow == nil {
		s.writeJSON(w, http.StatusNotFound, map[string]string{"error": "shadow mode is off: no --shadow path"})
		return
	}
	out := schema.ShadowReport{Mismatches: s.opts.Shadow()}
	if out.Mismatches == nil {
		out.Mismatches = []schema.ShadowMismatch{}
	}
	s.writeJSON(w, http.StatusOK, out)
}
