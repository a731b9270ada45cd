#!/usr/bin/env python3
"""A command-line Python producer over tracker.py (the EOxServer producer
API on the Django ORM), for tests that check atpd against what unmodified
Python producers write and read. Every subcommand prints one JSON document.

The database comes from the ATPD_DJANGO_* environment (atpdtest/settings.py).

  register TYPE HANDLER [--timeout S] [--timeret S] [--maxrestart N]
  unregister TYPE [--force]
  enqueue TYPE ID (--json J | --literal PY | --expr PY) [--protocol N] [--message M]
  status TYPE ID          {"status": code, "text": "RUNNING"}
  instance TYPE ID        the instance row, times as ISO 8601
  input TYPE ID           stored text, repr() of the unpickled input (and JSON when possible)
  log TYPE ID             getTaskLog: [{"time", "status", "text", "message"}]
  response TYPE ID        {"response_b64", "mimeType", "text" (when UTF-8)}
  delete TYPE ID          deleteTaskByIdentifier
  dequeue SERVER_ID       dequeueTask: {"ids": [...]}
  start TYPE ID           startTask
  set-status TYPE ID {FINISHED,FAILED,PAUSED,RUNNING} [--message M]
  age TYPE ID --time-update ISO   move timeUpdate into the past (update(), no auto_now)
  step SERVER_ID          one reference-daemon step: dequeue, start, run handler, stop
  sweep [--message M]     reenqueueZombieTasks
  retire                  deleteRetiredTasks
  dump                    every row of the six tables, as the DB driver returns them
  batch                   one command per stdin line, a JSON array of arguments;
                          one JSON line out each: {"exit", "result"} or {"exit", "error", "message"}

Times are isoformat(timespec="microseconds") of the datetime the ORM returns:
aware UTC under USE_TZ, naive TIME_ZONE local time otherwise.

Exit status: 0 success, 1 other error, 2 usage, 3 QueueFull, 4 no such type
or instance, 5 QueueEmpty, 6 type protected by its instances, 7 integrity
error (e.g. duplicate instance identifier). Errors go to stderr as JSON.
"""
import argparse
import ast
import base64
import datetime
import decimal
import json
import os
import sqlite3
import sys

EXIT_ERROR = 1
EXIT_QUEUE_FULL = 3
EXIT_NOT_FOUND = 4
EXIT_QUEUE_EMPTY = 5
EXIT_PROTECTED = 6
EXIT_INTEGRITY = 7

TABLES = (
    "processes_type",
    "processes_instance",
    "processes_task",
    "processes_logrecord",
    "processes_input",
    "processes_response",
)

#: The reference daemon's zombie message (eoxserver-atpd.py cleanup()).
ZOMBIE_MESSAGE = "Reenqueued by ATPD after timeout."


def setup():
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atpdtest.settings")
    import django

    django.setup()


def iso(value):
    if value is None:
        return None
    return value.isoformat(timespec="microseconds")


def parse_input(args):
    if args.json is not None:
        return json.loads(args.json)
    if args.literal is not None:
        return ast.literal_eval(args.literal)
    # Inputs of objects literals cannot spell (datetime, Decimal, ...).
    namespace = {
        "datetime": datetime,
        "Decimal": decimal.Decimal,
        "__builtins__": {"set": set, "frozenset": frozenset, "bytes": bytes, "bytearray": bytearray},
    }
    return eval(args.expr, namespace)


def instance_of(type_id, identifier):
    from processes.models import Type

    return Type.objects.get(identifier=type_id).instance_set.get(identifier=identifier)


def cmd_register(args, tracker):
    from processes.models import Type

    tracker.registerTaskType(args.type, args.handler, args.timeout, args.timeret, args.maxrestart)
    t = Type.objects.get(identifier=args.type)
    return {
        "id": t.id,
        "identifier": t.identifier,
        "handler": t.handler,
        "maxstart": t.maxstart,
        "timeout": t.timeout,
        "timeret": t.timeret,
    }


