package atpdcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/daemon"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/logfmt"
	"github.com/eoxserver/atpd/producer"
)

// The demo task type as EOxServer's tools/atp_demo.py registers it:
// registerTaskType("SequenceSum", "tools.atp_demo.handler", 60, 600, 3).
const (
	demoType       = "SequenceSum"
	demoTimeout    = 60
	demoTimeRet    = 600
	demoMaxRestart = 3

	defaultDemoCount = 200
	maxDemoCount     = 1_000_000
	// demoMaxSeq is the longest input sequence: task i sums 1..1+(i-1)%demoMaxSeq.
	demoMaxSeq = 10
)

func (a *app) demoCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "demo [--count N] [--db DSN] [-n N]",
		Short: "Run EOxServer's ATP demo: enqueue tasks and run them in-process",
		Long: `demo shows atpd at work without any setup: on atpd's own SQLite database
(` + config.DefaultDB + `, created on first use; or --db) it registers the task
type of EOxServer's tools/atp_demo.py (` + demoType + ` -> ` + gohandlers.DemoPath + `,
which atpd runs with its built-in Go port, so Python is not needed), enqueues
--count tasks, each summing a sequence of numbers, and runs the daemon in
this process until they are done. Tasks are enqueued as a patient producer
does: when the queue is full (--max-queue-size) the producer waits for the
daemon to make room. Progress goes to standard error; the summary (status
counts, elapsed time, throughput, and a check of every response) to standard
output.

The tasks stay in the database afterwards (for 600 s, the type's retention
time, while a daemon runs): look at them with atpd tasks, atpd log and atpd
response. Daemon flags (-n, --poll-interval, --http-addr, ...) apply as for
the daemon. The Django settings module of DJANGO_SETTINGS_MODULE is not
used: a demo never writes to a deployment's database unless told so with
--db or -s.

Exit status: 0 when every task finished with the right response, 1
otherwise, 128+signal when interrupted (SIGINT lets running tasks finish and
leaves the rest queued).`,
		RunE: a.runDemo,
	}, cobra.NoArgs)
	c.Flags().Int("count", defaultDemoCount, "number of tasks to enqueue")
	addFormatFlags(c, true)
	config.AddDaemonFlags(c.Flags())
	c.Flags().SortFlags = false
	return c
}

// demoRun is one run of the demo: its tasks are named prefix + number.
type demoRun struct {
	a      *app
	cfg    config.Config
	store  djangodb.Store
	prod   *producer.Producer
	log    *slog.Logger
	prog   *progress
	count  int
	prefix string

	id      int64
	metrics *webMetrics
}

func (r *demoRun) ident(i int) string { return fmt.Sprintf("%s%06d", r.prefix, i) }

// demoInput is task i's input, the tuple (1, 2, ..., n), and the response
// the demo handler stores for it: Python's str() of the float sum.
func demoInput(i int) (pickle.Tuple, string) {
	n := 1 + (i-1)%demoMaxSeq
	t := make(pickle.Tuple, n)
	for k := range n {
		t[k] = int64(k + 1)
	}
	return t, strconv.Itoa(n*(n+1)/2) + ".0"
}

// wakeNotifier wakes the in-process daemon after each enqueue, so that it
// does not wait for its next poll.
type wakeNotifier struct{ d *daemon.Daemon }

func (w wakeNotifier) Notify(context.Context) error {
	w.d.Wake()
	return nil
}

