package atpdcmd

import (
	"strings"
	"testing"

	"github.com/eoxserver/atpd/compat/djangodb"
	"github.com/eoxserver/atpd/internal/testdb"
)

func TestNotifyCommand(t *testing.T) {
	dsn := testdb.Postgres(t, testdb.Config{UseTZ: true})
	steps := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"notify", "status"}, 1, "is not installed"},
		{[]string{"notify", "status", "--json"}, 1, `"installed": false`},
		{[]string{"notify", "install"}, 0, "installed trigger " + djangodb.NotifyTrigger},
		{[]string{"notify", "install", "--json"}, 0, `"changed": false`},
		{[]string{"notify", "status"}, 0, "is installed"},
		{[]string{"notify", "status", "--json"}, 0, `"installed": true`},
		{[]string{"notify", "remove", "--json"}, 0, `"changed": true`},
		{[]string{"notify", "remove"}, 0, "nothing to remove"},
		{[]string{"notify", "status"}, 1, "is not installed"},
	}
	for _, st := range steps {
		// The binary: the exit status is what a script tests.
		code, stdout, stderr := runBin(t, nil, "", append(st.args, "--db", dsn)...)
		if code != st.code || !strings.Contains(stdout, st.stdout) {
			t.Fatalf("atpd %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(st.args, " "), code, stdout, stderr, st.code, st.stdout)
		}
		if strings.Contains(stdout, "postgres://") && !strings.Contains(stdout, djangodb.RedactDSN(dsn)) {
			t.Errorf("stdout names the database unredacted: %q", stdout)
		}
	}
}

func TestNotifyCommandErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"sqlite", []string{"notify", "install", "--db", testdb.SQLite(t, testdb.Config{UseTZ: true})}, 1, "only PostgreSQL has LISTEN/NOTIFY"},
		{"no subcommand argument", []string{"notify", "install", "extra"}, 2, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("atpd %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.stderr)
			}
		})
	}
}
