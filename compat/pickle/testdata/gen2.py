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

from py2values import OBJECTS, VALUES
from pycommon import iso_duration, py2_text


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
        return py2_text(v)
    if isinstance(v, (list, tuple)):
        return [conv(x) for x in v]
    if isinstance(v, collections.OrderedDict) or isinstance(v, dict):
        out = collections.OrderedDict()
        items = v.items() if isinstance(v, collections.OrderedDict) else sorted(v.items())
        for k, x in items:
            key = k if isinstance(k, unicode) else (py2_text(k) if isinstance(k, str) else repr(k))
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
        return unicode(iso_duration(v))
    raise TypeError("no JSON for %r" % (v,))


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# The JSON of the objects, as doc.go maps them; None: a datetime or time
# with a tzinfo class, which the Go side keeps as the object it is.
OBJECT_JSON = {
    "old-style instance": '{"__object__":"py2values.Old","state":{"a":1,"name":"old"}}',
    "new-style instance": '{"__object__":"py2values.New","state":{"a":[1,2]}}',
    "datetime with a tzinfo class": None,
    "time with a tzinfo class": None,
}


def main():
    out = []
    for module in (pickle, cPickle):
        for proto in (0, 1, 2):
            for name, v in VALUES + OBJECTS:
                want = OBJECT_JSON[name] if name in OBJECT_JSON else dumps(conv(v))
                p = module.dumps(v, proto)
                out.append({"name": name, "module": module.__name__, "protocol": proto,
                            "input": base64.b64encode(zlib.compress(p)), "json": want})
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
