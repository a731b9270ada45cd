// Package reliability owns atpd's fault-injection tests: the real atpd
// binary, real PostgreSQL (including a private cluster it stops and starts)
// and real SQLite files made by Django's migrate, with the faults injected
// for real: backends terminated, the server restarted, the daemon killed
// with SIGKILL, a Python daemon on the same queue, producers deleting tasks
// under the daemon, hostile inputs, and queues far longer than any worker
// pool. Every test counts exactly, from the database and from a ledger the
// handler (integration/tools/ledger.py) appends one line to per execution,
// so "nothing lost and nothing run twice" is measured, not assumed.
//
// The package has no code outside its tests. docs/RELIABILITY.md lists the
// scenarios and the figures of the last full run; scripts/reliability.sh
// runs them at full size (ATPD_FULL=1).
package reliability
