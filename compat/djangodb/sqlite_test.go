package djangodb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
	_ "modernc.org/sqlite"
)

// okInput is a stored input that decodes (pickle.dumps((1, 2, 3, 4, 5),
// 2)): a claim starts it.
const okInput = "eJxrYKotZIhgZGBgyC5k9GYs1gMAIjgDlA=="

var (
	sqliteUTC    = testdb.Config{UseTZ: true, TimeZone: "UTC"}
	sqliteVienna = testdb.Config{UseTZ: false, TimeZone: "Europe/Vienna"}
	// sqliteConfigs are the two ways Django stores SQLite timestamps: naive
	// UTC, and naive local time of a zone with DST and a non-zero offset.
	sqliteConfigs = []testdb.Config{sqliteUTC, sqliteVienna}
)

func sqliteConfigName(c testdb.Config) string {
	return fmt.Sprintf("usetz=%t/%s", c.UseTZ, strings.ReplaceAll(c.TimeZone, "/", "_"))
}

// djangoPattern is the only form Django writes into SQLite datetime columns.
// mustTracker is djangodb.TrackerOf for a store the test opened.
func mustTracker(t testing.TB, s djangodb.Store) djangodb.Tracker {
	t.Helper()
	tr, err := djangodb.TrackerOf(s)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// foreignStore is a Store this package did not open, wrapped or not.
type foreignStore struct{ djangodb.Store }

type wrapper struct{ djangodb.Store }

func (w wrapper) Unwrap() djangodb.Store { return w.Store }

// TestOwnStoreThroughWrappers: the functions that need this package's own
// store reach it through Wrappers and refuse any other with
// ErrUnsupported instead of panicking.
func TestOwnStoreThroughWrappers(t *testing.T) {
	s, _ := sqliteDjangoStore(t, sqliteUTC)
	for _, tc := range []struct {
		name string
		st   djangodb.Store
		ok   bool
	}{
		{"own", s, true},
		{"wrapped twice", wrapper{wrapper{s}}, true},
		{"foreign", foreignStore{s}, false},
		{"foreign inside a wrapper", wrapper{foreignStore{s}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, terr := djangodb.TrackerOf(tc.st)
			checks := map[string]error{
				"TrackerOf":   terr,
				"CheckSchema": djangodb.CheckSchema(t.Context(), tc.st),
				"ProbeWrite":  djangodb.ProbeWrite(t.Context(), tc.st),
			}
			_, checks["EnqueueMany"] = djangodb.EnqueueMany(t.Context(), tc.st, "T", nil, "")
			for name, err := range checks {
				if tc.ok && err != nil {
					t.Errorf("%s: %v, want nil", name, err)
				}
				if !tc.ok && !errors.Is(err, djangodb.ErrUnsupported) {
					t.Errorf("%s: %v, want ErrUnsupported", name, err)
				}
			}
		})
	}
}

var sqliteDjangoPattern = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$`)

// openStore opens a store on the SQLite file at path with c's settings.
func openSQLiteStore(t testing.TB, path string, opts djangodb.Options) djangodb.Tracker {
	t.Helper()
	s, err := djangodb.OpenSQLite(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return mustTracker(t, s)
}

// djangoStore returns a store on a fresh Django-migrated file and the path.
func sqliteDjangoStore(t testing.TB, c testdb.Config) (djangodb.Tracker, string) {
	t.Helper()
	path := djangodb.SQLitePath(testdb.SQLite(t, c))
	return openSQLiteStore(t, path, testdb.Options(c)), path
}

// rawDB opens the file without the store, as another process would; foreign
// keys are off, as in a bare sqlite3 shell.
func sqliteRaw(t testing.TB, path string) *sql.DB {
	t.Helper()
	u := url.URL{Path: path}
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open raw %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sqliteExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func sqliteInt(t testing.TB, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func sqliteText(t testing.TB, db *sql.DB, q string, args ...any) string {
	t.Helper()
	var s string
	if err := db.QueryRow(q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

// djangoText renders at as Django stores it under c, truncated to the second
// so that the fraction-less form is exercised too.
func sqliteDjangoText(t testing.TB, c testdb.Config, at time.Time) string {
	t.Helper()
	loc := time.UTC
	if !c.UseTZ {
		loc = testdb.Options(c).TimeZone
	}
	return at.In(loc).Format("2006-01-02 15:04:05")
}

func sqliteRegister(t testing.TB, s djangodb.Store, spec djangodb.TypeSpec) djangodb.TaskType {
	t.Helper()
	typ, err := s.RegisterType(context.Background(), spec)
	if err != nil {
		t.Fatalf("register %s: %v", spec.Identifier, err)
	}
	return typ
}

func sqliteEnqueue(t testing.TB, s djangodb.Store, typ, id string) int64 {
	t.Helper()
	inst, err := s.Enqueue(context.Background(), typ, id, okInput, "")
	if err != nil {
		t.Fatalf("enqueue %s::%s: %v", typ, id, err)
	}
	return inst
}

func sqliteStatuses(t testing.TB, s djangodb.Store, id int64) []djangodb.Status {
	t.Helper()
	recs, err := s.Log(context.Background(), id)
	if err != nil {
		t.Fatalf("log of %d: %v", id, err)
	}
	var out []djangodb.Status
	for _, r := range recs {
		out = append(out, r.Status)
	}
	return out
}

type sqliteMasterRow struct{ Type, Name, Table, SQL string }

// schema lists sqlite_master in storage order, without rootpage (page
// numbers depend on the history of the file, not on what it defines).
func sqliteSchemaRows(t testing.TB, path string) []sqliteMasterRow {
	t.Helper()
	db := sqliteRaw(t, path)
	rows, err := db.Query(`SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY rowid`)
	if err != nil {
		t.Fatalf("read sqlite_master of %s: %v", path, err)
	}
	defer rows.Close()
	var out []sqliteMasterRow
	for rows.Next() {
		var r sqliteMasterRow
		if err := rows.Scan(&r.Type, &r.Name, &r.Table, &r.SQL); err != nil {
			t.Fatalf("read sqlite_master of %s: %v", path, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read sqlite_master of %s: %v", path, err)
	}
	return out
}

func sqliteManage(t testing.TB, path string, c testdb.Config, args ...string) string {
	t.Helper()
	py := testdb.Python(t)
	cmd := exec.Command(py, append([]string{"manage.py"}, args...)...)
	cmd.Dir = filepath.Join(testdb.RepoRoot(t), "integration")
	cmd.Env = testdb.DjangoEnv(t, "sqlite:"+path, c)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("manage.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSQLiteMigrate(t *testing.T) {
	ctx := context.Background()
	for _, c := range sqliteConfigs {
		t.Run(sqliteConfigName(c), func(t *testing.T) {
			djangoPath := djangodb.SQLitePath(testdb.SQLite(t, c))
			want := sqliteSchemaRows(t, djangoPath)

			path := filepath.Join(t.TempDir(), "fresh.sqlite3")
			s := openSQLiteStore(t, path, testdb.Options(c))
			created, err := s.Migrate(ctx)
			if err != nil || !created {
				t.Fatalf("Migrate on an empty file = %v, %v; want true, nil", created, err)
			}
			if got := sqliteSchemaRows(t, path); !slices.Equal(got, want) {
				t.Fatalf("sqlite_master differs from Django's:\n got %q\nwant %q", got, want)
			}
			raw := sqliteRaw(t, path)
			applied := sqliteText(t, raw, `SELECT CAST(applied AS TEXT) FROM django_migrations WHERE app = 'processes' AND name = '0001_initial'`)
			if !sqliteDjangoPattern.MatchString(applied) {
				t.Errorf("django_migrations.applied = %q, not Django's form", applied)
			}

			created, err = s.Migrate(ctx)
			if err != nil || created {
				t.Fatalf("second Migrate = %v, %v; want false, nil", created, err)
			}
			out := sqliteManage(t, path, c, "migrate", "--no-input")
			if !strings.Contains(out, "No migrations to apply.") {
				t.Errorf("Django migrate after atpd's found work:\n%s", out)
			}
			if got := sqliteSchemaRows(t, path); !slices.Equal(got, want) {
				t.Errorf("Django migrate changed the schema:\n got %q\nwant %q", got, want)
			}
			out = sqliteManage(t, path, c, "makemigrations", "--check", "--dry-run", "processes")
			if !strings.Contains(out, "No changes detected") {
				t.Errorf("makemigrations sees model changes:\n%s", out)
			}

			// A Django-migrated file is left exactly as it is.
			migrations := sqliteInt(t, sqliteRaw(t, djangoPath), `SELECT count(*) FROM django_migrations`)
			ds := openSQLiteStore(t, djangoPath, testdb.Options(c))
			created, err = ds.Migrate(ctx)
			if err != nil || created {
				t.Fatalf("Migrate on a Django-migrated file = %v, %v; want false, nil", created, err)
			}
			if got := sqliteSchemaRows(t, djangoPath); !slices.Equal(got, want) {
				t.Errorf("Migrate changed a Django-migrated file:\n got %q\nwant %q", got, want)
			}
			if n := sqliteInt(t, sqliteRaw(t, djangoPath), `SELECT count(*) FROM django_migrations`); n != migrations {
				t.Errorf("django_migrations has %d rows after Migrate, want %d", n, migrations)
			}
		})
	}
}

// TestSQLiteMigrateBesideOtherApps covers a database where other Django
// apps were migrated first: django_migrations exists and keeps its rows.
func TestSQLiteMigrateBesideOtherApps(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "other.sqlite3")
	raw := sqliteRaw(t, path)
	sqliteExec(t, raw, `CREATE TABLE "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, "applied" datetime NOT NULL)`)
	sqliteExec(t, raw, `INSERT INTO django_migrations (app, name, applied) VALUES ('contenttypes', '0001_initial', '2020-01-01 00:00:00')`)
	s := openSQLiteStore(t, path, testdb.Options(sqliteUTC))
	created, err := s.Migrate(ctx)
	if err != nil || !created {
		t.Fatalf("Migrate = %v, %v; want true, nil", created, err)
	}
	rows, err := raw.Query(`SELECT app || '.' || name FROM django_migrations ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if want := []string{"contenttypes.0001_initial", "processes.0001_initial", "processes.0002_auto_20181203_0914"}; !slices.Equal(got, want) {
		t.Errorf("django_migrations = %q, want %q", got, want)
	}
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "T", Handler: "m.f"}); err != nil {
		t.Errorf("register on the migrated file: %v", err)
	}
}

// TestSQLiteTimestampForm runs one task through the store and reads every
// timestamp it wrote back as raw text: Django's form, in UTC or in local
// time as the settings say, and ordered as written.
func TestSQLiteTimestampForm(t *testing.T) {
	ctx := context.Background()
	for _, c := range sqliteConfigs {
		t.Run(sqliteConfigName(c), func(t *testing.T) {
			s, path := sqliteDjangoStore(t, c)
			loc := time.UTC
			if !c.UseTZ {
				loc = testdb.Options(c).TimeZone
			}
			before := time.Now().Truncate(time.Microsecond)
			sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: "tools.atp_demo.handler", Timeout: 60, TimeRet: 600, MaxRestart: 2})
			id := sqliteEnqueue(t, s, "SequenceSum", "ok")
			if _, err := s.Dequeue(ctx, 0x1234, 1, ""); err != nil {
				t.Fatalf("dequeue: %v", err)
			}
			if _, err := s.Start(ctx, id, ""); err != nil {
				t.Fatalf("start: %v", err)
			}
			if err := s.SetResponse(ctx, id, []byte("15.0"), "text/plain"); err != nil {
				t.Fatalf("set response: %v", err)
			}
			if ok, err := s.FinishIfNotFinished(ctx, id, ""); err != nil || !ok {
				t.Fatalf("finish = %v, %v", ok, err)
			}
			if err := s.Reenqueue(ctx, id, "again"); err != nil {
				t.Fatalf("reenqueue: %v", err)
			}
			after := time.Now()

			raw := sqliteRaw(t, path)
			var texts []string
			for _, q := range []string{
				`SELECT CAST("timeInsert" AS TEXT) FROM processes_instance`,
				`SELECT CAST("timeUpdate" AS TEXT) FROM processes_instance`,
				`SELECT CAST("time" AS TEXT) FROM processes_logrecord ORDER BY id`,
				`SELECT CAST("time" AS TEXT) FROM processes_task`,
			} {
				rows, err := raw.Query(q)
				if err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				for rows.Next() {
					var v string
					if err := rows.Scan(&v); err != nil {
						t.Fatal(err)
					}
					texts = append(texts, v)
				}
				rows.Close()
			}
			if len(texts) != 2+5+1 {
				t.Fatalf("read %d timestamps, want 8: %q", len(texts), texts)
			}
			for _, v := range texts {
				if !sqliteDjangoPattern.MatchString(v) {
					t.Errorf("stored %q, not Django's naive form", v)
					continue
				}
				at, err := time.ParseInLocation("2006-01-02 15:04:05.999999", v, loc)
				if err != nil {
					t.Fatalf("parse %q: %v", v, err)
				}
				if at.Before(before) || at.After(after) {
					t.Errorf("stored %q reads as %v in %v, outside the run [%v, %v]", v, at, loc, before, after)
				}
			}
			logTimes := texts[2:7]
			if !slices.IsSorted(logTimes) {
				t.Errorf("log times not increasing as text: %q", logTimes)
			}
			if got, want := sqliteStatuses(t, s, id), []djangodb.Status{1, 2, 3, 5, 1}; !slices.Equal(got, want) {
				t.Errorf("log statuses = %v, want %v", got, want)
			}
			if got, want := sqliteText(t, raw, `SELECT response || ' ' || "mimeType" FROM processes_response`), djangodb.EncodeResponse([]byte("15.0"))+" text/plain"; got != want {
				t.Errorf("response row = %q, want %q", got, want)
			}
		})
	}
}

// TestSQLiteReadsOtherForms reads rows whose timestamps other writers wrote
// (no fraction, 'T', an offset, garbage): the readable ones as the right
// instant, a corrupt one as the zero time without failing the listing.
func TestSQLiteReadsOtherForms(t *testing.T) {
	ctx := context.Background()
	s, path := sqliteDjangoStore(t, sqliteVienna)
	typ := sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "T", Handler: "m.f"})
	raw := sqliteRaw(t, path)
	tests := []struct {
		ident, stored string
		want          time.Time
	}{
		{"plain", "2026-01-15 11:00:00", time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)},
		{"micros", "2026-07-15 12:00:00.000250", time.Date(2026, 7, 15, 10, 0, 0, 250000, time.UTC)},
		{"iso", "2026-07-15T12:00:00", time.Date(2026, 7, 15, 10, 0, 0, 0, time.UTC)},
		{"offset", "2026-07-15 12:00:00+00:00", time.Date(2026, 7, 15, 12, 0, 0, 0, time.UTC)},
		{"garbage", "yesterday", time.Time{}},
	}
	for _, tt := range tests {
		sqliteExec(t, raw, `INSERT INTO processes_instance (identifier, "timeInsert", "timeUpdate", status, type_id) VALUES (?, ?, ?, 5, ?)`,
			tt.ident, tt.stored, tt.stored, typ.ID)
	}
	list, err := s.Instances(ctx, djangodb.InstanceFilter{Type: "T"})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != len(tests) {
		t.Fatalf("listed %d instances, want %d", len(list), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.ident, func(t *testing.T) {
			if !list[i].TimeUpdate.Equal(tt.want) || !list[i].TimeInsert.Equal(tt.want) {
				t.Errorf("stored %q read as %v / %v, want %v", tt.stored, list[i].TimeInsert, list[i].TimeUpdate, tt.want)
			}
		})
	}
}

// TestSQLiteSweepComparesStoredText ages instances and claimed task rows to
// just either side of the cut-offs, in the text form Django would have
// written under each setting, and checks that the sweeps pick exactly the
// older ones. A cut-off rendered in the wrong zone is off by an hour or two
// and fails this.
func TestSQLiteSweepComparesStoredText(t *testing.T) {
	ctx := context.Background()
	for _, c := range sqliteConfigs {
		t.Run(sqliteConfigName(c), func(t *testing.T) {
			s, path := sqliteDjangoStore(t, c)
			raw := sqliteRaw(t, path)
			sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "Z", Handler: "m.f", Timeout: 3600, TimeRet: 7200, MaxRestart: 2})
			now := time.Now()
			age := func(id int64, d time.Duration) {
				sqliteExec(t, raw, `UPDATE processes_instance SET "timeUpdate" = ? WHERE id = ?`, sqliteDjangoText(t, c, now.Add(-d)), id)
			}
			// Zombies: RUNNING just over and just under the timeout.
			old, young := sqliteEnqueue(t, s, "Z", "old"), sqliteEnqueue(t, s, "Z", "young")
			if _, err := s.Dequeue(ctx, 7, 2, ""); err != nil {
				t.Fatal(err)
			}
			for _, id := range []int64{old, young} {
				if _, err := s.Start(ctx, id, ""); err != nil {
					t.Fatal(err)
				}
			}
			age(old, time.Hour+5*time.Second)
			age(young, time.Hour-60*time.Second)
			// Retirement: FINISHED just over and just under timeret.
			gone, kept := sqliteEnqueue(t, s, "Z", "gone"), sqliteEnqueue(t, s, "Z", "kept")
			if _, err := s.Dequeue(ctx, 7, 2, ""); err != nil {
				t.Fatal(err)
			}
			for _, id := range []int64{gone, kept} {
				if err := s.SetStatus(ctx, id, djangodb.Finished, ""); err != nil {
					t.Fatal(err)
				}
			}
			age(gone, 2*time.Hour+5*time.Second)
			age(kept, 2*time.Hour-60*time.Second)
			// Claimed task rows: one past PullTimeout, one not.
			stuck, pulling := sqliteEnqueue(t, s, "Z", "stuck"), sqliteEnqueue(t, s, "Z", "pulling")
			sqliteExec(t, raw, `UPDATE processes_task SET "lock" = 4660, "time" = ? WHERE instance_id = ?`, sqliteDjangoText(t, c, now.Add(-djangodb.PullTimeout-5*time.Second)), stuck)
			sqliteExec(t, raw, `UPDATE processes_task SET "lock" = 4660, "time" = ? WHERE instance_id = ?`, sqliteDjangoText(t, c, now.Add(-djangodb.PullTimeout+20*time.Second)), pulling)

			res, err := s.SweepZombies(ctx, djangodb.MsgZombieReenqueued)
			if err != nil {
				t.Fatalf("sweep: %v", err)
			}
			if len(res.Reenqueued) != 1 || res.Reenqueued[0].ID != old || len(res.Failed) != 0 {
				t.Errorf("sweep re-enqueued %v and failed %v, want only instance %d re-enqueued", res.Reenqueued, res.Failed, old)
			}
			if len(res.Unstuck) != 1 || res.Unstuck[0] != (djangodb.InstanceRef{ID: stuck, Type: "Z", Identifier: "stuck"}) {
				t.Errorf("sweep unstuck %v, want Z::stuck (%d)", res.Unstuck, stuck)
			}
			if got, want := sqliteStatuses(t, s, young), []djangodb.Status{1, 2, 3}; !slices.Equal(got, want) {
				t.Errorf("young zombie log = %v, want %v", got, want)
			}
			// The unstuck instance was ACCEPTED all along: upstream's bare
			// SCHEDULED update leaves no record, the re-enqueue one.
			if got, want := sqliteStatuses(t, s, stuck), []djangodb.Status{1, 1}; !slices.Equal(got, want) {
				t.Errorf("unstuck log = %v, want %v", got, want)
			}
			if n := sqliteInt(t, raw, `SELECT count(*) FROM processes_task WHERE instance_id = ? AND "lock" = 0`, stuck); n != 1 {
				t.Errorf("unstuck instance has %d waiting task rows, want 1", n)
			}
			if n := sqliteInt(t, raw, `SELECT count(*) FROM processes_task WHERE instance_id = ? AND "lock" = 4660`, pulling); n != 1 {
				t.Errorf("recently claimed row was touched: %d rows left, want 1", n)
			}

			retired, err := s.DeleteRetired(ctx)
			if err != nil {
				t.Fatalf("delete retired: %v", err)
			}
			if len(retired) != 1 || retired[0].ID != gone {
				t.Errorf("retired %v, want only instance %d", retired, gone)
			}
			for _, tbl := range []string{"processes_task", "processes_logrecord", "processes_input", "processes_response"} {
				if n := sqliteInt(t, raw, `SELECT count(*) FROM `+tbl+` WHERE instance_id = ?`, gone); n != 0 {
					t.Errorf("%s keeps %d rows of the retired instance", tbl, n)
				}
			}
			if _, err := s.Instance(ctx, kept); err != nil {
				t.Errorf("instance younger than timeret: %v", err)
			}
		})
	}
}

// TestSQLiteSweepMaxStart checks the documented promise upstream never
// kept: starts are counted as RUNNING records right after SCHEDULED ones
// (a resume from PAUSED is no start), and a zombie that used all of them fails.
func TestSQLiteSweepMaxStart(t *testing.T) {
	ctx := context.Background()
	s, path := sqliteDjangoStore(t, sqliteUTC)
	raw := sqliteRaw(t, path)
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "M", Handler: "m.f", Timeout: 60, MaxRestart: 1}) // maxstart 2
	id := sqliteEnqueue(t, s, "M", "m")
	expire := func() {
		sqliteExec(t, raw, `UPDATE processes_instance SET "timeUpdate" = '2020-01-01 00:00:00' WHERE id = ?`, id)
	}
	run := func() djangodb.StartedTask {
		t.Helper()
		if ids, err := s.Dequeue(ctx, 9, 1, ""); err != nil || !slices.Equal(ids, []int64{id}) {
			t.Fatalf("dequeue = %v, %v; want [%d]", ids, err, id)
		}
		st, err := s.Start(ctx, id, "")
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		return st
	}
	if st := run(); st.Starts != 1 || st.MaxStart != 2 || st.Timeout != time.Minute || !st.HasInput {
		t.Fatalf("first start = %+v; want Starts 1, MaxStart 2, Timeout 1m, input", st)
	}
	// Pause and resume: RUNNING after PAUSED is no new start.
	if err := s.SetStatus(ctx, id, djangodb.Paused, "wait"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, id, djangodb.Running, "go on"); err != nil {
		t.Fatal(err)
	}
	expire()
	res, err := s.SweepZombies(ctx, djangodb.MsgZombieReenqueued)
	if err != nil || len(res.Reenqueued) != 1 || len(res.Failed) != 0 {
		t.Fatalf("first sweep = %+v, %v; want one re-enqueue", res, err)
	}
	if st := run(); st.Starts != 2 {
		t.Fatalf("second start counted %d starts, want 2", st.Starts)
	}
	expire()
	res, err = s.SweepZombies(ctx, djangodb.MsgZombieReenqueued)
	if err != nil || len(res.Failed) != 1 || len(res.Reenqueued) != 0 {
		t.Fatalf("second sweep = %+v, %v; want one failure", res, err)
	}
	recs, err := s.Log(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if want := djangodb.MaxStartsMessage(2, 2); last.Status != djangodb.Failed || last.Message != want {
		t.Errorf("last record = %v %q, want FAILED %q", last.Status, last.Message, want)
	}
	if n := sqliteInt(t, raw, `SELECT count(*) FROM processes_task`); n != 0 {
		t.Errorf("a failed zombie left %d task rows", n)
	}
}

func TestSQLiteDequeue(t *testing.T) {
	ctx := context.Background()
	s, path := sqliteDjangoStore(t, sqliteUTC)
	raw := sqliteRaw(t, path)
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "D", Handler: "m.f"})
	if _, err := s.Dequeue(ctx, 1, 4, ""); !errors.Is(err, djangodb.ErrQueueEmpty) {
		t.Fatalf("dequeue of an empty queue = %v, want ErrQueueEmpty", err)
	}
	var ids []int64
	for i := range 5 {
		ids = append(ids, sqliteEnqueue(t, s, "D", fmt.Sprint("d", i)))
	}
	// Another daemon is in the middle of claiming the second one.
	sqliteExec(t, raw, `UPDATE processes_task SET "lock" = -77 WHERE instance_id = ?`, ids[1])
	// A row whose instance is gone (written with foreign keys off) sits
	// before the rest and must not block them.
	sqliteExec(t, raw, `INSERT INTO processes_task ("time", "lock", instance_id) VALUES ('2020-01-01 00:00:00', 0, 999999)`)
	sqliteExec(t, raw, `UPDATE processes_task SET id = 0 WHERE instance_id = 999999`)

	got, err := s.Dequeue(ctx, 1, 2, "picked")
	if err != nil || !slices.Equal(got, []int64{ids[0]}) {
		t.Fatalf("first dequeue = %v, %v; want [%d] (orphan row dropped)", got, err, ids[0])
	}
	got, err = s.Dequeue(ctx, 1, 2, "picked")
	if err != nil || !slices.Equal(got, []int64{ids[2], ids[3]}) {
		t.Fatalf("second dequeue = %v, %v; want %v (FIFO, skipping the claimed row)", got, err, ids[2:4])
	}
	for _, id := range ids[2:4] {
		in, err := s.Instance(ctx, id)
		if err != nil || in.Status != djangodb.Scheduled {
			t.Errorf("instance %d = %+v, %v; want SCHEDULED", id, in, err)
		}
		recs, _ := s.Log(ctx, id)
		if last := recs[len(recs)-1]; last.Status != djangodb.Scheduled || last.Message != "picked" {
			t.Errorf("instance %d last record = %+v, want SCHEDULED \"picked\"", id, last)
		}
	}
	if got, err := s.Dequeue(ctx, 1, 10, ""); err != nil || !slices.Equal(got, []int64{ids[4]}) {
		t.Fatalf("third dequeue = %v, %v; want [%d]", got, err, ids[4])
	}
	if _, err := s.Dequeue(ctx, 1, 10, ""); !errors.Is(err, djangodb.ErrQueueEmpty) {
		t.Fatalf("dequeue with only a foreign claim left = %v, want ErrQueueEmpty", err)
	}
	if n := sqliteInt(t, raw, `SELECT count(*) FROM processes_task`); n != 1 {
		t.Errorf("%d task rows left, want only the foreign claim", n)
	}
}

// TestSQLiteEnqueueIsAtomic checks that a refused enqueue leaves no row.
func TestSQLiteEnqueueIsAtomic(t *testing.T) {
	ctx := context.Background()
	opts := testdb.Options(sqliteUTC)
	opts.MaxQueueSize = 2
	path := djangodb.SQLitePath(testdb.SQLite(t, sqliteUTC))
	s := openSQLiteStore(t, path, opts)
	raw := sqliteRaw(t, path)
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "E", Handler: "m.f"})
	sqliteEnqueue(t, s, "E", "a")
	tests := []struct {
		name, typ, ident string
		want             error
	}{
		{"duplicate", "E", "a", djangodb.ErrExists},
		{"unknown type", "Nope", "b", djangodb.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Enqueue(ctx, tt.typ, tt.ident, "x", ""); !errors.Is(err, tt.want) {
				t.Errorf("enqueue = %v, want %v", err, tt.want)
			}
		})
	}
	sqliteEnqueue(t, s, "E", "b")
	if _, err := s.Enqueue(ctx, "E", "c", "x", ""); !errors.Is(err, djangodb.ErrQueueFull) {
		t.Errorf("third enqueue with MaxQueueSize 2 = %v, want ErrQueueFull", err)
	}
	for tbl, want := range map[string]int64{"processes_instance": 2, "processes_logrecord": 2, "processes_input": 2, "processes_task": 2} {
		if n := sqliteInt(t, raw, `SELECT count(*) FROM `+tbl); n != want {
			t.Errorf("%s has %d rows, want %d", tbl, n, want)
		}
	}
}

func TestSQLiteDeleteCascades(t *testing.T) {
	ctx := context.Background()
	s, path := sqliteDjangoStore(t, sqliteUTC)
	raw := sqliteRaw(t, path)
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "X", Handler: "m.f"})
	a, b := sqliteEnqueue(t, s, "X", "a"), sqliteEnqueue(t, s, "X", "b")
	if err := s.SetResponse(ctx, a, []byte("r1"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetResponse(ctx, a, []byte("r2"), "application/json"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Response(ctx, a); err != nil || string(r.Data) != "r2" || r.MimeType != "text/plain" {
		t.Errorf("replaced response = %+v, %v; want r2 with its first type, text/plain", r, err)
	}
	if err := s.UnregisterType(ctx, "X", false); !errors.Is(err, djangodb.ErrProtected) {
		t.Errorf("unregister with instances = %v, want ErrProtected", err)
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Errorf("deleting a missing instance = %v, want nil", err)
	}
	if _, err := s.Instance(ctx, a); !errors.Is(err, djangodb.ErrNotFound) {
		t.Errorf("deleted instance = %v, want ErrNotFound", err)
	}
	if _, err := s.Log(ctx, a); !errors.Is(err, djangodb.ErrNotFound) {
		t.Errorf("log of deleted instance = %v, want ErrNotFound", err)
	}
	if err := s.UnregisterType(ctx, "X", true); err != nil {
		t.Fatalf("forced unregister: %v", err)
	}
	for _, tbl := range []string{"processes_type", "processes_instance", "processes_task", "processes_logrecord", "processes_input", "processes_response"} {
		if n := sqliteInt(t, raw, `SELECT count(*) FROM `+tbl); n != 0 {
			t.Errorf("%s keeps %d rows after forced unregister (instance %d)", tbl, n, b)
		}
	}
	if n := sqliteInt(t, raw, `SELECT count(*) FROM pragma_foreign_key_check`); n != 0 {
		t.Errorf("foreign key check reports %d violations", n)
	}
}

// TestSQLiteWaitsForLocks holds the write lock from another connection, as
// a Django producer in the middle of a save would: the store waits for it
// within the busy timeout and fails cleanly, writing nothing, beyond it.
func TestSQLiteWaitsForLocks(t *testing.T) {
	ctx := context.Background()
	path := djangodb.SQLitePath(testdb.SQLite(t, sqliteUTC))
	opts := testdb.Options(sqliteUTC)
	opts.BusyTimeout = time.Second
	s := openSQLiteStore(t, path, opts)
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "L", Handler: "m.f"})

	raw := sqliteRaw(t, path)
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hold := func() {
		if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			t.Fatalf("take the write lock: %v", err)
		}
	}
	release := func() {
		if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
			t.Fatalf("release the write lock: %v", err)
		}
	}

	hold()
	done := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(ctx, "L", "waited", "x", "")
		done <- err
	}()
	// Another process holds the lock for a while (there is no signal to
	// wait for: that is the point); release well within the busy timeout.
	time.AfterFunc(50*time.Millisecond, release)
	if err := <-done; err != nil {
		t.Fatalf("enqueue while the lock was held 50 ms (busy timeout 1 s): %v", err)
	}

	hold()
	_, err = s.Enqueue(ctx, "L", "refused", "x", "")
	release()
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("enqueue while the lock was held past the busy timeout = %v, want a lock error", err)
	}
	if !strings.Contains(err.Error(), "djangodb: enqueue L::refused") {
		t.Errorf("error %q does not name the operation and task", err)
	}
	if _, err := s.InstanceByIdentifier(ctx, "L", "refused"); !errors.Is(err, djangodb.ErrNotFound) {
		t.Errorf("refused enqueue left an instance: %v", err)
	}
	if _, err := s.InstanceByIdentifier(ctx, "L", "waited"); err != nil {
		t.Errorf("waited enqueue: %v", err)
	}
}

func TestSQLiteDescribeAndOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Characters a file: URI would otherwise misread.
	path := filepath.Join(dir, "odd ?#%name.sqlite3")
	s, err := djangodb.Open(ctx, "sqlite:"+path, djangodb.Options{UseTZ: true})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if got := s.Describe(); got != "sqlite:"+path {
		t.Errorf("Describe() = %q, want %q", got, "sqlite:"+path)
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if n := len(sqliteSchemaRows(t, path)); n == 0 {
		t.Errorf("the tables were not created in %q", path)
	}
	if _, err := djangodb.OpenSQLite(ctx, filepath.Join(dir, "missing", "x.sqlite3"), djangodb.Options{}); err == nil {
		t.Errorf("opening a file in a missing directory succeeded")
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("these are not the tables you are looking for, not even close to a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := djangodb.OpenSQLite(ctx, text, djangodb.Options{}); err == nil || !strings.Contains(err.Error(), text) {
		t.Errorf("opening a text file = %v, want an error naming it", err)
	}
}

// BenchmarkSQLiteLifecycle measures whole task lifecycles through the store
// on a Django-migrated file: enqueue, claim in batches of 8, start, store a
// response, finish. Each operation is its own transaction, so this is
// bounded by commits (one fsync each in rollback-journal mode).
func BenchmarkSQLiteLifecycle(b *testing.B) {
	ctx := context.Background()
	s, _ := sqliteDjangoStore(b, sqliteUTC)
	sqliteRegister(b, s, djangodb.TypeSpec{Identifier: "B", Handler: "m.f"})
	b.ResetTimer()
	for i := 0; i < b.N; {
		n := min(8, b.N-i)
		for j := 0; j < n; j++ {
			sqliteEnqueue(b, s, "B", fmt.Sprint("b", i+j))
		}
		ids, err := s.Dequeue(ctx, 1, n, "")
		if err != nil || len(ids) != n {
			b.Fatalf("dequeue %d = %v, %v", n, ids, err)
		}
		for _, id := range ids {
			if _, err := s.Start(ctx, id, ""); err != nil {
				b.Fatal(err)
			}
			if err := s.SetResponse(ctx, id, []byte("15.0"), "text/plain"); err != nil {
				b.Fatal(err)
			}
			if _, err := s.FinishIfNotFinished(ctx, id, ""); err != nil {
				b.Fatal(err)
			}
		}
		i += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// TestSQLiteDatabaseTimeZone: with USE_TZ and a database TIME_ZONE
// (DATABASES[alias]['TIME_ZONE']), Django stores naive local time of that
// zone, not UTC; the store writes and reads it the same way.
func TestSQLiteDatabaseTimeZone(t *testing.T) {
	vienna, err := time.LoadLocation("Europe/Vienna")
	if err != nil {
		t.Fatal(err)
	}
	path := djangodb.SQLitePath(testdb.SQLite(t, sqliteUTC))
	opts := testdb.Options(sqliteUTC)
	opts.DBTimeZone = vienna
	s := openSQLiteStore(t, path, opts)
	ctx := t.Context()
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "T", Handler: "h.h"}); err != nil {
		t.Fatal(err)
	}
	id, err := s.Enqueue(ctx, "T", "a", okInput, "")
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.Instance(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	if err := sqliteRaw(t, path).QueryRowContext(ctx, `SELECT CAST("timeInsert" AS TEXT) FROM processes_instance WHERE id = ?`, id).Scan(&text); err != nil {
		t.Fatal(err)
	}
	stored, err := time.ParseInLocation("2006-01-02 15:04:05.999999", text, vienna)
	if err != nil || !stored.Equal(in.TimeInsert) || !sqliteDjangoPattern.MatchString(text) {
		t.Errorf("stored %q (%v, %v), want Vienna's wall clock of %v", text, stored, err, in.TimeInsert)
	}
}

// TestSQLiteGroupCommit: write transactions that wait for the one write
// connection share a commit, each still atomic on its own: one that fails
// leaves nothing behind and its error is its own, the others commit.
func TestSQLiteGroupCommit(t *testing.T) {
	s, _ := sqliteDjangoStore(t, sqliteUTC)
	const n = 16
	ctx := t.Context()
	started, release := make(chan struct{}), make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	insert := func(ctx context.Context, tx *sql.Tx, k int) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret) VALUES ($1, 'h.h', 1, 60, -1)`, fmt.Sprint("G", k))
		return err
	}
	before, _ := djangodb.GroupState(s)
	wg.Add(1)
	go func() { // the first: it holds its transaction until all others wait
		defer wg.Done()
		errs[0] = djangodb.WriteTx(ctx, s, func(ctx context.Context, tx *sql.Tx) error {
			close(started)
			<-release
			return insert(ctx, tx, 0)
		})
	}()
	<-started
	for k := 1; k < n; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = djangodb.WriteTx(ctx, s, func(ctx context.Context, tx *sql.Tx) error {
				if err := insert(ctx, tx, k); err != nil || k%4 != 3 {
					return err
				}
				return fmt.Errorf("job %d fails after its insert", k)
			})
		}()
	}
	for {
		if _, waiting := djangodb.GroupState(s); waiting == n-1 {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	after, _ := djangodb.GroupState(s)
	if got := after - before; got != 2 {
		t.Errorf("%d transactions for %d writers, want 2 (the first alone, the rest together)", got, n)
	}
	for k := range n {
		var rows int
		if err := djangodb.WriteTx(ctx, s, func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT count(*) FROM processes_type WHERE identifier = $1`, fmt.Sprint("G", k)).Scan(&rows)
		}); err != nil {
			t.Fatal(err)
		}
		fails := k%4 == 3
		if fails && (errs[k] == nil || rows != 0) || !fails && (errs[k] != nil || rows != 1) {
			t.Errorf("writer %d: error %v, %d rows; want %s", k, errs[k], rows, map[bool]string{true: "its own error and no row", false: "no error and its row"}[fails])
		}
	}
}

// TestSQLiteLeavesLockToOthers: while the daemon's transactions follow one
// another with hardly a gap (here each holds the write lock 100 ms, as
// commits on a loaded disk do), another process polling the lock from its
// busy handler, as a Django producer or atpd's command line does, still
// gets it within Django's default busy timeout (5 s) every time.
func TestSQLiteLeavesLockToOthers(t *testing.T) {
	s, path := sqliteDjangoStore(t, sqliteUTC)
	sqliteRegister(t, s, djangodb.TypeSpec{Identifier: "Busy", Handler: "m.f"})
	ctx, stop := context.WithCancel(t.Context())
	busy, holding := make(chan error, 1), make(chan struct{})
	var once sync.Once
	go func() {
		for ctx.Err() == nil {
			err := djangodb.WriteTx(ctx, s, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `UPDATE processes_type SET maxstart = maxstart + 1 WHERE identifier = 'Busy'`); err != nil {
					return err
				}
				once.Do(func() { close(holding) })
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				busy <- err
				return
			}
		}
		busy <- nil
	}()
	<-holding
	other := sqliteRaw(t, path) // busy_timeout 5 s, Django's default
	for i := range 4 {
		if _, err := other.ExecContext(t.Context(), `UPDATE processes_type SET timeout = timeout + 1 WHERE identifier = 'Busy'`); err != nil {
			t.Errorf("another process's write %d beside back-to-back daemon transactions: %v", i, err)
		}
	}
	stop()
	if err := <-busy; err != nil {
		t.Fatalf("the daemon's transactions: %v", err)
	}
}
