package atpdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
	"github.com/eoxserver/atpd/producer"
	"github.com/eoxserver/atpd/web/schema"
)

// maxPickleRead bounds what enqueue reads as a pickle or JSON input.
const maxPickleRead = 256 << 20

// operatorCommands are the producer API's operations on the command line,
// over the same database the daemon uses.
func (a *app) operatorCommands() []*cobra.Command {
	return []*cobra.Command{
		a.registerCommand(), a.unregisterCommand(), a.enqueueCommand(),
		a.statusCommand(), a.logCommand(), a.responseCommand(), a.deleteCommand(),
		a.tasksCommand(), a.queueCommand(),
	}
}

func (a *app) registerCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "register TYPE HANDLER [--timeout S] [--timeret S] [--maxrestart N]",
		Short: "Register a task type (or update it)",
		Long: `register is tracker.registerTaskType: it creates the task type TYPE, whose
tasks run the handler HANDLER (a Python dotted path, "pkg.module.func"), or
updates it when it exists. As in the tracker, a negative timeout becomes 0,
a retention time (timeret) <= 0 keeps finished tasks forever, and a task is
started at most 1 + maxrestart times.`,
		RunE: a.runRegister,
	}, cobra.ExactArgs(2))
	c.Flags().Float64("timeout", djangodb.DefaultTimeout, "seconds a task may run before it counts as a zombie")
	c.Flags().Float64("timeret", djangodb.DefaultTimeRet, "seconds finished tasks are kept (<= 0: forever)")
	c.Flags().Int("maxrestart", djangodb.DefaultMaxRestart, "times a timed-out task is restarted before it fails")
	addFormatFlags(c, true)
	return c
}

func (a *app) runRegister(cmd *cobra.Command, args []string) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	spec := djangodb.TypeSpec{Identifier: args[0], Handler: args[1]}
	spec.Timeout, _ = cmd.Flags().GetFloat64("timeout")
	spec.TimeRet, _ = cmd.Flags().GetFloat64("timeret")
	spec.MaxRestart, _ = cmd.Flags().GetInt("maxrestart")
	// Checked before the database is opened, so that both databases
	// answer alike (and nothing is created for a typo).
	if err := producer.CheckTypeLimits(spec); err != nil {
		return &usageError{cmd: cmd, err: err}
	}
	s, err := a.openOps(cmd, true)
	if err != nil {
		return err
	}
	defer s.Close()
	typ, err := s.prod.RegisterType(cmd.Context(), spec)
	if err != nil {
		return err
	}
	if format == formatJSON {
		return writeJSON(a.stdout, schema.NewType(typ))
	}
	t := newTable(a.stdout)
	t.row("TYPE", "HANDLER", "TIMEOUT", "TIMERET", "MAXSTART")
	timeret := seconds(typ.TimeRet)
	if typ.TimeRet <= 0 {
		timeret = "forever"
	}
	t.row(typ.Identifier, typ.Handler, seconds(typ.Timeout), timeret, strconv.Itoa(typ.MaxStart))
	return t.flush()
}

func (a *app) unregisterCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "unregister TYPE [--force]",
		Short: "Remove a task type",
		Long: `unregister is tracker.unregisterTaskType. A type that still has tasks is kept
(exit status 1) unless --force, which deletes its tasks first, with their
logs, inputs and responses.`,
		RunE: a.runUnregister,
	}, cobra.ExactArgs(1))
	c.Flags().Bool("force", false, "delete the type's tasks too")
	addFormatFlags(c, true)
	return c
}

func (a *app) runUnregister(cmd *cobra.Command, args []string) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	force, _ := cmd.Flags().GetBool("force")
	s, err := a.openOps(cmd, false)
	if err != nil {
		return err
	}
	defer s.Close()
	err = s.explain(cmd.Context(), "unregister", args[0], "", s.prod.UnregisterType(cmd.Context(), args[0], force))
	if errors.Is(err, djangodb.ErrProtected) {
		return fmt.Errorf("%w; use --force to delete the type's tasks as well", err)
	}
	if err != nil {
		return err
	}
	if format == formatJSON {
		return writeJSON(a.stdout, map[string]any{"type": args[0], "unregistered": true, "force": force})
	}
	_, err = fmt.Fprintf(a.stdout, "unregistered type %s\n", cell(args[0]))
	return err
}

