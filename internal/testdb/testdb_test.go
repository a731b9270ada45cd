package testdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/eoxserver/atpd/compat/djangodb"
)

var atpTables = []string{
	"django_migrations",
	"processes_input",
	"processes_instance",
	"processes_logrecord",
	"processes_response",
	"processes_task",
	"processes_type",
}

var configs = []struct {
	name string
	c    Config
}{
	{"usetz", Config{UseTZ: true}},
	{"naive-vienna", Config{UseTZ: false, TimeZone: "Europe/Vienna"}},
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func queryStrings(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("scan %q: %v", query, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return out
}

func exec1(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

func TestPostgres(t *testing.T) {
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			var name string
			t.Run("migrated", func(t *testing.T) {
				dsn := Postgres(t, tc.c)
				p, err := parsePG(dsn)
				if err != nil {
					t.Fatal(err)
				}
				name = p.dbname
				if !strings.HasPrefix(name, "atpd_t_") {
					t.Errorf("database name %q: want prefix atpd_t_", name)
				}
				db := openDB(t, "postgres", dsn)
				tables := queryStrings(t, db, `SELECT table_name FROM information_schema.tables
					WHERE table_schema = 'public' ORDER BY table_name`)
				if !reflect.DeepEqual(tables, atpTables) {
					t.Errorf("tables = %v, want %v", tables, atpTables)
				}
				migs := queryStrings(t, db, `SELECT app || '.' || name FROM django_migrations ORDER BY id`)
				if want := []string{"processes.0001_initial", "processes.0002_auto_20181203_0914"}; !reflect.DeepEqual(migs, want) {
					t.Errorf("django_migrations = %v, want %v", migs, want)
				}
				types := queryStrings(t, db, `SELECT column_name || ' ' || data_type FROM information_schema.columns
					WHERE table_name = 'processes_instance' ORDER BY ordinal_position`)
				wantTypes := []string{"id integer", "identifier character varying", "timeInsert timestamp with time zone",
					"timeUpdate timestamp with time zone", "status integer", "type_id integer"}
				if !reflect.DeepEqual(types, wantTypes) {
					t.Errorf("processes_instance columns = %v, want %v", types, wantTypes)
				}
				// Django's FKs: deferrable, initially deferred, no ON DELETE action.
				fks := queryStrings(t, db, `SELECT conrelid::regclass::text || ' ' || condeferrable::text || ' ' ||
					condeferred::text || ' ' || confdeltype::text FROM pg_constraint WHERE contype = 'f' ORDER BY 1`)
				wantFKs := []string{
					"processes_input true true a", "processes_instance true true a", "processes_logrecord true true a",
					"processes_response true true a", "processes_task true true a",
				}
				if !reflect.DeepEqual(fks, wantFKs) {
					t.Errorf("foreign keys = %v, want %v", fks, wantFKs)
				}
			})
			if name == "" {
				return // skipped or failed before creating a database
			}
			db, err := admin(adminURL())
			if err != nil {
				t.Fatal(err)
			}
			left := queryStrings(t, db, `SELECT datname FROM pg_database WHERE datname = $1`, name)
			if len(left) != 0 {
				t.Errorf("database %s still exists after its test ended", name)
			}
		})
	}
}

func TestPostgresIsolation(t *testing.T) {
	c := Config{UseTZ: true}
	a := openDB(t, "postgres", Postgres(t, c))
	b := openDB(t, "postgres", Postgres(t, c))
	exec1(t, a, `INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret) VALUES ('T', 'm.f', 3, 1, -1)`)
	if got := queryStrings(t, a, `SELECT identifier FROM processes_type`); !reflect.DeepEqual(got, []string{"T"}) {
		t.Errorf("first database types = %v, want [T]", got)
	}
	if got := queryStrings(t, b, `SELECT identifier FROM processes_type`); len(got) != 0 {
		t.Errorf("second database sees the first one's rows: %v", got)
	}
}