func (a *app) runDemo(cmd *cobra.Command, _ []string) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	count, _ := cmd.Flags().GetInt("count")
	if count < 1 || count > maxDemoCount {
		return &usageError{cmd: cmd, err: fmt.Errorf("--count %d is not between 1 and %d", count, maxDemoCount)}
	}
	ctx := cmd.Context()
	cfg, ignored, err := loadConfigAdjusted(ctx, cmd, func(c *config.Config) {
		// DJANGO_SETTINGS_MODULE says where a deployment's daemon works;
		// the demo must not enqueue hundreds of tasks there by accident.
		if c.Source(config.KeySettings) == config.SourceEnv && os.Getenv(config.EnvPrefix+"_SETTINGS") == "" {
			c.Settings = ""
			delete(c.Sources, config.KeySettings)
		}
	})
	if err != nil {
		return err
	}

	id := daemon.NewServerID()
	prog := newProgress(a.stderr, 2*time.Second)
	level := cfg.Level()
	if cfg.Source(config.KeyLogLevel) == config.SourceDefault {
		// Per-task INFO lines would bury the progress; problems still show.
		level = slog.LevelWarn
	}
	h, err := logfmt.New(prog, cfg.LogFormat, logfmt.Options{Level: level, ServerID: daemon.FormatServerID(id)})
	if err != nil {
		return err
	}
	log := slog.New(h)
	logIgnoredOptions(log, cfg, ignored)

	// The demo's database is the one it was pointed at for the purpose:
	// it gets the tables if it lacks them (`atpd migrate`).
	store, err := openStoreMigrating(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer store.Close()
	ex, stopExecutor, _, err := buildExecutor(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer stopExecutor()
	metrics, err := newWebMetrics(cfg)
	if err != nil {
		return err
	}
	d, err := daemon.New(store, ex, daemonConfig(cfg, id, metrics, log))
	if err != nil {
		return err
	}
	run := &demoRun{
		a: a, cfg: cfg, store: store, log: log, prog: prog, count: count, id: id, metrics: metrics,
		prefix: "demo-" + time.Now().UTC().Format("20060102-150405") + "-" + randomHex(2) + "-",
		prod: producer.New(store, producer.Options{
			Logger: log, Notifier: wakeNotifier{d},
			// The in-process daemon makes room within milliseconds.
			MinBackoff: 2 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		}),
	}
	typ, err := run.prod.RegisterType(ctx, djangodb.TypeSpec{
		Identifier: demoType, Handler: gohandlers.DemoPath,
		Timeout: demoTimeout, TimeRet: demoTimeRet, MaxRestart: demoMaxRestart,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "atpd demo: %d %s tasks (handler %s) on %s, %d workers\n",
		count, typ.Identifier, typ.Handler, store.Describe(), cfg.Workers)
	return run.execute(ctx, d, stopExecutor, format)
}

// execute runs the daemon and the producer until every task is done or a
// signal ends the demo, then prints the summary.
func (r *demoRun) execute(ctx context.Context, d *daemon.Daemon, stopExecutor func(), format string) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, shutdownSignals...)
	defer signal.Stop(sigs)

	if err := d.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	addr, stopHTTP, err := startHTTP(ctx, r.cfg, r.metrics, r.store, d, daemon.FormatServerID(r.id), r.log, nil)
	if err != nil {
		d.Abort()
		return err
	}
	defer stopHTTP()
	if addr != "" {
		fmt.Fprintf(r.a.stderr, "atpd demo: task pages on http://%s/tasks\n", addr)
	}

	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	start := time.Now()
	var (
		wg      sync.WaitGroup
		prodErr error
	)
	produced := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(produced)
		if prodErr = r.produce(pctx); prodErr != nil {
			// The summary reports it; without all tasks the watch would
			// wait forever.
			go d.Stop()
		}
	}()

	// Signals: the first stops producing and drains (SIGINT) or aborts
	// (SIGTERM) the daemon, as for the daemon command.
	var (
		sigMu  sync.Mutex
		caught os.Signal
	)
	forward := make(chan os.Signal)
	sd := &shutdown{
		stop:  func() { stopProducing(); d.Stop() },
		abort: func() { stopProducing(); d.Abort() },
		log:   r.log,
		exit: func(code int) {
			r.prog.clear()
			stopExecutor()
			os.Exit(code)
		},
	}
	go func() {
		for {
			select {
			case s := <-sigs:
				sigMu.Lock()
				if caught == nil {
					caught = s
				}
				sigMu.Unlock()
				select {
				case forward <- s:
				case <-d.Done():
					return
				}
			case <-d.Done():
				return
			}
		}
	}()
	go sd.watch(forward, d.Done())

	allDone := make(chan struct{})
	var watchErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if watchErr = r.watch(pctx, produced, start, allDone); watchErr != nil {
			stopProducing()
			go d.Stop()
		}
	}()

	select {
	case <-allDone:
		d.Stop()
	case <-d.Done():
	}
	<-d.Done()
	stopProducing()
	wg.Wait()
	elapsed := time.Since(start)
	r.prog.clear()

	sigMu.Lock()
	sig := caught
	sigMu.Unlock()
	sum, err := r.summarize(elapsed)
	if err != nil {
		return err
	}
	sum.Interrupted = sig != nil
	if err := r.print(sum, format); err != nil {
		return err
	}
	switch {
	case sig != nil:
		return &exitCodeError{code: 128 + signalNumber(sig)}
	case prodErr != nil:
		return fmt.Errorf("demo: enqueueing stopped: %w", prodErr)
	case watchErr != nil:
		return fmt.Errorf("demo: %w", watchErr)
	case !sum.ok():
		return fmt.Errorf("demo: %d of %d tasks did not finish with the expected response", sum.Total-sum.Correct, sum.Total)
	}
	return nil
}

