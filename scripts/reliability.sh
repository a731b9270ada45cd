#!/usr/bin/env bash
# Runs atpd's reliability scenarios (reliability/) at their full size
# (ATPD_FULL=1: 2,000 tasks through terminated sessions, 100,000 waiting
# tasks, 60 s of SQLite load, eight SIGKILLs on each database, ...), then
# fuzzes the Python worker protocol's frame reader. It prints each test's
# result and the FIGURES lines that docs/RELIABILITY.md quotes; the whole
# `go test -v` output is kept in the log file it names.
#
#   scripts/reliability.sh                   everything, 500,000 fuzz inputs
#   FUZZTIME=5000000x scripts/reliability.sh fuzz longer
#   scripts/reliability.sh -run Mixed      extra arguments go to go test
#
# It needs what the test suite needs (scripts/setup.sh): PostgreSQL 15 on
# 127.0.0.1:5432 and its initdb/pg_ctl for a private cluster, and a python3
# with Django and psycopg2. Run it on an otherwise idle machine when the
# figures are to be published: they measure the machine as much as atpd.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi
export ATPD_FULL=1
# A count, not a duration: Go 1.26's fuzz coordinator can fail a run whose
# -fuzztime deadline expires while a worker is mid-input ("context deadline
# exceeded" with no crasher; go.dev/issue/75804, fixed in Go 1.27).
fuzztime="${FUZZTIME:-500000x}"
log="${RELIABILITY_LOG:-$(mktemp -t atpd-reliability.XXXXXX)}"

echo "reliability: go test -v ./reliability (ATPD_FULL=1), full output in $log"
start=$(date +%s)
set +e
go test -count=1 -v -timeout 80m "$@" ./reliability >"$log" 2>&1
status=$?
set -e
grep -E '^\s*--- (PASS|FAIL|SKIP)|FIGURES|^(ok|FAIL)\s' "$log" || true
echo "reliability: tests took $(($(date +%s) - start)) s, exit status $status"
if [ "$status" -ne 0 ]; then
	echo "reliability: FAILED; see $log" >&2
	exit "$status"
fi

echo "reliability: fuzzing pyhandlers FuzzReadFrame, -fuzztime $fuzztime"
go test -run '^$' -fuzz '^FuzzReadFrame$' -fuzztime "$fuzztime" ./pyhandlers
