package djangodb

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit, for a dialect with one write connection (SQLite): write
// transactions that wait for the connection while another commits run
// together in one transaction and share its commit. A commit costs a few fsyncs however little it writes, so the
// daemon's claim and its completer's outcomes, which come at the same
// moments, cost one instead of two. Each caller's work stays atomic (when
// one fails, each runs again alone, so its error is its own) and is
// answered only after the shared commit: what it returns is durable, as
// with a transaction of its own.

// txJob is one caller's transaction waiting for the group.
type txJob struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan txResult
}

type txResult struct {
	lead     bool // the job's goroutine is to run the next group
	atCommit bool
	err      error
}

// grouper queues the jobs; the goroutine of one of them (the leader) runs
// the queue as one transaction, then hands the lead to a job that arrived
// meanwhile, so no caller runs others' groups for long.
type grouper struct {
	mu      sync.Mutex
	pending []*txJob
	leading bool
	arrived chan struct{} // signalled when a job joins the queue
	// busySince is when the file's write lock was last taken after being
	// free for groupYield or more; lastEnd is when the last group ended.
	// Only the leader reads or writes them.
	busySince, lastEnd time.Time
	groups             atomic.Int64 // transactions run, for tests
}

// groupWait is how long a lone transaction waits for company.
const groupWait = time.Millisecond

// Once the write lock has been held for groupBusy with no gap of
// groupYield, the next group waits until it has been free for groupYield.
// SQLite has no queue for its lock: another process (a Django producer,
// atpd's command line) polls it from its busy handler, at 100 ms intervals
// after the first second, and would otherwise see it free only in the
// moments between two of the daemon's transactions and wait out its busy
// timeout. The jobs that arrive during the pause join the next group, so
// it costs latency more than throughput.
const (
	groupBusy  = 100 * time.Millisecond
	groupYield = 25 * time.Millisecond
)

// maxGroup bounds the jobs in one transaction.
const maxGroup = 64

// tryGrouped is tryTx through the group: atCommit as for tryTx.
func (s *store) tryGrouped(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) (bool, error) {
	j := &txJob{ctx: ctx, fn: fn, done: make(chan txResult, 1)}
	g := &s.group
	g.mu.Lock()
	g.pending = append(g.pending, j)
	lead := !g.leading
	g.leading = true
	if g.arrived == nil {
		g.arrived = make(chan struct{}, 1)
	}
	select {
	case g.arrived <- struct{}{}:
	default:
	}
	g.mu.Unlock()
	for {
		if lead {
			s.runGroup()
		}
		r := <-j.done
		if !r.lead {
			return r.atCommit, r.err
		}
		lead = true
	}
}

// runGroup runs the pending jobs (up to maxGroup) in one transaction and
// answers them; then it hands the lead on, or gives it up.
func (s *store) runGroup() {
	g := &s.group
	paused := g.pauseForOthers()
	g.mu.Lock()
	if len(g.pending) == 1 && !paused {
		// Alone: wait a moment for a companion (the daemon's claim and
		// its completer's outcomes come together), which then shares
		// this commit instead of waiting for the next one.
		select {
		case <-g.arrived:
		default:
		}
		g.mu.Unlock()
		t := time.NewTimer(groupWait)
		select {
		case <-g.arrived:
		case <-t.C:
		}
		t.Stop()
		g.mu.Lock()
	}
	n := min(len(g.pending), maxGroup)
	jobs := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.mu.Unlock()

	res := s.groupTx(jobs)
	g.lastEnd = time.Now()
	g.groups.Add(1)

	for i, j := range jobs {
		j.done <- res[i]
	}
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.leading = false
		g.mu.Unlock()
		return
	}
	next := g.pending[0]
	g.mu.Unlock()
	next.done <- txResult{lead: true}
}

// pauseForOthers waits, before a group, until the write lock has been
// free for groupYield when it has been held for groupBusy without such a
// gap (see groupBusy); it reports whether it waited.
func (g *grouper) pauseForOthers() bool {
	now := time.Now()
	free := now.Sub(g.lastEnd)
	if g.lastEnd.IsZero() || free >= groupYield {
		g.busySince = now
		return false
	}
	if now.Sub(g.busySince) < groupBusy {
		return false
	}
	time.Sleep(groupYield - free)
	g.busySince = time.Now()
	return true
}

// groupTx runs jobs in one transaction and commits it. When one of them
// fails, the transaction is rolled back and each job runs in one of its
// own, so that a failure is its job's alone (a job's work is re-runnable:
// inTx reruns it after a retryable error too). Savepoints would keep the
// others' work, but cost two statements per job on every group.
func (s *store) groupTx(jobs []*txJob) []txResult {
	if len(jobs) > 1 {
		if res, ok := s.oneTx(jobs); ok {
			return res
		}
	}
	res := make([]txResult, len(jobs))
	for i := range jobs {
		r, _ := s.oneTx(jobs[i : i+1])
		res[i] = r[0]
	}
	return res
}

// oneTx runs jobs in one transaction; ok is false when one of them failed
// and the transaction was rolled back (its error is in its result, the
// others' results are unset).
func (s *store) oneTx(jobs []*txJob) (res []txResult, ok bool) {
	res = make([]txResult, len(jobs))
	// The transaction is everyone's: it runs under the call timeout, and
	// each job's statements under its own context too.
	tctx, cancel := context.WithTimeout(context.Background(), s.d.callTimeout())
	defer cancel()
	tx, err := s.d.begin(tctx)
	if err != nil {
		for i := range res {
			res[i].err = err
		}
		return res, true
	}
	for i, j := range jobs {
		err := j.ctx.Err()
		if err == nil {
			jctx, jcancel := context.WithTimeout(j.ctx, s.d.callTimeout())
			err = j.fn(jctx, tx)
			jcancel()
		}
		if err != nil {
			tx.Rollback()
			res[i].err = err
			return res, len(jobs) == 1
		}
	}
	err = tx.Commit()
	for i := range res {
		res[i] = txResult{atCommit: true, err: err}
	}
	return res, true
}
