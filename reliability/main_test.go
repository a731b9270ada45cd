package reliability

import (
	"os"
	"strconv"
	"testing"

	"github.com/eoxserver/atpd/internal/e2e"
)

// atpdBin is the daemon binary TestMain builds once, from this checkout.
var atpdBin string

func TestMain(m *testing.M) {
	// The module root: tests run in the package directory.
	os.Exit(e2e.MainWithAtpd(m, "reliability", "..", "./cmd/atpd", &atpdBin))
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
