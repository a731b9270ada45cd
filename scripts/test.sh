#!/usr/bin/env bash
# Sets the machine up (scripts/setup.sh), then checks formatting and vet and
# runs every test. Extra arguments go to `go test` (e.g. -run, -v).
#
# With CI=true, tests fail instead of skipping when PostgreSQL or Django is
# missing (internal/testdb), so that a broken machine cannot pass.
set -euo pipefail

cd "$(dirname "$0")/.."

scripts/setup.sh

if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi
export CI="${CI:-false}"

unformatted=$(find . -name '*.go' -not -path './.git/*' -print0 | xargs -0 -r gofmt -l)
if [ -n "$unformatted" ]; then
	printf 'test: not gofmt-formatted:\n%s\n' "$unformatted" >&2
	exit 1
fi

go vet ./...
# -count=1: the tests read Python and migration files through subprocesses,
# which Go's test cache does not track.
go test -count=1 -timeout 30m "$@" ./...
