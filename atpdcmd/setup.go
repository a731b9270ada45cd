package atpdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
	"github.com/eoxserver/atpd/daemon"
	"github.com/eoxserver/atpd/internal/logfmt"
)

// storeTimeout bounds opening, pinging and migrating the database at
// start-up.
const storeTimeout = 30 * time.Second

// loadConfig reads the layered configuration for cmd, completes it from the
// Django settings module when there is one, and validates it. Ignored
// database OPTIONS are returned for the caller to log once it has a logger.
func loadConfig(ctx context.Context, cmd *cobra.Command) (config.Config, []string, error) {
	return loadConfigAdjusted(ctx, cmd, nil)
}

// loadConfigAdjusted is loadConfig with adjust applied to the layered
// configuration before it is validated and completed from Django.
func loadConfigAdjusted(ctx context.Context, cmd *cobra.Command, adjust func(*config.Config)) (config.Config, []string, error) {
	cfg, err := config.Load(cmd.Flags())
	if err != nil {
		return cfg, nil, flagMistake(cmd, cfg, err)
	}
	if adjust != nil {
		adjust(&cfg)
	}
	// Validate before running Python, so that a typo in -s is reported as
	// such rather than as an import error.
	if err := cfg.Validate(); err != nil {
		return cfg, nil, flagMistake(cmd, cfg, err)
	}
	_, ignored, err := cfg.ApplyDjango(ctx)
	if err != nil {
		return cfg, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, fmt.Errorf("after reading Django settings %s: %w", cfg.Settings, err)
	}
	return cfg, ignored, nil
}

// flagMistake makes a configuration error a usage error when a setting
// given on the command line is at fault; a bad file or environment
// variable stays a configuration error.
func flagMistake(cmd *cobra.Command, cfg config.Config, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *config.FieldError
		if errors.As(e, &fe) && (cfg.Source(fe.Field) == config.SourceFlag || strings.HasPrefix(fe.Reason, "from flag")) {
			return &usageError{cmd: cmd, err: err}
		}
	}
	return err
}

func newLogger(w io.Writer, cfg config.Config, serverID string) (*slog.Logger, error) {
	h, err := logfmt.New(w, cfg.LogFormat, logfmt.Options{Level: cfg.Level(), ServerID: serverID})
	if err != nil {
		return nil, err
	}
	return slog.New(h), nil
}

// openStore connects to the configured database. atpd's own default
// database is created and migrated on first use; any other database must
// already have the tables (from Django's migrate or `atpd migrate`).
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (djangodb.Store, error) {
	return openStoreMigrating(ctx, cfg, log, cfg.EmbeddedDB())
}

// openDB opens the database cfg names as it is: no tables created, none
// checked for. ctx bounds the open; callers reuse it to bound their first
// statements too.
func openDB(ctx context.Context, cfg config.Config) (djangodb.Store, error) {
	opts, err := cfg.StoreOptions()
	if err != nil {
		return nil, err
	}
	store, err := djangodb.Open(ctx, cfg.DB, opts)
	if err != nil {
		return nil, dbError("open database", djangodb.RedactDSN(cfg.DB), err)
	}
	return store, nil
}

// openStoreMigrating is openStore that creates the ATP tables when migrate
// is set, in whatever database cfg names.
func openStoreMigrating(ctx context.Context, cfg config.Config, log *slog.Logger, migrate bool) (djangodb.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	// Opening a missing SQLite file would create an empty one (a typo in
	// the path leaves a stray file and fails later on "no such table").
	if strings.HasPrefix(cfg.DB, "sqlite:") && !migrate {
		if _, err := os.Stat(djangodb.SQLitePath(cfg.DB)); err != nil {
			return nil, fmt.Errorf("database %s: %w (create it with `atpd migrate --db %s` or Django's migrate)", cfg.DB, err, cfg.DB)
		}
	}
	store, err := openDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if migrate {
		created, err := store.Migrate(ctx)
		if err != nil {
			store.Close()
			return nil, dbError("migrate database", store.Describe(), err)
		}
		if created {
			log.Info("ATPD: created the ATP tables", "database", store.Describe())
		}
		return store, nil
	}
	if err := store.Ping(ctx); err != nil {
		store.Close()
		return nil, dbError("connect to database", store.Describe(), err)
	}
	// A database without the tables, or with only some of them, would
	// fail every poll or every task; say so once, exactly.
	if err := djangodb.CheckSchema(ctx, store); errors.Is(err, djangodb.ErrSchema) {
		store.Close()
		return nil, fmt.Errorf("database %s: the ATP tables are not complete (run `atpd migrate` or Django's migrate on an empty database; a partial set is not patched): %w", store.Describe(), err)
	}
	if _, err := store.QueueStats(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("database %s: cannot read the task queue (are the ATP tables there? run `atpd migrate` or Django's migrate): %w", store.Describe(), err)
	}
	return store, nil
}

// probeWrites refuses a database the daemon could read but not write: a
// read-only file, a role without rights or a standby would let it start
// and then fail every write. Operator commands that only read skip it.
func probeWrites(ctx context.Context, store djangodb.Store) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := djangodb.ProbeWrite(ctx, store); err != nil && !errors.Is(err, djangodb.ErrUnsupported) {
		return fmt.Errorf("database %s cannot be written (a read-only file, a role without INSERT, UPDATE and DELETE rights on the processes_* tables, or a standby): %w", store.Describe(), err)
	}
	return nil
}

// dbError says what failed on which database, naming the database only
// when err does not already: one DSN per message.
func dbError(what, db string, err error) error {
	if strings.Contains(err.Error(), db) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s %s: %w", what, db, err)
}

// journalModer is implemented by SQLite stores.
type journalModer interface {
	JournalMode(ctx context.Context) (string, error)
}

// logJournalMode says which journal mode an SQLite file runs in, since
// sqlite_wal changes it for every client and an operator switching it by
// hand should see that it took.
func logJournalMode(ctx context.Context, store djangodb.Store, cfg config.Config, log *slog.Logger) {
	jm, ok := store.(journalModer)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	mode, err := jm.JournalMode(ctx)
	if err != nil {
		log.Warn("ATPD: cannot read the SQLite journal mode", "database", store.Describe(), "error", err)
		return
	}
	log.Info("ATPD: SQLite journal mode is "+mode, "database", store.Describe(), "sqlite_wal", cfg.SQLiteWAL)
}

func logIgnoredOptions(log *slog.Logger, cfg config.Config, ignored []string) {
	if len(ignored) > 0 {
		log.Warn("ATPD: Django database OPTIONS not used by atpd", "settings", cfg.Settings,
			"db_alias", cfg.DBAlias, "options", strings.Join(ignored, ","))
	}
}

// daemonConfig is the daemon's configuration from atpd's; the daemon feeds
// metrics, when they are served.
func daemonConfig(cfg config.Config, id int64, metrics *webMetrics, log *slog.Logger) daemon.Config {
	dc := daemon.Config{
		ServerID:       id,
		Workers:        cfg.Workers,
		PollInterval:   cfg.PollInterval,
		SweepInterval:  cfg.SweepInterval,
		DrainTimeout:   cfg.DrainTimeout,
		MaxInputSize:   int64(cfg.MaxInputSize),
		SyncTaskWrites: cfg.SyncTaskWrites,
		FlushDelay:     cfg.FlushDelay,
		NoListen:       !cfg.Listen,
		Logger:         log,
	}
	if metrics != nil {
		dc.Observer = metrics.daemon
	}
	return dc
}
