// Package integration owns the Django side of atpd's tests: a Django 3.2
// project (manage.py, atpdtest/, the `processes` app) whose migrate makes the
// ATP tables, tracker.py (EOxServer's producer API on the Django ORM),
// producer.py (a JSON command line over it) and the demo handlers; and the
// Go tests that check atpd's store against what Django reads and writes.
//
// The Go code is test-only; this file exists so the package has a name and
// this comment.
package integration
