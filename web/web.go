package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/web/schema"
)

// Stats is what the pages and /api/queue show of the daemon serving the
// queue in this process (schema.Daemon). The daemon's own snapshot type
// converts to it in a few lines; keeping it here means web does not
// depend on the daemon package.
type Stats = schema.Daemon

// Defaults of Options.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultHealthTimeout = 2 * time.Second
	DefaultPageSize      = 100
	MaxPageSize          = 1000
)

// Options configure the handler New returns; the zero value serves the
// database alone (no daemon in this process).
type Options struct {
	// BasePath is the path prefix the handler is mounted at ("/atp"), or
	// "" for the root. Routes and links include it; the handler answers
	// 404 outside it.
	BasePath string
	// Stats, when set, is called for each page and /api/queue to show the
	// daemon's workers and counters.
	Stats func() Stats
	// Shadow, when set, lists the recent shadow-mode mismatches for
	// GET /api/shadow (404 when nil: no path is shadowed).
	Shadow func() []schema.ShadowMismatch
	// Alive, when set, tells /healthz whether the task loop is alive: nil
	// when it is, an error saying why not otherwise. When nil, /healthz
	// checks the database only.
	Alive func() error
	// Logger receives request errors; nil means slog.Default().
	Logger *slog.Logger
	// Registry is what /metrics serves. New registers the database
	// collector (tasks by status, queue depth and age) in it; register
	// the daemon's Metrics in it too (NewMetrics). Nil means a registry
	// of New's own, with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// Metrics, when set, are the daemon's collectors in Registry: each
	// scrape creates their series for task types registered since the
	// last (Metrics.InitTypes), so that they read 0 before any event.
	Metrics *Metrics
	// Timeout bounds each database call of a request and of a scrape
	// (default 5 s); HealthTimeout bounds /healthz's ping (default 2 s).
	Timeout       time.Duration
	HealthTimeout time.Duration
	// AllowedHosts are the host names requests may be addressed to (their
	// Host header), besides IP addresses and localhost names, which are
	// always accepted: an exact name, ".example.org" for it and every name
	// under it, or "*" for any. Other requests are answered 421, which
	// keeps web pages of other origins from reading the API by DNS
	// rebinding.
	AllowedHosts []string
	// Refresh is the interval after which the HTML list and log pages
	// reload themselves (the reference views used 15 s); 0 means 15 s,
	// negative means never.
	Refresh time.Duration
}

type server struct {
	store djangodb.Store
	opts  Options
	log   *slog.Logger
	base  string
	pages *pages
}

// New returns the handler serving the pages, API, health and metrics
// endpoints for store. It does not own the store.
func New(store djangodb.Store, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = DefaultHealthTimeout
	}
	if opts.Refresh == 0 {
		opts.Refresh = 15 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &server{
		store: store,
		opts:  opts,
		log:   opts.Logger,
		base:  strings.TrimRight(opts.BasePath, "/"),
	}
	s.pages = mustParsePages(urls{s.base})
	if err := opts.Registry.Register(newDBCollector(store, opts.Timeout, opts.Logger, opts.Metrics)); err != nil {
		// Only a second New on the same registry gets here; the first
		// handler's collector already reports the same database.
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			opts.Logger.Error("web: cannot register the database collector; /metrics lacks the task gauges", "error", err)
		}
	}

	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.Handle(method+" "+s.base+path, h)
	}
	route("GET /{$}", s.redirectToTasks)
	route("GET /tasks", s.taskListPage)
	route("GET /tasks/{type}/{id}", s.taskPage)
	route("GET /tasks/{type}/{id}/response", s.responseRaw)
	route("GET /log", s.logPage)

	route("GET /api/tasks", s.apiTaskList)
	route("GET /api/tasks/{type}/{id}", s.apiTask)
	route("GET /api/tasks/{type}/{id}/log", s.apiTaskLog)
	route("GET /api/tasks/{type}/{id}/response", s.apiResponse)
	route("GET /api/log", s.apiLog)
	route("GET /api/types", s.apiTypes)
	route("GET /api/queue", s.apiQueue)
	route("GET /api/shadow", s.apiShadow)

	route("GET /healthz", s.healthz)
	mux.Handle("GET "+s.base+"/metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{
		ErrorLog:      slogPromLogger{opts.Logger},
		ErrorHandling: promhttp.ContinueOnError,
		// No Timeout: it would answer 503 and lose atpd_database_up 0;
		// each database query of a scrape has its own timeout instead.
	}))
	if s.base != "" {
		route("GET ", s.redirectToTasks) // the prefix without its slash
	}
	return s.checkHost(mux)
}

func (s *server) redirectToTasks(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, s.base+"/tasks", http.StatusFound)
}

// dbCall runs one store call under the request timeout.
func dbCall[T any](s *server, r *http.Request, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.Timeout)
	defer cancel()
	return fn(ctx)
}

// httpError is an error with the status code it answers with.
type httpError struct {
	code int
	msg  string
	err  error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// classify maps a store error to the status code a client can act on and
// logs what is the server's problem.
func (s *server) classify(r *http.Request, what string, err error) (int, string) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.code, he.msg
	case errors.Is(err, djangodb.ErrNotFound):
		return http.StatusNotFound, what + ": not found"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer and it is no error.
		return 499, "request cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("web: database did not answer in time", "request", r.URL.Path, "what", what, "timeout", s.opts.Timeout, "error", err)
		return http.StatusServiceUnavailable, what + ": the database did not answer in time"
	default:
		s.log.Error("web: request failed", "request", r.URL.Path, "what", what, "error", err)
		return http.StatusInternalServerError, what + ": " + err.Error()
	}
}

func securityHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// slogPromLogger adapts slog to promhttp's ErrorLog.
type slogPromLogger struct{ log *slog.Logger }

func (l slogPromLogger) Println(v ...any) {
	l.log.Error("web: metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}
