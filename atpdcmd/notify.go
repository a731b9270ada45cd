package atpdcmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// notifyResult is what a notify sub-command found or did, as --json
// prints it.
type notifyResult struct {
	Action    string `json:"action"`    // install, remove or status
	Database  string `json:"database"`  // redacted
	Trigger   string `json:"trigger"`   // the trigger's (and its function's) name
	Channel   string `json:"channel"`   // the channel it notifies
	Installed bool   `json:"installed"` // after the command
	Changed   bool   `json:"changed"`   // install: it was not there; remove: it was
	message   string
}

func (a *app) notifyCommand() *cobra.Command {
	cmd := setupCommand(&cobra.Command{
		Use:   "notify {install|remove|status} [--db DSN | -s MODULE]",
		Short: "Manage the PostgreSQL trigger that wakes atpd when a task is queued",
		Long: `On PostgreSQL atpd LISTENs on the channel ` + djangodb.NotifyChannel + ` and picks up a task
the moment it is announced, instead of at its next poll. atpd's own producers
announce what they queue; Python producers (EOxServer's tracker) do not, so
for them

    atpd notify install

adds a trigger, ` + djangodb.NotifyTrigger + `, to processes_task (with a function of the
same name in the table's schema) that announces every queued task. It is a
schema addition outside Django's migrations: Django neither knows nor minds
it, it writes nothing, and

    atpd notify remove

takes it away again. Both are idempotent; installing needs the right to
create triggers on processes_task (its owner). Without the trigger
everything works as before, by polling (--poll-interval).

    atpd notify status

exits 0 when the trigger is installed and 1 when it is not (or on an
error), so that scripts can test it. --json prints what each command found
or did as JSON.`,
	}, cobra.NoArgs)
	for _, sub := range []struct {
		use, short string
		run        func(ctx context.Context, ti djangodb.TriggerInstaller, r *notifyResult) error
	}{
		{"install", "Add the trigger (idempotent)", func(ctx context.Context, ti djangodb.TriggerInstaller, r *notifyResult) error {
			added, err := ti.InstallNotifyTrigger(ctx)
			if err != nil {
				return err
			}
			r.Installed, r.Changed = true, added
			if added {
				r.message = fmt.Sprintf("notify: installed trigger %s on processes_task in %s; new tasks are announced on channel %s", djangodb.NotifyTrigger, r.Database, djangodb.NotifyChannel)
			} else {
				r.message = fmt.Sprintf("notify: trigger %s was already on processes_task in %s; replaced it with the current version", djangodb.NotifyTrigger, r.Database)
			}
			return nil
		}},
		{"remove", "Drop the trigger and its function (idempotent)", func(ctx context.Context, ti djangodb.TriggerInstaller, r *notifyResult) error {
			removed, err := ti.RemoveNotifyTrigger(ctx)
			if err != nil {
				return err
			}
			r.Installed, r.Changed = false, removed
			if removed {
				r.message = fmt.Sprintf("notify: removed trigger %s from processes_task in %s; daemons find Python producers' tasks by polling", djangodb.NotifyTrigger, r.Database)
			} else {
				r.message = fmt.Sprintf("notify: trigger %s is not on processes_task in %s; nothing to remove", djangodb.NotifyTrigger, r.Database)
			}
			return nil
		}},
		{"status", "Say whether the trigger is installed (exit status 0 if so, 1 if not)", func(ctx context.Context, ti djangodb.TriggerInstaller, r *notifyResult) error {
			on, err := ti.NotifyTriggerInstalled(ctx)
			if err != nil {
				return err
			}
			r.Installed = on
			if on {
				r.message = fmt.Sprintf("notify: trigger %s is installed on processes_task in %s", djangodb.NotifyTrigger, r.Database)
			} else {
				r.message = fmt.Sprintf("notify: trigger %s is not installed in %s", djangodb.NotifyTrigger, r.Database)
			}
			return nil
		}},
	} {
		c := setupCommand(&cobra.Command{
			Use:   sub.use + " [--db DSN | -s MODULE] [--json]",
			Short: sub.short,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return a.runNotify(cmd, sub.use, sub.run)
			},
		}, cobra.NoArgs)
		addFormatFlags(c, true)
		cmd.AddCommand(c)
	}
	return cmd
}

func (a *app) runNotify(cmd *cobra.Command, what string, run func(context.Context, djangodb.TriggerInstaller, *notifyResult) error) error {
	format, cfg, err := formatAndConfig(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), storeTimeout)
	defer cancel()
	store, err := openDB(ctx, cfg)
	if err != nil {
		return fmt.Errorf("notify %s: %w", what, err)
	}
	defer store.Close()
	ti, ok := store.(djangodb.TriggerInstaller)
	if !ok {
		return fmt.Errorf("notify %s: %s: %w: only PostgreSQL has LISTEN/NOTIFY; on this database the daemon polls", what, store.Describe(), djangodb.ErrUnsupported)
	}
	r := notifyResult{Action: what, Database: store.Describe(), Trigger: djangodb.NotifyTrigger, Channel: djangodb.NotifyChannel}
	if err := run(ctx, ti, &r); err != nil {
		return fmt.Errorf("notify %s: %w", what, err)
	}
	if format == formatJSON {
		err = writeJSON(a.stdout, r)
	} else {
		_, err = fmt.Fprintln(a.stdout, r.message)
	}
	if err != nil {
		return err
	}
	if what == "status" && !r.Installed {
		return &exitCodeError{code: exitFailure}
	}
	return nil
}
