#!/usr/bin/python2.7
# -*- coding: utf-8 -*-
"""Checks, under a real Python 2.7, inputs encoded by the Go package
(encode_test.go runs this beside roundtrip.py for the cases that need no
Python 3 class).

argv[1] is the JSON list of cases roundtrip.py takes, those with an
expression (an "original" is a Python 3 pickle, which Python 2 cannot
read). Each input is loaded with pickle and with cPickle; the expected
value is the case's expression read as Python 2 reads Python 3 source
under unicode_literals ('x' is unicode, b'x' is str). int and
long count as one type (Python 2 loads LONG1 as long); a Python 3 bytes
value is a Python 2 str. Prints a JSON list of {"name", "ok", "got",
"want", "error"}.
"""
import __future__
import base64
import collections
import cPickle
import datetime
import decimal
import json
import pickle
import sys
import zlib

from pycommon import same


class Thing(object):
    def __init__(self, a=1):
        self.a = a


class WithArgs(object):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __reduce__(self):
        return (WithArgs, (self.x, self.y))


class MyList(list):
    pass


class MyDict(dict):
    pass


class Math(object):
    """The parts of Python 3's math module the expressions use."""
    inf = float("inf")
    nan = float("nan")

    @staticmethod
    def isnan(x):
        return x != x


def expr_value(expr, env):
    code = compile(expr, "<expr>", "eval", __future__.unicode_literals.compiler_flag, True)
    return eval(code, env)


def main():
    cases = json.load(open(sys.argv[1]))
    env = {"datetime": datetime, "decimal": decimal, "collections": collections, "math": Math,
           "Thing": Thing, "WithArgs": WithArgs, "MyList": MyList, "MyDict": MyDict,
           "list": list, "range": range, "frozenset": frozenset, "set": set, "complex": complex, "int": int}
    results = []
    for c in cases:
        for loader in (pickle, cPickle):
            r = {"name": c["name"], "loader": loader.__name__}
            try:
                p = zlib.decompress(base64.b64decode(c["input"]))
                obj = loader.loads(p)
                if c.get("only_check"):
                    ok = bool(expr_value(c["check"], dict(env, obj=obj)))
                    r.update(ok=ok, got=type(obj).__name__, want=c["check"])
                    results.append(r)
                    continue
                want = expr_value(c["expr"], env)
                ok = same(obj, want, c.get("bytearray_as_bytes", False))
                if ok and c.get("check"):
                    ok = bool(expr_value(c["check"], dict(env, obj=obj)))
                r.update(ok=ok, got=repr(obj)[:300], want=repr(want)[:300])
            except Exception as e:
                r.update(ok=False, error="%s: %s" % (type(e).__name__, e))
            results.append(r)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
