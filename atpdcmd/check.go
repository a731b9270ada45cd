package atpdcmd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/daemon"
	"github.com/eoxserver/atpd/executor"
	"github.com/eoxserver/atpd/gohandlers"
	"github.com/eoxserver/atpd/history"
	"github.com/eoxserver/atpd/pyhandlers"
)

// Levels of a check finding. Only levelFail needs action before the
// switch; it makes `atpd check` exit 1.
const (
	levelOK   = "ok"
	levelInfo = "info"
	levelWarn = "warn"
	levelFail = "fail"
)

// Finding kinds, the "check" of a finding.
const (
	checkSchema     = "schema"
	checkMigrations = "migrations"
	checkNotify     = "notify"
	checkPython     = "python"
	checkHandler    = "handler"
	checkTimeout    = "timeout"
	checkMaxStart   = "maxstart"
)

// checkHistoryTimeout bounds the read of the whole log history.
const checkHistoryTimeout = 10 * time.Minute

// checkImportTimeout bounds the Python process that imports the handlers
// (django.setup() included).
const checkImportTimeout = 2 * time.Minute

// suggestFactor and suggestStep make the suggested timeout: the longest
// run plus a quarter, plus atpd's largest deadline margin, rounded up to a
// whole minute.
const (
	suggestFactor = 1.25
	suggestStep   = time.Minute
	suggestMargin = 10 * time.Second
)

// checkReport is what `atpd check --json` prints.
type checkReport struct {
	Database string         `json:"database"` // redacted
	OK       bool           `json:"ok"`       // no finding needs action: exit status 0
	Findings []checkFinding `json:"findings"`
	Types    []checkType    `json:"types"`
}

// checkFinding is one line of the report.
type checkFinding struct {
	Check   string `json:"check"`          // schema, migrations, notify, python, handler, timeout, maxstart
	Level   string `json:"level"`          // ok, info, warn, fail
	Type    string `json:"type,omitempty"` // the task type it is about
	Message string `json:"message"`
	Action  string `json:"action,omitempty"` // what to do about it
}

// checkType is one task type: its handler and what its history says.
type checkType struct {
	Type     string `json:"type"`
	Handler  string `json:"handler"`
	Executor string `json:"executor"` // go, cpython or embedded
	// Importable is null when the path was not checked.
	Importable        *bool    `json:"importable"`
	ImportError       string   `json:"import_error,omitempty"`
	Timeout           float64  `json:"timeout"`    // seconds
	RunWindow         float64  `json:"run_window"` // seconds atpd lets a run go without a status write
	MaxStart          int      `json:"maxstart"`
	Instances         int      `json:"instances"`
	Runs              int      `json:"runs"`
	P99Run            float64  `json:"p99_run"`     // seconds
	LongestRun        float64  `json:"longest_run"` // seconds
	LongestInstance   string   `json:"longest_instance,omitempty"`
	RunsOverWindow    int      `json:"runs_over_window"`
	TimeoutReenqueues int      `json:"timeout_reenqueues"`
	Reenqueued        int      `json:"reenqueued"`
	FinishedLate      int      `json:"finished_late"`
	FinishedLateRefs  []string `json:"finished_late_instances,omitempty"`
	OverMaxStart      int      `json:"over_maxstart"`
	OverMaxStartRefs  []string `json:"over_maxstart_instances,omitempty"`
	AtRisk            bool     `json:"at_risk"`
	SuggestedTimeout  float64  `json:"suggested_timeout,omitempty"` // seconds, when at risk
}

