package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/daemon"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/testdb"
)

// hookStore runs a test's hook between a committed claim and the daemon
// receiving the claimed tasks: the moment a task is claimed (RUNNING, the
// daemon claims and starts in one transaction) and its handler not yet
// called, which no timing from outside can hit reliably.
type hookStore struct {
	djangodb.Store
	afterClaim func(ids []int64)
}

func (h *hookStore) Claim(ctx context.Context, serverID int64, limit int, message string) ([]djangodb.StartedTask, error) {
	sts, err := h.Store.Claim(ctx, serverID, limit, message)
	if err == nil && h.afterClaim != nil {
		var ids []int64
		for _, st := range sts {
			ids = append(ids, st.InstanceID)
		}
		h.afterClaim(ids)
	}
	return sts, err
}

// syncBuffer collects a daemon's log lines from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// records returns the JSON log records whose message contains msg.
func (s *syncBuffer) records(msg string) []logRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logRecord
	for _, line := range strings.Split(s.b.String(), "\n") {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil && strings.Contains(r.str("msg"), msg) {
			out = append(out, r)
		}
	}
	return out
}

// checkGone checks that a deleted instance left no row anywhere: no
// daemon write recreated a task, log, input or response row for it.
func (d *rdb) checkGone(id int64, what string) {
	d.t.Helper()
	for _, q := range []string{
		`SELECT count(*) FROM processes_instance WHERE id = ?`,
		`SELECT count(*) FROM processes_task WHERE instance_id = ?`,
		`SELECT count(*) FROM processes_logrecord WHERE instance_id = ?`,
		`SELECT count(*) FROM processes_input WHERE instance_id = ?`,
		`SELECT count(*) FROM processes_response WHERE instance_id = ?`,
	} {
		if n := d.QueryInt(q, id); n != 0 {
			d.t.Errorf("%s (instance %d) deleted, but %q finds %d rows", what, id, q, n)
		}
	}
}

// deleteTask deletes an instance as a Django producer does
// (deleteTaskByIdentifier) and checks that it existed.
func (d *rdb) deleteTask(typ, ident string) {
	d.t.Helper()
	var out struct{ Deleted bool }
	if err := json.Unmarshal(d.Batch([]string{"delete", typ, ident})[0], &out); err != nil || !out.Deleted {
		d.t.Fatalf("producer delete %s::%s: deleted=%t (%v)", typ, ident, out.Deleted, err)
	}
}

func (d *rdb) instanceID(typ, ident string) int64 {
	d.t.Helper()
	return int64(d.QueryInt(`SELECT i.id FROM processes_instance i JOIN processes_type t ON t.id = i.type_id
		WHERE t.identifier = ? AND i.identifier = ?`, typ, ident))
}

// TestProducerDeletes: a Django producer deletes tasks (deleteTaskByIdentifier)
// while they wait in the queue, between their claim and their start, and
// while their handler runs. The daemon never recreates a row of a deleted
// task, logs each deletion it meets with the task it concerns, and goes on
// with the next task. The daemon runs in-process so that a hook can act at
// the exact moment a task is SCHEDULED.
func TestProducerDeletes(t *testing.T) {
	for _, kind := range []dbKind{pgUTC, sqliteUTC} {
		t.Run(kind.name, func(t *testing.T) { testProducerDeletes(t, kind) })
	}
}

