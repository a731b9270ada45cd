// Package producer owns the Go side of EOxServer's producer API
// (tracker.py): registering task types, enqueueing tasks with their
// pickled input, and reading back a task's status, log and response, on
// the same tables and with the same rows as Python producers, so that a
// task enqueued from Go is indistinguishable from one enqueued by Django
// code and can be run by atpd or by the reference daemon alike.
//
// Tasks are addressed as Python producers address them, by type identifier
// and instance identifier. Every call is bounded by its own timeout, every
// error names the task it is about and wraps the djangodb sentinel callers
// branch on (djangodb.ErrQueueFull, ErrNotFound, ErrExists, ErrProtected)
// or ErrInvalid for arguments the tables cannot hold.
package producer

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
)

// ErrInvalid is wrapped by errors about arguments that cannot be stored:
// identifiers longer than their column, text PostgreSQL rejects, inputs
// that are not pickles.
var ErrInvalid = errors.New("invalid argument")

// Column sizes of the Django models (processes_type.identifier, handler and
// processes_instance.identifier). Django does not check max_length on save
// and SQLite does not enforce it, so without this check a long identifier
// would be stored on SQLite and refused on PostgreSQL.
const (
	MaxIdentifierLen = 64
	MaxHandlerLen    = 1024
)

// Defaults of Options.
const (
	DefaultTimeout    = 15 * time.Second
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// notifyTimeout bounds the notifier: the task is committed, so a slow
	// notification must not hold up the producer for long.
	notifyTimeout = 5 * time.Second
)

// Notifier is told after an enqueue has committed, so that a daemon can be
// woken at once instead of at its next poll (PostgreSQL NOTIFY, for one).
// Its error is logged, never returned: the task is already queued.
type Notifier interface {
	Notify(ctx context.Context) error
}

// Options configure a Producer; the zero value uses the defaults.
type Options struct {
	// Notifier, when set, is called after every committed enqueue.
	Notifier Notifier
	// Logger receives warnings (a failed notification, EnqueueWait's
	// retries at debug level); nil means slog.Default().
	Logger *slog.Logger
	// Timeout bounds each database call (default 15 s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound EnqueueWait's wait between attempts
	// on a full queue (defaults 50 ms and 5 s).
	MinBackoff, MaxBackoff time.Duration
}

// Producer is the producer API over one store. It is safe for concurrent
// use; it does not own the store and never closes it.
type Producer struct {
	store  djangodb.Store
	notify Notifier
	log    *slog.Logger
	opts   Options
}

// New returns a producer writing through store.
func New(store djangodb.Store, opts Options) *Producer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	return &Producer{store: store, notify: opts.Notifier, log: opts.Logger, opts: opts}
}

// call runs one store operation under the producer's timeout.
func call[T any](p *Producer, ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	return fn(ctx)
}

// RegisterType is registerTaskType: it inserts the type, or updates the
// existing one, after applying the tracker's rules (TypeSpec.Normalize).
func (p *Producer) RegisterType(ctx context.Context, spec djangodb.TypeSpec) (djangodb.TaskType, error) {
	if err := checkIdentifier("type identifier", spec.Identifier); err != nil {
		return djangodb.TaskType{}, fmt.Errorf("producer: register type %q: %w", spec.Identifier, err)
	}
	if err := checkHandler(spec.Handler); err != nil {
		return djangodb.TaskType{}, fmt.Errorf("producer: register type %q: %w", spec.Identifier, err)
	}
	if err := CheckTypeLimits(spec); err != nil {
		return djangodb.TaskType{}, fmt.Errorf("producer: register type %q: %w", spec.Identifier, err)
	}
	t, err := call(p, ctx, func(ctx context.Context) (djangodb.TaskType, error) { return p.store.RegisterType(ctx, spec) })
	if err != nil {
		return djangodb.TaskType{}, fmt.Errorf("producer: register type %q: %w", spec.Identifier, err)
	}
	return t, nil
}

// UnregisterType is unregisterTaskType. Without force it fails with
// djangodb.ErrProtected while the type has instances; with force it deletes
// them first.
func (p *Producer) UnregisterType(ctx context.Context, identifier string, force bool) error {
	_, err := call(p, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, p.store.UnregisterType(ctx, identifier, force)
	})
	if err != nil {
		return fmt.Errorf("producer: unregister type %q: %w", identifier, err)
	}
	return nil
}

