package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{ServerID: 1}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"minimal", func(c *Config) {}, ""},
		{"all set", func(c *Config) {
			*c = Config{ServerID: -5, Workers: 3, PollInterval: time.Second, SweepInterval: time.Minute, SweepEvery: 10,
				SweepIdleMin: time.Second, DeadlineMargin: time.Second, DrainTimeout: time.Second,
				StoreTimeout: time.Second, AbortTimeout: time.Second}
		}, ""},
		{"zero server id", func(c *Config) { c.ServerID = 0 }, "ServerID"},
		{"negative workers", func(c *Config) { c.Workers = -1 }, "Workers"},
		{"negative poll", func(c *Config) { c.PollInterval = -1 }, "PollInterval"},
		{"negative sweep interval", func(c *Config) { c.SweepInterval = -1 }, "SweepInterval"},
		{"negative sweep every", func(c *Config) { c.SweepEvery = -1 }, "SweepEvery"},
		{"negative idle sweep", func(c *Config) { c.SweepIdleMin = -1 }, "SweepIdleMin"},
		{"negative margin", func(c *Config) { c.DeadlineMargin = -1 }, "DeadlineMargin"},
		{"negative drain", func(c *Config) { c.DrainTimeout = -1 }, "DrainTimeout"},
		{"negative store timeout", func(c *Config) { c.StoreTimeout = -1 }, "StoreTimeout"},
		{"negative abort timeout", func(c *Config) { c.AbortTimeout = -1 }, "AbortTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field+" =") {
				t.Fatalf("Validate = %v, want ErrConfig naming %s", err, tt.field)
			}
			if _, err := New(nopStore{}, executor.NoHandler{}, c); !errors.Is(err, ErrConfig) {
				t.Errorf("New accepted the config: %v", err)
			}
		})
	}
}

// nopStore only satisfies New's nil check in TestConfigValidate; it is never
// called.
type nopStore struct{ djangodb.Store }

func TestDefaultMargin(t *testing.T) {
	tests := []struct {
		name              string
		cfg               Config
		timeout           time.Duration
		wantMargin, wantR time.Duration
	}{
		{"zero timeout: least margin and window", Config{}, 0, 100 * time.Millisecond, 100 * time.Millisecond},
		{"tiny timeout: window past the timeout", Config{}, 150 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		{"short timeout: half of it", Config{}, 500 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond},
		{"1 s floor", Config{}, 5 * time.Second, time.Second, 4 * time.Second},
		{"a tenth", Config{}, 60 * time.Second, 6 * time.Second, 54 * time.Second},
		{"10 s cap", Config{}, 3600 * time.Second, 10 * time.Second, 3590 * time.Second},
		{"configured", Config{DeadlineMargin: time.Second}, time.Hour, time.Second, time.Hour - time.Second},
		{"configured, capped at half", Config{DeadlineMargin: 10 * time.Second}, 4 * time.Second, 2 * time.Second, 2 * time.Second},
		{"configured, zero timeout", Config{DeadlineMargin: 10 * time.Second}, 0, 100 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, r := tt.cfg.margin(tt.timeout), tt.cfg.runWindow(tt.timeout)
			if m != tt.wantMargin || r != tt.wantR {
				t.Errorf("timeout %v: margin %v, run window %v; want %v, %v", tt.timeout, m, r, tt.wantMargin, tt.wantR)
			}
			if r <= 0 || m <= 0 {
				t.Errorf("timeout %v: margin %v, run window %v; both must be positive", tt.timeout, m, r)
			}
			if tt.timeout >= 2*minRunWindow && (r+m != tt.timeout || m > tt.timeout/2) {
				t.Errorf("timeout %v: run window %v + margin %v must make the timeout, margin at most half", tt.timeout, r, m)
			}
		})
	}
}

