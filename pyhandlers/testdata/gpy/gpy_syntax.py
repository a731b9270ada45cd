"""A module gpython cannot compile: an f-string (Python 3.6)."""


def handler(taskStatus, input):
    taskStatus.storeResponse(f"{input}")
