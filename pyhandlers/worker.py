# atpd CPython worker: runs EOxServer ATP handler functions for the Go daemon.
#
# atpd embeds this file and runs it with the configured interpreter. It
# speaks a framed protocol on file descriptors 3 (requests from atpd) and 4
# (replies to atpd), so that whatever a handler prints on stdout or stderr
# cannot corrupt the protocol; atpd logs those streams line by line.
#
# The script must stay valid Python 2.7 as well as Python 3: EOxServer
# deployments still run Python 2 handlers. No f-strings, no keyword-only
# arguments, no print statement, bytes literals only through b"" (2.6+).
# Nothing here can check 2.7 syntax automatically, so keep it plain.
#
# Frame: 4-byte big-endian payload length, then the payload: one kind byte
# followed by fields, each a 4-byte big-endian length and that many bytes.
#
#   atpd -> worker                     worker -> atpd
#   I nonce settings path...           H version pid        ready
#   T seq id type ident handler        F message traceback  start-up failed
#     has_input input_text             C method arg...      TaskStatus call
#   r field...   call succeeded        D out_ok err_ok      handler returned
#   e message    call failed           X message class traceback out_ok err_ok
#
# The call "nullWrite method data" makes the write the reference made with
# a None (see write_none); atpd answers r with the database's refusal, or
# r with "" when it took the write.
#
# After each task the worker writes a line "atpd-sync <nonce> <seq>" on
# stdout and on stderr so that atpd knows every line before it belongs to
# that task.

import base64
import os
import signal
import struct
import sys
import traceback
import zlib

try:
    import fcntl
except ImportError:  # not on Unix: atpd only runs on Unix anyway
    fcntl = None

PY3 = sys.version_info[0] >= 3

if PY3:
    import pickle
    text_type = str
    binary_types = (bytes, bytearray, memoryview)
else:
    import cPickle as pickle
    text_type = unicode  # noqa: F821 (Python 2 only)
    binary_types = (str, bytearray, buffer)  # noqa: F821 (Python 2 only)

REQ_FD = 3
RESP_FD = 4
MAX_FRAME = int(os.environ.get("ATPD_MAX_FRAME", str(256 << 20)))
HEADER = struct.Struct(">I")

# EOxServer's models.STATUS2TEXT.
STATUS_TEXT = ("UNDEFINED", "ACCEPTED", "SCHEDULED", "RUNNING", "PAUSED", "FINISHED", "FAILED")


class ProtocolError(Exception):
    pass


class TaskStatusError(Exception):
    """Raised in a handler when atpd could not carry out a TaskStatus call."""


class IntegrityError(Exception):
    """A TaskStatus write the database refuses, as Django raised it."""


def write_none(method, data=b""):
    """The reference's write of None: Django passed None on to the NOT NULL
    column (a setter's log message, the MIME type of a new response), and
    the database refused it with the IntegrityError raised here. atpd makes
    that write, with the status of method or the response data, in a
    transaction it rolls back, so that the database words the refusal
    (PostgreSQL's DETAIL line names the refused row). A response row the
    instance has already is updated instead, its MIME type kept, as
    setTaskResponse did: then atpd makes the write and nothing is raised."""
    refusal = decode(call(b"nullWrite", method, data)[0])
    if refusal:
        raise IntegrityError(refusal)


class DummyLock(object):
    """tracker.DummyLock: the TaskStatus.dbLock of a handler run outside
    the daemon. atpd serialises the database writes itself."""

    def acquire(self):
        pass

    def release(self):
        pass


def _retry(fn, *args):
    # Python 2 does not retry system calls interrupted by a signal (PEP 475
    # made Python 3.5 do it).
    while True:
        try:
            return fn(*args)
        except (OSError, IOError) as e:
            if getattr(e, "errno", None) != 4:  # EINTR
                raise


