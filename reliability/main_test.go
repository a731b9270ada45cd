package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// atpdBin is the daemon binary TestMain builds once, from this checkout.
var atpdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atpd-reliability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability: temp dir:", err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "atpd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/atpd")
	build.Dir = ".." // the module root: tests run in the package directory
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: go build ./cmd/atpd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	atpdBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// full reports whether the scenarios run at their full size: ATPD_FULL set
// (scripts/reliability.sh sets it) and not -short.
func full() bool {
	ok, _ := strconv.ParseBool(os.Getenv("ATPD_FULL"))
	return ok && !testing.Short()
}

// size picks a scenario's count: small in the default run, the issue's
// figure in a full run.
func size(small, fullSize int) int {
	if full() {
		return fullSize
	}
	return small
}
