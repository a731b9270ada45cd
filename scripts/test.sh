#!/usr/bin/env bash
# Sets the machine up (scripts/setup.sh), then checks formatting, go.mod
# tidiness, vet and staticcheck, and runs every test: the packages with
# concurrency under the race detector, the rest without. Extra arguments go
# to both `go test` runs (e.g. -run, -v).
#
# With CI=true, tests fail instead of skipping when PostgreSQL or Django is
# missing (internal/testdb), so that a broken machine cannot pass.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/setup.sh
# Test-only: a real Python 2.7 for the Python 2 pickle and worker tests.
scripts/setup-python2.sh

if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi
export CI="${CI:-false}"

unformatted=$(find . -name '*.go' -not -path './.git/*' -print0 | xargs -0 -r gofmt -l)
if [ -n "$unformatted" ]; then
	printf 'test: not gofmt-formatted:\n%s\n' "$unformatted" >&2
	exit 1
fi

# Prints the changes `go mod tidy` would make and fails if there are any.
if ! go mod tidy -diff; then
	echo 'test: go.mod or go.sum is not tidy; run go mod tidy' >&2
	exit 1
fi

go vet ./...

# Installed by scripts/setup.sh (GOBIN, else GOPATH/bin).
gobin=$(go env GOBIN)
"${gobin:-$(go env GOPATH)/bin}/staticcheck" ./...

# The packages with goroutines of their own run under -race; every other
# package runs once, without it. -count=1: the tests read Python and
# migration files through subprocesses, which Go's test cache does not
# track.
race_pkgs=(./daemon/ ./compat/djangodb/... ./pyhandlers/ ./web/ ./atpdcmd/)
mapfile -t other_pkgs < <(comm -23 <(go list ./... | sort) <(go list "${race_pkgs[@]}" | sort))
go test -count=1 -timeout 30m "$@" "${other_pkgs[@]}"
go test -count=1 -race -timeout 30m "$@" "${race_pkgs[@]}"

# The example of a deployment's own atpd (examples/gohandler, a module of
# its own): tidy, vetted, built and run end to end.
(
	cd examples/gohandler
	if ! go mod tidy -diff; then
		echo 'test: examples/gohandler: go.mod or go.sum is not tidy' >&2
		exit 1
	fi
	go vet ./...
	"${gobin:-$(go env GOPATH)/bin}/staticcheck" ./...
	go test -count=1 -timeout 10m ./...
)
