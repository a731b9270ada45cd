package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// errNullTaken rolls WriteNull's transaction back when the database took
// the write.
var errNullTaken = errors.New("the database took the NULL")

// errNullRefused rolls WriteNull's transaction back once the database
// refused the write.
var errNullRefused = errors.New("null write refused")

// WriteNull makes, and rolls back, the write the original tracker made
// when a handler passed None where Django stores text: a status change's
// log record with a NULL message (setSuccess(None) and the other setters:
// w.Status), or, for a response (w.IsResponse), the new response row
// (w.Data) with a NULL MIME type. The NOT NULL column refuses it, and
// WriteNull returns the error as the original's Python code read it:
// psycopg2's str() of the IntegrityError on PostgreSQL (the server's
// message and DETAIL line, whose failing row carries the id the insert
// consumed from the sequence and the time as the session prints it),
// sqlite3's on SQLite. w.Message and w.MimeType are not used.
//
// The original saved the instance (status, timeUpdate) in its own
// committed statement before the log record's insert failed; WriteNull
// does not: the handler's exception ends the task FAILED right after,
// which saves the instance again, so the rows at the end are the same,
// and a FINISHED status without its log record, which only a reader in
// that instant could see, would mislead the daemon's own fence.
//
// The refusal is "" when the database takes the write: the instance has a
// response row already, which setTaskResponse updated instead, keeping its
// MIME type (ATP-SPEC section 4), or the column is not NOT NULL as Django
// made it. Nothing is written then either: the caller makes the write as
// an ordinary one (SetResponse keeps a stored MIME type). An error is
// returned when the write could not be made (the instance's store is not
// this package's: ErrUnsupported; the connection failed).
func WriteNull(ctx context.Context, st Store, id int64, w Write) (string, error) {
	c, err := coreOf("write null", st)
	if err != nil {
		return "", err
	}
	column := "message"
	table := "processes_logrecord"
	if w.IsResponse {
		column, table = "mimeType", "processes_response"
	}
	var refusal string
	err = c.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		args := []any{id, column, c.clock.now(), int64(w.Status), EncodeResponse(w.Data)}
		err := c.run(ctx, tx, c.q.nullWrite, args, nil)
		if err == nil {
			return errNullTaken
		}
		text, ok := nullRefusal(err, table, column)
		if !ok {
			return err // the transaction's own failure, perhaps retried
		}
		refusal = text
		return errNullRefused
	})
	switch {
	case errors.Is(err, errNullRefused):
		return refusal, nil
	case errors.Is(err, errNullTaken):
		return "", nil
	}
	return "", fmt.Errorf("djangodb: write NULL %s.%s of instance %d: %w", table, column, id, err)
}

// nullRefusal reports whether err is the database's NOT NULL violation and
// returns it as the original's Python read it. psycopg2's str() of an
// IntegrityError is libpq's error message without its "ERROR:  " prefix:
// the primary message and a line for each of DETAIL and HINT that is set,
// each line ending in a newline. Python's sqlite3 gives sqlite3_errmsg(),
// "NOT NULL constraint failed: table.column", which modernc's error text
// holds behind sqlite3_errstr() and before the code; it is written here
// rather than cut out of that text.
func nullRefusal(err error, table, column string) (string, bool) {
	var pe *pq.Error
	if errors.As(err, &pe) {
		if pe.Code != "23502" { // not_null_violation
			return "", false
		}
		text := pe.Message + "\n"
		if pe.Detail != "" {
			text += "DETAIL:  " + pe.Detail + "\n"
		}
		if pe.Hint != "" {
			text += "HINT:  " + pe.Hint + "\n"
		}
		return text, true
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_NOTNULL {
		return "NOT NULL constraint failed: " + table + "." + column, true
	}
	return "", false
}
