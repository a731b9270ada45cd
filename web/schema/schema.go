// Package schema defines the JSON documents of atpd: the operator
// commands' --json output (atpd status, tasks, log, response, register,
// enqueue, queue) and the HTTP API under /api describe the same objects
// with these types, so that a script reads both alike. docs/API.md
// documents them.
//
// Conventions: field names are snake_case, as Django's columns; a status
// is given as its name ("FINISHED") in status and its code (5) in
// status_code; times are RFC 3339 in UTC, null when unknown; optional
// members are left out rather than null, except times and ages, which are
// null when there is none.
package schema

import (
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Task is one task: a processes_instance row.
type Task struct {
	ID         int64      `json:"id"` // the instance's primary key
	Type       string     `json:"type"`
	Identifier string     `json:"identifier"`
	Status     string     `json:"status"`      // ACCEPTED, SCHEDULED, RUNNING, PAUSED, FINISHED, FAILED (UNDEFINED)
	StatusCode int        `json:"status_code"` // 1 to 6 (0)
	TimeInsert *time.Time `json:"time_insert"`
	TimeUpdate *time.Time `json:"time_update"`
	// The API's links: this task in /api, its HTML page and its raw
	// response (404 while none is stored). Absent from the commands'
	// output.
	URL         string `json:"url,omitempty"`
	PageURL     string `json:"page_url,omitempty"`
	ResponseURL string `json:"response_url,omitempty"`
}

// NewTask is in as a Task, without links.
func NewTask(in djangodb.Instance) Task {
	return Task{
		ID: in.ID, Type: in.Type, Identifier: in.Identifier,
		Status: in.Status.String(), StatusCode: int(in.Status),
		TimeInsert: Time(in.TimeInsert), TimeUpdate: Time(in.TimeUpdate),
	}
}

// TaskList is a selection of tasks: GET /api/tasks and atpd tasks.
type TaskList struct {
	Type   string  `json:"type,omitempty"`   // the type filter
	Status *string `json:"status,omitempty"` // the status filter, by name
	Total  int     `json:"total"`            // tasks the filter selects, on every page
	Offset int     `json:"offset"`           // of the first task listed
	Limit  int     `json:"limit"`            // most tasks listed (0: no limit)
	Tasks  []Task  `json:"tasks"`
}

// LogRecord is one status change of a task. Type and Identifier are set
// where records of several tasks are listed (GET /api/log).
type LogRecord struct {
	Time       *time.Time `json:"time"`
	Status     string     `json:"status"`
	StatusCode int        `json:"status_code"`
	Message    string     `json:"message"`
	Type       string     `json:"type,omitempty"`
	Identifier string     `json:"identifier,omitempty"`
}

// NewLogRecord is rec as a LogRecord.
func NewLogRecord(rec djangodb.LogRecord) LogRecord {
	return LogRecord{Time: Time(rec.Time), Status: rec.Status.String(), StatusCode: int(rec.Status), Message: rec.Message}
}

// NewLog is recs as LogRecords, never nil (an empty log is []).
func NewLog(recs []djangodb.LogRecord) []LogRecord {
	out := make([]LogRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, NewLogRecord(r))
	}
	return out
}

// ResponseInfo describes a stored response without its data.
type ResponseInfo struct {
	MimeType string `json:"mime_type"`
	Size     int    `json:"size"`
}

// TaskDetail is a task with its handler, input, response and log: GET
// /api/tasks/{type}/{id}.
type TaskDetail struct {
	Task
	Handler    string          `json:"handler,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`       // the input as JSON (see package pickle)
	InputError string          `json:"input_error,omitempty"` // why Input is missing
	Response   *ResponseInfo   `json:"response"`              // null while none is stored
	Log        []LogRecord     `json:"log"`
}

// Response is a task's stored response: GET
// /api/tasks/{type}/{id}/response and atpd response --json.
type Response struct {
	Type       string  `json:"type"`
	Identifier string  `json:"identifier"`
	MimeType   string  `json:"mime_type"`
	Size       int     `json:"size"`
	Text       *string `json:"text,omitempty"` // the data, when it is UTF-8
	Base64     string  `json:"base64"`         // the data
}

