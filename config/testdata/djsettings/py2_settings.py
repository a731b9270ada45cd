# -*- coding: utf-8 -*-
# A Python 2 settings module of an old EOxServer deployment: Python 2
# syntax, no Django import (none is installable for Python 2 here).
import os

print "py2 settings loaded"  # a print statement: Python 2 only

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql_psycopg2',
        'NAME': 'eoxserver',
        'USER': u'eox',
        'PASSWORD': 's3cret',
        'HOST': 'db1,db2',
        'PORT': 5432L,
        'OPTIONS': {'target_session_attrs': 'read-write'},
    },
}
TIME_ZONE = 'Europe/Vienna'
USE_TZ = True
