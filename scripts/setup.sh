#!/usr/bin/env bash
# Prepares a fresh Debian machine (Go already in /usr/local/go) to build atpd
# and run every test: Chromium for the web UI test, PostgreSQL reachable on 127.0.0.1 as the postgres role
# without a password, Debian's python3 with Django and psycopg2, the Go
# modules, and staticcheck for scripts/test.sh. Idempotent: each step checks
# first and does nothing when done.
#
# Environment: ATPD_PG_CLUSTER (default main) picks the Debian cluster.
set -euo pipefail

cd "$(dirname "$0")/.."

# chromium: the web UI's end-to-end test drives headless Chromium.
PACKAGES=(postgresql python3-django python3-psycopg2 chromium)
PG_CLUSTER=${ATPD_PG_CLUSTER:-main}
PG_HOST=127.0.0.1
TEST_DB=test
# staticcheck's release that scripts/test.sh runs, and where go install puts it.
STATICCHECK_VERSION=v0.8.2
HBA_MARK="# atpd scripts/setup.sh: tests connect as postgres over TCP without a password"

log() { printf 'setup: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "not root and no sudo; cannot run: $*"
	fi
}

as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -u postgres "$@"
	else
		die "not root and no sudo; cannot run as postgres: $*"
	fi
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		log "Debian packages present: ${PACKAGES[*]}"
		return
	fi
	log "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# cluster_line prints the pg_lsclusters line of the newest cluster
# named $PG_CLUSTER.
cluster_line() {
	pg_lsclusters -h | awk -v c="$PG_CLUSTER" '$2 == c' | sort -V | tail -n 1
}

start_postgres() {
	local line
	line=$(cluster_line)
	if [ -z "$line" ]; then
		local ver
		ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
		[ -n "$ver" ] || die "no PostgreSQL server in /usr/lib/postgresql"
		log "creating PostgreSQL $ver cluster $PG_CLUSTER"
		as_root pg_createcluster "$ver" "$PG_CLUSTER"
		line=$(cluster_line)
	fi
	read -r PG_VERSION _ PG_PORT status _ <<<"$line"
	if [ "$status" != online ]; then
		log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
		# Containers have no systemd; start the cluster directly.
		as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start
	fi
	local i
	for i in $(seq 1 60); do
		if pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
			log "PostgreSQL $PG_VERSION/$PG_CLUSTER accepts connections on $PG_HOST:$PG_PORT"
			[ "$PG_PORT" = 5432 ] || log "note: tests expect port 5432; set ATPD_TEST_PG=postgres://postgres@$PG_HOST:$PG_PORT/$TEST_DB?sslmode=disable"
			return
		fi
		sleep 0.5
	done
	die "PostgreSQL $PG_VERSION/$PG_CLUSTER does not accept connections on $PG_HOST:$PG_PORT"
}

# tcp_psql runs psql the way the tests connect: TCP, role postgres, no password.
tcp_psql() {
	env -u PGPASSWORD psql -w -X -q -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"
}

allow_tcp_postgres() {
	if tcp_psql -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
		log "role postgres can log in on $PG_HOST:$PG_PORT without a password"
		return
	fi
	# A fresh Debian cluster wants a password (scram-sha-256) on TCP, but the
	# tests' DSN has none: the postgres role on the loopback address only is
	# trusted, on this test machine. pg_hba.conf is read top down, so the rule
	# goes first.
	local hba
	hba=$(as_postgres psql -X -p "$PG_PORT" -Atc 'SHOW hba_file')
	[ -n "$hba" ] || die "cannot find pg_hba.conf of $PG_VERSION/$PG_CLUSTER"
	if as_root grep -qF "$HBA_MARK" "$hba"; then
		die "$hba already trusts postgres on $PG_HOST, yet a password-less login fails"
	fi
	log "trusting role postgres on $PG_HOST/32 in $hba"
	as_root sed -i "1i $HBA_MARK\\nhost all postgres $PG_HOST/32 trust" "$hba"
	as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" reload
	local i
	for i in $(seq 1 20); do
		tcp_psql -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return
		sleep 0.5
	done
	die "role postgres still cannot log in on $PG_HOST:$PG_PORT after editing $hba"
}

create_test_db() {
	if [ "$(tcp_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$TEST_DB'")" = 1 ]; then
		return
	fi
	log "creating database $TEST_DB"
	tcp_psql -d postgres -c "CREATE DATABASE $TEST_DB"
}

check_python() {
	local v
	v=$(/usr/bin/python3 -c 'import django, psycopg2; print(django.get_version(), psycopg2.__version__.split()[0])') ||
		die "/usr/bin/python3 cannot import django and psycopg2"
	log "/usr/bin/python3: Django and psycopg2 $v"
}

go_modules() {
	if ! command -v go >/dev/null 2>&1; then
		export PATH=/usr/local/go/bin:$PATH
	fi
	command -v go >/dev/null 2>&1 || die "no go on PATH nor in /usr/local/go/bin"
	go mod download
	log "Go modules downloaded ($(go version))"
}

# staticcheck_bin prints where go install puts staticcheck (GOBIN, else
# GOPATH/bin); scripts/test.sh runs it from there.
staticcheck_bin() {
	local bin
	bin=$(go env GOBIN)
	[ -n "$bin" ] || bin="$(go env GOPATH)/bin"
	printf '%s/staticcheck\n' "$bin"
}

install_staticcheck() {
	local sc
	sc=$(staticcheck_bin)
	# staticcheck -version prints e.g. "staticcheck 2026.2.2 (0.8.2)".
	if [ -x "$sc" ] && "$sc" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
		log "staticcheck $STATICCHECK_VERSION present: $sc"
		return
	fi
	log "installing staticcheck $STATICCHECK_VERSION"
	go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	"$sc" -version >/dev/null || die "go install did not put staticcheck at $sc"
}

install_packages
start_postgres
allow_tcp_postgres
create_test_db
check_python
go_modules
install_staticcheck
