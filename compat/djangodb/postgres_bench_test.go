package djangodb_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// BenchmarkPostgresLifecycle runs whole task lifecycles as the daemon does
// (claim a batch, start, store a response, finish) with the tasks enqueued
// beforehand; one op is one task. Run with -cpu to vary the claimers.
func BenchmarkPostgresLifecycle(b *testing.B) {
	for _, batch := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			c := testdb.Config{UseTZ: true, TimeZone: "UTC"}
			dsn := testdb.Postgres(b, c)
			opts := testdb.Options(c)
			opts.MaxQueueSize = b.N + 1
			s := openPostgres(b, dsn, opts)
			ctx := b.Context()
			if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "B", Handler: "h.h", Timeout: 3600}); err != nil {
				b.Fatal(err)
			}
			for i := range b.N {
				if _, err := s.Enqueue(ctx, "B", fmt.Sprint(i), okInput, ""); err != nil {
					b.Fatal(err)
				}
			}
			var server atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := server.Add(1)
				var todo []int64
				for pb.Next() {
					if len(todo) == 0 {
						ids, err := s.Dequeue(ctx, id, batch, "")
						if errors.Is(err, djangodb.ErrQueueEmpty) {
							return
						}
						if err != nil {
							b.Error(err)
							return
						}
						todo = ids
					}
					t := todo[0]
					todo = todo[1:]
					if _, err := s.Start(ctx, t, ""); err != nil {
						b.Error(err)
						return
					}
					if err := s.SetResponse(ctx, t, []byte("15.0"), "text/plain"); err != nil {
						b.Error(err)
						return
					}
					if _, err := s.FinishIfNotFinished(ctx, t, ""); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
