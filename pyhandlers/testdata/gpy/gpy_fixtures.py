"""Pure-Python handlers for the embedded (gpython) executor tests: only
what gpython (a Python 3.4 subset) implements."""


def every_method(taskStatus, input):
    """Calls every TaskStatus method; stores what it saw, one item a line."""
    seen = []
    seen.append("task_id=" + str(taskStatus.task_id))
    seen.append("identifier=" + repr(taskStatus.getIdentifier()))
    seen.append("info_running=" + repr(taskStatus.getInfo()))
    taskStatus.setPaused("paused by handler")
    seen.append("status_paused=" + repr(taskStatus.getStatus()))
    taskStatus.setRunning(message="resumed by handler")
    seen.append("info_resumed=" + repr(taskStatus.getInfo()))
    taskStatus.setFailure("failed by handler")
    seen.append("status_failed=" + repr(taskStatus.getStatus()))
    taskStatus.setSuccess()
    seen.append("status_finished=" + repr(taskStatus.getStatus()))
    for name in ("UNDEFINED", "ACCEPTED", "SCHEDULED", "RUNNING", "PAUSED", "FINISHED", "FAILED"):
        seen.append(name + "=" + str(getattr(taskStatus, name)))
    # gpython's str has no join.
    text = seen[0]
    for item in seen[1:]:
        text = text + "\n" + item
    taskStatus.storeResponse(text)


def joins(taskStatus, input):
    taskStatus.storeResponse(",".join(["a", "b"]))


def echo(taskStatus, input):
    taskStatus.storeResponse(repr(input), mimeType="text/plain")


def respond_bytes(taskStatus, input):
    taskStatus.storeResponse(b"\x00\x01binary", "application/octet-stream")


def raises(taskStatus, input):
    raise ValueError("bad value " + repr(input))


def key_error(taskStatus, input):
    return input["missing"]


def catch_status_error(taskStatus, input):
    try:
        taskStatus.setPaused("pause that fails")
    except Exception as e:
        # gpython's classes have no __name__.
        taskStatus.storeResponse("caught: " + str(e), "text/plain")


def imports_json(taskStatus, input):
    import json
    taskStatus.storeResponse(json.dumps(input))


def uses_helper(taskStatus, input):
    from gpy_pkg import helper
    from gpy_pkg.sub import twice
    taskStatus.storeResponse(helper.greet(str(twice(input))), "text/plain")


def exits(taskStatus, input):
    import os
    os._exit(3)


def spins(taskStatus, input):
    """Never returns by itself until told to through the file named input."""
    import os
    n = 0
    while True:
        n += 1
        if n % 100000 == 0:
            try:
                os.listdir(input)
                if "stop" in os.listdir(input):
                    return
            except Exception:
                pass


def prints(taskStatus, input):
    import sys
    for i in range(input):
        print("line", i)
    sys.stderr.write("to stderr\n")
    sys.stdout.write("no newline")


def noop(taskStatus, input):
    pass


def panics(taskStatus, input):
    # gpython's sets are Go maps keyed by the object; a tuple (a Go slice)
    # makes the Go runtime panic.
    return set([(1, 2)])
