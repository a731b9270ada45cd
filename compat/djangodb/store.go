package djangodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status is the integer status code Django stores in processes_instance.status
// and processes_logrecord.status.
type Status int

// Status codes, as in EOxServer's models.STATUS2TEXT.
const (
	Undefined Status = 0
	Accepted  Status = 1
	Scheduled Status = 2
	Running   Status = 3
	Paused    Status = 4
	Finished  Status = 5
	Failed    Status = 6
)

var statusText = [...]string{"UNDEFINED", "ACCEPTED", "SCHEDULED", "RUNNING", "PAUSED", "FINISHED", "FAILED"}

// String returns the tracker's text for the code ("FINISHED"), or
// "UNKNOWN(n)" for a code the tracker never writes.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusText) {
		return statusText[s]
	}
	return fmt.Sprintf("UNKNOWN(%d)", int(s))
}

// Terminal reports whether s is FINISHED or FAILED.
func (s Status) Terminal() bool { return s == Finished || s == Failed }

// ParseStatus accepts a status name (case-insensitive) or its code.
func ParseStatus(text string) (Status, error) {
	for i, t := range statusText {
		if strings.EqualFold(t, text) || fmt.Sprint(i) == text {
			return Status(i), nil
		}
	}
	return 0, fmt.Errorf("djangodb: unknown status %q", text)
}

// Log messages the reference daemon writes; kept byte for byte, typo included,
// because operators grep for them.
const (
	MsgZombieReenqueued  = "Reenqueued by ATPD after timeout."
	MsgShutdownReenqueue = "Reenqued by ATPD."
)

// A start whose next log record is ACCEPTED with MsgShutdownReenqueue was
// ended by a daemon shutting down, not by the task; the start counts
// (StartedTask.Starts, maxstart in SweepZombies) leave it out.

// Defaults of tracker.registerTaskType and of the tracker's queue.
const (
	DefaultTimeout      = 3600.0 // seconds
	DefaultTimeRet      = -1.0   // keep forever
	DefaultMaxRestart   = 2
	DefaultMaxQueueSize = 64
	// PullTimeout is how long a task row may stay claimed (lock != 0) before
	// the zombie sweep assumes its daemon died while pulling (tracker.py).
	PullTimeout = 60 * time.Second
)

// Errors callers branch on.
var (
	ErrQueueFull  = errors.New("queue full")
	ErrQueueEmpty = errors.New("queue empty")
	// ErrNoInput is an instance without its processes_input row; its text
	// is str(Input.DoesNotExist), what the reference daemon wrote.
	ErrNoInput     error = pythonText(MsgNoInput)
	ErrNotFound          = errors.New("not found")
	ErrExists            = errors.New("already exists")
	ErrProtected         = errors.New("type has instances")
	ErrUnsupported       = errors.New("unsupported database")
	// ErrNotOwned: a run's write was dropped because the run no longer
	// owns the instance (see Completion.Fence).
	ErrNotOwned = errors.New("run no longer owns the instance")
	// ErrBusy: another transaction held the instance's row; nothing was
	// written and the same completion may be tried again.
	ErrBusy = errors.New("instance row busy")
)

// TypeSpec is what registerTaskType takes, before normalisation.
type TypeSpec struct {
	Identifier string
	Handler    string  // Python dotted path "pkg.module.func"
	Timeout    float64 // seconds; negative becomes 0
	TimeRet    float64 // seconds; <= 0 becomes -1 (keep forever)
	MaxRestart int     // maxstart = 1 + max(0, MaxRestart)
}

// TaskType is one row of processes_type.
type TaskType struct {
	ID         int64
	Identifier string
	Handler    string
	MaxStart   int
	Timeout    float64 // seconds
	TimeRet    float64 // seconds, <= 0 keeps finished instances forever
}

// TimeoutDuration returns Timeout as a duration.
func (t TaskType) TimeoutDuration() time.Duration { return secondsToDuration(t.Timeout) }

func secondsToDuration(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	if s > float64(1<<62)/float64(time.Second) {
		return time.Duration(1 << 62)
	}
	return time.Duration(s * float64(time.Second))
}

// Normalize applies tracker.registerTaskType's rules and returns the row
// values: timeout = max(0, timeout), timeret = timeret if > 0 else -1,
// maxstart = 1 + max(0, maxrestart).
func (s TypeSpec) Normalize() TaskType {
	t := TaskType{Identifier: s.Identifier, Handler: s.Handler, Timeout: s.Timeout, TimeRet: s.TimeRet}
	if t.Timeout < 0 {
		t.Timeout = 0
	}
	if !(t.TimeRet > 0) {
		t.TimeRet = -1
	}
	t.MaxStart = 1 + max(0, s.MaxRestart)
	return t
}

