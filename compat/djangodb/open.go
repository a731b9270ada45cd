package djangodb

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Open connects to the database named by dsn: a postgres:// or
// postgresql:// URL, or sqlite:PATH. It does not migrate. A PostgreSQL URL
// may name several hosts, libpq's way (see NormalizePostgresDSN).
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		norm, err := NormalizePostgresDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("djangodb: open %s: %w", RedactDSN(dsn), err)
		}
		return OpenPostgres(ctx, norm, opts)
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

// RedactDSN hides the password of a DSN so that it can be logged: the
// password of a URL's user info, a password query parameter (any case), and
// password=... in a key=value connection string. A URL that does not parse
// but may hold a password is replaced as a whole.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		if kvPassword.MatchString(dsn) {
			return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
		}
		if err != nil && (strings.Contains(dsn, "@") || strings.Contains(strings.ToLower(dsn), "password")) {
			return "(unparsable DSN)"
		}
		return dsn
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			changed = true
		}
	}
	q := u.Query()
	for k := range q {
		// password, sslpassword and whatever else names a secret.
		if strings.Contains(strings.ToLower(k), "password") {
			q[k] = []string{"xxxxx"}
			changed = true
		}
	}
	if !changed {
		return dsn
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// kvPassword finds the password of a libpq key=value connection string,
// quoted or not.
var kvPassword = regexp.MustCompile(`(?i)(\b\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)
