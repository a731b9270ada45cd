package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"testing"
	"time"
)

// Exit statuses of producer.py (and of its batch lines).
const (
	exitQueueFull = 3
	exitNotFound  = 4
)

// liveProducer is a `producer.py batch` process, a Django producer driven
// one tracker call at a time, so that the test can react to each answer.
type liveProducer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func (d *rdb) liveProducer() *liveProducer {
	d.t.Helper()
	cmd := exec.Command(d.py, "producer.py", "batch")
	cmd.Dir, cmd.Env = d.integ, d.djEnv
	stdin, err := cmd.StdinPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	p := &liveProducer{t: d.t, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	p.out.Buffer(nil, 16<<20)
	d.t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			d.t.Errorf("producer.py batch: %v: %s", err, stderr.String())
		}
	})
	return p
}

// answer is one batch line's outcome.
type answer struct {
	Exit    int             `json:"exit"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
}

// do runs one producer command.
func (p *liveProducer) do(args ...string) answer {
	p.t.Helper()
	a, err := p.tryDo(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return a
}

// tryDo runs one producer command; it may be called from any goroutine.
func (p *liveProducer) tryDo(args ...string) (answer, error) {
	line, _ := json.Marshal(args)
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return answer{}, fmt.Errorf("producer.py batch: write: %w", err)
	}
	if !p.out.Scan() {
		return answer{}, fmt.Errorf("producer.py batch: no answer to %v: %v", args, p.out.Err())
	}
	var a answer
	if err := json.Unmarshal(p.out.Bytes(), &a); err != nil {
		return answer{}, fmt.Errorf("producer.py batch: answer %q: %w", p.out.Text(), err)
	}
	return a, nil
}

// enqueue enqueues like a patient producer: on QueueFull it backs off and
// tries again. Any other failure is returned to the caller, which decides
// whether it may happen.
func (p *liveProducer) enqueue(timeout time.Duration, args ...string) (a answer, full int) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a = p.do(append([]string{"enqueue"}, args...)...)
		if a.Exit != exitQueueFull {
			return a, full
		}
		full++
		if time.Now().After(deadline) {
			p.t.Fatalf("enqueue %v: queue still full after %v", args, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
