package pyhandlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// writeNone is the original's write of w with a handler's None: Django
// passed the None on to the NOT NULL column (a setter's log message, a new
// response's MIME type) and the database refused it; writeNone returns
// that refusal, the error to raise in the handler. A status that is an
// executor.NullWriter (the daemon's) makes the write, rolled back, and
// returns the database's own words, which on PostgreSQL name the refused
// row; any other status, or a store that cannot (djangodb.ErrUnsupported),
// gets notNull's words for database. When the database takes the write (a
// response row the instance has already: the original updated it, keeping
// its MIME type), writeNone makes it as an ordinary write and returns "".
// An error is a write that could not be made.
func writeNone(ctx context.Context, status executor.TaskStatus, database string, w djangodb.Write) (string, error) {
	if nw, ok := status.(executor.NullWriter); ok {
		refusal, err := nw.NullWrite(ctx, w)
		switch {
		case err == nil && refusal == "":
			return "", writeTaken(ctx, status, w)
		case !errors.Is(err, djangodb.ErrUnsupported):
			return refusal, err
		}
	}
	if w.IsResponse {
		return notNull(database, "processes_response", "mimeType"), nil
	}
	return notNull(database, "processes_logrecord", "message"), nil
}

// writeTaken makes the write of None the database takes, as an ordinary
// write: the response (its stored MIME type stays), or the status with an
// empty message where a column that is not NOT NULL would have kept NULL.
func writeTaken(ctx context.Context, status executor.TaskStatus, w djangodb.Write) error {
	if w.IsResponse {
		return status.StoreResponse(ctx, w.Data, "")
	}
	switch w.Status {
	case djangodb.Finished:
		return status.SetSuccess(ctx, "")
	case djangodb.Failed:
		return status.SetFailure(ctx, "")
	case djangodb.Paused:
		return status.SetPaused(ctx, "")
	case djangodb.Running:
		return status.SetRunning(ctx, "")
	}
	return fmt.Errorf("pyhandlers: write status %d: not a setter's", int(w.Status))
}

// notNull is the NOT NULL violation as Python read it through Django,
// without the database: sqlite3's words, or the first line of psycopg2's
// (its DETAIL line names the refused row, which only the database knows).
func notNull(database, table, column string) string {
	if database == "postgresql" {
		return fmt.Sprintf("null value in column %q of relation %q violates not-null constraint", column, table)
	}
	return fmt.Sprintf("NOT NULL constraint failed: %s.%s", table, column)
}
