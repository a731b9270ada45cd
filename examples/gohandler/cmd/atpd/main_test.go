package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// TestEndToEnd builds this atpd, registers the example's task type and
// enqueues a request from Python (EOxServer's tracker API on the Django
// ORM, integration/producer.py), and watches the daemon run it: FINISHED
// with the XML response, and a bad request FAILED with the handler's
// message. The stock binary does not know the path; this one does.
func TestEndToEnd(t *testing.T) {
	cfg := testdb.Config{UseTZ: true}
	dsn := testdb.SQLite(t, cfg)
	bin := filepath.Join(t.TempDir(), "atpd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	py := e2e.NewProducer(t, dsn, cfg)
	py.Run(nil, "producer.py", "register", "Reproject", "myapp.tasks.reproject", "--timeout", "60")
	py.Run(nil, "producer.py", "enqueue", "Reproject", "good", "--json",
		`{"coverage": "S2_T33UWP", "crs": "EPSG:4326", "bbox": [16.2, 48.1, 16.5, 48.3]}`)
	py.Run(nil, "producer.py", "enqueue", "Reproject", "bad", "--json", `{"coverage": "S2_T33UWP", "crs": "EPSG:1"}`)

	d := e2e.Start(t, "atpd", t.TempDir(), os.Environ(), bin, "--db", dsn, "-n", "2", "--poll-interval", "50ms")
	status := func(id string) (code int, text string) {
		var s struct {
			Status int    `json:"status"`
			Text   string `json:"text"`
		}
		if err := json.Unmarshal(py.Run(nil, "producer.py", "status", "Reproject", id), &s); err != nil {
			t.Fatal(err)
		}
		return s.Status, s.Text
	}
	e2e.WaitFor(t, time.Minute, 100*time.Millisecond, func() string { return "both tasks to end" }, func() bool {
		good, _ := status("good")
		bad, _ := status("bad")
		return good >= 5 && bad >= 5
	})
	d.Signal(syscall.SIGINT)
	if code := d.Wait(30 * time.Second); code != 0 {
		t.Errorf("daemon exit %d", code)
	}
	if _, text := status("good"); text != "FINISHED" {
		t.Errorf("good request %s, want FINISHED", text)
	}
	var resp struct {
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
	}
	if err := json.Unmarshal(py.Run(nil, "producer.py", "response", "Reproject", "good"), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.MimeType != "text/xml" || !strings.Contains(resp.Text, `<ReprojectResult coverage="S2_T33UWP" crs="EPSG:4326">`) {
		t.Errorf("response %+v", resp)
	}
	var log struct {
		Records []struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"records"`
	}
	if err := json.Unmarshal(py.Run(nil, "producer.py", "log", "Reproject", "bad"), &log); err != nil {
		t.Fatal(err)
	}
	recs := log.Records
	if len(recs) == 0 || recs[len(recs)-1].Status != 6 || recs[len(recs)-1].Message != "reproject: unsupported crs EPSG:1" {
		t.Errorf("bad request's log %+v, want FAILED with the handler's message", recs)
	}
}
