"""The ATP producer API (ATP-SPEC.md section 4) over the Django ORM.

A Python 3 re-implementation of EOxServer's
eoxserver.resources.processes.tracker, written to behave like it call for
call, row for row: it is what "existing Python producers" do to the tables
atpd shares with them, so the integration tests use it as the reference side.
Like upstream, it runs in Django's autocommit mode (every save is its own
transaction) and leaves cascades to the ORM.

Where upstream has quirks that producers can observe, they are kept and
marked "upstream:" below; the Go daemon may deliberately differ (for example
it enforces maxstart, which upstream never does).

Import it after django.setup(), with integration/ on sys.path.
"""
import base64
import datetime
import pickle
import zlib

from django.utils import timezone

from processes.models import STATUS2TEXT, TEXT2STATUS, Input, Instance, LogRecord, Response, Task, Type

#: Queue size limit: enqueueTask refuses when this many tasks wait (lock 0).
MAX_QUEUE_SIZE = 64

#: A task row claimed (lock != 0) longer than this many seconds belongs to a
#: daemon that died while pulling.
PULL_TIMEOUT = 60

#: Pickle protocol enqueueTask uses when the caller gives none; None is
#: pickle's default. Python 2 producers wrote 0 (cPickle's default) or 2.
PICKLE_PROTOCOL = None


class QueueException(Exception):
    """Base of the task queue's exceptions."""


class QueueEmpty(QueueException):
    """No task could be pulled from the queue."""


class QueueFull(QueueException):
    """The queue holds MAX_QUEUE_SIZE waiting tasks; nothing can be pushed."""


def dummyHandler(taskStatus, input):
    """The prototype of a handler: handler(taskStatus, input)."""


class DummyLock:
    """A lock that does not lock, for callers that need no DB serialisation."""

    def acquire(self):
        pass

    def release(self):
        pass


def dbLocker(dbLock, func, *args, **kwargs):
    """Call func(*args, **kwargs) holding dbLock."""
    dbLock.acquire()
    try:
        return func(*args, **kwargs)
    finally:
        dbLock.release()


class TaskStatus:
    """What a handler gets to read and change its own task.

    task_id is the processes_instance id. The status codes are class
    attributes (TaskStatus.FINISHED == 5), as upstream sets them.
    """

    def __init__(self, task_id, dbLock=None):
        self.task_id = task_id
        self.dbLock = dbLock if dbLock is not None else DummyLock()

    def getInfo(self):
        """(type identifier, instance identifier, status code, status text)."""
        return dbLocker(self.dbLock, getTaskInfo, self.task_id)

    def getIdentifier(self):
        """(type identifier, instance identifier)."""
        return dbLocker(self.dbLock, getTaskIdentifier, self.task_id)

    def getStatus(self):
        """(status code, status text)."""
        return dbLocker(self.dbLock, getTaskStatus, self.task_id)

    def setSuccess(self, message=""):
        dbLocker(self.dbLock, stopTaskSuccess, self.task_id, message)

    def setFailure(self, message=""):
        dbLocker(self.dbLock, stopTaskFailure, self.task_id, message)

    def setPaused(self, message=""):
        dbLocker(self.dbLock, pauseTask, self.task_id, message)

    def setRunning(self, message=""):
        dbLocker(self.dbLock, resumeTask, self.task_id, message)

    def storeResponse(self, response, mimeType="text/xml"):
        dbLocker(self.dbLock, setTaskResponse, self.task_id, response, mimeType)


for _text, _code in TEXT2STATUS.items():
    setattr(TaskStatus, _text, _code)


# --- task types ---------------------------------------------------------------


def registerTaskType(identifier, handler, timeout=3600, timeret=-1, maxrestart=2):
    """Create the task type, or update it when it exists."""
    timeout = max(0, timeout)
    timeret = timeret if timeret > 0 else -1
    maxstart = 1 + max(0, int(maxrestart))
    try:
        obj = Type.objects.get(identifier=identifier)
    except Type.DoesNotExist:
        obj = Type(identifier=identifier)
    obj.handler = handler
    obj.timeout = timeout
    obj.timeret = timeret
    obj.maxstart = maxstart
    obj.save()


def unregisterTaskType(identifier, force=False):
    """Delete a task type. Without force, django.db.models.ProtectedError is
    raised while instances of the type exist; with it they are deleted first,
    with all their rows."""
    if force:
        Type.objects.get(identifier=identifier).instance_set.all().delete()
    Type.objects.get(identifier=identifier).delete()