func (a *app) checkCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "check [--db DSN | -s MODULE] [-p DIR] [--python PY] [--json]",
		Short: "Pre-flight check of a database before atpd replaces asyncProcServer.py",
		Long: `check reads the database the reference daemon works on, changes nothing, and
reports what would differ once atpd runs it:

  schema      the six processes_* tables and every column atpd uses
  migrations  the processes app's migrations Django recorded
  notify      PostgreSQL: whether the trigger of atpd notify install is there
              (instant pick-up of Python producers' tasks) or atpd polls
  python      the interpreter (--python, -p, -s) the handlers import with
  handler     per task type: does its handler path import, exactly as the
              reference daemon imports it (CPython, with django.setup());
              Go handlers registered in this atpd count as importable
  timeout     per task type, from the log history: instances re-enqueued with
              "` + djangodb.MsgZombieReenqueued + `" that then FINISHED, and
              runs longer than atpd allows (the timeout minus a margin). The
              reference daemon let such runs finish late beside a duplicate
              run; atpd cancels them at the deadline, so they end FAILED.
              A type at risk gets a suggested timeout: its longest run plus
              25% plus 10 s, rounded up to a whole minute.
  maxstart    instances the reference daemon re-enqueued after a timeout
              although they had been started maxstart times: atpd fails
              such a task instead (the reference never enforced maxstart)

A run's time is counted as both daemons' deadlines count it: from its start,
or its handler's last status write (setRunning, setPaused), to the next.

Exit status: 0 when no finding needs action, 1 when one does ("fail" lines)
or the check could not run, 2 on a usage error.`,
		RunE: a.runCheck,
	}, cobra.NoArgs)
	addFormatFlags(c, true)
	return c
}