func TestSQLite(t *testing.T) {
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			dsn := SQLite(t, tc.c)
			path := djangodb.SQLitePath(dsn)
			if !strings.HasPrefix(dsn, "sqlite:/") || !filepath.IsAbs(path) {
				t.Fatalf("DSN %q: want sqlite:/absolute/path", dsn)
			}
			db := openDB(t, "sqlite", path)
			tables := queryStrings(t, db, `SELECT name FROM sqlite_master
				WHERE type = 'table' AND name <> 'sqlite_sequence' ORDER BY name`)
			if !reflect.DeepEqual(tables, atpTables) {
				t.Errorf("tables = %v, want %v", tables, atpTables)
			}
			migs := queryStrings(t, db, `SELECT app || '.' || name FROM django_migrations ORDER BY id`)
			if want := []string{"processes.0001_initial", "processes.0002_auto_20181203_0914"}; !reflect.DeepEqual(migs, want) {
				t.Errorf("django_migrations = %v, want %v", migs, want)
			}
			ddl := queryStrings(t, db, `SELECT sql FROM sqlite_master WHERE name = 'processes_task'`)
			if len(ddl) != 1 || !strings.Contains(ddl[0], `"lock" bigint NOT NULL`) ||
				!strings.Contains(ddl[0], `AUTOINCREMENT`) {
				t.Errorf("processes_task DDL = %q, want Django's (AUTOINCREMENT, lock bigint)", ddl)
			}

			other := openDB(t, "sqlite", djangodb.SQLitePath(SQLite(t, tc.c)))
			exec1(t, db, `INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret) VALUES ('T', 'm.f', 3, 1, -1)`)
			if got := queryStrings(t, other, `SELECT identifier FROM processes_type`); len(got) != 0 {
				t.Errorf("second file sees the first one's rows: %v", got)
			}
		})
	}
}

// TestDjangoEnv proves that DjangoEnv points Django at the database the
// helper returned, with the configured settings, and that Django finds
// nothing left to migrate there.
func TestDjangoEnv(t *testing.T) {
	backends := []struct {
		name string
		make func(testing.TB, Config) string
	}{
		{"postgres", Postgres},
		{"sqlite", SQLite},
	}
	for _, be := range backends {
		for _, tc := range configs {
			t.Run(be.name+"/"+tc.name, func(t *testing.T) {
				dsn := be.make(t, tc.c)
				env := DjangoEnv(t, dsn, tc.c)
				dir := filepath.Join(RepoRoot(t), "integration")

				check := exec.Command(Python(t), "manage.py", "migrate", "--check")
				check.Dir, check.Env = dir, env
				if out, err := check.CombinedOutput(); err != nil {
					t.Errorf("manage.py migrate --check: %v\n%s", err, out)
				}

				show := exec.Command(Python(t), "-c", `import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps([db["ENGINE"], str(db["NAME"]), settings.USE_TZ, settings.TIME_ZONE]))`)
				show.Dir, show.Env = dir, env
				out, err := show.Output()
				if err != nil {
					t.Fatalf("read Django settings: %v", err)
				}
				var got []any
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("settings output %q: %v", out, err)
				}
				wantName := djangodb.SQLitePath(dsn)
				wantEngine := "django.db.backends.sqlite3"
				if be.name == "postgres" {
					p, err := parsePG(dsn)
					if err != nil {
						t.Fatal(err)
					}
					wantName, wantEngine = p.dbname, "django.db.backends.postgresql"
				}
				want := []any{wantEngine, wantName, tc.c.UseTZ, tc.c.zone()}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Django settings = %v, want %v", got, want)
				}
			})
		}
	}
}