// TestZeroTimeout: a type timeout of 0 (the tracker allows it) still gives
// the handler a deadline ahead of it, and the task finishes.
func TestZeroTimeout(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		left := make(chan time.Duration, 1)
		handlers := funcs{"tests.now": func(ctx context.Context, task *executor.Task, _ executor.TaskStatus) error {
			dl, _ := ctx.Deadline()
			left <- time.Until(dl)
			return ctx.Err()
		}}
		register(t, store, djangodb.TypeSpec{Identifier: "Now", Handler: "tests.now", Timeout: 0})
		// A zero timeout makes every RUNNING task a zombie at once, so the
		// task is enqueued after the daemon's first sweep and no other
		// sweep comes: what is checked is the handler's own deadline.
		newDaemon(t, store, handlers, Config{Workers: 1, SweepInterval: time.Hour, SweepIdleMin: time.Hour})
		store.waitFor(t, "the first sweep", func() bool { return store.sweeps > 0 })
		id := enqueue(t, store, "Now", "n", pyInput(t, "None"))
		store.waitTerminal(t, id)
		if l := <-left; l <= 0 {
			t.Errorf("handler of a zero-timeout type started %v past its deadline", -l)
		}
		checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
	})
}

func TestServerID(t *testing.T) {
	tests := []struct {
		id   int64
		want string
	}{
		{0x504DD5AE614D562C, "0x504DD5AE614D562C"},
		{0x1234, "0x0000000000001234"},
		{-1, "0xFFFFFFFFFFFFFFFF"},
		{-0x7FFFFFFFFFFFFFFF - 1, "0x8000000000000000"},
	}
	for _, tt := range tests {
		if got := FormatServerID(tt.id); got != tt.want {
			t.Errorf("FormatServerID(%d) = %s, want %s", tt.id, got, tt.want)
		}
	}
	seen := map[int64]bool{}
	for range 1000 {
		id := NewServerID()
		if id == 0 || seen[id] {
			t.Fatalf("NewServerID gave %d (zero or repeated)", id)
		}
		seen[id] = true
	}
}

