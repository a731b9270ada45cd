"""Python 2 handlers for python27_test.go: they check what a worker under
python2.7 hands them. Python 2.7 only."""
import base64
import collections
import datetime
import os
import pickle
import zlib


def same_as_loads(taskStatus, input):
    """Stores "ok" when input, as the worker unpickled the task's input, is
    the very object python2.7's own pickle.loads gives for that input, else
    where they differ. The test writes the input text it enqueued to a file
    named by the task's identifier, in the directory ATPD_TEST_INPUTS."""
    ident = taskStatus.getIdentifier()[1]
    f = open(os.path.join(os.environ["ATPD_TEST_INPUTS"], ident), "rb")
    try:
        want = pickle.loads(zlib.decompress(base64.b64decode(f.read())))
    finally:
        f.close()
    taskStatus.storeResponse(difference(input, want, "input") or "ok", "text/plain")


def difference(got, want, where):
    """"" when got is want's value with want's types all through (1 and 1L,
    'a' and u'a', 0.0 and -0.0 differ; NaN is the same as NaN), else a
    description of the first difference."""
    if type(got) is not type(want) or getattr(got, "__class__", None) is not getattr(want, "__class__", None):
        return "%s: %r of %s, want %r of %s" % (where, got, classname(got), want, classname(want))
    if isinstance(want, (list, tuple)):
        if len(got) != len(want):
            return "%s: %d items, want %d" % (where, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            d = difference(g, w, "%s[%d]" % (where, i))
            if d:
                return d
        return ""
    if isinstance(want, dict):
        # Keys by their repr, which tells 'k' from u'k' and 1 from 1L.
        gk = dict((repr(k), k) for k in got)
        wk = dict((repr(k), k) for k in want)
        if sorted(gk) != sorted(wk):
            return "%s: keys %s, want %s" % (where, sorted(gk), sorted(wk))
        if isinstance(want, collections.OrderedDict) and [repr(k) for k in got] != [repr(k) for k in want]:
            return "%s: key order %r, want %r" % (where, list(got), list(want))
        for r in sorted(wk):
            d = difference(got[gk[r]], want[wk[r]], "%s[%s]" % (where, r))
            if d:
                return d
        return ""
    if isinstance(want, (set, frozenset)):
        if sorted(map(repr, got)) != sorted(map(repr, want)):
            return "%s: %r, want %r" % (where, got, want)
        return ""
    if isinstance(want, (datetime.datetime, datetime.time)):
        # With a tzinfo, == compares instants and repr shows addresses: the
        # wall time and the tzinfo object are compared apart.
        d = difference(got.tzinfo, want.tzinfo, where + ".tzinfo")
        if d:
            return d
        return difference(got.replace(tzinfo=None), want.replace(tzinfo=None), where) if want.tzinfo else same_repr(got, want, where)
    if hasattr(want, "__dict__"):
        return difference(vars(got), vars(want), where + ".__dict__")
    # float (-0.0, NaN), Decimal (NaN), str, unicode, int, long, bool, None,
    # date, timedelta: the repr says it all.
    return same_repr(got, want, where)


def same_repr(got, want, where):
    if repr(got) != repr(want):
        return "%s: %r, want %r" % (where, got, want)
    return ""


def classname(v):
    c = getattr(v, "__class__", type(v))
    return "%s.%s" % (c.__module__, c.__name__)