// produce enqueues the tasks, waiting for room when the queue is full.
func (r *demoRun) produce(ctx context.Context) error {
	for i := 1; i <= r.count; i++ {
		in, _ := demoInput(i)
		if _, err := r.prod.EnqueueWait(ctx, demoType, r.ident(i), in, ""); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: the summary says how far it got
			}
			return err
		}
	}
	return nil
}

// watch reads the demo's tasks from the database, shows the progress, and
// closes allDone once every task is FINISHED or FAILED. The database, not
// the daemon's counters, is the judge: another daemon on the same queue
// may run some of the tasks.
func (r *demoRun) watch(ctx context.Context, produced <-chan struct{}, start time.Time, allDone chan<- struct{}) error {
	const minInterval, maxInterval = 100 * time.Millisecond, 2 * time.Second
	interval := minInterval
	failures := 0
	for {
		t0 := time.Now()
		c, err := r.counts(ctx)
		took := time.Since(t0)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			r.log.Warn("demo: cannot read the demo's tasks; retrying", "database", r.store.Describe(), "attempt", failures, "error", err)
			if failures >= 10 {
				return fmt.Errorf("cannot read the demo's tasks from %s: %w", r.store.Describe(), err)
			}
		default:
			failures = 0
			st := progressState{done: c.finished + c.failed, total: r.count, finished: c.finished, failed: c.failed,
				waiting: c.waiting, elapsed: time.Since(start)}
			finished := false
			select {
			case <-produced:
				finished = st.done >= r.count
			default:
			}
			r.prog.update(st, finished)
			if finished {
				close(allDone)
				return nil
			}
		}
		// Listing the tasks costs more as they grow; keep it a small part
		// of the time.
		interval = min(max(minInterval, 10*took), maxInterval)
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

type demoCounts struct {
	finished, failed, other, waiting int
}

func (r *demoRun) counts(ctx context.Context) (demoCounts, error) {
	var c demoCounts
	list, err := r.instances(ctx)
	if err != nil {
		return c, err
	}
	for _, in := range list {
		switch in.Status {
		case djangodb.Finished:
			c.finished++
		case djangodb.Failed:
			c.failed++
		default:
			c.other++
		}
	}
	qctx, cancel := context.WithTimeout(ctx, opsTimeout)
	defer cancel()
	q, err := r.store.QueueStats(qctx)
	if err != nil {
		return c, err
	}
	c.waiting = q.Waiting
	return c, nil
}

// instances lists this run's tasks.
func (r *demoRun) instances(ctx context.Context) ([]djangodb.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, opsTimeout)
	defer cancel()
	all, err := r.store.Instances(ctx, djangodb.InstanceFilter{Type: demoType})
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, in := range all {
		if strings.HasPrefix(in.Identifier, r.prefix) {
			out = append(out, in)
		}
	}
	return out, nil
}

// demoSummary is what the demo prints at the end.
type demoSummary struct {
	Database    string         `json:"database"`
	Type        string         `json:"type"`
	Handler     string         `json:"handler"`
	Prefix      string         `json:"identifier_prefix"`
	Workers     int            `json:"workers"`
	Total       int            `json:"total"`
	Enqueued    int            `json:"enqueued"`
	Statuses    map[string]int `json:"statuses"`
	Correct     int            `json:"correct_responses"`
	Wrong       []string       `json:"wrong,omitempty"`
	Elapsed     float64        `json:"elapsed_seconds"`
	Throughput  float64        `json:"tasks_per_second"`
	Interrupted bool           `json:"interrupted"`
	Sample      string         `json:"sample_identifier,omitempty"`
}

