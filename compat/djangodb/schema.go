package djangodb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrSchema: the database lacks ATP tables or columns atpd reads and
// writes (a partial migration, a table dropped by hand).
var ErrSchema = errors.New("ATP tables incomplete")

// atpColumns are the columns of the processes app's tables that atpd uses,
// as Django's migrations create them.
var atpColumns = map[string][]string{
	"processes_type":      {"id", "identifier", "handler", "maxstart", "timeout", "timeret"},
	"processes_instance":  {"id", "identifier", "timeInsert", "timeUpdate", "status", "type_id"},
	"processes_task":      {"id", "time", "lock", "instance_id"},
	"processes_response":  {"id", "response", "mimeType", "instance_id"},
	"processes_logrecord": {"id", "time", "status", "message", "instance_id"},
	"processes_input":     {"id", "input", "instance_id"},
}

// CheckSchema reports, wrapping ErrSchema, every ATP table or column the
// database lacks; nil when all are there. A database without any ATP
// table wraps ErrSchema too, naming all six.
func CheckSchema(ctx context.Context, st Store) error {
	s, err := coreOf("check schema", st)
	if err != nil {
		return err
	}
	return s.checkSchema(ctx)
}

func (s *store) checkSchema(ctx context.Context) error {
	have := map[string]map[string]bool{}
	err := s.read(ctx, "check the ATP tables", func(ctx context.Context, db *sql.DB) error {
		return s.run(ctx, nil, s.q.schema, nil, func(rows *sql.Rows) error {
			var table, column string
			if err := rows.Scan(&table, &column); err != nil {
				return err
			}
			if have[table] == nil {
				have[table] = map[string]bool{}
			}
			have[table][column] = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	var missing []string
	tables := make([]string, 0, len(atpColumns))
	for t := range atpColumns {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		cols, ok := have[t]
		if !ok {
			missing = append(missing, "table "+t)
			continue
		}
		var gone []string
		for _, c := range atpColumns[t] {
			if !cols[c] {
				gone = append(gone, c)
			}
		}
		if len(gone) > 0 {
			missing = append(missing, fmt.Sprintf("%s columns %s", t, strings.Join(gone, ", ")))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("djangodb: %s: %w: missing %s", s.Describe(), ErrSchema, strings.Join(missing, "; "))
	}
	return nil
}

// errProbed rolls ProbeWrite's transaction back.
var errProbed = errors.New("write probe done")

// ProbeWrite checks that the database takes atpd's writes: in a
// transaction it then rolls back, it inserts a task row (for no instance:
// the foreign key is checked only at commit, which never comes). A
// read-only SQLite file, a PostgreSQL role without rights on the ATP
// tables or a standby refuses it; nil when the write went through.
func ProbeWrite(ctx context.Context, st Store) error {
	c, err := coreOf("probe writes", st)
	if err != nil {
		return err
	}
	err = c.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlProbeWrite, int64(-1), c.bind(c.clock.now()), int64(-1)); err != nil {
			return err
		}
		return errProbed
	})
	if errors.Is(err, errProbed) {
		return nil
	}
	return fmt.Errorf("djangodb: %s refuses writes: %w", c.Describe(), err)
}
