package web_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/web"
)

// hangingStore is a store whose database never answers a ping, as when
// the network to it is gone; every other method is the real store's.
type hangingStore struct{ djangodb.Store }

func (hangingStore) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestHealthz: 200 only when the database answers within the timeout and
// the loop, when there is one, is alive.
func TestHealthz(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		store := openStore(t, c)
		closed := openStore(t, c)
		closed.Close()
		loopDead := errors.New("task loop ended at 12:00 after a panic")
		cases := []struct {
			name     string
			store    djangodb.Store
			alive    func() error
			code     int
			dbOK     bool
			loop     string // "" no loop check, "ok", or the error
			dbErrHas string
		}{
			{"database only", store, nil, 200, true, "", ""},
			{"database and loop", store, func() error { return nil }, 200, true, "ok", ""},
			{"loop dead", store, func() error { return loopDead }, 503, true, loopDead.Error(), ""},
			{"database closed", closed, func() error { return nil }, 503, false, "ok", "closed"},
			{"database hangs", hangingStore{store}, nil, 503, false, "", "deadline exceeded"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				h, _ := newHandler(t, tc.store, web.Options{Alive: tc.alive, HealthTimeout: 100 * time.Millisecond})
				base := serve(t, h)
				start := time.Now()
				got := getJSON[web.HealthJSON](t, base+"/healthz", tc.code)
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("health check took %v with a 100ms timeout", took)
				}
				wantStatus := "ok"
				if tc.code != 200 {
					wantStatus = "unavailable"
				}
				if got.Status != wantStatus || got.Database.OK != tc.dbOK || !strings.Contains(got.Database.Error, tc.dbErrHas) {
					t.Errorf("health %+v", got)
				}
				switch {
				case tc.loop == "" && got.Loop != nil:
					t.Errorf("loop check %+v without Alive", got.Loop)
				case tc.loop == "ok" && (got.Loop == nil || !got.Loop.OK):
					t.Errorf("loop %+v, want ok", got.Loop)
				case tc.loop != "" && tc.loop != "ok" && (got.Loop == nil || got.Loop.OK || got.Loop.Error != tc.loop):
					t.Errorf("loop %+v, want the error %q", got.Loop, tc.loop)
				}
			})
		}
	})
}

