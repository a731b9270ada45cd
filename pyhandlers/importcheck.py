# Imports handler paths as the reference daemon's Importer did, for
# `atpd check`: path.rpartition("."), __import__(module, fromlist=[func]),
# getattr, after django.setup() with the daemon's settings module, on the
# daemon's interpreter and sys.path. Reads {"settings": ..., "path": [...],
# "handlers": [...]} as JSON on stdin and prints one marked JSON line. Valid
# Python 2.7 and 3: old EOxServer deployments still run Python 2.
import json
import os
import sys

MARK = "ATPD-IMPORT-CHECK: "


def text(e):
    try:
        return "%s" % (e,)
    except Exception:
        return repr(e)


def native(s):
    # Python 2's __import__ wants byte strings in its fromlist.
    if sys.version_info[0] == 2 and not isinstance(s, str):
        return s.encode("utf-8")
    return s


def emit(obj):
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def check(path):
    try:
        modname, _, func = native(path).rpartition(".")
        handler = getattr(__import__(modname, fromlist=[func]), func)
    except BaseException as e:  # SystemExit or KeyboardInterrupt raised by a module too
        return {"handler": path, "error": text(e), "class": type(e).__name__}
    if not callable(handler):
        # What calling it would raise, as the task's FAILED message.
        return {"handler": path, "error": "'%s' object is not callable" % type(handler).__name__, "class": "TypeError"}
    return {"handler": path}


def main():
    req = json.loads(sys.stdin.read())
    # As in atpd's workers: no current directory on the path.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    for p in req.get("path") or []:
        sys.path.append(native(p))
    settings = native(req.get("settings") or "")
    if settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings
        try:
            import django
            if hasattr(django, "setup"):
                django.setup()
        except BaseException as e:
            emit({"setup_error": "django.setup() with settings %s failed: %s: %s" % (settings, type(e).__name__, text(e))})
            return 0
    emit({"version": "%d.%d.%d" % sys.version_info[:3], "results": [check(h) for h in req.get("handlers") or []]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