def cmd_unregister(args, tracker):
    tracker.unregisterTaskType(args.type, args.force)
    return {"unregistered": args.type}


def cmd_enqueue(args, tracker):
    value = parse_input(args)
    inst_id = tracker.enqueueTask(args.type, args.id, value, args.message, protocol=args.protocol)
    from processes.models import Input

    return {
        "id": inst_id,
        "type": args.type,
        "identifier": args.id,
        "status": tracker.getTaskStatus(inst_id)[0],
        "input": Input.objects.get(instance_id=inst_id).input,
    }


def cmd_status(args, tracker):
    code, text = tracker.getTaskStatusByIdentifier(args.type, args.id)
    return {"status": code, "text": text}


def cmd_instance(args, tracker):
    inst = instance_of(args.type, args.id)
    return {
        "id": inst.id,
        "type": inst.type.identifier,
        "identifier": inst.identifier,
        "status": inst.status,
        "timeInsert": iso(inst.timeInsert),
        "timeUpdate": iso(inst.timeUpdate),
    }


def cmd_input(args, tracker):
    from processes.models import Input

    stored = Input.objects.get(instance=instance_of(args.type, args.id)).input
    value = tracker.decodeInput(stored)
    out = {"stored": stored, "repr": repr(value), "json": None}
    try:
        out["json"] = json.loads(json.dumps(value))
    except (TypeError, ValueError):
        pass
    return out


def cmd_log(args, tracker):
    code, text = tracker.getTaskStatusByIdentifier(args.type, args.id)
    records = [
        {"time": iso(t), "status": status[0], "text": status[1], "message": message}
        for t, status, message in tracker.getTaskLog(args.type, args.id)
    ]
    return {"type": args.type, "identifier": args.id, "status": code, "text": text, "records": records}