// gauge returns the value of the metric name with the given labels from
// reg, and whether it is present.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetrics: the database gauges agree with the store at scrape time,
// the daemon's collectors count what they are told, and /metrics serves
// them all.
func TestMetrics(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := newFixture(t, c)
		reg := prometheus.NewRegistry()
		m, err := web.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := newHandler(t, f.store, web.Options{Registry: reg, Metrics: m})
		base := serve(t, h)

		// Before any event: every registered type's counters read 0
		// (created by the scrape), a type first seen by an event gets
		// all of its series, and the configured workers are a gauge.
		m.SetWorkers(4)
		m.TaskReenqueued("LateType")
		for _, tc := range []struct {
			name, typ string
			want      float64
		}{
			{"atpd_tasks_failed_total", typeOdd, 0}, {"atpd_tasks_started_total", typeSum, 0},
			{"atpd_tasks_finished_total", typeOdd, 0}, {"atpd_tasks_failed_total", "LateType", 0},
			{"atpd_tasks_reenqueued_total", "LateType", 1},
		} {
			// The first gather creates the series, the second reads them.
			metricValue(t, reg, tc.name, nil)
			if got, ok := metricValue(t, reg, tc.name, map[string]string{"type": tc.typ}); !ok || got != tc.want {
				t.Errorf("before any event: %s{type=%q} = %v (present %v), want %v", tc.name, tc.typ, got, ok, tc.want)
			}
		}
		if got, ok := metricValue(t, reg, "atpd_workers", nil); !ok || got != 4 {
			t.Errorf("atpd_workers = %v (present %v), want 4", got, ok)
		}
		if got, ok := metricValue(t, reg, "atpd_build_info", nil); !ok || got != 1 {
			t.Errorf("atpd_build_info = %v (present %v), want 1", got, ok)
		}

		counts := map[string]map[djangodb.Status]int{typeSum: {}, typeOdd: {}}
		for _, tk := range f.tasks {
			counts[tk.typ][tk.status]++
		}
		for typ, byStatus := range counts {
			for st := djangodb.Undefined; st <= djangodb.Failed; st++ {
				got, ok := metricValue(t, reg, "atpd_tasks", map[string]string{"type": typ, "status": st.String()})
				if !ok || got != float64(byStatus[st]) {
					t.Errorf("atpd_tasks{type=%q,status=%q} = %v (present %v), want %d", typ, st, got, ok, byStatus[st])
				}
			}
		}
		q, err := f.store.QueueStats(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]float64{"atpd_database_up": 1, "atpd_queue_waiting": float64(q.Waiting), "atpd_queue_limit": float64(q.Max)} {
			if got, ok := metricValue(t, reg, name, nil); !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
			}
		}
		before := time.Since(q.Oldest).Seconds()
		if age, _ := metricValue(t, reg, "atpd_queue_oldest_age_seconds", nil); age < before {
			t.Errorf("oldest age %vs, the oldest task waits since %v (%vs)", age, q.Oldest, before)
		}

		// What the daemon reports.
		m.TaskStarted(typeSum)
		m.TaskStarted(typeSum)
		m.TaskFinished(typeSum, djangodb.Finished, 1500*time.Millisecond)
		m.TaskFinished(typeSum, djangodb.Failed, 20*time.Millisecond)
		m.TaskReenqueued(typeOdd)
		m.SetBusy(3)
		for _, tc := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"atpd_tasks_started_total", map[string]string{"type": typeSum}, 2},
			{"atpd_tasks_finished_total", map[string]string{"type": typeSum}, 1},
			{"atpd_tasks_failed_total", map[string]string{"type": typeSum}, 1},
			{"atpd_tasks_reenqueued_total", map[string]string{"type": typeOdd}, 1},
			{"atpd_task_run_seconds", map[string]string{"type": typeSum}, 2},
			{"atpd_workers_busy", nil, 3},
		} {
			if got, ok := metricValue(t, reg, tc.name, tc.labels); !ok || got != tc.want {
				t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
			}
		}
		var nilMetrics *web.Metrics
		nilMetrics.TaskStarted("x") // a daemon without metrics holds a nil *Metrics
		nilMetrics.SetBusy(1)

		resp, body := get(t, base+"/metrics")
		if resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
		}
		for _, want := range []string{
			`atpd_tasks{status="FINISHED",type="SequenceSum"} 3`,
			`atpd_tasks_started_total{type="SequenceSum"} 2`,
			`atpd_task_run_seconds_bucket{type="SequenceSum",le="2.56"} 2`,
			"atpd_workers_busy 3",
			"atpd_database_up 1",
		} {
			if !strings.Contains(body, want+"\n") {
				t.Errorf("/metrics lacks %q", want)
			}
		}

		t.Run("database down", func(t *testing.T) {
			closed := openStore(t, c)
			closed.Close()
			reg := prometheus.NewRegistry()
			newHandler(t, closed, web.Options{Registry: reg})
			if up, ok := metricValue(t, reg, "atpd_database_up", nil); !ok || up != 0 {
				t.Errorf("atpd_database_up = %v (present %v), want 0", up, ok)
			}
			for _, name := range []string{"atpd_tasks", "atpd_queue_waiting", "atpd_queue_oldest_age_seconds"} {
				if _, ok := metricValue(t, reg, name, nil); ok {
					t.Errorf("%s reported although the database is down", name)
				}
			}
		})
	})
}

// TestServer: Start binds before returning, serves, and Stop ends it; a
// busy port fails Start.
func TestServer(t *testing.T) {
	store := openStore(t, dbCases[len(dbCases)-1])
	h, _ := newHandler(t, store, web.Options{})
	srv := web.NewServer("127.0.0.1:0", h, testLogger(t))
	if err := srv.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if resp, _ := get(t, "http://"+addr+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	busy := web.NewServer(addr, h, testLogger(t))
	if err := busy.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), addr) {
		busy.Stop()
		t.Errorf("second server on %s: %v, want an error naming the address", addr, err)
	}
	srv.Stop()
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", addr)
	}

	// Cancelling Start's context stops the server too.
	ctx, cancel := context.WithCancel(context.Background())
	srv2 := web.NewServer("127.0.0.1:0", h, testLogger(t))
	if err := srv2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	srv2.Stop() // waits for the shutdown the cancel began
	if _, err := http.Get("http://" + srv2.Addr() + "/healthz"); err == nil {
		t.Error("server still answers after its context was cancelled")
	}
}
