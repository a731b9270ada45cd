package logfmt_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/logfmt"
)

const id = "0x504DD5AE614D562C"

type secret string

func (secret) LogValue() slog.Value { return slog.StringValue("xxxxx") }

func TestText(t *testing.T) {
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		want string
	}{
		{"plain info", func(l *slog.Logger) { l.Info("ATPD: pid=42") }, "[" + id + "] INFO: ATPD: pid=42\n"},
		{"warning spelled right", func(l *slog.Logger) { l.Warn("Task 7:SequenceSum::t renqueued after timeout!") },
			"[" + id + "] WARNING: Task 7:SequenceSum::t renqueued after timeout!\n"},
		{"error", func(l *slog.Logger) { l.Error("boom") }, "[" + id + "] ERROR: boom\n"},
		{"debug", func(l *slog.Logger) { l.Debug("detail") }, "[" + id + "] DEBUG: detail\n"},
		{"level between warn and error", func(l *slog.Logger) { l.Log(context.Background(), slog.LevelWarn+2, "x") }, "[" + id + "] WARNING: x\n"},
		{"attrs of every kind", func(l *slog.Logger) {
			l.Info("PROCESS: SequenceSum Task001 is running ...",
				"worker", 3, "type", "SequenceSum", "identifier", "Task 001", "ok", true,
				"took", 1500*time.Millisecond, "ratio", 0.25, "count", uint64(7),
				"at", time.Date(2024, 5, 6, 7, 8, 9, 1000, time.UTC),
				"err", errors.New(`missing ['k']`), "empty", "", "quote", `a"b`, "eq", "a=b")
		}, "[" + id + `] INFO: PROCESS: SequenceSum Task001 is running ... worker=3 type=SequenceSum identifier="Task 001" ok=true took=1.5s ratio=0.25 count=7 at=2024-05-06T07:08:09.000001Z err="missing ['k']" empty="" quote="a\"b" eq="a=b"` + "\n"},
		{"message on one line", func(l *slog.Logger) { l.Error("line1\nline2\r\n[0x0000000000000001] INFO: forged\x00") },
			"[" + id + `] ERROR: line1\nline2\r\n[0x0000000000000001] INFO: forged\x00` + "\n"},
		{"value on one line", func(l *slog.Logger) { l.Info("m", "output", "a\nb") }, "[" + id + `] INFO: m output="a\nb"` + "\n"},
		{"groups and With", func(l *slog.Logger) {
			l.With("type", "T").WithGroup("db").With("name", "x").Info("m", "n", 1, slog.Group("g", "a", 1), slog.Group("empty"))
		}, "[" + id + "] INFO: m type=T db.name=x db.n=1 db.g.a=1\n"},
		{"inline group, empty attr", func(l *slog.Logger) { l.Info("m", slog.Group("", "a", 1), slog.Attr{}) }, "[" + id + "] INFO: m a=1\n"},
		{"empty group without attrs prints nothing", func(l *slog.Logger) { l.WithGroup("g").Info("m") }, "[" + id + "] INFO: m\n"},
		{"LogValuer resolved", func(l *slog.Logger) { l.Info("m", "password", secret("hunter2")) }, "[" + id + "] INFO: m password=xxxxx\n"},
		{"below level dropped", func(l *slog.Logger) { l.Debug("x"); l.Info("y") }, "[" + id + "] INFO: y\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			level := slog.LevelInfo
			if strings.HasPrefix(tc.name, "debug") {
				level = slog.LevelDebug
			}
			tc.log(slog.New(logfmt.NewText(&buf, logfmt.Options{Level: level, ServerID: id})))
			if got := buf.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestTextWithoutServerID(t *testing.T) {
	var buf bytes.Buffer
	slog.New(logfmt.NewText(&buf, logfmt.Options{})).Info("migrated", "db", "sqlite:x")
	if got, want := buf.String(), "INFO: migrated db=sqlite:x\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	h, err := logfmt.New(&buf, logfmt.FormatJSON, logfmt.Options{ServerID: id})
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	l.Warn("renqueued", "instance_id", 7)
	l.Debug("dropped")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"level": "WARNING", "msg": "renqueued", "server_id": id, "instance_id": float64(7)} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v (record %s)", k, rec[k], want, buf.String())
		}
	}
	if _, ok := rec["time"]; !ok {
		t.Errorf("JSON record has no time: %s", buf.String())
	}
}

func TestNewUnknownFormat(t *testing.T) {
	if _, err := logfmt.New(&bytes.Buffer{}, "xml", logfmt.Options{}); !errors.Is(err, logfmt.ErrFormat) {
		t.Fatalf("New(xml) = %v, want ErrFormat", err)
	}
}

// lockedCounter is a writer that fails the test when two Writes overlap.
type lockedCounter struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedCounter) Write(p []byte) (int, error) {
	if !w.mu.TryLock() {
		w.t.Error("concurrent Write calls")
		w.mu.Lock()
	}
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestTextConcurrent: loggers derived from one handler, used from many
// goroutines, never interleave their lines.
func TestTextConcurrent(t *testing.T) {
	w := &lockedCounter{t: t}
	base := slog.New(logfmt.NewText(w, logfmt.Options{ServerID: id}))
	const goroutines, lines = 16, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := base.With("worker", g).WithGroup("task")
			for i := range lines {
				l.Info("PROCESS: is running ...", "n", i, "payload", strings.Repeat("x", 500))
			}
		}()
	}
	wg.Wait()
	sc := bufio.NewScanner(&w.buf)
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		var worker, n int
		if _, err := fmt.Sscanf(line, "["+id+"] INFO: PROCESS: is running ... worker=%d task.n=%d ", &worker, &n); err != nil {
			t.Fatalf("mangled line %q: %v", line, err)
		}
		if !strings.HasSuffix(line, " task.payload="+strings.Repeat("x", 500)) {
			t.Fatalf("mangled line %q", line)
		}
		seen[fmt.Sprint(worker, n)] = true
	}
	if len(seen) != goroutines*lines {
		t.Errorf("%d distinct lines, want %d", len(seen), goroutines*lines)
	}
}

func TestLevelName(t *testing.T) {
	for l, want := range map[slog.Level]string{
		slog.LevelDebug - 4: "DEBUG", slog.LevelDebug: "DEBUG", slog.LevelInfo: "INFO", slog.LevelInfo + 1: "INFO",
		slog.LevelWarn: "WARNING", slog.LevelError: "ERROR", slog.LevelError + 4: "ERROR",
	} {
		if got := logfmt.LevelName(l); got != want {
			t.Errorf("LevelName(%v) = %s, want %s", l, got, want)
		}
	}
}
