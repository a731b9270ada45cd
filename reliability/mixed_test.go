package reliability

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// refEvent is one JSON line of integration/refdaemon.py.
type refEvent struct {
	Event   string `json:"event"`
	ID      int64  `json:"id"`
	Status  int    `json:"status"`
	Error   string `json:"error"`
	Zombies int    `json:"zombies"`
}

func refEvents(p *proc) []refEvent {
	var out []refEvent
	for _, l := range p.Lines() {
		var e refEvent
		if json.Unmarshal([]byte(l), &e) == nil && e.Event != "" {
			out = append(out, e)
		}
	}
	return out
}

// TestMixedFleet runs atpd beside a Python daemon that follows the reference
// protocol (integration/refdaemon.py: dequeueTask, startTask, the handler,
// stopTaskSuccessIfNotFinished, and reenqueueZombieTasks every few pulls and
// on every empty poll) on one PostgreSQL queue, fed by a Django producer
// that backs off on QueueFull. The type's timeout is short (6 s) and one
// task in a hundred runs 2 s, so a daemon that held a task SCHEDULED or
// RUNNING past the timeout would have it stolen by the Python sweep. Each
// task runs exactly once, both daemons do a share, and the Python sweep
// re-enqueues nothing.
func TestMixedFleet(t *testing.T) {
	// The slack between the long tasks and atpd's deadline (timeout less a
	// tenth) absorbs a loaded machine's stalls: a task that crossed the
	// deadline would rightly run again, and this test wants none to.
	const (
		timeout  = 6
		longTask = 2.0
	)
	n := 2000
	if testing.Short() {
		n = 300
	}
	db := newDB(t, pgUTC)
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, timeout, 2)

	ref := startProc(t, "refdaemon", db.Dir, append(append([]string(nil), db.Env...), "RELIABILITY_LEDGER_TAG=ref"),
		db.Py, "refdaemon.py", "--sweep-every", "5", "--idle-sleep", "0.2")
	ref.WaitLine(`"event": "ready"`, time.Minute)
	a := db.startAtpd("atpd", "atpd", "-n", "2")

	begin := time.Now()
	prod := db.liveProducer()
	fullAnswers := 0
	for i := range n {
		sleep := 0.01
		if i%100 == 99 {
			sleep = longTask
		}
		input, _ := json.Marshal(map[string]any{"ledger": led.path, "sleep": sleep})
		ans, full := prod.enqueue(time.Minute, "Ledger", "m"+strconv.Itoa(i), "--json", string(input))
		if ans.Exit != 0 {
			t.Fatalf("enqueue m%d: exit %d: %s: %s", i, ans.Exit, ans.Error, ans.Message)
		}
		fullAnswers += full
	}
	db.waitTerminal(n, 10*time.Minute)
	elapsed := time.Since(begin)
	a.Stop(drainTimeout)
	ref.Stop(drainTimeout)

	lc := db.checkExactlyOnce(led, n)
	if lc.byTag["atpd"] == 0 || lc.byTag["ref"] == 0 {
		t.Errorf("tasks run by daemon: %v; want both to have run some", lc.byTag)
	}
	if lc.byTag["atpd"]+lc.byTag["ref"] != n {
		t.Errorf("tasks run by daemon: %v; want %d in all", lc.byTag, n)
	}
	var sweeps, zombies, errs int
	for _, e := range refEvents(ref) {
		switch e.Event {
		case "sweep":
			sweeps++
		case "zombie":
			zombies++
			t.Errorf("the Python sweep re-enqueued instance %d", e.ID)
		case "error":
			errs++
			t.Errorf("the Python daemon failed: %s", e.Error)
		}
	}
	if sweeps == 0 {
		t.Error("the Python daemon never swept: the test proved nothing about stealing")
	}
	if k := db.QueryInt(`SELECT count(*) FROM processes_logrecord WHERE message = ?`, djangodb.MsgZombieReenqueued); k != 0 {
		t.Errorf("%d log records say %q", k, djangodb.MsgZombieReenqueued)
	}
	t.Logf("FIGURES mixed: tasks=%d by_atpd=%d by_python=%d python_sweeps=%d zombies=%d queue_full_answers=%d elapsed=%s",
		n, lc.byTag["atpd"], lc.byTag["ref"], sweeps, zombies, fullAnswers, elapsed.Round(time.Millisecond))
}
