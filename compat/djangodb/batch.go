package djangodb

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Write is one of a handler's writes that a daemon may hold back and apply
// later with Complete: a status change (tracker._setTaskStatus: status,
// timeUpdate and one log record) or a stored response (setTaskResponse,
// which does not touch the instance). Make one with StatusWrite or
// ResponseWrite.
type Write struct {
	// IsResponse selects the kind: false for a status change (Status,
	// Message), true for a response (Data, MimeType).
	IsResponse bool
	Status     Status
	Message    string
	Data       []byte
	MimeType   string
}

// StatusWrite is a status change to s with a log message.
func StatusWrite(s Status, message string) Write { return Write{Status: s, Message: message} }

// ResponseWrite is setTaskResponse(data, mimeType).
func ResponseWrite(data []byte, mimeType string) Write {
	return Write{IsResponse: true, Data: data, MimeType: mimeType}
}

func (w Write) String() string {
	if w.IsResponse {
		return fmt.Sprintf("response (%d bytes, %s)", len(w.Data), w.MimeType)
	}
	return "status " + w.Status.String()
}

// Outcome is what Complete does after a completion's writes.
type Outcome int

const (
	// OutcomeNone applies the writes only: a running task's held-back
	// writes, flushed before a read or a deadline.
	OutcomeNone Outcome = iota
	// OutcomeFinish is stopTaskSuccessIfNotFinished: FINISHED unless the
	// instance is FINISHED or FAILED already.
	OutcomeFinish
	// OutcomeFail sets FAILED with the completion's Message.
	OutcomeFail
)

