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
