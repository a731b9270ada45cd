// Package executor defines the contract between the daemon loop and the
// things that run handlers: the Go handler registry (gohandlers), CPython
// worker processes and embedded gpython (pyhandlers), so that neither side
// imports the other. Its one piece of behaviour is Router, which picks the
// executor for a dotted path.
package executor

import (
	"context"
	"errors"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
)

// Task is one started task as handed to an executor.
type Task struct {
	InstanceID int64
	Type       string // type identifier
	Identifier string // instance identifier
	Handler    string // dotted path
	// Input is the stored input text, base64(zlib(pickle)). Executors decode
	// it themselves: Go handlers want Go values, Python handlers want the
	// pickle bytes for Python's own pickle.
	Input    string
	HasInput bool
	// Deadline is when the daemon cancels the handler; the executor's
	// context carries it too.
	Deadline time.Time
}

// Ref names the task in logs.
func (t *Task) Ref() djangodb.InstanceRef {
	return djangodb.InstanceRef{ID: t.InstanceID, Type: t.Type, Identifier: t.Identifier}
}

// Info is TaskStatus.getInfo's tuple.
type Info struct {
	Type       string
	Identifier string
	Status     djangodb.Status
}

// TaskStatus is the handler's view of its task: everything the tracker's
// TaskStatus class offers. When a setter's write is committed depends on
// the executor (see SyncWriter): for Python handlers, and for every
// handler under the daemon's SyncTaskWrites, a setter returns once its
// write is committed, as the tracker's did. For Go handlers otherwise a
// setter returns once its write is queued (write-behind); the write is
// committed with the task's outcome or within the daemon's FlushDelay,
// and before the handler reads its status. A daemon killed (SIGKILL,
// power loss) in that window loses the queued writes together with the
// outcome: the task stays RUNNING until its type's timeout and is then
// run again by the zombie sweep. Go handlers under write-behind are thus
// at-least-once, exactly what the reference daemon gave every handler
// when it was killed mid-task; a handler that must not repeat an effect
// outside the database makes that effect idempotent, or the deployment
// sets sync_task_writes. Every write, queued or not, is fenced on the
// run: it lands only while the run still owns the task.
type TaskStatus interface {
	Info(ctx context.Context) (Info, error)
	Identifier() (typ, identifier string)
	Status(ctx context.Context) (djangodb.Status, error)
	SetSuccess(ctx context.Context, message string) error
	SetFailure(ctx context.Context, message string) error
	SetPaused(ctx context.Context, message string) error
	SetRunning(ctx context.Context, message string) error
	// StoreResponse stores data with its MIME type (tracker default "text/xml").
	StoreResponse(ctx context.Context, data []byte, mimeType string) error
}

// NullWriter is implemented by a TaskStatus that can make, for a Python
// handler that passed None to a setter (setSuccess(None): a log record
// with a NULL message) or as storeResponse's MIME type (a response row
// with a NULL mimeType), the write the original tracker made with it, which
// the NOT NULL column refused. The status of w (a djangodb.StatusWrite) or
// its data (a djangodb.ResponseWrite) is what the original wrote beside the
// NULL; its text is not used. NullWrite writes nothing and returns the
// database's refusal as the original's handler saw the IntegrityError
// (djangodb.WriteNull), or "" when the database takes the write (a
// response row the instance has already, which the original updated
// keeping its MIME type): the executor then makes it as an ordinary
// write. An error: the write could not be made. Executors raise the
// refusal in the handler; with a TaskStatus that is not a NullWriter, they
// raise the words they know.
type NullWriter interface {
	NullWrite(ctx context.Context, w djangodb.Write) (refusal string, err error)
}

// Executor runs one task's handler to completion. A nil error means the
// handler returned normally; the daemon then writes FINISHED unless the
// handler set FINISHED or FAILED itself. Any other error ends the task FAILED
// with err.Error() as the log message, so executors make that text the
// message an operator should read (for Python, str(exception)).
//
// When ctx is done (deadline or shutdown) the executor must stop the handler
// and return promptly; the daemon decides what happens to the task.
type Executor interface {
	Execute(ctx context.Context, task *Task, status TaskStatus) error
}

// SyncWriter is implemented by executors whose handlers must see each
// TaskStatus write committed before the call returns. Python handlers get
// the tracker's contract (each setter commits, then answers), which other
// Python code in the same deployment may rely on, for instance a producer
// polling the status a handler has just set. Go handlers, written against
// atpd, accept write-behind: their writes commit with the task's outcome
// or within a bounded delay, many tasks per transaction.
type SyncWriter interface {
	SyncWrites(path string) bool
}

// WantsSyncWrites reports whether e wants path's TaskStatus writes
// committed one by one.
func WantsSyncWrites(e Executor, path string) bool {
	s, ok := e.(SyncWriter)
	return ok && s.SyncWrites(path)
}

// Sentinel errors executors return and the daemon branches on.
var (
	// ErrNoHandler: nothing can run this dotted path. Wrapped with the path.
	ErrNoHandler = errors.New("no handler")
	// ErrUnsupported: the executor cannot run this handler (for example
	// gpython meeting a construct it does not implement).
	ErrUnsupported = errors.New("handler not supported by executor")
	// ErrInput: the task's stored input is missing or does not decode. Every
	// executor wraps it, so one broken input fails with the same message
	// whichever executor its path is routed to.
	ErrInput = errors.New("cannot decode input")
)

// MsgNoInput is the FAILED message the reference daemon wrote for an
// instance without an input row (djangodb.MsgNoInput).
const MsgNoInput = djangodb.MsgNoInput

// ErrNoInputRow fails a task whose instance has no processes_input row,
// with the reference daemon's message; it matches ErrInput.
var ErrNoInputRow error = &InputError{Err: pythonText(MsgNoInput), Python: true}

// pythonText is an error whose text is an exception's str() in Python,
// capitals and full stop included.
type pythonText string

func (t pythonText) Error() string { return string(t) }

// InputError is a task input that does not decode. When Python fails the
// same input with the same words (Python set: the base64 and zlib layers,
// pickle.EnvelopeError, and a missing input row) Error() is those words
// alone, the message the reference daemon wrote; atpd's own refusals (an
// input past the size limit, a pickle Go cannot read) read "cannot decode
// input: ...". It matches ErrInput and what Err matches.
type InputError struct {
	Err    error
	Python bool
}

// NewInputError wraps a decoding failure; an *pickle.EnvelopeError keeps
// Python's words.
func NewInputError(err error) error {
	var env *pickle.EnvelopeError
	return &InputError{Err: err, Python: errors.As(err, &env)}
}

func (e *InputError) Error() string {
	if e.Python {
		return e.Err.Error()
	}
	return ErrInput.Error() + ": " + e.Err.Error()
}

// Unwrap returns ErrInput and the cause.
func (e *InputError) Unwrap() []error { return []error{ErrInput, e.Err} }

// Unsupported marks err as the executor's "cannot run this one": it
// matches ErrUnsupported, so the Router hands the task on (see Router),
// and its text stays err's, the FAILED message when nothing can take it.
func Unsupported(err error) error { return &unsupportedError{err} }

type unsupportedError struct{ err error }

func (e *unsupportedError) Error() string   { return e.err.Error() }
func (e *unsupportedError) Unwrap() []error { return []error{ErrUnsupported, e.err} }
