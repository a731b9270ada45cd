package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/internal/testdb"
)

// TestNullWrite: the daemon's TaskStatus is an executor.NullWriter. The
// refusal of the original's write of None comes from the database, after
// the handler's held-back writes were committed (the refused row's id
// follows theirs), and writes nothing; the handler's exception then ends
// the task FAILED with it, the record after the refused id. Once the run
// is given back, NullWrite fails with ErrTaskReleased.
func TestNullWrite(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := openStore(t, b.make(t, b.cfg), b.cfg, 0)
		register(t, store, djangodb.TypeSpec{Identifier: "N", Handler: "tests.null", Timeout: 60})
		kept := make(chan executor.TaskStatus, 1)
		handlers := funcs{"tests.null": func(ctx context.Context, task *executor.Task, ts executor.TaskStatus) error {
			kept <- ts
			if err := ts.SetRunning(ctx, "held back"); err != nil {
				return err
			}
			nw, ok := ts.(executor.NullWriter)
			if !ok {
				return errors.New("the daemon's TaskStatus is not an executor.NullWriter")
			}
			refusal, err := nw.NullWrite(ctx, djangodb.StatusWrite(djangodb.Finished, ""))
			if err != nil {
				return err
			}
			return errors.New(refusal)
		}}
		id := enqueue(t, store, "N", "n", pyInput(t, "(1,)"))
		d, _ := newDaemon(t, store, handlers, Config{Workers: 1})
		deadline := time.Now().Add(waitLimit)
		for {
			in, err := store.Instance(ctxT(t), id)
			if err != nil {
				t.Fatal(err)
			}
			if in.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d still %s", id, in.Status)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.Stop()
		recs, err := store.Log(ctxT(t), id)
		if err != nil {
			t.Fatal(err)
		}
		head := []rec{{djangodb.Accepted, ""}, {djangodb.Scheduled, ""}, {djangodb.Running, ""}, {djangodb.Running, "held back"}}
		if len(recs) != len(head)+1 {
			t.Fatalf("log %v, want %v and the FAILED record", recs, head)
		}
		for i, want := range head {
			if got := (rec{recs[i].Status, recs[i].Message}); got != want {
				t.Errorf("log record %d %v, want %v", i, got, want)
			}
		}
		last := recs[len(recs)-1]
		if b.name == "sqlite" {
			if want := "NOT NULL constraint failed: processes_logrecord.message"; last.Status != djangodb.Failed || last.Message != want {
				t.Errorf("last record %s %q, want FAILED %q", last.Status, last.Message, want)
			}
		} else {
			want := `null value in column "message" of relation "processes_logrecord" violates not-null constraint` +
				"\nDETAIL:  Failing row contains (ID, TIME+00, 5, null, INSTANCE).\n"
			masked, rowID, ok := testdb.MaskFailingRow(last.Message, id)
			if last.Status != djangodb.Failed || !ok || masked != want {
				t.Errorf("last record %s %q, want FAILED of the form %q", last.Status, last.Message, want)
			}
			if held := recs[len(head)-1].ID; !(held < rowID && rowID+1 == last.ID) {
				t.Errorf("refused row's id %d, want it between the held-back record's %d and the FAILED record's %d", rowID, held, last.ID)
			}
		}
		ts := <-kept
		if _, err := ts.(executor.NullWriter).NullWrite(ctxT(t), djangodb.StatusWrite(djangodb.Finished, "")); !errors.Is(err, ErrTaskReleased) {
			t.Errorf("NullWrite after the run: %v, want ErrTaskReleased", err)
		}
		if n := len(logOf(t, store, id)); n != len(recs) {
			t.Errorf("%d log records after the late NullWrite, want %d", n, len(recs))
		}
	})
}
