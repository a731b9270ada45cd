package storetest

import (
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Snapshot is every row of the six ATP tables, each table ordered by id,
// read directly from the database rather than through a Store.
type Snapshot struct {
	Types     []TypeRow
	Instances []InstanceRow
	Tasks     []TaskRow
	Logs      []LogRow
	Inputs    []InputRow
	Responses []ResponseRow
}

// TypeRow is a processes_type row.
type TypeRow struct {
	ID         int64
	Identifier string
	Handler    string
	MaxStart   int64
	Timeout    float64
	TimeRet    float64
}

// InstanceRow is a processes_instance row.
type InstanceRow struct {
	ID         int64
	TypeID     int64
	Identifier string
	TimeInsert time.Time
	TimeUpdate time.Time
	Status     int64
}

// TaskRow is a processes_task row.
type TaskRow struct {
	ID         int64
	InstanceID int64
	Time       time.Time
	Lock       int64
}

// LogRow is a processes_logrecord row.
type LogRow struct {
	ID         int64
	InstanceID int64
	Time       time.Time
	Status     int64
	Message    string
}

// InputRow is a processes_input row.
type InputRow struct {
	ID         int64
	InstanceID int64
	Input      string
}

// ResponseRow is a processes_response row.
type ResponseRow struct {
	ID         int64
	InstanceID int64
	Response   string
	MimeType   string
}

// dump reads every ATP row.
func (e *env) dump() Snapshot {
	e.t.Helper()
	s, err := Dump(e.db, func(v any) (time.Time, error) { return e.h.DecodeTime(e.c, v) })
	if err != nil {
		e.t.Fatalf("dump rows: %v", err)
	}
	return s
}

// Dump reads every row of the six ATP tables through db, decoding timestamp
// columns with decodeTime. The queries run unchanged on both dialects.
func Dump(db *sql.DB, decodeTime func(any) (time.Time, error)) (Snapshot, error) {
	var s Snapshot
	var err error
	tm := func(dst *time.Time) any { return &timeScanner{dst: dst, decode: decodeTime} }
	s.Types, err = scanAll(db, `SELECT id, identifier, handler, maxstart, timeout, timeret FROM processes_type ORDER BY id`,
		func(r *TypeRow) []any {
			return []any{&r.ID, &r.Identifier, &r.Handler, &r.MaxStart, &r.Timeout, &r.TimeRet}
		})
	if err != nil {
		return s, err
	}
	s.Instances, err = scanAll(db, `SELECT id, type_id, identifier, "timeInsert", "timeUpdate", status FROM processes_instance ORDER BY id`,
		func(r *InstanceRow) []any {
			return []any{&r.ID, &r.TypeID, &r.Identifier, tm(&r.TimeInsert), tm(&r.TimeUpdate), &r.Status}
		})
	if err != nil {
		return s, err
	}
	s.Tasks, err = scanAll(db, `SELECT id, instance_id, time, lock FROM processes_task ORDER BY id`,
		func(r *TaskRow) []any { return []any{&r.ID, &r.InstanceID, tm(&r.Time), &r.Lock} })
	if err != nil {
		return s, err
	}
	s.Logs, err = scanAll(db, `SELECT id, instance_id, time, status, message FROM processes_logrecord ORDER BY id`,
		func(r *LogRow) []any { return []any{&r.ID, &r.InstanceID, tm(&r.Time), &r.Status, &r.Message} })
	if err != nil {
		return s, err
	}
	s.Inputs, err = scanAll(db, `SELECT id, instance_id, input FROM processes_input ORDER BY id`,
		func(r *InputRow) []any { return []any{&r.ID, &r.InstanceID, &r.Input} })
	if err != nil {
		return s, err
	}
	s.Responses, err = scanAll(db, `SELECT id, instance_id, response, "mimeType" FROM processes_response ORDER BY id`,
		func(r *ResponseRow) []any { return []any{&r.ID, &r.InstanceID, &r.Response, &r.MimeType} })
	return s, err
}

func scanAll[T any](db *sql.DB, query string, fields func(*T) []any) ([]T, error) {
	rows, err := db.Query(query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var r T
		if err := rows.Scan(fields(&r)...); err != nil {
			return nil, fmt.Errorf("%s: %w", query, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	return out, nil
}

type timeScanner struct {
	dst    *time.Time
	decode func(any) (time.Time, error)
}

func (s *timeScanner) Scan(v any) error {
	t, err := s.decode(v)
	if err != nil {
		return fmt.Errorf("timestamp %v: %w", v, err)
	}
	// UTC so that snapshots compare with reflect.DeepEqual.
	*s.dst = t.UTC()
	return nil
}

// without returns s minus every row that belongs to one of the instances,
// and those instances: what a cascading delete of them must leave.
func (s Snapshot) without(instanceIDs ...int64) Snapshot {
	gone := func(id int64) bool { return slices.Contains(instanceIDs, id) }
	return Snapshot{
		Types:     s.Types,
		Instances: keep(s.Instances, func(r InstanceRow) bool { return !gone(r.ID) }),
		Tasks:     keep(s.Tasks, func(r TaskRow) bool { return !gone(r.InstanceID) }),
		Logs:      keep(s.Logs, func(r LogRow) bool { return !gone(r.InstanceID) }),
		Inputs:    keep(s.Inputs, func(r InputRow) bool { return !gone(r.InstanceID) }),
		Responses: keep(s.Responses, func(r ResponseRow) bool { return !gone(r.InstanceID) }),
	}
}

// keep returns the rows for which ok holds, nil when none does, as Dump
// returns an empty table, so that snapshots compare with reflect.DeepEqual.
func keep[T any](rows []T, ok func(T) bool) []T {
	var out []T
	for _, r := range rows {
		if ok(r) {
			out = append(out, r)
		}
	}
	return out
}

// instanceRow returns the row of instance id.
func (s Snapshot) instanceRow(id int64) (InstanceRow, bool) {
	for _, r := range s.Instances {
		if r.ID == id {
			return r, true
		}
	}
	return InstanceRow{}, false
}

// logsOf returns the log rows of one instance in id order.
func (s Snapshot) logsOf(id int64) []LogRow {
	var out []LogRow
	for _, r := range s.Logs {
		if r.InstanceID == id {
			out = append(out, r)
		}
	}
	return out
}