func TestDjangoVars(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		c    Config
		want []string // must all be present
		err  error
	}{
		{
			name: "sqlite naive",
			dsn:  "sqlite:/tmp/x.sqlite3",
			c:    Config{TimeZone: "Europe/Vienna"},
			want: []string{"ATPD_DJANGO_ENGINE=sqlite3", "ATPD_DJANGO_NAME=/tmp/x.sqlite3",
				"ATPD_DJANGO_USE_TZ=0", "ATPD_DJANGO_TIME_ZONE=Europe/Vienna"},
		},
		{
			name: "postgres with password and default port",
			dsn:  "postgres://u:p%40ss@db.example:5433/atp?sslmode=disable",
			c:    Config{UseTZ: true},
			want: []string{"ATPD_DJANGO_ENGINE=postgresql", "ATPD_DJANGO_NAME=atp", "ATPD_DJANGO_USER=u",
				"ATPD_DJANGO_PASSWORD=p@ss", "ATPD_DJANGO_HOST=db.example", "ATPD_DJANGO_PORT=5433",
				"ATPD_DJANGO_USE_TZ=1", "ATPD_DJANGO_TIME_ZONE=UTC"},
		},
		{
			name: "postgres socket",
			dsn:  "postgresql://u@/atp?host=/var/run/postgresql",
			want: []string{"ATPD_DJANGO_HOST=/var/run/postgresql", "ATPD_DJANGO_PORT=5432"},
		},
		{name: "unsupported", dsn: "mysql://x/y", err: djangodb.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := djangoVars(tt.dsn, tt.c)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("djangoVars(%q) error = %v, want %v", tt.dsn, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("djangoVars(%q): %v", tt.dsn, err)
			}
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("djangoVars(%q) = %v, missing %s", tt.dsn, got, w)
				}
			}
		})
	}
	if _, err := djangoVars("postgres://u@h/", Config{}); err == nil {
		t.Errorf("djangoVars without a database name: want an error")
	}
}

func TestOptions(t *testing.T) {
	o := Options(Config{UseTZ: false, TimeZone: "Europe/Vienna"})
	if o.UseTZ || o.TimeZone == nil || o.TimeZone.String() != "Europe/Vienna" {
		t.Errorf("Options(naive Vienna) = %+v", o)
	}
	o = Options(Config{UseTZ: true})
	if !o.UseTZ || o.TimeZone == nil || o.TimeZone.String() != "UTC" {
		t.Errorf("Options(USE_TZ) = %+v, want UTC", o)
	}
}

func TestMaskFailingRow(t *testing.T) {
	const head = `null value in column "message" of relation "processes_logrecord" violates not-null constraint`
	tests := []struct {
		msg      string
		instance int64
		masked   string
		id       int64
	}{
		{head + "\nDETAIL:  Failing row contains (41, 2026-12-05 06:09:03.123456+00, 5, null, 7).\n", 7,
			head + "\nDETAIL:  Failing row contains (ID, TIME+00, 5, null, INSTANCE).\n", 41},
		{head + "\nDETAIL:  Failing row contains (3, 2026-07-01 08:00:00+02, 5, null, 12).\n", 12,
			head + "\nDETAIL:  Failing row contains (ID, TIME+02, 5, null, INSTANCE).\n", 3},
		{"x\nDETAIL:  Failing row contains (9, eJwzNNUzAAAB8wDF, null, 5).\n", 5, "x\nDETAIL:  Failing row contains (ID, eJwzNNUzAAAB8wDF, null, INSTANCE).\n", 9},
		{head + "\nDETAIL:  Failing row contains (41, 2026-12-05 06:09:03+00, 5, null, 7).\n", 8, "", 0},
		{head, 7, "", 0},
	}
	for _, tc := range tests {
		masked, id, ok := MaskFailingRow(tc.msg, tc.instance)
		if masked != tc.masked || id != tc.id || ok != (tc.masked != "") {
			t.Errorf("MaskFailingRow(%q, %d) = %q, %d, %t; want %q, %d", tc.msg, tc.instance, masked, id, ok, tc.masked, tc.id)
		}
	}
}
