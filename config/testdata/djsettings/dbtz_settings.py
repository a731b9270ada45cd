# A database with its own TIME_ZONE under USE_TZ (Django stores SQLite's
# naive timestamps in that zone then).
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent/db.sqlite3", "TIME_ZONE": "Europe/Vienna"},
}
TIME_ZONE = "UTC"
USE_TZ = True
SECRET_KEY = "x"
