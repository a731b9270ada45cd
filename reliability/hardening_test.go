package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

// TestAllowHandlers: with an allow list, task types whose dotted path is
// outside it fail without their handler running (the ledger proves it),
// whatever a database writer put into processes_type; allowed paths run.
// The list is given as the issue spells it (--allow-handlers with commas)
// and as cmd/atpd first did (repeated --allow-handler); exact paths and
// prefixes ending in "." both work.
func TestAllowHandlers(t *testing.T) {
	cases := []struct {
		name    string
		flags   []string
		allowed []string // handler paths that must run
		denied  []string // handler paths that must not
	}{
		{"exact paths, --allow-handlers a,b",
			[]string{"--allow-handlers", "tools.ledger.handler,tools.atp_demo.handler"},
			[]string{"tools.ledger.handler"},
			[]string{"tools.ledger.other", "os.system", "tools.ledgerX.handler"}},
		{"prefix, repeated --allow-handler",
			[]string{"--allow-handler", "tools.", "--allow-handler", "nothing.else"},
			[]string{"tools.ledger.handler", "tools.ledger.other"},
			[]string{"os.system", "subprocess.call", "toolsX.ledger.handler"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := newDB(t, pgUTC)
			led := newLedger(t)
			input := led.input(0)
			types := map[string]string{}
			for i, path := range append(append([]string(nil), c.allowed...), c.denied...) {
				typ := fmt.Sprintf("T%d", i)
				types[typ] = path
				// Straight into the table, as anyone with write access
				// to the database could.
				db.Exec(`INSERT INTO processes_type (identifier, handler, maxstart, timeout, timeret) VALUES (?, ?, 1, 60, -1)`, typ, path)
				db.bulkEnqueue(typ, "x", 1, input)
			}
			a := db.startAtpd("atpd", "atpd", append([]string{"-n", "2"}, c.flags...)...)
			db.waitTerminal(len(types), time.Minute)
			a.Stop(drainTimeout)

			logs := db.logs()
			for typ, path := range types {
				id := db.instanceID(typ, "x1")
				recs := logs[id]
				last := recs[len(recs)-1]
				ran := led.read().byID[id]
				if slices.Contains(c.allowed, path) {
					if last.Status != djangodb.Finished || ran != 1 {
						t.Errorf("allowed %s: ended %v after %d runs, want FINISHED after 1", path, last, ran)
					}
					continue
				}
				want := "handler " + path + " is not in allow_handlers: no handler"
				if last.Status != djangodb.Failed || last.Message != want || ran != 0 {
					t.Errorf("denied %s: ended %v after %d runs, want FAILED %q after none", path, last, ran, want)
				}
			}
			db.checkConsistent()
		})
	}
}

// checkNoSecret fails the test if any line a process printed contains the
// secret.
func checkNoSecret(t *testing.T, p *proc, secret string) {
	t.Helper()
	for _, l := range p.Lines() {
		if strings.Contains(l, secret) {
			t.Errorf("%s printed the password: %s", p.Name, l)
		}
	}
}

// TestPasswordsNeverLogged: database passwords appear in no line atpd
// prints (stdout or stderr, text or JSON, start-up failure or run-time
// error): a DSN whose server refuses the connection, a password in the
// query string, a Django settings module's PASSWORD, a server that rejects
// the password, and a daemon that runs with a correct password while its
// sessions are terminated under it.
func TestPasswordsNeverLogged(t *testing.T) {
	const secret = "S3cr3t-pw-4711"
	dead := freePort(t) // nothing listens there
	settingsDir := t.TempDir()
	settings := fmt.Sprintf(`DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "atpd",
    "USER": "atpd", "PASSWORD": %q, "HOST": "127.0.0.1", "PORT": "%d"}}
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "x"
INSTALLED_APPS = []
`, secret, dead)
	if err := os.WriteFile(filepath.Join(settingsDir, "pwsettings.py"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}

	cluster := newPGClusterAuth(t, secret)
	cases := []struct {
		name string
		args func(t *testing.T) []string
		// want is a line atpd must print, so that the test knows it saw
		// the failure it meant to cause.
		want string
		// code is the exit status: 1 for a start-up failure, 2 for a
		// value the configuration check refuses (a usage error).
		code int
	}{
		{"refused connection, password in the URL", func(t *testing.T) []string {
			return []string{"--db", fmt.Sprintf("postgres://atpd:%s@127.0.0.1:%d/atpd", secret, dead)}
		}, `connection refused`, 1},
		{"password in the query string", func(t *testing.T) []string {
			return []string{"--db", fmt.Sprintf("postgres://127.0.0.1:%d/atpd?user=atpd&password=%s", dead, secret)}
		}, `connection refused`, 1},
		{"key=value connection string (refused by the config check)", func(t *testing.T) []string {
			return []string{"--db", fmt.Sprintf("host=127.0.0.1 port=%d user=atpd password=%s", dead, secret)}
		}, `is not postgres://`, 2},
		{"django settings PASSWORD", func(t *testing.T) []string {
			return []string{"-s", "pwsettings", "-p", settingsDir, "--python", testdb.Python(t)}
		}, `connection refused`, 1},
		{"wrong password", func(t *testing.T) []string {
			return []string{"--db", cluster.urlWith(secret+"-wrong", "postgres")}
		}, `password authentication failed`, 1},
	}
	for _, format := range []string{"text", "json"} {
		for _, c := range cases {
			t.Run(format+"/"+c.name, func(t *testing.T) {
				p := startProc(t, "atpd", t.TempDir(), baseEnv(), atpdBin, append(c.args(t), "--log-format", format)...)
				if code := p.Wait(time.Minute); code != c.code {
					t.Errorf("exit code %d, want %d", code, c.code)
				}
				p.WaitLine(c.want, time.Second)
				checkNoSecret(t, p, secret)
			})
		}
	}

	t.Run("run-time errors", func(t *testing.T) {
		dsn := cluster.migratedDB("atpd_pw", pgUTC.cfg)
		if !strings.Contains(dsn, secret) {
			t.Fatalf("the DSN %s carries no password", djangodb.RedactDSN(dsn))
		}
		db := openDB(t, dsn, true, pgUTC.cfg)
		led := newLedger(t)
		db.register("Ledger", ledgerHandler, 60, 2)
		n := 100
		db.bulkEnqueue("Ledger", "t", n, led.input(0.01))
		a := db.startAtpd("atpd", "atpd", "-n", "2")
		killer := db.terminate(t, 50*time.Millisecond, endedTasks)
		db.waitTerminal(n, 3*time.Minute)
		// The store reruns a transaction whose session was ended before
		// COMMIT without a word, so the terminations alone may log
		// nothing. A short outage surely does: every claim fails to
		// connect until the server is back.
		killer.stop()
		cluster.stop()
		a.WaitLine(`retrying`, time.Minute)
		cluster.start()
		a.Stop(drainTimeout)
		if len(a.Grep(`retrying`)) == 0 {
			t.Error("no run-time error was logged: the test proved nothing")
		}
		checkNoSecret(t, a, secret)
		db.checkExactlyOnce(led, n)
	})
}
