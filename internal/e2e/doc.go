// Package e2e owns the test support shared by the packages that run atpd
// as a child process against a Django-migrated database (atpdcmd's
// end-to-end tests, reliability): building the binary once per test
// binary, child processes whose output lines can be awaited, SQL on the
// test database, the Python producer of integration/ and polling.
//
// It is imported by tests only; it fails tests through testing.TB rather
// than returning errors, because every caller would fail the test anyway.
package e2e
