package djangodb_test

import (
	"database/sql"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/djangodb/storetest"
	"github.com/eoxserver/atpd/internal/testdb"
)

// djangoZone is where Django's naive SQLite text lives under c.
func sqliteDjangoZone(c testdb.Config) *time.Location {
	if c.UseTZ {
		return time.UTC
	}
	return testdb.Options(c).TimeZone
}

// sqliteHarness runs the conformance suite on SQLite files made by Django's
// migrate. Its time codec is written independently of the store's, from
// Django's rules, so that the suite checks the store against Django rather
// than against itself.
var sqliteHarness = storetest.Harness{
	Name: "sqlite",
	New: func(t testing.TB, c testdb.Config) (djangodb.Store, string) {
		t.Helper()
		dsn := testdb.SQLite(t, c)
		return openSQLiteStore(t, djangodb.SQLitePath(dsn), testdb.Options(c)), dsn
	},
	DB: func(t testing.TB, dsn string) *sql.DB {
		t.Helper()
		u := url.URL{Path: djangodb.SQLitePath(dsn)}
		db, err := sql.Open("sqlite", "file:"+u.EscapedPath()+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)")
		if err != nil {
			t.Fatalf("open %s: %v", dsn, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	},
	// Django binds str(naive datetime): six fraction digits, none at all
	// when the microseconds are zero.
	EncodeTime: func(c testdb.Config, at time.Time) any {
		at = at.In(sqliteDjangoZone(c))
		s := at.Format("2006-01-02 15:04:05")
		if us := at.Nanosecond() / 1000; us != 0 {
			s += fmt.Sprintf(".%06d", us)
		}
		return s
	},
	// modernc parses datetime columns itself, as UTC wall-clock time; the
	// wall clock is Django's, in the zone USE_TZ selects.
	DecodeTime: func(c testdb.Config, v any) (time.Time, error) {
		loc := sqliteDjangoZone(c)
		switch v := v.(type) {
		case time.Time:
			return time.Date(v.Year(), v.Month(), v.Day(), v.Hour(), v.Minute(), v.Second(), v.Nanosecond(), loc), nil
		case string:
			return time.ParseInLocation("2006-01-02 15:04:05.999999", v, loc)
		case []byte:
			return time.ParseInLocation("2006-01-02 15:04:05.999999", string(v), loc)
		default:
			return time.Time{}, fmt.Errorf("datetime column scanned as %T", v)
		}
	},
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, sqliteHarness)
}
