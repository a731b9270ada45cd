// Package pyhandlers owns running EOxServer's Python ATP handlers, the
// functions a task type names by dotted path, unchanged.
//
// Pool runs them in persistent CPython worker processes (worker.py, embedded
// in the binary), which unpickle the task input with Python's own pickle,
// optionally after django.setup(), and call handler(taskStatus, input). Each
// taskStatus call travels over a private pipe pair to the Go side, which
// carries it out through executor.TaskStatus and answers once it is
// committed. A worker that dies fails only its own task and is replaced.
//
// Embedded runs pure-Python handler modules inside the daemon with gpython,
// for deployments without CPython; what gpython cannot run fails the task
// with executor.ErrUnsupported.
//
// Unpickling runs code chosen by whoever wrote the input, exactly as in the
// reference daemon: the ATP tables must only be writable by trusted
// producers.
package pyhandlers
