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

// Completion is one task's part of a Complete call.
type Completion struct {
	InstanceID int64
	Writes     []Write // applied in order, before the outcome
	Outcome    Outcome
	Message    string // log message of the outcome's status change
}

// CompletionResult reports what Complete did for one Completion; results
// are in the order of the completions.
type CompletionResult struct {
	InstanceID int64
	// Err is nil when everything was written. It wraps ErrNotFound when the
	// instance no longer exists (nothing was written for it) and names the
	// write when a completion is malformed (an unknown status code); such a
	// completion writes nothing and the others are unaffected.
	Err error
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

// storableText makes free text (a log message, a MIME type) storable and
// readable back by Django: PostgreSQL rejects invalid UTF-8 and NUL in text
// columns, and Python's sqlite3 fails to decode invalid UTF-8 where SQLite
// stored it. A handler's error message that carries either must not keep
// its task from being marked FAILED, so the bad bytes become U+FFFD.
func storableText(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
