# A settings module atpd must refuse: MySQL has no atpd store.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "eox",
        "USER": "eox",
        "PASSWORD": "s3cret-mysql",
        "HOST": "db.example.org",
    },
}
TIME_ZONE = "UTC"
USE_TZ = True
SECRET_KEY = "x"
