package atpdcmd

import (
	"log/slog"
	"os"
	"syscall"
)

// shutdownSignals are the signals the daemon turns into shutdown phases.
var shutdownSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}

type phase int

const (
	phaseRunning phase = iota
	phaseDraining
	phaseAborting
)

// shutdown turns signals into the daemon's shutdown phases:
//
//	running  --SIGINT-->  draining (Stop: finish running tasks)
//	running  --SIGTERM--> aborting (Abort: cancel and re-enqueue them)
//	draining --any------> aborting
//	aborting --any------> exit(128+signal) at once
//
// The reference daemon's SIGINT let workers finish and its SIGTERM killed
// them; the third step is the operator's way out when an abort hangs on an
// unreachable database.
type shutdown struct {
	stop, abort func() // daemon.Stop and daemon.Abort; they block
	exit        func(code int)
	log         *slog.Logger
	phase       phase
}

// watch handles sigs until done is closed, or until it has called exit.
func (s *shutdown) watch(sigs <-chan os.Signal, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case sig := <-sigs:
			if s.handle(sig) {
				return
			}
		}
	}
}

// handle moves to the next phase; it reports whether it called exit.
func (s *shutdown) handle(sig os.Signal) bool {
	switch {
	case s.phase == phaseRunning && sig == syscall.SIGINT:
		s.phase = phaseDraining
		s.log.Info("ATPD: termination in progress: SIGINT, no new tasks, letting running tasks finish (signal again to abort them)", "signal", sig.String())
		go s.stop()
	case s.phase == phaseRunning, s.phase == phaseDraining:
		s.phase = phaseAborting
		s.log.Info("ATPD: termination in progress: aborting running tasks and re-enqueueing them (signal again to exit at once)", "signal", sig.String())
		go s.abort()
	default:
		code := 128 + signalNumber(sig)
		s.log.Error("ATPD: signal during abort, exiting at once; tasks still RUNNING are left to the zombie sweep",
			"signal", sig.String(), "exit_code", code)
		s.exit(code)
		return true
	}
	return false
}

func signalNumber(sig os.Signal) int {
	if n, ok := sig.(syscall.Signal); ok {
		return int(n)
	}
	return int(syscall.SIGTERM)
}
