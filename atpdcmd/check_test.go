package atpdcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/djangodb/storetest"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/internal/testdb"
)

const sec = time.Second

// The check tests' task types.
var (
	typeSlow   = djangodb.TypeSpec{Identifier: "Slow", Handler: "e2e_handlers.sleeper", Timeout: 60, TimeRet: -1, MaxRestart: 2}
	typeQuick  = djangodb.TypeSpec{Identifier: "Quick", Handler: gohandlers.DemoPath, Timeout: 3600, TimeRet: 86400, MaxRestart: 2}
	typeBroken = djangodb.TypeSpec{Identifier: "Broken", Handler: "nodots", Timeout: 3600, TimeRet: -1, MaxRestart: 2}
	typeRetry  = djangodb.TypeSpec{Identifier: "Retry", Handler: "e2e_fidpkg.mod", Timeout: 3600, TimeRet: -1, MaxRestart: 0}
)

// Histories as the reference daemon left them.
var (
	// Timed out, re-enqueued and started again beside the first run,
	// which then finished: 100 s from the first start, timeout 60 s.
	histSlowLate = storetest.Scripted{Type: "Slow", Identifier: "late", Steps: []storetest.Step{
		{At: 1 * sec, Op: "start"}, {At: 70 * sec, Op: "timeout"}, {At: 72 * sec, Op: "start"}, {At: 101 * sec, Op: "finish"}}}
	histSlowOK = storetest.Scripted{Type: "Slow", Identifier: "ok", Steps: []storetest.Step{
		{At: 1 * sec, Op: "start"}, {At: 31 * sec, Op: "finish"}}}
	histQuickA = storetest.Scripted{Type: "Quick", Identifier: "a", Steps: []storetest.Step{
		{At: 1 * sec, Op: "start"}, {At: 3 * sec, Op: "finish"}}}
	histQuickB = storetest.Scripted{Type: "Quick", Identifier: "b", Steps: []storetest.Step{
		{At: 1 * sec, Op: "start"}, {At: 6 * sec, Op: "finish"}}}
	// maxstart 1, timed out after its one start and finished on the next:
	// atpd would have failed it at the timeout.
	histRetry = storetest.Scripted{Type: "Retry", Identifier: "again", Steps: []storetest.Step{
		{At: 1 * sec, Op: "start"}, {At: 3700 * sec, Op: "timeout"}, {At: 3702 * sec, Op: "start"}, {At: 3710 * sec, Op: "finish"}}}
)

// writeHistory registers types on db and plays the histories, two hours
// apart, on a store whose clock they set.
func writeHistory(t *testing.T, db *e2eDB, cfg testdb.Config, types []djangodb.TypeSpec, hist []storetest.Scripted) map[string]int64 {
	t.Helper()
	clock := &storetest.ScriptClock{}
	opts := testdb.Options(cfg)
	opts.Clock = clock
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := djangodb.Open(ctx, db.DSN, opts)
	if err != nil {
		t.Fatalf("open %s: %v", djangodb.RedactDSN(db.DSN), err)
	}
	defer s.Close()
	st := djangodb.MustTrackerOf(s)
	for _, spec := range types {
		if _, err := st.RegisterType(ctx, spec); err != nil {
			t.Fatalf("register %s: %v", spec.Identifier, err)
		}
	}
	base := time.Date(2031, 1, 6, 10, 0, 0, 0, time.UTC)
	ids := map[string]int64{}
	for i, h := range hist {
		ids[h.Type+"::"+h.Identifier] = h.Play(t, ctx, st, clock, base.Add(time.Duration(i)*2*time.Hour))
	}
	return ids
}

// finding is what a test expects of one checkFinding: its check, level
// and type, and substrings of its message and action.
type finding struct {
	check, level, typ string
	message, action   []string
}

func (f finding) matches(got checkFinding) bool {
	if got.Check != f.check || got.Level != f.level || got.Type != f.typ {
		return false
	}
	for _, m := range f.message {
		if !strings.Contains(got.Message, m) {
			return false
		}
	}
	for _, a := range f.action {
		if !strings.Contains(got.Action, a) {
			return false
		}
	}
	return true
}

