package daemon

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/testdb"
	"github.com/eoxserver/atpd/pyhandlers"
)

// The daemon's benchmarks, in-process; scripts/bench measures the real
// binary (with its RSS) and the database's capacity beside it, and
// docs/PERFORMANCE.md has the figures.

// pyDemo is integration/tools/atp_demo.py under a path the Go port of the
// demo (tools.atp_demo.handler) does not claim, so that CPython runs it.
const pyDemo = "integration.tools.atp_demo.handler"

// demoExecutor returns the executor for handler ("go" or "python") and
// the type's handler path.
func demoExecutor(b *testing.B, handler string, workers int) (executor.Executor, string) {
	b.Helper()
	if handler == "go" {
		return &executor.Router{Go: gohandlers.Default, Default: executor.NoHandler{}}, gohandlers.DemoPath
	}
	pool, err := pyhandlers.New(pyhandlers.Config{Python: testdb.Python(b), PythonPath: []string{testdb.RepoRoot(b)}, Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	if err := pool.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Stop)
	return pool, pyDemo
}

// BenchmarkDrain measures how fast one daemon with 8 workers drains a
// queue of demo tasks loaded beforehand (claim, RUNNING, handler,
// response, FINISHED), with the Go port of the demo handler and with the
// Python one in CPython workers; for Python also with SyncTaskWrites (the
// response committed before storeResponse returns, as the reference did).
// One op is one task.
func BenchmarkDrain(b *testing.B) {
	for _, be := range backends {
		for _, v := range []struct {
			handler string
			sync    bool
		}{{"go", false}, {"python", false}, {"python", true}} {
			name := fmt.Sprintf("%s/%s", be.name, v.handler)
			if v.sync {
				name += "/sync_writes"
			}
			b.Run(name, func(b *testing.B) {
				const workers = 8
				ex, path := demoExecutor(b, v.handler, workers)
				dsn := be.make(b, be.cfg)
				store := openStore(b, dsn, be.cfg, 0)
				register(b, store, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: path, Timeout: 600})
				in := pyInput(b, "(1, 2, 3, 4, 5)")
				tasks := make([]djangodb.NewTask, b.N)
				for i := range tasks {
					tasks[i] = djangodb.NewTask{Identifier: fmt.Sprint("t", i), Input: in}
				}
				if _, err := djangodb.EnqueueMany(ctxT(b), store, "SequenceSum", tasks, ""); err != nil {
					b.Fatal(err)
				}
				ws := watch(store)
				b.ResetTimer()
				began := time.Now()
				d, _ := newDaemon(b, ws, ex, Config{Workers: workers, SyncTaskWrites: v.sync})
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

// BenchmarkPickup measures an idle daemon's latency from enqueue to
// FINISHED, one task at a time, from the tasks' ACCEPTED and FINISHED log
// times: on PostgreSQL woken by the producer's NOTIFY, and polling (the
// default 50 ms interval) on both databases. One op is one task.
func BenchmarkPickup(b *testing.B) {
	for _, be := range backends {
		for _, listen := range []bool{true, false} {
			if listen && be.name != "postgres" {
				continue
			}
			mode := "poll"
			if listen {
				mode = "notify"
			}
			b.Run(be.name+"/"+mode, func(b *testing.B) {
				dsn := be.make(b, be.cfg)
				ws := watch(openStore(b, dsn, be.cfg, 0))
				register(b, ws, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: gohandlers.DemoPath, Timeout: 600})
				var daemonStore djangodb.Store = ws
				if listen {
					daemonStore = listeningStore{ws}
				}
				ex, _ := demoExecutor(b, "go", 8)
				d, _ := newDaemon(b, daemonStore, ex, Config{Workers: 8, PollInterval: DefaultPollInterval, NoListen: !listen})
				// Past the daemon's first polls (and LISTEN taking effect).
				ws.waitFor(b, "two polls", func() bool { return len(ws.dequeues) >= 2 })
				producer := openStore(b, dsn, be.cfg, 0)
				in := pyInput(b, "(1, 2, 3, 4, 5)")
				// lat: ACCEPTED to FINISHED; toClaim: ACCEPTED to SCHEDULED
				// (the producer's commit, the wake-up and the claim up to
				// its timestamps); toEnd: RUNNING to FINISHED (the claim's
				// commit, the handler and the completion up to its
				// timestamps).
				var lat, toClaim, toEnd []time.Duration
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					// An enqueue anywhere in the poll cycle.
					time.Sleep(time.Duration(i%10) * DefaultPollInterval / 10)
					b.StartTimer()
					id := enqueue(b, producer, "SequenceSum", fmt.Sprint("p", i), in)
					if listen {
						if err := producer.(djangodb.Notifier).Notify(ctxT(b)); err != nil {
							b.Fatal(err)
						}
					}
					ws.waitStatus(b, id, djangodb.Finished)
					recs, err := ws.Log(ctxT(b), id)
					if err != nil || len(recs) != 4 {
						b.Fatalf("log of %d: %+v, %v", id, recs, err)
					}
					lat = append(lat, recs[3].Time.Sub(recs[0].Time))
					toClaim = append(toClaim, recs[1].Time.Sub(recs[0].Time))
					toEnd = append(toEnd, recs[3].Time.Sub(recs[2].Time))
				}
				b.StopTimer()
				d.Stop()
				ms := func(ds []time.Duration, q int) float64 {
					slices.Sort(ds)
					return float64(ds[(len(ds)-1)*q/100]) / float64(time.Millisecond)
				}
				for _, q := range []int{50, 90, 99} {
					b.ReportMetric(ms(lat, q), fmt.Sprintf("p%d-ms", q))
				}
				b.ReportMetric(ms(toClaim, 50), "claim-p50-ms")
				b.ReportMetric(ms(toEnd, 50), "run-p50-ms")
			})
		}
	}
}
