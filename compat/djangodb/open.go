package djangodb

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Open connects to the database named by dsn: a postgres:// or
// postgresql:// URL, or sqlite:PATH. It does not migrate.
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn, opts)
	case strings.HasPrefix(dsn, "sqlite:"):
		return OpenSQLite(ctx, SQLitePath(dsn), opts)
	default:
		return nil, fmt.Errorf("djangodb: open %q: %w (want postgres://... or sqlite:PATH)", RedactDSN(dsn), ErrUnsupported)
	}
}

// SQLitePath returns the file path of a sqlite:PATH or sqlite://PATH DSN.
func SQLitePath(dsn string) string {
	p := strings.TrimPrefix(dsn, "sqlite:")
	return strings.TrimPrefix(p, "//")
}

// RedactDSN hides the password of a URL DSN so that it can be logged.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(dsn, "@") {
			return "(unparsable DSN)"
		}
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
