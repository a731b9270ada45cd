"""A handler that leaves proof of every execution, for the reliability tests
(reliability/): each call appends one line to a ledger file before doing
anything else, so counting a task's lines counts how often its handler ran,
whichever daemon ran it and however that daemon ended.

Registered as "tools.ledger.handler". The input is a dict:

  ledger   path of the ledger file (required)
  sleep    seconds to spend after writing the line (default 0)
  until    path of a file whose creation ends the sleep early (a gate the
           test opens once it has done what it does while the handler runs)
  respond  store the instance id as a text/plain response (default True)

A line is "<instance id> <tag> <pid>\\n", written with one write(2) on a
descriptor opened with O_APPEND, which appends it whole even when several
processes write at once. The tag is $RELIABILITY_LEDGER_TAG ("-" if unset),
so that a test running two kinds of daemon can tell who ran what.
"""
import os
import time


def _sleep_while_parent_lives(seconds, until=None):
    # A daemon killed with SIGKILL cannot stop its worker processes; a
    # worker whose parent is gone ends instead of finishing a long sleep.
    parent = os.getppid()
    end = time.time() + seconds
    while time.time() < end:
        if os.getppid() != parent:
            os._exit(0)
        if until and os.path.exists(until):
            return
        time.sleep(min(0.02, max(0.0, end - time.time())))


def handler(taskStatus, input):
    line = "%d %s %d\n" % (taskStatus.task_id, os.environ.get("RELIABILITY_LEDGER_TAG", "-"), os.getpid())
    fd = os.open(input["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)
    sleep = float(input.get("sleep", 0))
    if sleep > 0:
        _sleep_while_parent_lives(sleep, input.get("until"))
    if input.get("respond", True):
        taskStatus.storeResponse(str(taskStatus.task_id), "text/plain")


#: The same handler under a second dotted path, so that allow-list tests can
#: tell an allowed path from a refused one by the ledger alone.
other = handler
