package djangodb

import (
	"context"
	"database/sql"
)

// sqliteMigrations are the migrations of the processes app whose end state
// sqliteSchema is; Django's migrate skips what django_migrations lists.
var sqliteMigrations = []string{"0001_initial", "0002_auto_20181203_0914"}

// sqliteDjangoMigrations is Django 3.2's DDL for its migration recorder.
const sqliteDjangoMigrations = `CREATE TABLE "django_migrations" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, "applied" datetime NOT NULL)`

// sqliteSchema is the end state of `manage.py migrate` for the processes app
// on SQLite, statement for statement as sqlite_master holds it after Django
// ran 0001_initial (which creates processes_instance without type_id and then
// rebuilds it) and 0002_auto_20181203_0914 (which rebuilds processes_input and
// processes_response, moving them to the end); the rebuilt text is what is
// written here. The order follows
// Django's, so that sqlite_master lists the objects in the same order.
// Django 3.2 and later write the same text; the tests compare it with a
// Django-migrated file byte for byte.
var sqliteSchema = []string{
	`CREATE TABLE "processes_type" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "identifier" varchar(64) NOT NULL UNIQUE, "handler" varchar(1024) NOT NULL, "maxstart" integer NOT NULL, "timeout" real NOT NULL, "timeret" real NOT NULL)`,
	`CREATE TABLE "processes_task" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "time" datetime NOT NULL, "lock" bigint NOT NULL, "instance_id" integer NOT NULL REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED)`,
	`CREATE TABLE "processes_logrecord" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "time" datetime NOT NULL, "status" integer NOT NULL, "message" text NOT NULL, "instance_id" integer NOT NULL REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED)`,
	`CREATE TABLE "processes_instance" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "identifier" varchar(64) NOT NULL, "timeInsert" datetime NOT NULL, "timeUpdate" datetime NOT NULL, "status" integer NOT NULL, "type_id" integer NOT NULL REFERENCES "processes_type" ("id") DEFERRABLE INITIALLY DEFERRED)`,
	`CREATE INDEX "processes_task_instance_id_3e90949f" ON "processes_task" ("instance_id")`,
	`CREATE INDEX "processes_logrecord_instance_id_0b7784be" ON "processes_logrecord" ("instance_id")`,
	`CREATE INDEX "processes_instance_type_id_7e071cb7" ON "processes_instance" ("type_id")`,
	`CREATE UNIQUE INDEX "processes_instance_identifier_type_id_1cebb9ab_uniq" ON "processes_instance" ("identifier", "type_id")`,
	`CREATE TABLE "processes_input" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "input" text NOT NULL, "instance_id" integer NOT NULL UNIQUE REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED)`,
	`CREATE TABLE "processes_response" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "response" text NOT NULL, "mimeType" text NOT NULL, "instance_id" integer NOT NULL UNIQUE REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED)`,
}

func (s *sqliteStore) Migrate(ctx context.Context) (bool, error) {
	var created bool
	err := s.write(ctx, "migrate "+s.Describe(), func(ctx context.Context, tx *sql.Tx) error {
		has := func(name string) (bool, error) {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n)
			return n > 0, err
		}
		// A file whose ATP tables exist, made by Django or by an earlier
		// run, is left exactly as it is.
		if ok, err := has("processes_type"); err != nil {
			return err
		} else if ok {
			// Complete tables are left alone; partial ones are named,
			// not patched: what else was changed by hand is unknown.
			return s.checkSchema(ctx)
		}
		ok, err := has("django_migrations")
		if err != nil {
			return err
		}
		if !ok {
			if _, err := tx.ExecContext(ctx, sqliteDjangoMigrations); err != nil {
				return err
			}
		}
		for _, stmt := range sqliteSchema {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return err
			}
		}
		for _, name := range sqliteMigrations {
			if _, err := tx.ExecContext(ctx, `INSERT INTO django_migrations (app, name, applied)
				SELECT 'processes', ?, ? WHERE NOT EXISTS (SELECT 1 FROM django_migrations WHERE app = 'processes' AND name = ?)`,
				name, s.tf.format(processClock.now()), name); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	return created, err
}