def cmd_response(args, tracker):
    data, mime = tracker.getTaskResponse(args.type, args.id)
    out = {"response_b64": base64.b64encode(data).decode("ascii"), "mimeType": mime}
    try:
        out["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return out


def cmd_delete(args, tracker):
    from processes.models import Type

    existed = Type.objects.get(identifier=args.type).instance_set.filter(identifier=args.id).exists()
    tracker.deleteTaskByIdentifier(args.type, args.id)
    return {"deleted": existed}


def cmd_step(args, tracker):
    """What the reference daemon does with one dequeue, run in-process."""
    ids = tracker.dequeueTask(args.server_id, args.message)
    results = []
    for task_id in ids:
        status = tracker.TaskStatus(task_id)
        try:
            _, _, handler_path, value = tracker.startTask(task_id)
            module, _, func = handler_path.rpartition(".")
            # upstream's Importer: __import__ with a fromlist, so that a path
            # naming a submodule imports it (and then fails as not callable).
            handler = getattr(__import__(module, fromlist=[func]), func)
            handler(status, value)
            tracker.stopTaskSuccessIfNotFinished(task_id)
        except Exception as e:  # the daemon fails the task with str(e)
            status.setFailure(str(e))
        code, text = tracker.getTaskStatus(task_id)
        results.append({"id": task_id, "status": code, "text": text})
    return {"ids": ids, "results": results}


def cmd_dequeue(args, tracker):
    return {"ids": tracker.dequeueTask(args.server_id, args.message)}


def cmd_start(args, tracker):
    inst = instance_of(args.type, args.id)
    type_id, inst_id, handler, value = tracker.startTask(inst.id, args.message)
    return {"id": inst.id, "type": type_id, "identifier": inst_id, "handler": handler, "input_repr": repr(value)}


def cmd_set_status(args, tracker):
    from processes.models import TEXT2STATUS

    inst = instance_of(args.type, args.id)
    setter = {
        "FINISHED": tracker.stopTaskSuccess,
        "FAILED": tracker.stopTaskFailure,
        "PAUSED": tracker.pauseTask,
        "RUNNING": tracker.resumeTask,
    }[args.status]
    setter(inst.id, args.message)
    return {"id": inst.id, "status": TEXT2STATUS[args.status]}


def cmd_age(args, tracker):
    """Moves timeUpdate to the past without saving (so auto_now keeps out),
    as tests do to make zombies and retired tasks."""
    from django.conf import settings
    from django.utils import timezone

    when = datetime.datetime.fromisoformat(args.time_update)
    if settings.USE_TZ and timezone.is_naive(when):
        when = timezone.make_aware(when)
    inst = instance_of(args.type, args.id)
    type(inst).objects.filter(id=inst.id).update(timeUpdate=when)
    return {"id": inst.id, "timeUpdate": iso(type(inst).objects.get(id=inst.id).timeUpdate)}


def cmd_sweep(args, tracker):
    return [{"id": i, "task": name} for i, name in tracker.reenqueueZombieTasks(args.message)]


def cmd_retire(args, tracker):
    return [{"id": i, "task": name} for i, name in tracker.deleteRetiredTasks()]


def dump_value(value):
    # PostgreSQL datetimes are printed as Python prints them, as in the
    # reference rows; SQLite values are already the raw stored text.
    if isinstance(value, datetime.datetime):
        return str(value)
    return value


def cmd_dump(args, tracker):
    from django.db import connection

    out = {}
    if connection.vendor == "sqlite":
        # Django's connection converts datetime columns; the raw text is the point.
        raw = sqlite3.connect("file:%s?mode=ro" % connection.settings_dict["NAME"], uri=True)
        try:
            for table in TABLES:
                cur = raw.execute('SELECT * FROM "%s" ORDER BY id' % table)
                cols = [d[0] for d in cur.description]
                out[table] = [dict(zip(cols, row)) for row in cur.fetchall()]
        finally:
            raw.close()
        return out
    with connection.cursor() as cur:
        for table in TABLES:
            cur.execute('SELECT * FROM "%s" ORDER BY id' % table)
            cols = [d[0] for d in cur.description]
            out[table] = [{c: dump_value(v) for c, v in zip(cols, row)} for row in cur.fetchall()]
    return out


def parser():
    p = argparse.ArgumentParser(description="Python ATP producer over the Django ORM (prints JSON)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("register", help="registerTaskType")
    s.add_argument("type")
    s.add_argument("handler")
    s.add_argument("--timeout", type=float, default=3600)
    s.add_argument("--timeret", type=float, default=-1)
    s.add_argument("--maxrestart", type=int, default=2)
    s.set_defaults(func=cmd_register)

    s = sub.add_parser("unregister", help="unregisterTaskType")
    s.add_argument("type")
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_unregister)

    s = sub.add_parser("enqueue", help="enqueueTask")
    s.add_argument("type")
    s.add_argument("id")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--json", help="the input as JSON")
    g.add_argument("--literal", help="the input as a Python literal (tuples, sets, bytes, ...)")
    g.add_argument("--expr", help="the input as a Python expression over datetime and Decimal")
    s.add_argument("--protocol", type=int, default=None, help="pickle protocol (default: pickle's)")
    s.add_argument("--message", default="")
    s.set_defaults(func=cmd_enqueue)

    for name, func, doc in (
        ("status", cmd_status, "getTaskStatusByIdentifier"),
        ("instance", cmd_instance, "the instance row"),
        ("input", cmd_input, "the stored and decoded input"),
        ("log", cmd_log, "getTaskLog"),
        ("response", cmd_response, "getTaskResponse"),
        ("delete", cmd_delete, "deleteTaskByIdentifier"),
    ):
        s = sub.add_parser(name, help=doc)
        s.add_argument("type")
        s.add_argument("id")
        s.set_defaults(func=func)

    s = sub.add_parser("step", help="dequeue and run tasks as the reference daemon does")
    s.add_argument("server_id", type=lambda v: int(v, 0), help="server id (decimal or 0x hex)")
    s.add_argument("--message", default="")
    s.set_defaults(func=cmd_step)

    s = sub.add_parser("dequeue", help="dequeueTask")
    s.add_argument("server_id", type=lambda v: int(v, 0), help="server id (decimal or 0x hex)")
    s.add_argument("--message", default="")
    s.set_defaults(func=cmd_dequeue)

    s = sub.add_parser("start", help="startTask")
    s.add_argument("type")
    s.add_argument("id")
    s.add_argument("--message", default="")
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("set-status", help="stopTaskSuccess, stopTaskFailure, pauseTask, resumeTask")
    s.add_argument("type")
    s.add_argument("id")
    s.add_argument("status", choices=["FINISHED", "FAILED", "PAUSED", "RUNNING"])
    s.add_argument("--message", default="")
    s.set_defaults(func=cmd_set_status)

    s = sub.add_parser("age", help="set timeUpdate (ISO 8601; naive means TIME_ZONE)")
    s.add_argument("type")
    s.add_argument("id")
    s.add_argument("--time-update", required=True)
    s.set_defaults(func=cmd_age)

    s = sub.add_parser("batch", help="run JSON-array command lines from stdin in one process")
    s.set_defaults(func=cmd_batch)

    s = sub.add_parser("sweep", help="reenqueueZombieTasks")
    s.add_argument("--message", default=ZOMBIE_MESSAGE)
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("retire", help="deleteRetiredTasks")
    s.set_defaults(func=cmd_retire)

    s = sub.add_parser("dump", help="every row of the six ATP tables")
    s.set_defaults(func=cmd_dump)
    return p


class Failure(Exception):
    def __init__(self, code, kind, message):
        super().__init__(message)
        self.code, self.kind = code, kind


def run(args, tracker):
    """Runs one parsed command; returns its result or raises Failure."""
    from django.core.exceptions import ObjectDoesNotExist
    from django.db import IntegrityError
    from django.db.models import ProtectedError

    try:
        return args.func(args, tracker)
    except tracker.QueueFull as e:
        raise Failure(EXIT_QUEUE_FULL, "QueueFull", str(e))
    except tracker.QueueEmpty as e:
        raise Failure(EXIT_QUEUE_EMPTY, "QueueEmpty", str(e))
    except ObjectDoesNotExist as e:
        raise Failure(EXIT_NOT_FOUND, "DoesNotExist", str(e))
    except ProtectedError as e:  # before IntegrityError: it is one
        raise Failure(EXIT_PROTECTED, "ProtectedError", str(e))
    except IntegrityError as e:
        raise Failure(EXIT_INTEGRITY, "IntegrityError", str(e))
    except Exception as e:
        raise Failure(EXIT_ERROR, type(e).__name__, str(e))


def cmd_batch(args, tracker):
    """Runs one command per stdin line (a JSON array of arguments) in this
    one process, printing one JSON line each: {"exit": 0, "result": ...} or
    {"exit": N, "error": kind, "message": text}. Starting Python and Django
    once instead of per command makes long scripted runs fast."""
    p = parser()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            argv = json.loads(line)
            sub = p.parse_args([str(a) for a in argv])
            if sub.command == "batch":
                raise Failure(EXIT_ERROR, "UsageError", "batch cannot nest")
            out = {"exit": 0, "result": run(sub, tracker)}
        except Failure as f:
            out = {"exit": f.code, "error": f.kind, "message": str(f)}
        except SystemExit as e:  # argparse rejected the line
            out = {"exit": e.code if isinstance(e.code, int) else 2, "error": "UsageError", "message": line.strip()}
        except ValueError as e:  # the line is not JSON
            out = {"exit": 2, "error": "UsageError", "message": str(e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return None


def main(argv=None):
    args = parser().parse_args(argv)
    setup()
    import tracker

    if args.command == "batch":
        cmd_batch(args, tracker)
        return 0
    try:
        result = run(args, tracker)
    except Failure as f:
        json.dump({"error": f.kind, "message": str(f)}, sys.stderr)
        sys.stderr.write("\n")
        return f.code
    json.dump(result, sys.stdout, indent=1 if args.command == "dump" else None)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