// Type returns a registered type.
func (p *Producer) Type(ctx context.Context, identifier string) (djangodb.TaskType, error) {
	t, err := call(p, ctx, func(ctx context.Context) (djangodb.TaskType, error) { return p.store.Type(ctx, identifier) })
	if err != nil {
		return djangodb.TaskType{}, fmt.Errorf("producer: type %q: %w", identifier, err)
	}
	return t, nil
}

// Types lists the registered types.
func (p *Producer) Types(ctx context.Context) ([]djangodb.TaskType, error) {
	t, err := call(p, ctx, p.store.Types)
	if err != nil {
		return nil, fmt.Errorf("producer: list types: %w", err)
	}
	return t, nil
}

// Enqueue is enqueueTask: it pickles input (protocol 2, which Python 2 and
// Python 3 handlers both load; see pickle.Pickle for the Go values it
// takes) and queues an ACCEPTED task with one log record carrying
// message. It returns the instance id. It fails with djangodb.ErrQueueFull
// when the queue is full (see EnqueueWait), djangodb.ErrExists when the
// type already has an instance with this identifier and
// djangodb.ErrNotFound when the type is not registered.
func (p *Producer) Enqueue(ctx context.Context, typ, id string, input any, message string) (int64, error) {
	stored, err := encode(input)
	if err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: %w", ref(typ, id), err)
	}
	return p.enqueueStored(ctx, typ, id, stored, message)
}

// EnqueueRaw queues a task whose input is already in the stored form,
// base64(zlib(pickle)), as another producer or a database dump has it. The
// text is decoded first, so that a corrupt input is refused here
// (ErrInvalid) rather than failing the task when it runs.
func (p *Producer) EnqueueRaw(ctx context.Context, typ, id, stored, message string) (int64, error) {
	if _, err := pickle.Decode(stored); err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: stored input: %w: %w", ref(typ, id), ErrInvalid, err)
	}
	return p.enqueueStored(ctx, typ, id, stored, message)
}

// EnqueuePickle queues a task whose input is a pickle of any protocol made
// elsewhere (Python's pickle.dumps); it is compressed and base64-encoded as
// tracker.enqueueTask stores it. A malformed pickle is refused (ErrInvalid).
func (p *Producer) EnqueuePickle(ctx context.Context, typ, id string, data []byte, message string) (int64, error) {
	if _, err := pickle.Unpickle(data); err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: pickle: %w: %w", ref(typ, id), ErrInvalid, err)
	}
	return p.enqueueStored(ctx, typ, id, storedForm(data), message)
}

// EnqueueWait is Enqueue that waits for room when the queue is full and
// for the database when a connection is lost: it retries
// djangodb.ErrQueueFull and transient errors (djangodb.Transient) with
// exponential backoff (MinBackoff
// doubling up to MaxBackoff, with jitter so that waiting producers do not
// retry in step) until the task is queued or ctx is done. Any other error
// ends it at once. When ctx ends after the queue was found full, the
// error wraps both ctx's error and djangodb.ErrQueueFull.
func (p *Producer) EnqueueWait(ctx context.Context, typ, id string, input any, message string) (int64, error) {
	stored, err := encode(input)
	if err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: %w", ref(typ, id), err)
	}
	backoff := p.opts.MinBackoff
	lostBefore := false // an attempt failed transiently (it may have committed)
	for attempt := 1; ; attempt++ {
		n, err := p.enqueueStored(ctx, typ, id, stored, message)
		if attempt > 1 && err != nil && ctx.Err() != nil {
			// ctx ended during a retry: the caller gave up waiting for room.
			return 0, fmt.Errorf("producer: enqueue %s: gave up after %d attempts: %w (last: %w)",
				ref(typ, id), attempt, context.Cause(ctx), djangodb.ErrQueueFull)
		}
		switch {
		case errors.Is(err, djangodb.ErrExists) && lostBefore:
			// The attempt whose connection was lost committed after all
			// (or another producer took the identifier meanwhile).
			p.log.WarnContext(ctx, "producer: the task exists after a retried enqueue; an earlier attempt committed",
				"type", typ, "identifier", id, "attempt", attempt)
			return n, err
		case errors.Is(err, djangodb.ErrQueueFull):
		case err != nil && djangodb.Transient(err):
			// A lost connection or a restarting database: try again, as
			// for a full queue.
			lostBefore = true
		default:
			return n, err
		}
		// Full jitter in [backoff/2, backoff].
		wait := backoff/2 + rand.N(backoff/2+1)
		p.log.DebugContext(ctx, "producer: queue full or database away, waiting to enqueue",
			"type", typ, "identifier", id, "attempt", attempt, "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("producer: enqueue %s: gave up after %d attempts: %w (last: %w)",
				ref(typ, id), attempt, context.Cause(ctx), djangodb.ErrQueueFull)
		case <-t.C:
		}
		backoff = min(2*backoff, p.opts.MaxBackoff)
	}
}

