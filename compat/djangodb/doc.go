// Package djangodb owns every read and write atpd makes to the ATP tables
// that Django's `processes` app creates (processes_type, processes_instance,
// processes_task, processes_logrecord, processes_response, processes_input).
//
// The tables are shared with unmodified Python producers (EOxServer's
// tracker.py) and possibly with the original Python daemon, so this package
// reproduces the tracker's observable semantics row for row: every status
// change saves timeUpdate and writes one log record in the same transaction,
// deletes emulate Django's Python-side cascade, and timestamps are written in
// the exact form Django writes for the configured USE_TZ and TIME_ZONE.
//
// Store is the one interface and core*.go its one implementation: every ATP
// rule is written there once, over single-purpose statements that each
// database's dialect supplies (PostgreSQL through lib/pq, SQLite through
// modernc.org/sqlite; their SQL is in postgres_sql.go and sqlite_sql.go).
// The storetest package holds the conformance suite both must pass.
//
// A claim decodes each task's input as startTask did before it saved
// RUNNING (base64, then zlib; the pickle is the executor's): one that does
// not open ends FAILED right after SCHEDULED, with Python's words. On
// SQLite, write transactions that wait for the one write connection share
// a commit (groupcommit.go). History reads for `atpd check` stream the log
// (EachLogRecord); what they mean is package history's to say.
package djangodb
