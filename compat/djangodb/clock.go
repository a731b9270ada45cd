package djangodb

import (
	"sync"
	"time"
)

// Clock is where a store's timestamps come from (Options.Clock): the
// system clock unless a test sets the time.
type Clock interface {
	Now() time.Time
}

// ticks hands out timestamps at Django's precision (microseconds) that are
// strictly increasing: getTaskLog orders a task's records by time alone,
// so two records written in the same microsecond would come back in an
// undefined order. Stores on the system clock share processClock, so that
// this holds across the stores of a process.
type ticks struct {
	mu   sync.Mutex
	last time.Time
	src  Clock // nil: time.Now
}

var processClock ticks

// now returns the current time truncated to microseconds, at least one
// microsecond after the previous tick.
func (c *ticks) now() time.Time { return c.reserve(1) }

// reserve hands out n consecutive ticks at once and returns the first; the
// caller uses first + i µs for i < n, in the order in which the rows are
// meant to have been written.
func (c *ticks) reserve(n int) time.Time {
	var t time.Time
	if c.src != nil {
		t = c.src.Now()
	} else {
		t = time.Now()
	}
	t = t.Round(0).Truncate(time.Microsecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.After(c.last) {
		t = c.last.Add(time.Microsecond)
	}
	c.last = t.Add(time.Duration(max(n, 1)-1) * time.Microsecond)
	return t
}
