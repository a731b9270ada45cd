package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// BaseEnv is the environment without anything that would configure atpd
// or Django behind the test's back (ATPD_*, DJANGO_SETTINGS_MODULE,
// PYTHONPATH and the extra variables named in drop).
func BaseEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ATPD_") || k == "DJANGO_SETTINGS_MODULE" || k == "PYTHONPATH" || slices.Contains(drop, k) {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1")
}

// WaitFor polls cond every interval until it holds or timeout passes;
// describe says what was awaited and the state last seen, for the failure
// message. The tests poll the database, which offers no signal to wait on.
func WaitFor(t testing.TB, timeout, interval time.Duration, describe func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, describe())
		}
		time.Sleep(interval)
	}
}
