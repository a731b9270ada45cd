// Package handlertest runs a Go task handler without a database and
// records what the daemon would write for it: the handler's status changes
// and responses through a recording executor.TaskStatus, then the outcome
// (FINISHED unless the handler ended the task itself, FAILED with the
// error's text). The input is a Go value, pickled as a Go producer would,
// or the stored text (base64(zlib(pickle))) a Python producer wrote, and
// it reaches the handler through the same decoder and registry the daemon
// uses, so decoding errors and panics read as they would in the task's
// log. It is to atpd's Go handlers what river's rivertest is to workers.
package handlertest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
)

// Record is one row the daemon would write for the task: a status change
// (a processes_logrecord row and the instance's status) or a stored
// response (the processes_response row; a later one replaces it).
type Record struct {
	// Response tells the kind: false for a status change (Status,
	// Message), true for a response (Data, MimeType).
	Response bool
	Status   djangodb.Status
	Message  string
	Data     []byte
	MimeType string
}

func (r Record) String() string {
	if r.Response {
		return fmt.Sprintf("response %q (%s)", r.Data, r.MimeType)
	}
	return fmt.Sprintf("%d %q", int(r.Status), r.Message)
}

// Result is what a run leaves.
type Result struct {
	// Records are the handler's writes in order, then the outcome the
	// daemon writes (none when the handler ended the task itself and
	// returned nil).
	Records []Record
	// Status is the task's final status.
	Status djangodb.Status
	// Response is the stored response, nil when none was stored.
	Response *djangodb.Response
	// Err is what the handler (or the decoder) returned; nil when it
	// returned normally.
	Err error
}

// Statuses returns the status changes of Records as (code, message)
// pairs, the form of the task's log from RUNNING on.
func (r Result) Statuses() []Record {
	var out []Record
	for _, rec := range r.Records {
		if !rec.Response {
			out = append(out, rec)
		}
	}
	return out
}

// Path is the dotted path handlers run under unless Options.Path says
// otherwise.
const Path = "handlertest.handler"

// Options adjust a run; the zero value is ready to use.
type Options struct {
	// Path is the dotted handler path the task's type names (default
	// Path); the handler sees it in executor.Task.Handler.
	Path string
	// Type and Identifier name the task (default "Test" and "test-1").
	Type, Identifier string
}

// Run pickles input as a Go producer does (pickle.Encode) and runs h on
// it.
func Run(ctx context.Context, h gohandlers.Handler, input any, o Options) (Result, error) {
	stored, err := pickle.Encode(input)
	if err != nil {
		return Result{}, fmt.Errorf("handlertest: encode input: %w", err)
	}
	return RunStored(ctx, h, stored, o), nil
}

// RunStored runs h on a stored input text, exactly as processes_input
// holds it.
func RunStored(ctx context.Context, h gohandlers.Handler, stored string, o Options) Result {
	if o.Path == "" {
		o.Path = Path
	}
	if o.Type == "" {
		o.Type = "Test"
	}
	if o.Identifier == "" {
		o.Identifier = "test-1"
	}
	reg := gohandlers.NewRegistry()
	if err := reg.Register(o.Path, h); err != nil {
		return Result{Err: fmt.Errorf("handlertest: %w", err), Status: djangodb.Failed}
	}
	rec := NewRecorder(o.Type, o.Identifier)
	task := &executor.Task{Type: o.Type, Identifier: o.Identifier, Handler: o.Path, Input: stored, HasInput: true}
	err := reg.Execute(ctx, task, rec)
	records := rec.End(err)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return Result{Err: err, Records: records, Status: rec.status, Response: rec.response}
}

// ErrDone is what a Recorder's setters return once the run has ended, as
// the daemon's return ErrTaskReleased.
var ErrDone = errors.New("handlertest: the task's run has ended")

// Recorder is an executor.TaskStatus that writes nothing and records
// every write, with the status the task would have after each. It is safe
// for concurrent use.
type Recorder struct {
	typ, identifier string

	mu       sync.Mutex
	records  []Record
	status   djangodb.Status
	response *djangodb.Response
	done     bool
}

var _ executor.TaskStatus = (*Recorder)(nil)

// NewRecorder returns a Recorder for a RUNNING task.
func NewRecorder(typ, identifier string) *Recorder {
	return &Recorder{typ: typ, identifier: identifier, status: djangodb.Running}
}

// Records returns the writes so far.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// End ends the run whose handler returned err: it records the outcome
// the daemon writes (FAILED with err's text, or FINISHED unless the
// handler ended the task itself), refuses later writes with ErrDone, and
// returns every record. Called again, it adds nothing.
func (r *Recorder) End(err error) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		r.done = true
		switch {
		case err != nil:
			r.add(Record{Status: djangodb.Failed, Message: djangodb.StorableText(err.Error())})
		case !r.status.Terminal():
			// stopTaskSuccessIfNotFinished, with the daemon's empty message.
			r.add(Record{Status: djangodb.Finished})
		}
	}
	return append([]Record(nil), r.records...)
}

func (r *Recorder) add(rec Record) {
	r.records = append(r.records, rec)
	if rec.Response {
		r.response = &djangodb.Response{Data: rec.Data, MimeType: rec.MimeType}
		return
	}
	r.status = rec.Status
}

func (r *Recorder) write(rec Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return ErrDone
	}
	r.add(rec)
	return nil
}

func (r *Recorder) Identifier() (typ, identifier string) { return r.typ, r.identifier }

func (r *Recorder) Info(context.Context) (executor.Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return executor.Info{Type: r.typ, Identifier: r.identifier, Status: r.status}, nil
}

func (r *Recorder) Status(context.Context) (djangodb.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, nil
}

func (r *Recorder) SetSuccess(_ context.Context, message string) error {
	return r.write(Record{Status: djangodb.Finished, Message: djangodb.StorableText(message)})
}

func (r *Recorder) SetFailure(_ context.Context, message string) error {
	return r.write(Record{Status: djangodb.Failed, Message: djangodb.StorableText(message)})
}

func (r *Recorder) SetPaused(_ context.Context, message string) error {
	return r.write(Record{Status: djangodb.Paused, Message: djangodb.StorableText(message)})
}

func (r *Recorder) SetRunning(_ context.Context, message string) error {
	return r.write(Record{Status: djangodb.Running, Message: djangodb.StorableText(message)})
}

func (r *Recorder) StoreResponse(_ context.Context, data []byte, mimeType string) error {
	return r.write(Record{Response: true, Data: append([]byte(nil), data...), MimeType: djangodb.StorableText(mimeType)})
}
