# -*- coding: utf-8 -*-
"""What the Python 3 scripts of this directory (gen.py, roundtrip.py) and
their Python 2.7 counterparts (gen2.py, roundtrip2.py) share, so that both
sides state the mapping and the comparison once. Runs on both."""
import collections
import datetime
import decimal
import math
import sys

PY2 = sys.version_info[0] == 2
if PY2:
    INTEGERS = (int, long)  # noqa: F821 (Python 2 only)
    STRINGS = basestring  # noqa: F821 (Python 2 only)
    text_type = unicode  # noqa: F821 (Python 2 only)
else:
    INTEGERS = (int,)
    STRINGS = str
    text_type = str


# --- the JSON mapping of compat/pickle/doc.go ---------------------------------

def iso_duration(td):
    """A timedelta as an ISO 8601 duration without its zero parts, a
    leading minus when negative."""
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


def py2_text(b):
    """A Python 2 str: its text if it is UTF-8, else its bytes as Latin-1."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


# --- the comparison of what a loader gave with what was meant -----------------

def same(a, b, bytes_like=False):
    """Equal values of the same types, recursively (1 == 1.0 == True and
    (1,) != [1] matter here). bytes_like: a bytearray that came back as
    bytes (a Python 2 str) is the same. On Python 2, int and long count as
    one type (Python 2 loads LONG1 as long), and equal ASCII str and unicode
    dict keys as one key (Python 2 finds u'k' under 'k')."""
    if isinstance(a, collections.OrderedDict) or isinstance(b, collections.OrderedDict):
        return isinstance(a, dict) and isinstance(b, dict) and same(list(a.items()), list(b.items()), bytes_like)
    if bytes_like and isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        return bytes(a) == bytes(b)
    if PY2 and isinstance(a, INTEGERS) and isinstance(b, INTEGERS) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        ok = len(a) == len(b) and all(same(x, y, bytes_like) for x, y in zip(a, b))
        return ok and (type(a).__module__ != "__main__" or same(vars(a), vars(b), bytes_like))
    if isinstance(a, dict):
        if PY2:
            # Keys sorted, as Python 2 dicts have no order. Python 2 finds
            # u'k' under 'k' (an attribute, a keyword argument): equal ASCII
            # str and unicode keys are one key.
            ka, kb = sorted(a.keys(), key=key_order), sorted(b.keys(), key=key_order)
            ok = len(a) == len(b) and all(same_key(k, l) and same(a[k], b[l], bytes_like) for k, l in zip(ka, kb))
        else:
            # Position by position: keys such as Decimal('NaN') equal nothing.
            ok = len(a) == len(b) and all(same(k, l, bytes_like) for k, l in zip(a, b)) \
                and same(list(a.values()), list(b.values()), bytes_like)
        return ok and (type(a).__module__ != "__main__" or same(vars(a), vars(b), bytes_like))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(same(x, y, bytes_like) for y in b) for x in a)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, type):
        return a is b
    if isinstance(a, (datetime.datetime, datetime.time)):
        # Naive against aware first: Python 2 raises on comparing them.
        return (a.tzinfo is None) == (b.tzinfo is None) and a == b and a.utcoffset() == b.utcoffset()
    if hasattr(a, "__dict__"):
        return same(vars(a), vars(b), bytes_like)
    return a == b


def key_order(k):
    return repr(text_type(k)) if isinstance(k, STRINGS) else repr(k)


def same_key(a, b):
    if isinstance(a, STRINGS) and isinstance(b, STRINGS):
        return a == b
    return same(a, b)
