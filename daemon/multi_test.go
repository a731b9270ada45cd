package daemon

import (
	"fmt"
	"sync"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
)

// TestTwoDaemonsRunEachTaskOnce: two daemons, each with its own connections,
// drain one PostgreSQL queue while a producer fills it; every task runs
// exactly once (one RUNNING record) and ends FINISHED.
func TestTwoDaemonsRunEachTaskOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 tasks")
	}
	b := backends[0]
	const tasks = 2000
	dsn := b.make(t, b.cfg)
	h := newHub()
	producerStore := openStore(t, dsn, b.cfg, tasks)
	register(t, producerStore, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: gohandlers.DemoPath, Timeout: 60})
	router := &executor.Router{Go: gohandlers.Default, Default: executor.NoHandler{}}
	var daemons []*Daemon
	for range 2 {
		ws := &watchStore{Store: openStore(t, dsn, b.cfg, 0), hub: h}
		d, _ := newDaemon(t, ws, router, Config{Workers: 4})
		daemons = append(daemons, d)
	}

	input := pyInput(t, "(1, 2, 3, 4, 5)")
	ids := make([]int64, tasks)
	var wg sync.WaitGroup
	for p := range 2 { // two producers, interleaving with the claims
		wg.Go(func() {
			for i := p; i < tasks; i += 2 {
				id, err := producerStore.Enqueue(ctxT(t), "SequenceSum", fmt.Sprint("t", i), input, "")
				if err != nil {
					t.Errorf("enqueue %d: %v", i, err)
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	h.waitFor(t, fmt.Sprintf("%d tasks to end", tasks), func() bool { return h.ended >= tasks })
	for _, d := range daemons {
		d.Stop()
	}

	var started int64
	for i, d := range daemons {
		st := d.Stats()
		started += st.Started
		t.Logf("daemon %d: %+v", i, st)
	}
	if started != tasks {
		t.Errorf("the daemons started %d tasks, want %d", started, tasks)
	}
	want := fmt.Sprint([]rec{{1, ""}, {2, ""}, {3, ""}, {5, ""}})
	for i, id := range ids {
		if got := fmt.Sprint(logOf(t, producerStore, id)); got != want {
			t.Errorf("task %d (instance %d): log %s, want %s (one run)", i, id, got, want)
		}
	}
	noneInFlight(t, producerStore)
}
