package main

// Tests of the operator-facing surface through the built binary: version,
// usage errors, validation, flag names, JSON schemas and messages, as an
// operator's shell sees them (exit status, stdout, stderr).

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runBin runs the atpd binary with args in a fresh directory, env
// (baseEnv when nil) and stdin, and returns its exit status and output.
func runBin(t *testing.T, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if env == nil {
		env = baseEnv()
	}
	cmd := exec.Command(atpdBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("atpd %s: still running after 2 minutes", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("atpd %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errOut.String()
}

// TestVersion: `atpd version`, its JSON and --version say which atpd this
// is, from the build information the Go toolchain recorded.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^atpd \S+ \(revision \S+, \S+, go1\.\d+\S* \w+/\w+\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runBin(t, nil, "", args...)
		if code != 0 || !line.MatchString(stdout) || stderr != "" {
			t.Errorf("atpd %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	code, stdout, _ := runBin(t, nil, "", "version", "--json")
	var v struct {
		Version   string `json:"version"`
		Revision  string `json:"revision"`
		GoVersion string `json:"go_version"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil || v.Version == "" || v.Revision == "" || !strings.HasPrefix(v.GoVersion, "go1.") {
		t.Errorf("atpd version --json: exit %d, %q (%v)", code, stdout, err)
	}
}
