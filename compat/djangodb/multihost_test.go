package djangodb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// TestNormalizePostgresDSN: libpq's multi-host URLs become the host= and
// port= lists lib/pq reads; everything else is left alone.
func TestNormalizePostgresDSN(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "postgres://u:p@db1:5432/atp", want: "postgres://u:p@db1:5432/atp"},
		{in: "postgres://u@db1/atp?sslmode=disable", want: "postgres://u@db1/atp?sslmode=disable"},
		{in: "sqlite:/x", want: "sqlite:/x"},
		{in: "host=db1,db2 dbname=atp", want: "host=db1,db2 dbname=atp"},
		{in: "postgres:///atp?host=db1,db2&port=1,2", want: "postgres:///atp?host=db1,db2&port=1,2"},
		{
			in:   "postgres://u:p%40ss@db1:5432,db2:5433/atp?target_session_attrs=read-write",
			want: "postgres://u:p%40ss@/atp?host=db1%2Cdb2&port=5432%2C5433&target_session_attrs=read-write",
		},
		{in: "postgresql://db1,db2/atp", want: "postgresql:///atp?host=db1%2Cdb2"},
		{in: "postgres://db1,db2:6000/atp", want: "postgres:///atp?host=db1%2Cdb2&port=5432%2C6000"},
		{in: "postgres://db1,db2/atp?port=6000", want: "postgres:///atp?host=db1%2Cdb2&port=6000"},
		{in: "postgres://[::1]:5432,10.0.0.2/atp", want: "postgres:///atp?host=%3A%3A1%2C10.0.0.2&port=5432%2C5432"},
		{in: "postgres://db1,db2", want: "postgres://?host=db1%2Cdb2"},
		{in: "postgres://db1,,db2/atp", err: "empty host"},
		{in: "postgres://db1:x,db2/atp", err: "not a number"},
		{in: "postgres://db1,::1/atp", err: "brackets"},
		{in: "postgres://db1,db2/atp?host=db3", err: "both"},
		{in: "postgres://db1:1,db2/atp?port=6000", err: "both"},
	} {
		got, err := djangodb.NormalizePostgresDSN(c.in)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("NormalizePostgresDSN(%q) = %q, %v; want an error with %q", c.in, got, err, c.err)
			}
		case err != nil || got != c.want:
			t.Errorf("NormalizePostgresDSN(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	// What comes out is what lib/pq takes: one config per host.
	norm, err := djangodb.NormalizePostgresDSN("postgres://u@db1:5432,db2:5433/atp?target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pq.NewConfig(norm)
	if err != nil {
		t.Fatalf("lib/pq refuses %s: %v", norm, err)
	}
	if cfg.Host != "db1" || cfg.Port != 5432 || len(cfg.Multi) != 1 || cfg.Multi[0].Host != "db2" || cfg.Multi[0].Port != 5433 ||
		cfg.TargetSessionAttrs != pq.TargetSessionAttrsReadWrite {
		t.Errorf("lib/pq reads %s as %s:%d + %+v, tsa %q", norm, cfg.Host, cfg.Port, cfg.Multi, cfg.TargetSessionAttrs)
	}
}

// deadPort returns a local port nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestOpenMultiHost: a store opened on a libpq multi-host URL whose first
// host is down connects to the next one, for the pool (a write) and for the
// LISTEN connection alike.
func TestOpenMultiHost(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	cfg := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, cfg)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	multi := strings.Replace(u.String(), "@"+u.Host+"/",
		"@127.0.0.1:"+strconv.Itoa(deadPort(t))+","+u.Hostname()+":"+port+"/", 1)
	if multi == u.String() {
		t.Fatalf("cannot make a multi-host URL of %s", djangodb.RedactDSN(dsn))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := djangodb.Open(ctx, multi, testdb.Options(cfg))
	if err != nil {
		t.Fatalf("open %s: %v", djangodb.RedactDSN(multi), err)
	}
	defer s.Close()
	if _, err := s.RegisterType(ctx, djangodb.TypeSpec{Identifier: "HA", Handler: "x.y"}); err != nil {
		t.Fatalf("write through the second host: %v", err)
	}
	l, ok := s.(djangodb.Listener)
	if !ok {
		t.Fatal("the PostgreSQL store is no Listener")
	}
	woken := make(chan struct{}, 1)
	lctx, lcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(lctx, func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		}, nil)
	}()
	select {
	case <-woken:
	case err := <-done:
		t.Fatalf("LISTEN through the second host: %v", err)
	case <-ctx.Done():
		t.Fatal("LISTEN through the second host never connected")
	}
	lcancel()
	if err := <-done; err != nil {
		t.Errorf("Listen: %v", err)
	}
}

// TestReadOnlyServerIsConnectionLost: a write refused because the session
// is read-only (what a demoted primary answers: SQLSTATE 25006) counts as a
// lost connection, so that the store drops it and its retry lands on the
// primary; the store's own errors keep the code.
func TestReadOnlyServerIsConnectionLost(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	cfg := testdb.Config{UseTZ: true}
	dsn := testdb.Postgres(t, cfg)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM processes_task`)
	tx.Rollback()
	var pe *pq.Error
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("write in a read-only transaction: %v; want SQLSTATE 25006", err)
	}
	if !djangodb.ConnectionLost(err) || !djangodb.Transient(err) {
		t.Errorf("25006: ConnectionLost %v, Transient %v; want both", djangodb.ConnectionLost(err), djangodb.Transient(err))
	}

	// A store's writes are transactions that begin READ WRITE, which a
	// primary grants whatever the session's default, so no session setting
	// makes a primary refuse them: only a real standby does, which
	// TestPostgresFailover (reliability/) checks with one.
}

// TestRedactMultiHostDSN: a multi-host URL keeps no password in logs.
func TestRedactMultiHostDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:secret@db1:5432,db2:5433/atp?target_session_attrs=read-write",
		"postgres://u:secret@/atp?host=db1%2Cdb2&port=5432%2C5433",
	} {
		if got := djangodb.RedactDSN(dsn); strings.Contains(got, "secret") {
			t.Errorf("RedactDSN(%q) = %q", dsn, got)
		}
	}
}

// TestStandbyRefusalIsConnectionLost: a standby refuses BEGIN ... READ
// WRITE with 0A000 from the check of transaction_read_only; that counts as
// a lost connection, other unsupported features stay permanent.
func TestStandbyRefusalIsConnectionLost(t *testing.T) {
	standby := &pq.Error{Code: "0A000", Message: "cannot set transaction read-write mode during recovery", Routine: "call_bool_check_hook"}
	translated := &pq.Error{Code: "0A000", Message: "…", Routine: "call_bool_check_hook"}
	other := &pq.Error{Code: "0A000", Message: "cannot use subquery in index predicate", Routine: "transformSubLink"}
	for _, c := range []struct {
		err  error
		lost bool
	}{{standby, true}, {fmt.Errorf("wrapped: %w", translated), true}, {other, false}} {
		if got := djangodb.ConnectionLost(c.err); got != c.lost {
			t.Errorf("ConnectionLost(%v) = %v, want %v", c.err, got, c.lost)
		}
		if got := djangodb.Transient(c.err); got != c.lost {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.lost)
		}
	}
}
