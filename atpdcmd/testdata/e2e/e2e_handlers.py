"""Python handlers for atpd's end-to-end tests (cmd/atpd/e2e_test.go), run
by atpd's CPython workers with this directory on the path (-p)."""
import os
import time


def raiser(taskStatus, input):
    # As the reference run's Raiser: str(KeyError(x)) keeps the quotes.
    raise KeyError("missing %s" % sorted(input))


def _sleep_while_parent_lives(seconds):
    """Sleeps, but ends the process when the daemon dies: a SIGKILLed
    daemon cannot stop its workers, and an orphan must not linger."""
    parent = os.getppid()
    end = time.time() + seconds
    while time.time() < end:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.02)


def sleeper(taskStatus, input):
    """Sleeps input[0] seconds, then stores "slept" as the response."""
    _sleep_while_parent_lives(float(input[0]))
    taskStatus.storeResponse("slept", "text/plain")


def sleep_once(taskStatus, input):
    """The first run (marker file input[0] missing) creates the marker and
    sleeps input[1] seconds; later runs succeed at once."""
    marker = input[0]
    if not os.path.exists(marker):
        open(marker, "w").close()
        _sleep_while_parent_lives(float(input[1]))
    taskStatus.storeResponse("second run", "text/plain")


def every_method(taskStatus, input):
    """Calls every TaskStatus method; the response records what the getters
    and constants returned, as JSON."""
    import json
    seen = {
        "info": list(taskStatus.getInfo()),
        "identifier": list(taskStatus.getIdentifier()),
        "status": list(taskStatus.getStatus()),
        "constants": [taskStatus.ACCEPTED, taskStatus.SCHEDULED, taskStatus.RUNNING,
                      taskStatus.PAUSED, taskStatus.FINISHED, taskStatus.FAILED],
    }
    taskStatus.setPaused("pausing")
    seen["paused"] = list(taskStatus.getStatus())
    taskStatus.setRunning("resuming")
    taskStatus.storeResponse(json.dumps(seen, sort_keys=True), "application/json")
    taskStatus.setSuccess("all done")


def exits(taskStatus, input):
    os._exit(3)


def killed(taskStatus, input):
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def chatty(taskStatus, input):
    """Prints input[0] lines of 1 KiB to stdout and stderr, then answers."""
    import sys
    line = "x" * 1023
    for i in range(int(input[0])):
        print(line)
        sys.stderr.write(line + "\n")
    taskStatus.storeResponse("printed", "text/plain")


def orm(taskStatus, input):
    """Uses the Django ORM of the settings module atpd was started with."""
    from processes.models import Type
    taskStatus.storeResponse(",".join(sorted(Type.objects.values_list("identifier", flat=True))), "text/plain")