func testProducerDeletes(t *testing.T, kind dbKind) {
	db := newDB(t, kind)
	db.register("Block", "reliability.block", 60, 2)
	db.register("Plain", "reliability.plain", 60, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := djangodb.Open(ctx, db.DSN, testdb.Options(kind.cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var scheduled atomic.Int64
	store := &hookStore{Store: raw, afterClaim: func(ids []int64) {
		for _, id := range ids {
			if id == scheduled.Load() {
				db.deleteTask("Plain", "scheduled")
			}
		}
	}}

	started := make(chan int64, 1)
	release := make(chan struct{})
	var responseErr error
	handlers := gohandlers.NewRegistry()
	mustRegister(t, handlers, "reliability.block", func(ctx context.Context, ts executor.TaskStatus, _ any) error {
		_, ident := ts.Identifier()
		if ident == "running" {
			started <- 0
			<-release
		}
		responseErr = ts.StoreResponse(ctx, []byte("late"), "text/plain")
		return nil
	})
	mustRegister(t, handlers, "reliability.plain", func(ctx context.Context, ts executor.TaskStatus, _ any) error {
		return ts.StoreResponse(ctx, []byte("ok"), "text/plain")
	})
	input, err := pickle.Encode([]any{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	enqueue := func(typ, ident string) int64 {
		id, err := raw.Enqueue(ctx, typ, ident, input, "")
		if err != nil {
			t.Fatalf("enqueue %s::%s: %v", typ, ident, err)
		}
		return id
	}

	logs := &syncBuffer{}
	// SyncTaskWrites: the handler's StoreResponse commits before it
	// returns, so that the handler sees the deletion (held back, the write
	// would fail the task's outcome instead, which the daemon logs alike).
	d, err := daemon.New(store, handlers, daemon.Config{
		ServerID: daemon.NewServerID(), Workers: 1, PollInterval: 5 * time.Millisecond,
		SyncTaskWrites: true,
		Logger:         slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	running := enqueue("Block", "running")
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Abort()
	<-started

	// The only worker is busy: this task stays in the queue until deleted.
	queued := enqueue("Plain", "queued")
	db.deleteTask("Plain", "queued")
	db.deleteTask("Block", "running")
	close(release)

	scheduled.Store(enqueue("Plain", "scheduled"))
	after := enqueue("Plain", "after")
	waitFor(t, time.Minute, func() string { return "the task after the deletions to finish" }, func() bool {
		return db.QueryInt(`SELECT count(*) FROM processes_instance WHERE id = ? AND status = 5`, after) == 1
	})
	d.Stop()

	for what, id := range map[string]int64{"queued": queued, "running": running, "scheduled": scheduled.Load()} {
		db.checkGone(id, what)
	}
	if !errors.Is(responseErr, djangodb.ErrNotFound) {
		t.Errorf("the running handler's StoreResponse after the deletion returned %v, want ErrNotFound", responseErr)
	}
	recs := logs.records("was deleted while it ran")
	var named []string
	for _, r := range recs {
		named = append(named, r.str("type")+"::"+r.str("identifier"))
	}
	slices.Sort(named)
	if !slices.Equal(named, []string{"Block::running", "Plain::scheduled"}) {
		t.Errorf("deletions while running logged as %v, want one record each for Block::running and Plain::scheduled (deleted between its claim and its handler)", recs)
	}
	for _, r := range logs.records("") {
		if r.str("level") == "ERROR" {
			t.Errorf("error logged: %v", r)
		}
	}
	db.checkConsistent()
	want := []logEntry{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}, {djangodb.Finished, ""}}
	if got := db.logs()[after]; !slices.Equal(got, want) {
		t.Errorf("log of the task after the deletions %v, want %v", got, want)
	}
}

func mustRegister(t *testing.T, r *gohandlers.Registry, path string, h gohandlers.Handler) {
	t.Helper()
	if err := r.Register(path, h); err != nil {
		t.Fatal(err)
	}
}

// TestProducerDeletesRunningPythonTask: the same deletion under the real
// binary, while a CPython worker runs the handler: the handler's late
// storeResponse fails inside Python, the daemon logs that the task was
// deleted while it ran, writes nothing for it, and runs the next task.
func TestProducerDeletesRunningPythonTask(t *testing.T) {
	db := newDB(t, pgUTC)
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, 60, 2)
	gate := filepath.Join(t.TempDir(), "gate")
	db.bulkEnqueue("Ledger", "slow", 1, led.inputUntil(50, gate))
	id := db.instanceID("Ledger", "slow1")
	a := db.startAtpd("atpd", "atpd", "-n", "1")
	waitFor(t, time.Minute, func() string { return "the handler to write its ledger line" }, func() bool {
		return led.read().lines == 1
	})
	db.deleteTask("Ledger", "slow1")
	// The handler goes on (and stores its response) only now.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.WaitLine(`was deleted while it ran`, time.Minute)
	db.bulkEnqueue("Ledger", "next", 1, led.input(0))
	db.waitFinished(1, time.Minute)
	a.Stop(drainTimeout)

	db.checkGone(id, "slow1")
	recs := a.records()
	found := false
	for _, r := range recs {
		if strings.Contains(r.str("msg"), "was deleted while it ran") {
			found = r.str("type") == "Ledger" && r.str("identifier") == "slow1"
		}
	}
	if !found {
		t.Error("the deletion was not logged with the task's type and identifier")
	}
	if lc := led.read(); lc.lines != 2 || lc.byID[id] != 1 {
		t.Errorf("ledger %+v, want the deleted task and the next one once each", lc)
	}
	db.checkConsistent()
}
