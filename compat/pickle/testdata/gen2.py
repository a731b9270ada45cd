#!/usr/bin/python2.7
# -*- coding: utf-8 -*-
"""Pickles made by a real Python 2.7 (python2_test.go runs this under
python2.7): every value below with pickle and cPickle, protocols 0, 1 and
2, each with the JSON the Go package must produce for it (the mapping of
compat/pickle/doc.go, computed here from the value).

Prints a JSON list of {"name", "module", "protocol", "input" (the stored
form base64(zlib(pickle)), as tracker.enqueueTask wrote it under Python 2),
"json" (compact, as ToJSON writes it)}.
"""
import base64
import collections
import cPickle
import datetime
import decimal
import json
import pickle
import sys
import zlib


class Old:
    """An old-style class (no object base), as Python 2 code often had."""
    def __init__(self):
        self.a = 1
        self.name = u"old"


class New(object):
    def __init__(self):
        self.a = [1, 2]


class FixedTZ(datetime.tzinfo):
    """A tzinfo class of the producer's own: Python 2 had no timezone."""
    def __init__(self, minutes=60):
        self.minutes = minutes

    def utcoffset(self, dt):
        return datetime.timedelta(minutes=self.minutes)

    def dst(self, dt):
        return datetime.timedelta(0)

    def tzname(self, dt):
        return "FIXED"


def isoduration(td):
    """A timedelta as doc.go writes it (gen.py's iso_duration): an ISO
    8601 duration without its zero parts, a leading minus when negative."""
    sign = "-" if td < datetime.timedelta(0) else ""
    td = abs(td)
    d, s, us = td.days, td.seconds, td.microseconds
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    out = sign + "P"
    if d:
        out += "%dD" % d
    if h or m or s or us or not d:
        out += "T"
        if h:
            out += "%dH" % h
        if m:
            out += "%dM" % m
        if s or us or not (h or m):
            out += "%d" % s + (".%06d" % us if us else "") + "S"
    return out


def text(s):
    """A Python 2 str as the Go side renders it: its bytes as UTF-8 when
    they are UTF-8, else read as Latin-1."""
    try:
        return s.decode("utf-8")
    except UnicodeDecodeError:
        return s.decode("latin-1")


def conv(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, long)):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, unicode):
        return v
    if isinstance(v, str):
        return text(v)
    if isinstance(v, (list, tuple)):
        return [conv(x) for x in v]
    if isinstance(v, collections.OrderedDict) or isinstance(v, dict):
        out = collections.OrderedDict()
        items = v.items() if isinstance(v, collections.OrderedDict) else sorted(v.items())
        for k, x in items:
            key = k if isinstance(k, unicode) else (text(k) if isinstance(k, str) else repr(k))
            out[key] = conv(x)
        return out
    if isinstance(v, (set, frozenset)):
        return sorted(conv(x) for x in v)
    if isinstance(v, decimal.Decimal):
        return unicode(v)
    if isinstance(v, datetime.datetime):
        return unicode(v.isoformat())
    if isinstance(v, (datetime.date, datetime.time)):
        return unicode(v.isoformat())
    if isinstance(v, datetime.timedelta):
        return unicode(isoduration(v))
    raise TypeError("no JSON for %r" % (v,))


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# Values whose JSON conv() computes; dicts that are pickled unordered are
# given one key so that their order is defined.
VALUES = [
    ("none", None),
    ("bools", [True, False]),
    ("ints", [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**62]),
    ("longs", [0L, 1L, -1L, 2**63, -2**63 - 1, 2**100, -(2**200)]),
    ("floats", [0.0, -0.0, 1.5, 0.1, 1e16, 1e-7, 1e300, 12345.678]),
    ("str ascii", "plain str"),
    ("str utf-8 bytes", "caf\xc3\xa9 \xe2\x82\xac"),
    ("str latin-1 bytes", "caf\xe9 \xff\x00"),
    ("unicode", u"caf\xe9 \u20ac \U0001F600 \n\\ \"q\""),
    ("empty", [u"", "", [], (), {}]),
    ("tuples", [(), (1,), (1, u"a"), (1, 2, 3), (1, 2, 3, 4)]),
    ("nested", {u"a": [1, (2, {u"b": [None, True, 2.5]})]}),
    ("str keys", {"k": u"v"}),
    ("int keys", {1: u"one"}),
    ("tuple keys", {(1, 2): u"t"}),
    ("ordered", collections.OrderedDict([(u"z", 1), (u"a", 2), (u"m", 3)])),
    ("int set", set([3, 1, 2])),
    ("str frozenset", frozenset([u"b", u"a"])),
    ("decimals", [decimal.Decimal("1.10"), decimal.Decimal("-7"), decimal.Decimal("1E+2"),
                  decimal.Decimal("-Infinity"), decimal.Decimal("NaN")]),
    ("naive datetime", datetime.datetime(2024, 1, 2, 3, 4, 5, 6)),
    ("datetime no micro", datetime.datetime(1999, 12, 31, 23, 59, 59)),
    ("date", datetime.date(2020, 2, 29)),
    ("time", datetime.time(1, 2, 3, 4)),
    ("timedeltas", [datetime.timedelta(-1, 3600, 5), datetime.timedelta(1, 3600), datetime.timedelta(0)]),
]

# Values whose JSON is written out: objects, as doc.go maps them.
OBJECTS = [
    ("old-style instance", Old(), '{"__object__":"__main__.Old","state":{"a":1,"name":"old"}}'),
    ("new-style instance", New(), '{"__object__":"__main__.New","state":{"a":[1,2]}}'),
    ("datetime with a tzinfo class", datetime.datetime(2024, 6, 1, 12, 0, tzinfo=FixedTZ()), None),
    ("time with a tzinfo class", datetime.time(12, 30, tzinfo=FixedTZ(-90)), None),
]


def main():
    out = []
    for module in (pickle, cPickle):
        for proto in (0, 1, 2):
            for name, v in VALUES:
                p = module.dumps(v, proto)
                out.append({"name": name, "module": module.__name__, "protocol": proto,
                            "input": base64.b64encode(zlib.compress(p)), "json": dumps(conv(v))})
            for name, v, want in OBJECTS:
                p = module.dumps(v, proto)
                out.append({"name": name, "module": module.__name__, "protocol": proto,
                            "input": base64.b64encode(zlib.compress(p)), "json": want})
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
