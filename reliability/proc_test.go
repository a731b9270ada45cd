package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/e2e"
)

// proc is one child process (atpd, the Python daemon, a producer) whose
// stdout and stderr lines are kept.
type proc struct{ *e2e.Proc }

// baseEnv is the environment without anything that would configure atpd
// or Django behind the test's back.
func baseEnv() []string { return e2e.BaseEnv("RELIABILITY_LEDGER_TAG") }

// startProc runs bin with args; the process is killed at the end of the
// test if it still runs, and its output is shown when the test failed.
func startProc(t *testing.T, name, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return &proc{e2e.Start(t, name, dir, env, bin, args...)}
}

// rss returns the process's resident set size from /proc, in bytes.
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
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
	for _, l := range p.Lines() {
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

// waitFor polls cond until it holds or timeout passes; describe says what
// was awaited and the state last seen. The tests poll the database, which
// offers no signal to wait on; each poll is one cheap query.
func waitFor(t *testing.T, timeout time.Duration, describe func() string, cond func() bool) {
	t.Helper()
	e2e.WaitFor(t, timeout, 50*time.Millisecond, describe, cond)
}
