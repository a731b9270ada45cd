package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/compat/pickle"
)

// Handler paths of the two demo handlers. The Python one is the same file
// as tools.atp_demo.handler (integration/tools/atp_demo.py) imported under
// another name: atpd runs its Go port for the path tools.atp_demo.handler,
// whatever the routes say.
const (
	goDemo = "tools.atp_demo.handler"
	pyDemo = "integration.tools.atp_demo.handler"
)

// benchDB is one fresh database with the ATP tables.
type benchDB struct {
	dsn   string
	store djangodb.Store
}

func randomName() string {
	var b [6]byte
	rand.Read(b[:])
	return "atpd_bench_" + hex.EncodeToString(b[:])
}

// newDB makes an empty database of kind and runs `atpd migrate` on it (the
// tables are Django's, checked against Django's migrate by atpd's tests).
func (b *bench) newDB(ctx context.Context, kind string) (*benchDB, error) {
	var dsn string
	switch kind {
	case "postgres":
		name := randomName()
		if err := createPostgres(ctx, b.o.pgAdmin, name); err != nil {
			return nil, err
		}
		b.dropDBs = append(b.dropDBs, name)
		u, err := url.Parse(b.o.pgAdmin)
		if err != nil {
			return nil, err
		}
		u.Path = "/" + name
		dsn = u.String()
	case "sqlite", "sqlite-wal":
		dsn = "sqlite:" + filepath.Join(b.o.tmp, randomName()+".sqlite3")
	default:
		return nil, fmt.Errorf("unknown database kind %q", kind)
	}
	cmd := exec.CommandContext(ctx, b.o.atpd, "migrate", "--db", dsn, "--use-tz")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("atpd migrate %s: %w\n%s", djangodb.RedactDSN(dsn), err, out)
	}
	own := dsn
	if kind == "postgres" {
		// The bench's own sessions are told apart from the daemon's.
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("application_name", benchApp)
		u.RawQuery = q.Encode()
		own = u.String()
	}
	// sqlite-wal: the bench's store switches the file to WAL, and the
	// daemon, opened later, keeps the mode the file has.
	s, err := djangodb.Open(ctx, own, djangodb.Options{UseTZ: true, MaxQueueSize: 1 << 30, SQLiteWAL: kind == "sqlite-wal"})
	if err != nil {
		return nil, err
	}
	return &benchDB{dsn: dsn, store: s}, nil
}

func (d *benchDB) Close() { d.store.Close() }

func createPostgres(ctx context.Context, admin, name string) error {
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name)); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func dropPostgres(ctx context.Context, admin, name string) error {
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`)
	return err
}

// demoInput is what a producer stores for the demo's input (1, 2, 3, 4, 5).
func demoInput() (string, error) {
	return pickle.Encode([]any{int64(1), int64(2), int64(3), int64(4), int64(5)})
}

// load registers the demo type with handler and queues n tasks in one
// transaction (EnqueueMany: the rows of n Enqueue calls, past the queue
// limit Python producers keep to).
func (d *benchDB) load(ctx context.Context, handler string, n int) error {
	if _, err := d.store.RegisterType(ctx, djangodb.TypeSpec{Identifier: "SequenceSum", Handler: handler, Timeout: 600, TimeRet: -1, MaxRestart: 2}); err != nil {
		return err
	}
	in, err := demoInput()
	if err != nil {
		return err
	}
	tasks := make([]djangodb.NewTask, n)
	for i := range tasks {
		tasks[i] = djangodb.NewTask{Identifier: fmt.Sprintf("t%06d", i), Input: in}
	}
	_, err = djangodb.EnqueueMany(ctx, d.store, "SequenceSum", tasks, "")
	return err
}

// span returns the first SCHEDULED and the last FINISHED log time over all
// instances: the drain as the database recorded it, from the first claim
// to the last outcome, free of the bench's polling delay.
func (d *benchDB) span(ctx context.Context) (first, last time.Time, err error) {
	ins, err := d.store.Instances(ctx, djangodb.InstanceFilter{})
	if err != nil {
		return first, last, err
	}
	for _, in := range ins {
		recs, err := d.store.Log(ctx, in.ID)
		if err != nil {
			return first, last, err
		}
		for _, r := range recs {
			if r.Status == djangodb.Scheduled && (first.IsZero() || r.Time.Before(first)) {
				first = r.Time
			}
			if r.Status == djangodb.Finished && r.Time.After(last) {
				last = r.Time
			}
		}
	}
	return first, last, nil
}

// verify checks that every instance ran as the reference daemon runs the
// demo: log (1,""), (2,""), (3,""), (5,"") and the response "15.0".
func (d *benchDB) verify(ctx context.Context) error {
	ins, err := d.store.Instances(ctx, djangodb.InstanceFilter{})
	if err != nil {
		return err
	}
	for _, in := range ins {
		recs, err := d.store.Log(ctx, in.ID)
		if err != nil {
			return err
		}
		var got []string
		for i, r := range recs {
			got = append(got, fmt.Sprintf("(%d,%q)", r.Status, r.Message))
			if i > 0 && !r.Time.After(recs[i-1].Time) {
				return fmt.Errorf("instance %s: log times not increasing: %v", in.Identifier, recs)
			}
		}
		if s := strings.Join(got, ""); s != `(1,"")(2,"")(3,"")(5,"")` {
			return fmt.Errorf("instance %s: log %s, want the reference's (1,\"\")(2,\"\")(3,\"\")(5,\"\")", in.Identifier, s)
		}
		r, err := d.store.Response(ctx, in.ID)
		if err != nil {
			return fmt.Errorf("instance %s: %w", in.Identifier, err)
		}
		if string(r.Data) != "15.0" || r.MimeType != "text/plain" {
			return fmt.Errorf("instance %s: response %q %q, want \"15.0\" text/plain", in.Identifier, r.Data, r.MimeType)
		}
	}
	return nil
}

// benchApp is the application_name of the bench's own sessions.
const benchApp = "atpd-bench"

// connections counts the daemon's sessions on the database dbName: all
// client sessions but the bench's own.
func connections(ctx context.Context, admin, dbName string) (int, error) {
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' AND application_name <> $2`, dbName, benchApp).Scan(&n)
	return n, err
}