func (a *app) runCheck(cmd *cobra.Command, _ []string) error {
	format, cfg, err := formatAndConfig(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	store, err := openCheckStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer store.Close()
	r, err := runChecks(ctx, cfg, store)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if format == formatJSON {
		err = writeJSON(a.stdout, r)
	} else {
		err = writeCheckText(a, r)
	}
	if err != nil {
		return err
	}
	if !r.OK {
		return &exitCodeError{code: exitFailure}
	}
	return nil
}

// openCheckStore opens the database as it is: nothing created, an
// incomplete schema reported as a finding rather than refused.
func openCheckStore(ctx context.Context, cfg config.Config) (djangodb.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if strings.HasPrefix(cfg.DB, "sqlite:") {
		if _, err := os.Stat(djangodb.SQLitePath(cfg.DB)); err != nil {
			return nil, fmt.Errorf("database %s: %w", cfg.DB, err)
		}
	}
	store, err := openDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := store.Ping(ctx); err != nil {
		store.Close()
		return nil, dbError("connect to database", store.Describe(), err)
	}
	return store, nil
}

// runChecks makes the report. Its error is for a check that could not
// run (the database failing a read); what it finds are findings.
func runChecks(ctx context.Context, cfg config.Config, store djangodb.Store) (*checkReport, error) {
	r := &checkReport{Database: store.Describe(), Findings: []checkFinding{}, Types: []checkType{}}
	add := func(f checkFinding) { r.Findings = append(r.Findings, f) }

	// Schema first: without the tables nothing else can be read.
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := djangodb.CheckSchema(sctx, store)
	cancel()
	switch {
	case errors.Is(err, djangodb.ErrSchema):
		add(checkFinding{Check: checkSchema, Level: levelFail, Message: errorText(err),
			Action: "run Django's migrate for the processes app (or atpd migrate on an empty database); atpd does not patch a partial set"})
		r.OK = false
		return r, nil
	case err != nil:
		return nil, err
	}
	add(checkFinding{Check: checkSchema, Level: levelOK, Message: "the six processes_* tables have every column atpd uses"})
	add(checkMigrationsFinding(ctx, store))
	add(notifyFinding(ctx, cfg, store))

	hctx, cancel := context.WithTimeout(ctx, checkHistoryTimeout)
	hist, err := history.Read(hctx, store)
	cancel()
	if err != nil {
		return nil, err
	}
	types := make([]checkType, len(hist))
	for i, h := range hist {
		types[i] = historyType(h)
	}
	for _, f := range checkHandlers(ctx, cfg, types) {
		add(f)
	}
	for i, h := range hist {
		add(timeoutFinding(h, &types[i]))
	}
	for _, h := range hist {
		if f, ok := maxStartFinding(h); ok {
			add(f)
		}
	}
	r.Types = types
	r.OK = !slices.ContainsFunc(r.Findings, func(f checkFinding) bool { return f.Level == levelFail })
	return r, nil
}

func checkMigrationsFinding(ctx context.Context, store djangodb.Store) checkFinding {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	f := checkFinding{Check: checkMigrations}
	applied, err := djangodb.Migrations(ctx, store)
	if err != nil {
		f.Level, f.Message = levelInfo, "django_migrations not readable ("+errorText(err)+"); the tables are complete, which is what atpd needs"
		return f
	}
	var missing []string
	for _, m := range djangodb.ExpectedMigrations() {
		if !slices.Contains(applied, m) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		f.Level = levelWarn
		f.Message = "django_migrations lacks processes " + strings.Join(missing, ", ") + " (applied: " + listOrNone(applied) + ")"
		f.Action = "the tables are complete; Django's migrate may try to create them again: run `manage.py migrate processes --fake` once"
		return f
	}
	f.Level, f.Message = levelOK, "processes migrations applied: "+strings.Join(applied, ", ")
	return f
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func notifyFinding(ctx context.Context, cfg config.Config, store djangodb.Store) checkFinding {
	f := checkFinding{Check: checkNotify, Level: levelInfo}
	ti, ok := store.(djangodb.TriggerInstaller)
	if !ok {
		f.Message = fmt.Sprintf("SQLite has no LISTEN/NOTIFY: atpd finds new tasks by polling every %v (--poll-interval); the reference daemon slept 1.5 s", cfg.PollInterval)
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	on, err := ti.NotifyTriggerInstalled(ctx)
	switch {
	case err != nil:
		f.Message = "cannot tell whether trigger " + djangodb.NotifyTrigger + " is installed: " + errorText(err)
	case on:
		f.Level = levelOK
		f.Message = fmt.Sprintf("trigger %s is installed: atpd picks up Python producers' tasks at once (channel %s)", djangodb.NotifyTrigger, djangodb.NotifyChannel)
	default:
		f.Message = fmt.Sprintf("trigger %s is not installed: atpd picks up Python producers' tasks by polling every %v (--poll-interval); atpd's own producers notify anyway", djangodb.NotifyTrigger, cfg.PollInterval)
		f.Action = "optional: `atpd notify install` for instant pick-up (`atpd notify remove` undoes it)"
	}
	if !cfg.Listen {
		f.Message += "; this configuration does not listen (--listen=false)"
	}
	return f
}

// routeOf names the executor the daemon runs path on: go, cpython or
// embedded, as buildExecutor's router decides.
func routeOf(cfg config.Config, path string) string {
	// Route only asks whether an executor of the name exists.
	var placeholder executor.Executor = gohandlers.Default
	r := &executor.Router{Go: gohandlers.Default, Routes: cfg.Executors, Default: placeholder,
		Executors: map[string]executor.Executor{config.ExecutorGo: placeholder, config.ExecutorCPython: placeholder, config.ExecutorEmbedded: placeholder}}
	name, _, _ := r.Route(path)
	if name == "default" {
		return config.ExecutorCPython
	}
	return name
}

// checkHandlers finds, for each type, whether its handler path imports:
// Go handlers of this atpd are there; CPython paths are imported in one
// Python process set up as the workers are.
func checkHandlers(ctx context.Context, cfg config.Config, types []checkType) []checkFinding {
	var out []checkFinding
	yes, no := true, false
	var pyPaths []string
	for i := range types {
		t := &types[i]
		t.Executor = routeOf(cfg, t.Handler)
		if t.Executor == config.ExecutorCPython && !slices.Contains(pyPaths, t.Handler) {
			pyPaths = append(pyPaths, t.Handler)
		}
	}
	results := map[string]pyhandlers.ImportResult{}
	var pyErr error
	if len(pyPaths) > 0 {
		ictx, cancel := context.WithTimeout(ctx, checkImportTimeout)
		res, version, err := pyhandlers.CheckImports(ictx, pyhandlers.Config{
			Python: cfg.Python, PythonPath: cfg.PythonPath, SettingsModule: cfg.Settings, Database: databaseVendor(cfg.DB),
		}, pyPaths)
		cancel()
		f := checkFinding{Check: checkPython}
		if err != nil {
			pyErr = err
			f.Level, f.Message = levelFail, errorText(err)
			f.Action = "name the interpreter, Python path and settings the reference daemon ran with: --python, -p DIR, -s MODULE"
		} else {
			for _, r := range res {
				results[r.Handler] = r
			}
			f.Level = levelOK
			f.Message = fmt.Sprintf("%s (Python %s) imports handlers with %s", cfg.Python, version, pythonSetup(cfg))
		}
		out = append(out, f)
	}
	for i := range types {
		t := &types[i]
		f := checkFinding{Check: checkHandler, Type: t.Type}
		switch {
		case !handlerAllowed(cfg.AllowHandlers, t.Handler):
			t.Importable = &no
			t.ImportError = "not in allow_handlers"
			f.Level = levelFail
			f.Message = fmt.Sprintf("%s is not in allow_handlers: atpd fails every task of %s", t.Handler, t.Type)
			f.Action = "add it to allow_handlers (--allow-handler) or unregister the type"
		case t.Executor == config.ExecutorGo && gohandlers.Default.Has(t.Handler):
			t.Importable = &yes
			f.Level, f.Message = levelOK, t.Handler+": a Go handler of this atpd"
		case t.Executor == config.ExecutorGo:
			t.Importable = &no
			t.ImportError = "no Go handler registered"
			f.Level = levelFail
			f.Message = fmt.Sprintf("%s is routed to Go (executors) but this atpd has no Go handler for it: tasks of %s fail", t.Handler, t.Type)
			f.Action = "route it to cpython, or build atpd with its Go port (docs/GO-HANDLERS.md)"
		case t.Executor == config.ExecutorEmbedded:
			f.Level, f.Message = levelInfo, t.Handler+": runs on the embedded executor (gpython); not checked"
		case pyErr != nil:
			f.Level, f.Message = levelWarn, t.Handler+": not checked (Python did not start, see the python finding)"
		default:
			res := results[t.Handler]
			if res.Error == "" {
				t.Importable = &yes
				f.Level, f.Message = levelOK, t.Handler+" imports"
				break
			}
			t.Importable = &no
			t.ImportError = res.Class + ": " + res.Error
			f.Level = levelFail
			f.Message = fmt.Sprintf("%q does not import: %s: %s; every task of %s fails with %q, as under asyncProcServer.py", t.Handler, res.Class, res.Error, t.Type, res.Error)
			f.Action = fmt.Sprintf("fix the path (atpd register %s HANDLER ...) or the interpreter and Python path (--python, -p, -s)", t.Type)
		}
		out = append(out, f)
	}
	return out
}

// pythonSetup says how the handlers' interpreter is set up.
func pythonSetup(cfg config.Config) string {
	var parts []string
	if len(cfg.PythonPath) > 0 {
		parts = append(parts, "-p "+strings.Join(cfg.PythonPath, " -p "))
	}
	if cfg.Settings != "" {
		parts = append(parts, "-s "+cfg.Settings+" (django.setup())")
	}
	if len(parts) == 0 {
		return "no -p and no -s"
	}
	return strings.Join(parts, ", ")
}

// historyType is a type's row of the report, from its history.
func historyType(h history.TypeHistory) checkType {
	t := h.Type
	window := daemon.RunWindow(t.TimeoutDuration())
	ct := checkType{
		Type: t.Identifier, Handler: t.Handler, Timeout: t.Timeout, RunWindow: window.Seconds(), MaxStart: t.MaxStart,
		Instances: h.Instances, Runs: len(h.RunTimes),
		P99Run: msSeconds(h.RunPercentile(99)), LongestRun: msSeconds(h.LongestRun()),
		TimeoutReenqueues: h.TimeoutReenqueues, Reenqueued: h.Reenqueued,
		FinishedLate: h.FinishedLate, OverMaxStart: h.OverMaxStart,
	}
	if len(h.RunTimes) > 0 {
		ct.LongestInstance = refText(h.Longest)
	}
	for _, d := range h.RunTimes {
		if d > window {
			ct.RunsOverWindow++
		}
	}
	for _, ref := range h.FinishedLateRefs {
		ct.FinishedLateRefs = append(ct.FinishedLateRefs, refText(ref))
	}
	for _, sc := range h.OverMaxStartRefs {
		ct.OverMaxStartRefs = append(ct.OverMaxStartRefs, refText(sc.InstanceRef))
	}
	ct.AtRisk = ct.FinishedLate > 0 || ct.RunsOverWindow > 0
	if ct.AtRisk {
		ct.SuggestedTimeout = suggestTimeout(h.LongestRun(), t.TimeoutDuration()).Seconds()
	}
	return ct
}

// suggestTimeout is the timeout a type whose longest run took longest
// needs: that run plus a quarter plus atpd's largest margin, rounded up to
// a whole minute, and more than the current timeout.
func suggestTimeout(longest, current time.Duration) time.Duration {
	d := time.Duration(float64(longest)*suggestFactor) + suggestMargin
	d = time.Duration(math.Ceil(float64(d)/float64(suggestStep))) * suggestStep
	for d <= current {
		d += suggestStep
	}
	return d
}

// refText names an instance: "Type::id (instance 12)".
func refText(r djangodb.InstanceRef) string {
	return fmt.Sprintf("%s (instance %d)", r, r.ID)
}

// count is n with the noun in the number n asks for.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// refList names up to three instances and how many more there are.
func refList(refs []string, total int) string {
	shown := refs[:min(len(refs), 3)]
	s := strings.Join(shown, ", ")
	if more := total - len(shown); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func timeoutFinding(h history.TypeHistory, t *checkType) checkFinding {
	f := checkFinding{Check: checkTimeout, Type: t.Type}
	window := time.Duration(t.RunWindow * float64(time.Second))
	timeout := h.Type.TimeoutDuration()
	if t.Runs == 0 {
		f.Level = levelOK
		f.Message = fmt.Sprintf("no finished or failed runs in the log; timeout %s", seconds(t.Timeout))
		return f
	}
	runs := fmt.Sprintf("%s, p99 %s, longest %s by %s", count(t.Runs, "run", "runs"), durText(h.RunPercentile(99)), durText(h.LongestRun()), t.LongestInstance)
	if !t.AtRisk {
		f.Level = levelOK
		f.Message = fmt.Sprintf("%s: within the %s atpd allows with timeout %s", runs, durText(window), seconds(t.Timeout))
		if t.Reenqueued > 0 {
			f.Message += fmt.Sprintf("; %s re-enqueued after a timeout, none of which then finished", count(t.Reenqueued, "instance", "instances"))
		}
		return f
	}
	f.Level = levelFail
	var why []string
	if t.FinishedLate > 0 {
		why = append(why, fmt.Sprintf("%s FINISHED only after %q, beside a duplicate run: %s",
			count(t.FinishedLate, "instance", "instances"), djangodb.MsgZombieReenqueued, refList(t.FinishedLateRefs, t.FinishedLate)))
	}
	if t.RunsOverWindow > 0 {
		why = append(why, fmt.Sprintf("%d of %s took longer than the %s atpd allows with timeout %s",
			t.RunsOverWindow, count(t.Runs, "run", "runs"), durText(window), seconds(t.Timeout)))
	}
	f.Message = fmt.Sprintf("%s; %s: atpd cancels such runs at the deadline, so these tasks would end FAILED", runs, strings.Join(why, "; "))
	suggested := time.Duration(t.SuggestedTimeout * float64(time.Second))
	f.Action = fmt.Sprintf("raise the timeout of %s from %s to %s (longest run + 25%% + 10 s, rounded up to a minute): %s",
		t.Type, seconds(timeout.Seconds()), seconds(suggested.Seconds()), registerLine(h.Type, suggested))
	return f
}

// registerLine is the atpd register command that changes only the
// timeout of t (registering sets every field, as the tracker does).
func registerLine(t djangodb.TaskType, timeout time.Duration) string {
	return fmt.Sprintf("atpd register %s %s --timeout %s --timeret %s --maxrestart %d",
		shellWord(t.Identifier), shellWord(t.Handler), strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64),
		strconv.FormatFloat(t.TimeRet, 'f', -1, 64), t.MaxStart-1)
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '.' || r == '_' || r == '-' || r == ':' || r == '/' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func maxStartFinding(h history.TypeHistory) (checkFinding, bool) {
	if h.OverMaxStart == 0 {
		return checkFinding{}, false
	}
	t := h.Type
	var ex []string
	for _, sc := range h.OverMaxStartRefs {
		ex = append(ex, fmt.Sprintf("%s: %d starts, %s", refText(sc.InstanceRef), sc.Starts, sc.Status))
	}
	f := checkFinding{Check: checkMaxStart, Type: t.Identifier, Level: levelWarn}
	f.Message = fmt.Sprintf("%s re-enqueued after a timeout with maxstart (%d) starts used up, where atpd writes FAILED %q: %s",
		count(h.OverMaxStart, "instance", "instances"), t.MaxStart, djangodb.MaxStartsMessage(t.MaxStart, t.MaxStart), refList(ex, h.OverMaxStart))
	if h.OverMaxStartFinished > 0 {
		f.Level = levelFail
		f.Message += fmt.Sprintf("; %d of them FINISHED in the end and would end FAILED", h.OverMaxStartFinished)
	}
	f.Action = fmt.Sprintf("if these restarts are expected, raise maxrestart of %s to %d: %s",
		t.Identifier, h.MostStarts-1, registerLineMaxRestart(t, h.MostStarts-1))
	return f, true
}

// registerLineMaxRestart is the atpd register command that changes only
// the maxrestart of t.
func registerLineMaxRestart(t djangodb.TaskType, maxRestart int) string {
	t.MaxStart = maxRestart + 1
	return registerLine(t, t.TimeoutDuration())
}

// durText renders a run time for people: whole seconds from a second on.
func durText(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// checkMarks are the text report's level tags.
var checkMarks = map[string]string{levelOK: "ok", levelInfo: "info", levelWarn: "WARN", levelFail: "FAIL"}

func writeCheckText(a *app, r *checkReport) error {
	w := a.stdout
	fmt.Fprintf(w, "atpd check: %s\n\n", r.Database)
	fails := 0
	for _, f := range r.Findings {
		what := f.Check
		if f.Type != "" {
			what += " " + cell(f.Type)
		}
		fmt.Fprintf(w, "%-6s %s: %s\n", "["+checkMarks[f.Level]+"]", what, cell(f.Message))
		if f.Action != "" {
			fmt.Fprintf(w, "       -> %s\n", cell(f.Action))
		}
		if f.Level == levelFail {
			fails++
		}
	}
	if len(r.Types) > 0 {
		fmt.Fprintln(w)
		t := newTable(w)
		t.row("TYPE", "TIMEOUT", "ATPD ALLOWS", "RUNS", "P99", "LONGEST", "TIMEOUT RE-ENQUEUES", "FINISHED LATE", "OVER MAXSTART", "SUGGESTED TIMEOUT")
		for _, ct := range r.Types {
			suggested := "-"
			if ct.AtRisk {
				suggested = seconds(ct.SuggestedTimeout)
			}
			p99, longest := "-", "-"
			if ct.Runs > 0 {
				p99, longest = durText(secondsDur(ct.P99Run)), durText(secondsDur(ct.LongestRun))
			}
			t.row(ct.Type, seconds(ct.Timeout), durText(secondsDur(ct.RunWindow)), strconv.Itoa(ct.Runs),
				p99, longest, strconv.Itoa(ct.TimeoutReenqueues),
				strconv.Itoa(ct.FinishedLate), strconv.Itoa(ct.OverMaxStart), suggested)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	var err error
	if fails == 0 {
		_, err = fmt.Fprintln(w, "No finding needs action before the switch.")
	} else {
		_, err = fmt.Fprintf(w, "%s before the switch (exit status 1).\n", count(fails, "finding needs action", "findings need action"))
	}
	return err
}

// msSeconds is d in seconds, to the millisecond.
func msSeconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }

func secondsDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
