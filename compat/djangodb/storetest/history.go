package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/history"
	"github.com/eoxserver/atpd/internal/testdb"
)

// Step is one call of a scripted instance's history, at an offset from
// the instance's enqueue, as the reference daemon and its handler made it.
// Op is start (dequeue and startTask), timeout (the zombie sweep's
// re-enqueue, MsgZombieReenqueued), shutdown (a shutdown's re-enqueue,
// MsgShutdownReenqueue), reenqueue (a producer's), running (the handler's
// setRunning), finish or fail.
type Step struct {
	At time.Duration
	Op string
}

// Scripted is one instance's history, for tests that need a log with
// timeouts in it (history.Read, atpd check).
type Scripted struct {
	Type, Identifier string
	Steps            []Step
}

// ScriptClock is the clock (djangodb.Options.Clock) of the store a
// script plays on.
type ScriptClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *ScriptClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set makes t the clock's time.
func (c *ScriptClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Play enqueues the instance at base and makes the calls of its steps at
// base + At, on st, whose clock is clock, and returns the instance's id.
// No other task may wait in the queue meanwhile.
func (s Scripted) Play(t testing.TB, ctx context.Context, st djangodb.Tracker, clock *ScriptClock, base time.Time) int64 {
	t.Helper()
	clock.Set(base)
	id, err := st.Enqueue(ctx, s.Type, s.Identifier, input(s.Identifier), "")
	if err != nil {
		t.Fatalf("enqueue %s::%s: %v", s.Type, s.Identifier, err)
	}
	for _, step := range s.Steps {
		clock.Set(base.Add(step.At))
		what := fmt.Sprintf("%s::%s at +%v: %s", s.Type, s.Identifier, step.At, step.Op)
		switch step.Op {
		case "start":
			if got, err := st.Dequeue(ctx, 0x1234, 1, ""); err != nil || !slices.Equal(got, []int64{id}) {
				t.Fatalf("%s: dequeue = %v, %v; want [%d]", what, got, err, id)
			}
			_, err = st.Start(ctx, id, "")
		case "timeout":
			err = st.Reenqueue(ctx, id, djangodb.MsgZombieReenqueued)
		case "shutdown":
			err = st.Reenqueue(ctx, id, djangodb.MsgShutdownReenqueue)
		case "reenqueue":
			err = st.Reenqueue(ctx, id, "")
		case "running":
			err = st.SetStatus(ctx, id, djangodb.Running, "progress")
		case "finish":
			err = st.SetStatus(ctx, id, djangodb.Finished, "")
		case "fail":
			err = st.SetStatus(ctx, id, djangodb.Failed, "boom")
		default:
			t.Fatalf("%s: unknown step", what)
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	return id
}

// testHistory: history.Read reads a history with timeouts as the
// reference daemon left it, on tables Django made: run times (from the
// first start, without status writes), the sweep's re-enqueues, instances
// that finished only after one, and instances started more often than
// maxstart.
func testHistory(t *testing.T, e *env) {
	e.register("Slow", 60, -1, 2)   // maxstart 3
	e.register("Chatty", 60, -1, 2) // reports progress: never quiet for a minute
	e.register("Fast", 3600, -1, 2) // well within its timeout
	e.register("Retry", 60, -1, 0)  // maxstart 1
	e.register("Unused", 10, -1, 0) // no instances
	clock := &ScriptClock{}
	opts := testdb.Options(e.c)
	opts.Clock = clock
	st := e.open(opts)
	const s = time.Second
	script := []Scripted{
		// Timed out, re-enqueued and started again beside the first run,
		// which then finished: 100 s from the first start.
		{"Slow", "late", []Step{{1 * s, "start"}, {70 * s, "timeout"}, {72 * s, "start"}, {101 * s, "finish"}}},
		{"Slow", "ok", []Step{{1 * s, "start"}, {31 * s, "finish"}}},
		// Four starts with maxstart 3, the reference daemon never failed
		// it for that; the handler did in the end.
		{"Slow", "many", []Step{{1 * s, "start"}, {70 * s, "timeout"}, {71 * s, "start"}, {140 * s, "timeout"},
			{141 * s, "start"}, {210 * s, "timeout"}, {211 * s, "start"}, {241 * s, "fail"}}},
		// 190 s in all, but at most 50 s without a status write.
		{"Chatty", "progress", []Step{{1 * s, "start"}, {51 * s, "running"}, {101 * s, "running"}, {151 * s, "running"}, {191 * s, "finish"}}},
		{"Fast", "a", []Step{{1 * s, "start"}, {3 * s, "finish"}}},
		// A shutdown's re-enqueue: that start does not count, nor its run.
		{"Fast", "b", []Step{{1 * s, "start"}, {500 * s, "shutdown"}, {501 * s, "start"}, {506 * s, "fail"}}},
		// Still running: no run has ended.
		{"Fast", "c", []Step{{1 * s, "start"}}},
		// Finished in its second start, beyond maxstart 1.
		{"Retry", "again", []Step{{1 * s, "start"}, {70 * s, "timeout"}, {72 * s, "start"}, {80 * s, "finish"}}},
		// Run again by its producer: two starts, but no timeout with the
		// starts used up, which is all atpd's maxstart acts on.
		{"Retry", "rerun", []Step{{1 * s, "start"}, {3 * s, "finish"}, {10 * s, "reenqueue"}, {11 * s, "start"}, {13 * s, "finish"}}},
	}
	base := time.Date(2031, 3, 30, 0, 0, 0, 0, time.UTC) // the night Vienna's clocks go forward
	ids := map[string]int64{}
	for i, sc := range script {
		ids[sc.Type+"::"+sc.Identifier] = sc.Play(t, e.ctx, st, clock, base.Add(time.Duration(i)*time.Hour/4))
	}
	ref := func(name string) djangodb.InstanceRef {
		typ, ident, _ := strings.Cut(name, "::")
		return djangodb.InstanceRef{ID: ids[name], Type: typ, Identifier: ident}
	}

	got, err := history.Read(e.ctx, e.store)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	type summary struct {
		Type                                        string
		Instances                                   int
		RunTimes                                    []time.Duration
		Longest                                     djangodb.InstanceRef
		TimeoutReenqueues, Reenqueued, FinishedLate int
		FinishedLateRefs                            []djangodb.InstanceRef
		OverMaxStart                                int
		OverMaxStartRefs                            []history.StartCount
		OverMaxStartFinished, MostStarts            int
	}
	want := []summary{
		{Type: "Slow", Instances: 3, RunTimes: []time.Duration{30 * s, 100 * s, 240 * s}, Longest: ref("Slow::many"),
			TimeoutReenqueues: 4, Reenqueued: 2, FinishedLate: 1, FinishedLateRefs: []djangodb.InstanceRef{ref("Slow::late")},
			OverMaxStart: 1, OverMaxStartRefs: []history.StartCount{{InstanceRef: ref("Slow::many"), Starts: 4, Status: djangodb.Failed}}, MostStarts: 4},
		{Type: "Chatty", Instances: 1, RunTimes: []time.Duration{50 * s}, Longest: ref("Chatty::progress"), MostStarts: 1},
		{Type: "Fast", Instances: 3, RunTimes: []time.Duration{2 * s, 5 * s}, Longest: ref("Fast::b"), MostStarts: 1},
		{Type: "Retry", Instances: 2, RunTimes: []time.Duration{2 * s, 2 * s, 79 * s}, Longest: ref("Retry::again"),
			TimeoutReenqueues: 1, Reenqueued: 1, FinishedLate: 1, FinishedLateRefs: []djangodb.InstanceRef{ref("Retry::again")},
			OverMaxStart: 1, OverMaxStartRefs: []history.StartCount{{InstanceRef: ref("Retry::again"), Starts: 2, Status: djangodb.Finished}},
			OverMaxStartFinished: 1, MostStarts: 2},
		{Type: "Unused"},
	}
	if len(got) != len(want) {
		t.Fatalf("history has %d types, want %d: %+v", len(got), len(want), got)
	}
	for i, h := range got {
		// Each write is a tick (a microsecond) after the clock at most.
		runs := make([]time.Duration, len(h.RunTimes))
		for j, d := range h.RunTimes {
			runs[j] = d.Round(time.Second)
		}
		sum := summary{h.Type.Identifier, h.Instances, runs, h.Longest, h.TimeoutReenqueues, h.Reenqueued, h.FinishedLate,
			h.FinishedLateRefs, h.OverMaxStart, h.OverMaxStartRefs, h.OverMaxStartFinished, h.MostStarts}
		if fmt.Sprintf("%+v", sum) != fmt.Sprintf("%+v", want[i]) {
			t.Errorf("history of %s:\n got %+v\nwant %+v", h.Type.Identifier, sum, want[i])
		}
	}
	slow := got[0]
	if p99, longest := slow.RunPercentile(99).Round(s), slow.LongestRun().Round(s); p99 != 240*s || longest != 240*s {
		t.Errorf("Slow: p99 %v, longest %v; want 4m0s both", p99, longest)
	}
	if p50 := slow.RunPercentile(50).Round(s); p50 != 100*s {
		t.Errorf("Slow: p50 %v, want 1m40s", p50)
	}
}

// testMigrations: the migrations Django applied are read back, all those
// atpd knows of.
func testMigrations(t *testing.T, e *env) {
	got, err := djangodb.Migrations(e.ctx, e.store)
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if want := djangodb.ExpectedMigrations(); !slices.Equal(got, want) {
		t.Errorf("migrations %v, want %v", got, want)
	}
}
