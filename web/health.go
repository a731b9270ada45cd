package web

import (
	"context"
	"net/http"
	"time"
)

// CheckJSON is one check of /healthz.
type CheckJSON struct {
	OK        bool    `json:"ok"`
	Error     string  `json:"error,omitempty"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
}

// HealthJSON is the body of /healthz: "ok" with 200 when every check
// passed, "unavailable" with 503 otherwise.
type HealthJSON struct {
	Status   string     `json:"status"`
	Database CheckJSON  `json:"database"`
	Loop     *CheckJSON `json:"loop,omitempty"` // absent without Options.Alive
}

// healthz answers whether this atpd can do its job: the database answers
// a ping within HealthTimeout and, when a daemon runs here, its task loop
// is alive. It reads no table, so that a probe every few seconds costs
// the database nothing.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	out := HealthJSON{Status: "ok"}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.HealthTimeout)
	start := time.Now()
	err := s.store.Ping(ctx)
	cancel()
	if r.Context().Err() != nil {
		return // the prober gave up; nobody reads the answer
	}
	out.Database = CheckJSON{OK: err == nil, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		out.Database.Error = err.Error()
		s.log.Warn("web: health check: database unreachable", "database", s.store.Describe(), "timeout", s.opts.HealthTimeout, "error", err)
	}
	if s.opts.Alive != nil {
		loop := CheckJSON{OK: true}
		if err := s.opts.Alive(); err != nil {
			loop = CheckJSON{OK: false, Error: err.Error()}
			s.log.Warn("web: health check: task loop not alive", "error", err)
		}
		out.Loop = &loop
	}
	code := http.StatusOK
	if !out.Database.OK || (out.Loop != nil && !out.Loop.OK) {
		out.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	s.writeJSON(w, code, out)
}
