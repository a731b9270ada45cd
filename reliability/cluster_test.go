package reliability

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/internal/testdb"
)

// pgBinDir holds initdb and pg_ctl of the machine's PostgreSQL 15;
// ATPD_TEST_PG_BIN overrides it.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgCluster is a private PostgreSQL server in a temporary directory, for
// tests that stop and start the server: the machine's shared server on 5432
// serves other tests and must never be restarted.
type pgCluster struct {
	t     *testing.T
	bin   string
	dir   string // owned by the server's user: data/, the socket, the log
	data  string
	port  int
	runAs string // "postgres" when the test runs as root, which PostgreSQL refuses
	// password, when set, is the postgres role's; the server then asks
	// every TCP client for it (scram-sha-256).
	password string
}

// unavailable skips the test locally and fails it in CI, as testdb does.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("reliability: %s (CI=true: prerequisites must be installed)", msg)
	}
	t.Skipf("reliability: %s; skipping", msg)
}

func newPGCluster(t *testing.T) *pgCluster { return newPGClusterAuth(t, "") }

// newPGClusterAuth makes a cluster whose postgres role has password, and
// which requires it, unless password is empty (trust).
func newPGClusterAuth(t *testing.T, password string) *pgCluster {
	t.Helper()
	c := &pgCluster{t: t, bin: pgBinDir, password: password}
	if b := os.Getenv("ATPD_TEST_PG_BIN"); b != "" {
		c.bin = b
	}
	for _, tool := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(c.bin, tool)); err != nil {
			unavailable(t, "no %s in %s for a private PostgreSQL cluster: %v", tool, c.bin, err)
		}
	}
	// Not t.TempDir(): its 0700 parents keep the server's user out.
	dir, err := os.MkdirTemp("", "atpd-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir, c.data = dir, filepath.Join(dir, "data")
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "running as root and there is no postgres user to run a cluster as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		c.runAs = "postgres"
	}
	c.port = freePort(t)
	initdb := []string{"-D", c.data, "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"}
	if password == "" {
		initdb = append(initdb, "-A", "trust")
	} else {
		pwfile := filepath.Join(dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		initdb = append(initdb, "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile)
	}
	c.run("initdb", initdb...)
	conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n", c.port, c.dir)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.start()
	t.Cleanup(func() {
		// Best effort: the directory goes anyway, and a server left
		// running would hold the port until the machine restarts.
		c.ctl("stop", "-m", "immediate")
	})
	return c
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *pgCluster) command(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, tool)
	if c.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (c *pgCluster) run(tool string, args ...string) {
	c.t.Helper()
	if out, err := c.command(tool, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
}

func (c *pgCluster) ctl(args ...string) error {
	args = append([]string{"-D", c.data, "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60"}, args...)
	out, err := c.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *pgCluster) start() {
	c.t.Helper()
	if err := c.ctl("start"); err != nil {
		c.t.Fatal(err)
	}
}

// stop shuts the server down the way an operator's restart does: fast mode
// rolls back open transactions and closes every connection.
func (c *pgCluster) stop() {
	c.t.Helper()
	if err := c.ctl("stop", "-m", "fast"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *pgCluster) url(db string) string {
	return c.urlWith(c.password, db)
}

// urlWith returns the URL of database db with the given password.
func (c *pgCluster) urlWith(password, db string) string {
	u := url.URL{Scheme: "postgres", Host: fmt.Sprintf("127.0.0.1:%d", c.port), Path: "/" + db, RawQuery: "sslmode=disable"}
	if password == "" {
		u.User = url.User("postgres")
	} else {
		u.User = url.UserPassword("postgres", password)
	}
	return u.String()
}

// migratedDB creates a database in the cluster and lets Django's migrate of
// integration/ make the tables, as testdb does on the shared server.
func (c *pgCluster) migratedDB(name string, cfg testdb.Config) string {
	c.t.Helper()
	admin, err := sql.Open("postgres", c.url("postgres"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		c.t.Fatalf("create database %s: %v", name, err)
	}
	dsn := c.url(name)
	cmd := exec.Command(testdb.Python(c.t), "manage.py", "migrate", "--no-input", "-v", "0")
	cmd.Dir = filepath.Join(testdb.RepoRoot(c.t), "integration")
	cmd.Env = testdb.DjangoEnv(c.t, dsn, cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("django migrate of the private cluster: %v\n%s", err, out)
	}
	return dsn
}
