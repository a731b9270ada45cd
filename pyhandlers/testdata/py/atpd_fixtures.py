"""Handlers with known outcomes for the pyhandlers tests. Each one exercises
one thing a real EOxServer handler may do to its worker."""
import json
import os
import signal
import sys
import time


def noop(taskStatus, input):
    pass


def echo(taskStatus, input):
    """Stores repr(input), to check how inputs are unpickled."""
    taskStatus.storeResponse(repr(input), "text/plain")


def pid(taskStatus, input):
    """Stores the worker's pid, to tell workers apart."""
    taskStatus.storeResponse(str(os.getpid()), "text/plain")


def every_method(taskStatus, input):
    """Calls every TaskStatus method and stores what it saw as JSON."""
    seen = {"task_id": taskStatus.task_id}
    seen["identifier"] = list(taskStatus.getIdentifier())
    seen["info_running"] = list(taskStatus.getInfo())
    taskStatus.setPaused("paused by handler")
    seen["status_paused"] = list(taskStatus.getStatus())
    taskStatus.setRunning("resumed by handler")
    seen["info_resumed"] = list(taskStatus.getInfo())
    taskStatus.setFailure("failed by handler")
    seen["status_failed"] = list(taskStatus.getStatus())
    taskStatus.setSuccess()
    seen["status_finished"] = list(taskStatus.getStatus())
    seen["constants"] = dict(
        (name, getattr(taskStatus, name))
        for name in ("UNDEFINED", "ACCEPTED", "SCHEDULED", "RUNNING", "PAUSED", "FINISHED", "FAILED")
    )
    taskStatus.storeResponse(json.dumps(seen, sort_keys=True))


def respond(taskStatus, input):
    """input: (kind, mime or None); stores a response of that Python type."""
    kind, mime = input
    value = {
        "ascii": "15.0",
        "text": u"caf\xe9 \u20ac",
        "bytes": b"\x00\x01\xfe\xffbinary",
        "bytearray": bytearray(b"\x00abc"),
    }[kind]
    if mime is None:
        taskStatus.storeResponse(value)
    else:
        taskStatus.storeResponse(value, mime)


def bad_response(taskStatus, input):
    taskStatus.storeResponse(12345)


def catch_status_error(taskStatus, input):
    """Stores the exception a failing TaskStatus call raised."""
    try:
        taskStatus.setPaused("pause that fails")
    except Exception as e:
        taskStatus.storeResponse("%s: %s" % (type(e).__name__, e), "text/plain")


def raises(taskStatus, input):
    raise ValueError("bad value %r" % (input,))


def exit3(taskStatus, input):
    os._exit(3)


def sys_exit(taskStatus, input):
    sys.exit(4)


def sigkill(taskStatus, input):
    os.kill(os.getpid(), signal.SIGKILL)


def sleeper(taskStatus, input):
    """Sleeps input seconds, after telling the test on stdout it started."""
    print("sleeping %s" % (input,))
    sys.stdout.flush()
    time.sleep(input)
    taskStatus.storeResponse("woke up", "text/plain")


def stubborn(taskStatus, input):
    """Ignores SIGTERM, so only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM")
    sys.stdout.flush()
    time.sleep(input)


def printer(taskStatus, input):
    """input: (lines, line length, long line length); prints that much on
    stdout, a few lines on stderr, ends with an unterminated line."""
    lines, width, long_width = input
    row = "x" * width
    for i in range(lines):
        print("%08d %s" % (i, row))
    sys.stdout.write("L" * long_width + "\n")
    for i in range(3):
        sys.stderr.write("err line %d\n" % i)
    sys.stdout.write("last line without newline")
    taskStatus.storeResponse("printed", "text/plain")


def marked_output(taskStatus, input):
    """Prints lines naming the task, some on each stream, one unterminated."""
    ident = taskStatus.getIdentifier()[1]
    for i in range(input):
        print("out %s %d" % (ident, i))
        sys.stderr.write("err %s %d\n" % (ident, i))
    sys.stdout.write("tail %s" % ident)


def django_orm(taskStatus, input):
    """Reads its own instance and counts instances through the Django ORM."""
    from processes.models import Instance, LogRecord

    ident = taskStatus.getIdentifier()
    inst = Instance.objects.get(type__identifier=ident[0], identifier=ident[1])
    seen = {
        "id": inst.id,
        "status": inst.status,
        "instances": Instance.objects.count(),
        "log_statuses": list(LogRecord.objects.filter(instance=inst).order_by("time").values_list("status", flat=True)),
    }
    taskStatus.storeResponse(json.dumps(seen, sort_keys=True), "application/json")


def barrier(taskStatus, input):
    """input: a directory. Waits, up to 60 s, until another handler is in
    the barrier too; stores the most handlers it saw in at once."""
    mine = os.path.join(input, str(os.getpid()))
    open(mine, "w").close()
    try:
        most = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            most = max(most, len(os.listdir(input)))
            if most >= 2:
                break
            time.sleep(0.005)
        # Linger so that a third handler, were one running, would be seen.
        end = time.time() + 0.05
        while time.time() < end:
            most = max(most, len(os.listdir(input)))
            time.sleep(0.005)
    finally:
        os.remove(mine)
    taskStatus.storeResponse(str(most), "text/plain")


def raises_unicode(taskStatus, input):
    """A Python 2 handler's unicode exception message (u"caf\xe9 \u20ac")."""
    raise ValueError(u"caf\xe9 \u20ac")


def raises_str_bytes(taskStatus, input):
    """A Python 2 handler's str exception message holding non-ASCII bytes
    (UTF-8 "caf\xc3\xa9", then a byte that is not UTF-8)."""
    raise ValueError("caf\xc3\xa9 \xff")
