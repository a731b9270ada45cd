// Package pyhandlers owns running EOxServer's Python ATP handlers, the
// functions a task type names by dotted path ("tools.atp_demo.handler"),
// unchanged.
//
// # CPython workers (Pool)
//
// Pool keeps up to Config.Workers CPython processes running worker.py,
// which is embedded in the binary and written to a temporary file at Start.
// A worker appends Config.PythonPath to sys.path, sets DJANGO_SETTINGS_MODULE
// and runs django.setup() when Config.SettingsModule is set, then runs one
// task at a time the way the reference daemon's worker did: it decodes the
// stored input text with tracker.startTask's own calls,
// pickle.loads(zlib.decompress(base64.b64decode(text))), imports the
// handler with getattr(__import__(module, fromlist=[func]), func) after
// path.rpartition(".") (cached; a handler module whose file changed is
// recompiled before the next task) and calls handler(taskStatus, input).
// An input that does not decode or a path that does not import thus fails
// its task with Python's own words, the message the reference wrote.
//
// The Go side only refuses an input whose text or decompressed pickle is
// larger than Config.MaxMessageSize, so that a corrupt row cannot exhaust
// a worker's memory. Python 2 pickles load on Python 3 with
// encoding="latin1": EOxServer handlers were written for Python 2, where
// str is text, so a Python 2 str arrives as str (latin-1 maps every byte,
// and datetime pickles need it).
//
// Worker and daemon talk over two private pipes (the worker's fds 3 and 4)
// in length-prefixed frames (frame.go, worker.py's header); stdout and
// stderr are only ever the handler's, read line by line and logged with the
// task (lines truncated at MaxLineLength, at most MaxOutputLines per task).
// After each task the worker writes a sync line on both streams so that
// output is never blamed on the next task. Each taskStatus call is one
// round trip: the daemon carries it out through executor.TaskStatus and
// answers once it is committed, or raises TaskStatusError in the handler.
//
// An exception fails the task with str(exception), whole, as the reference
// daemon did (HandlerError); the traceback goes to the log. taskStatus
// stores what Django would: str(message) for a message that is not text
// (b"x" is stored as "b'x'"), and a None message or MIME type raises in
// the handler the NOT NULL violation the database gives for the write the
// reference made with it (executor.NullWriter; it is rolled back). A worker that dies
// (os._exit, a signal, the OOM killer, SystemExit) fails its task with its
// exit status (ExitError) and is replaced. When the task's context ends the
// worker's process group gets SIGTERM, then SIGKILL after KillGrace, and
// Execute returns at once. Workers run in their own process group, so
// Ctrl-C on the daemon's terminal is the daemon's to handle.
//
// worker.py must stay valid Python 2.7 and Python 3. Only Python 3 is
// installed where atpd is developed, so its Python 2 compatibility rests on
// writing it conservatively (no f-strings, b"" literals, EINTR retries,
// Django < 1.7 without django.setup()), not on a test.
//
// # gpython (Embedded)
//
// Embedded runs pure-Python handler modules inside the daemon with gpython
// (a Python 3.4 subset), with a taskStatus implemented as a gpython type.
// What gpython cannot run fails the task with executor.ErrUnsupported; see
// Embedded for its limits.
//
// Unpickling runs code chosen by whoever wrote the input, exactly as in the
// reference daemon: the ATP tables must only be writable by trusted
// producers.
package pyhandlers