// TestCheckCommand: atpd check on PostgreSQL and SQLite migrated by
// Django, with a history written as the reference daemon writes it: the
// findings in order, the exit status, the JSON and the text.
func TestCheckCommand(t *testing.T) {
	cases := []struct {
		name  string
		types []djangodb.TypeSpec
		hist  []storetest.Scripted
		// prepare runs after the history is written.
		prepare func(t *testing.T, db *e2eDB)
		python  string            // --python, when not the tests' interpreter
		env     map[string]string // environment (ATPD_*) of the command
		code    int
		want    []finding
		// checkTypes checks the JSON's types; ids are the instances by name.
		checkTypes func(t *testing.T, got []checkType, ids map[string]int64)
		text       []string // substrings of the text report
	}{
		{
			name:  "history with timeouts",
			types: []djangodb.TypeSpec{typeSlow, typeQuick, typeBroken, typeRetry},
			hist:  []storetest.Scripted{histSlowLate, histSlowOK, histQuickA, histQuickB, histRetry},
			code:  1,
			want: []finding{
				{check: checkSchema, level: levelOK, message: []string{"the six processes_* tables"}},
				{check: checkMigrations, level: levelOK, message: []string{"0001_initial, 0002_auto_20181203_0914"}},
				{check: checkNotify, level: levelInfo, message: []string{"polling every 50ms"}},
				{check: checkPython, level: levelOK, message: []string{"imports handlers with -p "}},
				{check: checkHandler, level: levelOK, typ: "Slow", message: []string{"e2e_handlers.sleeper imports"}},
				{check: checkHandler, level: levelOK, typ: "Quick", message: []string{"tools.atp_demo.handler: a Go handler of this atpd"}},
				{check: checkHandler, level: levelFail, typ: "Broken",
					message: []string{`"nodots" does not import: ValueError: Empty module name`, `every task of Broken fails with "Empty module name"`},
					action:  []string{"atpd register Broken HANDLER"}},
				{check: checkHandler, level: levelFail, typ: "Retry",
					message: []string{`"e2e_fidpkg.mod" does not import: TypeError: 'module' object is not callable`}},
				{check: checkTimeout, level: levelFail, typ: "Slow",
					message: []string{"2 runs, p99 1m40s, longest 1m40s by Slow::late (instance ",
						`1 instance FINISHED only after "Reenqueued by ATPD after timeout.", beside a duplicate run: Slow::late (instance `,
						"1 of 2 runs took longer than the 54s atpd allows with timeout 60s", "would end FAILED"},
					action: []string{"from 60s to 180s", "atpd register Slow e2e_handlers.sleeper --timeout 180 --timeret -1 --maxrestart 2"}},
				{check: checkTimeout, level: levelOK, typ: "Quick",
					message: []string{"2 runs, p99 5s, longest 5s by Quick::b (instance ", "within the 59m50s atpd allows with timeout 3600s"}},
				{check: checkTimeout, level: levelOK, typ: "Broken", message: []string{"no finished or failed runs"}},
				{check: checkTimeout, level: levelFail, typ: "Retry",
					message: []string{"1 run, p99 1h1m49s", "Retry::again (instance "},
					action:  []string{"from 3600s to 4680s", "--timeout 4680 --timeret -1 --maxrestart 0"}},
				{check: checkMaxStart, level: levelFail, typ: "Retry",
					message: []string{"1 instance re-enqueued after a timeout with maxstart (1) starts used up",
						`"Failed by ATPD after timeout: started 1 times, maxstart is 1."`, "Retry::again (instance ", "2 starts, FINISHED",
						"1 of them FINISHED in the end and would end FAILED"},
					action: []string{"raise maxrestart of Retry to 1", "--timeout 3600 --timeret -1 --maxrestart 1"}},
			},
			checkTypes: func(t *testing.T, got []checkType, ids map[string]int64) {
				yes, no := true, false
				want := []checkType{
					{Type: "Slow", Handler: "e2e_handlers.sleeper", Executor: "cpython", Importable: &yes, Timeout: 60, RunWindow: 54, MaxStart: 3,
						Instances: 2, Runs: 2, P99Run: 100, LongestRun: 100, LongestInstance: fmt.Sprintf("Slow::late (instance %d)", ids["Slow::late"]),
						RunsOverWindow: 1, TimeoutReenqueues: 1, Reenqueued: 1, FinishedLate: 1,
						FinishedLateRefs: []string{fmt.Sprintf("Slow::late (instance %d)", ids["Slow::late"])}, AtRisk: true, SuggestedTimeout: 180},
					{Type: "Quick", Handler: gohandlers.DemoPath, Executor: "go", Importable: &yes, Timeout: 3600, RunWindow: 3590, MaxStart: 3,
						Instances: 2, Runs: 2, P99Run: 5, LongestRun: 5, LongestInstance: fmt.Sprintf("Quick::b (instance %d)", ids["Quick::b"])},
					{Type: "Broken", Handler: "nodots", Executor: "cpython", Importable: &no, ImportError: "ValueError: Empty module name",
						Timeout: 3600, RunWindow: 3590, MaxStart: 3},
					{Type: "Retry", Handler: "e2e_fidpkg.mod", Executor: "cpython", Importable: &no, ImportError: "TypeError: 'module' object is not callable",
						Timeout: 3600, RunWindow: 3590, MaxStart: 1, Instances: 1, Runs: 1, P99Run: 3709, LongestRun: 3709,
						LongestInstance: fmt.Sprintf("Retry::again (instance %d)", ids["Retry::again"]), RunsOverWindow: 1, TimeoutReenqueues: 1,
						Reenqueued: 1, FinishedLate: 1, FinishedLateRefs: []string{fmt.Sprintf("Retry::again (instance %d)", ids["Retry::again"])},
						OverMaxStart: 1, OverMaxStartRefs: []string{fmt.Sprintf("Retry::again (instance %d)", ids["Retry::again"])},
						AtRisk: true, SuggestedTimeout: 4680},
				}
				if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
					t.Errorf("types:\n got %s\nwant %s", g, w)
				}
			},
			text: []string{
				"[FAIL] timeout Slow: 2 runs, p99 1m40s, longest 1m40s by Slow::late",
				"       -> raise the timeout of Slow from 60s to 180s",
				"[ok]   timeout Quick:",
				"TYPE    TIMEOUT  ATPD ALLOWS  RUNS  P99      LONGEST  TIMEOUT RE-ENQUEUES  FINISHED LATE  OVER MAXSTART  SUGGESTED TIMEOUT",
				"Slow    60s      54s          2     1m40s    1m40s    1                    1              0              180s",
				"Broken  3600s    59m50s       0     -        -        0                    0              0              -",
				"5 findings need action before the switch (exit status 1).",
			},
		},
		{
			name:  "nothing at risk",
			types: []djangodb.TypeSpec{typeQuick},
			hist:  []storetest.Scripted{histQuickA, histQuickB},
			code:  0,
			want: []finding{
				{check: checkSchema, level: levelOK},
				{check: checkMigrations, level: levelOK},
				{check: checkNotify, level: levelInfo},
				{check: checkHandler, level: levelOK, typ: "Quick"},
				{check: checkTimeout, level: levelOK, typ: "Quick"},
			},
			text: []string{"No finding needs action before the switch."},
		},
		{
			name:  "allow list",
			types: []djangodb.TypeSpec{typeQuick, typeSlow},
			env:   map[string]string{"ATPD_ALLOW_HANDLERS": "tools."},
			code:  1,
			want: []finding{
				{check: checkSchema, level: levelOK},
				{check: checkMigrations, level: levelOK},
				{check: checkNotify, level: levelInfo},
				{check: checkPython, level: levelOK},
				{check: checkHandler, level: levelOK, typ: "Quick"},
				{check: checkHandler, level: levelFail, typ: "Slow", message: []string{"e2e_handlers.sleeper is not in allow_handlers: atpd fails every task of Slow"}},
				{check: checkTimeout, level: levelOK, typ: "Quick"},
				{check: checkTimeout, level: levelOK, typ: "Slow"},
			},
		},
		{
			name:   "no interpreter",
			types:  []djangodb.TypeSpec{typeSlow},
			python: "/nonexistent/python3",
			code:   1,
			want: []finding{
				{check: checkSchema, level: levelOK},
				{check: checkMigrations, level: levelOK},
				{check: checkNotify, level: levelInfo},
				{check: checkPython, level: levelFail, message: []string{`python interpreter "/nonexistent/python3"`}, action: []string{"--python"}},
				{check: checkHandler, level: levelWarn, typ: "Slow", message: []string{"not checked"}},
				{check: checkTimeout, level: levelOK, typ: "Slow", message: []string{"no finished or failed runs"}},
			},
		},
		{
			name:    "incomplete schema",
			types:   []djangodb.TypeSpec{typeQuick},
			prepare: func(t *testing.T, db *e2eDB) { db.exec(`DROP TABLE processes_response`) },
			code:    1,
			want: []finding{{check: checkSchema, level: levelFail, message: []string{"missing table processes_response"},
				action: []string{"Django's migrate"}}},
			text: []string{"[FAIL] schema: ", "1 finding needs action before the switch (exit status 1)."},
		},
	}
	for _, k := range bothDBs {
		t.Run(k.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					db := newE2EDB(t, k)
					ids := writeHistory(t, db, k.cfg, tc.types, tc.hist)
					if tc.prepare != nil {
						tc.prepare(t, db)
					}
					py := db.py
					if tc.python != "" {
						py = tc.python
					}
					args := append([]string{"check", "--python", py, "-p", db.hdlDir}, db.dbArgs()...)

					code, stdout, stderr := runCLIEnv(t, tc.env, "", append(args, "--json")...)
					if code != tc.code {
						t.Fatalf("atpd check --json: exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
					}
					var r checkReport
					if err := json.Unmarshal([]byte(stdout), &r); err != nil {
						t.Fatalf("atpd check --json: %v\n%s", err, stdout)
					}
					if r.OK != (tc.code == 0) || r.Database != djangodb.RedactDSN(db.DSN) && !strings.Contains(r.Database, djangodb.SQLitePath(db.DSN)) {
						t.Errorf("report ok %t, database %q", r.OK, r.Database)
					}
					want := tc.want
					if k.pg {
						// PostgreSQL says whether its trigger is there.
						want = slices.Clone(want)
						for i := range want {
							if want[i].check == checkNotify {
								want[i].message = []string{"trigger atpd_notify_task_queued is not installed", "polling every 50ms"}
								want[i].action = []string{"atpd notify install"}
							}
						}
					}
					if len(r.Findings) != len(want) {
						t.Errorf("%d findings, want %d:\n%s", len(r.Findings), len(want), mustJSON(t, r.Findings))
					}
					for i := range min(len(r.Findings), len(want)) {
						if !want[i].matches(r.Findings[i]) {
							t.Errorf("finding %d:\n got %+v\nwant %+v", i, r.Findings[i], want[i])
						}
					}
					if tc.checkTypes != nil {
						tc.checkTypes(t, r.Types, ids)
					}

					code, stdout, _ = runCLIEnv(t, tc.env, "", args...)
					if code != tc.code {
						t.Errorf("atpd check: exit %d, want %d", code, tc.code)
					}
					for _, s := range tc.text {
						if !strings.Contains(stdout, s) {
							t.Errorf("text report lacks %q:\n%s", s, stdout)
						}
					}
				})
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCheckCommandErrors: mistakes on the command line are usage errors;
// a check that cannot run fails with one line.
func TestCheckCommandErrors(t *testing.T) {
	sqlite := testdb.SQLite(t, testdb.Config{UseTZ: true})
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"argument", []string{"check", "extra"}, 2, `unknown command "extra" for "atpd check"`},
		{"bad format", []string{"check", "--format", "xml", "--db", sqlite}, 2, `--format "xml": want table or json`},
		{"missing file", []string{"check", "--db", "sqlite:/nonexistent/x.sqlite3"}, 1, "atpd: check: database sqlite:/nonexistent/x.sqlite3: stat /nonexistent/x.sqlite3: no such file or directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) || tc.code != 0 && strings.Count(stderr, "\n") > 2 {
				t.Errorf("atpd %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.stderr)
			}
		})
	}
}

