package djangodb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// HistoryExamples is how many instances a TypeHistory names for each of
// its findings; the counts cover them all.
const HistoryExamples = 5

// TypeHistory is what the log records of one task type's instances say
// about how its tasks ran: what `atpd check` compares with the type's
// timeout and maxstart before a switch from the reference daemon.
//
// A run is a start (a RUNNING record after a SCHEDULED one) to the next
// FINISHED or FAILED record of the instance. Its time is measured as a
// deadline counts it, in the reference daemon's zombie sweep (timeUpdate
// older than the timeout) and in atpd (extended by every status write): the
// longest stretch of the run without a status write, from its start or a
// RUNNING or PAUSED record of the handler's to the next one or the end.
// When the reference daemon's sweep re-enqueued the instance meanwhile
// (MsgZombieReenqueued) and started it again beside the first run, the
// stretch still counts from the first start: which of the two runs wrote
// the outcome the log cannot tell, so the time is an upper bound.
type TypeHistory struct {
	Type      TaskType
	Instances int // instances of the type with at least one log record
	// RunTimes are the times of the runs that ended, shortest first.
	RunTimes []time.Duration
	// Longest is the instance of the longest run (zero without runs).
	Longest InstanceRef
	longest time.Duration
	// TimeoutReenqueues counts the MsgZombieReenqueued records;
	// Reenqueued the instances with at least one.
	TimeoutReenqueues int
	Reenqueued        int
	// FinishedLate counts the instances that FINISHED in a run during
	// which they were re-enqueued after a timeout: they finished late,
	// beside a duplicate run. FinishedLateRefs names the first of them.
	FinishedLate     int
	FinishedLateRefs []InstanceRef
	// OverMaxStart counts the instances the sweep re-enqueued after a
	// timeout when they had been started maxstart times already (starts
	// counted as StartedTask.Starts counts them): atpd fails such a
	// zombie instead (MaxStartsMessage). OverMaxStartRefs names the first
	// of them, with their starts in all and latest status.
	OverMaxStart     int
	OverMaxStartRefs []StartCount
	// OverMaxStartFinished counts those of them whose latest status is
	// FINISHED: atpd would have failed them.
	OverMaxStartFinished int
	// MostStarts is the most starts of any instance of the type.
	MostStarts int
}

// StartCount is an instance with the number of times it was started.
type StartCount struct {
	InstanceRef
	Starts int
	Status Status // the latest status its log records
}

// LongestRun is the longest of RunTimes, 0 without runs.
func (h TypeHistory) LongestRun() time.Duration {
	if len(h.RunTimes) == 0 {
		return 0
	}
	return h.RunTimes[len(h.RunTimes)-1]
}

// RunPercentile is the nearest-rank p-th percentile (0 < p <= 100) of
// RunTimes, 0 without runs.
func (h TypeHistory) RunPercentile(p float64) time.Duration {
	n := len(h.RunTimes)
	if n == 0 {
		return 0
	}
	rank := int(float64(n)*p/100 + 0.999999999)
	return h.RunTimes[min(max(rank, 1), n)-1]
}

// History reads the log of every instance and returns, for each task type
// in id order (types without instances included), what TypeHistory
// describes. It reads every log record once, in one statement on the read
// pool, without a call timeout of its own: ctx bounds it.
func History(ctx context.Context, st Store) ([]TypeHistory, error) {
	s, ok := st.(interface{ core() *store })
	if !ok {
		return nil, fmt.Errorf("djangodb: read history: %T: %w", st, ErrUnsupported)
	}
	return s.core().history(ctx)
}

// Migrations returns the names of the processes app's migrations that
// django_migrations lists as applied, in the order they were applied.
// Without that table (a database atpd did not migrate and Django never
// did) the error is the database's.
func Migrations(ctx context.Context, st Store) ([]string, error) {
	s, ok := st.(interface{ core() *store })
	if !ok {
		return nil, fmt.Errorf("djangodb: read migrations: %T: %w", st, ErrUnsupported)
	}
	c := s.core()
	var names []string
	err := c.read(ctx, "read django_migrations", func(ctx context.Context, db *sql.DB) error {
		return c.run(ctx, nil, stmt{sqlMigrations}, nil, func(r *sql.Rows) error {
			var n string
			err := r.Scan(&n)
			names = append(names, n)
			return err
		})
	})
	return names, err
}

// ExpectedMigrations are the processes app's migrations, oldest first:
// what Migrations returns for a database Django or atpd migrated.
func ExpectedMigrations() []string { return slices.Clone(pgMigrations) }

// Portable SQL of the history reads.
const (
	sqlMigrations = `SELECT name FROM django_migrations WHERE app = 'processes' ORDER BY id`
	// sqlHistory's mark is 1 for the sweep's re-enqueue, 2 for a
	// shutdown's, 0 otherwise: the messages themselves (exception texts)
	// are not read.
	sqlHistory = `SELECT l.instance_id, i.type_id, i.identifier, %s, l.status,
		CASE WHEN l.status = 1 AND l.message = $1 THEN 1 WHEN l.status = 1 AND l.message = $2 THEN 2 ELSE 0 END
		FROM processes_logrecord l JOIN processes_instance i ON i.id = l.instance_id
		ORDER BY l.instance_id, l."time", l.id`
)