func (a *app) enqueueCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "enqueue TYPE ID [--input-json INPUT | --pickle-file FILE] [--wait]",
		Short: "Queue a task",
		Long: `enqueue is tracker.enqueueTask: it queues the task ID of type TYPE with its
input, which the handler receives as a Python object.

--input-json INPUT gives the input as JSON, converted as Python's json.loads would
(objects become dicts, arrays lists, 1 an int, 1.0 a float) and pickled with
protocol 2, which Python 2 and 3 handlers both read; "-" reads the JSON from
standard input. --pickle-file FILE takes a pickle made elsewhere (any
protocol, "-" for standard input) as it is. Without either, the input is None.
(--json INPUT is the old, deprecated name of --input-json; on every other
command --json selects JSON output, which enqueue gives with --format json.)

When the queue already holds its maximum of waiting tasks (--max-queue-size,
the tracker's MAX_QUEUE_SIZE), enqueue fails with exit status 75 (EX_TEMPFAIL);
with --wait it retries with backoff until the task is queued (or
--wait-timeout passes, or it is interrupted: exit status 75 again).

On PostgreSQL, enqueue announces the task (NOTIFY), so that a daemon
listening (the default, --listen) runs it at once rather than at its next
poll; Python producers need the trigger of atpd notify install for that.`,
		RunE: a.runEnqueue,
	}, cobra.ExactArgs(2))
	c.Flags().String("input-json", "", `task input as JSON ("-": read it from standard input)`)
	// The old name, which --json's meaning elsewhere (JSON output) made a
	// trap; it still works, with a warning.
	c.Flags().String("json", "", "deprecated name of --input-json")
	_ = c.Flags().MarkHidden("json")
	c.Flags().String("pickle-file", "", `file holding the task input as a pickle ("-": standard input)`)
	c.Flags().String("message", "", "message of the task's first log record")
	c.Flags().Bool("wait", false, "when the queue is full, retry with backoff until there is room")
	c.Flags().Duration("wait-timeout", 0, "with --wait: give up after this long (0: never)")
	addFormatFlags(c, false)
	return c
}

func (a *app) runEnqueue(cmd *cobra.Command, args []string) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	fl := cmd.Flags()
	typ, id := args[0], args[1]
	message, _ := fl.GetString("message")
	wait, _ := fl.GetBool("wait")
	waitTimeout, _ := fl.GetDuration("wait-timeout")
	inputFlag := "input-json"
	if fl.Changed("json") {
		if fl.Changed("input-json") {
			return &usageError{cmd: cmd, err: errors.New("--json is the deprecated name of --input-json; give only --input-json")}
		}
		inputFlag = "json"
		// On stderr: stdout may be a script's JSON.
		fmt.Fprintln(a.stderr, "atpd: warning: enqueue --json is deprecated, use --input-json for the task input (--format json selects JSON output)")
	}
	if fl.Changed(inputFlag) && fl.Changed("pickle-file") {
		return &usageError{cmd: cmd, err: fmt.Errorf("--%s and --pickle-file exclude each other", inputFlag)}
	}
	if waitTimeout < 0 {
		return &usageError{cmd: cmd, err: fmt.Errorf("--wait-timeout %v is negative (0: wait as long as it takes)", waitTimeout)}
	}
	if fl.Changed("wait-timeout") && !wait {
		return &usageError{cmd: cmd, err: errors.New("--wait-timeout needs --wait")}
	}

	// The input is read and checked before the database is touched, so a
	// bad input never leaves anything behind.
	var (
		input     any
		rawPickle []byte
	)
	switch {
	case fl.Changed(inputFlag):
		text, _ := fl.GetString(inputFlag)
		data := []byte(text)
		if text == "-" {
			if data, err = a.readInput("standard input"); err != nil {
				return err
			}
		}
		if input, err = jsonToPython(data); err != nil {
			return fmt.Errorf("enqueue %s::%s: %w", typ, id, err)
		}
	case fl.Changed("pickle-file"):
		name, _ := fl.GetString("pickle-file")
		if rawPickle, err = a.readFile(name); err != nil {
			return fmt.Errorf("enqueue %s::%s: %w", typ, id, err)
		}
	}

	s, err := a.openOps(cmd, true)
	if err != nil {
		return err
	}
	defer s.Close()
	// The daemon fails an input that inflates past max_input_size; refuse
	// it here instead of queueing a task bound to fail.
	size := len(rawPickle)
	if rawPickle == nil {
		p, err := pickle.Pickle(input)
		if err != nil {
			return fmt.Errorf("enqueue %s::%s: %w", typ, id, err)
		}
		size = len(p)
	}
	if limit := s.cfg.MaxInputSize; limit > 0 && int64(size) > int64(limit) {
		return fmt.Errorf("enqueue %s::%s: the input pickles to %d bytes, more than max_input_size (%d): the daemon would fail the task", typ, id, size, limit)
	}
	ctx := cmd.Context()
	var n int64
	switch {
	case rawPickle != nil:
		// The producer API has no waiting variant for a pickle made
		// elsewhere; its retry is the same loop over EnqueuePickle.
		n, err = s.waitLoop(ctx, wait, waitTimeout, func(ctx context.Context) (int64, error) {
			return s.prod.EnqueuePickle(ctx, typ, id, rawPickle, message)
		})
	default:
		n, err = s.waitLoop(ctx, wait, waitTimeout, func(ctx context.Context) (int64, error) {
			return s.prod.Enqueue(ctx, typ, id, input, message)
		})
	}
	if err != nil {
		return s.explain(ctx, "enqueue", typ, id, err)
	}
	if format == formatJSON {
		return writeJSON(a.stdout, schema.Enqueued{ID: n, Type: typ, Identifier: id})
	}
	_, err = fmt.Fprintf(a.stdout, "enqueued %s::%s (instance %d)\n", cell(typ), cell(id), n)
	return err
}

