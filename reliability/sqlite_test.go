package reliability

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestSQLiteSharedWithDjango: Django producers (two processes, the tracker
// API in Django's autocommit mode, SQLite's default rollback journal) and
// atpd share one SQLite file under steady load for 60 s in the full run
// (15 s otherwise): the producers enqueue as fast as the queue limit lets
// them and read back the status and log of their earlier tasks. No
// "database is locked" reaches either side: no producer call fails, and
// atpd logs no such error, not even one it retried. Every task runs exactly
// once.
func TestSQLiteSharedWithDjango(t *testing.T) {
	duration := 15 * time.Second
	if full() {
		duration = 60 * time.Second
	}
	const producers = 2
	db := newDB(t, sqliteUTC)
	led := newLedger(t)
	db.register("Ledger", ledgerHandler, 120, 2)
	input, _ := json.Marshal(map[string]any{"ledger": led.path, "sleep": 0})
	// atpd's default poll interval: every empty poll is a write transaction
	// on SQLite, so this is the lock traffic a deployment has.
	a := db.startAtpd("atpd", "atpd", "-n", "2", "--poll-interval", "50ms")

	type result struct {
		enqueued, full, reads int
		errs                  []string
	}
	results := make([]result, producers)
	var wg sync.WaitGroup
	begin := time.Now()
	end := begin.Add(duration)
	for p := range producers {
		prod := db.liveProducer()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[p]
			fail := func(what string, a answer, err error) {
				if err != nil {
					r.errs = append(r.errs, fmt.Sprintf("%s: %v", what, err))
				} else {
					r.errs = append(r.errs, fmt.Sprintf("%s: exit %d: %s: %s", what, a.Exit, a.Error, a.Message))
				}
			}
			for i := 0; time.Now().Before(end); {
				ident := fmt.Sprintf("p%d-%d", p, i)
				ans, err := prod.TryDo("enqueue", "Ledger", ident, "--json", string(input))
				switch {
				case err != nil:
					fail("enqueue "+ident, ans, err)
					return
				case ans.Exit == exitQueueFull:
					r.full++
					time.Sleep(20 * time.Millisecond) // a producer backing off
					continue
				case ans.Exit != 0:
					fail("enqueue "+ident, ans, nil)
					continue
				}
				r.enqueued++
				i++
				if i%5 == 0 {
					// A producer polling an earlier task, as web clients do.
					old := fmt.Sprintf("p%d-%d", p, i/2)
					for _, cmd := range []string{"status", "log"} {
						ans, err := prod.TryDo(cmd, "Ledger", old)
						if err != nil || ans.Exit != 0 {
							fail(cmd+" "+old, ans, err)
						}
						r.reads++
					}
				}
			}
		}()
	}
	wg.Wait()
	loadTime := time.Since(begin)
	total, fulls, reads := 0, 0, 0
	for p, r := range results {
		total += r.enqueued
		fulls += r.full
		reads += r.reads
		for _, e := range r.errs {
			t.Errorf("producer %d: %s", p, e)
		}
	}
	db.waitTerminal(total, 5*time.Minute)
	elapsed := time.Since(begin)
	a.Stop(drainTimeout)

	if locked := a.Grep(`(?i)database is locked|SQLITE_BUSY`); len(locked) != 0 {
		t.Errorf("atpd met %d locking errors, the first: %s", len(locked), locked[0])
	}
	if total == 0 {
		t.Fatal("the producers enqueued nothing")
	}
	db.checkExactlyOnce(led, total)
	t.Logf("FIGURES sqlite: producers=%d load=%s tasks=%d enqueue_rate=%.1f/s queue_full_answers=%d reads=%d drained_after=%s retries_logged=%d",
		producers, loadTime.Round(time.Second), total, float64(total)/loadTime.Seconds(), fulls, reads,
		elapsed.Round(time.Millisecond), len(a.Grep(`retrying`)))
}
