package web

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/buildinfo"
)

const namespace = "atpd"

// Metrics are the collectors of what only the daemon sees: tasks it
// started and ended, their run times, its re-enqueues and busy workers.
// The daemon calls the methods (through an interface of its own, so it
// need not import web); every method is safe for concurrent use and a nil
// *Metrics does nothing.
type Metrics struct {
	started    *prometheus.CounterVec
	finished   *prometheus.CounterVec
	failed     *prometheus.CounterVec
	reenqueued *prometheus.CounterVec
	runtime    *prometheus.HistogramVec
	busy       prometheus.Gauge
	workers    prometheus.Gauge
	discarded  *prometheus.CounterVec
	abandoned  prometheus.Gauge
	shadow     *prometheus.CounterVec

	seen sync.Map // task types whose series exist, string -> struct{}
}

// RunTimeBuckets are the run-time histogram's upper bounds in seconds:
// 10 ms to about 11.6 hours, a factor of 4 apart, since ATP handlers range
// from trivial to hours-long processing.
var RunTimeBuckets = prometheus.ExponentialBuckets(0.01, 4, 12)

// NewMetrics creates the daemon's collectors and registers them in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		started:    typeCounter("tasks_started_total", "Tasks this daemon set RUNNING, by task type."),
		finished:   typeCounter("tasks_finished_total", "Tasks this daemon ran that ended FINISHED, by task type."),
		failed:     typeCounter("tasks_failed_total", "Tasks this daemon ran that ended FAILED, by task type."),
		reenqueued: typeCounter("tasks_reenqueued_total", "Tasks this daemon put back on the queue (deadline, shutdown, zombie sweep), by task type."),
		runtime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "task_run_seconds",
			Help:    "Time from RUNNING to the outcome of tasks this daemon ran, by task type.",
			Buckets: RunTimeBuckets,
		}, []string{"type"}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "workers_busy",
			Help: "Workers of this daemon running a task.",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "workers",
			Help: "Workers this daemon is configured with (-n): the most tasks it runs at once.",
		}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "outcomes_discarded_total",
			Help: "Writes of a run dropped because the run no longer owned its task (re-enqueued, started again, ended by someone else), by task type and reason.",
		}, []string{"type", "reason"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "shadow_runs_total",
			Help: "Shadow-mode comparisons of a Python handler's records with its Go port's, by handler path and result (match, mismatch).",
		}, []string{"path", "result"}),
		abandoned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "handlers_abandoned",
			Help: "Go handlers that ignored cancellation and still run; their tasks are not run again by this daemon until they return.",
		}),
	}
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which atpd this is: module version, VCS revision, Go version.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{m.started, m.finished, m.failed, m.reenqueued, m.runtime, m.busy, m.workers, m.discarded, m.abandoned, m.shadow, build} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("web: register metrics: %w", err)
		}
	}
	return m, nil
}

// typeCounter is one of the daemon's task counters, labelled by task type.
func typeCounter(name, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, []string{"type"})
}

// InitTypes creates the per-type series of the task types given, at 0,
// so that a type's counters exist (and rate() and absent() work) before
// its first event: atpd_tasks_failed_total reads 0, not nothing, until a
// task fails. The daemon's own events create a type's series too.
func (m *Metrics) InitTypes(types ...string) {
	if m == nil {
		return
	}
	for _, typ := range types {
		m.initType(typ)
	}
}

func (m *Metrics) initType(typ string) {
	if _, seen := m.seen.LoadOrStore(typ, struct{}{}); seen {
		return
	}
	for _, c := range []*prometheus.CounterVec{m.started, m.finished, m.failed, m.reenqueued} {
		c.WithLabelValues(typ)
	}
	m.runtime.WithLabelValues(typ)
}

// SetWorkers sets the configured number of workers.
func (m *Metrics) SetWorkers(n int) {
	if m != nil {
		m.workers.Set(float64(n))
	}
}

// TaskStarted counts a task set RUNNING.
func (m *Metrics) TaskStarted(typ string) {
	if m != nil {
		m.initType(typ)
		m.started.WithLabelValues(typ).Inc()
	}
}

// TaskFinished records a task's outcome: FAILED counts as failed, any
// other status (FINISHED) as finished; d is its run time.
func (m *Metrics) TaskFinished(typ string, status djangodb.Status, d time.Duration) {
	if m == nil {
		return
	}
	m.initType(typ)
	if status == djangodb.Failed {
		m.failed.WithLabelValues(typ).Inc()
	} else {
		m.finished.WithLabelValues(typ).Inc()
	}
	m.runtime.WithLabelValues(typ).Observe(d.Seconds())
}

// TaskReenqueued counts a task put back on the queue.
func (m *Metrics) TaskReenqueued(typ string) {
	if m != nil {
		m.initType(typ)
		m.reenqueued.WithLabelValues(typ).Inc()
	}
}

