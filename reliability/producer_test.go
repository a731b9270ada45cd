package reliability

import (
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/e2e"
)

// Exit statuses of producer.py (and of its batch lines).
const (
	exitQueueFull = 3
	exitNotFound  = 4
)

// liveProducer is a `producer.py batch` process, a Django producer driven
// one tracker call at a time, so that the test can react to each answer.
type liveProducer struct {
	*e2e.LiveProducer
	t *testing.T
}

func (d *rdb) liveProducer() *liveProducer {
	d.t.Helper()
	return &liveProducer{LiveProducer: d.LiveProducer(), t: d.t}
}

// answer is one batch line's outcome.
type answer = e2e.Answer

// enqueue enqueues like a patient producer: on QueueFull it backs off and
// tries again. Any other failure is returned to the caller, which decides
// whether it may happen.
func (p *liveProducer) enqueue(timeout time.Duration, args ...string) (a answer, full int) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a = p.Do(append([]string{"enqueue"}, args...)...)
		if a.Exit != exitQueueFull {
			return a, full
		}
		full++
		if time.Now().After(deadline) {
			p.t.Fatalf("enqueue %v: queue still full after %v", args, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
