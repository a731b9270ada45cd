# Prints while imported (as some deployments' settings do), uses a second
# alias, leaves TIME_ZONE None and has OPTIONS atpd cannot pass on.
print("settings loading... ATPD-DJANGO-SETTINGS: is not this line")
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent/default.sqlite3"},
    "queue": {
        "ENGINE": "django.contrib.gis.db.backends.postgis",
        "NAME": "eox db/1",
        "USER": "eox@site",
        "PASSWORD": "p@ss:w/rd%?&#",
        "HOST": "",
        "PORT": 5433,
        "OPTIONS": {"sslmode": "require", "isolation_level": 2, "init_command": ["a", "b"]},
    },
}
TIME_ZONE = None
USE_TZ = False
SECRET_KEY = "x"