// Marks of sqlHistory.
const (
	markNone = iota
	markTimeout
	markShutdown
)

// historyTime is the log record's time column as the dialect reads it:
// SQLite's naive text must reach readTime as text.
func (s *store) historyTime() string {
	if _, ok := s.d.(*sqliteStore); ok {
		return `CAST(l."time" AS TEXT)`
	}
	return `l."time"`
}

func (s *store) history(ctx context.Context) ([]TypeHistory, error) {
	types, err := s.Types(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TypeHistory, len(types))
	byID := make(map[int64]*TypeHistory, len(types))
	for i, t := range types {
		out[i].Type = t
		byID[t.ID] = &out[i]
	}
	rows, err := s.d.reads().QueryContext(ctx, fmt.Sprintf(sqlHistory, s.historyTime()), MsgZombieReenqueued, MsgShutdownReenqueue)
	if err != nil {
		return nil, fmt.Errorf("djangodb: read history from %s: %w", s.Describe(), err)
	}
	defer rows.Close()
	var cur instanceWalk
	for rows.Next() {
		var (
			id, typeID int64
			ident      string
			at         time.Time
			status     Status
			mark       int
		)
		if err := rows.Scan(&id, &typeID, &ident, s.at(&at), &status, &mark); err != nil {
			return nil, fmt.Errorf("djangodb: read history from %s: %w", s.Describe(), err)
		}
		if id != cur.ref.ID {
			cur.flush()
			h := byID[typeID]
			if h == nil {
				// A type registered after Types read them.
				cur = instanceWalk{ref: InstanceRef{ID: id}}
				continue
			}
			cur = instanceWalk{h: h, ref: InstanceRef{ID: id, Type: h.Type.Identifier, Identifier: ident}}
		}
		cur.record(at, status, mark)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("djangodb: read history from %s: %w", s.Describe(), err)
	}
	cur.flush()
	for i := range out {
		slices.Sort(out[i].RunTimes)
	}
	return out, nil
}

// instanceWalk follows one instance's log records in order.
type instanceWalk struct {
	h   *TypeHistory // nil: not counted
	ref InstanceRef

	prev        Status
	records     int
	starts      int
	lastStarted bool // the previous record was a start

	inRun    bool
	beat     time.Time     // the run's start or its handler's last status write
	quiet    time.Duration // the run's longest stretch so far
	timedOut bool          // re-enqueued by the sweep during the run

	reenqueues   int
	finishedLate bool
	overMaxStart bool // re-enqueued after a timeout with its starts used up
}

func (w *instanceWalk) record(at time.Time, st Status, mark int) {
	if w.h == nil {
		return
	}
	started := false
	switch st {
	case Running:
		if w.prev == Scheduled {
			started = true
			w.starts++
			if !w.inRun {
				w.inRun, w.beat, w.quiet, w.timedOut = true, at, 0, false
			}
			break
		}
		w.beat = w.stretch(at)
	case Paused:
		w.beat = w.stretch(at)
	case Accepted:
		switch mark {
		case markTimeout:
			w.reenqueues++
			w.timedOut = w.inRun
			if w.starts >= w.h.Type.MaxStart {
				w.overMaxStart = true
			}
		case markShutdown:
			// A daemon's shutdown ended the run, not the task: the
			// start does not count, nor does the run.
			if w.lastStarted {
				w.starts--
			}
			w.inRun = false
		default:
			w.inRun = false
		}
	case Finished, Failed:
		if w.inRun {
			d := w.quiet
			if s := at.Sub(w.beat); s > d {
				d = s
			}
			if len(w.h.RunTimes) == 0 || d > w.h.longest {
				w.h.longest, w.h.Longest = d, w.ref
			}
			w.h.RunTimes = append(w.h.RunTimes, d)
			if w.timedOut && st == Finished {
				w.finishedLate = true
			}
			w.inRun, w.timedOut = false, false
		}
	}
	w.lastStarted = started
	w.prev = st
	w.records++
}

// stretch ends the run's current stretch without a status write at at and
// returns the new beat; outside a run it changes nothing.
func (w *instanceWalk) stretch(at time.Time) time.Time {
	if !w.inRun {
		return w.beat
	}
	w.quiet = max(w.quiet, at.Sub(w.beat))
	return at
}

// flush adds the instance's counts to its type.
func (w *instanceWalk) flush() {
	h := w.h
	if h == nil || w.records == 0 {
		return
	}
	h.Instances++
	if w.reenqueues > 0 {
		h.TimeoutReenqueues += w.reenqueues
		h.Reenqueued++
	}
	if w.finishedLate {
		h.FinishedLate++
		if len(h.FinishedLateRefs) < HistoryExamples {
			h.FinishedLateRefs = append(h.FinishedLateRefs, w.ref)
		}
	}
	h.MostStarts = max(h.MostStarts, w.starts)
	if w.overMaxStart {
		h.OverMaxStart++
		if w.prev == Finished {
			h.OverMaxStartFinished++
		}
		if len(h.OverMaxStartRefs) < HistoryExamples {
			h.OverMaxStartRefs = append(h.OverMaxStartRefs, StartCount{InstanceRef: w.ref, Starts: w.starts, Status: w.prev})
		}
	}
}
