package djangodb

import (
	"sync"
	"time"
)

// clock hands out timestamps at Django's precision (microseconds) that are
// strictly increasing within this process. getTaskLog orders a task's records
// by time alone, so two records written in the same microsecond would come
// back in an undefined order.
type clock struct {
	mu   sync.Mutex
	last time.Time
}

var processClock clock

// now returns the current time truncated to microseconds, at least one
// microsecond after the previous call.
func (c *clock) now() time.Time {
	t := time.Now().Truncate(time.Microsecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.After(c.last) {
		t = c.last.Add(time.Microsecond)
	}
	c.last = t
	return t
}
