package atpdcmd

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/gohandlers"
)

// wakeDeadline is how soon an announced task must be finished by an idle
// daemon that would otherwise poll again only in an hour.
const wakeDeadline = 10 * time.Second

// TestEnqueueWakesListeningDaemon: on PostgreSQL without the trigger of
// `atpd notify install`, `atpd enqueue` announces its task itself, and an
// idle daemon polling once an hour runs it at once. A task a Python
// producer queued just before (which announces nothing) waits until that
// announcement: its SCHEDULED record comes after the announced task's
// ACCEPTED one, which rules out that the daemon found either by polling.
func TestEnqueueWakesListeningDaemon(t *testing.T) {
	db := newE2EDB(t, pgUTC)
	db.batch([]string{"register", "SequenceSum", gohandlers.DemoPath})
	if n := db.queryInt(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'processes_task'::regclass AND NOT tgisinternal`); n != 0 {
		t.Fatalf("processes_task has %d triggers; the test needs none", n)
	}

	p := startAtpd(t, "listen", noPythonEnv(t), append(db.dbArgs(),
		"--poll-interval", "1h", "--sweep-interval", "1h", "-n", "1", "--log-level", "debug")...)
	p.waitLine(`ATPD: listening for new tasks`, startTimeout)
	// The daemon's log line precedes the LISTEN statement; its session
	// sitting idle after LISTEN is the sign that LISTEN took effect (the
	// daemon then polls once and sleeps for the hour).
	waitFor(t, startTimeout, func() string { return "the daemon's LISTEN session" }, func() bool {
		return db.queryInt(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND state = 'idle' AND query ILIKE 'LISTEN %`+djangodb.NotifyChannel+`%'`) == 1
	})

	db.producer("enqueue", "SequenceSum", "quiet", "--literal", "(1, 2)")
	if st := db.status("SequenceSum", "quiet"); st != int(djangodb.Accepted) {
		t.Fatalf("quiet task is %s right after enqueue, want ACCEPTED (the daemon polled?)", djangodb.Status(st))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, atpdBin, append([]string{"enqueue", "SequenceSum", "loud", "--input-json", "[1, 2, 3]"}, db.dbArgs()...)...)
	cmd.Env, cmd.Dir = baseEnv(), t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("atpd enqueue: %v\n%s", err, &out)
	}
	enqueued := time.Now()

	db.waitStatus("SequenceSum", "loud", djangodb.Finished, wakeDeadline)
	db.waitStatus("SequenceSum", "quiet", djangodb.Finished, wakeDeadline)
	t.Logf("both tasks finished %v after atpd enqueue returned", time.Since(enqueued).Round(time.Millisecond))

	after := db.queryInt(`SELECT CASE WHEN
		(SELECT min(l.time) FROM processes_logrecord l JOIN processes_instance i ON i.id = l.instance_id
			WHERE i.identifier = 'quiet' AND l.status = 2) >=
		(SELECT min(l.time) FROM processes_logrecord l JOIN processes_instance i ON i.id = l.instance_id
			WHERE i.identifier = 'loud' AND l.status = 1)
		THEN 1 ELSE 0 END`)
	if after != 1 {
		t.Errorf("quiet task was SCHEDULED before the loud one was enqueued: the daemon polled, the announcement proved nothing")
	}
	for _, id := range []string{"quiet", "loud"} {
		if got, want := statuses(db.taskLog("SequenceSum", id)), []int{1, 2, 3, 5}; !slices.Equal(got, want) {
			t.Errorf("%s: log statuses %v, want %v", id, got, want)
		}
	}

	p.signal(syscall.SIGINT)
	if code := p.wait(exitTimeout); code != 0 {
		t.Errorf("exit %d after SIGINT", code)
	}
}
