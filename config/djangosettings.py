# Prints what atpd needs from a Django settings module as one JSON line.
# Run by atpd with DJANGO_SETTINGS_MODULE set: argv[1] is the database alias,
# argv[2:] directories to append to sys.path. Valid Python 2.7 and 3: old
# EOxServer deployments still run Python 2.
import json
import sys

MARK = "ATPD-DJANGO-SETTINGS: "

try:
    string_types = (str, unicode)  # noqa: F821 (Python 2)
except NameError:
    string_types = (str,)


def text(value):
    if value is None:
        return ""
    return "%s" % (value,)  # pathlib.Path, ints and str alike


def emit(obj):
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def django_settings():
    """Django's settings; under Python 2, for which no Django is
    installable here, the settings module itself when Django is missing
    (its TIME_ZONE and USE_TZ then default as Django's do)."""
    try:
        from django.conf import settings
        settings.DATABASES  # imports the module, through Django
        return settings
    except ImportError:
        if sys.version_info[0] != 2:
            raise
    import importlib
    import os
    return importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])


def main():
    alias = sys.argv[1]
    for d in sys.argv[2:]:
        sys.path.append(d)
    try:
        import django  # noqa: F401
    except ImportError as e:
        if sys.version_info[0] == 2:
            # No Django for Python 2 here: read the module itself below.
            pass
        else:
            # This interpreter has no Django at all: say which one it is.
            emit({"error": "%s: %s" % (type(e).__name__, e), "no_django": True,
                  "executable": sys.executable or sys.argv[0],
                  "version": "%d.%d.%d" % sys.version_info[:3]})
            return 2
    try:
        settings = django_settings()
        databases = settings.DATABASES
        time_zone = getattr(settings, "TIME_ZONE", "America/Chicago")
        use_tz = bool(getattr(settings, "USE_TZ", False))
    except Exception as e:
        emit({"error": "%s: %s" % (type(e).__name__, e)})
        return 2
    if alias not in databases:
        emit({"error": "no database alias %r in settings.DATABASES (aliases: %s)" % (
            alias, ", ".join(sorted(text(a) for a in databases)))})
        return 2
    db = databases[alias]
    options, skipped = {}, []
    for key, value in sorted((db.get("OPTIONS") or {}).items()):
        if isinstance(value, bool) or isinstance(value, (int, float)) or isinstance(value, string_types):
            options[text(key)] = value
        else:
            skipped.append(text(key))
    emit({
        "engine": text(db.get("ENGINE")),
        "name": text(db.get("NAME")),
        "user": text(db.get("USER")),
        "password": text(db.get("PASSWORD")),
        "host": text(db.get("HOST")),
        "port": text(db.get("PORT")),
        "options": options,
        "skipped_options": skipped,
        "time_zone": time_zone,
        "db_time_zone": db.get("TIME_ZONE"),
        "use_tz": use_tz,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