// SetBusy sets the number of busy workers.
func (m *Metrics) SetBusy(n int) {
	if m != nil {
		m.busy.Set(float64(n))
	}
}

// OutcomeDiscarded counts a run's writes dropped by the fence.
func (m *Metrics) OutcomeDiscarded(typ, reason string) {
	if m != nil {
		m.discarded.WithLabelValues(typ, reason).Inc()
	}
}

// ShadowCompared counts one shadow-mode comparison of path.
func (m *Metrics) ShadowCompared(path string, match bool) {
	if m == nil {
		return
	}
	result := "mismatch"
	if match {
		result = "match"
	}
	m.shadow.WithLabelValues(path, result).Inc()
}

// SetAbandoned sets the number of abandoned handlers still running.
func (m *Metrics) SetAbandoned(n int) {
	if m != nil {
		m.abandoned.Set(float64(n))
	}
}

// dbCollector reads the gauges that describe the shared queue from the
// database at scrape time, so that every atpd (and Prometheus, whichever
// it scrapes) sees the same numbers, whichever daemon did the work.
type dbCollector struct {
	store   djangodb.Store
	timeout time.Duration
	log     *slog.Logger
	metrics *Metrics // the daemon's, whose series it creates for types registered later; may be nil

	up, tasks, waiting, limit, oldestAge, scrapeSeconds *prometheus.Desc
}

var allStatuses = []djangodb.Status{djangodb.Undefined, djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Paused, djangodb.Finished, djangodb.Failed}

func newDBCollector(store djangodb.Store, timeout time.Duration, log *slog.Logger, metrics *Metrics) *dbCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &dbCollector{
		store: store, timeout: timeout, log: log, metrics: metrics,
		up:            d("database_up", "1 when the ATP tables could be read at this scrape, 0 otherwise."),
		tasks:         d("tasks", "Task instances in the database, by task type and status.", "type", "status"),
		waiting:       d("queue_waiting", "Tasks waiting in the queue (task rows no daemon has claimed)."),
		limit:         d("queue_limit", "Most waiting tasks an enqueue accepts (the tracker's MAX_QUEUE_SIZE)."),
		oldestAge:     d("queue_oldest_age_seconds", "How long the oldest waiting task has waited; 0 when the queue is empty."),
		scrapeSeconds: d("database_scrape_seconds", "Time the database took to answer this scrape's queries."),
	}
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.tasks, c.waiting, c.limit, c.oldestAge, c.scrapeSeconds} {
		ch <- d
	}
}

// Collect reads the database, each query under the timeout. On failure it reports
// database_up 0 and leaves the other gauges out rather than reporting
// zeros that would look like an empty queue.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	counts, q, err := c.read()
	ch <- prometheus.MustNewConstMetric(c.scrapeSeconds, prometheus.GaugeValue, time.Since(start).Seconds())
	if err != nil {
		c.log.Warn("web: metrics: cannot read the ATP tables; reporting atpd_database_up 0",
			"database", c.store.Describe(), "timeout", c.timeout, "error", err)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for typ, byStatus := range counts {
		for _, st := range allStatuses {
			ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(byStatus[st]), typ, st.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(q.Waiting))
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(q.Max))
	age := 0.0
	if !q.Oldest.IsZero() {
		age = max(0, time.Since(q.Oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, age)
}

// read counts instances by type and status. The store has no counting
// query, so this lists the instances; retention keeps the table small on
// real deployments, and the timeout bounds a scrape on a large one.
func (c *dbCollector) read() (map[string]map[djangodb.Status]int, djangodb.QueueStats, error) {
	types, err := timed(c.timeout, c.store.Types)
	if err != nil {
		return nil, djangodb.QueueStats{}, err
	}
	counts := make(map[string]map[djangodb.Status]int, len(types))
	for _, t := range types {
		counts[t.Identifier] = map[djangodb.Status]int{}
		c.metrics.InitTypes(t.Identifier)
	}
	insts, err := timed(c.timeout, func(ctx context.Context) ([]djangodb.Instance, error) {
		return c.store.Instances(ctx, djangodb.InstanceFilter{})
	})
	if err != nil {
		return nil, djangodb.QueueStats{}, err
	}
	for _, in := range insts {
		m := counts[in.Type]
		if m == nil { // registered after Types was read
			m = map[djangodb.Status]int{}
			counts[in.Type] = m
		}
		m[in.Status]++
	}
	q, err := timed(c.timeout, c.store.QueueStats)
	if err != nil {
		return nil, djangodb.QueueStats{}, err
	}
	return counts, q, nil
}

// timed runs one store call under its own timeout. A scrape has no
// request context to follow: promhttp's own timeout only abandons it.
func timed[T any](timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return fn(ctx)
}
