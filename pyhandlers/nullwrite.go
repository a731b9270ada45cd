package pyhandlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

// refuseNull returns the error the original's write of w with a None
// raised in the handler: Django passed the None on to the NOT NULL column
// (a setter's log message, a new response's MIME type) and the database
// refused it. A status that is an executor.NullWriter (the daemon's) makes
// that write, rolled back, and returns the database's own words, which on
// PostgreSQL name the refused row; any other status, or a store that
// cannot (djangodb.ErrUnsupported), gets notNull's words for database.
// An error is a refusal that could not be had.
func refuseNull(ctx context.Context, status executor.TaskStatus, database string, w djangodb.Write) (string, error) {
	if nw, ok := status.(executor.NullWriter); ok {
		refusal, err := nw.NullWrite(ctx, w)
		if !errors.Is(err, djangodb.ErrUnsupported) {
			return refusal, err
		}
	}
	if w.IsResponse {
		return notNull(database, "processes_response", "mimeType"), nil
	}
	return notNull(database, "processes_logrecord", "message"), nil
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
