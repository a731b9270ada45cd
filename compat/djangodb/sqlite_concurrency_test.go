package djangodb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// sqliteProducer is integration/producer.py in batch mode: one Python
// process running tracker.py calls, one JSON line in and out each.
type sqliteProducer struct{ *e2e.LiveProducer }

type sqliteProducerReply = e2e.Answer

func startSQLiteProducer(t testing.TB, path string, c testdb.Config) *sqliteProducer {
	t.Helper()
	p := e2e.NewProducer(t, "sqlite:"+path, c)
	p.Buffer = 1 << 24
	return &sqliteProducer{p.Live()}
}

func (p *sqliteProducer) call(args ...any) (sqliteProducerReply, error) { return p.Send(args) }

// TestSQLiteConcurrentDjangoProducer lets a Django producer enqueue into the
// file as fast as it can while the store claims, starts, answers and
// finishes tasks, for about five seconds, with the default busy timeout on
// both sides (the store's 5 s, Python sqlite3's 5 s). Neither side may see
// "database is locked", every accepted task must end FINISHED with the
// tracker's four log records, and Django must read what the store wrote.
// TestSQLiteConcurrentDjangoProducer runs a Django producer and the store
// on one file at once, with the store's single-task methods and with the
// batch methods the daemon uses.
func TestSQLiteConcurrentDjangoProducer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for ten seconds")
	}
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%t", batch), func(t *testing.T) { testSQLiteConcurrentDjangoProducer(t, batch) })
	}
}

