package producer_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
	"github.com/eoxserver/atpd/producer"
)

// dbCase is one database and Django configuration the tests run on: both
// databases, and naive local-time storage where a wrong zone would show.
type dbCase struct {
	name     string
	postgres bool
	cfg      testdb.Config
}

var dbCases = []dbCase{
	{"postgres/usetz", true, testdb.Config{UseTZ: true}},
	{"postgres/naive-vienna", true, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
	{"sqlite/usetz", false, testdb.Config{UseTZ: true}},
	{"sqlite/naive-vienna", false, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
}

// forEachDB runs fn as a subtest on a fresh Django-migrated database of
// every case.
func forEachDB(t *testing.T, fn func(t *testing.T, c dbCase)) {
	t.Helper()
	for _, c := range dbCases {
		t.Run(c.name, func(t *testing.T) { fn(t, c) })
	}
}

// fixture is a fresh database with a store, a producer on it and the Python
// producer (integration/producer.py) on the same database.
type fixture struct {
	dsn   string
	store djangodb.Store
	p     *producer.Producer
	py    *pyProducer
}

// setup opens a store on a fresh database of case c; maxQueue 0 keeps the
// tracker's limit.
func setup(t *testing.T, c dbCase, maxQueue int, opts producer.Options) *fixture {
	t.Helper()
	dsn := e2e.FreshDSN(t, c.postgres, c.cfg)
	so := testdb.Options(c.cfg)
	so.MaxQueueSize = maxQueue
	store := e2e.OpenStore(t, dsn, so)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	return &fixture{
		dsn:   dsn,
		store: store,
		p:     producer.New(store, opts),
		py:    &pyProducer{e2e.NewProducer(t, dsn, c.cfg)},
	}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	return e2e.Context(t, time.Minute)
}

// register registers typ with the demo handler's path through the Go producer.
func (f *fixture) register(t *testing.T, typ string) djangodb.TaskType {
	t.Helper()
	tt, err := f.p.RegisterType(ctxT(t), djangodb.TypeSpec{Identifier: typ, Handler: "tools.atp_demo.handler", Timeout: 60, TimeRet: -1, MaxRestart: 2})
	if err != nil {
		t.Fatalf("register %s: %v", typ, err)
	}
	return tt
}

// pyProducer runs integration/producer.py, the Django-ORM tracker.
type pyProducer struct{ *e2e.Producer }

// pyResult is one output line of `producer.py batch`.
type pyResult = e2e.Answer

// batch runs the commands in one Python process (Django starts once) and
// returns one result per command.
func (p *pyProducer) batch(cmds ...[]string) []pyResult {
	p.T.Helper()
	return e2e.Batch(p.Producer, cmds...)
}

// must runs commands that must all succeed and returns their results.
func (p *pyProducer) must(cmds ...[]string) []json.RawMessage {
	p.T.Helper()
	return e2e.MustBatch(p.Producer, cmds...)
}

func decode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

// testLogger sends log lines to the test's log, so that they show with the
// test that wrote them.
func testLogger(t *testing.T) *slog.Logger { return e2e.Logger(t) }

// signalHandler is a slog.Handler that sends every record whose message
// contains match on a channel, so that a test can wait for a log line
// instead of sleeping.
type signalHandler struct {
	match string
	ch    chan slog.Record
}

func newSignalHandler(match string) signalHandler {
	return signalHandler{match: match, ch: make(chan slog.Record, 64)}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		select {
		case h.ch <- r:
		default:
		}
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }
