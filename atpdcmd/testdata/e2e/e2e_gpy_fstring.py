"""A handler gpython cannot compile (f-strings are Python 3.6): routed to
the embedded executor, its task must fail saying so."""


def describe(taskStatus, input):
    taskStatus.storeResponse(f"{input!r}", "text/plain")
