package e2e

import (
	"bufio"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LineLog collects a process's output lines and lets tests await one.
type LineLog struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

func newLineLog() *LineLog { return &LineLog{changed: make(chan struct{})} }

func (l *LineLog) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Snapshot returns the lines so far and a channel closed on the next one.
func (l *LineLog) Snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.changed
}

func (l *LineLog) String() string {
	lines, _ := l.Snapshot()
	return strings.Join(lines, "\n")
}

// failureLines bounds the output a failed test logs per process: a
// long-running daemon's whole log would bury the failure.
const failureLines = 300

// Proc is one child process (atpd, the Python daemon, a producer) whose
// stdout and stderr lines are kept.
type Proc struct {
	T      testing.TB
	Name   string // in failure messages
	Cmd    *exec.Cmd
	Out    *LineLog
	exited chan struct{}
	err    error // of Wait, valid once exited is closed
}

// Start runs bin with args in dir and env; the process is killed at the
// end of the test if it still runs, and its output is shown when the test
// failed.
func Start(t testing.TB, name, dir string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{T: t, Name: name, Out: newLineLog(), exited: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = env
	p.Cmd.Dir = dir
	stdout, err := p.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(nil, 4<<20)
			for sc.Scan() {
				p.Out.add(sc.Text())
			}
		}()
	}
	go func() {
		readers.Wait()
		p.err = p.Cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.Cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			lines := p.Lines()
			if len(lines) > failureLines {
				t.Logf("%s: %d output lines, the last %d:", name, len(lines), failureLines)
				lines = lines[len(lines)-failureLines:]
			}
			t.Logf("%s output:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

// PID is the process's id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Lines returns the output lines printed so far.
func (p *Proc) Lines() []string {
	l, _ := p.Out.Snapshot()
	return l
}

// Grep returns the output lines matching re.
func (p *Proc) Grep(re string) []string {
	rx := regexp.MustCompile(re)
	var out []string
	for _, l := range p.Lines() {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// WaitLine waits for an output line matching re and returns it.
func (p *Proc) WaitLine(re string, timeout time.Duration) string {
	p.T.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		lines, changed := p.Out.Snapshot()
		for _, l := range lines[seen:] {
			if rx.MatchString(l) {
				return l
			}
		}
		seen = len(lines)
		select {
		case <-changed:
		case <-p.exited:
			for _, l := range p.Lines()[seen:] {
				if rx.MatchString(l) {
					return l
				}
			}
			p.T.Fatalf("%s exited (%v) without printing a line matching %q", p.Name, p.err, re)
		case <-deadline.C:
			p.T.Fatalf("%s printed no line matching %q within %v", p.Name, re, timeout)
		}
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) {
	p.T.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.T.Fatalf("signal %v to %s: %v", sig, p.Name, err)
	}
}

// Wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it).
func (p *Proc) Wait(timeout time.Duration) int {
	p.T.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.T.Fatalf("%s still running after %v", p.Name, timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	p.T.Fatalf("%s: %v", p.Name, p.err)
	return -1
}

// Stop sends SIGINT (drain) and expects a clean exit.
func (p *Proc) Stop(timeout time.Duration) {
	p.T.Helper()
	p.Signal(syscall.SIGINT)
	if code := p.Wait(timeout); code != 0 {
		p.T.Errorf("%s exited with %d after SIGINT, want 0", p.Name, code)
	}
}
