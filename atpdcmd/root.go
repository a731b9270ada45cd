package atpdcmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/daemon"
	"github.com/eoxserver/atpd/internal/buildinfo"
)

// runDaemon is the root command: start-up, the task loop, and shutdown on
// signals.
func (a *app) runDaemon(cmd *cobra.Command, _ []string) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, shutdownSignals...)
	defer signal.Stop(sigs)

	// A signal during start-up (a slow settings import, an unreachable
	// database) abandons the start: nothing has been taken from the queue.
	startCtx, cancelStart := context.WithCancelCause(cmd.Context())
	defer cancelStart(nil)
	var early os.Signal
	stopEarly, earlyDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(earlyDone)
		select {
		case early = <-sigs:
			cancelStart(fmt.Errorf("%s during start-up", early))
		case <-stopEarly:
		}
	}()
	endEarly := func() error {
		close(stopEarly)
		<-earlyDone
		if early != nil {
			return &exitCodeError{code: 128 + signalNumber(early)}
		}
		return nil
	}

	id := daemon.NewServerID()
	sid := daemon.FormatServerID(id)
	cfg, ignored, err := loadConfig(startCtx, cmd)
	if err != nil {
		if e := endEarly(); e != nil {
			return e
		}
		return err
	}
	log, err := newLogger(a.stdout, cfg, sid)
	if err != nil {
		endEarly()
		return err
	}
	fail := func(err error) error {
		if e := endEarly(); e != nil {
			log.Info("ATPD: start-up interrupted by a signal", "signal", early.String())
			return e
		}
		log.Error("ATPD: start-up failed", "error", err)
		return err
	}

	host, _ := os.Hostname()
	log.Info("ATPD Asynchronous Task Processing Daemon is starting")
	log.Info("ATPD: version=" + buildinfo.Get().String())
	log.Info(fmt.Sprintf("ATPD: id=%s (%d)", sid, id))
	log.Info("ATPD: hostname=" + host)
	log.Info(fmt.Sprintf("ATPD: pid=%d", os.Getpid()))
	log.Info("ATPD: database="+djangodb.RedactDSN(cfg.DB), "source", string(cfg.Source(config.KeyDB)),
		"use_tz", cfg.UseTZ, "time_zone", cfg.TimeZone)
	if cfg.Settings != "" {
		log.Info("ATPD: '"+cfg.Settings+"' ... is set as the Django settings module", "db_alias", cfg.DBAlias)
	}
	for _, p := range cfg.PythonPath {
		log.Info("ATPD: '" + p + "' ... adding to Python search path.")
	}
	log.Info(fmt.Sprintf("ATPD: workers=%d", cfg.Workers))
	log.Info("ATPD: task pick-up and writes", "listen", cfg.Listen, "poll_interval", cfg.PollInterval,
		"sync_task_writes", cfg.SyncTaskWrites, "flush_delay", cfg.FlushDelay)
	logIgnoredOptions(log, cfg, ignored)

	store, err := openStore(startCtx, cfg, log)
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	if err := probeWrites(startCtx, store); err != nil {
		return fail(err)
	}
	logJournalMode(startCtx, store, cfg, log)
	metrics, err := newWebMetrics(cfg)
	if err != nil {
		return fail(err)
	}
	ex, stopExecutor, shadowed, err := buildExecutor(startCtx, cfg, log, metrics.shadowCompared)
	if err != nil {
		return fail(err)
	}
	defer stopExecutor()

	d, err := daemon.New(store, ex, daemonConfig(cfg, id, metrics, log))
	if err != nil {
		return fail(err)
	}
	// Before the daemon takes any task: a busy port fails the start.
	_, stopHTTP, err := startHTTP(startCtx, cfg, metrics, store, d, sid, log, shadowed)
	if err != nil {
		return fail(err)
	}
	defer stopHTTP()
	if e := endEarly(); e != nil {
		log.Info("ATPD: start-up interrupted by a signal", "signal", early.String())
		return e
	}
	// The daemon's own context is not the start-up one: cancelling it
	// would abort, and shutdown is the signals' business.
	if err := d.Start(context.WithoutCancel(cmd.Context())); err != nil {
		log.Error("ATPD: start failed", "error", err)
		return err
	}
	log.Info("ATPD: started", "server_id", sid, "workers", cfg.Workers)

	sd := &shutdown{stop: d.Stop, abort: d.Abort, log: log, exit: func(code int) {
		// Leave the worker processes no orphans: they are in their own
		// process groups and would outlive os.Exit.
		stopped := make(chan struct{})
		go func() { stopExecutor(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(time.Second):
		}
		os.Exit(code)
	}}
	sd.watch(sigs, d.Done())
	<-d.Done()
	logStats(log, d.Stats())
	stopExecutor()
	log.Info("ATPD: terminated")
	return nil
}

func logStats(log *slog.Logger, s daemon.Stats) {
	log.Info("ATPD: task counts", "claimed", s.Claimed, "started", s.Started, "finished", s.Finished,
		"failed", s.Failed, "reenqueued", s.Reenqueued, "timed_out", s.TimedOut)
}
