package djangodb

import (
	"context"
	"database/sql"
	"fmt"
)

// pgDjangoMigrations is Django 3.2's DDL for its migration recorder.
const pgDjangoMigrations = `CREATE TABLE IF NOT EXISTS "django_migrations" ("id" serial NOT NULL PRIMARY KEY, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, "applied" timestamp with time zone NOT NULL)`

// pgMigrations are the processes app's migrations pgSchema applies; Django's
// migrate skips those django_migrations lists.
var pgMigrations = []string{"0001_initial", "0002_auto_20181203_0914"}

// pgSchema is `manage.py sqlmigrate processes 0001_initial` on PostgreSQL
// (Django 3.2), statement for statement and in Django's order, so that the
// constraint and index names, column order and deferrability are exactly
// what a Django-migrated database has; 0002_auto_20181203_0914 changes no
// DDL there. The tests compare the two catalogs.
var pgSchema = []string{
	`CREATE TABLE "processes_instance" ("id" serial NOT NULL PRIMARY KEY, "identifier" varchar(64) NOT NULL, "timeInsert" timestamp with time zone NOT NULL, "timeUpdate" timestamp with time zone NOT NULL, "status" integer NOT NULL)`,
	`CREATE TABLE "processes_type" ("id" serial NOT NULL PRIMARY KEY, "identifier" varchar(64) NOT NULL UNIQUE, "handler" varchar(1024) NOT NULL, "maxstart" integer NOT NULL, "timeout" double precision NOT NULL, "timeret" double precision NOT NULL)`,
	`CREATE TABLE "processes_task" ("id" serial NOT NULL PRIMARY KEY, "time" timestamp with time zone NOT NULL, "lock" bigint NOT NULL, "instance_id" integer NOT NULL)`,
	`CREATE TABLE "processes_response" ("id" serial NOT NULL PRIMARY KEY, "response" text NOT NULL, "mimeType" text NOT NULL, "instance_id" integer NOT NULL UNIQUE)`,
	`CREATE TABLE "processes_logrecord" ("id" serial NOT NULL PRIMARY KEY, "time" timestamp with time zone NOT NULL, "status" integer NOT NULL, "message" text NOT NULL, "instance_id" integer NOT NULL)`,
	`ALTER TABLE "processes_instance" ADD COLUMN "type_id" integer NOT NULL CONSTRAINT "processes_instance_type_id_7e071cb7_fk_processes_type_id" REFERENCES "processes_type"("id") DEFERRABLE INITIALLY DEFERRED`,
	`SET CONSTRAINTS "processes_instance_type_id_7e071cb7_fk_processes_type_id" IMMEDIATE`,
	`CREATE TABLE "processes_input" ("id" serial NOT NULL PRIMARY KEY, "input" text NOT NULL, "instance_id" integer NOT NULL UNIQUE)`,
	`ALTER TABLE "processes_instance" ADD CONSTRAINT "processes_instance_identifier_type_id_1cebb9ab_uniq" UNIQUE ("identifier", "type_id")`,
	`CREATE INDEX "processes_type_identifier_88d710ab_like" ON "processes_type" ("identifier" varchar_pattern_ops)`,
	`ALTER TABLE "processes_task" ADD CONSTRAINT "processes_task_instance_id_3e90949f_fk_processes_instance_id" FOREIGN KEY ("instance_id") REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED`,
	`CREATE INDEX "processes_task_instance_id_3e90949f" ON "processes_task" ("instance_id")`,
	`ALTER TABLE "processes_response" ADD CONSTRAINT "processes_response_instance_id_da66f037_fk_processes" FOREIGN KEY ("instance_id") REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED`,
	`ALTER TABLE "processes_logrecord" ADD CONSTRAINT "processes_logrecord_instance_id_0b7784be_fk_processes" FOREIGN KEY ("instance_id") REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED`,
	`CREATE INDEX "processes_logrecord_instance_id_0b7784be" ON "processes_logrecord" ("instance_id")`,
	`CREATE INDEX "processes_instance_type_id_7e071cb7" ON "processes_instance" ("type_id")`,
	`ALTER TABLE "processes_input" ADD CONSTRAINT "processes_input_instance_id_aef5bea2_fk_processes_instance_id" FOREIGN KEY ("instance_id") REFERENCES "processes_instance" ("id") DEFERRABLE INITIALLY DEFERRED`,
}

func (s *pgStore) Migrate(ctx context.Context) (bool, error) {
	var created bool
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		created = false
		// Two atpd processes starting at once must not both create.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock)); err != nil {
			return err
		}
		// Tables made by Django or an earlier run are left exactly as they are.
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT to_regclass('processes_type') IS NOT NULL`).Scan(&exists); err != nil {
			return err
		}
		if exists {
			// Complete tables are left alone; partial ones are named, not
			// patched: what else was changed by hand is unknown.
			return s.checkSchema(ctx)
		}
		if _, err := tx.ExecContext(ctx, pgDjangoMigrations); err != nil {
			return err
		}
		for _, stmt := range pgSchema {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		for _, name := range pgMigrations {
			if _, err := tx.ExecContext(ctx, `INSERT INTO django_migrations (app, name, applied)
				SELECT 'processes', $1::varchar, $2 WHERE NOT EXISTS (SELECT 1 FROM django_migrations WHERE app = 'processes' AND name = $1)`,
				name, processClock.now()); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("djangodb: migrate %s: %w", s.describe, err)
	}
	return created, nil
}
