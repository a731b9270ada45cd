package djangodb_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// BenchmarkClaimComplete is the store's part of a daemon's work per task
// with the batch methods: claim a batch (Claim), then store each task's
// response and finish it (Complete), with loops claimers working at once.
// One op is one task; the tasks are loaded beforehand with EnqueueMany.
// It bounds what a daemon can reach on this database: the handler, the
// scheduling and the executor come on top.
func BenchmarkClaimComplete(b *testing.B) {
	for _, db := range []struct {
		name string
		make func(testing.TB, testdb.Config) string
		wal  bool
	}{{"postgres", testdb.Postgres, false}, {"sqlite", testdb.SQLite, false}, {"sqlite-wal", testdb.SQLite, true}} {
		for _, batch := range []int{1, 8, 32} {
			for _, loops := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/batch=%d/loops=%d", db.name, batch, loops), func(b *testing.B) {
					c := testdb.Config{UseTZ: true}
					opts := testdb.Options(c)
					opts.SQLiteWAL = db.wal
					s, err := djangodb.Open(b.Context(), db.make(b, c), opts)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { s.Close() })
					ctx := b.Context()
					if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "B", Handler: "h.h", Timeout: 3600}); err != nil {
						b.Fatal(err)
					}
					tasks := make([]djangodb.NewTask, b.N)
					for i := range tasks {
						tasks[i] = djangodb.NewTask{Identifier: fmt.Sprint(i), Input: "eJxrYKotZIhgZGBgyC5k9GYs1gMAIjgDlA=="}
					}
					if _, err := djangodb.EnqueueMany(ctx, s, "B", tasks, ""); err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					began := time.Now()
					var wg sync.WaitGroup
					for w := range loops {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								sts, err := s.Claim(ctx, int64(w+1), batch, "")
								if errors.Is(err, djangodb.ErrQueueEmpty) {
									return
								}
								if err != nil {
									b.Error(err)
									return
								}
								cs := make([]djangodb.Completion, len(sts))
								for i, st := range sts {
									cs[i] = djangodb.Completion{InstanceID: st.InstanceID, Starts: st.Starts, Outcome: djangodb.OutcomeFinish,
										Writes: []djangodb.Write{djangodb.ResponseWrite([]byte("15.0"), "text/plain")}}
								}
								res, err := s.Complete(ctx, cs)
								if err != nil {
									b.Error(err)
									return
								}
								for _, r := range res {
									if r.Err != nil || !r.Wrote {
										b.Errorf("completion %+v", r)
										return
									}
								}
							}
						}()
					}
					wg.Wait()
					b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "tasks/s")
				})
			}
		}
	}
}
