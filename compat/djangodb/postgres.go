package djangodb

import "context"

// OpenPostgres opens a PostgreSQL store (stub until implemented).
func OpenPostgres(ctx context.Context, dsn string, opts Options) (Store, error) {
	return nil, ErrUnsupported
}
