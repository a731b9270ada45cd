package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// TestFrozenDaemon: two daemons, A and B, on one PostgreSQL queue of ledger
// tasks with a short type timeout. Again and again, as soon as A has
// started a task, A is frozen with SIGSTOP and left frozen until B's zombie
// sweep has taken that task from it (past the type timeout) and, by turns,
// until the task was re-enqueued, started again or finished; then A is
// woken with SIGCONT and finds its run gone. All the while every session of
// both daemons is killed with pg_terminate_backend every two seconds, the
// frozen daemon's included. A woken daemon's outcomes must be discarded by
// the run fence, never written over the run that replaced it.
//
// In the end every instance is FINISHED, with one response; its log
// records, in insertion order (by id), start with ACCEPTED, never follow a
// terminal record (FINISHED, FAILED) with anything but ACCEPTED, and end
// with the instance's status; no instance was started more than maxstart
// times, and the ledger never shows more executions of an instance than
// its log shows starts.
func TestFrozenDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("freezes a daemon past a type timeout several times: not in -short")
	}
	const (
		timeout   = 3   // seconds, the type's
		taskSleep = 0.5 // seconds each handler runs
		workers   = "2"
		// killEvery is the period of pg_terminate_backend rounds.
		killEvery = 2 * time.Second
		// freezeLimit bounds one freeze: B's sweep takes a frozen task
		// after the timeout (3 s) plus one sweep interval.
		freezeLimit = 30 * time.Second
		// runningLimit bounds waiting for A to start a task after it woke:
		// it reconnects first, with backoff, after lost sessions.
		runningLimit = 20 * time.Second
		// lowWater is how many tasks the chaos phase keeps waiting.
		lowWater = 4
	)
	n := size(150, 600)
	freezes := size(5, 12)
	// A freeze costs a task at most one start (A holds a task it started
	// before the freeze and cannot start another while frozen), so starts
	// are never used up by the freezes; one more is left for a run of B's
	// whose outcome a lost session kept from being written in time.
	maxrestart := freezes + 1
	maxstart := 1 + maxrestart

	db := newDB(t, pgUTC)
	led := newLedger(t)
	db.register("Frozen", ledgerHandler, timeout, maxrestart)
	// feed keeps a few tasks waiting, in batches, until n were enqueued.
	input := led.input(taskSleep)
	enqueued, batches := 0, 0
	feed := func() {
		if enqueued == n || db.QueryInt(`SELECT count(*) FROM processes_task WHERE lock = 0`) >= lowWater {
			return
		}
		k := min(lowWater, n-enqueued)
		batches++
		db.bulkEnqueue("Frozen", "b"+strconv.Itoa(batches)+"-", k, input)
		enqueued += k
	}
	feed()

	begin := time.Now()
	flags := []string{"-n", workers, "--sweep-interval", "200ms", "--http", "127.0.0.1:0"}
	a := db.startAtpd("atpd-A", "A", flags...)
	// Registered after the process's own clean-up, so it runs first: a
	// test that fails while A is frozen must not leave it stopped.
	t.Cleanup(func() { a.Cmd.Process.Signal(syscall.SIGCONT) })
	b := db.startAtpd("atpd-B", "B", flags...)

	killer := db.terminate(t, killEvery, "")

	// The freezes. Each waits for A to start a task X (and, every other
	// time, for X's handler to have begun, by the ledger), freezes A, and
	// wakes it when X was taken from it: mode 0 at the first record
	// another writer added to X (B's sweep re-enqueuing it), mode 1 once X
	// was started again, mode 2 once X ended. A re-enqueued task joins the
	// back of the queue, so the queue is kept short meanwhile (feed): B
	// reaches X in a second, not after the whole queue.
	chaosDeadline := time.Now().Add(90 * time.Second)
	mark := 0 // A's output lines already looked at
	var done, taken int
	for done < freezes && time.Now().Before(chaosDeadline) {
		if enqueued == n && db.QueryInt(`SELECT count(*) FROM processes_instance WHERE status NOT IN (5, 6)`) == 0 {
			break
		}
		var rec logRecord
		started := pollUntil(runningLimit, func() bool {
			feed()
			var ok bool
			rec, mark, ok = a.waitRecordAfter(mark, `is running`, 100*time.Millisecond)
			if !ok {
				return false
			}
			// A woken daemon may still log a run it claimed before its
			// freeze and lost meanwhile: only a current run will do.
			id, _ := rec["instance_id"].(float64)
			start, _ := rec["start"].(float64)
			return db.QueryInt(`SELECT count(*) FROM processes_instance WHERE id = ? AND status = 3`, int64(id)) == 1 &&
				db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE instance_id = ? AND status = 3`, int64(id)) == int(start)
		})
		if !started {
			t.Logf("freeze %d: A started no task within %v; %d instances not ended", done+1, runningLimit,
				db.QueryInt(`SELECT count(*) FROM processes_instance WHERE status NOT IN (5, 6)`))
			break
		}
		id, _ := rec["instance_id"].(float64)
		x := int64(id)
		inHandler := false
		if done%2 == 0 {
			// Its handler began (it sleeps half a second): its outcome
			// reaches A after A woke.
			inHandler = pollUntil(5*time.Second, func() bool { feed(); return led.ran(x, "A") })
		}
		maxID := db.QueryInt(`SELECT coalesce(max(id), 0) FROM processes_logrecord`)
		a.Signal(syscall.SIGSTOP)
		frozenAt := time.Now()
		mode := done % 3
		var after, runningAfter int
		var status djangodb.Status
		woken := pollUntil(freezeLimit, func() bool {
			feed()
			after = db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE instance_id = ? AND id > ?`, x, maxID)
			runningAfter = db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE instance_id = ? AND id > ? AND status = 3`, x, maxID)
			status = djangodb.Status(db.QueryInt(`SELECT status FROM processes_instance WHERE id = ?`, x))
			terminal := status == djangodb.Finished || status == djangodb.Failed
			switch mode {
			case 0:
				return after > 0 || terminal
			case 1:
				return runningAfter > 0 || terminal
			default:
				return terminal
			}
		})
		a.Signal(syscall.SIGCONT)
		frozen := time.Since(frozenAt)
		mark = len(a.Lines())
		done++
		swept := db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE instance_id = ? AND id > ? AND status = 1 AND message = ?`,
			x, maxID, djangodb.MsgZombieReenqueued)
		if swept > 0 {
			taken++
		}
		t.Logf("freeze %d (mode %d, in handler %t): instance %d (start %v) frozen %s; after it: %d records, %d starts, status %s, swept %d",
			done, mode, inHandler, x, rec["start"], frozen.Round(time.Millisecond), after, runningAfter, status, swept)
		if !woken {
			t.Errorf("instance %d, started by A, was not taken over within %v while A was frozen (stuck task); its log: %s",
				x, freezeLimit, formatLog(db.logByID(x)))
			describeInstance(t, x, a, b)
		}
	}
	if rest := n - enqueued; rest > 0 {
		db.bulkEnqueue("Frozen", "rest-", rest, input)
		enqueued = n
	}
	chaosEnd := time.Since(begin)

	db.waitTerminal(n, 3*time.Minute)
	killer.stop()
	elapsed := time.Since(begin)
	discardedA, discardedB := a.metricSum("atpd_outcomes_discarded_total"), b.metricSum("atpd_outcomes_discarded_total")
	a.Stop(drainTimeout)
	b.Stop(drainTimeout)

	// (1) Every instance FINISHED, each with its response.
	counts := db.statusCounts()
	if counts[djangodb.Finished] != n || len(counts) != 1 {
		t.Errorf("instances by status %v, want all %d FINISHED", counts, n)
	}
	if r := db.QueryInt(`SELECT count(*) FROM processes_response`); r != n {
		t.Errorf("%d responses, want %d", r, n)
	}

	// (2) and (3): every log a legal ATP sequence, starts within maxstart,
	// executions within starts.
	logs := db.logsByID()
	statuses := db.instanceStatuses()
	lc := led.read()
	byTag := ledgerByTag(t, led)
	var reran, maxStarts, bad int
	for id, s := range statuses {
		recs := logs[id]
		problem := atpSequenceProblem(recs, s)
		starts := countStarts(recs)
		maxStarts = max(maxStarts, starts)
		if starts > 1 {
			reran++
		}
		runs := lc.byID[id]
		switch {
		case problem != "":
		case starts > maxstart:
			problem = fmt.Sprintf("started %d times, more than maxstart %d", starts, maxstart)
		case runs > starts:
			problem = fmt.Sprintf("ran %d times (%v) but was started %d times", runs, byTag[id], starts)
		case s == djangodb.Finished && runs == 0:
			problem = "FINISHED without its handler running"
		}
		if problem == "" {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("instance %d (%s): %s; its log by id: %s; executions by daemon: %v", id, s, problem, formatLog(recs), byTag[id])
			describeInstance(t, id, a, b)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d instances broke the ATP rules", bad, n)
	}
	db.checkConsistent()

	// The faults must have been injected for the run to prove anything.
	if done < 2 || taken == 0 {
		t.Errorf("%d freezes, %d tasks taken from the frozen daemon by a sweep: the fault was not injected", done, taken)
	}
	if killer.killed.Load() == 0 {
		t.Error("no daemon session was terminated: the fault was not injected")
	}
	if lc.byTag["A"] == 0 || lc.byTag["B"] == 0 {
		t.Errorf("executions by daemon %v: want both to have run tasks", lc.byTag)
	}
	// A fenced completion (the handler's outcome) logs "outcome
	// discarded", a fenced Release (a cancelled run's re-enqueue) "no
	// longer ours"; the metric counts both.
	fenced := a.countRecords(`outcome discarded`) + b.countRecords(`outcome discarded`)
	released := a.countRecords(`no longer ours`) + b.countRecords(`no longer ours`)
	notWritten := a.countRecords(`outcome not written`) + b.countRecords(`outcome not written`)
	sweptAll := db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE message = ?`, djangodb.MsgZombieReenqueued)
	t.Logf("FIGURES frozen: tasks=%d freezes=%d taken_while_frozen=%d reran=%d max_starts=%d maxstart=%d zombie_reenqueues=%d executions=%d (A=%d B=%d) "+
		"discarded_metric=%g (A=%g B=%g) discarded_logged=%d+%d (outcome, release) outcome_not_written=%d kill_rounds=%d sessions_terminated=%d chaos=%s elapsed=%s",
		n, done, taken, reran, maxStarts, maxstart, sweptAll, lc.lines, lc.byTag["A"], lc.byTag["B"],
		discardedA+discardedB, discardedA, discardedB, fenced, released, notWritten, killer.rounds.Load(), killer.killed.Load(),
		chaosEnd.Round(time.Millisecond), elapsed.Round(time.Millisecond))
}

// pollUntil polls cond every 50 ms until it holds (true) or timeout passes
// (false): for conditions whose failure the caller reports itself.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// waitRecordAfter waits for a JSON log record, among the output lines from
// index mark on, whose message matches re. It returns the record and the
// index of the line after it; ok is false when none came within timeout
// or the process exited.
func (p *proc) waitRecordAfter(mark int, re string, timeout time.Duration) (rec logRecord, next int, ok bool) {
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		lines, changed := p.Out.Snapshot()
		for i := mark; i < len(lines); i++ {
			var r logRecord
			if parsed := parseRecord(lines[i], &r); parsed && rx.MatchString(r.str("msg")) {
				return r, i + 1, true
			}
		}
		mark = max(mark, len(lines))
		select {
		case <-changed:
		case <-deadline.C:
			return nil, mark, false
		}
	}
}

// metricSum scrapes the daemon's /metrics (it runs with --http) and sums
// every sample of the metric name.
func (p *proc) metricSum(name string) float64 {
	p.T.Helper()
	line := p.WaitLine(`serving the task pages`, time.Minute)
	var r logRecord
	parseRecord(line, &r)
	addr := r.str("http_addr")
	if addr == "" {
		p.T.Fatalf("%s: no http_addr in %q", p.Name, line)
	}
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		p.T.Fatalf("%s: /metrics: %v", p.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		p.T.Fatalf("%s: /metrics: %d %v", p.Name, resp.StatusCode, err)
	}
	var sum float64
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			p.T.Fatalf("%s: metric line %q: %v", p.Name, l, err)
		}
		sum += v
	}
	return sum
}

// logRow is one processes_logrecord row.
type logRow struct {
	ID      int64
	Status  djangodb.Status
	Message string
}

// logsByID returns every instance's log records in insertion order (by id).
func (d *rdb) logsByID() map[int64][]logRow {
	d.t.Helper()
	return d.queryLogs(`SELECT instance_id, id, status, message FROM processes_logrecord ORDER BY id`)
}

// logByID returns one instance's log records by id.
func (d *rdb) logByID(instance int64) []logRow {
	d.t.Helper()
	return d.queryLogs(`SELECT instance_id, id, status, message FROM processes_logrecord WHERE instance_id = ? ORDER BY id`, instance)[instance]
}

func (d *rdb) queryLogs(q string, args ...any) map[int64][]logRow {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := d.SQL.QueryContext(ctx, d.Rebind(q), args...)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]logRow{}
	for rows.Next() {
		var inst int64
		var r logRow
		if err := rows.Scan(&inst, &r.ID, &r.Status, &r.Message); err != nil {
			d.t.Fatal(err)
		}
		out[inst] = append(out[inst], r)
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// atpSequenceProblem says what makes recs, an instance's log in insertion
// order, no legal ATP sequence for an instance of status s ("" when it is
// one): the first record ACCEPTED, nothing but ACCEPTED after a terminal
// record, the status that of the last record.
func atpSequenceProblem(recs []logRow, s djangodb.Status) string {
	if len(recs) == 0 {
		return "no log records"
	}
	if recs[0].Status != djangodb.Accepted {
		return "the first record is not ACCEPTED"
	}
	for i := 1; i < len(recs); i++ {
		prev := recs[i-1].Status
		if (prev == djangodb.Finished || prev == djangodb.Failed) && recs[i].Status != djangodb.Accepted {
			return fmt.Sprintf("record %d (%s) follows the terminal record %d (%s)", recs[i].ID, recs[i].Status, recs[i-1].ID, prev)
		}
	}
	if last := recs[len(recs)-1]; last.Status != s {
		return fmt.Sprintf("the status is %s but the last record %d is %s", s, last.ID, last.Status)
	}
	return ""
}

// countStarts counts the starts in a log: RUNNING records right after a
// SCHEDULED one.
func countStarts(recs []logRow) int {
	n := 0
	for i := 1; i < len(recs); i++ {
		if recs[i].Status == djangodb.Running && recs[i-1].Status == djangodb.Scheduled {
			n++
		}
	}
	return n
}

func formatLog(recs []logRow) string {
	parts := make([]string, len(recs))
	for i, r := range recs {
		parts[i] = fmt.Sprintf("#%d %s %q", r.ID, r.Status, r.Message)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ledgerByTag is the ledger's executions of each instance, by daemon tag.
func ledgerByTag(t *testing.T, l *ledger) map[int64]map[string]int {
	t.Helper()
	out := map[int64]map[string]int{}
	for _, line := range l.lines() {
		f := strings.Fields(line)
		id, _ := strconv.ParseInt(f[0], 10, 64)
		if out[id] == nil {
			out[id] = map[string]int{}
		}
		out[id][f[1]]++
	}
	return out
}

// describeInstance logs the daemons' log records about instance id, the
// evidence to go with a broken log.
func describeInstance(t *testing.T, id int64, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		var lines []string
		for _, l := range p.Lines() {
			var r logRecord
			if parseRecord(l, &r) {
				if v, ok := r["instance_id"].(float64); ok && int64(v) == id {
					lines = append(lines, l)
				}
			}
		}
		t.Logf("%s on instance %d (%d lines):\n%s", p.Name, id, len(lines), strings.Join(lines, "\n"))
	}
}

// parseRecord parses one JSON log line of atpd into r.
func parseRecord(line string, r *logRecord) bool {
	return strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), r) == nil
}

// ran reports whether the ledger shows an execution of instance id by the
// daemon tagged tag.
func (l *ledger) ran(id int64, tag string) bool {
	prefix := fmt.Sprintf("%d %s ", id, tag)
	return slices.ContainsFunc(l.lines(), func(line string) bool { return strings.HasPrefix(line, prefix) })
}

// lines returns the ledger's lines (read checks their form).
func (l *ledger) lines() []string {
	l.t.Helper()
	b, err := os.ReadFile(l.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// TestATPSequenceRules checks the checker TestFrozenDaemon applies to
// every log.
func TestATPSequenceRules(t *testing.T) {
	const (
		acc = djangodb.Accepted
		sch = djangodb.Scheduled
		run = djangodb.Running
		fin = djangodb.Finished
		fai = djangodb.Failed
	)
	cases := []struct {
		log    []djangodb.Status
		status djangodb.Status
		legal  bool
		starts int
	}{
		{[]djangodb.Status{acc, sch, run, fin}, fin, true, 1},
		{[]djangodb.Status{acc, sch, run, acc, sch, run, fin}, fin, true, 2},
		{[]djangodb.Status{acc, sch, run, fai, acc, sch, run, fin}, fin, true, 2},
		{[]djangodb.Status{acc, sch, run, fin, run}, run, false, 1},
		{[]djangodb.Status{acc, sch, run, fin, fin}, fin, false, 1},
		{[]djangodb.Status{acc, sch, run, fai, fin}, fin, false, 1},
		{[]djangodb.Status{acc, sch, run, fin}, run, false, 1},
		{[]djangodb.Status{sch, run, fin}, fin, false, 1},
		{nil, acc, false, 0},
	}
	for _, c := range cases {
		recs := make([]logRow, len(c.log))
		for i, s := range c.log {
			recs[i] = logRow{ID: int64(i + 1), Status: s}
		}
		if p := atpSequenceProblem(recs, c.status); (p == "") != c.legal {
			t.Errorf("%v with status %s: problem %q, want legal %t", c.log, c.status, p, c.legal)
		}
		if n := countStarts(recs); n != c.starts {
			t.Errorf("%v: %d starts, want %d", c.log, n, c.starts)
		}
	}
}
