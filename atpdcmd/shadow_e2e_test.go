package atpdcmd

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/e2e"
)

// TestShadowMode: with --shadow, the Python demo handler runs for real and
// its rows are the Python handler's, while the Go demo port runs beside it
// writing nothing; /metrics counts each comparison, all matches. A shadow
// path without a Go port is refused at start-up.
func TestShadowMode(t *testing.T) {
	d := newE2EDB(t, sqliteUTC)
	d.producer("register", "Sum", "tools.atp_demo.handler", "--timeout", "60")
	inputs := map[string]string{"seq": "(1, 2, 3)", "bad": "['x']", "empty": "[]", "none": "None"}
	for id, lit := range inputs {
		d.producer("enqueue", "Sum", id, "--literal", lit)
	}
	p := startAtpd(t, "shadow", baseEnv(), d.daemonArgs("-p", d.dir, "--shadow", "tools.atp_demo.handler", "--http", "127.0.0.1:0")...)
	line := p.waitLine(`ATPD: serving the task pages.*http_addr=`, startTimeout)
	addr := regexp.MustCompile(`http_addr=(\S+)`).FindStringSubmatch(line)[1]
	status := func(id string) int {
		var s struct {
			Status int `json:"status"`
		}
		if err := json.Unmarshal(d.producer("status", "Sum", id), &s); err != nil {
			t.Fatal(err)
		}
		return s.Status
	}
	e2e.WaitFor(t, time.Minute, 50*time.Millisecond, func() string { return "the shadowed tasks to end" }, func() bool {
		for id := range inputs {
			if status(id) < 5 {
				return false
			}
		}
		return true
	})
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `atpd_shadow_runs_total{path="tools.atp_demo.handler",result="match"} 4`) ||
		strings.Contains(string(body), `result="mismatch"`) {
		t.Errorf("shadow counters:\n%s", grepLines(string(body), "shadow"))
	}
	resp, err = http.Get("http://" + addr + "/api/shadow")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var report struct {
		Mismatches []json.RawMessage `json:"mismatches"`
	}
	if err := json.Unmarshal(body, &report); resp.StatusCode != 200 || err != nil || report.Mismatches == nil || len(report.Mismatches) != 0 {
		t.Errorf("/api/shadow: %d %s (%v), want an empty list", resp.StatusCode, body, err)
	}
	p.signal(syscall.SIGINT)
	p.wait(exitTimeout)
	if len(p.Grep("SHADOW:")) != 0 {
		t.Errorf("mismatches logged: %v", p.Grep("SHADOW:"))
	}
	// The rows are the Python handler's: the demo's response, its own
	// FAILED, Python's exception text.
	if got := d.taskLog("Sum", "bad"); got[len(got)-1].Status != 6 || got[len(got)-1].Message != "Input must be a sequence of numbers!" {
		t.Errorf("bad input's log %+v", got)
	}
	if got := d.taskLog("Sum", "none"); got[len(got)-1].Message != "'NoneType' object is not iterable" {
		t.Errorf("None input's log %+v", got)
	}

	code, _, stderr := runBin(t, baseEnv(), "", append(d.dbArgs(), "--shadow", "myapp.tasks.no_port")...)
	if code == 0 || !strings.Contains(stderr, "myapp.tasks.no_port has no Go port") {
		t.Errorf("shadow path without a port: exit %d, stderr %q", code, stderr)
	}
}

// grepLines returns the lines of text containing s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
