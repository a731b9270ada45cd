// Package history reads what the ATP log says about how each task type
// ran under the reference daemon: run times against the type's timeout,
// the sweep's re-enqueues, tasks that finished only beside a duplicate
// run, zombies re-enqueued past maxstart. It is what `atpd check` judges
// before a switch; the records come from djangodb.EachLogRecord.
package history

import (
	"context"
	"slices"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// Examples is how many instances a TypeHistory names for each of
// its findings; the counts cover them all.
const Examples = 5

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
// (djangodb.MsgZombieReenqueued) and started it again beside the first run, the
// stretch still counts from the first start: which of the two runs wrote
// the outcome the log cannot tell, so the time is an upper bound.
type TypeHistory struct {
	Type      djangodb.TaskType
	Instances int // instances of the type with at least one log record
	// RunTimes are the times of the runs that ended, shortest first.
	RunTimes []time.Duration
	// Longest is the instance of the longest run (zero without runs).
	Longest djangodb.InstanceRef
	longest time.Duration
	// TimeoutReenqueues counts the djangodb.MsgZombieReenqueued records;
	// Reenqueued the instances with at least one.
	TimeoutReenqueues int
	Reenqueued        int
	// FinishedLate counts the instances that FINISHED in a run during
	// which they were re-enqueued after a timeout: they finished late,
	// beside a duplicate run. FinishedLateRefs names the first of them.
	FinishedLate     int
	FinishedLateRefs []djangodb.InstanceRef
	// OverMaxStart counts the instances the sweep re-enqueued after a
	// timeout when they had been started maxstart times already (starts
	// counted as djangodb.StartedTask.Starts counts them): atpd fails such a
	// zombie instead (djangodb.MaxStartsMessage). OverMaxStartRefs names the first
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
	djangodb.InstanceRef
	Starts int
	Status djangodb.Status // the latest status its log records
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

// Read reads the log of every instance and returns, for each task type
// in id order (types without instances included), what TypeHistory
// describes. ctx bounds the whole read.
func Read(ctx context.Context, st djangodb.Store) ([]TypeHistory, error) {
	types, err := st.Types(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TypeHistory, len(types))
	byID := make(map[int64]*TypeHistory, len(types))
	for i, t := range types {
		out[i].Type = t
		byID[t.ID] = &out[i]
	}
	var cur instanceWalk
	err = djangodb.EachLogRecord(ctx, st, func(l djangodb.HistoryRecord) error {
		if l.Instance.ID != cur.ref.ID {
			cur.flush()
			// nil for a type registered after Types read them: not counted.
			cur = instanceWalk{h: byID[l.TypeID], ref: l.Instance}
		}
		cur.record(l)
		return nil
	})
	if err != nil {
		return nil, err
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
	ref djangodb.InstanceRef

	prev        djangodb.Status
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

func (w *instanceWalk) record(l djangodb.HistoryRecord) {
	at, st := l.Time, l.Status
	if w.h == nil {
		return
	}
	started := false
	switch st {
	case djangodb.Running:
		if w.prev == djangodb.Scheduled {
			started = true
			w.starts++
			if !w.inRun {
				w.inRun, w.beat, w.quiet, w.timedOut = true, at, 0, false
			}
			break
		}
		w.beat = w.stretch(at)
	case djangodb.Paused:
		w.beat = w.stretch(at)
	case djangodb.Accepted:
		switch {
		case l.Timeout:
			w.reenqueues++
			w.timedOut = w.inRun
			if w.starts >= w.h.Type.MaxStart {
				w.overMaxStart = true
			}
		case l.Shutdown:
			// A daemon's shutdown ended the run, not the task: the
			// start does not count, nor does the run.
			if w.lastStarted {
				w.starts--
			}
			w.inRun = false
		default:
			w.inRun = false
		}
	case djangodb.Finished, djangodb.Failed:
		if w.inRun {
			d := w.quiet
			if s := at.Sub(w.beat); s > d {
				d = s
			}
			if len(w.h.RunTimes) == 0 || d > w.h.longest {
				w.h.longest, w.h.Longest = d, w.ref
			}
			w.h.RunTimes = append(w.h.RunTimes, d)
			if w.timedOut && st == djangodb.Finished {
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
		if len(h.FinishedLateRefs) < Examples {
			h.FinishedLateRefs = append(h.FinishedLateRefs, w.ref)
		}
	}
	h.MostStarts = max(h.MostStarts, w.starts)
	if w.overMaxStart {
		h.OverMaxStart++
		if w.prev == djangodb.Finished {
			h.OverMaxStartFinished++
		}
		if len(h.OverMaxStartRefs) < Examples {
			h.OverMaxStartRefs = append(h.OverMaxStartRefs, StartCount{InstanceRef: w.ref, Starts: w.starts, Status: w.prev})
		}
	}
}
