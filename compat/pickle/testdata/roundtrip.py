#!/usr/bin/python3
"""Checks inputs encoded by the Go package (encode_test.go runs this).

argv[1] is a JSON list of cases:
  {"name", "input": stored text from pickle.Encode,
   "expr": a Python expression for the value it must load as, or
   "original": a stored text written by Python whose value it must equal,
   "check": an optional expression on obj that must be true,
   "only_check": true when the value contains itself and only check applies,
   "bytearray_as_bytes": true when a bytearray may come back as bytes}
Prints a JSON list of results. Besides loading each input with this
Python 3, it checks what Python 2.7 would need: protocol 2 opcodes at most,
and only classes Python 2.7 can import (datetime.timezone, which Python 2
lacks, is reported so the test can tell which values need Python 3).
"""
import base64
import collections
import datetime
import decimal
import json
import math
import pickle
import pickletools
import sys
import zlib

from pycommon import same


class Thing:
    def __init__(self, a=1):
        self.a = a


class WithArgs:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __reduce__(self):
        return (WithArgs, (self.x, self.y))


class MyList(list):
    pass


class MyDict(dict):
    pass


# Globals a Python 2.7 unpickler resolves (names as Python 2 spells them).
PY2_GLOBALS = {
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "complex"),
    ("__builtin__", "int"), ("__builtin__", "long"), ("__builtin__", "object"),
    ("_codecs", "encode"), ("datetime", "datetime"), ("datetime", "date"),
    ("datetime", "time"), ("datetime", "timedelta"), ("decimal", "Decimal"),
    ("copy_reg", "_reconstructor"), ("collections", "OrderedDict"),
}


def load(text):
    return pickle.loads(zlib.decompress(base64.b64decode(text)))


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    env = {"datetime": datetime, "decimal": decimal, "collections": collections, "math": math,
           "Thing": Thing, "WithArgs": WithArgs, "MyList": MyList, "MyDict": MyDict, "UTC": datetime.timezone.utc}
    results = []
    for c in cases:
        r = {"name": c["name"]}
        try:
            p = zlib.decompress(base64.b64decode(c["input"]))
            ops = list(pickletools.genops(p))
            r["protocol"] = max(op.proto for op, _, _ in ops)
            globs = sorted({tuple(arg.split(" ", 1)) for op, arg, _ in ops if op.name == "GLOBAL"})
            r["not_py2"] = ["%s.%s" % g for g in globs if g not in PY2_GLOBALS and g[0] != "__main__"]
            obj = pickle.loads(p)
            if c.get("only_check"):
                ok = bool(eval(c["check"], dict(env, obj=obj)))
                r.update(ok=ok, got=type(obj).__name__, want=c["check"])
                results.append(r)
                continue
            if "expr" in c:
                want = eval(c["expr"], env)
            else:
                want = load(c["original"])
            ok = same(obj, want, c.get("bytearray_as_bytes", False))
            if ok and c.get("check"):
                ok = bool(eval(c["check"], dict(env, obj=obj)))
            r.update(ok=ok, got=repr(obj)[:300], want=repr(want)[:300])
        except Exception as e:
            r.update(ok=False, error="%s: %s" % (type(e).__name__, e))
        results.append(r)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
