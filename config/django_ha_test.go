package config_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/config"
)

// TestDjangoDatabaseDSNMultiHost: a Django HOST naming several servers ("db1,db2",
// psycopg2 hands it to libpq as is) with one PORT for all or one per host,
// and OPTIONS target_session_attrs, make a DSN in which lib/pq sees every
// host in order and the attribute.
func TestDjangoDatabaseDSNMultiHost(t *testing.T) {
	for _, k := range []string{"PGHOST", "PGPORT", "PGTARGETSESSIONATTRS", "PGLOADBALANCEHOSTS"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Setenv(k, v)
			os.Unsetenv(k)
		}
	}
	for _, tc := range []struct {
		name string
		db   config.DjangoDatabase
		want string // host:port ... tsa lb
	}{
		{
			name: "one port for all",
			db: config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", User: "u", Password: "pw", Host: "db1,db2", Port: "5432",
				Options: map[string]any{"target_session_attrs": "read-write"}},
			want: "db1:5432 db2:5432 read-write ",
		},
		{
			name: "a port per host",
			db: config.DjangoDatabase{Engine: "django.contrib.gis.db.backends.postgis", Name: "eox", Host: "10.0.0.1,10.0.0.2,db3", Port: "5432,5433,6000",
				Options: map[string]any{"target_session_attrs": "primary", "load_balance_hosts": "disable"}},
			want: "10.0.0.1:5432 10.0.0.2:5433 db3:6000 primary disable",
		},
		{
			name: "default port",
			db:   config.DjangoDatabase{Engine: "django.db.backends.postgresql", Name: "eox", Host: "db1,db2"},
			want: "db1:5432 db2:5432  ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, ignored, err := tc.db.DSN()
			if err != nil || len(ignored) != 0 {
				t.Fatalf("DSN = %q, %v, ignored %v", dsn, err, ignored)
			}
			if tc.db.Password != "" && strings.Contains(djangodb.RedactDSN(dsn), tc.db.Password) {
				t.Errorf("RedactDSN(%s) shows the password", dsn)
			}
			c, err := pq.NewConfig(dsn)
			if err != nil {
				t.Fatalf("lib/pq cannot read %s: %v", djangodb.RedactDSN(dsn), err)
			}
			var got []string
			got = append(got, fmt.Sprintf("%s:%d", c.Host, c.Port))
			for _, m := range c.Multi {
				got = append(got, fmt.Sprintf("%s:%d", m.Host, m.Port))
			}
			got = append(got, string(c.TargetSessionAttrs), string(c.LoadBalanceHosts))
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("lib/pq sees %q in %s; want %q", s, djangodb.RedactDSN(dsn), tc.want)
			}
			if c.Database != "eox" {
				t.Errorf("dbname %q", c.Database)
			}
		})
	}
}
