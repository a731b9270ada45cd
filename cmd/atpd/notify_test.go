package main

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
		stdout string
	}{
		{[]string{"notify", "status"}, "is not installed"},
		{[]string{"notify", "install"}, "installed trigger " + djangodb.NotifyTrigger},
		{[]string{"notify", "install"}, "was already on processes_task"},
		{[]string{"notify", "status"}, "is installed"},
		{[]string{"notify", "remove"}, "removed trigger"},
		{[]string{"notify", "remove"}, "nothing to remove"},
		{[]string{"notify", "status"}, "is not installed"},
	}
	for _, st := range steps {
		code, stdout, stderr := runCLI(t, "", append(st.args, "--db", dsn)...)
		if code != 0 || !strings.Contains(stdout, st.stdout) {
			t.Fatalf("atpd %s: exit %d, stdout %q, stderr %q; want exit 0 and %q", strings.Join(st.args, " "), code, stdout, stderr, st.stdout)
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
		{"no subcommand argument", []string{"notify", "install", "extra"}, 1, "unknown command"},
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
