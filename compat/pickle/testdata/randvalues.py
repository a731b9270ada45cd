#!/usr/bin/python3
"""Random values for the Go tests (pickle_random_test.go): argv[1] values
from seed argv[2], each pickled with a random protocol 0 to 5. Prints a
JSON list of {"input": stored text, "json": what the Go package must
render, per gen.py's mapping, "protocol"}."""
import base64
import collections
import datetime
import decimal
import json
import random
import sys
import zlib

import gen

r = random.Random(int(sys.argv[2]))
UTC = datetime.timezone.utc


def scalar():
    k = r.randrange(16)
    if k == 0:
        return None
    if k == 1:
        return r.random() < 0.5
    if k == 2:
        return r.randint(-300, 70000)
    if k == 3:
        return r.choice([1, -1]) * r.getrandbits(r.randrange(1, 200))
    if k == 4:
        return r.choice([r.random() * 10 ** r.randint(-30, 30), float("inf"), float("nan"), -0.0, 0.5])
    if k == 5:
        return "".join(chr(r.choice([r.randrange(32, 127), r.randrange(0, 0x3000), r.randrange(0x10000, 0x20000), 10, 92, 39, 34]))
                       for _ in range(r.randrange(12)))
    if k == 6:
        return bytes(r.randrange(256) for _ in range(r.randrange(10)))
    if k == 7:
        return datetime.datetime(r.randint(1, 9999), r.randint(1, 12), r.randint(1, 28), r.randrange(24),
                                 r.randrange(60), r.randrange(60), r.choice([0, r.randrange(10 ** 6)]),
                                 tzinfo=r.choice([None, UTC, datetime.timezone(datetime.timedelta(minutes=r.randint(-1439, 1439)))]))
    if k == 8:
        return datetime.date(r.randint(1, 9999), r.randint(1, 12), r.randint(1, 28))
    if k == 9:
        return datetime.time(r.randrange(24), r.randrange(60), r.randrange(60), r.randrange(10 ** 6),
                             tzinfo=r.choice([None, UTC]))
    if k == 10:
        return datetime.timedelta(r.randint(-10 ** 6, 10 ** 6), r.randrange(86400), r.randrange(10 ** 6))
    if k == 11:
        return decimal.Decimal(r.choice(["1.10", "-0", "NaN", "-Infinity", "1E+5", str(r.random())]))
    if k == 12:
        return complex(r.random(), -r.random())
    if k == 13:
        return bytearray(b"x" * r.randrange(3))
    if k == 14:
        return r.choice([int, gen.Thing, datetime.date])
    return gen.Thing(r.randrange(3))


def hashable(depth):
    if depth > 2 or r.random() < 0.7:
        v = scalar()
        while isinstance(v, (bytearray, gen.Thing)) or (isinstance(v, float) and v != v):
            v = scalar()
        return v
    if r.random() < 0.5:
        return tuple(hashable(depth + 1) for _ in range(r.randrange(4)))
    return frozenset(hashable(depth + 1) for _ in range(r.randrange(4)))


def value(depth=0):
    if depth > 4 or r.random() < 0.3:
        return scalar()
    k = r.randrange(7)
    n = r.randrange(6)
    if k == 0:
        return [value(depth + 1) for _ in range(n)]
    if k == 1:
        return tuple(value(depth + 1) for _ in range(n))
    if k == 2:
        return {hashable(0): value(depth + 1) for _ in range(n)}
    if k == 3:
        return {r.choice("abcdefgh") * r.randint(1, 3): value(depth + 1) for _ in range(n)}
    if k == 4:
        return {hashable(0) for _ in range(n)}
    if k == 5:
        return collections.OrderedDict((str(i), value(depth + 1)) for i in range(n))
    t = gen.Thing(value(depth + 1))
    return t


def no_key_clash(o):
    """JSON object keys must stay distinct: a dict whose str and repr keys
    coincide (1 and '1') cannot be compared as JSON."""
    if isinstance(o, dict):
        keys = [k if isinstance(k, str) else repr(k) for k in o]
        return len(set(keys)) == len(keys) and all(no_key_clash(v) for v in o.values())
    if isinstance(o, (list, tuple)):
        return all(no_key_clash(v) for v in o)
    if isinstance(o, gen.Thing):
        return no_key_clash(o.a)
    return True


def no_frozenset_key(o):
    """Python's repr orders frozenset elements by hash; the Go package by
    the JSON order: only equal for at most one element."""
    if isinstance(o, frozenset):
        return len(o) <= 1 and all(no_frozenset_key(v) for v in o)
    if isinstance(o, dict):
        return all(no_frozenset_key(k) and no_frozenset_key(v) for k, v in o.items())
    if isinstance(o, (list, tuple, set)):
        return all(no_frozenset_key(v) for v in o)
    if isinstance(o, gen.Thing):
        return no_frozenset_key(o.a)
    return True


out = []
while len(out) < int(sys.argv[1]):
    v = value()
    if not no_key_clash(v) or not no_frozenset_key(v):
        continue
    proto = r.randrange(6)
    p = pickle_bytes = __import__("pickle").dumps(v, protocol=proto)
    loaded = __import__("pickle").loads(p)
    out.append({"input": base64.b64encode(zlib.compress(p)).decode("ascii"), "protocol": proto,
                "json": gen.dumps(gen.conv(loaded, proto))})
json.dump(out, sys.stdout, ensure_ascii=False)
