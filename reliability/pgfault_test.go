package reliability

import (
	"testing"
	"time"
)

// drainTimeout bounds waiting for a daemon to drain and exit after SIGINT.
const drainTimeout = time.Minute

// TestPostgresBackendsTerminated: while atpd works through a queue of ledger
// tasks, every PostgreSQL session it holds is killed with
// pg_terminate_backend every 50 ms, or, when no task ended since the last
// round, as soon as one has (see terminate). The daemon logs the lost
// connections, retries with backoff and carries on: every task finishes, every handler
// ran exactly once (no timeout is crossed: the type's timeout is two
// minutes), and every instance's log is the plain ACCEPTED, SCHEDULED,
// RUNNING, FINISHED.
func TestPostgresBackendsTerminated(t *testing.T) {
	n := size(300, 2000)
	db := newDB(t, pgUTC)
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, 120, 2)
	db.bulkEnqueue("Ledger", "t", n, led.input(0.01))

	begin := time.Now()
	a := db.startAtpd("atpd", "atpd", "-n", "2")
	k := db.terminate(t, 50*time.Millisecond, endedTasks)
	db.waitTerminal(n, 5*time.Minute)
	k.stop()
	elapsed := time.Since(begin)
	a.Stop(drainTimeout)

	db.checkExactlyOnce(led, n)
	if k.killed.Load() == 0 {
		t.Error("no atpd session was terminated: the fault was not injected")
	}
	retries := a.countRecords(`retrying`)
	if retries == 0 {
		t.Error("atpd logged no retry although its sessions were terminated")
	}
	if lost := a.countRecords(`outcome not written|left SCHEDULED`); lost != 0 {
		t.Errorf("atpd gave up on %d task outcomes", lost)
	}
	t.Logf("FIGURES terminate: tasks=%d rounds=%d sessions_terminated=%d retries_logged=%d elapsed=%s",
		n, k.rounds.Load(), k.killed.Load(), retries, elapsed.Round(time.Millisecond))
}

// TestPostgresRestarted: a private PostgreSQL cluster is stopped (fast
// shutdown: every session closed, open transactions rolled back) twice while
// atpd works, stays down for a while, and is started again. atpd logs the
// outage, keeps retrying with backoff (capped at 5 s) and resumes when the
// server is back: every task finishes, exactly once, with a plain log.
func TestPostgresRestarted(t *testing.T) {
	n := size(200, 1000)
	const down = 3 * time.Second
	cluster := newPGCluster(t)
	cfg := pgUTC.cfg
	db := openDB(t, cluster.migratedDB("atpd_restart", cfg), true, cfg)
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, 120, 2)
	db.bulkEnqueue("Ledger", "t", n, led.input(0.01))

	begin := time.Now()
	a := db.startAtpd("atpd", "atpd", "-n", "2")
	outages := 0
	for _, at := range []int{n / 3, 2 * n / 3} {
		db.waitFinished(at, 3*time.Minute)
		seen := len(a.Grep(`retrying`))
		cluster.stop()
		outages++
		// The outage lasts a while on purpose: the daemon must ride it
		// out, not merely reconnect at once.
		time.Sleep(down)
		if len(a.Grep(`retrying`)) == seen {
			t.Errorf("outage %d: atpd logged no retry while the server was down", outages)
		}
		cluster.start()
	}
	db.waitTerminal(n, 5*time.Minute)
	elapsed := time.Since(begin)
	a.Stop(drainTimeout)

	db.checkExactlyOnce(led, n)
	retries := a.countRecords(`retrying`)
	if lost := a.countRecords(`outcome not written|left SCHEDULED`); lost != 0 {
		t.Errorf("atpd gave up on %d task outcomes", lost)
	}
	t.Logf("FIGURES restart: tasks=%d outages=%d down_each=%s retries_logged=%d elapsed=%s",
		n, outages, down, retries, elapsed.Round(time.Millisecond))
}