// Instance is one row of processes_instance with its type's identifier.
type Instance struct {
	ID         int64
	TypeID     int64
	Type       string // processes_type.identifier
	Identifier string
	Status     Status
	TimeInsert time.Time
	TimeUpdate time.Time
}

// InstanceRef names an instance in logs and sweep results.
type InstanceRef struct {
	ID         int64
	Type       string
	Identifier string
}

// String renders the ref as the tracker's Instance.__unicode__ does: "Type::id".
func (r InstanceRef) String() string { return r.Type + "::" + r.Identifier }

// LogRecord is one row of processes_logrecord.
type LogRecord struct {
	ID      int64
	Time    time.Time
	Status  Status
	Message string
}

// Response is a decoded processes_response row.
type Response struct {
	Data     []byte
	MimeType string
}

// StartedTask is what Start returns: tracker.startTask's tuple plus what the
// daemon needs to enforce deadlines and maxstart.
type StartedTask struct {
	InstanceID int64
	Type       string // type identifier
	Identifier string // instance identifier
	Handler    string
	// Input is the stored text, base64(zlib(pickle)), undecoded; HasInput is
	// false when the instance has no processes_input row.
	Input     string
	HasInput  bool
	Timeout   time.Duration
	MaxStart  int
	Starts    int       // starts so far, this one included (counted from the log)
	StartedAt time.Time // the timeUpdate written with RUNNING
	// Undecodable, when set, is why the claim ended the task FAILED
	// instead of starting it: its input does not decode (ErrNoInput or a
	// *pickle.EnvelopeError), which tracker.startTask found before it
	// saved RUNNING. Such a task is not to be run; only its reference
	// and MaxStart are set.
	Undecodable error
}

// pythonText is an error whose text is an exception's str() in Python,
// capitals and full stop included.
type pythonText string

func (t pythonText) Error() string { return string(t) }

// MsgNoInput is str(Input.DoesNotExist) as Django raises it in
// tracker.startTask for an instance without an input row.
const MsgNoInput = "Input matching query does not exist."

// Ref returns the instance's reference.
func (t StartedTask) Ref() InstanceRef {
	return InstanceRef{ID: t.InstanceID, Type: t.Type, Identifier: t.Identifier}
}

// SweepResult lists what one zombie sweep did.
type SweepResult struct {
	Reenqueued []InstanceRef // timed out, re-enqueued with the sweep message
	Failed     []InstanceRef // timed out with their starts used up: FAILED
	Unstuck    []InstanceRef // claimed task rows older than PullTimeout, re-enqueued
}

// InstanceFilter selects instances for listings; zero fields match all.
type InstanceFilter struct {
	Type   string
	Status *Status
	Limit  int // 0: no limit
}

// QueueStats describes the waiting queue (task rows with lock = 0).
type QueueStats struct {
	Waiting int
	Max     int
	Oldest  time.Time // zero when the queue is empty
}

// Options configure a Store.
type Options struct {
	// MaxQueueSize is the enqueue limit on waiting task rows
	// (tracker.MAX_QUEUE_SIZE); 0 means DefaultMaxQueueSize.
	MaxQueueSize int
	// MaxInputSize is how far, in bytes after decompression, a claim
	// inflates a task's input to check that it opens (as startTask did
	// before RUNNING); what lies beyond is the executor's size limit's
	// concern. 0 means pickle.DefaultMaxSize.
	MaxInputSize int
	// UseTZ and TimeZone mirror Django's USE_TZ and TIME_ZONE; they decide
	// how timestamps are written on SQLite and which session time zone
	// PostgreSQL uses. A nil TimeZone means UTC.
	UseTZ    bool
	TimeZone *time.Location
	// DBTimeZone is the database's own DATABASES[alias]['TIME_ZONE']
	// (Django ignores it without USE_TZ): SQLite's timestamps are then
	// naive local time of that zone instead of UTC, and it is PostgreSQL's
	// session time zone. Nil means UTC.
	DBTimeZone *time.Location
	// Clock is where timestamps come from; nil is the system clock.
	// Timestamps stay strictly increasing, one microsecond apart at least,
	// whatever the clock says.
	Clock Clock
	// BusyTimeout bounds how long SQLite waits for a lock held by another
	// connection; 0 means 5 s, Django's default.
	BusyTimeout time.Duration
	// SQLiteWAL switches an SQLite file to write-ahead logging at open
	// (PRAGMA journal_mode=WAL). A commit then syncs once instead of
	// syncing a rollback journal and the file, which is several times
	// the throughput on a slow disk. It is a property of the file, not of
	// the connection: it stays after atpd exits and applies to every
	// process using the file (Django included), which needs shared
	// memory beside the file (so not on a network file system) and
	// leaves -wal and -shm files next to it. Off, atpd keeps whatever
	// mode the file has; converting the file with the sqlite3 shell
	// (PRAGMA journal_mode=WAL) has the same effect.
	SQLiteWAL bool
}

