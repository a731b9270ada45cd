package djangodb

import "context"

// OpenSQLite opens a SQLite store (stub until implemented).
func OpenSQLite(ctx context.Context, path string, opts Options) (Store, error) {
	return nil, ErrUnsupported
}
