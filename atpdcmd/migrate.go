package atpdcmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) migrateCommand() *cobra.Command {
	return setupCommand(&cobra.Command{
		Use:   "migrate [--db DSN | -s MODULE]",
		Short: "Create the ATP tables as Django's migrate would",
		Long: `migrate creates the six tables of the processes app exactly as Django's
migrate does and records the migrations in django_migrations, so that Django
later finds nothing to do. A database that already has them is left alone.`,
		RunE: a.runMigrate,
	}, cobra.NoArgs)
}

func (a *app) runMigrate(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	cfg, _, err := loadConfig(ctx, cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	store, err := openDB(ctx, cfg)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer store.Close()
	created, err := store.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %s: %w", store.Describe(), err)
	}
	if created {
		fmt.Fprintf(a.stdout, "migrate: created the ATP tables in %s\n", store.Describe())
	} else {
		fmt.Fprintf(a.stdout, "migrate: %s already has the ATP tables; nothing to do\n", store.Describe())
	}
	return nil
}