// Store is every operation of the tracker API (ATP-SPEC.md section 4) plus what
// the daemon and the operator commands need. Each method is one or more
// short transactions; a status change always commits together with its log
// record and timeUpdate.
type Store interface {
	// Migrate creates the ATP tables exactly as Django's migrate does and
	// records the migrations in django_migrations. It reports whether it
	// created anything; an already migrated database is left untouched.
	Migrate(ctx context.Context) (created bool, err error)
	Ping(ctx context.Context) error
	Close() error
	// Describe names the database for logs, without any password.
	Describe() string

	RegisterType(ctx context.Context, spec TypeSpec) (TaskType, error)
	// UnregisterType returns ErrProtected when instances exist and force is false.
	UnregisterType(ctx context.Context, identifier string, force bool) error
	Type(ctx context.Context, identifier string) (TaskType, error)
	Types(ctx context.Context) ([]TaskType, error)

	// Enqueue creates the instance (ACCEPTED), its log record, the input row
	// (input is the stored text) and a waiting task row. ErrQueueFull when
	// MaxQueueSize tasks already wait, ErrExists for a duplicate identifier.
	Enqueue(ctx context.Context, typ, identifier, input, message string) (int64, error)
	QueueStats(ctx context.Context) (QueueStats, error)
	MaxQueueSize() int

	// Claim claims up to limit waiting tasks for serverID in one
	// transaction: each instance becomes SCHEDULED and then RUNNING, each
	// with its log record (message on both), and its task row is deleted;
	// they are returned in queue order. Tasks locked by other claimers are
	// skipped. An instance is never claimed while SCHEDULED or RUNNING (a
	// twin row taken by another claimer); the waiting rows of every
	// instance it saw are dropped as duplicates, so one instance runs once
	// at a time. A waiting row of a FINISHED or FAILED instance is a
	// request to run it again (a producer's re-enqueue), as the reference
	// daemon treats it. The rows are those the tracker's dequeue and
	// startTask write (see Tracker). ErrQueueEmpty when nothing could be
	// claimed.
	Claim(ctx context.Context, serverID int64, limit int, message string) ([]StartedTask, error)
	// Complete applies, in one transaction, each completion's writes in
	// order and then its outcome (see Completion), each only while its
	// run still owns the instance (Completion.Fence, checked with the
	// instance row locked). A completion that cannot be written (instance
	// deleted: ErrNotFound; fenced: ErrNotOwned; row held by another
	// transaction: ErrBusy, PostgreSQL only) is reported in its result and
	// does not keep the others from being written, nor waits for them; an
	// error return means nothing was.
	Complete(ctx context.Context, cs []Completion) ([]CompletionResult, error)
	// Release gives up a run the caller started, in one transaction and
	// only if the run is still the caller's: the instance is RUNNING or
	// PAUSED, its start count (as StartedTask.Starts counts) still equals
	// starts, and it has no waiting task row. to is Accepted (re-enqueue:
	// ACCEPTED, log record, a waiting task row) or Failed (FAILED, log
	// record). It reports whether it wrote; false means someone else moved
	// the instance on (a sweep, a later start, a producer), which also makes
	// a retry after a lost commit acknowledgement harmless.
	Release(ctx context.Context, id int64, starts int, to Status, message string) (bool, error)

	Instance(ctx context.Context, id int64) (Instance, error)
	InstanceByIdentifier(ctx context.Context, typ, identifier string) (Instance, error)
	Instances(ctx context.Context, f InstanceFilter) ([]Instance, error)
	Log(ctx context.Context, id int64) ([]LogRecord, error)
	Response(ctx context.Context, id int64) (Response, error)
	// Input returns the stored input text of an instance.
	Input(ctx context.Context, id int64) (string, error)

	// SweepZombies re-enqueues timed-out SCHEDULED/RUNNING/PAUSED instances
	// (or fails them when they were started maxstart times) and recovers task
	// rows claimed longer than PullTimeout ago.
	SweepZombies(ctx context.Context, message string) (SweepResult, error)
	// DeleteRetired deletes FINISHED/FAILED instances older than their type's
	// timeret, with all their rows.
	DeleteRetired(ctx context.Context) ([]InstanceRef, error)
	// Delete removes an instance and its task, log, input and response rows.
	// Deleting a missing instance is not an error (Django's filter().delete()).
	Delete(ctx context.Context, id int64) error
}

// MaxStartsMessage is the FAILED message of a zombie whose starts are used up.
func MaxStartsMessage(starts, maxStart int) string {
	return fmt.Sprintf("Failed by ATPD after timeout: started %d times, maxstart is %d.", starts, maxStart)
}
