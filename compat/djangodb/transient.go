package djangodb

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

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
	case ConnectionLost(err):
		return true
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

// ConnectionLost reports whether err says that a connection to the database
// died under the call: the server ended the session (pg_terminate_backend,
// a fast shutdown, a crash of another backend, an idle session timeout),
// the connection was reset or closed, or database/sql's driver.ErrBadConn
// (lib/pq's word for all of these once a connection is marked bad). The
// server was reachable a moment ago, so the call may well succeed at once
// on a new connection; a store drops its idle connections, dead from the
// same cause most likely, when it sees one. ConnectionLost implies
// Transient.
//
// A server that turned read-only under the connection (SQLSTATE 25006,
// "cannot execute ... in a read-only transaction": a standby behind a
// pooler that followed a demotion, answering a single statement) counts as
// lost too: the connection will never write again, and a new one made with
// target_session_attrs=read-write finds the primary that will. A standby
// refuses a READ WRITE transaction at BEGIN with SQLSTATE 0A000 instead
// ("cannot set transaction read-write mode during recovery"), which counts
// as lost as well. No write of a refused transaction can have committed,
// so trying it again is safe.
//
// A connection that cannot be made (refused, a timeout, the server
// starting up or shutting down: 57P03) is not a lost one: that is an
// outage, to be waited out with backoff.
func ConnectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.SQLState() {
		case "57P01", // admin_shutdown: pg_terminate_backend, a smart or fast shutdown
			"57P02", // crash_shutdown: another backend crashed
			"57P05", // idle_session_timeout
			"25P03", // idle_in_transaction_session_timeout
			"08003", // connection_does_not_exist
			"08006", // connection_failure
			"25006": // read_only_sql_transaction: the server is (now) a standby
			return true
		case "0A000":
			// BEGIN ... READ WRITE on a standby: "cannot set transaction
			// read-write mode during recovery", raised by the check of the
			// transaction_read_only setting. Nothing else atpd sends sets
			// a boolean setting, and other unsupported features stay
			// permanent.
			return pe.Routine == "call_bool_check_hook" || strings.Contains(pe.Message, "read-write mode")
		}
	}
	return false
}