func testSQLiteConcurrentDjangoProducer(t *testing.T, batch bool) {
	// Run for runFor and at least until minTasks went through, so that a
	// loaded machine still exercises the overlap; give up after maxRun.
	const (
		runFor   = 5 * time.Second
		minTasks = 100
		maxRun   = 2 * time.Minute
	)
	c := sqliteVienna
	path := djangodb.SQLitePath(testdb.SQLite(t, c))
	s := openSQLiteStore(t, path, testdb.Options(c))
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "C", Handler: "tools.atp_demo.handler"})
	prod := startSQLiteProducer(t, path, c)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu       sync.Mutex
		accepted []string // identifiers the producer enqueued
		full     int      // QueueFull replies
		done     = map[int64]bool{}
		slowest  time.Duration // longest single store call
	)
	enqueued := make(chan struct{}, 1) // producer -> store: a task waits
	dequeued := make(chan struct{}, 1) // store -> producer: the queue has room
	producerDone := make(chan error, 1)

	go func() {
		start := time.Now()
		deadline, giveUp := start.Add(runFor), start.Add(maxRun)
		more := func() bool {
			mu.Lock()
			defer mu.Unlock()
			return time.Now().Before(deadline) || (len(accepted) < minTasks && time.Now().Before(giveUp))
		}
		var err error
		defer func() { producerDone <- err; close(enqueued) }()
		for i := 0; more(); i++ {
			ident := fmt.Sprintf("c%05d", i)
			var r sqliteProducerReply
			if r, err = prod.call("enqueue", "C", ident, "--json", fmt.Sprintf("[%d, 1.5]", i)); err != nil {
				return
			}
			switch r.Exit {
			case 0:
				mu.Lock()
				accepted = append(accepted, ident)
				mu.Unlock()
				select {
				case enqueued <- struct{}{}:
				default:
				}
			case 3: // QueueFull: the queue is the limit, not an error
				mu.Lock()
				full++
				mu.Unlock()
				// Wait for the store to make room.
				select {
				case <-dequeued:
				case <-time.After(time.Until(giveUp)):
				}
			default:
				err = fmt.Errorf("producer enqueue %s: exit %d %s: %s", ident, r.Exit, r.Error, r.Message)
				return
			}
		}
	}()

	timed := func(f func() error) error {
		start := time.Now()
		err := f()
		if d := time.Since(start); d > 0 {
			mu.Lock()
			slowest = max(slowest, d)
			mu.Unlock()
		}
		return err
	}
	work := func() error {
		producing := true
		for {
			var ids []int64
			var sts []djangodb.StartedTask
			err := timed(func() (err error) {
				if batch {
					sts, err = s.Claim(ctx, 0x5A5A, 8, "")
					return err
				}
				ids, err = s.Dequeue(ctx, 0x5A5A, 8, "")
				return err
			})
			if errors.Is(err, djangodb.ErrQueueEmpty) {
				if !producing {
					return nil
				}
				// Wait for the producer's next enqueue (or its end).
				if _, ok := <-enqueued; !ok {
					producing = false
				}
				continue
			} else if err != nil {
				return err
			}
			select {
			case dequeued <- struct{}{}:
			default:
			}
			if batch {
				var cs []djangodb.Completion
				for _, st := range sts {
					if !st.HasInput || st.Starts != 1 {
						return fmt.Errorf("claim of %d = %+v, want input and one start", st.InstanceID, st)
					}
					cs = append(cs, djangodb.Completion{InstanceID: st.InstanceID, Starts: st.Starts, Outcome: djangodb.OutcomeFinish,
						Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("r"+st.Identifier), "text/plain")}})
				}
				var res []djangodb.CompletionResult
				if err := timed(func() (err error) { res, err = s.Complete(ctx, cs); return err }); err != nil {
					return err
				}
				mu.Lock()
				for _, r := range res {
					if r.Err != nil || !r.Wrote {
						mu.Unlock()
						return fmt.Errorf("completion %+v", r)
					}
					done[r.InstanceID] = true
				}
				mu.Unlock()
				continue
			}
			for _, id := range ids {
				var st djangodb.StartedTask
				if err := timed(func() (err error) { st, err = s.Start(ctx, id, ""); return err }); err != nil {
					return err
				}
				if !st.HasInput || st.Starts != 1 {
					return fmt.Errorf("start of %d = %+v, want input and one start", id, st)
				}
				if err := timed(func() error { return s.SetResponse(ctx, id, []byte("r"+st.Identifier), "text/plain") }); err != nil {
					return err
				}
				if err := timed(func() error { _, err := s.FinishIfNotFinished(ctx, id, ""); return err }); err != nil {
					return err
				}
				mu.Lock()
				done[id] = true
				mu.Unlock()
			}
		}
	}
	began := time.Now()
	if err := work(); err != nil {
		t.Fatalf("store side: %v", err)
	}
	if err := <-producerDone; err != nil {
		t.Fatalf("producer side: %v", err)
	}

	elapsed := time.Since(began)
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) < minTasks {
		t.Fatalf("the producer enqueued only %d tasks in %v; the run proves little", len(accepted), maxRun)
	}
	if len(done) != len(accepted) {
		t.Errorf("finished %d tasks, the producer enqueued %d", len(done), len(accepted))
	}
	t.Logf("%d tasks enqueued by Django and finished by the store in %v (%d QueueFull replies); slowest store call %v",
		len(accepted), elapsed.Round(time.Millisecond), full, slowest)

	finished := djangodb.Finished
	list, err := s.Instances(context.Background(), djangodb.InstanceFilter{Type: "C", Status: &finished})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(accepted) {
		t.Errorf("%d FINISHED instances, want %d", len(list), len(accepted))
	}
	if st, err := s.QueueStats(context.Background()); err != nil || st.Waiting != 0 {
		t.Errorf("queue after the run = %+v, %v; want empty", st, err)
	}
	// Django reads what the store wrote: a sample across the run.
	for i := 0; i < len(accepted); i += max(1, len(accepted)/10) {
		ident := accepted[i]
		r, err := prod.call("log", "C", ident)
		if err != nil || r.Exit != 0 {
			t.Fatalf("producer log %s: %v %+v", ident, err, r)
		}
		var lg struct {
			Text    string `json:"text"`
			Records []struct {
				Time   string `json:"time"`
				Status int    `json:"status"`
			} `json:"records"`
		}
		if err := json.Unmarshal(r.Result, &lg); err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, rec := range lg.Records {
			got = append(got, rec.Status)
		}
		if lg.Text != "FINISHED" || !slices.Equal(got, []int{1, 2, 3, 5}) {
			t.Errorf("Django reads %s as %s with log %v, want FINISHED [1 2 3 5]", ident, lg.Text, got)
		}
		r, err = prod.call("response", "C", ident)
		if err != nil || r.Exit != 0 {
			t.Fatalf("producer response %s: %v %+v", ident, err, r)
		}
		var resp struct {
			Text     string `json:"text"`
			MimeType string `json:"mimeType"`
		}
		if err := json.Unmarshal(r.Result, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Text != "r"+ident || resp.MimeType != "text/plain" {
			t.Errorf("Django reads the response of %s as %+v, want r%s text/plain", ident, resp, ident)
		}
	}
}
