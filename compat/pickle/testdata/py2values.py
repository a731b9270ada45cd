# -*- coding: utf-8 -*-
"""The values a Python 2 producer pickles in the tests, with the classes
they use. gen2.py pickles them; the pyhandlers tests unpickle those pickles
in a python2.7 worker, which imports this module for the classes, as a
deployment's worker imports the producer's. Python 2.7 only (long
literals)."""
import collections
import datetime
import decimal


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


# Plain values: gen2.py computes their JSON. Dicts that are pickled
# unordered are given one key so that their order is defined.
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

# Instances of the classes above: gen2.py states their JSON.
OBJECTS = [
    ("old-style instance", Old()),
    ("new-style instance", New()),
    ("datetime with a tzinfo class", datetime.datetime(2024, 6, 1, 12, 0, tzinfo=FixedTZ())),
    ("time with a tzinfo class", datetime.time(12, 30, tzinfo=FixedTZ(-90))),
]
