package pyhandlers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// exitDrain is how long, after a worker died, Execute still waits for a
// frame the worker sent just before dying.
const exitDrain = 200 * time.Millisecond

// syncTimeout bounds the wait for the sync lines after a task while the
// output readers make no progress; a worker whose sync lines do not arrive
// (a handler redirected fd 1) is replaced.
const syncTimeout = time.Second

// frameSlack is room for the fields around the largest payload.
const frameSlack = 64 << 10

// worker is one CPython process running worker.py.
type worker struct {
	pool  *Pool
	cmd   *exec.Cmd
	pid   int
	nonce string
	log   *slog.Logger

	req  *os.File // our end of the worker's fd 3
	resp *os.File // our end of the worker's fd 4

	frames    chan message  // closed when resp is done; frameErr says why
	frameErr  error         // set before frames is closed
	exited    chan struct{} // closed when the process was reaped
	state     *os.ProcessState
	abandoned chan struct{} // closed once nobody will read frames again
	abandon   sync.Once
	term      sync.Once

	synced  chan syncMark // sync lines seen by the output readers
	current atomic.Pointer[taskOutput]
	lines   atomic.Int64 // lines the output readers have read, for awaitSync

	seq    uint64
	tasks  int
	broken bool // must not run another task
}

type syncMark struct {
	stream int // 1 stdout, 2 stderr
	seq    uint64
}

// taskOutput attributes handler output to the task that is running.
type taskOutput struct {
	log     *slog.Logger
	max     int64 // < 0: no limit
	lines   atomic.Int64
	dropped atomic.Int64
}

func newNonce() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// spawn starts a worker and waits until it is ready (django.setup() done).
func (p *Pool) spawn(ctx context.Context) (*worker, error) {
	cfg := &p.cfg
	w := &worker{
		pool:      p,
		nonce:     newNonce(),
		frames:    make(chan message),
		exited:    make(chan struct{}),
		abandoned: make(chan struct{}),
		synced:    make(chan syncMark, 16),
	}
	var pipes []*os.File // every end, closed on failure
	closeAll := func() {
		for _, f := range pipes {
			f.Close()
		}
	}
	pipe := func() (r, wr *os.File, err error) {
		r, wr, err = os.Pipe()
		if err == nil {
			pipes = append(pipes, r, wr)
		}
		return r, wr, err
	}
	reqR, reqW, err1 := pipe()
	respR, respW, err2 := pipe()
	outR, outW, err3 := pipe()
	errR, errW, err4 := pipe()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		closeAll()
		return nil, fmt.Errorf("pyhandlers: start python worker: pipes: %w", err)
	}
	w.req, w.resp = reqW, respR

	cmd := exec.Command(cfg.Python, p.script)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{reqR, respW} // fds 3 and 4
	// Its own process group: Ctrl-C on the daemon's terminal is the
	// daemon's to handle, and a timed-out handler's subprocesses are
	// signalled with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.cmd = cmd

	if err := p.register(w); err != nil {
		closeAll()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		closeAll()
		p.unregister(w)
		p.readers.Add(-2)
		return nil, fmt.Errorf("pyhandlers: start python worker %s: %w", cfg.Python, err)
	}
	for _, f := range []*os.File{reqR, respW, outW, errW} {
		f.Close()
	}
	w.pid = cmd.Process.Pid
	w.log = p.log.With("worker_pid", w.pid)

	go w.wait()
	go w.readFrames()
	go w.readOutput(outR, 1)
	go w.readOutput(errR, 2)

	fields := [][]byte{[]byte(w.nonce), []byte(cfg.SettingsModule)}
	for _, d := range cfg.PythonPath {
		fields = append(fields, []byte(d))
	}
	if err := w.hello(ctx, encodeFrame(kindInit, fields...)); err != nil {
		w.stop(false)
		return nil, err
	}
	return w, nil
}

