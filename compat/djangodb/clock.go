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

// reserve hands out n consecutive ticks at once and returns the first; the
// caller uses first + i µs for i < n. Batch statements compute their
// timestamps from it in SQL instead of binding one parameter per row, and
// the order of the ticks is the order in which the rows are meant to have
// been written.
func (c *clock) reserve(n int) time.Time {
	t := time.Now().Truncate(time.Microsecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.After(c.last) {
		t = c.last.Add(time.Microsecond)
	}
	c.last = t.Add(time.Duration(max(n, 1)-1) * time.Microsecond)
	return t
}