// waitLoop runs enqueue once, or with wait retries it while the queue is
// full, with the producer's backoff, until it succeeds, timeout passes or
// SIGINT/SIGTERM arrives.
func (s *opsSession) waitLoop(ctx context.Context, wait bool, timeout time.Duration, enqueue func(context.Context) (int64, error)) (int64, error) {
	if !wait {
		return enqueue(ctx)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("--wait-timeout %v passed", timeout))
		defer cancel()
	}
	backoff := producer.DefaultMinBackoff
	for attempt := 1; ; attempt++ {
		n, err := enqueue(ctx)
		transient := err != nil && !errors.Is(err, djangodb.ErrQueueFull) && djangodb.Transient(err) && ctx.Err() == nil
		if !errors.Is(err, djangodb.ErrQueueFull) && !transient {
			if ctx.Err() != nil && err != nil {
				// The interruption, not the cancelled call, is the news.
				return 0, fmt.Errorf("%w (%w)", context.Cause(ctx), djangodb.ErrQueueFull)
			}
			return n, err
		}
		switch {
		case transient:
			s.log.Warn("the database is away; retrying the enqueue", "error", err, "attempt", attempt)
		case attempt == 1:
			s.log.Info("queue full; waiting for room", "max_queue_size", s.store.MaxQueueSize())
		}
		// Full jitter in [backoff/2, backoff], so that waiting producers
		// do not retry in step.
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			cause := context.Cause(ctx)
			if errors.Is(cause, context.Canceled) {
				cause = errors.New("interrupted")
			}
			return 0, fmt.Errorf("%w after %d attempts: %w", cause, attempt, err)
		case <-t.C:
		}
		backoff = min(2*backoff, producer.DefaultMaxBackoff)
	}
}

func (a *app) readInput(what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(a.stdin, maxPickleRead+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(data) > maxPickleRead {
		return nil, fmt.Errorf("%s is larger than %d bytes", what, maxPickleRead)
	}
	return data, nil
}

func (a *app) readFile(name string) ([]byte, error) {
	if name == "-" {
		return a.readInput("standard input")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPickleRead+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxPickleRead {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxPickleRead)
	}
	return data, nil
}

func (a *app) statusCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "status TYPE ID",
		Short: "Show a task's status",
		Long:  `status shows the task's row: its status (tracker.getTaskStatusByIdentifier) and times.`,
		RunE:  a.runStatus,
	}, cobra.ExactArgs(2))
	addFormatFlags(c, true)
	return c
}

func (a *app) runStatus(cmd *cobra.Command, args []string) error {
	s, format, err := a.openOpsFormat(cmd)
	if err != nil {
		return err
	}
	defer s.Close()
	in, err := s.prod.Task(cmd.Context(), args[0], args[1])
	if err != nil {
		return s.explain(cmd.Context(), "status", args[0], args[1], err)
	}
	if format == formatJSON {
		return writeJSON(a.stdout, schema.NewTask(in))
	}
	t := newTable(a.stdout)
	t.row("TYPE", in.Type)
	t.row("ID", in.Identifier)
	t.row("STATUS", fmt.Sprintf("%s (%d)", in.Status, int(in.Status)))
	t.row("INSTANCE", strconv.FormatInt(in.ID, 10))
	t.row("INSERTED", timeText(in.TimeInsert))
	t.row("UPDATED", timeText(in.TimeUpdate))
	return t.flush()
}

