package atpdcmd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/daemon"
	"github.com/eoxserver/atpd/shadow"
	"github.com/eoxserver/atpd/web"
	"github.com/eoxserver/atpd/web/schema"
)

// webMetrics holds what /metrics serves: the daemon's own collectors
// (which the daemon feeds) and the Go runtime's, in a registry of this
// process.
type webMetrics struct {
	registry *prometheus.Registry
	daemon   *web.Metrics
}

// shadowCompared counts a shadow-mode comparison; a nil m counts nothing.
func (m *webMetrics) shadowCompared(path string, match bool) {
	if m != nil {
		m.daemon.ShadowCompared(path, match)
	}
}

// newWebMetrics returns the metrics for cfg, or nil when nothing is
// served.
func newWebMetrics(cfg config.Config) (*webMetrics, error) {
	if cfg.HTTPAddr == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := web.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &webMetrics{registry: reg, daemon: m}, nil
}

// startHTTP serves the web pages of store with d's statistics on
// cfg.HTTPAddr, when set. It returns once the address is bound, so that a
// busy port fails the start. It returns the bound address ("" when
// nothing is served) and the function that stops the server.
func startHTTP(ctx context.Context, cfg config.Config, m *webMetrics, store djangodb.Store, d *daemon.Daemon, sid string, log *slog.Logger, sh *shadow.Executor) (addr string, stop func(), err error) {
	if cfg.HTTPAddr == "" || m == nil {
		return "", func() {}, nil
	}
	m.daemon.SetWorkers(cfg.Workers)
	// Every registered type's counters exist from the start, at 0; types
	// registered later get theirs at the next scrape or first event.
	tctx, cancel := context.WithTimeout(ctx, storeTimeout)
	types, err := store.Types(tctx)
	cancel()
	if err != nil {
		log.Warn("ATPD: cannot list the task types; their counters appear with their first scrape or event", "error", err)
	}
	for _, t := range types {
		m.daemon.InitTypes(t.Identifier)
	}
	h := web.New(store, web.Options{
		Logger:   log,
		Registry: m.registry,
		Metrics:  m.daemon,
		// The host of --http-addr is a name clients use, when it is one.
		AllowedHosts: append(slices.Clone(cfg.HTTPAllowedHosts), httpHost(cfg.HTTPAddr)),
		Stats: func() web.Stats {
			s := d.Stats()
			return web.Stats{
				ServerID: sid, Workers: s.Workers, Busy: s.Busy, Started: s.Started,
				Finished: s.Finished, Failed: s.Failed, Reenqueued: s.Reenqueued, Sweeps: s.Sweeps,
			}
		},
		Shadow: shadowReport(sh),
		Alive: func() error {
			select {
			case <-d.Done():
				return errors.New("the task loop has stopped")
			default:
				return d.WriteHealth()
			}
		},
	})
	srv := web.NewServer(cfg.HTTPAddr, h, log)
	if err := srv.Start(context.WithoutCancel(ctx)); err != nil {
		return "", nil, err
	}
	log.Info("ATPD: serving the task pages, /healthz and /metrics", "http_addr", srv.Addr())
	if ip := net.ParseIP(httpHost(cfg.HTTPAddr)); httpHost(cfg.HTTPAddr) == "" || ip != nil && ip.IsUnspecified() {
		log.Warn("ATPD: the HTTP endpoint listens on all interfaces: anyone who can reach it reads every task's input, log and response, without authentication; bind it to 127.0.0.1, or put an authenticating proxy in front",
			"http_addr", srv.Addr(), "http_allowed_hosts", strings.Join(cfg.HTTPAllowedHosts, ","))
	}
	return srv.Addr(), srv.Stop, nil
}

// httpHost is the host part of a host:port address.
func httpHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// shadowReport lists sh's recent mismatches for /api/shadow; nil when no
// path is shadowed.
func shadowReport(sh *shadow.Executor) func() []schema.ShadowMismatch {
	if sh == nil {
		return nil
	}
	return func() []schema.ShadowMismatch {
		var out []schema.ShadowMismatch
		for _, m := range sh.Recent() {
			out = append(out, schema.ShadowMismatch{Time: m.Time.UTC(), Path: m.Path, Type: m.Type,
				Identifier: m.Identifier, InstanceID: m.InstanceID, Difference: m.Difference})
		}
		return out
	}
}