func (p *Producer) enqueueStored(ctx context.Context, typ, id, stored, message string) (int64, error) {
	if err := checkIdentifier("type identifier", typ); err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: %w", ref(typ, id), err)
	}
	if err := checkIdentifier("task identifier", id); err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: %w", ref(typ, id), err)
	}
	if err := checkText("message", message); err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: %w", ref(typ, id), err)
	}
	n, err := call(p, ctx, func(ctx context.Context) (int64, error) {
		return p.store.Enqueue(ctx, typ, id, stored, message)
	})
	if err != nil {
		return 0, fmt.Errorf("producer: enqueue %s: %w", ref(typ, id), err)
	}
	if p.notify != nil {
		// Detached from ctx: the caller may cancel right after enqueueing,
		// and the wake-up is worth sending for a committed task anyway.
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
		if err := p.notify.Notify(nctx); err != nil {
			p.log.WarnContext(ctx, "producer: task enqueued but the notification failed; a daemon will find it at its next poll",
				"type", typ, "identifier", id, "instance_id", n, "error", err)
		}
		cancel()
	}
	return n, nil
}

// Task returns the instance row of a task.
func (p *Producer) Task(ctx context.Context, typ, id string) (djangodb.Instance, error) {
	in, err := call(p, ctx, func(ctx context.Context) (djangodb.Instance, error) {
		return p.store.InstanceByIdentifier(ctx, typ, id)
	})
	if err != nil {
		return djangodb.Instance{}, fmt.Errorf("producer: task %s: %w", ref(typ, id), err)
	}
	return in, nil
}

// Status is getTaskStatusByIdentifier; Status.String gives the text.
func (p *Producer) Status(ctx context.Context, typ, id string) (djangodb.Status, error) {
	in, err := p.Task(ctx, typ, id)
	if err != nil {
		return djangodb.Undefined, err
	}
	return in.Status, nil
}