func (a *app) logCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "log TYPE ID",
		Short: "Show a task's status log",
		Long:  `log is tracker.getTaskLog: every status change of the task, oldest first.`,
		RunE:  a.runLog,
	}, cobra.ExactArgs(2))
	addFormatFlags(c, true)
	return c
}

func (a *app) runLog(cmd *cobra.Command, args []string) error {
	s, format, err := a.openOpsFormat(cmd)
	if err != nil {
		return err
	}
	defer s.Close()
	recs, err := s.prod.Log(cmd.Context(), args[0], args[1])
	if err != nil {
		return s.explain(cmd.Context(), "log", args[0], args[1], err)
	}
	if format == formatJSON {
		return writeJSON(a.stdout, schema.NewLog(recs))
	}
	t := newTable(a.stdout)
	t.row("TIME", "STATUS", "MESSAGE")
	for _, r := range recs {
		t.row(timeText(r.Time), r.Status.String(), r.Message)
	}
	return t.flush()
}

func (a *app) responseCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "response TYPE ID [-o FILE]",
		Short: "Write a task's response",
		Long: `response is tracker.getTaskResponse: it writes the bytes the handler stored,
as they are, to standard output or to FILE (-o), and their MIME type to
standard error. With --json it prints the MIME type and the bytes (base64,
plus the text when it is UTF-8) as JSON instead. Exit status 1 when the task
or its response does not exist.`,
		RunE: a.runResponse,
	}, cobra.ExactArgs(2))
	c.Flags().StringP("output", "o", "", "write the response to FILE instead of standard output")
	addFormatFlags(c, true)
	return c
}

func (a *app) runResponse(cmd *cobra.Command, args []string) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	out, _ := cmd.Flags().GetString("output")
	if out != "" && format == formatJSON {
		return &usageError{cmd: cmd, err: errors.New("-o writes the raw response; it does not go with --json")}
	}
	s, err := a.openOps(cmd, false)
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := s.prod.Response(cmd.Context(), args[0], args[1])
	if err != nil {
		return s.explain(cmd.Context(), "response", args[0], args[1], err)
	}
	if format == formatJSON {
		return writeJSON(a.stdout, schema.NewResponse(args[0], args[1], r))
	}
	if out == "" {
		if _, err := a.stdout.Write(r.Data); err != nil {
			return fmt.Errorf("response of %s::%s: write standard output: %w", args[0], args[1], err)
		}
		fmt.Fprintf(a.stderr, "response of %s::%s: %d bytes, %s\n", cell(args[0]), cell(args[1]), len(r.Data), cell(r.MimeType))
		return nil
	}
	if err := writeFileAtomic(out, r.Data); err != nil {
		return fmt.Errorf("response of %s::%s: %w", args[0], args[1], err)
	}
	fmt.Fprintf(a.stderr, "response of %s::%s: %d bytes, %s, written to %s\n", cell(args[0]), cell(args[1]), len(r.Data), cell(r.MimeType), out)
	return nil
}

// writeFileAtomic writes data to name through a temporary file in the same
// directory, so that an interrupted write never leaves half a response
// where a script expects a whole one.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func (a *app) deleteCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "delete TYPE ID",
		Short: "Delete a task with its log, input and response",
		Long: `delete is tracker.deleteTaskByIdentifier. Deleting a task that does not exist
is not an error (it says so); an unknown type is (exit status 1).`,
		RunE: a.runDelete,
	}, cobra.ExactArgs(2))
	addFormatFlags(c, true)
	return c
}

func (a *app) runDelete(cmd *cobra.Command, args []string) error {
	s, format, err := a.openOpsFormat(cmd)
	if err != nil {
		return err
	}
	defer s.Close()
	existed, err := s.prod.Delete(cmd.Context(), args[0], args[1])
	if err != nil {
		return s.explain(cmd.Context(), "delete", args[0], args[1], err)
	}
	if format == formatJSON {
		return writeJSON(a.stdout, map[string]any{"type": args[0], "identifier": args[1], "deleted": existed})
	}
	what := "deleted"
	if !existed {
		what = "no such task, nothing deleted:"
	}
	_, err = fmt.Fprintf(a.stdout, "%s %s::%s\n", what, cell(args[0]), cell(args[1]))
	return err
}

