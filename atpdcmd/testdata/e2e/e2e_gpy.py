"""A pure-Python handler gpython (Python 3.4) can run, for atpd's
--executor routing test."""


def double(taskStatus, input):
    taskStatus.storeResponse(str([x * 2 for x in input]), "text/plain")
