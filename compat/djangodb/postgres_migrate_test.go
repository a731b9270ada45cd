package djangodb_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/djangodb/storetest"
	"github.com/eoxserver/atpd/internal/testdb"
)

// emptyPostgres creates an empty database on the server of dsn and returns
// its URL; it is dropped when the test ends.
func emptyPostgres(t *testing.T, dsn string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "atpd_empty_" + hex.EncodeToString(b)
	admin := rawDB(t, dsn)
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// pgSchema lists what makes the schema of the public schema: columns with
// their types, nullability and defaults, constraints with their definition
// and deferrability, indexes, sequences.
func pgSchema(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`
		SELECT format('column %s.%s #%s %s(%s) nullable=%s default=%s', table_name, column_name, ordinal_position,
			data_type, character_maximum_length, is_nullable, column_default)
		FROM information_schema.columns WHERE table_schema = 'public'
		UNION ALL
		SELECT format('constraint %s %s %s deferrable=%s deferred=%s %s', conrelid::regclass, conname, contype,
			condeferrable, condeferred, pg_get_constraintdef(oid))
		FROM pg_constraint WHERE connamespace = 'public'::regnamespace
		UNION ALL
		SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
		UNION ALL
		SELECT format('sequence %s %s start=%s step=%s', sequencename, data_type, start_value, increment_by)
		FROM pg_sequences WHERE schemaname = 'public'
		ORDER BY 1`)
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func djangoMigrations(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT id, app, name FROM django_migrations ORDER BY id`)
	if err != nil {
		t.Fatalf("read django_migrations: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var app, name string
		if err := rows.Scan(&id, &app, &name); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d %s %s", id, app, name))
	}
	return out
}

// django runs integration/'s Python with args against dsn.
func django(t *testing.T, dsn string, c testdb.Config, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), testdb.Python(t), args...)
	cmd.Dir = filepath.Join(testdb.RepoRoot(t), "integration")
	cmd.Env = testdb.DjangoEnv(t, dsn, c)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPostgresMigrate(t *testing.T) {
	for _, c := range []testdb.Config{{UseTZ: true, TimeZone: "UTC"}, {UseTZ: false, TimeZone: "Europe/Vienna"}} {
		t.Run(storetest.ConfigName(c), func(t *testing.T) {
			byDjango := testdb.Postgres(t, c)
			byAtpd := emptyPostgres(t, byDjango)
			djangoDB, atpdDB := rawDB(t, byDjango), rawDB(t, byAtpd)

			s := openPostgres(t, byAtpd, testdb.Options(c))
			before := time.Now().Truncate(time.Microsecond)
			if created, err := s.Migrate(t.Context()); err != nil || !created {
				t.Fatalf("Migrate on an empty database = %v, %v; want true", created, err)
			}
			if created, err := s.Migrate(t.Context()); err != nil || created {
				t.Fatalf("second Migrate = %v, %v; want false", created, err)
			}
			want := pgSchema(t, djangoDB)
			if !slices.Contains(want, `constraint processes_instance processes_instance_identifier_type_id_1cebb9ab_uniq u deferrable=f deferred=f UNIQUE (identifier, type_id)`) {
				t.Fatalf("the Django schema lacks the unique constraint the comparison relies on: %q", want)
			}
			if got := pgSchema(t, atpdDB); !slices.Equal(got, want) {
				t.Errorf("schema made by atpd differs from Django's:\natpd:   %q\ndjango: %q", got, want)
			}
			rec := djangoMigrations(t, atpdDB)
			if !slices.Equal(rec, djangoMigrations(t, djangoDB)) {
				t.Errorf("django_migrations by atpd %q, by Django %q", rec, djangoMigrations(t, djangoDB))
			}
			var applied time.Time
			if err := atpdDB.QueryRow(`SELECT applied FROM django_migrations`).Scan(&applied); err != nil || applied.Before(before) {
				t.Errorf("applied = %v, %v; want an instant after %v", applied, err, before)
			}

			out := django(t, byAtpd, c, "manage.py", "migrate", "--no-input")
			if !strings.Contains(out, "No migrations to apply.") {
				t.Errorf("Django migrate after atpd's:\n%s", out)
			}
			if got := djangoMigrations(t, atpdDB); !slices.Equal(got, rec) {
				t.Errorf("Django migrate changed django_migrations: %q -> %q", rec, got)
			}

			// Migrate leaves a Django-migrated database alone.
			d := openPostgres(t, byDjango, testdb.Options(c))
			if created, err := d.Migrate(t.Context()); err != nil || created {
				t.Errorf("Migrate on Django's tables = %v, %v; want false", created, err)
			}
			if got := pgSchema(t, djangoDB); !slices.Equal(got, want) {
				t.Errorf("Migrate changed Django's schema")
			}

			// The Django tracker works on atpd's tables, and atpd on what it wrote.
			django(t, byAtpd, c, "producer.py", "register", "Sum", "tools.atp_demo.handler")
			django(t, byAtpd, c, "producer.py", "enqueue", "Sum", "one", "--json", "[1, 2]", "--message", "from Python")
			ids, err := s.Dequeue(t.Context(), 1, 1, "")
			if err != nil || len(ids) != 1 {
				t.Fatalf("dequeue of the Python task: %v, %v", ids, err)
			}
			st, err := s.Start(t.Context(), ids[0], "")
			if err != nil || st.Type != "Sum" || st.Identifier != "one" || !st.HasInput || st.Handler != "tools.atp_demo.handler" {
				t.Errorf("start of the Python task = %+v, %v", st, err)
			}
			var log struct {
				Status  int
				Records []struct {
					Status  int
					Message string
				}
			}
			if err := json.Unmarshal([]byte(django(t, byAtpd, c, "producer.py", "log", "Sum", "one")), &log); err != nil {
				t.Fatal(err)
			}
			r := log.Records
			if log.Status != 3 || len(r) != 3 || r[0].Status != 1 || r[0].Message != "from Python" || r[1].Status != 2 || r[2].Status != 3 {
				t.Errorf("the tracker's log of the task atpd started: %+v", log)
			}
		})
	}
}

func TestPostgresDescribeHidesPassword(t *testing.T) {
	dsn := testdb.Postgres(t, testdb.Config{UseTZ: true})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts local connections, so any password works.
	u.User = url.UserPassword(u.User.Username(), "s3cret-pw")
	s := openPostgres(t, u.String(), djangodb.Options{UseTZ: true})
	if d := s.Describe(); strings.Contains(d, "s3cret-pw") || !strings.Contains(d, strings.TrimPrefix(u.Path, "/")) {
		t.Errorf("Describe() = %q: want the database named and no password", d)
	}
}

func TestPostgresOpenErrors(t *testing.T) {
	tests := []struct{ name, dsn string }{
		{"unreachable server", "postgres://postgres:pw@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"},
		{"unparsable URL", "postgres://postgres:pw@[::1/none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := djangodb.OpenPostgres(t.Context(), tc.dsn, djangodb.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("OpenPostgres(%q) succeeded", tc.dsn)
			}
			if strings.Contains(err.Error(), "pw@") || !strings.HasPrefix(err.Error(), "djangodb: ") {
				t.Errorf("error %q: want a djangodb: prefix and no password", err)
			}
		})
	}
}