func (a *app) tasksCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "tasks [--status S] [--type T] [--limit N]",
		Short: "List tasks",
		Long: `tasks lists tasks in the order they were enqueued, all of them or those of
one status (a name such as FAILED, or its code) and/or one type.`,
		RunE: a.runTasks,
	}, cobra.NoArgs)
	c.Flags().String("status", "", "only tasks with this status (ACCEPTED, SCHEDULED, RUNNING, PAUSED, FINISHED, FAILED or a code)")
	c.Flags().String("type", "", "only tasks of this type")
	c.Flags().Int("limit", 0, "at most N tasks, the oldest first (0: all)")
	addFormatFlags(c, true)
	return c
}

func (a *app) runTasks(cmd *cobra.Command, _ []string) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	var f djangodb.InstanceFilter
	f.Type, _ = cmd.Flags().GetString("type")
	f.Limit, _ = cmd.Flags().GetInt("limit")
	if f.Limit < 0 {
		return &usageError{cmd: cmd, err: fmt.Errorf("--limit %d is negative", f.Limit)}
	}
	if text, _ := cmd.Flags().GetString("status"); cmd.Flags().Changed("status") {
		st, err := djangodb.ParseStatus(text)
		if err != nil {
			return &usageError{cmd: cmd, err: fmt.Errorf("--status %q: want ACCEPTED, SCHEDULED, RUNNING, PAUSED, FINISHED, FAILED or a code 0-6", text)}
		}
		f.Status = &st
	}
	s, err := a.openOps(cmd, false)
	if err != nil {
		return err
	}
	defer s.Close()
	if f.Type != "" {
		// An unknown type is an error, as in /api/tasks?type=, not an
		// empty list that hides a typo.
		if _, err := s.prod.Type(cmd.Context(), f.Type); err != nil {
			return s.explain(cmd.Context(), "tasks", f.Type, "", err)
		}
	}
	// The whole selection is read, so that --json can say how many
	// tasks it has (total), as /api/tasks does; retention keeps it small.
	limit := f.Limit
	f.Limit = 0
	list, err := s.prod.Tasks(cmd.Context(), f)
	if err != nil {
		return err
	}
	total := len(list)
	if limit > 0 && len(list) > limit {
		list = list[:limit]
	}
	if format == formatJSON {
		out := schema.TaskList{Type: f.Type, Total: total, Limit: limit, Tasks: make([]schema.Task, len(list))}
		if f.Status != nil {
			st := f.Status.String()
			out.Status = &st
		}
		for i, in := range list {
			out.Tasks[i] = schema.NewTask(in)
		}
		return writeJSON(a.stdout, out)
	}
	t := newTable(a.stdout)
	t.row("INSTANCE", "TYPE", "ID", "STATUS", "INSERTED", "UPDATED")
	for _, in := range list {
		t.row(strconv.FormatInt(in.ID, 10), in.Type, in.Identifier, in.Status.String(), timeText(in.TimeInsert), timeText(in.TimeUpdate))
	}
	return t.flush()
}

func (a *app) queueCommand() *cobra.Command {
	c := setupCommand(&cobra.Command{
		Use:   "queue",
		Short: "Show the waiting queue: count, limit, oldest task's age",
		Long: `queue shows how many tasks wait for a daemon, the most an enqueue accepts
(--max-queue-size, the tracker's MAX_QUEUE_SIZE), and how long the oldest
waiting task has waited.`,
		RunE: a.runQueue,
	}, cobra.NoArgs)
	addFormatFlags(c, true)
	return c
}

func (a *app) runQueue(cmd *cobra.Command, _ []string) error {
	s, format, err := a.openOpsFormat(cmd)
	if err != nil {
		return err
	}
	defer s.Close()
	q, err := s.prod.Queue(cmd.Context())
	if err != nil {
		return err
	}
	if format == formatJSON {
		return writeJSON(a.stdout, schema.NewQueue(djangodb.QueueStats{Waiting: q.Waiting, Max: q.Limit, Oldest: q.Oldest}, time.Now()))
	}
	t := newTable(a.stdout)
	full := ""
	if q.Full() {
		full = " (full: enqueue fails until a daemon takes tasks)"
	}
	t.row("WAITING", strconv.Itoa(q.Waiting)+full)
	t.row("LIMIT", strconv.Itoa(q.Limit))
	if q.Oldest.IsZero() {
		t.row("OLDEST", "-")
	} else {
		t.row("OLDEST", timeText(q.Oldest)+" ("+ageText(q.Age)+" ago)")
	}
	return t.flush()
}