# --- status changes -------------------------------------------------------------


def _logStatusChange(inst, message):
    # upstream: passes time=inst.timeUpdate, but LogRecord.time is auto_now,
    # so the record gets its own, slightly later, timestamp.
    LogRecord.objects.create(instance=inst, time=inst.timeUpdate, status=inst.status, message=message)


def _setTaskStatus(task_id, message, status):
    inst = Instance.objects.get(id=task_id)
    inst.status = status
    inst.save()
    # upstream: re-reads the instance before logging.
    _logStatusChange(Instance.objects.get(id=task_id), message)


def _getTaskStatus(task_id):
    return Instance.objects.get(id=task_id).status


def stopTaskSuccessIfNotFinished(task_id, message=""):
    """FINISHED, unless the handler already set FINISHED or FAILED."""
    if _getTaskStatus(task_id) not in (TaskStatus.FINISHED, TaskStatus.FAILED):
        _setTaskStatus(task_id, message, TaskStatus.FINISHED)


def stopTaskSuccess(task_id, message=""):
    _setTaskStatus(task_id, message, TaskStatus.FINISHED)


def stopTaskFailure(task_id, message=""):
    _setTaskStatus(task_id, message, TaskStatus.FAILED)


def pauseTask(task_id, message=""):
    _setTaskStatus(task_id, message, TaskStatus.PAUSED)


def resumeTask(task_id, message=""):
    _setTaskStatus(task_id, message, TaskStatus.RUNNING)


# --- queue --------------------------------------------------------------------------


def getQueueSize():
    """Number of waiting tasks (task rows with lock 0)."""
    return Task.objects.filter(lock=0).count()


def getMaxQueueSize():
    return MAX_QUEUE_SIZE


def encodeInput(input, protocol=None):
    """The stored form of a task input: base64(zlib(pickle)) as ASCII text."""
    if protocol is None:
        protocol = PICKLE_PROTOCOL
    return base64.b64encode(zlib.compress(pickle.dumps(input, protocol))).decode("ascii")


def decodeInput(text):
    return pickle.loads(zlib.decompress(base64.b64decode(text)))


def enqueueTask(type, identifier, input, message="", protocol=None):
    """Create an ACCEPTED instance of the type with its input and queue it.

    protocol (not in upstream's signature) picks the pickle protocol, so that
    tests can write what Python 2 producers wrote."""
    if getQueueSize() >= getMaxQueueSize():
        raise QueueFull
    typ = Type.objects.get(identifier=type)
    inst = typ.instance_set.create(identifier=identifier, status=TaskStatus.ACCEPTED)
    _logStatusChange(inst, message)
    Input.objects.create(instance=inst, input=encodeInput(input, protocol))
    # upstream: passes time=timeInsert; Task.time is auto_now and wins.
    inst.task_set.create(lock=0, time=inst.timeInsert)
    return inst.id


def reenqueueTask(task_id, message=""):
    """ACCEPTED again, with a new waiting task row; ignores the queue limit."""
    inst = Instance.objects.get(id=task_id)
    inst.status = TaskStatus.ACCEPTED
    inst.save()
    _logStatusChange(inst, message)
    inst.task_set.create(lock=0, time=inst.timeInsert)


def dequeueTask(serverID, message=""):
    """Claim the oldest waiting task for serverID and schedule every task
    this server holds; returns their instance ids (possibly none, possibly
    several). Raises QueueEmpty when no task waits."""
    while True:
        try:
            candidate = Task.objects.filter(lock=0).order_by("time")[:1].get().id
        except Task.DoesNotExist:
            raise QueueEmpty
        # One UPDATE is atomic: whoever changes lock from 0 owns the task.
        # upstream writes datetime.now(); timezone.now() is the same instant
        # without Django's naive-datetime warning under USE_TZ.
        if Task.objects.filter(id=candidate, lock=0).update(lock=serverID, time=timezone.now()):
            break

    ids = []
    for item in Task.objects.filter(lock=serverID).order_by("time"):
        ids.append(item.instance_id)
        item.instance.status = TaskStatus.SCHEDULED
        item.instance.save()
        _logStatusChange(Instance.objects.get(id=item.instance_id), message)
        item.delete()
    return ids


def startTask(task_id, message=""):
    """RUNNING; returns (type identifier, instance identifier, handler path,
    unpickled input)."""
    inst = Instance.objects.get(id=task_id)
    typeID = inst.type.identifier
    handler = inst.type.handler
    instID = inst.identifier
    input = decodeInput(Input.objects.get(instance=inst).input)
    inst.status = TaskStatus.RUNNING
    inst.save()
    _logStatusChange(Instance.objects.get(id=task_id), message)
    return (typeID, instID, handler, input)


