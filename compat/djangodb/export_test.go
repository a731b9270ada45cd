package djangodb

import (
	"context"
	"database/sql"
)

// PostgresPool returns the connection pool of a PostgreSQL store, for tests
// that fill it or look at its statistics.
func PostgresPool(s Store) *sql.DB { return s.(*pgStore).db }

// PostgresTxIsolation reports the isolation level of the store's
// transactions (SHOW transaction_isolation inside one).
func PostgresTxIsolation(ctx context.Context, s Store) (string, error) {
	var level string
	err := s.(*pgStore).inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&level)
	})
	return level, err
}

// WriteTx runs fn in a write transaction of s (through the group on
// SQLite).
func WriteTx(ctx context.Context, s Store, fn func(ctx context.Context, tx *sql.Tx) error) error {
	c, err := coreOf("test write", s)
	if err != nil {
		return err
	}
	return c.inTx(ctx, fn)
}

// GroupState reports the transactions the group ran and the jobs waiting.
func GroupState(s Store) (groups int64, waiting int) {
	c, _ := coreOf("group state", s)
	c.group.mu.Lock()
	defer c.group.mu.Unlock()
	return c.group.groups.Load(), len(c.group.pending)
}
