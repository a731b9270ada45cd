"""Handlers for atpd's fidelity end-to-end test (cmd/atpd/fidelity_e2e_test.go)."""


class Point(object):
    """An input Go cannot represent: iterable through __iter__."""

    def __iter__(self):
        return iter((self.x, self.y))


def none_success(taskStatus, input):
    taskStatus.setSuccess(None)


def none_mime(taskStatus, input):
    taskStatus.storeResponse("15.0", None)


def long_message(taskStatus, input):
    raise ValueError("x" * 70000)


def store_twice(taskStatus, input):
    taskStatus.storeResponse("first", "text/plain")
    taskStatus.storeResponse("second", "text/xml")


# The Python demo under a path that no Go handler replaces.
from tools.atp_demo import handler as demo  # noqa: E402
