from django.apps import AppConfig


class ProcessesConfig(AppConfig):
    # The label decides the table names (processes_type, ...) that atpd and
    # EOxServer producers share; it must not change.
    name = "processes"
    label = "processes"
    default_auto_field = "django.db.models.AutoField"