// hello sends the init frame and waits for the worker to be ready.
func (w *worker) hello(ctx context.Context, init []byte) error {
	p := w.pool
	timer := time.NewTimer(p.cfg.StartTimeout)
	defer timer.Stop()
	if err := w.write(ctx, init); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pyhandlers: start python worker: %w", ctx.Err())
		}
		// A worker that dies at once (not a Python at all) closes its
		// pipe; its exit status says more than EPIPE.
		select {
		case <-w.exited:
			return w.startFailure()
		case <-time.After(p.cfg.KillGrace):
			return fmt.Errorf("pyhandlers: start python worker %s: send init: %w", p.cfg.Python, err)
		}
	}
	for {
		select {
		case m, ok := <-w.frames:
			if !ok {
				return w.startFailure()
			}
			switch {
			case m.kind == kindHello && len(m.fields) >= 1:
				w.log.Info("python worker started", "python", string(m.fields[0]), "settings_module", p.cfg.SettingsModule)
				return nil
			case m.kind == kindFatal && len(m.fields) >= 2:
				w.log.Error("python worker failed to start", "error", string(m.fields[0]), "traceback", string(m.fields[1]))
				return fmt.Errorf("pyhandlers: start python worker: %s", m.fields[0])
			default:
				return fmt.Errorf("pyhandlers: start python worker: protocol error: unexpected %q frame", m.kind)
			}
		case <-w.exited:
			if m, ok := w.frameAfterExit(); ok && m.kind == kindFatal && len(m.fields) >= 2 {
				w.log.Error("python worker failed to start", "error", string(m.fields[0]), "traceback", string(m.fields[1]))
				return fmt.Errorf("pyhandlers: start python worker: %s", m.fields[0])
			}
			return w.startFailure()
		case <-timer.C:
			return fmt.Errorf("pyhandlers: start python worker: not ready after %v", p.cfg.StartTimeout)
		case <-ctx.Done():
			return fmt.Errorf("pyhandlers: start python worker: %w", ctx.Err())
		case <-p.stopping:
			return ErrStopped
		}
	}
}

func (w *worker) startFailure() error {
	select {
	case <-w.exited:
		return fmt.Errorf("pyhandlers: start python worker %s: %w (its stderr is in the log)", w.pool.cfg.Python, w.exitError())
	case <-time.After(w.pool.cfg.KillGrace):
		return fmt.Errorf("pyhandlers: start python worker %s: closed its protocol pipe: %v", w.pool.cfg.Python, w.frameErr)
	}
}

func (w *worker) wait() {
	w.cmd.Wait()
	w.state = w.cmd.ProcessState
	close(w.exited)
}

// exitError describes how the process ended; call after exited is closed.
func (w *worker) exitError() *ExitError {
	ws, ok := w.state.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return &ExitError{Signal: ws.Signal()}
	}
	return &ExitError{Status: w.state.ExitCode()}
}

func (w *worker) dead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

func (w *worker) readFrames() {
	defer close(w.frames)
	r := bufio.NewReaderSize(w.resp, 64<<10)
	for {
		payload, err := readFrame(r, w.pool.cfg.MaxMessageSize+frameSlack)
		if err == nil {
			var m message
			m, err = decodeMessage(payload)
			if err == nil {
				select {
				case w.frames <- m:
					continue
				case <-w.abandoned:
					return
				}
			}
		}
		w.frameErr = err
		return
	}
}

// frameAfterExit returns a frame the worker sent just before it died.
func (w *worker) frameAfterExit() (message, bool) {
	t := time.NewTimer(exitDrain)
	defer t.Stop()
	select {
	case m, ok := <-w.frames:
		return m, ok
	case <-t.C:
		return message{}, false
	}
}

// aLongTimeAgo is a write deadline in the past: it interrupts a blocked write.
var aLongTimeAgo = time.Unix(1, 0)

