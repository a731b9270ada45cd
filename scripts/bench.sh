#!/bin/sh
# Measures atpd against its performance targets on this machine: drain
# throughput (Go and Python demo handlers), pickup latency (LISTEN/NOTIFY and
# polling), daemon RSS and CPU, commits, WAL and wait events per task, on
# PostgreSQL and SQLite, with what it is compared with measured in the same
# run: the batched-SQL limit (pgbench, the task's row work 32 tasks per
# transaction), the original-protocol Python daemon (integration/refdaemon.py)
# and the database's own capacity (pgbench -N, SQLite commits/s). Prints a
# Markdown table of medians (docs/PERFORMANCE.md holds the last one).
#
#   scripts/bench.sh                 # 3 runs, 2000 tasks per drain
#   scripts/bench.sh -runs 5 -n 5000
#   scripts/bench.sh -only drain/postgres
#
# Needs PostgreSQL (ATPD_BENCH_PG, default postgres://postgres@127.0.0.1:5432/test,
# a role that may create databases) on this machine (pg_waldump reads its
# pg_wal for the WAL per task), pgbench, and /usr/bin/python3 with Django and
# psycopg2 (scripts/setup.sh) for the Python handler and original daemon runs. Every flag: go run ./scripts/bench -h
set -eu
cd "$(dirname "$0")/.."
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
psql "${ATPD_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}" -Atc \
	"SELECT '# ' || version() || ', fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit')" 2>/dev/null || true
echo "# scripts/bench.sh $*"
exec go run ./scripts/bench "$@"
