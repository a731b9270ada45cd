package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
)

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
everything works as before, by polling (--poll-interval).`,
	}, cobra.NoArgs)
	for _, sub := range []struct {
		use, short string
		run        func(ctx context.Context, ti djangodb.TriggerInstaller, describe string) (string, error)
	}{
		{"install", "Add the trigger (idempotent)", func(ctx context.Context, ti djangodb.TriggerInstaller, db string) (string, error) {
			added, err := ti.InstallNotifyTrigger(ctx)
			if err != nil {
				return "", err
			}
			if added {
				return fmt.Sprintf("notify: installed trigger %s on processes_task in %s; new tasks are announced on channel %s", djangodb.NotifyTrigger, db, djangodb.NotifyChannel), nil
			}
			return fmt.Sprintf("notify: trigger %s was already on processes_task in %s; replaced it with the current version", djangodb.NotifyTrigger, db), nil
		}},
		{"remove", "Drop the trigger and its function (idempotent)", func(ctx context.Context, ti djangodb.TriggerInstaller, db string) (string, error) {
			removed, err := ti.RemoveNotifyTrigger(ctx)
			if err != nil {
				return "", err
			}
			if removed {
				return fmt.Sprintf("notify: removed trigger %s from processes_task in %s; daemons find Python producers' tasks by polling", djangodb.NotifyTrigger, db), nil
			}
			return fmt.Sprintf("notify: trigger %s is not on processes_task in %s; nothing to remove", djangodb.NotifyTrigger, db), nil
		}},
		{"status", "Say whether the trigger is installed", func(ctx context.Context, ti djangodb.TriggerInstaller, db string) (string, error) {
			on, err := ti.NotifyTriggerInstalled(ctx)
			if err != nil {
				return "", err
			}
			if on {
				return fmt.Sprintf("notify: trigger %s is installed on processes_task in %s", djangodb.NotifyTrigger, db), nil
			}
			return fmt.Sprintf("notify: trigger %s is not installed in %s", djangodb.NotifyTrigger, db), nil
		}},
	} {
		cmd.AddCommand(setupCommand(&cobra.Command{
			Use:   sub.use + " [--db DSN | -s MODULE]",
			Short: sub.short,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return a.runNotify(cmd, sub.use, sub.run)
			},
		}, cobra.NoArgs))
	}
	return cmd
}

func (a *app) runNotify(cmd *cobra.Command, what string, run func(context.Context, djangodb.TriggerInstaller, string) (string, error)) error {
	ctx := cmd.Context()
	cfg, _, err := loadConfig(ctx, cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
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
	msg, err := run(ctx, ti, store.Describe())
	if err != nil {
		return fmt.Errorf("notify %s: %w", what, err)
	}
	fmt.Fprintln(a.stdout, msg)
	return nil
}
