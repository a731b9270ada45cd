#!/usr/bin/env python3
"""Django's command-line utility for the atpd integration project.

The project exists only to let the real Django create and use the ATP tables
(app label ``processes``); everything about the database comes from ATPD_DJANGO_*
environment variables (see atpdtest/settings.py).
"""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atpdtest.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