// write sends one frame; ctx interrupts a write the worker does not read.
// The deadline that interrupts it is cleared again, so that a ctx ending
// just as the write completes cannot poison the next write to a healthy
// worker.
func (w *worker) write(ctx context.Context, frame []byte) error {
	var (
		mu          sync.Mutex
		finished    bool
		interrupted bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			interrupted = true
			w.req.SetWriteDeadline(aLongTimeAgo)
		}
	})
	_, err := w.req.Write(frame)
	stop()
	mu.Lock()
	finished = true
	if interrupted {
		w.req.SetWriteDeadline(time.Time{})
	}
	mu.Unlock()
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// stop ends the worker and waits until it is reaped. graceful lets an idle
// worker exit on end of input; otherwise its process group gets SIGTERM at
// once. SIGKILL follows after KillGrace either way.
func (w *worker) stop(graceful bool) {
	w.term.Do(func() {
		w.req.Close()
		if !graceful {
			w.signal(syscall.SIGTERM)
		}
		t := time.NewTimer(w.pool.cfg.KillGrace)
		defer t.Stop()
		select {
		case <-w.exited:
		case <-t.C:
			w.log.Warn("python worker did not exit in time, killing it", "grace", w.pool.cfg.KillGrace)
			w.signal(syscall.SIGKILL)
			<-w.exited
		}
		w.abandon.Do(func() { close(w.abandoned) })
		w.resp.Close()
		w.pool.unregister(w)
	})
	<-w.exited
}

// signal signals the worker's process group, so that the handler's own
// subprocesses stop with it.
func (w *worker) signal(sig syscall.Signal) {
	if err := syscall.Kill(-w.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		w.log.Warn("cannot signal python worker", "signal", sig.String(), "error", err)
	}
}

// readOutput logs one of the worker's output streams line by line, never
// holding more than one line.
func (w *worker) readOutput(f *os.File, stream int) {
	p := w.pool
	defer p.readers.Done()
	defer f.Close()
	name, level := "stdout", slog.LevelInfo
	if stream == 2 {
		name, level = "stderr", slog.LevelWarn
	}
	marker := []byte("atpd-sync " + w.nonce + " ")
	r := bufio.NewReaderSize(f, p.cfg.MaxLineLength)
	skipping := false // inside a truncated line
	for {
		line, err := r.ReadSlice('\n')
		w.lines.Add(1)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !skipping {
				w.logLine(name, level, line, true)
				skipping = true
			}
			continue
		case skipping:
			skipping = false
		default:
			line = bytes.TrimRight(line, "\r\n")
			if rest, ok := bytes.CutPrefix(line, marker); ok {
				if seq, perr := strconv.ParseUint(string(rest), 10, 64); perr == nil {
					select {
					case w.synced <- syncMark{stream: stream, seq: seq}:
					default: // nobody waits any more; the worker is replaced
					}
					continue
				}
			}
			if len(line) > 0 {
				w.logLine(name, level, line, false)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				w.log.Warn("cannot read python worker output", "stream", name, "error", err)
			}
			return
		}
	}
}

func (w *worker) logLine(stream string, level slog.Level, line []byte, truncated bool) {
	log := w.log
	if log == nil {
		// Output before spawn stored the logger cannot happen: the
		// readers start after it. Guard anyway rather than crash.
		log = w.pool.log
	}
	if out := w.current.Load(); out != nil {
		if n := out.lines.Add(1); out.max >= 0 && n > out.max {
			out.dropped.Add(1)
			return
		}
		log = out.log
	}
	attrs := []slog.Attr{slog.String("stream", stream), slog.String("line", string(bytes.ToValidUTF8(line, []byte("\uFFFD"))))}
	if truncated {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	log.LogAttrs(context.Background(), level, "python handler output", attrs...)
}

// awaitSync waits until both output streams have passed the task's sync
// line, so that all of the task's output was logged with the task. The
// lines are in the pipes before the worker reports the task done, so only a
// backlog of output can delay them: the wait goes on while the readers make
// progress. It reports false when a sync line did not come.
func (w *worker) awaitSync(ctx context.Context, seq uint64, stdoutOK, stderrOK bool) bool {
	need := map[int]bool{1: stdoutOK, 2: stderrOK}
	t := time.NewTimer(syncTimeout)
	defer t.Stop()
	seen := w.lines.Load()
	for need[1] || need[2] {
		select {
		case m := <-w.synced:
			if m.seq == seq {
				need[m.stream] = false
			}
		case <-t.C:
			if now := w.lines.Load(); now != seen {
				seen = now
				t.Reset(syncTimeout)
				continue
			}
			return false
		case <-ctx.Done():
			return false
		case <-w.exited:
			return false
		}
	}
	return stdoutOK && stderrOK
}
