package atpdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/internal/buildinfo"
)

// Exit codes. A shutdown that completed, by SIGINT (drain) or SIGTERM
// (abort), is a success: every task the daemon took has its outcome
// written. A signal received while an abort is already under way ends the
// process at once with 128 + the signal number, the shell's convention
// (130 for SIGINT, 143 for SIGTERM); tasks still RUNNING then are left to
// the zombie sweep, as with the reference daemon.
//
// Operator commands exit with 75 (exitQueueFull) when a task was not
// queued because the queue is full.
const (
	exitOK      = 0
	exitFailure = 1 // configuration, start-up or command failure
	exitUsage   = 2 // a command-line mistake: unknown flag, bad value, wrong arguments
)

// app holds what the commands share: the standard streams.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// usageError is a command-line mistake: it is printed in one line with a
// pointer to the command's --help, and exits with exitUsage.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitCodeError ends the process with a given code, its message already
// reported.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var (
		ue *usageError
		ee *exitCodeError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, djangodb.ErrQueueFull):
		fmt.Fprintf(stderr, "atpd: %s (the queue holds its maximum of waiting tasks; retry later or use --wait)\n", errorText(err))
		return exitQueueFull
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s\nSee '%s --help'.\n", ue.cmd.CommandPath(), errorText(ue.err), ue.cmd.CommandPath())
		return exitUsage
	default:
		fmt.Fprintf(stderr, "atpd: %s\n", errorText(err))
		return exitFailure
	}
}

// errorText is err's message as one clear chain for an operator: the
// package prefixes of the library layers ("producer: ", "djangodb: ") are
// dropped, and so is a part that repeats the one before it (two layers
// naming the same operation). Joined errors are separated by "; ", so that
// the message stays one line.
func errorText(err error) string {
	parts := strings.Split(strings.ReplaceAll(err.Error(), "\n", "; "), ": ")
	out := parts[:0]
	for _, p := range parts {
		if p == "producer" || p == "djangodb" {
			continue
		}
		if len(out) > 0 && out[len(out)-1] == p {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}

// setupCommand gives every command the same error handling: flag and
// argument mistakes become usage errors, nothing is printed by cobra.
func setupCommand(c *cobra.Command, args cobra.PositionalArgs) *cobra.Command {
	c.SilenceErrors = true
	c.SilenceUsage = true
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{cmd: c, err: err} })
	c.Args = func(c *cobra.Command, a []string) error {
		if err := args(c, a); err != nil {
			return &usageError{cmd: c, err: err}
		}
		return nil
	}
	return c
}

func (a *app) rootCommand() *cobra.Command {
	root := setupCommand(&cobra.Command{
		Use:   "atpd [-h] [-p DIR] [-s MODULE] [-d ALIAS] [-n N] [flags]",
		Short: "EOxServer asynchronous task processing daemon",
		Long: `atpd runs the tasks EOxServer producers enqueue in the Django tables of the
processes app, like asyncProcServer.py / eoxserver-atpd.py did:

    asyncProcServer.py -s SETTINGS -p DIR -n 4   becomes   atpd -s SETTINGS -p DIR -n 4

The database comes from --db (postgres://... or sqlite:PATH), else from the
Django settings module (-s, or DJANGO_SETTINGS_MODULE), else atpd uses its own
` + config.DefaultDB + `, created on first use. Every flag can also be
set by an ATPD_<NAME> environment variable (ATPD_DB, ATPD_WORKERS, ...) or in
a config file (--config FILE, YAML or TOML, keys like db, workers,
poll_interval); flags win over the environment, the environment over the file.

Signals: SIGINT stops pulling tasks and lets running ones finish (drain);
SIGTERM, or a second signal, cancels running tasks and puts them back on the
queue at once (abort); a signal during an abort exits immediately.
Exit status: 0 after a completed shutdown, 1 on a configuration or start-up
error, 2 on a usage error (unknown flag, bad value, wrong arguments: one line
on stderr), 128+signal (130, 143) when a signal forced an immediate exit.
Operator commands exit 0 on success, 1 when they fail, 2 on a usage error
and 75 when the queue is full.`,
		RunE: a.runDaemon,
	}, cobra.NoArgs)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	config.AddFlags(root.PersistentFlags())
	config.AddDaemonFlags(root.Flags())
	root.Flags().SortFlags = false
	root.PersistentFlags().SortFlags = false
	root.AddCommand(a.migrateCommand(), a.decodeInputCommand())
	root.AddCommand(a.notifyCommand(), a.checkCommand())
	root.AddCommand(a.operatorCommands()...)
	root.AddCommand(a.demoCommand(), a.versionCommand())
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}
