package atpdcmd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// silentServer accepts TCP connections and never answers, like a
// PostgreSQL host that is up but stuck; it returns the port.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestUnansweringDatabase: a PostgreSQL host that accepts connections and
// never answers neither hangs an operator command (the connection attempt
// is bounded by connect_timeout, 10 s unless the DSN says otherwise) nor
// keeps the daemon from honouring SIGINT during start-up.
func TestUnansweringDatabase(t *testing.T) {
	port := silentServer(t)
	dsn := "postgres://postgres@127.0.0.1:" + port + "/x?sslmode=disable"

	done := make(chan struct{})
	var code int
	var stderr string
	go func() {
		defer close(done)
		code, _, stderr = runBin(t, baseEnv(), "", "tasks", "--db", dsn+"&connect_timeout=1")
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("atpd tasks on a silent server did not return")
	}
	if code != 1 || !strings.Contains(stderr, "open database") || !strings.Contains(stderr, "timeout") {
		t.Errorf("atpd tasks: exit %d, stderr %q; want 1 and a timeout", code, stderr)
	}

	p := startAtpd(t, "silent", noPythonEnv(t), "--db", dsn)
	p.waitLine(`ATPD: task pick-up and writes`, startTimeout)
	p.signal(syscall.SIGINT)
	if code := p.wait(5 * time.Second); code != 130 {
		t.Errorf("daemon exit %d after SIGINT during start-up, want 130", code)
	}
	p.waitLine(`start-up interrupted by a signal`, time.Second)
}

// TestPartialSchema: on a database whose ATP tables are only partly there
// (processes_response dropped after migrate), the daemon refuses to start
// and says what is missing, and `atpd migrate` names it instead of
// reporting nothing to do; on both databases.
func TestPartialSchema(t *testing.T) {
	for _, k := range bothDBs {
		t.Run(k.name, func(t *testing.T) {
			db := newE2EDB(t, k)
			db.Exec(`DROP TABLE processes_response`)
			p := startAtpd(t, "partial", noPythonEnv(t), db.dbArgs()...)
			if code := p.wait(time.Minute); code != 1 {
				t.Errorf("daemon exit %d on a partial schema, want 1", code)
			}
			p.waitLine(`ATP tables are not complete.*missing table processes_response`, time.Second)
			code, stdout, stderr := runBin(t, baseEnv(), "", append([]string{"migrate"}, db.dbArgs()...)...)
			if code == 0 || !strings.Contains(stderr, "missing table processes_response") {
				t.Errorf("atpd migrate on a partial schema: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}

// TestReadOnlyRole: a PostgreSQL role that may read the ATP tables but not
// write them gets one line at start-up and exit 1, not a daemon that says
// "started" and fails every write; the line does not suggest migrating.
func TestReadOnlyRole(t *testing.T) {
	db := newE2EDB(t, pgUTC)
	role := "atpd_ro_" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))
	db.Exec(`DROP ROLE IF EXISTS ` + role)
	db.Exec(`CREATE ROLE ` + role + ` LOGIN`)
	t.Cleanup(func() {
		db.Exec(`DROP OWNED BY ` + role)
		db.Exec(`DROP ROLE IF EXISTS ` + role)
	})
	db.Exec(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ` + role)
	args := db.dbArgs()
	for i, a := range args {
		if i > 0 && args[i-1] == "--db" {
			args[i] = strings.Replace(a, "postgres://postgres@", "postgres://"+role+"@", 1)
		}
	}
	p := startAtpd(t, "readonly", noPythonEnv(t), args...)
	if code := p.wait(time.Minute); code != 1 {
		t.Fatalf("exit %d with a read-only role, want 1", code)
	}
	line := p.waitLine(`cannot be written`, time.Second)
	if !strings.Contains(line, "permission denied") || strings.Contains(line, "migrate") {
		t.Errorf("start-up line %q: want the permission error and no migrate hint", line)
	}
	if len(p.Grep(`ATPD: started`)) != 0 {
		t.Error("the daemon said it started")
	}
}

// TestMissingSQLiteFile: a daemon pointed at an SQLite file that does not
// exist refuses, names `atpd migrate`, and leaves no empty file behind,
// as the operator commands do.
func TestMissingSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo", "atpd.sqlite3")
	p := startAtpd(t, "missing", noPythonEnv(t), "--db", "sqlite:"+path)
	if code := p.wait(time.Minute); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	p.waitLine(`no such file.*atpd migrate --db sqlite:`, time.Second)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a file was left at %s: %v", path, err)
	}
	code, _, stderr := runBin(t, baseEnv(), "", "tasks", "--db", "sqlite:"+path)
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("atpd tasks: exit %d, %q", code, stderr)
	}
}

// TestEnqueueTooLarge: `atpd enqueue` refuses an input the daemon's
// max_input_size would fail, and queues nothing.
func TestEnqueueTooLarge(t *testing.T) {
	db := newE2EDB(t, sqliteUTC)
	db.producer("register", "Big", "tools.atp_demo.handler")
	big := `["` + strings.Repeat("x", 4096) + `"]`
	env := append(baseEnv(), "ATPD_MAX_INPUT_SIZE=2048")
	code, _, stderr := runBin(t, env, big, append([]string{"enqueue", "Big", "big", "--input-json", "-"}, db.dbArgs()...)...)
	if code == 0 || !strings.Contains(stderr, "more than max_input_size (2048)") {
		t.Errorf("enqueue of a too large input: exit %d, %q", code, stderr)
	}
	if n := db.QueryInt(`SELECT count(*) FROM processes_instance`); n != 0 {
		t.Errorf("%d instances after the refused enqueue", n)
	}
	if code, _, stderr := runBin(t, env, "[1, 2]", append([]string{"enqueue", "Big", "small", "--input-json", "-"}, db.dbArgs()...)...); code != 0 {
		t.Errorf("enqueue of a small input: exit %d, %q", code, stderr)
	}
}
