package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// MainWithAtpd builds the atpd command package pkg (a go build argument,
// resolved in dir) into a temporary directory, stores the binary's path in
// *bin, runs the tests and returns their exit code, the binary removed.
// It is TestMain's body: building once spares every test a link of the
// whole daemon. label names the caller in build failures.
func MainWithAtpd(m *testing.M, label, dir, pkg string, bin *string) int {
	tmp, err := os.MkdirTemp("", "atpd-"+label+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: temp dir: %v\n", label, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "atpd")
	build := exec.Command("go", "build", "-o", path, pkg)
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: go build %s: %v\n%s", label, pkg, err, out)
		return 1
	}
	*bin = path
	return m.Run()
}