// TestCheckBinary: the walk-through of docs/MIGRATING.md through the real
// binary: a history with a timeout gives exit status 1 and names the type.
func TestCheckBinary(t *testing.T) {
	db := newE2EDB(t, sqliteUTC)
	writeHistory(t, db, sqliteUTC.cfg, []djangodb.TypeSpec{typeSlow, typeQuick}, []storetest.Scripted{histSlowLate, histSlowOK, histQuickA})
	code, stdout, stderr := runBin(t, nil, "", append([]string{"check", "--python", db.py, "-p", db.hdlDir}, db.dbArgs()...)...)
	if code != 1 || stderr != "" {
		t.Fatalf("atpd check: exit %d, stderr %q; want 1 and nothing\n%s", code, stderr, stdout)
	}
	for _, s := range []string{"atpd check: sqlite:", "[FAIL] timeout Slow:", "atpd register Slow e2e_handlers.sleeper --timeout 180", "[ok]   timeout Quick:", "1 finding needs action"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, stdout)
		}
	}
	t.Logf("atpd check:\n%s", stdout)
}

func TestSuggestTimeout(t *testing.T) {
	cases := []struct {
		longest, current, want time.Duration
	}{
		{100 * sec, 60 * sec, 180 * sec},       // 135 s, up to 3 min
		{3709 * sec, 3600 * sec, 4680 * sec},   // 4646.25 s, up to 78 min
		{40 * sec, 60 * sec, 120 * sec},        // 60 s is the timeout already: one minute more
		{10 * sec, 600 * sec, 660 * sec},       // a late finish with short runs: above the timeout
		{2 * time.Hour, time.Hour, 9060 * sec}, // 9010 s, up to 151 min
		{500 * time.Millisecond, 0, 60 * sec},  // timeout 0
		{59*sec + 900*time.Millisecond, 60 * sec, 120 * sec},
	}
	for _, c := range cases {
		if got := suggestTimeout(c.longest, c.current); got != c.want {
			t.Errorf("suggestTimeout(%v, %v) = %v, want %v", c.longest, c.current, got, c.want)
		}
	}
}

func TestShellWord(t *testing.T) {
	for in, want := range map[string]string{
		"tools.atp_demo.handler": "tools.atp_demo.handler",
		"My Type":                `'My Type'`,
		"it's":                   `'it'\''s'`,
		"":                       `''`,
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %s, want %s", in, got, want)
		}
	}
}
