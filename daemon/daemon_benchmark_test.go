package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
)

// BenchmarkDrain measures how fast one daemon drains a full queue of demo
// tasks (claim, RUNNING, handler, response, FINISHED) with the Go handler:
// the daemon and store overhead per task, without handler cost.
func BenchmarkDrain(b *testing.B) {
	for _, be := range backends {
		for _, workers := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("%s/workers=%d", be.name, workers), func(b *testing.B) {
				dsn := be.make(b, be.cfg)
				store := openStore(b, dsn, be.cfg, b.N+1)
				register(b, store, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: gohandlers.DemoPath, Timeout: 600})
				input := pyInput(b, "(1, 2, 3, 4, 5)")
				for i := range b.N {
					enqueue(b, store, "SequenceSum", fmt.Sprint("t", i), input)
				}
				ws := watch(store)
				router := &executor.Router{Go: gohandlers.Default, Default: executor.NoHandler{}}
				b.ResetTimer()
				began := time.Now()
				d, _ := newDaemon(b, ws, router, Config{Workers: workers})
				ws.waitFor(b, fmt.Sprintf("%d tasks to end", b.N), func() bool { return ws.ended >= b.N })
				elapsed := time.Since(began)
				b.StopTimer()
				d.Stop()
				if st := d.Stats(); st.Finished != int64(b.N) {
					b.Fatalf("%d of %d tasks finished", st.Finished, b.N)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
			})
		}
	}
}
