package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProc(t *testing.T) {
	cases := []struct {
		name   string
		script string
		await  string
		want   string
		code   int
		grep   []string
	}{
		{"stdout and exit status", "echo one; echo two; exit 3", `^tw`, "two", 3, []string{"one"}},
		{"stderr counts too", "echo err >&2; echo out", `^err$`, "err", 0, []string{"out"}},
		{"line after a pause", "sleep 0.1; echo late", `late`, "late", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Start(t, "sh", t.TempDir(), BaseEnv(), "/bin/sh", "-c", c.script)
			if got := p.WaitLine(c.await, 10*time.Second); got != c.want {
				t.Errorf("WaitLine(%q) = %q, want %q", c.await, got, c.want)
			}
			if code := p.Wait(10 * time.Second); code != c.code {
				t.Errorf("exit status %d, want %d", code, c.code)
			}
			if c.grep != nil {
				if got := p.Grep(c.grep[0]); !slices.Equal(got, c.grep) {
					t.Errorf("Grep(%q) = %q, want %q", c.grep[0], got, c.grep)
				}
			}
		})
	}
}

func TestBaseEnv(t *testing.T) {
	t.Setenv("ATPD_DB", "sqlite:x")
	t.Setenv("DJANGO_SETTINGS_MODULE", "x.settings")
	t.Setenv("E2E_DROPPED", "1")
	t.Setenv("E2E_KEPT", "1")
	env := BaseEnv("E2E_DROPPED")
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "ATPD_DB" || k == "DJANGO_SETTINGS_MODULE" || k == "E2E_DROPPED" {
			t.Errorf("BaseEnv kept %s", kv)
		}
	}
	for _, want := range []string{"E2E_KEPT=1", "PYTHONDONTWRITEBYTECODE=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("BaseEnv lacks %s", want)
		}
	}
}

func TestRebind(t *testing.T) {
	cases := []struct {
		pg   bool
		in   string
		want string
	}{
		{false, "a = ? AND b = ?", "a = ? AND b = ?"},
		{true, "a = ? AND b = ?", "a = $1 AND b = $2"},
		{true, "no placeholders", "no placeholders"},
	}
	for _, c := range cases {
		if got := (&DB{PG: c.pg}).Rebind(c.in); got != c.want {
			t.Errorf("Rebind(%q) on pg=%t = %q, want %q", c.in, c.pg, got, c.want)
		}
	}
}
