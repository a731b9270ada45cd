package daemon

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultPollInterval  = 50 * time.Millisecond
	DefaultSweepInterval = 30 * time.Second
	DefaultSweepEvery    = 300
	// DefaultSweepIdleMin is the reference daemon's cadence on an empty
	// queue (it swept, then slept 1.5 s).
	DefaultSweepIdleMin = 1500 * time.Millisecond
	DefaultStoreTimeout = 15 * time.Second
	DefaultAbortTimeout = 10 * time.Second
	// DefaultMaxInputSize equals compat/pickle's own bound, so that every
	// executor refuses the same inputs.
	DefaultMaxInputSize = 64 << 20
	// DefaultFlushDelay bounds how long a handler's status writes wait to
	// be committed while the handler runs on.
	DefaultFlushDelay = 100 * time.Millisecond
	// DefaultClaimWindow and DefaultCompleteWindow are how long a claim or
	// a completion waits for others to share its transaction, while
	// handlers are running that may free a worker or end a task.
	DefaultClaimWindow    = time.Millisecond
	DefaultCompleteWindow = time.Millisecond

	minDefaultMargin = time.Second
	maxDefaultMargin = 10 * time.Second
	// minRunWindow is the least time a handler gets from its start, and
	// the least margin: a type timeout of 0 (which the tracker allows)
	// must not give a handler a deadline in the past, nor leave no time
	// to write its outcome.
	minRunWindow = 100 * time.Millisecond
)