func (o Outcome) String() string {
	switch o {
	case OutcomeNone:
		return "none"
	case OutcomeFinish:
		return "finish"
	case OutcomeFail:
		return "fail"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Completion is one task's part of a Complete call. It belongs to one run
// of the instance (the run StartedTask describes) and is fenced on it:
// Complete writes it only while that run still owns the instance (see
// Fence), so that an outcome arriving late, after a sweep re-enqueued the
// task or another daemon started it again, is dropped instead of landing
// on the next run.
type Completion struct {
	InstanceID int64
	// Starts is the run's start count (StartedTask.Starts); it must be
	// at least 1.
	Starts int
	// Ended is the terminal status (FINISHED or FAILED) that an earlier
	// completion of the same run wrote or asked to write, 0 if none: the
	// run still owns an instance it ended itself, so that its later
	// writes (a response stored after SetSuccess) land.
	Ended   Status
	Writes  []Write // applied in order, before the outcome
	Outcome Outcome
	Message string // log message of the outcome's status change
}

// RunState is what the fence reads of an instance, in the transaction
// that writes the completion, with the instance row locked.
type RunState struct {
	Status Status
	Queued bool // a waiting task row (lock = 0) exists
	Starts int  // starts counted from the log, as StartedTask.Starts
}

// Reasons a completion is discarded, as CompletionResult.Discarded reports
// them and the daemon's atpd_outcomes_discarded_total counts them.
const (
	// DiscardRequeued: the instance waits to run again (a waiting row,
	// ACCEPTED or SCHEDULED): a sweep or a producer re-enqueued it.
	DiscardRequeued = "requeued"
	// DiscardRestarted: the instance was started again since the run
	// began (its start count moved on).
	DiscardRestarted = "restarted"
	// DiscardEnded: the instance ended (FINISHED or FAILED) by someone
	// else's write, or by this very completion in an attempt whose commit
	// acknowledgement was lost.
	DiscardEnded = "ended"
)

// Fence reports why the run c belongs to no longer owns the instance in
// state s, or "" when it does: the instance is RUNNING or PAUSED (or in
// the terminal status the run wrote itself, c.Ended), its start count is
// the run's, and no waiting row exists. It is Release's predicate; a
// retried Complete whose first commit went through finds its own
// terminal write and is dropped, which makes the retry harmless.
func (c Completion) Fence(s RunState) string {
	switch {
	case s.Queued || s.Status == Accepted || s.Status == Scheduled:
		return DiscardRequeued
	case s.Starts != c.Starts:
		return DiscardRestarted
	case s.Status == Running || s.Status == Paused:
		return ""
	case c.Ended != 0 && s.Status == c.Ended:
		return ""
	}
	return DiscardEnded
}

// CompletionResult reports what Complete did for one Completion; results
// are in the order of the completions.
type CompletionResult struct {
	InstanceID int64
	// Err is nil when everything was written. It wraps ErrNotFound when the
	// instance no longer exists, ErrNotOwned when the fence dropped the
	// completion (Discarded says why), ErrBusy when another transaction
	// held the instance's row (retry it later), and names the write when
	// a completion is malformed (an unknown status code). In each case
	// nothing was written for it and the others are unaffected.
	Err error
	// Discarded is the fence's reason (DiscardRequeued, ...) when Err
	// wraps ErrNotOwned.
	Discarded string
	// Wrote reports whether the outcome wrote a status change: always for
	// OutcomeFail, FinishIfNotFinished's result for OutcomeFinish.
	Wrote bool
	// Status is the instance's status once the completion was applied.
	Status Status
	// TimeUpdate is the last timeUpdate the completion wrote; zero when it
	// changed no status.
	TimeUpdate time.Time
}

// check rejects a completion no database could apply, before any SQL runs.
func (c Completion) check() error {
	if c.Starts < 1 {
		return fmt.Errorf("instance %d: completion without a run (start count %d)", c.InstanceID, c.Starts)
	}
	if c.Ended != 0 && !c.Ended.Terminal() {
		return fmt.Errorf("instance %d: ended in %s, not a terminal status", c.InstanceID, c.Ended)
	}
	for i, w := range c.Writes {
		if !w.IsResponse && (w.Status < Undefined || w.Status > Failed) {
			return fmt.Errorf("write %d of instance %d: status %d: no such status", i+1, c.InstanceID, int(w.Status))
		}
	}
	if c.Outcome < OutcomeNone || c.Outcome > OutcomeFail {
		return fmt.Errorf("instance %d: unknown outcome %d", c.InstanceID, int(c.Outcome))
	}
	return nil
}

// outcomeWrite returns the outcome as a status write and whether it only
// applies to a non-terminal instance; ok is false for OutcomeNone.
func (c Completion) outcomeWrite() (w Write, ifNotTerminal, ok bool) {
	switch c.Outcome {
	case OutcomeFinish:
		return StatusWrite(Finished, c.Message), true, true
	case OutcomeFail:
		return StatusWrite(Failed, c.Message), false, true
	}
	return Write{}, false, false
}

// NotOwnedError is a run's write the fence dropped; it wraps ErrNotOwned.
type NotOwnedError struct {
	InstanceID int64
	Starts     int    // the run's start count
	Reason     string // DiscardRequeued, DiscardRestarted or DiscardEnded
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("djangodb: complete instance %d (start %d): %v: %s", e.InstanceID, e.Starts, ErrNotOwned, e.Reason)
}

func (e *NotOwnedError) Unwrap() error { return ErrNotOwned }

// DiscardReason is the fence's reason.
func (e *NotOwnedError) DiscardReason() string { return e.Reason }

// discard returns r marked as dropped by the fence for reason.
func (c Completion) discard(r CompletionResult, reason string) CompletionResult {
	r.Err = &NotOwnedError{InstanceID: c.InstanceID, Starts: c.Starts, Reason: reason}
	r.Discarded = reason
	r.Wrote = false
	return r
}

// rounds splits cs so that no instance appears twice in a round: a batch
// statement cannot update one row twice, and a daemon may hand in a flush
// and the completion of one task together. Indexes into cs are returned, in
// order within each round; a later round holds later completions of an
// instance.
func rounds(cs []Completion) [][]int {
	if len(cs) == 0 {
		return nil
	}
	seen := make(map[int64]int, len(cs)) // instance -> rounds it is in
	var out [][]int
	for i, c := range cs {
		r := seen[c.InstanceID]
		seen[c.InstanceID] = r + 1
		if r == len(out) {
			out = append(out, nil)
		}
		out[r] = append(out[r], i)
	}
	return out
}

// StorableText makes free text (a log message, a MIME type) storable and
// readable back by Django: PostgreSQL rejects invalid UTF-8 and NUL in text
// columns, and Python's sqlite3 fails to decode invalid UTF-8 where SQLite
// stored it. A handler's error message that carries either must not keep
// its task from being marked FAILED, so the bad bytes become U+FFFD.
func StorableText(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
