// Package daemon owns atpd's task loop: pulling tasks from the shared
// processes_task queue, running their handlers on a bounded pool of workers,
// writing each outcome back through djangodb.Store, and the periodic clean-up
// (zombie sweep and retirement) that EOxServer's asyncProcServer.py did.
//
// It keeps the reference daemon's observable behaviour (ATP-SPEC.md section
// 5: the same status sequence, log messages and clean-up cadence) and fixes
// its faults:
//
//   - It claims tasks only for free workers, all of them in one Claim
//     (Dequeue and Start in one transaction), so a task is never held
//     SCHEDULED in a local queue while workers are busy.
//   - A commit costs a sync to disk, so tasks share transactions: a claim
//     waits up to ClaimWindow for more workers to come free, and a
//     completer goroutine writes the outcomes of many tasks in one
//     Store.Complete (river's batch completer). A handler's TaskStatus
//     writes are held back and committed with the task's outcome, within
//     FlushDelay and before the handler reads its status, in order
//     (SyncTaskWrites commits each at once,
//     as the reference did). A held-back write returns before it is
//     committed: a write the database refuses fails the task, not the
//     call, and a daemon killed before the commit loses it with the
//     outcome, so that the sweep runs the task again (at-least-once, as
//     the reference for a daemon killed mid-task; see
//     executor.TaskStatus). The worker is free again as soon as the
//     handler returns, so the next claim overlaps the outcome's commit.
//   - On PostgreSQL it LISTENs for announcements of new tasks (Go
//     producers announce theirs; `atpd notify install` makes the database
//     announce Python producers' too) and claims at once; polling stays as
//     the fallback.
//   - Each running task has a deadline a margin before its type's timeout
//     would let any daemon's zombie sweep take it. At the deadline the
//     handler is cancelled and the task re-enqueued (or FAILED once maxstart
//     starts are used up, which the upstream code documented but never did),
//     so a task is never run twice at once by two daemons. Reaching the
//     deadline never waits for the database. A committed status write by
//     the handler moves the deadline on, as it moves timeUpdate on.
//   - Every write of a run (held-back writes, the outcome, a cancellation's
//     Store.Release) is fenced on the run (djangodb.Completion.Fence): it
//     lands only while the task is still RUNNING or PAUSED with the run's
//     start count and no waiting row, so an outcome that arrives after a
//     sweep re-enqueued the task, or after a producer asked for another
//     run, is dropped, logged and counted (atpd_outcomes_discarded_total),
//     and a retried commit whose acknowledgement was lost writes nothing
//     twice. A row another transaction holds (PostgreSQL) parks only that
//     task's outcome.
//   - A Go handler that ignores cancellation is abandoned after half the
//     margin and counted (atpd_handlers_abandoned); a new run of its task
//     on this daemon waits for it to return, so one daemon never runs a
//     task twice at once.
//   - Store writes that fail (a lost connection) are retried with capped
//     exponential backoff instead of losing the task's outcome; so are a
//     handler's own TaskStatus writes while the failure is transient
//     (djangodb.Transient), so that a database restart does not fail
//     tasks that did nothing wrong. A batch the database refuses is
//     written task by task, so that one bad task cannot block the others.
//   - An input that inflates past MaxInputSize (a zlib bomb) fails its
//     task before any executor decodes it.
//   - A panic anywhere in a task's path ends that task FAILED and leaves the
//     daemon running.
//   - On SIGTERM (Abort) running tasks are re-enqueued at once instead of
//     being left RUNNING until their zombie timeout.
//
// The Executor decides how a handler runs (Go, CPython, gpython); the daemon
// only sees executor.Executor and gives each handler an executor.TaskStatus.
package daemon
