package atpdcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/producer"
)

// exitQueueFull is sysexits.h's EX_TEMPFAIL: the task was not queued
// because the queue is full; the same command may succeed later.
const exitQueueFull = 75

// Output formats of the operator commands.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// opsTimeout bounds one database call of an operator command.
const opsTimeout = 15 * time.Second

// opsSession is what an operator command works with: the producer API over
// the configured database.
type opsSession struct {
	cfg   config.Config
	store djangodb.Store
	prod  *producer.Producer
	log   *slog.Logger
}

func (s *opsSession) Close() { s.store.Close() }

// openOps opens the configured database for an operator command. Commands
// that write (create) may create atpd's own default database, as the
// daemon does on first use; no command creates any other SQLite file,
// because a mistyped path would otherwise leave an empty database behind
// and report a missing table instead of a missing file.
func (a *app) openOps(cmd *cobra.Command, create bool) (*opsSession, error) {
	ctx := cmd.Context()
	cfg, ignored, err := loadConfig(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return a.openOpsConfig(ctx, cfg, ignored, create)
}

// openOpsFormat starts a command that needs no database created and has
// no flags besides its output format. The format is checked first, so
// that a bad --format is a usage error whatever state the database is in.
func (a *app) openOpsFormat(cmd *cobra.Command) (*opsSession, string, error) {
	format, err := outputFormat(cmd)
	if err != nil {
		return nil, "", err
	}
	s, err := a.openOps(cmd, false)
	if err != nil {
		return nil, "", err
	}
	return s, format, nil
}

func (a *app) openOpsConfig(ctx context.Context, cfg config.Config, ignored []string, create bool) (*opsSession, error) {
	// Operator commands keep stdout for their output; their log lines
	// (warnings, mostly) go to stderr.
	log, err := newLogger(a.stderr, cfg, "")
	if err != nil {
		return nil, err
	}
	logIgnoredOptions(log, cfg, ignored)
	if strings.HasPrefix(cfg.DB, "sqlite:") && !(create && cfg.EmbeddedDB()) {
		if _, err := os.Stat(djangodb.SQLitePath(cfg.DB)); err != nil {
			hint := ""
			if cfg.EmbeddedDB() {
				hint = " (atpd creates it on first use: run `atpd register`, `atpd enqueue`, `atpd demo` or the daemon)"
			}
			return nil, fmt.Errorf("database %s: %w%s", cfg.DB, err, hint)
		}
	}
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	opts := producer.Options{Logger: log, Timeout: opsTimeout}
	// On PostgreSQL a LISTENing daemon then takes an enqueued task at once,
	// without the trigger of `atpd notify install` (which only Python
	// producers need) and without waiting for its next poll.
	if n, ok := store.(djangodb.Notifier); ok {
		opts.Notifier = n
	}
	prod := producer.New(store, opts)
	return &opsSession{cfg: cfg, store: store, prod: prod, log: log}, nil
}

// notFoundError is a not-found an operator can act on: which of the type,
// the task or its response is missing. It still matches
// djangodb.ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return djangodb.ErrNotFound }

// explain turns the store's not-found for the task typ::id (id "" for a
// type alone) into a message that says what is missing; other errors pass
// unchanged. op names the command. The message is not found's too, which
// the type and task names make unambiguous.
func (s *opsSession) explain(ctx context.Context, op, typ, id string, err error) error {
	if !errors.Is(err, djangodb.ErrNotFound) {
		return err
	}
	what := op
	if id != "" {
		what = op + " " + djangodb.InstanceRef{Type: typ, Identifier: id}.String()
	}
	if _, terr := s.prod.Type(ctx, typ); errors.Is(terr, djangodb.ErrNotFound) {
		return &notFoundError{fmt.Sprintf("%s: task type %q is not registered (atpd register adds it)", what, typ)}
	}
	if id == "" {
		return err
	}
	in, ierr := s.prod.Task(ctx, typ, id)
	switch {
	case errors.Is(ierr, djangodb.ErrNotFound):
		return &notFoundError{fmt.Sprintf("%s: no such task (atpd tasks --type %s lists the type's tasks)", what, typ)}
	case ierr == nil && op == "response":
		return &notFoundError{fmt.Sprintf("%s: the task (status %s) has no response", what, in.Status)}
	}
	return err
}

// addFormatFlags gives a command --format table|json and, unless the name
// is taken (by enqueue's deprecated name of --input-json), --json as a
// short form.
func addFormatFlags(c *cobra.Command, jsonShortcut bool) {
	c.Flags().String("format", formatTable, "output format: table (for people) or json (for scripts)")
	if jsonShortcut {
		c.Flags().Bool("json", false, "output JSON (same as --format json)")
	}
}

// outputFormat returns the format the command's flags ask for.
func outputFormat(cmd *cobra.Command) (string, error) {
	f, _ := cmd.Flags().GetString("format")
	if j := cmd.Flags().Lookup("json"); j != nil && j.Value.Type() == "bool" {
		if on, _ := cmd.Flags().GetBool("json"); on {
			if cmd.Flags().Changed("format") && f != formatJSON {
				return "", &usageError{cmd: cmd, err: fmt.Errorf("--json contradicts --format %s", f)}
			}
			f = formatJSON
		}
	}
	switch f {
	case formatTable, formatJSON:
		return f, nil
	}
	return "", &usageError{cmd: cmd, err: fmt.Errorf("--format %q: want table or json", f)}
}

// formatAndConfig starts a command that opens the database itself: the
// output format (checked first, so that a bad --format is a usage error
// whatever the configuration) and the configuration.
func formatAndConfig(cmd *cobra.Command) (string, config.Config, error) {
	format, err := outputFormat(cmd)
	if err != nil {
		return "", config.Config{}, err
	}
	cfg, _, err := loadConfig(cmd.Context(), cmd)
	if err != nil {
		return "", config.Config{}, err
	}
	return format, cfg, nil
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; cells are escaped so that text a producer
// or handler wrote (identifiers, messages) cannot break the layout or send
// control sequences to the operator's terminal.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		io.WriteString(t.tw, cell(c))
	}
	io.WriteString(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// cell escapes what a terminal or the column layout would interpret.
func cell(s string) string {
	clean := true
	for _, r := range s {
		if r == '\t' || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// timeText renders a timestamp for people: local time, milliseconds.
func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05.000 MST")
}

// ageText renders a duration for people, rounded to what matters.
func ageText(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// seconds renders a float number of seconds as the tracker takes them.
func seconds(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) + "s" }
