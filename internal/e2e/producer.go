package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/testdb"
)

// Producer runs the Python scripts of integration/ (producer.py, the
// Django-ORM tracker, above all) with the Django settings of one database.
type Producer struct {
	T       testing.TB
	Py      string   // python3 with Django
	Dir     string   // integration/
	Env     []string // Django settings
	Timeout time.Duration
	Buffer  int // the longest output line of a batch
}

// NewProducer is a Producer for the migrated database dsn, with room for
// Django's start-up on a loaded machine.
func NewProducer(t testing.TB, dsn string, cfg testdb.Config) *Producer {
	t.Helper()
	return &Producer{
		T:       t,
		Py:      testdb.Python(t),
		Dir:     filepath.Join(testdb.RepoRoot(t), "integration"),
		Env:     testdb.DjangoEnv(t, dsn, cfg),
		Timeout: 2 * time.Minute,
		Buffer:  64 << 20,
	}
}

// Exec runs a script with args and returns its output, exit status and
// standard error; only a script that could not run fails the test.
func (p *Producer) Exec(stdin []byte, args ...string) (out []byte, code int, stderr string) {
	p.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Py, args...)
	cmd.Dir, cmd.Env = p.Dir, p.Env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out, 0, errBuf.String()
	case errors.As(err, &exit) && ctx.Err() == nil:
		return out, exit.ExitCode(), errBuf.String()
	}
	p.T.Fatalf("python %s: %v: %s", strings.Join(args, " "), err, errBuf.String())
	return nil, -1, ""
}

// Run runs a script that must succeed and returns its output.
func (p *Producer) Run(stdin []byte, args ...string) []byte {
	p.T.Helper()
	out, code, stderr := p.Exec(stdin, args...)
	if code != 0 {
		p.T.Fatalf("python %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return out
}

// Answer is the outcome of one line of `producer.py batch`.
type Answer struct {
	Exit    int             `json:"exit"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
}

// Batch runs producer.py commands (each a JSON array of arguments) in one
// Python process, as Django's start-up costs about half a second, and
// returns every command's answer, failures too.
func Batch[C any](p *Producer, cmds ...C) []Answer {
	p.T.Helper()
	var in bytes.Buffer
	for _, c := range cmds {
		line, err := json.Marshal(c)
		if err != nil {
			p.T.Fatalf("encode producer.py command %v: %v", c, err)
		}
		in.Write(append(line, '\n'))
	}
	out, code, stderr := p.Exec(in.Bytes(), "producer.py", "batch")
	if code != 0 {
		p.T.Fatalf("producer.py batch: exit %d: %s", code, stderr)
	}
	var answers []Answer
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, p.Buffer)
	for sc.Scan() {
		var a Answer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			p.T.Fatalf("producer.py batch: line %q: %v", sc.Text(), err)
		}
		answers = append(answers, a)
	}
	if err := sc.Err(); err != nil {
		p.T.Fatalf("producer.py batch: read answers: %v", err)
	}
	if len(answers) != len(cmds) {
		p.T.Fatalf("producer.py batch: %d answers for %d commands: %s", len(answers), len(cmds), stderr)
	}
	return answers
}

// MustBatch is Batch where every command must succeed; it returns their
// results.
func MustBatch[C any](p *Producer, cmds ...C) []json.RawMessage {
	p.T.Helper()
	var results []json.RawMessage
	for i, a := range Batch(p, cmds...) {
		if a.Exit != 0 {
			p.T.Fatalf("producer.py %v: exit %d: %s: %s", cmds[i], a.Exit, a.Error, a.Message)
		}
		results = append(results, a.Result)
	}
	return results
}

// LiveProducer is a `producer.py batch` process, a Django producer driven
// one tracker call at a time, so that the test can react to each answer.
type LiveProducer struct {
	t     testing.TB
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// Live starts producer.py batch; it ends, and must end cleanly, with the
// test.
func (p *Producer) Live() *LiveProducer {
	p.T.Helper()
	cmd := exec.Command(p.Py, "producer.py", "batch")
	cmd.Dir, cmd.Env = p.Dir, p.Env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		p.T.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.T.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		p.T.Fatalf("start producer.py batch: %v", err)
	}
	l := &LiveProducer{t: p.T, stdin: stdin, out: bufio.NewScanner(stdout)}
	l.out.Buffer(nil, p.Buffer)
	p.T.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			p.T.Errorf("producer.py batch: %v: %s", err, stderr.String())
		}
	})
	return l
}

// Do runs one producer command.
func (l *LiveProducer) Do(args ...string) Answer {
	l.t.Helper()
	a, err := l.TryDo(args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return a
}

// TryDo runs one producer command; unlike Do it may be called from any
// goroutine, as it does not fail the test.
func (l *LiveProducer) TryDo(args ...string) (Answer, error) { return l.Send(args) }

// Send runs one producer command, cmd being its JSON array of arguments
// (numbers too); it may be called from any goroutine.
func (l *LiveProducer) Send(cmd any) (Answer, error) {
	line, err := json.Marshal(cmd)
	if err != nil {
		return Answer{}, fmt.Errorf("producer.py batch: encode %v: %w", cmd, err)
	}
	if _, err := l.stdin.Write(append(line, '\n')); err != nil {
		return Answer{}, fmt.Errorf("producer.py batch: write %s: %w", line, err)
	}
	if !l.out.Scan() {
		return Answer{}, fmt.Errorf("producer.py batch: no answer to %s: %v", line, l.out.Err())
	}
	var a Answer
	if err := json.Unmarshal(l.out.Bytes(), &a); err != nil {
		return Answer{}, fmt.Errorf("producer.py batch: answer %q to %s: %w", l.out.Text(), line, err)
	}
	return a, nil
}
