package producer_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/producer"
)

// pyType is what `producer.py register` prints.
type pyType struct {
	Identifier string  `json:"identifier"`
	Handler    string  `json:"handler"`
	MaxStart   int     `json:"maxstart"`
	Timeout    float64 `json:"timeout"`
	TimeRet    float64 `json:"timeret"`
}

// TestRegisterTypeMatchesTracker registers the same specs from Go and from
// the Python tracker and compares the rows each made.
func TestRegisterTypeMatchesTracker(t *testing.T) {
	specs := []struct {
		name                string
		timeout, timeret    float64
		maxrestart          int
		wantMax             int
		wantTimeout, wantRe float64
	}{
		{"defaults", djangodb.DefaultTimeout, djangodb.DefaultTimeRet, djangodb.DefaultMaxRestart, 3, 3600, -1},
		{"negative timeout and restarts", -5, 0, -3, 1, 0, -1},
		{"retention kept", 1.5, 600, 0, 1, 1.5, 600},
	}
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		var cmds [][]string
		for i, s := range specs {
			cmds = append(cmds, []string{"register", "Py" + string(rune('A'+i)), "tools.atp_demo.handler",
				"--timeout", jsonNum(s.timeout), "--timeret", jsonNum(s.timeret), "--maxrestart", jsonNum(float64(s.maxrestart))})
		}
		pyOut := f.py.must(cmds...)
		for i, s := range specs {
			t.Run(s.name, func(t *testing.T) {
				got, err := f.p.RegisterType(ctxT(t), djangodb.TypeSpec{Identifier: "Go" + string(rune('A'+i)), Handler: "tools.atp_demo.handler",
					Timeout: s.timeout, TimeRet: s.timeret, MaxRestart: s.maxrestart})
				if err != nil {
					t.Fatal(err)
				}
				py := decode[pyType](t, pyOut[i])
				if got.MaxStart != py.MaxStart || got.Timeout != py.Timeout || got.TimeRet != py.TimeRet || got.Handler != py.Handler {
					t.Errorf("Go registered %+v, the tracker %+v", got, py)
				}
				if got.MaxStart != s.wantMax || got.Timeout != s.wantTimeout || got.TimeRet != s.wantRe {
					t.Errorf("got maxstart %d timeout %v timeret %v, want %d %v %v", got.MaxStart, got.Timeout, got.TimeRet, s.wantMax, s.wantTimeout, s.wantRe)
				}
				// Registering again updates the row instead of failing.
				again, err := f.p.RegisterType(ctxT(t), djangodb.TypeSpec{Identifier: got.Identifier, Handler: "tools.other.handler", Timeout: 7})
				if err != nil {
					t.Fatalf("re-register: %v", err)
				}
				if again.ID != got.ID || again.Handler != "tools.other.handler" || again.Timeout != 7 {
					t.Errorf("re-register gave %+v, want id %d updated", again, got.ID)
				}
			})
		}
	})
}

