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


BYTES_LIKE = False  # set per case: a bytearray written back as bytes


def same(a, b):
    """Equal values of the same types, recursively (1 == 1.0 == True and
    (1,) != [1] matter here)."""
    if isinstance(a, collections.OrderedDict) or isinstance(b, collections.OrderedDict):
        return isinstance(a, dict) and isinstance(b, dict) and same(list(a.items()), list(b.items()))
    if BYTES_LIKE and isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        return bytes(a) == bytes(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        ok = len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return ok and (type(a).__module__ != "__main__" or same(vars(a), vars(b)))
    if isinstance(a, dict):
        # Position by position: keys such as Decimal('NaN') equal nothing.
        ok = len(a) == len(b) and all(same(k, l) for k, l in zip(a, b)) \
            and same(list(a.values()), list(b.values()))
        return ok and (type(a).__module__ != "__main__" or same(vars(a), vars(b)))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, type):
        return a is b
    if isinstance(a, (datetime.datetime, datetime.time)):
        return a == b and (a.tzinfo is None) == (b.tzinfo is None) and a.utcoffset() == b.utcoffset()
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return same(vars(a), vars(b))
    return a == b


def load(text):
    return pickle.loads(zlib.decompress(base64.b64decode(text)))


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    env = {"datetime": datetime, "decimal": decimal, "collections": collections, "math": math,
           "Thing": Thing, "WithArgs": WithArgs, "MyList": MyList, "MyDict": MyDict, "UTC": datetime.timezone.utc}
    global BYTES_LIKE
    results = []
    for c in cases:
        BYTES_LIKE = c.get("bytearray_as_bytes", False)
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
            ok = same(obj, want)
            if ok and c.get("check"):
                ok = bool(eval(c["check"], dict(env, obj=obj)))
            r.update(ok=ok, got=repr(obj)[:300], want=repr(want)[:300])
        except Exception as e:
            r.update(ok=False, error="%s: %s" % (type(e).__name__, e))
        results.append(r)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
