"""Settings of the atpd integration project, read only from the environment.

ATPD_DJANGO_ENGINE    postgresql | sqlite3 (default sqlite3)
ATPD_DJANGO_NAME      database name, or the SQLite file (default atpd.sqlite3
                      beside manage.py)
ATPD_DJANGO_USER, ATPD_DJANGO_PASSWORD, ATPD_DJANGO_HOST, ATPD_DJANGO_PORT
                      PostgreSQL connection (defaults: postgres, "", 127.0.0.1, 5432)
ATPD_DJANGO_USE_TZ    1 | 0 (default 1)
ATPD_DJANGO_TIME_ZONE Django TIME_ZONE (default UTC)

Only the `processes` app is installed: after `atpd migrate` has created the
ATP tables and recorded their migrations, Django's own `migrate` must find
nothing left to do, which would not hold with contenttypes or auth installed.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name, default=""):
    return os.environ.get("ATPD_DJANGO_" + name, default)


def _flag(name, default):
    value = _env(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("ATPD_DJANGO_%s: want 1 or 0, got %r" % (name, value))


_ENGINES = {"postgresql", "sqlite3"}
_engine = _env("ENGINE", "sqlite3")
if _engine not in _ENGINES:
    raise ValueError("ATPD_DJANGO_ENGINE: want postgresql or sqlite3, got %r" % _engine)

if _engine == "sqlite3":
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _env("NAME") or str(BASE_DIR / "atpd.sqlite3"),
    }
else:
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _env("NAME", "test"),
        "USER": _env("USER", "postgres"),
        "PASSWORD": _env("PASSWORD"),
        "HOST": _env("HOST", "127.0.0.1"),
        "PORT": _env("PORT", "5432"),
    }

DATABASES = {"default": _db}

USE_TZ = _flag("USE_TZ", "1")
TIME_ZONE = _env("TIME_ZONE") or "UTC"

INSTALLED_APPS = ["processes"]

# Upstream's tables have serial integer keys; BigAutoField would change the DDL.
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Not a web project: the key only has to be non-empty for Django to start.
SECRET_KEY = "atpd-integration-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = []
USE_I18N = False