// NewResponse is the response r of the task typ::id.
func NewResponse(typ, id string, r djangodb.Response) Response {
	out := Response{Type: typ, Identifier: id, MimeType: r.MimeType, Size: len(r.Data), Base64: base64.StdEncoding.EncodeToString(r.Data)}
	if utf8.Valid(r.Data) {
		text := string(r.Data)
		out.Text = &text
	}
	return out
}

// Type is a task type: a processes_type row.
type Type struct {
	Identifier string  `json:"identifier"`
	Handler    string  `json:"handler"`
	Timeout    float64 `json:"timeout"`  // seconds a run may take
	TimeRet    float64 `json:"timeret"`  // seconds finished tasks are kept; <= 0: forever
	MaxStart   int     `json:"maxstart"` // most runs of one task
}

// NewType is t as a Type.
func NewType(t djangodb.TaskType) Type {
	return Type{Identifier: t.Identifier, Handler: t.Handler, Timeout: t.Timeout, TimeRet: t.TimeRet, MaxStart: t.MaxStart}
}

// Daemon is what the daemon serving the API in its process reports of
// itself.
type Daemon struct {
	ServerID   string `json:"server_id"`  // the daemon's id as it logs it (0x%016X)
	Workers    int    `json:"workers"`    // worker pool size
	Busy       int    `json:"busy"`       // workers running a task
	Started    int64  `json:"started"`    // tasks started since the daemon started
	Finished   int64  `json:"finished"`   // tasks ended FINISHED
	Failed     int64  `json:"failed"`     // tasks ended FAILED
	Reenqueued int64  `json:"reenqueued"` // tasks the daemon put back on the queue
	Sweeps     int64  `json:"sweeps"`     // clean-ups run
}

// Queue is the waiting queue: GET /api/queue and atpd queue.
type Queue struct {
	Waiting          int        `json:"waiting"`            // tasks no daemon has taken yet
	Limit            int        `json:"limit"`              // most waiting tasks an enqueue accepts
	Full             bool       `json:"full"`               // Waiting >= Limit: enqueues fail
	Oldest           *time.Time `json:"oldest"`             // when the oldest waiting task was queued
	OldestAgeSeconds *float64   `json:"oldest_age_seconds"` // how long it has waited
	Daemon           *Daemon    `json:"daemon,omitempty"`   // the API's own daemon, when one runs
}

// NewQueue is q as a Queue, ages measured at now.
func NewQueue(q djangodb.QueueStats, now time.Time) Queue {
	out := Queue{Waiting: q.Waiting, Limit: q.Max, Full: q.Waiting >= q.Max}
	if !q.Oldest.IsZero() {
		out.Oldest = Time(q.Oldest)
		age := max(0, now.Sub(q.Oldest).Seconds())
		out.OldestAgeSeconds = &age
	}
	return out
}

// Enqueued is what atpd enqueue --format json prints: the task queued.
type Enqueued struct {
	ID         int64  `json:"id"`
	Type       string `json:"type"`
	Identifier string `json:"identifier"`
}

// Error is the body of every API error.
type Error struct {
	Error  string `json:"error"`
	Status int    `json:"status"` // the HTTP status code
}

// Time is t in UTC, or nil when t is zero.
func Time(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// ShadowMismatch is one shadow-mode run whose Go port's records differed
// from the Python handler's (GET /api/shadow, newest first).
type ShadowMismatch struct {
	Time       time.Time `json:"time"`
	Path       string    `json:"path"`
	Type       string    `json:"type"`
	Identifier string    `json:"identifier"`
	InstanceID int64     `json:"instance_id"`
	Difference string    `json:"difference"`
}

// ShadowReport is GET /api/shadow: the recent mismatches this daemon
// found (it keeps the last ShadowKept), newest first.
type ShadowReport struct {
	Mismatches []ShadowMismatch `json:"mismatches"`
}
