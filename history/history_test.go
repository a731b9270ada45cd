package history

import (
	"testing"
	"time"
)

// TestRunPercentile: nearest rank over the sorted run times (the walk over
// real logs is in the conformance suite, storetest's History case).
func TestRunPercentile(t *testing.T) {
	s := time.Second
	runs := TypeHistory{RunTimes: []time.Duration{1 * s, 2 * s, 3 * s, 4 * s, 10 * s}}
	for _, tc := range []struct {
		h    TypeHistory
		p    float64
		want time.Duration
	}{
		{TypeHistory{}, 99, 0},
		{runs, 99, 10 * s},
		{runs, 50, 3 * s},
		{runs, 20, 1 * s},
		{runs, 21, 2 * s},
		{runs, 100, 10 * s},
	} {
		if got := tc.h.RunPercentile(tc.p); got != tc.want {
			t.Errorf("RunPercentile(%v) of %v = %v, want %v", tc.p, tc.h.RunTimes, got, tc.want)
		}
	}
	if got := runs.LongestRun(); got != 10*s {
		t.Errorf("LongestRun = %v, want 10s", got)
	}
}