// TestHandlerOutcomes runs tasks whose handlers succeed, fail, panic, are
// missing or write their own statuses, one worker in queue order, so every
// later task shows the daemon survived the earlier ones.
func TestHandlerOutcomes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		handlers := funcs{
			"tests.raises": func(context.Context, *executor.Task, executor.TaskStatus) error { return errBoom },
			"tests.panics": func(context.Context, *executor.Task, executor.TaskStatus) error { panic("boom") },
			"tests.nul": func(context.Context, *executor.Task, executor.TaskStatus) error {
				return errors.New("bad\x00byte \xff")
			},
			"tests.sets": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
				for _, step := range []func() error{
					func() error { return ts.SetPaused(ctx, "p") },
					func() error { return ts.SetRunning(ctx, "r") },
					func() error { return ts.StoreResponse(ctx, []byte("<ok/>"), "text/xml") },
					func() error { return ts.SetSuccess(ctx, "done") },
				} {
					if err := step(); err != nil {
						return err
					}
				}
				info, err := ts.Info(ctx)
				if err != nil {
					return err
				}
				if typ, id := ts.Identifier(); info.Type != typ || info.Identifier != id || info.Status != djangodb.Finished {
					return fmt.Errorf("Info = %+v, Identifier = %s %s", info, typ, id)
				}
				return nil
			},
			"tests.fails_itself": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
				return ts.SetFailure(ctx, "bad")
			},
			"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil },
		}
		type want struct {
			handler string
			last    []rec
		}
		cases := []want{
			{"tests.raises", []rec{{djangodb.Failed, "missing ['k']"}}},
			{"tests.panics", []rec{{djangodb.Failed, "handler tests.panics panicked: boom"}}},
			{"tests.unknown", []rec{{djangodb.Failed, "test: no handler for tests.unknown"}}},
			{"tests.nul", []rec{{djangodb.Failed, "bad\uFFFDbyte \uFFFD"}}},
			{"tests.sets", []rec{{djangodb.Paused, "p"}, {djangodb.Running, "r"}, {djangodb.Finished, "done"}}},
			{"tests.fails_itself", []rec{{djangodb.Failed, "bad"}}},
			{"tests.ok", []rec{{djangodb.Finished, ""}}},
		}
		var ids []int64
		for i, c := range cases {
			typ := fmt.Sprintf("T%d", i)
			register(t, store, djangodb.TypeSpec{Identifier: typ, Handler: c.handler, Timeout: 60})
			ids = append(ids, enqueue(t, store, typ, "task", pyInput(t, "(1, 2)")))
		}
		d, logs := newDaemon(t, store, handlers, Config{Workers: 1})
		store.waitTerminal(t, ids...)
		for i, c := range cases {
			head := []rec{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}}
			checkLog(t, store, ids[i], append(head, c.last...)...)
		}
		resp, err := store.Response(ctxT(t), ids[4])
		if err != nil || string(resp.Data) != "<ok/>" || resp.MimeType != "text/xml" {
			t.Errorf("response of tests.sets = %q %q, %v", resp.Data, resp.MimeType, err)
		}
		d.Stop()
		st := d.Stats()
		if st.Started != 7 || st.Finished != 2 || st.Failed != 5 || st.Claimed != 7 || st.Busy != 0 {
			t.Errorf("stats %+v, want 7 started, 2 finished, 5 failed", st)
		}
		out := logs.String()
		for _, want := range []string{
			`msg="PROCESS: T6 task is running ..." worker=0 type=T6 identifier=task instance_id=`,
			`msg="PROCESS: T6 task is finished ..."`,
			`level=ERROR msg="PROCESS: T0 task failed: missing ['k']"`,
			`msg="PROCESS: handler panicked"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("daemon log lacks %q", want)
			}
		}
	})
}

// TestDeadline: a handler still running a margin before its type's timeout is
// cancelled and its task re-enqueued, then FAILED once maxstart starts are
// used up, each time before a zombie sweep could have taken it.
func TestDeadline(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		const timeout = 1.0
		margin := 300 * time.Millisecond
		errs := make(chan error, 10)
		deadlines := make(chan time.Duration, 10)
		handlers := funcs{"tests.slow": func(ctx context.Context, task *executor.Task, _ executor.TaskStatus) error {
			dl, _ := ctx.Deadline()
			deadlines <- time.Until(dl)
			<-ctx.Done()
			errs <- ctx.Err()
			return ctx.Err()
		}}
		register(t, store, djangodb.TypeSpec{Identifier: "Slow", Handler: "tests.slow", Timeout: timeout, MaxRestart: 1})
		id := enqueue(t, store, "Slow", "s1", pyInput(t, "None"))
		d, logs := newDaemon(t, store, handlers, Config{Workers: 2, DeadlineMargin: margin})
		store.waitStatus(t, id, djangodb.Failed)

		checkLog(t, store, id,
			rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Accepted, djangodb.MsgZombieReenqueued}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Failed, djangodb.MaxStartsMessage(2, 2)})
		full, err := store.Log(ctxT(t), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{2, 5} { // RUNNING, then the daemon's outcome
			held := full[i+1].Time.Sub(full[i].Time)
			if held >= time.Duration(timeout*float64(time.Second)) || held < time.Duration(timeout*float64(time.Second))-margin-50*time.Millisecond {
				t.Errorf("start at record %d held for %v; want cancel %v before the %vs timeout", i, held, margin, timeout)
			}
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("handler saw %v, want context.DeadlineExceeded", err)
			}
			if left := <-deadlines; left > time.Duration(timeout*float64(time.Second))-margin || left <= 0 {
				t.Errorf("handler's deadline was %v away, want at most %v", left, time.Duration(timeout*float64(time.Second))-margin)
			}
		}
		d.Stop()
		if st := d.Stats(); st.TimedOut != 2 || st.Reenqueued != 1 || st.Failed != 1 || st.Started != 2 {
			t.Errorf("stats %+v: want 2 timeouts, 1 re-enqueue, 1 failure", st)
		}
		if !strings.Contains(logs.String(), "timed out and was re-enqueued") {
			t.Errorf("no timeout line in the daemon log")
		}
	})
}

// TestDeadlineStubbornHandler: a handler that ignores cancellation is
// abandoned, the task still gets its outcome in time, and the handler's late
// writes are refused.
func TestDeadlineStubbornHandler(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		unblock := make(chan struct{})
		late := make(chan error, 1)
		handlers := funcs{"tests.stubborn": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			<-unblock
			late <- ts.SetSuccess(context.Background(), "too late")
			return nil
		}}
		register(t, store, djangodb.TypeSpec{Identifier: "Stubborn", Handler: "tests.stubborn", Timeout: 0.8})
		id := enqueue(t, store, "Stubborn", "s", pyInput(t, "1"))
		d, _ := newDaemon(t, store, handlers, Config{Workers: 1, DeadlineMargin: 400 * time.Millisecond})
		store.waitStatus(t, id, djangodb.Failed)
		close(unblock)
		if err := <-late; !errors.Is(err, ErrTaskReleased) {
			t.Errorf("late SetSuccess = %v, want ErrTaskReleased", err)
		}
		checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Failed, djangodb.MaxStartsMessage(1, 1)})
		d.Stop()
	})
}

// TestDeadlineMovesWithStatusWrites: status writes move timeUpdate, so they
// move the deadline too; a handler that reports progress is not cancelled.
func TestDeadlineMovesWithStatusWrites(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		handlers := funcs{"tests.ticks": func(ctx context.Context, _ *executor.Task, ts executor.TaskStatus) error {
			// Working for twice the 0.7 s budget, reporting every 0.25 s.
			for i := range 6 {
				select {
				case <-time.After(250 * time.Millisecond):
				case <-ctx.Done():
					return fmt.Errorf("cancelled at tick %d: %w", i, ctx.Err())
				}
				if err := ts.SetRunning(ctx, fmt.Sprint("tick ", i)); err != nil {
					return err
				}
			}
			return nil
		}}
		register(t, store, djangodb.TypeSpec{Identifier: "Ticks", Handler: "tests.ticks", Timeout: 1})
		id := enqueue(t, store, "Ticks", "t", pyInput(t, "1"))
		d, _ := newDaemon(t, store, handlers, Config{Workers: 1, DeadlineMargin: 300 * time.Millisecond})
		store.waitTerminal(t, id)
		want := []rec{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}}
		for i := range 6 {
			want = append(want, rec{djangodb.Running, fmt.Sprint("tick ", i)})
		}
		checkLog(t, store, id, append(want, rec{djangodb.Finished, ""})...)
		d.Stop()
	})
}

// TestStopDrains: Stop lets running handlers finish and leaves unclaimed
// tasks waiting.
func TestStopDrains(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		g := newGate()
		register(t, store, djangodb.TypeSpec{Identifier: "Hold", Handler: "tests.hold", Timeout: 60})
		var ids []int64
		for i := range 3 {
			ids = append(ids, enqueue(t, store, "Hold", fmt.Sprint("h", i), pyInput(t, "1")))
		}
		d, _ := newDaemon(t, store, funcs{"tests.hold": g.hold}, Config{Workers: 2})
		running := g.awaitStarts(t, 2)
		stopped := make(chan struct{})
		go func() { d.Stop(); close(stopped) }()
		<-d.stopping
		select {
		case <-stopped:
			t.Fatal("Stop returned while handlers were running")
		default:
		}
		close(g.release)
		<-stopped
		for _, id := range running {
			checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
		}
		checkLog(t, store, ids[2], rec{djangodb.Accepted, ""})
		noneInFlight(t, store)
	})
}

// TestShutdownWithClaimedTasks: tasks claimed (and so started) in the
// moment a shutdown comes run to their end on Stop, and go back to the
// queue untouched, with the reference's message, on Abort.
func TestShutdownWithClaimedTasks(t *testing.T) {
	for _, how := range []string{"Stop", "Abort"} {
		t.Run(how, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b backend) {
				dsn := b.make(t, b.cfg)
				store := watch(openStore(t, dsn, b.cfg, 0))
				claimed := make(chan struct{})
				proceed := make(chan struct{})
				var once sync.Once
				store.afterDequeue = func(ids []int64) {
					if len(ids) > 0 {
						once.Do(func() { close(claimed); <-proceed })
					}
				}
				register(t, store, djangodb.TypeSpec{Identifier: "T", Handler: "tests.ok", Timeout: 60})
				a := enqueue(t, store, "T", "a", pyInput(t, "1"))
				b2 := enqueue(t, store, "T", "b", pyInput(t, "1"))
				ran := atomic.Int32{}
				d, _ := newDaemon(t, store, funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error {
					ran.Add(1)
					return nil
				}}, Config{Workers: 2})
				<-claimed
				stopped := make(chan struct{})
				if how == "Stop" {
					go func() { d.Stop(); close(stopped) }()
					<-d.stopping
				} else {
					go func() { d.Abort(); close(stopped) }()
					<-d.aborting
				}
				close(proceed)
				<-stopped
				head := []rec{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}}
				end, runs, st := rec{djangodb.Finished, ""}, int32(2), Stats{Started: 2, Finished: 2}
				if how == "Abort" {
					end, runs, st = rec{djangodb.Accepted, djangodb.MsgShutdownReenqueue}, 0, Stats{Started: 2, Reenqueued: 2}
				}
				for _, id := range []int64{a, b2} {
					checkLog(t, store, id, append(head, end)...)
				}
				if ran.Load() != runs {
					t.Errorf("%d handlers ran, want %d", ran.Load(), runs)
				}
				if got := d.Stats(); got.Started != st.Started || got.Finished != st.Finished || got.Reenqueued != st.Reenqueued {
					t.Errorf("stats %+v, want %d started, %d finished, %d re-enqueued", got, st.Started, st.Finished, st.Reenqueued)
				}
				noneInFlight(t, store)
			})
		})
	}
}

// TestAbort: Abort cancels running handlers and re-enqueues their tasks at
// once; Stop does the same after DrainTimeout.
func TestAbort(t *testing.T) {
	for _, how := range []string{"Abort", "Stop with DrainTimeout"} {
		t.Run(how, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b backend) {
				dsn := b.make(t, b.cfg)
				store := watch(openStore(t, dsn, b.cfg, 0))
				g := newGate()
				register(t, store, djangodb.TypeSpec{Identifier: "Hold", Handler: "tests.hold", Timeout: 3600})
				for i := range 3 {
					enqueue(t, store, "Hold", fmt.Sprint("h", i), pyInput(t, "1"))
				}
				cfg := Config{Workers: 2}
				if how != "Abort" {
					cfg.DrainTimeout = 100 * time.Millisecond
				}
				d, _ := newDaemon(t, store, funcs{"tests.hold": g.hold}, cfg)
				running := g.awaitStarts(t, 2)
				if how == "Abort" {
					d.Abort()
				} else {
					d.Stop()
				}
				for _, id := range running {
					checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
						rec{djangodb.Accepted, djangodb.MsgShutdownReenqueue})
				}
				noneInFlight(t, store)
				if st := d.Stats(); st.Reenqueued != 2 || st.Failed != 0 || st.Busy != 0 {
					t.Errorf("stats %+v: want 2 re-enqueued", st)
				}
			})
		})
	}
}

// TestPoolBound: never more than Workers handlers at once, and the loop
// claims only for free workers, all of them in one Claim.
func TestPoolBound(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		const workers, tasks = 3, 12
		var inflight, maxInflight atomic.Int32
		var violations []string
		var vmu sync.Mutex
		store.beforeDequeue = func(limit int) {
			n := int(inflight.Load())
			if n+limit > workers || limit < 1 {
				vmu.Lock()
				violations = append(violations, fmt.Sprintf("Claim(limit %d) with %d handlers running", limit, n))
				vmu.Unlock()
			}
		}
		started := make(chan int64, tasks)
		tokens := make(chan struct{})
		handler := func(ctx context.Context, task *executor.Task, _ executor.TaskStatus) error {
			n := inflight.Add(1)
			for {
				m := maxInflight.Load()
				if n <= m || maxInflight.CompareAndSwap(m, n) {
					break
				}
			}
			started <- task.InstanceID
			defer inflight.Add(-1)
			select {
			case <-tokens:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		register(t, store, djangodb.TypeSpec{Identifier: "T", Handler: "tests.h", Timeout: 60})
		var ids []int64
		for i := range tasks {
			ids = append(ids, enqueue(t, store, "T", fmt.Sprint("t", i), pyInput(t, "1")))
		}
		d, _ := newDaemon(t, store, funcs{"tests.h": handler}, Config{Workers: workers})
		got := 0
		await := func() {
			select {
			case <-started:
				got++
			case <-time.After(waitLimit):
				t.Fatalf("only %d handlers started", got)
			}
		}
		for range workers {
			await()
		}
		for got < tasks {
			tokens <- struct{}{}
			await()
		}
		for range workers {
			tokens <- struct{}{}
		}
		store.waitTerminal(t, ids...)
		d.Stop()
		vmu.Lock()
		defer vmu.Unlock()
		for _, v := range violations {
			t.Error(v)
		}
		if m := maxInflight.Load(); m != workers {
			t.Errorf("at most %d handlers ran at once, want exactly %d", m, workers)
		}
		store.mu.Lock()
		first := store.dequeues[0]
		store.mu.Unlock()
		if first != workers {
			t.Errorf("first Claim asked for %d tasks, want %d (one claim for all free workers)", first, workers)
		}
	})
}

// TestSweep: the daemon re-enqueues a task a dead daemon left RUNNING once its
// timeout passed, runs it, and deletes it after its retention time.
func TestSweep(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		raw := openStore(t, dsn, b.cfg, 0)
		store := watch(raw)
		register(t, store, djangodb.TypeSpec{Identifier: "Z", Handler: "tests.ok", Timeout: 0.5, TimeRet: 0.5, MaxRestart: 2})
		id := enqueue(t, store, "Z", "zombie", pyInput(t, "[2.5]"))
		// A daemon that claims and starts the task, then dies.
		if _, err := djangodb.MustTrackerOf(raw).Dequeue(ctxT(t), 0x5678, 1, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := djangodb.MustTrackerOf(raw).Start(ctxT(t), id, ""); err != nil {
			t.Fatal(err)
		}
		d, logs := newDaemon(t, store, funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil }},
			Config{Workers: 1, SweepIdleMin: 20 * time.Millisecond})
		store.waitStatus(t, id, djangodb.Finished)
		checkLog(t, store, id, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Accepted, djangodb.MsgZombieReenqueued}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Finished, ""})
		store.waitFor(t, "retirement", func() bool { return store.deleted[id] })
		if _, err := raw.Instance(ctxT(t), id); !errors.Is(err, djangodb.ErrNotFound) {
			t.Errorf("retired instance still readable: %v", err)
		}
		d.Stop()
		out := logs.String()
		for _, want := range []string{
			fmt.Sprintf(`level=WARN msg="[MASTER] Task %d:Z::zombie renqueued after timeout!" type=Z identifier=zombie instance_id=%d`, id, id),
			fmt.Sprintf(`level=INFO msg="[MASTER] Task %d:Z::zombie deleted after expiration!"`, id),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("daemon log lacks %q", want)
			}
		}
		if st := d.Stats(); st.ZombiesReenqueued != 1 || st.Retired != 1 {
			t.Errorf("stats %+v: want 1 zombie, 1 retired", st)
		}
	})
}

// TestWake: an idle daemon polls again at once when woken.
func TestWake(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		store := watch(openStore(t, dsn, b.cfg, 0))
		register(t, store, djangodb.TypeSpec{Identifier: "T", Handler: "tests.ok", Timeout: 60})
		d, _ := newDaemon(t, store, funcs{"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil }},
			Config{Workers: 1, PollInterval: time.Hour})
		store.waitFor(t, "the first empty poll", func() bool { return len(store.dequeues) > 0 })
		id := enqueue(t, store, "T", "w", pyInput(t, "1"))
		d.Wake()
		store.waitStatus(t, id, djangodb.Finished)
		d.Stop()
	})
}

// flakyStore fails chosen writes a few times, as a dropped connection would.
type flakyStore struct {
	*watchStore
	mu       sync.Mutex
	failures map[string]int
	panics   map[string]int
}

func (f *flakyStore) trip(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics[op] > 0 {
		f.panics[op]--
		panic("store exploded in " + op)
	}
	if f.failures[op] > 0 {
		f.failures[op]--
		return errors.New("driver: bad connection")
	}
	return nil
}

func (f *flakyStore) Claim(ctx context.Context, sid int64, n int, m string) ([]djangodb.StartedTask, error) {
	if err := f.trip("Claim"); err != nil {
		return nil, err
	}
	return f.watchStore.Claim(ctx, sid, n, m)
}

func (f *flakyStore) Complete(ctx context.Context, cs []djangodb.Completion) ([]djangodb.CompletionResult, error) {
	if err := f.trip("Complete"); err != nil {
		return nil, err
	}
	return f.watchStore.Complete(ctx, cs)
}

// TestStoreErrors: failed store calls are retried and lose nothing; a panic
// in the task path fails only that task; an instance deleted mid-run is
// skipped.
func TestStoreErrors(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		dsn := b.make(t, b.cfg)
		ws := watch(openStore(t, dsn, b.cfg, 0))
		store := &flakyStore{watchStore: ws,
			failures: map[string]int{"Complete": 3, "Claim": 2},
			panics:   map[string]int{}}
		register(t, store, djangodb.TypeSpec{Identifier: "T", Handler: "tests.ok", Timeout: 60})
		register(t, store, djangodb.TypeSpec{Identifier: "Del", Handler: "tests.delete_self", Timeout: 60})
		handlers := funcs{
			"tests.ok": func(context.Context, *executor.Task, executor.TaskStatus) error { return nil },
			"tests.delete_self": func(ctx context.Context, task *executor.Task, _ executor.TaskStatus) error {
				return ws.Store.Delete(ctx, task.InstanceID) // a producer deleting it mid-run
			},
		}
		a := enqueue(t, store, "T", "a", pyInput(t, "1"))
		d, logs := newDaemon(t, store, handlers, Config{Workers: 1})
		ws.waitStatus(t, a, djangodb.Finished)
		checkLog(t, store, a, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""}, rec{djangodb.Finished, ""})
		if n := strings.Count(logs.String(), "store write failed; retrying"); n != 3 {
			t.Errorf("%d retried writes logged, want 3 (Complete)", n)
		}
		if n := strings.Count(logs.String(), "cannot pull tasks from the queue; retrying"); n != 2 {
			t.Errorf("%d failed claims logged, want 2", n)
		}

		del := enqueue(t, store, "Del", "gone", pyInput(t, "1"))
		ws.waitFor(t, "the self-deleting task", func() bool { return ws.deleted[del] })
		store.mu.Lock()
		store.panics["Complete"] = 1
		store.mu.Unlock()
		p := enqueue(t, store, "T", "panics", pyInput(t, "1"))
		after := enqueue(t, store, "T", "after", pyInput(t, "1"))
		ws.waitStatus(t, after, djangodb.Finished)
		// The panicking task's FAILED is written after the panic, by then
		// maybe behind the next task's outcome.
		ws.waitStatus(t, p, djangodb.Failed)
		if _, err := store.Instance(ctxT(t), del); !errors.Is(err, djangodb.ErrNotFound) {
			t.Errorf("deleted instance: %v", err)
		}
		if !strings.Contains(logs.String(), "Del gone was deleted while it ran") {
			t.Error("deletion mid-run not logged")
		}
		checkLog(t, store, p, rec{djangodb.Accepted, ""}, rec{djangodb.Scheduled, ""}, rec{djangodb.Running, ""},
			rec{djangodb.Failed, "atpd: internal error while running the task: store exploded in Complete"})
		d.Stop()
		noneInFlight(t, store)
	})
}

func TestStartStopMisuse(t *testing.T) {
	b := backends[1]
	dsn := b.make(t, b.cfg)
	store := openStore(t, dsn, b.cfg, 0)
	d, err := New(store, executor.NoHandler{}, Config{ServerID: 7})
	if err != nil {
		t.Fatal(err)
	}
	d.Stop() // before Start: nothing to drain
	awaitDone(t, d)
	if err := d.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop = %v, want ErrStopped", err)
	}
	d2, _ := newDaemon(t, store, executor.NoHandler{}, Config{})
	if err := d2.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d3, err := New(store, executor.NoHandler{}, Config{ServerID: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := d3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	awaitDone(t, d3) // cancelling Start's context aborts
	d2.Stop()
	d2.Abort() // idempotent after Stop
	awaitDone(t, d2)
}