func jsonNum(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// pyInput is what `producer.py input` prints.
type pyInput struct {
	Stored string          `json:"stored"`
	Repr   string          `json:"repr"`
	JSON   json.RawMessage `json:"json"`
}

// TestGoEnqueuePythonReads enqueues inputs from Go and has the Django
// tracker unpickle them: Python must see the same value (its repr) and
// the same status and log as for its own enqueues.
func TestGoEnqueuePythonReads(t *testing.T) {
	ordered := pickle.NewDict()
	ordered.Set("z", 1)
	ordered.Set(pickle.Tuple{1, 2}, "t")
	big70 := new(big.Int).Lsh(big.NewInt(1), 70)
	inputs := []struct {
		name  string
		input any
		repr  string
	}{
		{"none", nil, "None"},
		{"demo sequence", pickle.Tuple{1, 2, 3, 4, 5}, "(1, 2, 3, 4, 5)"},
		{"list of mixed", []any{int64(-7), 1.5, 0.1, "x", nil, true}, "[-7, 1.5, 0.1, 'x', None, True]"},
		{"unicode", "héllo wörld ✓", "'héllo wörld ✓'"},
		{"bytes", pickle.Bytes{0, 0xff, 'a'}, "b'\\x00\\xffa'"},
		{"big int", big70, "1180591620717411303424"},
		{"go map sorted", map[string]any{"b": 1, "a": []any{true}}, "{'a': [True], 'b': 1}"},
		{"ordered dict, tuple key", ordered, "{'z': 1, (1, 2): 't'}"},
		{"set", pickle.Set{3}, "{3}"},
		{"decimal", pickle.Decimal("1.10"), "Decimal('1.10')"},
		{"naive datetime", pickle.DateTime{Time: time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC), Naive: true}, "datetime.datetime(2024, 1, 2, 3, 4, 5, 6)"},
		{"aware datetime", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), "datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)"},
		{"date", pickle.Date{Year: 2024, Month: 2, Day: 29}, "datetime.date(2024, 2, 29)"},
		{"duration", 90 * time.Second, "datetime.timedelta(seconds=90)"},
	}
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "GoIn")
		var cmds [][]string
		for i, in := range inputs {
			id := "in" + string(rune('a'+i))
			if _, err := f.p.Enqueue(ctxT(t), "GoIn", id, in.input, "from go "+in.name); err != nil {
				t.Fatalf("enqueue %s: %v", in.name, err)
			}
			cmds = append(cmds, []string{"input", "GoIn", id}, []string{"log", "GoIn", id})
		}
		out := f.py.must(cmds...)
		for i, in := range inputs {
			t.Run(in.name, func(t *testing.T) {
				py := decode[pyInput](t, out[2*i])
				if py.Repr != in.repr {
					t.Errorf("Python reads %s, want %s", py.Repr, in.repr)
				}
				log := decode[pyLog](t, out[2*i+1])
				if log.Status != int(djangodb.Accepted) || len(log.Records) != 1 ||
					log.Records[0].Status != int(djangodb.Accepted) || log.Records[0].Message != "from go "+in.name {
					t.Errorf("Python sees status %d and log %+v, want ACCEPTED with one record", log.Status, log.Records)
				}
				// Go's own reading of the input agrees with Python's where
				// Python can say it in JSON.
				v, err := f.p.Input(ctxT(t), "GoIn", "in"+string(rune('a'+i)))
				if err != nil {
					t.Fatal(err)
				}
				if string(py.JSON) != "null" || v == nil {
					goJSON, err := pickle.ToJSON(v)
					if err != nil {
						t.Fatal(err)
					}
					if !sameJSON(t, goJSON, py.JSON) {
						t.Errorf("Go reads %s, Python %s", goJSON, py.JSON)
					}
				}
			})
		}
	})
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	dec := func(raw []byte) any {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode JSON %s: %v", raw, err)
		}
		return v
	}
	return reflect.DeepEqual(dec(a), dec(b))
}