def read_exact(fd, n):
    parts = []
    while n > 0:
        chunk = _retry(os.read, fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def write_all(fd, data):
    while data:
        n = _retry(os.write, fd, data)
        data = data[n:]


def to_bytes(value):
    """Encodes text as UTF-8; passes byte strings through."""
    if isinstance(value, text_type):
        return value.encode("utf-8")
    if isinstance(value, binary_types):
        return bytes(value) if not isinstance(value, bytes) else value
    return to_bytes(text(value))


def text(value):
    """Returns value as text the way Django's force_text would store it."""
    if isinstance(value, text_type):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return text_type(value)
    except Exception:
        return text_type(repr(value))


def field_text(value):
    """What Django stores in a TextField for value (not None, which the
    NOT NULL column refuses: see write_none): on Python 3 anything but str
    is stored as str(value) (TextField.to_python), so b"x" is stored as
    "b'x'"."""
    if PY3 and not isinstance(value, str):
        return str(value)
    return text(value)


def decode(field):
    return field.decode("utf-8")


def send(kind, *fields):
    parts = [kind]
    for f in fields:
        f = to_bytes(f)
        parts.append(HEADER.pack(len(f)))
        parts.append(f)
    payload = b"".join(parts)
    if len(payload) > MAX_FRAME:
        raise ValueError("message of %d bytes is larger than atpd accepts (%d bytes)" % (len(payload), MAX_FRAME))
    write_all(RESP_FD, HEADER.pack(len(payload)) + payload)


def receive():
    """Returns (kind, fields), or None when atpd closed the pipe."""
    head = read_exact(REQ_FD, 4)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size < 1 or size > MAX_FRAME:
        raise ProtocolError("frame of %d bytes" % size)
    payload = read_exact(REQ_FD, size)
    if payload is None:
        raise ProtocolError("pipe closed inside a frame")
    kind = payload[0:1]
    fields = []
    pos = 1
    while pos < len(payload):
        if pos + 4 > len(payload):
            raise ProtocolError("truncated field header")
        (n,) = HEADER.unpack(payload[pos:pos + 4])
        pos += 4
        if pos + n > len(payload):
            raise ProtocolError("truncated field")
        fields.append(payload[pos:pos + n])
        pos += n
    return kind, fields


def call(method, *args):
    send(b"C", method, *args)
    msg = receive()
    if msg is None:
        # atpd is gone; nothing can be reported any more.
        os._exit(70)
    kind, fields = msg
    if kind == b"r":
        return fields
    if kind == b"e":
        raise TaskStatusError(decode(fields[0]) if fields else "TaskStatus call failed")
    raise ProtocolError("unexpected reply %r to %s" % (kind, method))


class TaskStatus(object):
    """The handler's view of its task, as tracker.TaskStatus offers it.

    Every call is carried out by atpd, which returns once the change is
    committed; a failure raises TaskStatusError in the handler.
    """

    def __init__(self, task_id, type_id, identifier):
        # tracker.TaskStatus exposed task_id (the instance's database id)
        # and dbLock; handlers in the wild read them.
        self.task_id = task_id
        self.dbLock = DummyLock()
        self._type_id = type_id
        self._identifier = identifier
        # setTaskResponse keeps a stored response's first MIME type (it
        # assigns resp.mineType, a typo): the first one this run stored.
        self._mime_type = None

    def getInfo(self):
        """Returns (type identifier, instance identifier, status, status text)."""
        f = call(b"getInfo")
        code = int(f[2])
        return (decode(f[0]), decode(f[1]), code, status_text(code))

    def getIdentifier(self):
        """Returns (type identifier, instance identifier)."""
        f = call(b"getIdentifier")
        return (decode(f[0]), decode(f[1]))

    def getStatus(self):
        """Returns (status code, status text)."""
        code = int(call(b"getStatus")[0])
        return (code, status_text(code))

    def setSuccess(self, message=""):
        _set_status(b"setSuccess", message)

    def setFailure(self, message=""):
        _set_status(b"setFailure", message)

    def setPaused(self, message=""):
        _set_status(b"setPaused", message)

    def setRunning(self, message=""):
        _set_status(b"setRunning", message)

    def storeResponse(self, response, mimeType="text/xml"):
        """Stores the response: text is stored UTF-8 encoded, bytes-like
        objects as they are; anything else raises what zlib.compress raised
        in setTaskResponse."""
        if isinstance(response, text_type):
            data = response.encode("utf-8")
        elif isinstance(response, binary_types):
            data = bytes(response) if not isinstance(response, bytes) else response
        else:
            zlib.compress(response)  # raises the reference's TypeError
            data = memoryview(response).tobytes()
        if self._mime_type is None:
            if mimeType is None:
                write_none(b"storeResponse", data)
                return
            mime = field_text(mimeType)
        else:
            mime = self._mime_type
        call(b"storeResponse", data, mime)
        if self._mime_type is None:
            self._mime_type = mime


def _set_status(method, message):
    if message is None:
        write_none(method)
        return
    call(method, field_text(message))


def status_text(code):
    if 0 <= code < len(STATUS_TEXT):
        return STATUS_TEXT[code]
    return "UNKNOWN(%d)" % code


for _code, _name in enumerate(STATUS_TEXT):
    setattr(TaskStatus, _name, _code)


class Handlers(object):
    """Imports handlers by dotted path and reloads a handler's module when its
    source file changed, so that an edited handler runs on the next task
    without restarting atpd (the reference daemon meant to re-import per task).
    """

    def __init__(self):
        self.cache = {}  # path -> (module, function name, stamp)

    def get(self, path):
        entry = self.cache.get(path)
        if entry is not None:
            module, func, stamp = entry
            now = file_stamp(module)
            if now != stamp:
                reload_source(module)
                stamp = now
                self.cache[path] = (module, func, stamp)
            return getattr(module, func)
        # The reference daemon's Importer, so that a path that does not
        # import fails with Python's own words: "nodots" and "" give
        # "Empty module name", "pkg.mod." an AttributeError for '', and a
        # path naming a module a TypeError when it is called.
        modname, _, func = path.rpartition(".")
        module = __import__(modname, fromlist=[func])
        handler = getattr(module, func)
        self.cache[path] = (module, func, file_stamp(module))
        return handler


def source_file(module):
    path = getattr(module, "__file__", None)
    if not path:
        return None
    if path.endswith((".pyc", ".pyo")):
        path = path[:-1]
    if not path.endswith(".py"):
        return None  # extension modules cannot be reloaded
    return path


def file_stamp(module):
    path = source_file(module)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (getattr(st, "st_mtime_ns", st.st_mtime), st.st_size, st.st_ino)


def reload_source(module):
    # Compile from the source rather than importlib.reload: a .pyc is only
    # checked against the source's whole-second mtime and its size, so an edit
    # within the same second could otherwise run the old code.
    path = source_file(module)
    f = open(path, "rb")
    try:
        source = f.read()
    finally:
        f.close()
    code = compile(source, path, "exec", 0, True)
    exec(code, module.__dict__)


class InputError(Exception):
    """The task's input could not be unpickled, and Python said nothing more."""


def load_input(field):
    """The task's input as tracker.startTask decoded it:
    pickle.loads(zlib.decompress(base64.b64decode(text))), so that an input
    that does not decode fails with Python's own words."""
    text = field.decode("utf-8", "surrogateescape") if PY3 else field
    # atpd's one leniency: the b'...' that Django stores when a Python 3
    # producer hands bytes to the TextField.
    stripped = text.strip()
    if len(stripped) >= 3 and stripped[0] == "b" and stripped[1] in "'\"" and stripped[-1] == stripped[1]:
        text = stripped[2:-1]
    data = zlib.decompress(base64.b64decode(text))
    try:
        if PY3:
            # Python 2's str is text to EOxServer handlers, so its byte
            # strings become str through latin-1, which maps every byte; this
            # is also what Python 2 datetime and Decimal pickles need to load
            # on Python 3.
            return pickle.loads(data, encoding="latin1")
        return pickle.loads(data)
    except Exception as e:
        if exception_text(e):
            raise
        # A pickle declaring a huge length raises a bare MemoryError: its
        # empty str() would be the whole FAILED message.
        raise InputError("input: cannot unpickle: %s" % type(e).__name__)


def exception_text(e):
    """The FAILED message for e: unicode(e), as the reference daemon stored
    it (str(e) on Python 3)."""
    try:
        return text_type(e)
    except Exception as failure:
        # unicode(e) itself raised: under Python 2, a str message holding
        # non-ASCII bytes gives UnicodeDecodeError with the default "ascii"
        # encoding. The reference raised that inside its except clause, so
        # its worker process died of it (the traceback on stderr), and the
        # task stayed RUNNING until the zombie sweep re-enqueued it, to kill
        # another worker at every timeout. atpd fails the task, as it does
        # every task whose worker died, with what the reference died of:
        # "'ascii' codec can't decode byte 0xc3 in position 3: ordinal not
        # in range(128)". The handler's own message is in the logged
        # traceback; a sitecustomize that set a UTF-8 default encoding makes
        # unicode(e) succeed here as it did in the reference.
        try:
            return text_type(failure)
        except Exception:
            return text_type(type(failure).__name__)


def utf8(message):
    return message.encode("utf-8", "surrogatepass") if PY3 else to_bytes(message)


def fit(message, limit):
    """Cuts message to at most limit bytes of UTF-8."""
    if len(message) * 4 <= limit:
        return message
    data = utf8(message)
    if len(data) <= limit:
        return message
    return data[:limit].decode("utf-8", "ignore")


def flush_and_mark(nonce, seq):
    """Flushes the handler's output and writes the sync line on stdout and
    stderr; returns whether each write succeeded."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    # The leading newline ends a line the handler left unterminated.
    line = ("\natpd-sync %s %s\n" % (nonce, seq)).encode("ascii")
    oks = []
    for fd in (1, 2):
        try:
            write_all(fd, line)
            oks.append(b"1")
        except Exception:
            oks.append(b"0")
    return oks


def db_closer():
    """Returns Django's close_old_connections, or None without Django 1.6+.

    Django closes connections that are broken or past CONN_MAX_AGE around
    each request; a task is this worker's request.
    """
    try:
        from django.db import close_old_connections
    except ImportError:
        return None
    return close_old_connections


def close_db_connections(closer):
    if closer is None:
        return
    try:
        closer()
    except Exception:
        traceback.print_exc()


def run_task(handlers, nonce, closer, fields):
    seq = decode(fields[0])
    task_id = int(fields[1])
    status = TaskStatus(task_id, decode(fields[2]), decode(fields[3]))
    handler_path = decode(fields[4])
    has_input = fields[5] == b"1"
    close_db_connections(closer)
    try:
        value = load_input(fields[6]) if has_input else None
        handler = handlers.get(handler_path)
        handler(status, value)
    except Exception as e:
        # The message whole, as the reference stored it: only one that
        # would not fit in a frame is cut. The traceback (for the log only)
        # gets what room is left.
        message = fit(exception_text(e), MAX_FRAME - 1024)
        room = MAX_FRAME - 1024 - len(utf8(message))
        tb = fit(traceback.format_exc()[-(1 << 18):], max(0, room))
        close_db_connections(closer)
        oks = flush_and_mark(nonce, seq)
        send(b"X", message, type(e).__name__, tb, oks[0], oks[1])
        return
    close_db_connections(closer)
    oks = flush_and_mark(nonce, seq)
    send(b"D", oks[0], oks[1])


def set_cloexec(fd):
    # Handlers start subprocesses; they must not inherit the protocol pipes.
    if fcntl is None:
        return
    flags = fcntl.fcntl(fd, fcntl.F_GETFD)
    fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)


def ignore_signal(signum, frame):
    pass


def main():
    set_cloexec(REQ_FD)
    set_cloexec(RESP_FD)
    # Like the reference workers: Ctrl-C is for the daemon, which decides
    # what happens to running tasks. A handler (unlike SIG_IGN) is reset in
    # the handlers' own subprocesses.
    signal.signal(signal.SIGINT, ignore_signal)
    # This script's directory is a temporary one; handlers must not import
    # from it.
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]

    msg = receive()
    if msg is None:
        return 0
    kind, fields = msg
    if kind != b"I" or len(fields) < 2:
        raise ProtocolError("expected the init frame, got %r" % kind)
    nonce = decode(fields[0])
    settings = decode(fields[1])
    for p in fields[2:]:
        sys.path.append(decode(p))
    closer = None
    if settings:
        try:
            os.environ["DJANGO_SETTINGS_MODULE"] = settings
            import django
            # Django before 1.7 has no setup(): its settings load lazily.
            if hasattr(django, "setup"):
                django.setup()
            closer = db_closer()
        except Exception as e:
            send(b"F", "django.setup() with settings %s failed: %s" % (settings, exception_text(e)), traceback.format_exc())
            return 1
    send(b"H", sys.version.split()[0], str(os.getpid()))

    handlers = Handlers()
    while True:
        msg = receive()
        if msg is None:
            return 0
        kind, fields = msg
        if kind != b"T" or len(fields) != 7:
            raise ProtocolError("expected a task frame, got %r with %d fields" % (kind, len(fields)))
        run_task(handlers, nonce, closer, fields)


if __name__ == "__main__":
    sys.exit(main())
