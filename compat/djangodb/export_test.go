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
