package djangodb

import (
	"context"
	"errors"

	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Transient reports whether a failed store call may succeed when simply
// tried again: the connection was lost or refused, the server is shutting
// down or starting up, a lock or resource was not available, or the call
// timed out. It is false for answers that would come back the same (a
// missing instance, a full queue, a constraint or data error), so that a
// caller retrying on Transient never loops on a permanent failure.
//
// context.Canceled is never transient: the caller gave up. A
// context.DeadlineExceeded is, because callers bound each attempt with its
// own timeout and check their own context separately.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrQueueFull), errors.Is(err, ErrQueueEmpty),
		errors.Is(err, ErrExists), errors.Is(err, ErrProtected), errors.Is(err, ErrUnsupported):
		return false
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch state := pe.SQLState(); {
		case len(state) < 2:
			return true
		default:
			switch state[:2] {
			case "08", // connection exception
				"40", // transaction rollback: serialization failure, deadlock
				"53", // insufficient resources: too many connections, out of memory
				"55", // object not in prerequisite state: lock not available
				"57", // operator intervention: admin shutdown, cannot connect now
				"58": // system error: I/O error
				return true
			}
			return false
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PROTOCOL:
			return true
		}
		return false
	}
	// What is left comes from below the SQL layer (a reset or refused
	// connection, an EOF, database/sql's bad connection) or is a timeout.
	return true
}
