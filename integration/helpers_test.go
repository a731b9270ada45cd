package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	if c.postgres {
		return testdb.Postgres(t, c.cfg)
	}
	return testdb.SQLite(t, c.cfg)
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
type producer struct {
	t   *testing.T
	py  string
	dir string
	env []string
}

func newProducer(t *testing.T, dsn string, cfg testdb.Config) *producer {
	t.Helper()
	return &producer{
		t:   t,
		py:  testdb.Python(t),
		dir: filepath.Join(testdb.RepoRoot(t), "integration"),
		env: testdb.DjangoEnv(t, dsn, cfg),
	}
}

const producerTimeout = 2 * time.Minute

// runExit runs one producer command and returns its stdout and exit status.
func (p *producer) runExit(args ...string) ([]byte, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), producerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.py, append([]string{"producer.py"}, args...)...)
	cmd.Dir, cmd.Env = p.dir, p.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &exit):
		p.t.Logf("producer.py %s: exit %d: %s", strings.Join(args, " "), exit.ExitCode(), strings.TrimSpace(stderr.String()))
		return out, exit.ExitCode()
	default:
		p.t.Fatalf("producer.py %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		return nil, -1
	}
}

// run runs one producer command that must succeed and decodes its output into v.
func (p *producer) run(v any, args ...string) {
	p.t.Helper()
	out, code := p.runExit(args...)
	if code != 0 {
		p.t.Fatalf("producer.py %s: exit %d", strings.Join(args, " "), code)
	}
	if v == nil {
		return
	}
	if err := json.Unmarshal(out, v); err != nil {
		p.t.Fatalf("producer.py %s: output %q: %v", strings.Join(args, " "), out, err)
	}
}

// batchResult is one output line of `producer.py batch`.
type batchResult struct {
	Exit    int             `json:"exit"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
}

// batch runs many commands in one Python process (starting Django costs
// about half a second) and returns one result per command.
func (p *producer) batch(cmds [][]string) []batchResult {
	p.t.Helper()
	var in bytes.Buffer
	for _, c := range cmds {
		line, err := json.Marshal(c)
		if err != nil {
			p.t.Fatalf("encode producer command %v: %v", c, err)
		}
		in.Write(append(line, '\n'))
	}
	ctx, cancel := context.WithTimeout(context.Background(), producerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.py, "producer.py", "batch")
	cmd.Dir, cmd.Env, cmd.Stdin = p.dir, p.env, &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("producer.py batch: %v: %s", err, stderr.String())
	}
	var results []batchResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r batchResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			p.t.Fatalf("producer.py batch: line %q: %v", sc.Text(), err)
		}
		results = append(results, r)
	}
	if len(results) != len(cmds) {
		p.t.Fatalf("producer.py batch: %d results for %d commands: %s", len(results), len(cmds), stderr.String())
	}
	return results
}

// mustBatch is batch where every command must succeed.
func (p *producer) mustBatch(cmds [][]string) []json.RawMessage {
	p.t.Helper()
	var out []json.RawMessage
	for i, r := range p.batch(cmds) {
		if r.Exit != 0 {
			p.t.Fatalf("producer.py %v: exit %d: %s: %s", cmds[i], r.Exit, r.Error, r.Message)
		}
		out = append(out, r.Result)
	}
	return out
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
	p.t.Helper()
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