# --- responses ------------------------------------------------------------------------


def setTaskResponse(task_id, response, mimeType="text/xml"):
    """Store base64(zlib(response)); later calls replace the response text.

    str responses are stored as their UTF-8 bytes (upstream's Python 2 str
    already was bytes)."""
    inst = Instance.objects.get(id=task_id)
    if isinstance(response, str):
        response = response.encode("utf-8")
    text = base64.b64encode(zlib.compress(response)).decode("ascii")
    try:
        resp = Response.objects.get(instance=inst)
    except Response.DoesNotExist:
        Response.objects.create(instance=inst, mimeType=mimeType, response=text)
        return
    # upstream: assigns resp.mineType (sic), so a replaced response keeps
    # its first MIME type.
    resp.mineType = mimeType
    resp.response = text
    resp.save()


def getTaskResponse(type, identifier):
    """(response bytes, MIME type)."""
    inst = Type.objects.get(identifier=type).instance_set.get(identifier=identifier)
    resp = Response.objects.get(instance=inst)
    return (zlib.decompress(base64.b64decode(resp.response)), resp.mimeType)


# --- inspection -------------------------------------------------------------------------


def getTaskInfo(task_id):
    inst = Instance.objects.get(id=task_id)
    return (inst.type.identifier, inst.identifier, inst.status, STATUS2TEXT[inst.status])


def getTaskIdentifier(task_id):
    inst = Instance.objects.get(id=task_id)
    return (inst.type.identifier, inst.identifier)


def getTaskStatus(task_id):
    inst = Instance.objects.get(id=task_id)
    return (inst.status, STATUS2TEXT[inst.status])


def getTaskStatusByIdentifier(type, identifier):
    inst = Type.objects.get(identifier=type).instance_set.get(identifier=identifier)
    return (inst.status, STATUS2TEXT[inst.status])


def getTaskLog(type, identifier):
    """[(time, (status, text), message)], oldest first."""
    inst = Type.objects.get(identifier=type).instance_set.get(identifier=identifier)
    return [
        (rec.time, (rec.status, STATUS2TEXT[rec.status]), rec.message)
        for rec in LogRecord.objects.filter(instance=inst).order_by("time")
    ]


# --- deletion and clean-up ----------------------------------------------------------------


def deleteTask(task_id):
    """Delete the instance and its rows; a missing id is not an error."""
    Instance.objects.filter(id=task_id).delete()


def deleteTaskByIdentifier(type, identifier):
    Type.objects.get(identifier=type).instance_set.filter(identifier=identifier).delete()


def reenqueueZombieTasks(message=""):
    """Re-enqueue timed-out SCHEDULED/RUNNING/PAUSED instances and task rows
    claimed longer than PULL_TIMEOUT ago; returns [(id, "Type::identifier")].

    upstream: never enforces maxstart (a TODO there), so neither does this."""
    stuck = (TaskStatus.PAUSED, TaskStatus.RUNNING, TaskStatus.SCHEDULED)
    done = []
    for ttype in Type.objects.all():
        limit = timezone.now() - datetime.timedelta(seconds=ttype.timeout)
        for inst in ttype.instance_set.filter(status__in=stuck, timeUpdate__lt=limit):
            done.append((inst.id, str(inst)))
            reenqueueTask(inst.id, message)

    limit = timezone.now() - datetime.timedelta(seconds=PULL_TIMEOUT)
    for task in Task.objects.exclude(lock=0).filter(time__lt=limit):
        inst_id = task.instance_id
        done.append((inst_id, str(task.instance)))
        Instance.objects.filter(id=inst_id).update(status=TaskStatus.SCHEDULED)
        task.delete()
        reenqueueTask(inst_id, message)
    return done


def deleteRetiredTasks():
    """Delete FINISHED/FAILED instances older than their type's timeret;
    returns [(id, "Type::identifier")]."""
    final = (TaskStatus.FINISHED, TaskStatus.FAILED)
    done = []
    for ttype in Type.objects.all():
        if ttype.timeret <= 0:
            continue
        limit = timezone.now() - datetime.timedelta(seconds=ttype.timeret)
        for inst in ttype.instance_set.filter(status__in=final, timeUpdate__lt=limit):
            done.append((inst.id, str(inst)))
            deleteTask(inst.id)
    return done
