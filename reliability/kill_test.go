package reliability

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// TestSIGKILLUnderLoad kills the daemon with SIGKILL again and again while
// its workers are busy, starting a new one each time. The tasks the dead
// daemons held (SCHEDULED or RUNNING) are found by the next daemon's zombie
// sweep after the type's timeout and run again. In the end no task is lost,
// and no task ran more often than maxstart: the ledger never shows more
// executions of an instance than its log shows starts, nor more than
// maxstart; an instance FAILED only because its starts were used up.
func TestSIGKILLUnderLoad(t *testing.T) {
	for _, kind := range []dbKind{pgUTC, sqliteUTC} {
		t.Run(kind.name, func(t *testing.T) {
			if !kind.pg && !full() {
				t.Skip("SQLite: only in the full run (ATPD_FULL=1)")
			}
			testSIGKILL(t, kind)
		})
	}
}

func testSIGKILL(t *testing.T, kind dbKind) {
	n := size(200, 1000)
	kills := size(3, 8)
	const (
		timeout    = 3 // seconds: how soon a dead daemon's tasks are swept
		maxrestart = 2
		maxstart   = 1 + maxrestart
	)
	db := newDB(t, kind)
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, timeout, maxrestart)
	db.bulkEnqueue("Ledger", "t", n, led.input(0.1))

	begin := time.Now()
	inFlight := 0 // tasks SCHEDULED or RUNNING when a daemon was killed
	for i := range kills {
		a := db.startAtpd(fmt.Sprintf("atpd-%d", i), "atpd", "-n", "4")
		// Kill while handlers run, a little into the run so that some
		// tasks also finish.
		waitFor(t, time.Minute, func() string { return "a running task" }, func() bool {
			return db.QueryInt(`SELECT count(*) FROM processes_instance WHERE status = 3`) > 0
		})
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		a.Cmd.Process.Kill()
		a.Wait(drainTimeout)
		inFlight += db.QueryInt(`SELECT count(*) FROM processes_instance WHERE status IN (2, 3)`)
	}
	last := db.startAtpd("atpd-last", "atpd", "-n", "4")
	db.waitTerminal(n, 5*time.Minute)
	elapsed := time.Since(begin)
	last.Stop(drainTimeout)

	counts := db.statusCounts()
	if counts[djangodb.Finished]+counts[djangodb.Failed] != n || len(counts) > 2 {
		t.Errorf("instances by status %v, want all %d FINISHED or FAILED", counts, n)
	}
	if inFlight == 0 {
		t.Error("no task was in flight when a daemon was killed: the fault was not injected")
	}
	lc := led.read()
	logs := db.logs()
	statuses := db.instanceStatuses()
	var reran, maxRuns int
	for id, s := range statuses {
		starts := 0
		recs := logs[id]
		for i := 1; i < len(recs); i++ {
			if recs[i].Status == djangodb.Running && recs[i-1].Status == djangodb.Scheduled {
				starts++
			}
		}
		runs := lc.byID[id]
		maxRuns = max(maxRuns, runs)
		if runs > 1 {
			reran++
		}
		switch {
		case runs > maxstart:
			t.Errorf("instance %d ran %d times, more than maxstart %d", id, runs, maxstart)
		case runs > starts:
			t.Errorf("instance %d ran %d times but was started %d times: %v", id, runs, starts, recs)
		case s == djangodb.Finished && runs == 0:
			t.Errorf("instance %d FINISHED without its handler running: %v", id, recs)
		case s == djangodb.Failed && (starts != maxstart || !strings.HasPrefix(recs[len(recs)-1].Message, "Failed by ATPD after timeout")):
			t.Errorf("instance %d FAILED for another reason than used-up starts: %v", id, recs)
		}
	}
	if len(lc.byID) > len(statuses) {
		t.Errorf("the ledger names %d instances, the database has %d", len(lc.byID), len(statuses))
	}
	db.checkConsistent()
	t.Logf("FIGURES sigkill/%s: tasks=%d kills=%d in_flight_at_kills=%d reran=%d max_runs=%d finished=%d failed=%d executions=%d elapsed=%s",
		kind.name, n, kills, inFlight, reran, maxRuns, counts[djangodb.Finished], counts[djangodb.Failed], lc.lines, elapsed.Round(time.Millisecond))
}