// Log is getTaskLog: the task's status changes, oldest first.
func (p *Producer) Log(ctx context.Context, typ, id string) ([]djangodb.LogRecord, error) {
	in, err := p.Task(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	recs, err := call(p, ctx, func(ctx context.Context) ([]djangodb.LogRecord, error) { return p.store.Log(ctx, in.ID) })
	if err != nil {
		return nil, fmt.Errorf("producer: log of %s: %w", ref(typ, id), err)
	}
	return recs, nil
}

// Response is getTaskResponse: the bytes a handler stored and their MIME
// type. djangodb.ErrNotFound when the task or its response does not exist.
func (p *Producer) Response(ctx context.Context, typ, id string) (djangodb.Response, error) {
	in, err := p.Task(ctx, typ, id)
	if err != nil {
		return djangodb.Response{}, err
	}
	r, err := call(p, ctx, func(ctx context.Context) (djangodb.Response, error) { return p.store.Response(ctx, in.ID) })
	if err != nil {
		return djangodb.Response{}, fmt.Errorf("producer: response of %s: %w", ref(typ, id), err)
	}
	return r, nil
}

// Input returns a task's input, unpickled (see package pickle for the Go
// values Python values become).
func (p *Producer) Input(ctx context.Context, typ, id string) (any, error) {
	in, err := p.Task(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	stored, err := call(p, ctx, func(ctx context.Context) (string, error) { return p.store.Input(ctx, in.ID) })
	if err != nil {
		return nil, fmt.Errorf("producer: input of %s: %w", ref(typ, id), err)
	}
	v, err := pickle.Decode(stored)
	if err != nil {
		return nil, fmt.Errorf("producer: input of %s: %w", ref(typ, id), err)
	}
	return v, nil
}

// Delete is deleteTaskByIdentifier: it removes the task with its log,
// input, response and queue rows. It reports whether the task existed; a
// missing task is not an error, a missing type is (djangodb.ErrNotFound),
// as in the tracker. Deleting a task a daemon is running makes the
// daemon's later writes for it fail; the daemon logs and drops them.
func (p *Producer) Delete(ctx context.Context, typ, id string) (bool, error) {
	// The store's call, not p.Type: its error is wrapped once, here.
	if _, err := call(p, ctx, func(ctx context.Context) (djangodb.TaskType, error) { return p.store.Type(ctx, typ) }); err != nil {
		return false, fmt.Errorf("producer: delete %s: %w", ref(typ, id), err)
	}
	in, err := p.Task(ctx, typ, id)
	if errors.Is(err, djangodb.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := call(p, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, p.store.Delete(ctx, in.ID) }); err != nil {
		return false, fmt.Errorf("producer: delete %s: %w", ref(typ, id), err)
	}
	return true, nil
}

// Tasks lists the tasks f selects, in insertion order.
func (p *Producer) Tasks(ctx context.Context, f djangodb.InstanceFilter) ([]djangodb.Instance, error) {
	out, err := call(p, ctx, func(ctx context.Context) ([]djangodb.Instance, error) { return p.store.Instances(ctx, f) })
	if err != nil {
		return nil, fmt.Errorf("producer: list tasks: %w", err)
	}
	return out, nil
}

// QueueInfo describes the waiting queue (task rows no daemon has claimed).
type QueueInfo struct {
	Waiting int           // tasks waiting
	Limit   int           // most tasks an enqueue accepts (MAX_QUEUE_SIZE)
	Oldest  time.Time     // time the oldest waiting task was queued; zero when none
	Age     time.Duration // how long the oldest has waited; 0 when none
}

// Full reports whether an enqueue would fail with djangodb.ErrQueueFull.
func (q QueueInfo) Full() bool { return q.Waiting >= q.Limit }

// Queue returns the state of the waiting queue.
func (p *Producer) Queue(ctx context.Context) (QueueInfo, error) {
	st, err := call(p, ctx, p.store.QueueStats)
	if err != nil {
		return QueueInfo{}, fmt.Errorf("producer: queue: %w", err)
	}
	q := QueueInfo{Waiting: st.Waiting, Limit: st.Max, Oldest: st.Oldest}
	if !st.Oldest.IsZero() {
		// Another host's clock may be ahead; a negative age means "just now".
		q.Age = max(0, time.Since(st.Oldest))
	}
	return q, nil
}

// encode pickles v into the stored form; its errors (*pickle.EncodeError,
// naming where in v the bad value is) wrap ErrInvalid.
func encode(v any) (string, error) {
	s, err := pickle.Encode(v)
	if err != nil {
		return "", fmt.Errorf("input: %w: %w", ErrInvalid, err)
	}
	return s, nil
}

func storedForm(p []byte) string {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(p) // a bytes.Buffer does not fail
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func ref(typ, id string) string { return djangodb.InstanceRef{Type: typ, Identifier: id}.String() }

// Limits of a task type's numbers. The tracker takes any number; these
// refuse what no deployment means and what one database would store and
// the other refuse (maxstart is an integer column, which PostgreSQL
// bounds and SQLite does not), or what would overflow the daemon's
// durations.
const (
	// MaxSeconds bounds timeout and timeret: about 31 years.
	MaxSeconds = 1e9
	// MaxRestart bounds maxrestart: maxstart, 1 + maxrestart, must fit
	// the integer column on PostgreSQL.
	MaxRestart = math.MaxInt32 - 1
)

// CheckTypeLimits refuses a type's numbers outside the limits, with
// ErrInvalid: timeout and timeret not finite or beyond ±MaxSeconds,
// maxrestart above MaxRestart. Negative numbers are the tracker's (a
// negative timeout becomes 0, timeret <= 0 keeps tasks forever, a
// negative maxrestart is 0).
func CheckTypeLimits(spec djangodb.TypeSpec) error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"timeout", spec.Timeout}, {"timeret", spec.TimeRet}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || math.Abs(f.v) > MaxSeconds {
			return fmt.Errorf("%w: %s %v is not a number of seconds from -%.0f to %.0f", ErrInvalid, f.name, f.v, float64(MaxSeconds), float64(MaxSeconds))
		}
	}
	if spec.MaxRestart > MaxRestart {
		return fmt.Errorf("%w: maxrestart %d is more than %d", ErrInvalid, spec.MaxRestart, MaxRestart)
	}
	return nil
}

func checkIdentifier(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if n := utf8.RuneCountInString(s); n > MaxIdentifierLen {
		return fmt.Errorf("%w: %s is %d characters, the column holds %d", ErrInvalid, what, n, MaxIdentifierLen)
	}
	return checkText(what, s)
}

func checkHandler(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty handler path", ErrInvalid)
	}
	if n := utf8.RuneCountInString(s); n > MaxHandlerLen {
		return fmt.Errorf("%w: handler path is %d characters, the column holds %d", ErrInvalid, n, MaxHandlerLen)
	}
	return checkText("handler path", s)
}

// checkText refuses what PostgreSQL's text types cannot store, so that a
// producer gets the same answer on both databases.
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL character", ErrInvalid, what)
	}
	return nil
}
