#!/usr/bin/env bash
# Test-only set-up: installs a real Python 2.7 (Debian bullseye's
# python2.7), with which the tests make Python 2 pickles and load the Go
# producer's pickles, as the Python 2 deployments of EOxServer's ATP did.
# The daemon never needs it. The bullseye suite is added pinned at
# priority 100, so that nothing else is ever taken from it. Idempotent:
# does nothing when /usr/bin/python2.7 exists.
set -euo pipefail

log() { printf 'setup-python2: %s\n' "$*" >&2; }

if [ -x /usr/bin/python2.7 ]; then
	log "python2.7 present: $(/usr/bin/python2.7 -c 'import sys; print(sys.version.split()[0])')"
	exit 0
fi

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "error: not root and no sudo; cannot run: $*"
		exit 1
	fi
}

SOURCES=/etc/apt/sources.list.d/atpd-bullseye.sources
PIN=/etc/apt/preferences.d/atpd-bullseye
if [ ! -f "$SOURCES" ]; then
	log "adding Debian bullseye (pinned at 100) for python2.7"
	printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bullseye' 'Components: main' \
		'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' | as_root tee "$SOURCES" >/dev/null
fi
if [ ! -f "$PIN" ]; then
	printf '%s\n' 'Package: *' 'Pin: release n=bullseye' 'Pin-Priority: 100' | as_root tee "$PIN" >/dev/null
fi
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bullseye python2.7
log "installed $(/usr/bin/python2.7 -c 'import sys; print(sys.version.split()[0])')"
