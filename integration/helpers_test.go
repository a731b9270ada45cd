package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/e2e"
	"github.com/eoxserver/atpd/internal/testdb"
)

// dbCase is one database and Django configuration the tests run on.
type dbCase struct {
	name     string
	postgres bool
	cfg      testdb.Config
	// reference names the file in testdata/reference-rows with the rows of
	// the reference run in this configuration (PostgreSQL with naive
	// Europe/Vienna has none of its own: same rows, other offsets).
	reference string
}

// The four configurations: both databases, both USE_TZ values, and a TIME_ZONE
// that is not UTC for naive storage, where getting the zone wrong shows.
var dbCases = []dbCase{
	{"postgres/usetz", true, testdb.Config{UseTZ: true}, "postgresql-usetz-true.json"},
	{"postgres/naive-vienna", true, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}, "postgresql-usetz-true.json"},
	{"sqlite/usetz-vienna", false, testdb.Config{UseTZ: true, TimeZone: "Europe/Vienna"}, "sqlite-usetz-true.json"},
	{"sqlite/naive-vienna", false, testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}, "sqlite-usetz-false-vienna.json"},
}

func (c dbCase) newDB(t *testing.T) string {
	t.Helper()
	return e2e.FreshDSN(t, c.postgres, c.cfg)
}

// zone is the location naive Django timestamps are in.
func (c dbCase) zone(t *testing.T) *time.Location {
	t.Helper()
	if c.cfg.UseTZ {
		return time.UTC
	}
	name := c.cfg.TimeZone
	if name == "" {
		name = "UTC"
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load TIME_ZONE %q: %v", name, err)
	}
	return loc
}

// producer runs integration/producer.py against one database.
type producer struct{ *e2e.Producer }

func newProducer(t *testing.T, dsn string, cfg testdb.Config) *producer {
	t.Helper()
	return &producer{e2e.NewProducer(t, dsn, cfg)}
}

// runExit runs one producer command and returns its stdout and exit status.
func (p *producer) runExit(args ...string) ([]byte, int) {
	p.T.Helper()
	out, code, stderr := p.Exec(nil, append([]string{"producer.py"}, args...)...)
	if code != 0 {
		p.T.Logf("producer.py %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(stderr))
	}
	return out, code
}

// run runs one producer command that must succeed and decodes its output into v.
func (p *producer) run(v any, args ...string) {
	p.T.Helper()
	out, code := p.runExit(args...)
	if code != 0 {
		p.T.Fatalf("producer.py %s: exit %d", strings.Join(args, " "), code)
	}
	if v == nil {
		return
	}
	if err := json.Unmarshal(out, v); err != nil {
		p.T.Fatalf("producer.py %s: output %q: %v", strings.Join(args, " "), out, err)
	}
}

// batchResult is one output line of `producer.py batch`.
type batchResult = e2e.Answer

// batch runs many commands in one Python process (starting Django costs
// about half a second) and returns one result per command.
func (p *producer) batch(cmds [][]string) []batchResult {
	p.T.Helper()
	return e2e.Batch(p.Producer, cmds...)
}

// mustBatch is batch where every command must succeed.
func (p *producer) mustBatch(cmds [][]string) []json.RawMessage {
	p.T.Helper()
	return e2e.MustBatch(p.Producer, cmds...)
}

func decodeJSON[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return v
}

// rows is a `producer.py dump`: table name to rows.
type rows map[string][]map[string]any

func (p *producer) dump() rows {
	p.T.Helper()
	var r rows
	p.run(&r, "dump")
	return r
}

func readJSONFile[T any](t *testing.T, path string) T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON[T](t, b)
}

var (
	naiveTimeRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?$`)
	pgTimeRe    = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?[+-]\d{2}:\d{2}$`)
)

// storedTime checks that s is a timestamp exactly as the database driver
// returns what Django stored in configuration c (ATP-SPEC.md section 7) and
// returns its instant.
func storedTime(t *testing.T, c dbCase, s string) (time.Time, error) {
	t.Helper()
	if strings.HasSuffix(s, ".000000") || strings.Contains(s, ".000000+") || strings.Contains(s, ".000000-") {
		return time.Time{}, fmt.Errorf("%q: Django omits a zero fraction", s)
	}
	// SQLite stores naive text; Django's PostgreSQL cursor returns naive
	// datetimes (in the session zone, TIME_ZONE) when USE_TZ is False.
	if !c.postgres || !c.cfg.UseTZ {
		if !naiveTimeRe.MatchString(s) {
			return time.Time{}, fmt.Errorf("%q: want naive text YYYY-MM-DD HH:MM:SS[.ffffff]", s)
		}
		return time.ParseInLocation("2006-01-02 15:04:05.999999", s, c.zone(t))
	}
	if !pgTimeRe.MatchString(s) {
		return time.Time{}, fmt.Errorf("%q: want YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM", s)
	}
	ts, err := time.Parse("2006-01-02 15:04:05.999999-07:00", s)
	if err != nil {
		return time.Time{}, err
	}
	// USE_TZ: Django's session time zone is UTC.
	if _, off := ts.Zone(); off != 0 {
		return time.Time{}, fmt.Errorf("%q: offset %ds, want UTC", s, off)
	}
	return ts, nil
}
