package djangodb_test

import (
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
)

// TestRedactDSN: no form of connection string keeps its password, and
// strings without one are left alone.
func TestRedactDSN(t *testing.T) {
	cases := []struct{ dsn, want string }{
		{"postgres://u:pw@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://h/db?user=u&password=pw", "postgres://h/db?password=xxxxx&user=u"},
		{"postgresql://h/db?PassWord=pw", "postgresql://h/db?PassWord=xxxxx"},
		{"host=h password=pw dbname=x", "host=h password=xxxxx dbname=x"},
		{`host=h password = 'p w\'x' dbname=x`, "host=h password = xxxxx dbname=x"},
		{"postgres://u@h:bad/x?password=pw", "postgres://u@h:bad/x?password=xxxxx"},
		{"postgres://u:pw@h:bad/x", "(unparsable DSN)"},
		{"postgres://u@h/db?sslmode=disable", "postgres://u@h/db?sslmode=disable"},
		{"sqlite:/var/lib/atpd/atpd.sqlite3", "sqlite:/var/lib/atpd/atpd.sqlite3"},
		// Django OPTIONS such as sslpassword end up in the query too.
		{"postgres://u@h/db?sslmode=verify-full&sslpassword=pw", "postgres://u@h/db?sslmode=verify-full&sslpassword=xxxxx"},
		{"host=h sslpassword=pw", "host=h sslpassword=xxxxx"},
	}
	for _, c := range cases {
		got := djangodb.RedactDSN(c.dsn)
		if got != c.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", c.dsn, got, c.want)
		}
		if strings.Contains(got, "pw") || strings.Contains(got, "p w") {
			t.Errorf("RedactDSN(%q) = %q keeps the password", c.dsn, got)
		}
	}
}
