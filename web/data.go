package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/web/schema"
)

// listQuery is the task list's filter and page, from the query string.
type listQuery struct {
	Type   string
	Status *djangodb.Status
	Limit  int
	Offset int
}

func parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{Type: q.Get("type"), Limit: DefaultPageSize}
	if v := q.Get("status"); v != "" {
		st, err := djangodb.ParseStatus(strings.TrimSpace(v))
		if err != nil {
			return lq, badRequest("status %q is none of UNDEFINED, ACCEPTED, SCHEDULED, RUNNING, PAUSED, FINISHED, FAILED nor their codes 0 to 6", v)
		}
		lq.Status = &st
	}
	var err error
	if lq.Limit, err = intParam(q, "limit", DefaultPageSize, 1, MaxPageSize); err != nil {
		return lq, err
	}
	if lq.Offset, err = intParam(q, "offset", 0, 0, 1<<31-1); err != nil {
		return lq, err
	}
	return lq, nil
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s %q is not a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// values returns the query string that selects the same tasks, for links.
func (q listQuery) values() url.Values {
	v := url.Values{}
	if q.Type != "" {
		v.Set("type", q.Type)
	}
	if q.Status != nil {
		v.Set("status", q.Status.String())
	}
	if q.Limit != DefaultPageSize {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

type taskList struct {
	Query listQuery
	Tasks []djangodb.Instance
	Total int // tasks matching the filter, all pages
}

// newestFirst orders instances as the reference task view did (latest
// update first), ties broken by id so that pages are stable.
func newestFirst(a, b djangodb.Instance) int {
	if c := b.TimeUpdate.Compare(a.TimeUpdate); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// loadTaskList reads the instances the query selects. The store lists in
// id order with no offset, so the whole selection is read and sorted here;
// retention (timeret) keeps that bounded on real deployments.
func (s *server) loadTaskList(r *http.Request, q listQuery) (taskList, error) {
	if q.Type != "" {
		if _, err := dbCall(s, r, func(ctx context.Context) (djangodb.TaskType, error) { return s.store.Type(ctx, q.Type) }); err != nil {
			return taskList{}, notFound(err, "task type %q is not registered", q.Type)
		}
	}
	all, err := dbCall(s, r, func(ctx context.Context) ([]djangodb.Instance, error) {
		return s.store.Instances(ctx, djangodb.InstanceFilter{Type: q.Type, Status: q.Status})
	})
	if err != nil {
		return taskList{}, err
	}
	slices.SortFunc(all, newestFirst)
	tl := taskList{Query: q, Total: len(all)}
	if q.Offset < len(all) {
		tl.Tasks = all[q.Offset:min(len(all), q.Offset+q.Limit)]
	}
	return tl, nil
}

// taskDetail is one task with everything the task page shows.
type taskDetail struct {
	Task     djangodb.Instance
	Handler  string
	Response *schema.ResponseInfo // nil when none is stored
	Log      []djangodb.LogRecord
	Input    string // the input as JSON, or why it cannot be shown
	InputErr bool
}

// maxInputJSON bounds the input shown on a task page; the page is for
// people, and an input can expand to far more JSON than its pickle.
const maxInputJSON = 64 << 10

func (s *server) loadTask(r *http.Request, typ, id string) (djangodb.Instance, error) {
	in, err := dbCall(s, r, func(ctx context.Context) (djangodb.Instance, error) {
		return s.store.InstanceByIdentifier(ctx, typ, id)
	})
	if err != nil {
		return in, notFound(err, "no task %s (type %q, identifier %q)", taskName(typ, id), typ, id)
	}
	return in, nil
}

func (s *server) loadTaskLog(r *http.Request, in djangodb.Instance) ([]djangodb.LogRecord, error) {
	recs, err := dbCall(s, r, func(ctx context.Context) ([]djangodb.LogRecord, error) { return s.store.Log(ctx, in.ID) })
	if err != nil {
		return nil, fmt.Errorf("log of task %s: %w", taskName(in.Type, in.Identifier), err)
	}
	return recs, nil
}

func (s *server) loadTaskDetail(r *http.Request, typ, id string) (taskDetail, error) {
	in, err := s.loadTask(r, typ, id)
	if err != nil {
		return taskDetail{}, err
	}
	d := taskDetail{Task: in}
	if d.Log, err = s.loadTaskLog(r, in); err != nil {
		return d, err
	}
	if t, err := dbCall(s, r, func(ctx context.Context) (djangodb.TaskType, error) { return s.store.Type(ctx, typ) }); err == nil {
		d.Handler = t.Handler
	}
	resp, err := dbCall(s, r, func(ctx context.Context) (djangodb.Response, error) { return s.store.Response(ctx, in.ID) })
	switch {
	case errors.Is(err, djangodb.ErrNotFound):
	case err != nil:
		return d, fmt.Errorf("response of task %s: %w", taskName(typ, id), err)
	default:
		d.Response = &schema.ResponseInfo{MimeType: resp.MimeType, Size: len(resp.Data)}
	}
	stored, err := dbCall(s, r, func(ctx context.Context) (string, error) { return s.store.Input(ctx, in.ID) })
	switch {
	case errors.Is(err, djangodb.ErrNotFound):
		d.Input, d.InputErr = "(no input row)", true
	case err != nil:
		return d, fmt.Errorf("input of task %s: %w", taskName(typ, id), err)
	default:
		d.Input, d.InputErr = inputJSON(stored)
	}
	return d, nil
}

// inputJSON renders a stored input for people. A producer may have stored
// anything, so failing to decode is shown, not raised.
func inputJSON(stored string) (string, bool) {
	v, err := pickle.DecodeOptions{MaxSize: 16 << 20}.Decode(stored)
	if err != nil {
		return "input cannot be decoded: " + err.Error(), true
	}
	j, err := pickle.ToJSON(v, pickle.JSONIndent("  "), pickle.JSONMaxBytes(maxInputJSON))
	if err != nil {
		return "input cannot be shown: " + err.Error(), true
	}
	return string(j), false
}

// logEntry is one record of the all-tasks log.
type logEntry struct {
	djangodb.LogRecord
	Type, Identifier string
}

// logSlack is how much later than its instance's timeUpdate a log record
// may be stamped: the tracker saves the instance, then writes the record.
const logSlack = time.Second

// loadAllLog returns the newest limit records of all tasks. The store has
// no query across instances, so it reads the logs of the most recently
// updated instances and stops once no older instance can hold a record
// newer than the ones it has (a record is never much newer than its
// instance's timeUpdate). At most 4*limit instances are read.
func (s *server) loadAllLog(r *http.Request, limit int) ([]logEntry, error) {
	insts, err := dbCall(s, r, func(ctx context.Context) ([]djangodb.Instance, error) {
		return s.store.Instances(ctx, djangodb.InstanceFilter{})
	})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	slices.SortFunc(insts, newestFirst)
	var out []logEntry
	byNewest := func(a, b logEntry) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	}
	for i, in := range insts {
		if i >= 4*limit {
			break
		}
		if len(out) >= limit {
			slices.SortFunc(out, byNewest)
			out = out[:limit]
			if in.TimeUpdate.Add(logSlack).Before(out[limit-1].Time) {
				break
			}
		}
		recs, err := s.loadTaskLog(r, in)
		if errors.Is(err, djangodb.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			out = append(out, logEntry{LogRecord: rec, Type: in.Type, Identifier: in.Identifier})
		}
	}
	slices.SortFunc(out, byNewest)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// queueState is the header every page shows; Loaded is false where it
// was not read (an error page after a database failure), and then the
// header shows no queue rather than an empty one.
type queueState struct {
	Loaded   bool
	Queue    djangodb.QueueStats
	Age      time.Duration
	QueueErr string
	Stats    *Stats
}

func (s *server) loadQueueState(r *http.Request) queueState {
	qs := queueState{Loaded: true}
	q, err := dbCall(s, r, s.store.QueueStats)
	if err != nil {
		qs.QueueErr = "unavailable"
		if r.Context().Err() == nil {
			s.log.Warn("web: cannot read the queue for the page header", "request", r.URL.Path, "error", err)
		}
	} else {
		qs.Queue = q
		if !q.Oldest.IsZero() {
			qs.Age = max(0, time.Since(q.Oldest))
		}
	}
	if s.opts.Stats != nil {
		st := s.opts.Stats()
		qs.Stats = &st
	}
	return qs
}

// notFound turns djangodb.ErrNotFound into a 404 that says what is
// missing, and passes other errors on.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, djangodb.ErrNotFound) {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
	}
	return err
}

func taskName(typ, id string) string {
	return djangodb.InstanceRef{Type: typ, Identifier: id}.String()
}