func (s demoSummary) ok() bool { return !s.Interrupted && s.Correct == s.Total }

// summarize reads every task of the run back and checks its response.
func (r *demoRun) summarize(elapsed time.Duration) (demoSummary, error) {
	ctx := context.Background()
	list, err := r.instances(ctx)
	if err != nil {
		return demoSummary{}, fmt.Errorf("demo: read the tasks back: %w", err)
	}
	s := demoSummary{
		Database: r.store.Describe(), Type: demoType, Handler: gohandlers.DemoPath, Prefix: r.prefix,
		Workers: r.cfg.Workers, Total: r.count, Enqueued: len(list), Statuses: map[string]int{},
		Elapsed: elapsed.Seconds(),
	}
	done := 0
	for _, in := range list {
		s.Statuses[in.Status.String()]++
		if in.Status.Terminal() {
			done++
		}
		if in.Status != djangodb.Finished {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(in.Identifier, r.prefix))
		if err != nil {
			continue
		}
		_, want := demoInput(n)
		rctx, cancel := context.WithTimeout(ctx, opsTimeout)
		resp, err := r.store.Response(rctx, in.ID)
		cancel()
		switch {
		case err != nil:
			s.Wrong = append(s.Wrong, fmt.Sprintf("%s: no response: %v", in.Identifier, err))
		case string(resp.Data) != want || resp.MimeType != "text/plain":
			s.Wrong = append(s.Wrong, fmt.Sprintf("%s: response %q (%s), want %q (text/plain)", in.Identifier, resp.Data, resp.MimeType, want))
		default:
			s.Correct++
			if s.Sample == "" || n == demoMaxSeq/2 {
				s.Sample = in.Identifier
			}
		}
	}
	if elapsed > 0 {
		s.Throughput = float64(done) / elapsed.Seconds()
	}
	return s, nil
}

func (r *demoRun) print(s demoSummary, format string) error {
	w := r.a.stdout
	if format == formatJSON {
		return writeJSON(w, s)
	}
	verdict := "done"
	if s.Interrupted {
		verdict = "interrupted"
	}
	fmt.Fprintf(w, "atpd demo %s: %d of %d %s tasks enqueued on %s, %d workers\n", verdict, s.Enqueued, s.Total, s.Type, s.Database, s.Workers)
	t := newTable(w)
	for _, st := range []djangodb.Status{djangodb.Finished, djangodb.Failed, djangodb.Accepted, djangodb.Scheduled, djangodb.Running, djangodb.Paused} {
		if n := s.Statuses[st.String()]; n > 0 || st.Terminal() {
			t.row("  "+st.String(), strconv.Itoa(n))
		}
	}
	t.row("  elapsed", time.Duration(s.Elapsed*float64(time.Second)).Round(time.Millisecond).String())
	t.row("  throughput", fmt.Sprintf("%.1f tasks/s", s.Throughput))
	t.row("  responses", fmt.Sprintf("%d of %d correct", s.Correct, s.Total))
	if err := t.flush(); err != nil {
		return err
	}
	for i, wrong := range s.Wrong {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more\n", len(s.Wrong)-i)
			break
		}
		fmt.Fprintf(w, "  wrong: %s\n", cell(wrong))
	}
	if s.Sample != "" {
		db := ""
		if r.cfg.Source(config.KeyDB) == config.SourceFlag {
			db = " --db " + shellQuote(djangodb.RedactDSN(r.cfg.DB))
		}
		fmt.Fprintf(w, "Look at one:  atpd log%s %s %s\n              atpd response%s %s %s\n", db, s.Type, s.Sample, db, s.Type, s.Sample)
		fmt.Fprintf(w, "Browse them:  atpd%s --http 127.0.0.1:8080   and open http://127.0.0.1:8080/tasks\n", db)
		if _, err := exec.LookPath("atpd"); err != nil {
			fmt.Fprintf(w, "(atpd is not on PATH: `go install ./cmd/atpd` puts it in $(go env GOPATH)/bin, or use `go run ./cmd/atpd` instead of `atpd`)\n")
		}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails, see crypto/rand
	return hex.EncodeToString(b)
}
