#!/usr/bin/env python3
"""A single-process daemon that follows the reference dequeue protocol
(ATP-SPEC.md section 5) over tracker.py, for tests that run atpd beside the
Python daemon on one queue (reliability/).

It does what eoxserver-atpd.py's master and one worker did, in one loop:
dequeueTask; for each id startTask, import the handler by dotted path, call
handler(TaskStatus, input), stopTaskSuccessIfNotFinished, or setFailure with
str(exception); on QueueEmpty the clean-up (reenqueueZombieTasks with the
reference message, then deleteRetiredTasks) and a sleep; a clean-up every
--sweep-every dequeues as well. SIGINT or SIGTERM ends it after the task in
hand.

The database comes from the ATPD_DJANGO_* environment (atpdtest/settings.py).
Every event is one JSON line on stdout, so that a test can count what this
side did: {"event": "ready" | "task" | "sweep" | "zombie" | "retired" |
"error" | "stopped", ...}.

  refdaemon.py [--server-id N] [--sweep-every N] [--idle-sleep S]
"""
import argparse
import json
import os
import signal
import struct
import sys
import time

#: The reference daemon's zombie message (eoxserver-atpd.py cleanup()).
ZOMBIE_MESSAGE = "Reenqueued by ATPD after timeout."

stopping = False


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def on_signal(signum, frame):
    global stopping
    stopping = True


def new_server_id():
    """A random non-zero signed 64-bit id, as the reference drew it."""
    while True:
        raw = os.urandom(8)
        sid = struct.unpack("q", raw)[0]
        if sid != 0:
            return sid


def run_task(tracker, task_id):
    status = tracker.TaskStatus(task_id)
    try:
        type_id, ident, path, value = tracker.startTask(task_id)
        module, _, func = path.rpartition(".")
        # upstream's Importer: __import__ with a fromlist.
        handler = getattr(__import__(module, fromlist=[func]), func)
        handler(status, value)
        tracker.stopTaskSuccessIfNotFinished(task_id)
    except Exception as e:  # the reference: pStatus.setFailure(unicode(e))
        status.setFailure(str(e))
        emit(event="task", id=task_id, status=tracker.getTaskStatus(task_id)[0], error=str(e))
        return
    emit(event="task", id=task_id, status=tracker.getTaskStatus(task_id)[0])


def cleanup(tracker):
    zombies = tracker.reenqueueZombieTasks(ZOMBIE_MESSAGE)
    for task_id, name in zombies:
        emit(event="zombie", id=task_id, task=name)
    for task_id, name in tracker.deleteRetiredTasks():
        emit(event="retired", id=task_id, task=name)
    emit(event="sweep", zombies=len(zombies))


def main(argv=None):
    p = argparse.ArgumentParser(description="reference-protocol ATP daemon (one process)")
    p.add_argument("--server-id", type=lambda v: int(v, 0), default=None)
    p.add_argument("--sweep-every", type=int, default=300, help="clean up after this many dequeues")
    p.add_argument("--idle-sleep", type=float, default=1.5, help="seconds to sleep on an empty queue")
    args = p.parse_args(argv)

    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atpdtest.settings")
    import django

    django.setup()
    import tracker
    from django.db import connection

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sid = args.server_id if args.server_id else new_server_id()
    emit(event="ready", server_id="0x%016X" % (sid & 0xFFFFFFFFFFFFFFFF), pid=os.getpid())

    dequeues = 0
    while not stopping:
        try:
            try:
                ids = tracker.dequeueTask(sid)
            except tracker.QueueEmpty:
                cleanup(tracker)
                time.sleep(args.idle_sleep)
                continue
            for task_id in ids:
                run_task(tracker, task_id)
            dequeues += 1
            if dequeues >= args.sweep_every:
                dequeues = 0
                cleanup(tracker)
        except Exception as e:
            # A lost connection: Django reconnects on the next query once
            # the broken one is closed.
            emit(event="error", error="%s: %s" % (type(e).__name__, e))
            connection.close()
            time.sleep(0.2)
    emit(event="stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
