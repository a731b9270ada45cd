// Package daemon owns atpd's task loop: pulling tasks from the shared
// processes_task queue, running their handlers on a bounded pool of workers,
// writing each outcome back through djangodb.Store, and the periodic clean-up
// (zombie sweep and retirement) that EOxServer's asyncProcServer.py did.
//
// It keeps the reference daemon's observable behaviour (ATP-SPEC.md section
// 5: the same status sequence, log messages and clean-up cadence) and fixes
// its faults:
//
//   - It claims tasks only for free workers, all of them in one Dequeue call,
//     so a task is never held SCHEDULED in a local queue while workers are
//     busy, and claiming costs one transaction per batch.
//   - Each running task has a deadline a margin before its type's timeout
//     would let any daemon's zombie sweep take it. At the deadline the
//     handler is cancelled and the task re-enqueued (or FAILED once maxstart
//     starts are used up, which the upstream code documented but never did),
//     so a task is never run twice at once by two daemons. A committed status
//     write by the handler moves the deadline on, as it moves timeUpdate on.
//   - Store writes that fail (a lost connection) are retried with capped
//     exponential backoff instead of losing the task's outcome. A handler's
//     own TaskStatus writes are retried too while the failure is transient
//     (djangodb.Transient) and the task is still the handler's, so that a
//     database restart does not fail tasks that did nothing wrong.
//   - An input that inflates past MaxInputSize (a zlib bomb) fails its
//     task before any executor decodes it.
//   - A panic anywhere in a task's path ends that task FAILED and leaves the
//     daemon running.
//   - On SIGTERM (Abort) running tasks are re-enqueued at once instead of
//     being left RUNNING until their zombie timeout.
//
// The Executor decides how a handler runs (Go, CPython, gpython); the daemon
// only sees executor.Executor and gives each handler an executor.TaskStatus
// whose setters are committed Store calls.
package daemon
