package reliability

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
)

// rssSample is the daemon's resident set size when done tasks had finished.
type rssSample struct {
	done int
	rss  int64
}

// TestLongQueueFlatMemory: 100,000 waiting tasks (10,000 outside the full
// run), inserted with SQL in bulk, each with an input of about 1 KiB, so
// that the whole queue is 100 MiB of input text. The daemon (Go demo
// handler, 4 workers) drains it while the test samples its RSS from /proc.
// Memory stays flat: the daemon never holds more of the queue than its
// workers run, and nothing grows with the tasks done. Every task finishes.
func TestLongQueueFlatMemory(t *testing.T) {
	n := size(10000, 100000)
	db := newDB(t, pgUTC)
	db.register("Sum", "tools.atp_demo.handler", 3600, 2)
	r := rand.New(rand.NewPCG(7, 11))
	numbers := make([]any, 100)
	for i := range numbers {
		numbers[i] = r.Float64() * 1e6
	}
	input, err := pickle.Encode(pickle.Tuple(numbers))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	db.bulkEnqueue("Sum", "q", n, input)
	insertTime := time.Since(begin)

	a := db.startAtpd("atpd", "atpd", "-n", "4")
	start := time.Now()
	var samples []rssSample
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Minute)
	for done := 0; done < n; {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d of %d tasks done after 15 minutes", done, n)
		}
		rss, err := a.rss()
		if err != nil {
			t.Fatalf("RSS of atpd: %v", err)
		}
		done = db.statusCounts()[djangodb.Finished]
		samples = append(samples, rssSample{done, rss})
	}
	drain := time.Since(start)
	a.Stop(drainTimeout)

	if c := db.statusCounts(); c[djangodb.Finished] != n || len(c) != 1 {
		t.Errorf("instances by status %v, want all %d FINISHED", c, n)
	}
	if q := db.QueryInt(`SELECT count(*) FROM processes_task`); q != 0 {
		t.Errorf("%d task rows left", q)
	}
	// Early: the first tenth of the queue, once the daemon is warm.
	// Late: the second half. A daemon that kept something per task would
	// grow from one to the other; one that loaded the queue would start
	// high.
	var early, late, peak int64
	for _, s := range samples {
		peak = max(peak, s.rss)
		switch {
		case s.done <= n/10:
			early = max(early, s.rss)
		case s.done >= n/2:
			late = max(late, s.rss)
		}
	}
	const mib = 1 << 20
	queueBytes := int64(n) * int64(len(input))
	if early == 0 || late == 0 {
		t.Fatalf("too few RSS samples (%d) to compare the start with the end", len(samples))
	}
	if late > early+16*mib {
		t.Errorf("RSS grew from %d MiB (first tenth) to %d MiB (second half) while draining", early/mib, late/mib)
	}
	if peak > early+32*mib || peak > 96*mib {
		t.Errorf("peak RSS %d MiB; the queue's inputs are %d MiB and must not be held", peak/mib, queueBytes/mib)
	}
	t.Logf("FIGURES longqueue: tasks=%d input_bytes=%d queue_input_MiB=%d insert=%s drain=%s rate=%.0f/s rss_early_MiB=%d rss_late_MiB=%d rss_peak_MiB=%d samples=%d",
		n, len(input), queueBytes/mib, insertTime.Round(time.Millisecond), drain.Round(time.Millisecond),
		float64(n)/drain.Seconds(), early/mib, late/mib, peak/mib, len(samples))
}
