"""Handlers for the fidelity tests (pyhandlers/fidelity_test.go), run by
the CPython workers and by gpython: each does one thing whose rows the
reference daemon's are known for (the measured facts in the test)."""


class Point(object):
    """An input object Go cannot represent: iterable through __iter__."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __iter__(self):
        return iter((self.x, self.y))


def none_success(taskStatus, input):
    taskStatus.setSuccess(None)


def none_mime(taskStatus, input):
    taskStatus.storeResponse("15.0", None)


def bytes_running(taskStatus, input):
    taskStatus.setRunning(b"bytes msg")


def store_int(taskStatus, input):
    taskStatus.storeResponse(42)


def store_twice(taskStatus, input):
    taskStatus.storeResponse("first", "text/plain")
    taskStatus.storeResponse("second", "text/xml")


def long_message(taskStatus, input):
    raise ValueError("x" * 70000)


def has_db_lock(taskStatus, input):
    taskStatus.dbLock.acquire()
    taskStatus.dbLock.release()
    taskStatus.storeResponse("task_id " + str(taskStatus.task_id), "text/plain")