// Backoff bounds for retried store calls and failed polls. A claim that
// lost its connection (djangodb.ConnectionLost) is retried at once, then
// with backoff capped at retryLostMax: the server was reachable a moment
// ago, so a new connection is what the claim needs, not seconds of waiting.
const (
	retryBackoffMin = 50 * time.Millisecond
	retryBackoffMax = 5 * time.Second
	retryLostMax    = 500 * time.Millisecond
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("invalid daemon configuration")

// Config configures a Daemon. Zero values mean the documented defaults,
// except ServerID, which must be set (use NewServerID).
type Config struct {
	// ServerID is written to processes_task.lock by Dequeue and shown in
	// logs as FormatServerID(ServerID). Non-zero.
	ServerID int64
	// Workers is the number of handlers run at once (default runtime.NumCPU()).
	Workers int
	// PollInterval is the sleep between polls of an empty queue (default
	// 50 ms; the reference daemon slept a fixed 1.5 s). Wake cuts it short.
	PollInterval time.Duration
	// SweepInterval is the longest time between two clean-ups (default 30 s).
	SweepInterval time.Duration
	// SweepEvery runs a clean-up after this many successful pulls (default
	// 300, the reference's QUEUE_CLEAN_UP_COUNT).
	SweepEvery int
	// SweepIdleMin rate-limits the clean-up an empty queue triggers
	// (default 1.5 s).
	SweepIdleMin time.Duration
	// DeadlineMargin is how long before its type's timeout a handler is
	// cancelled, leaving time to write the outcome before another daemon's
	// zombie sweep would take the task. Zero means, per task, a tenth of
	// the timeout within [1 s, 10 s]; any margin is capped at half the
	// timeout and floored at 100 ms, and a handler always gets at least
	// 100 ms (see Config.margin).
	DeadlineMargin time.Duration
	// DrainTimeout bounds how long Stop waits for running handlers before it
	// acts like Abort; 0 waits until their own deadlines.
	DrainTimeout time.Duration
	// StoreTimeout bounds each store call (default 15 s).
	StoreTimeout time.Duration
	// AbortTimeout bounds how long Abort keeps retrying the writes that
	// re-enqueue cancelled tasks when the database does not answer (default
	// 10 s). A task whose write gave up stays RUNNING and is re-enqueued by
	// the zombie sweep after its timeout, as with the reference daemon.
	AbortTimeout time.Duration
	// MaxInputSize bounds a task's input after decompression, in bytes
	// (default 64 MiB). A larger input, such as a zlib bomb, ends the task
	// FAILED before any executor decodes it; measuring it streams the
	// inflated bytes through a fixed buffer.
	MaxInputSize int64
	// SyncTaskWrites makes each of a handler's TaskStatus writes commit
	// before it returns, one transaction each, as the reference daemon's
	// were, for every handler; Python handlers always get this (their
	// executors implement executor.SyncWriter). By default (false) they are held back and committed with the
	// task's outcome, within FlushDelay, or before the handler reads its
	// status, whichever comes first, many tasks per transaction; a write
	// the database refuses then fails the task instead of the write call.
	SyncTaskWrites bool
	// FlushDelay bounds how long a held-back write waits (default 100 ms).
	FlushDelay time.Duration
	// ClaimWindow is how long the loop, having a free worker, waits for
	// more workers to come free so that one claim serves them all, while
	// handlers are running (default 1 ms; negative: no wait).
	ClaimWindow time.Duration
	// CompleteWindow is how long a task's outcome waits for others to be
	// written in the same transaction, while handlers are running
	// (default 1 ms; negative: no wait).
	CompleteWindow time.Duration
	// NoListen turns off LISTEN on stores that announce new tasks
	// (PostgreSQL); the daemon then finds tasks by polling only.
	NoListen bool
	// Logger receives every log line; nil means slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told about task events (for metrics).
	Observer Observer
}

// Validate reports the first field that cannot be used, by name.
func (c Config) Validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("daemon: %w: %s = %v: %s", ErrConfig, field, v, why)
	}
	switch {
	case c.ServerID == 0:
		return bad("ServerID", c.ServerID, "must be non-zero (0 marks a waiting task row)")
	case c.Workers < 0:
		return bad("Workers", c.Workers, "must be at least 1 (0 means the CPU count)")
	case c.PollInterval < 0:
		return bad("PollInterval", c.PollInterval, "must not be negative")
	case c.SweepInterval < 0:
		return bad("SweepInterval", c.SweepInterval, "must not be negative")
	case c.SweepEvery < 0:
		return bad("SweepEvery", c.SweepEvery, "must not be negative")
	case c.SweepIdleMin < 0:
		return bad("SweepIdleMin", c.SweepIdleMin, "must not be negative")
	case c.DeadlineMargin < 0:
		return bad("DeadlineMargin", c.DeadlineMargin, "must not be negative")
	case c.DrainTimeout < 0:
		return bad("DrainTimeout", c.DrainTimeout, "must not be negative")
	case c.StoreTimeout < 0:
		return bad("StoreTimeout", c.StoreTimeout, "must not be negative")
	case c.AbortTimeout < 0:
		return bad("AbortTimeout", c.AbortTimeout, "must not be negative")
	case c.MaxInputSize < 0:
		return bad("MaxInputSize", c.MaxInputSize, "must not be negative")
	case c.FlushDelay < 0:
		return bad("FlushDelay", c.FlushDelay, "must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = max(1, runtime.NumCPU())
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = DefaultSweepEvery
	}
	if c.SweepIdleMin == 0 {
		c.SweepIdleMin = DefaultSweepIdleMin
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.AbortTimeout == 0 {
		c.AbortTimeout = DefaultAbortTimeout
	}
	if c.MaxInputSize == 0 {
		c.MaxInputSize = DefaultMaxInputSize
	}
	if c.FlushDelay == 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.ClaimWindow == 0 {
		c.ClaimWindow = DefaultClaimWindow
	}
	if c.CompleteWindow == 0 {
		c.CompleteWindow = DefaultCompleteWindow
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// margin returns the deadline margin for a task type's timeout: the time
// kept, before the timeout lets any daemon's zombie sweep take the task,
// to cancel the handler and write its outcome. By default it is a tenth
// of the timeout within [1 s, 10 s], so that a slow database still has
// a second for the write; either way at most half the timeout, so that
// short timeouts leave the handler the other half, and at least
// minRunWindow (timeouts under 2 × minRunWindow) so that there is time
// to write the outcome at all.
func (c Config) margin(timeout time.Duration) time.Duration {
	m := c.DeadlineMargin
	if m <= 0 {
		m = min(max(timeout/10, minDefaultMargin), maxDefaultMargin)
	}
	return max(min(m, timeout/2), minRunWindow)
}

// runWindow returns how long after its start a handler of a type with
// this timeout is cancelled: timeout minus the margin, but at least
// minRunWindow. For a timeout under 2 × minRunWindow that is past the
// timeout itself: such a type asks for its tasks to count as zombies
// almost at once, and a sweep may re-enqueue one while it runs (Release
// then leaves the task to whoever started it since).
func (c Config) runWindow(timeout time.Duration) time.Duration {
	return max(timeout-c.margin(timeout), minRunWindow)
}

// FormatServerID renders id as the reference daemon did: the 8 bytes read
// as an unsigned integer, "0x%016X".
func FormatServerID(id int64) string {
	return fmt.Sprintf("0x%016X", uint64(id))
}

// NewServerID returns a random non-zero id from crypto/rand, like the
// reference daemon's os.urandom(8).
func NewServerID() int64 {
	var b [8]byte
	for {
		// crypto/rand.Read never fails on supported platforms (it crashes
		// the program instead), so there is no error to handle.
		_, _ = rand.Read(b[:])
		if id := int64(binary.LittleEndian.Uint64(b[:])); id != 0 {
			return id
		}
	}
}
