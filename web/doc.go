// Package web owns atpd's operator surface over HTTP: the task pages that
// EOxServer's processes views (views.py: task, status, response) offered,
// their JSON twins under /api, /healthz for supervisors and load
// balancers, and /metrics for Prometheus.
//
// Routes, relative to Options.BasePath:
//
//	GET /tasks?status=S&type=T&limit=N&offset=K   task list, newest update first
//	GET /tasks/{type}/{id}                        one task: its row, input and status log
//	GET /tasks/{type}/{id}/response               the stored response, served with its MIME type
//	GET /log?limit=N                              the status log of all tasks, newest first
//	GET /api/tasks, /api/tasks/{type}/{id},
//	    /api/tasks/{type}/{id}/log, /api/tasks/{type}/{id}/response,
//	    /api/log, /api/types, /api/queue          the same as JSON
//	GET /healthz                                  200 or 503 with a JSON body
//	GET /metrics                                  Prometheus exposition
//
// Everything shown comes from the shared tables through djangodb.Store, so
// the pages show tasks of every producer and every daemon (atpd or the
// reference asyncProcServer.py) on the database, not only this process's.
// What only this process knows (its busy workers, its counters) comes from
// the daemon: through Options.Stats for the pages and through Metrics,
// which the daemon updates, for Prometheus.
//
// Stored text is written by any producer, so every value is escaped by
// html/template, and a task's response, whose MIME type a handler chose,
// is served in a CSP sandbox so that an HTML response cannot run script
// with the pages' origin.
package web