type pyLog struct {
	Status  int `json:"status"`
	Records []struct {
		Time    string `json:"time"`
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"records"`
}

// TestPythonEnqueueGoReads: tasks a Python producer enqueued, at every
// pickle protocol Python 2 and 3 producers use, read back through the Go
// producer.
func TestPythonEnqueueGoReads(t *testing.T) {
	protocols := []string{"0", "2", "3", "5"}
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "PyIn")
		var cmds [][]string
		for _, proto := range protocols {
			cmds = append(cmds, []string{"enqueue", "PyIn", "p" + proto, "--literal", "{'seq': (1, 2.5, 'x'), 'n': None}", "--protocol", proto, "--message", "proto " + proto})
		}
		f.py.must(cmds...)
		for _, proto := range protocols {
			t.Run("protocol "+proto, func(t *testing.T) {
				ctx := ctxT(t)
				st, err := f.p.Status(ctx, "PyIn", "p"+proto)
				if err != nil || st != djangodb.Accepted {
					t.Fatalf("status %v, %v; want ACCEPTED", st, err)
				}
				recs, err := f.p.Log(ctx, "PyIn", "p"+proto)
				if err != nil || len(recs) != 1 || recs[0].Message != "proto "+proto || recs[0].Status != djangodb.Accepted {
					t.Fatalf("log %+v, %v; want one ACCEPTED record with the message", recs, err)
				}
				v, err := f.p.Input(ctx, "PyIn", "p"+proto)
				if err != nil {
					t.Fatal(err)
				}
				got, err := pickle.ToJSON(v)
				if err != nil {
					t.Fatal(err)
				}
				if !sameJSON(t, got, []byte(`{"seq": [1, 2.5, "x"], "n": null}`)) {
					t.Errorf("input %s", got)
				}
			})
		}
	})
}

// TestLifecycleThroughReferenceDaemon enqueues the demo task from Go, runs
// it with the reference daemon's steps in Python and reads status, log
// and response back through the Go producer, comparing them with what
// the Django tracker returns for the same task.
func TestLifecycleThroughReferenceDaemon(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "SequenceSum")
		ctx := ctxT(t)
		if _, err := f.p.Enqueue(ctx, "SequenceSum", "ok", pickle.Tuple{1, 2, 3, 4, 5}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.p.Enqueue(ctx, "SequenceSum", "notnum", []any{1, "x"}, ""); err != nil {
			t.Fatal(err)
		}
		out := f.py.must([]string{"step", "0x1234"}, []string{"step", "0x1234"},
			[]string{"log", "SequenceSum", "ok"}, []string{"log", "SequenceSum", "notnum"})

		cases := []struct {
			id       string
			status   djangodb.Status
			statuses []djangodb.Status
			response string // "" when none
		}{
			{"ok", djangodb.Finished, []djangodb.Status{1, 2, 3, 5}, "15.0"},
			{"notnum", djangodb.Failed, []djangodb.Status{1, 2, 3, 6}, ""},
		}
		for i, tc := range cases {
			t.Run(tc.id, func(t *testing.T) {
				st, err := f.p.Status(ctx, "SequenceSum", tc.id)
				if err != nil || st != tc.status {
					t.Fatalf("status %v, %v; want %v", st, err, tc.status)
				}
				recs, err := f.p.Log(ctx, "SequenceSum", tc.id)
				if err != nil {
					t.Fatal(err)
				}
				py := decode[pyLog](t, out[2+i])
				if len(recs) != len(tc.statuses) || len(py.Records) != len(recs) {
					t.Fatalf("Go log %+v, Python log %+v, want statuses %v", recs, py.Records, tc.statuses)
				}
				for j, r := range recs {
					p := py.Records[j]
					pt := parsePyTime(t, c, p.Time)
					if r.Status != tc.statuses[j] || int(r.Status) != p.Status || r.Message != p.Message || !r.Time.Equal(pt) {
						t.Errorf("record %d: Go %v %q at %v, Python %d %q at %v", j, r.Status, r.Message, r.Time, p.Status, p.Message, pt)
					}
				}
				resp, err := f.p.Response(ctx, "SequenceSum", tc.id)
				switch {
				case tc.response == "" && !errors.Is(err, djangodb.ErrNotFound):
					t.Errorf("response %+v, %v; want ErrNotFound", resp, err)
				case tc.response != "" && (err != nil || string(resp.Data) != tc.response || resp.MimeType != "text/plain"):
					t.Errorf("response %q %q, %v; want %q text/plain", resp.Data, resp.MimeType, err, tc.response)
				}
			})
		}
	})
}

// parsePyTime reads producer.py's isoformat: aware UTC under USE_TZ, naive
// TIME_ZONE wall time otherwise.
func parsePyTime(t *testing.T, c dbCase, s string) time.Time {
	t.Helper()
	if c.cfg.UseTZ {
		ts, err := time.Parse("2006-01-02T15:04:05.999999-07:00", s)
		if err != nil {
			t.Fatalf("time %q: %v", s, err)
		}
		return ts
	}
	loc, err := time.LoadLocation(c.cfg.TimeZone)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := time.ParseInLocation("2006-01-02T15:04:05.999999", s, loc)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return ts
}

// TestEnqueueRawAndPickle re-enqueues what a Python producer stored, as
// stored text and as the bare pickle, and has Python read both back.
func TestEnqueueRawAndPickle(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "Raw")
		ctx := ctxT(t)
		protocols := []string{"0", "2", "4"}
		var enqueues, reads [][]string
		for _, proto := range protocols {
			enqueues = append(enqueues, []string{"enqueue", "Raw", "src" + proto, "--expr",
				"{'when': datetime.datetime(2001, 2, 3, 4, 5, 6), 'amount': Decimal('2.50'), 'tags': {'a'}}", "--protocol", proto})
			reads = append(reads, []string{"input", "Raw", "src" + proto}, []string{"input", "Raw", "text" + proto}, []string{"input", "Raw", "pickle" + proto})
		}
		src := f.py.must(enqueues...)
		for i, proto := range protocols {
			stored := decode[struct {
				Input string `json:"input"`
			}](t, src[i]).Input
			if _, err := f.p.EnqueueRaw(ctx, "Raw", "text"+proto, stored, ""); err != nil {
				t.Fatalf("EnqueueRaw of protocol %s: %v", proto, err)
			}
			if _, err := f.p.EnqueuePickle(ctx, "Raw", "pickle"+proto, inflate(t, stored), ""); err != nil {
				t.Fatalf("EnqueuePickle of protocol %s: %v", proto, err)
			}
		}
		out := f.py.must(reads...)
		for i, proto := range protocols {
			t.Run("protocol "+proto, func(t *testing.T) {
				want := decode[pyInput](t, out[3*i]).Repr
				for j, name := range []string{"EnqueueRaw", "EnqueuePickle"} {
					if got := decode[pyInput](t, out[3*i+1+j]).Repr; got != want {
						t.Errorf("%s: Python reads %s, the original is %s", name, got, want)
					}
				}
			})
		}
	})
}

func inflate(t *testing.T, stored string) []byte {
	t.Helper()
	z, err := base64.StdEncoding.DecodeString(stored)
	if err != nil {
		t.Fatal(err)
	}
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEnqueueRefused: every refusal names its cause by a sentinel and
// leaves nothing behind.
func TestEnqueueRefused(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "T")
		ctx := ctxT(t)
		if _, err := f.p.Enqueue(ctx, "T", "taken", 1, ""); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name    string
			enqueue func() (int64, error)
			want    error
		}{
			{"duplicate identifier", func() (int64, error) { return f.p.Enqueue(ctx, "T", "taken", 2, "") }, djangodb.ErrExists},
			{"unknown type", func() (int64, error) { return f.p.Enqueue(ctx, "Nope", "x", 2, "") }, djangodb.ErrNotFound},
			{"identifier too long", func() (int64, error) { return f.p.Enqueue(ctx, "T", strings.Repeat("é", 65), 2, "") }, producer.ErrInvalid},
			{"empty identifier", func() (int64, error) { return f.p.Enqueue(ctx, "T", "", 2, "") }, producer.ErrInvalid},
			{"NUL in message", func() (int64, error) { return f.p.Enqueue(ctx, "T", "nul", 2, "a\x00b") }, producer.ErrInvalid},
			{"invalid UTF-8 identifier", func() (int64, error) { return f.p.Enqueue(ctx, "T", "\xff", 2, "") }, producer.ErrInvalid},
			{"input with no Python type", func() (int64, error) { return f.p.Enqueue(ctx, "T", "chan", []any{make(chan int)}, "") }, pickle.ErrUnsupported},
			{"stored text not base64", func() (int64, error) { return f.p.EnqueueRaw(ctx, "T", "raw", "not base64!", "") }, producer.ErrInvalid},
			{"stored text not zlib", func() (int64, error) {
				return f.p.EnqueueRaw(ctx, "T", "raw", base64.StdEncoding.EncodeToString([]byte("plain")), "")
			}, pickle.ErrZlib},
			{"truncated pickle", func() (int64, error) { return f.p.EnqueuePickle(ctx, "T", "pk", []byte{0x80, 2, 'K'}, "") }, producer.ErrInvalid},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tc.enqueue()
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
			})
		}
		all, err := f.p.Tasks(ctx, djangodb.InstanceFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Identifier != "taken" {
			t.Errorf("after refusals the tasks are %+v, want only the first", all)
		}
		q, err := f.p.Queue(ctx)
		if err != nil || q.Waiting != 1 {
			t.Errorf("queue %+v, %v; want one waiting", q, err)
		}
	})
}

// TestQueueFull: the queue limit, Queue's view of it, and EnqueueWait
// getting in once a daemon takes a task.
func TestQueueFull(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		retry := newSignalHandler("queue full")
		f := setup(t, c, 2, producer.Options{Logger: slogNew(retry), MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
		f.register(t, "Q")
		ctx := ctxT(t)
		before := time.Now()
		for _, id := range []string{"a", "b"} {
			if _, err := f.p.Enqueue(ctx, "Q", id, id, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.p.Enqueue(ctx, "Q", "c", "c", ""); !errors.Is(err, djangodb.ErrQueueFull) {
			t.Fatalf("third enqueue: %v, want ErrQueueFull", err)
		}
		q, err := f.p.Queue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if q.Waiting != 2 || q.Limit != 2 || !q.Full() || q.Oldest.Before(before.Add(-time.Second)) || q.Age < 0 || q.Age > time.Since(before)+time.Second {
			t.Errorf("queue %+v (enqueued since %v)", q, before)
		}

		t.Run("EnqueueWait gives up with the context", func(t *testing.T) {
			drain(retry.ch)
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := f.p.EnqueueWait(wctx, "Q", "late", 1, "")
				done <- err
			}()
			select {
			case <-retry.ch: // it has met the full queue: now the caller gives up
			case err := <-done:
				t.Fatalf("EnqueueWait returned %v on a full queue", err)
			}
			cancel()
			err := <-done
			if !errors.Is(err, djangodb.ErrQueueFull) || !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want both ErrQueueFull and Canceled", err)
			}
		})

		t.Run("EnqueueWait gets in when a task is taken", func(t *testing.T) {
			drain(retry.ch)
			type result struct {
				id  int64
				err error
			}
			done := make(chan result, 1)
			go func() {
				id, err := f.p.EnqueueWait(ctx, "Q", "c", "c", "waited")
				done <- result{id, err}
			}()
			select {
			case <-retry.ch: // it has met the full queue at least once
			case r := <-done:
				t.Fatalf("EnqueueWait returned %+v before the queue had room", r)
			case <-ctx.Done():
				t.Fatal("EnqueueWait never retried")
			}
			if _, err := djangodb.MustTrackerOf(f.store).Dequeue(ctx, 0x1234, 1, ""); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			in, err := f.p.Task(ctx, "Q", "c")
			if err != nil || in.ID != r.id || in.Status != djangodb.Accepted {
				t.Fatalf("task %+v, %v; want instance %d ACCEPTED", in, err, r.id)
			}
		})
	})
}

func slogNew(h signalHandler) *slog.Logger { return slog.New(h) }

func hasAttr(r slog.Record, key, value string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key && a.Value.String() == value {
			found = true
			return false
		}
		return true
	})
	return found
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

type countingNotifier struct {
	calls atomic.Int64
	err   error
}

func (n *countingNotifier) Notify(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	n.calls.Add(1)
	return n.err
}

// TestNotifier: the hook runs once per committed enqueue, never for a
// refused one, and its failure does not undo the enqueue.
func TestNotifier(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		warn := newSignalHandler("notification failed")
		n := &countingNotifier{}
		f := setup(t, c, 0, producer.Options{Notifier: n, Logger: slogNew(warn)})
		f.register(t, "N")
		ctx := ctxT(t)
		if _, err := f.p.Enqueue(ctx, "N", "a", 1, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.p.Enqueue(ctx, "N", "a", 1, ""); !errors.Is(err, djangodb.ErrExists) {
			t.Fatalf("duplicate: %v", err)
		}
		if got := n.calls.Load(); got != 1 {
			t.Fatalf("%d notifications after one committed enqueue, want 1", got)
		}
		n.err = errors.New("listener gone")
		// A caller that cancels right after enqueueing still notifies.
		cctx, cancel := context.WithCancel(ctx)
		id, err := f.p.Enqueue(cctx, "N", "b", 1, "")
		cancel()
		if err != nil || id == 0 {
			t.Fatalf("enqueue with a failing notifier: %d, %v", id, err)
		}
		select {
		case r := <-warn.ch:
			if !hasAttr(r, "identifier", "b") {
				t.Errorf("warning %q does not name the task", r.Message)
			}
		default:
			t.Error("a failed notification was not logged")
		}
		if st, err := f.p.Status(ctx, "N", "b"); err != nil || st != djangodb.Accepted {
			t.Errorf("status %v, %v; the enqueue must stand", st, err)
		}
	})
}

// TestDeleteAndUnregister: deleteTaskByIdentifier and unregisterTaskType
// semantics, checked against what the Django tracker then sees.
func TestDeleteAndUnregister(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "D")
		ctx := ctxT(t)
		for _, id := range []string{"go", "kept"} {
			if _, err := f.p.Enqueue(ctx, "D", id, []any{1}, ""); err != nil {
				t.Fatal(err)
			}
		}
		f.py.must([]string{"enqueue", "D", "py", "--literal", "(1,)"}, []string{"step", "0x99"}) // "go" runs: FINISHED with a response

		for _, id := range []string{"go", "py"} {
			deleted, err := f.p.Delete(ctx, "D", id)
			if err != nil || !deleted {
				t.Fatalf("delete %s: %v, %v", id, deleted, err)
			}
		}
		if deleted, err := f.p.Delete(ctx, "D", "go"); err != nil || deleted {
			t.Errorf("deleting a missing task: %v, %v; want false, nil", deleted, err)
		}
		if _, err := f.p.Delete(ctx, "Nope", "go"); !errors.Is(err, djangodb.ErrNotFound) {
			t.Errorf("delete in a missing type: %v, want ErrNotFound", err)
		}
		res := f.py.batch([]string{"status", "D", "go"}, []string{"status", "D", "py"}, []string{"status", "D", "kept"})
		if res[0].Exit != 4 || res[1].Exit != 4 || res[2].Exit != 0 {
			t.Errorf("Python after delete: exits %d %d %d, want 4 4 0", res[0].Exit, res[1].Exit, res[2].Exit)
		}
		dump := decode[map[string][]map[string]any](t, f.py.must([]string{"dump"})[0])
		for _, table := range []string{"processes_task", "processes_logrecord", "processes_input", "processes_response"} {
			for _, row := range dump[table] {
				if id, _ := row["instance_id"].(float64); int64(id) != mustTask(t, f, "D", "kept").ID {
					t.Errorf("%s keeps a row of a deleted task: %v", table, row)
				}
			}
		}

		if err := f.p.UnregisterType(ctx, "D", false); !errors.Is(err, djangodb.ErrProtected) {
			t.Fatalf("unregister with a task left: %v, want ErrProtected", err)
		}
		if err := f.p.UnregisterType(ctx, "D", true); err != nil {
			t.Fatalf("forced unregister: %v", err)
		}
		if _, err := f.p.Type(ctx, "D"); !errors.Is(err, djangodb.ErrNotFound) {
			t.Errorf("type after unregister: %v, want ErrNotFound", err)
		}
	})
}

func mustTask(t *testing.T, f *fixture, typ, id string) djangodb.Instance {
	t.Helper()
	in, err := f.p.Task(ctxT(t), typ, id)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestTasksFilter lists tasks by type and status.
func TestTasksFilter(t *testing.T) {
	forEachDB(t, func(t *testing.T, c dbCase) {
		f := setup(t, c, 0, producer.Options{})
		f.register(t, "A")
		f.register(t, "B")
		ctx := ctxT(t)
		for _, e := range []struct{ typ, id string }{{"A", "1"}, {"A", "2"}, {"B", "1"}} {
			if _, err := f.p.Enqueue(ctx, e.typ, e.id, pickle.Tuple{1}, ""); err != nil {
				t.Fatal(err)
			}
		}
		f.py.must([]string{"step", "7"}) // A/1 runs and finishes
		finished, accepted := djangodb.Finished, djangodb.Accepted
		cases := []struct {
			name   string
			filter djangodb.InstanceFilter
			want   []string
		}{
			{"all", djangodb.InstanceFilter{}, []string{"A::1", "A::2", "B::1"}},
			{"type", djangodb.InstanceFilter{Type: "A"}, []string{"A::1", "A::2"}},
			{"status", djangodb.InstanceFilter{Status: &accepted}, []string{"A::2", "B::1"}},
			{"type and status", djangodb.InstanceFilter{Type: "A", Status: &finished}, []string{"A::1"}},
			{"limit", djangodb.InstanceFilter{Limit: 1}, []string{"A::1"}},
			{"none", djangodb.InstanceFilter{Type: "B", Status: &finished}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, err := f.p.Tasks(ctx, tc.filter)
				if err != nil {
					t.Fatal(err)
				}
				var refs []string
				for _, in := range got {
					refs = append(refs, djangodb.InstanceRef{Type: in.Type, Identifier: in.Identifier}.String())
				}
				if !reflect.DeepEqual(refs, tc.want) {
					t.Errorf("got %v, want %v", refs, tc.want)
				}
			})
		}
	})
}

// flakyStore loses the connection of the first enqueues: fail before
// the store is called; commit, then report the loss (an acknowledgement
// lost after the commit).
type flakyStore struct {
	djangodb.Store
	before, after int
}

func (s *flakyStore) Enqueue(ctx context.Context, typ, identifier, input, message string) (int64, error) {
	if s.before > 0 {
		s.before--
		return 0, fmt.Errorf("djangodb: enqueue: %w", driver.ErrBadConn)
	}
	id, err := s.Store.Enqueue(ctx, typ, identifier, input, message)
	if err == nil && s.after > 0 {
		s.after--
		return 0, fmt.Errorf("djangodb: enqueue: commit: %w", driver.ErrBadConn)
	}
	return id, err
}

// TestEnqueueWaitRetriesLostConnections: EnqueueWait waits out a lost
// connection as it waits out a full queue; when the lost attempt had
// committed, the retry's duplicate is reported as the task existing.
func TestEnqueueWaitRetriesLostConnections(t *testing.T) {
	c := dbCases[0]
	f := setup(t, c, 0, producer.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	f.register(t, "T")
	ctx := ctxT(t)
	p := producer.New(&flakyStore{Store: f.store, before: 2}, producer.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if _, err := p.EnqueueWait(ctx, "T", "lost-before", 1, ""); err != nil {
		t.Fatalf("enqueue after two lost connections: %v", err)
	}
	p = producer.New(&flakyStore{Store: f.store, after: 1}, producer.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if _, err := p.EnqueueWait(ctx, "T", "lost-after", 1, ""); !errors.Is(err, djangodb.ErrExists) {
		t.Fatalf("enqueue whose commit was acknowledged lost = %v, want ErrExists", err)
	}
	for _, id := range []string{"lost-before", "lost-after"} {
		if _, err := f.store.InstanceByIdentifier(ctx, "T", id); err != nil {
			t.Errorf("instance %s: %v", id, err)
		}
	}
}
