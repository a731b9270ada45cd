package reliability

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lineLog collects a process's output lines and lets tests await one.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *lineLog) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.changed
}

// proc is one child process (atpd, the Python daemon, a producer) whose
// stdout and stderr lines are kept.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    *lineLog
	exited chan struct{}
	err    error // of Wait, valid once exited is closed
}

// baseEnv is the environment without anything that would configure atpd
// or Django behind the test's back.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ATPD_") || k == "DJANGO_SETTINGS_MODULE" || k == "PYTHONPATH" || k == "RELIABILITY_LEDGER_TAG" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1")
}

// startProc runs bin with args; the process is killed at the end of the
// test if it still runs, and its output is shown when the test failed.
func startProc(t *testing.T, name, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: newLineLog(), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Dir = dir
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
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
				p.out.add(sc.Text())
			}
		}()
	}
	go func() {
		readers.Wait()
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			lines, _ := p.out.snapshot()
			if len(lines) > 300 {
				t.Logf("%s: %d output lines, the last 300:", name, len(lines))
				lines = lines[len(lines)-300:]
			}
			t.Logf("%s output:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) lines() []string {
	l, _ := p.out.snapshot()
	return l
}

// waitLine waits for an output line matching re and returns it.
func (p *proc) waitLine(re string, timeout time.Duration) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		lines, changed := p.out.snapshot()
		for _, l := range lines[seen:] {
			if rx.MatchString(l) {
				return l
			}
		}
		seen = len(lines)
		select {
		case <-changed:
		case <-p.exited:
			for _, l := range p.lines()[seen:] {
				if rx.MatchString(l) {
					return l
				}
			}
			p.t.Fatalf("%s exited (%v) without printing a line matching %q", p.name, p.err, re)
		case <-deadline.C:
			p.t.Fatalf("%s printed no line matching %q within %v", p.name, re, timeout)
		}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it).
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("%s still running after %v", p.name, timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	p.t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// stop sends SIGINT (drain) and expects a clean exit.
func (p *proc) stop(timeout time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGINT)
	if code := p.wait(timeout); code != 0 {
		p.t.Errorf("%s exited with %d after SIGINT, want 0", p.name, code)
	}
}

// rss returns the process's resident set size from /proc, in bytes.
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// logRecord is one JSON line of atpd's log (--log-format json).
type logRecord map[string]any

func (r logRecord) str(key string) string {
	s, _ := r[key].(string)
	return s
}

// records parses the JSON log lines printed so far; other lines are skipped.
func (p *proc) records() []logRecord {
	var out []logRecord
	for _, l := range p.lines() {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var r logRecord
		if json.Unmarshal([]byte(l), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// countRecords counts log records whose message matches re.
func (p *proc) countRecords(re string) int {
	rx := regexp.MustCompile(re)
	n := 0
	for _, r := range p.records() {
		if rx.MatchString(r.str("msg")) {
			n++
		}
	}
	return n
}

// grep returns the output lines matching re.
func (p *proc) grep(re string) []string {
	rx := regexp.MustCompile(re)
	var out []string
	for _, l := range p.lines() {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor polls cond until it holds or timeout passes; describe says what
// was awaited and the state last seen. The tests poll the database, which
// offers no signal to wait on; each poll is one cheap query.
func waitFor(t *testing.T, timeout time.Duration, describe func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
