"""The six ATP tables of EOxServer's `processes` app (ATP-SPEC.md section 1).

Field names, types, lengths, defaults and constraints reproduce the schema
EOxServer has used since 2012, so that Django's migrate here makes exactly the
tables a deployment has. Names stay camelCase where upstream's do, because
they are column names.
"""
from django.db import models

STATUS2TEXT = {
    0: "UNDEFINED",
    1: "ACCEPTED",
    2: "SCHEDULED",
    3: "RUNNING",
    4: "PAUSED",
    5: "FINISHED",
    6: "FAILED",
}
TEXT2STATUS = {text: code for code, text in STATUS2TEXT.items()}


class Type(models.Model):
    """A task type: the handler's dotted path and its time limits."""

    identifier = models.CharField(max_length=64, unique=True, editable=False)
    handler = models.CharField(max_length=1024, editable=False)
    maxstart = models.IntegerField(default=3, editable=False)
    timeout = models.FloatField(default=3600.0, editable=False)
    timeret = models.FloatField(default=-1.0, editable=False)

    def __str__(self):
        return self.identifier


class Instance(models.Model):
    """One task; its status is the latest of its log records."""

    # PROTECT: unregistering a type must not silently drop its tasks.
    type = models.ForeignKey(Type, on_delete=models.PROTECT, editable=False)
    identifier = models.CharField(max_length=64, editable=False)
    timeInsert = models.DateTimeField(auto_now_add=True, editable=False)
    timeUpdate = models.DateTimeField(auto_now=True, editable=False)
    status = models.IntegerField(editable=False)

    class Meta:
        unique_together = (("identifier", "type"),)

    def __str__(self):
        return "%s::%s" % (self.type.identifier, self.identifier)


class Task(models.Model):
    """The queue: a waiting (lock 0) or claimed (lock = server id) task."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, editable=False)
    time = models.DateTimeField(auto_now=True, editable=False)
    lock = models.BigIntegerField(default=0)

    def __str__(self):
        return str(self.instance)


class LogRecord(models.Model):
    """One status change of an instance."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, editable=False)
    time = models.DateTimeField(auto_now=True, editable=False)
    status = models.IntegerField(choices=sorted(STATUS2TEXT.items()), editable=False)
    message = models.TextField(editable=False)

    def __str__(self):
        return "%s [%s] %s %s" % (self.time, self.instance, STATUS2TEXT.get(self.status), self.message)


class Response(models.Model):
    """The handler's response: base64(zlib(bytes)) and its MIME type."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, editable=False)
    response = models.TextField(editable=False)
    mimeType = models.TextField(editable=True)

    def __str__(self):
        return str(self.instance)


class Input(models.Model):
    """The task input: base64(zlib(pickle)) as the producer stored it."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, editable=False)
    input = models.TextField(editable=False)

    def __str__(self):
        return str(self.instance)
