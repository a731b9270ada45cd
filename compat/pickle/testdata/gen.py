#!/usr/bin/python3
"""Writes vectors.json: pickles of every protocol made by this Python 3,
hand-written Python 2 pickles (protocols 0 and 2), and for each the JSON
that the Go package must produce, computed here by Python from what
pickle.loads returns.

Run: /usr/bin/python3 compat/pickle/testdata/gen.py   (from anywhere)

Each vector: name, source ("python3" or "python2-hand"), protocol, input
(the stored form base64(zlib(pickle)), as tracker.enqueueTask writes it;
the tests inflate it for the raw pickle), json (compact), json_indent (for
a few), repr (what Python loaded, for people).

The JSON mapping implemented by conv() below is the one documented in
compat/pickle/doc.go; both sides must change together.
"""
import base64
import collections
import copyreg
import datetime
import decimal
import io
import json
import math
import os
import pickle
import pickletools
import re
import sys
import zlib

from pycommon import iso_duration, py2_text

HERE = os.path.dirname(os.path.abspath(__file__))
UTC = datetime.timezone.utc


# --- classes the vectors pickle (module __main__) --------------------------

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


class KwOnly:
    def __new__(cls, x, *, y=0):
        o = object.__new__(cls)
        o.x, o.y = x, y
        return o

    def __getnewargs_ex__(self):
        return ((self.x,), {"y": self.y})


class Old:
    """Stands for a Python 2 old-style class (INST opcode)."""


class New:
    """Stands for a Python 2 new-style class."""


# --- the JSON mapping -------------------------------------------------------

def fix_surrogates(s):
    # Python 2 narrow builds wrote non-BMP characters as surrogate pairs;
    # Python 3 loads them as two code points, the Go package as one.
    return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def sortkey(j):
    if j is None:
        return (0, 0)
    if isinstance(j, bool):
        return (1, int(j))
    if isinstance(j, (int, float)):
        return (2, j)
    if isinstance(j, str):
        return (3, j)
    return (4 if isinstance(j, list) else 5, dumps(j))


def float_json(f):
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return f


def conv(o, proto, py2=False):
    c = lambda x: conv(x, proto, py2)
    if o is None or isinstance(o, bool):
        return o
    if isinstance(o, int):
        return o
    if isinstance(o, float):
        return float_json(o)
    if isinstance(o, complex):
        return {"__complex__": [float_json(o.real), float_json(o.imag)]}
    if isinstance(o, str):
        return fix_surrogates(o)
    if isinstance(o, (bytes, bytearray)):
        if py2:
            return py2_text(bytes(o))
        return {"__bytes__": base64.b64encode(bytes(o)).decode("ascii")}
    if isinstance(o, (tuple, list)) and type(o) in (tuple, list):
        return [c(x) for x in o]
    if type(o) in (set, frozenset):
        return sorted((c(x) for x in o), key=sortkey)
    if type(o) in (dict, collections.OrderedDict):
        out = {}
        for k, v in o.items():
            if isinstance(k, bytes) and py2:
                k = py2_text(k)
            out[fix_surrogates(k) if isinstance(k, str) else repr(k)] = c(v)
        return out
    if isinstance(o, decimal.Decimal):
        return str(o)
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)) and type(o).__module__ == "datetime":
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return iso_duration(o)
    if isinstance(o, type):
        return {"__global__": "%s.%s" % (o.__module__, o.__qualname__)}
    return conv_object(o, proto, py2)


def conv_object(o, proto, py2):
    """An instance of any other class, as the Go package sees it: what its
    __reduce_ex__ at the same protocol tells the pickler to write."""
    c = lambda x: conv(x, proto, py2)
    rv = o.__reduce_ex__(proto)
    rv = tuple(rv) + (None,) * (5 - len(rv))
    fn, args, state, listitems, dictitems = rv
    kwargs = None
    if fn is copyreg._reconstructor:
        cls, base, st = args
        args = () if st is None else (st,)
    elif fn is copyreg.__newobj__:
        cls, args = args[0], args[1:]
    elif fn is copyreg.__newobj_ex__:
        cls, args, kwargs = args
    else:
        cls = fn
    out = {"__object__": "%s.%s" % (cls.__module__, cls.__qualname__)}
    if args:
        out["args"] = [c(a) for a in args]
    if kwargs:
        out["kwargs"] = c(dict(kwargs))
    if state is not None:
        out["state"] = c(state)
    if listitems is not None:
        items = [c(x) for x in listitems]
        if items:
            out["items"] = items
    if dictitems is not None:
        d = dict(dictitems)
        if d:
            out["dictitems"] = c(d)
    return out


# --- Python 3 values, pickled with every protocol ---------------------------

def py3_values():
    shared = [1, 2]
    vienna = datetime.timezone(datetime.timedelta(hours=2))
    india = datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))
    deep = []
    cur = deep
    for _ in range(60):
        nxt = []
        cur.append(nxt)
        cur = nxt
    ml = MyList([1, 2])
    ml.attr = "x"
    md = MyDict(k="v")
    return [
        ("none", None),
        ("bools", (True, False)),
        ("small_ints", [0, 1, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, -2**31]),
        ("int64_edges", [2**31, -2**31 - 1, 2**63 - 1, -2**63]),
        ("big_ints", [2**63, -2**63 - 1, 2**64, 2**100, -(2**100), 12345678901234567890123, 256**300]),
        ("floats", [0.0, -0.0, 1.5, -2.25, 0.1, 1e16, 1e15, 123456789012345.6, 0.0001, 1e-05,
                    1.7976931348623157e308, 5e-324, 2.5e-300]),
        ("float_specials", [float("nan"), float("inf"), float("-inf")]),
        ("strings", ["", "ascii", "café", "€uro", "😀 emoji", "line\nbreak\\back\"quote'",
                     "\x00\x1a\r\t\x7f", "a" * 300]),
        ("bytes", [b"", b"\x00\xff", bytes(range(0, 256, 3))]),
        ("bytearray", bytearray(b"ab\x00\xff")),
        ("tuples", ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((1,), ((2,),)))),
        ("lists", [[], [1, "a", None], [[[]]]]),
        ("long_list", list(range(1001))),
        ("dict", {"a": 1, "b": [1, 2], "c": {"d": None}}),
        ("dict_non_string_keys", {1: "int", 2.5: "float", None: "none", (1, "a"): "tuple",
                                  b"k'": "bytes", "x": "str", -7: "neg", 10**30: "big",
                                  frozenset(): "empty frozenset"}),
        ("dict_equal_keys", {1: "one", 2.0: "two"}),
        ("big_dict", {"k%04d" % i: i for i in range(1001)}),
        ("sets", [{3, 1, 2}, {"b", "a", "c"}, set(), frozenset({1, "a", None, 2.5, (1, 2)})]),
        ("mixed_set", {False, 2, "x", (1, 2), None, 1.5, b"b", 10**20, -3}),
        ("datetimes", [datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.datetime(2024, 1, 2, 3, 4, 5),
                       datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)]),
        ("aware_datetimes", [datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                             datetime.datetime(2024, 6, 1, 12, 0, tzinfo=vienna),
                             datetime.datetime(2024, 6, 1, 12, 0, tzinfo=india)]),
        ("fold", datetime.datetime(2021, 10, 31, 2, 30, fold=1)),
        ("dates_times", [datetime.date(2020, 2, 29), datetime.time(1, 2, 3, 4), datetime.time(0, 0),
                         datetime.time(23, 59, 59, tzinfo=UTC)]),
        ("timedeltas", [datetime.timedelta(1, 2, 3), datetime.timedelta(-1), datetime.timedelta(0),
                        datetime.timedelta(days=-3, seconds=5, microseconds=7),
                        datetime.timedelta(microseconds=-500000), datetime.timedelta(days=999999999)]),
        ("decimals", [decimal.Decimal("1.10"), decimal.Decimal("-Infinity"), decimal.Decimal("NaN"),
                      decimal.Decimal("1E+2"), decimal.Decimal("-0.000")]),
        ("complex", [complex(1, 2), complex(0, -1), complex(-1.5, 0.25)]),
        ("ordered_dict", collections.OrderedDict([("z", 1), ("a", 2)])),
        ("object_state", Thing(a=[1, "x"])),
        ("object_reduce_args", WithArgs(1, "two")),
        ("list_subclass", ml),
        ("dict_subclass", md),
        ("class_reference", [Thing, int, datetime.datetime]),
        ("timezone_alone", UTC),
        ("shared_refs", {"a": shared, "b": shared, "c": (shared, shared)}),
        ("deep_nesting", deep),
        ("atp_request", ("SequenceSum", {"bbox": (1.0, 2.0, 3.0, 4.0), "crs": "EPSG:4326",
                                         "time": datetime.datetime(2012, 3, 4, 5, 6, 7, tzinfo=UTC),
                                         "coverages": ["cov_a", "cov_b"], "scale": decimal.Decimal("0.5")})),
    ]


# Values only protocol 4 and later can pickle as the Go package expects
# (below 4 Python writes keyword-only __new__ arguments through
# functools.partial).
def py3_values_p4():
    return [("newobj_ex_kwargs", KwOnly(1, y=2))]


# --- Python 2 pickles, written by hand --------------------------------------
#
# Each is what CPython 2.7's cPickle.dumps(value, protocol) writes for the
# value in the comment (memo indices as cPickle numbers them, from 1), byte
# for byte per pickletools' opcode documentation. Python 2 is not installed
# here; gen.py checks that Python 3 loads each one with encoding="latin1"
# and encoding="bytes", and derives the expected JSON from the latter (a
# Python 2 str loads as bytes, a unicode as str).

WHEN = b"\x07\xdc\x03\x04\x05\x06\x07\x00\x03z"  # 2012-03-04 05:06:07.000890

PY2 = [
    # {'name': 'caf\xc3\xa9', 'raw': '\xff\x00', 'u': u'caf\xe9 \u20ac\\\n',
    #  'n': 5L, 'big': 12345678901234567890L, 'neg': -3, 'f': 1.5, 't': True,
    #  'none': None, 'when': datetime(2012, 3, 4, 5, 6, 7, 890)}, protocol 0
    ("py2_p0_dict", 0,
     b"(dp1\n"
     b"S'name'\np2\nS'caf\\xc3\\xa9'\np3\ns"
     b"S'raw'\np4\nS'\\xff\\x00'\np5\ns"
     b"S'u'\np6\nVcaf\xe9 \\u20ac\\u005c\\u000a\np7\ns"
     b"S'n'\np8\nL5L\ns"
     b"S'big'\np9\nL12345678901234567890L\ns"
     b"S'neg'\np10\nI-3\ns"
     b"S'f'\np11\nF1.5\ns"
     b"S't'\np12\nI01\ns"
     b"S'none'\np13\nNs"
     b"S'when'\np14\ncdatetime\ndatetime\np15\n(S'\\x07\\xdc\\x03\\x04\\x05\\x06\\x07\\x00\\x03z'\np16\ntp17\nRp18\ns."),
    # the same dict, protocol 2
    ("py2_p2_dict", 2,
     b"\x80\x02}q\x01(U\x04nameq\x02U\x05caf\xc3\xa9q\x03"
     b"U\x03rawq\x04U\x02\xff\x00q\x05"
     b"U\x01uq\x06X\x0b\x00\x00\x00caf\xc3\xa9 \xe2\x82\xac\\\nq\x07"
     b"U\x01nq\x08\x8a\x01\x05"
     b"U\x03bigq\t\x8a\t\xd2\n\x1f\xeb\x8c\xa9T\xab\x00"
     b"U\x03negq\nJ\xfd\xff\xff\xff"
     b"U\x01fq\x0bG?\xf8\x00\x00\x00\x00\x00\x00"
     b"U\x01tq\x0c\x88"
     b"U\x04noneq\rN"
     b"U\x04whenq\x0ecdatetime\ndatetime\nq\x0fU\n" + WHEN + b"q\x10\x85q\x11Rq\x12u."),
    # ("it's", 'say "hi"', 'tab\there', '\\', '\x7f\x80', 'both \' and "',
    #  'nul\x00'), protocol 0: repr() quoting and escapes
    ("py2_p0_str_escapes", 0,
     b"(S\"it's\"\np1\nS'say \"hi\"'\np2\nS'tab\\there'\np3\nS'\\\\'\np4\n"
     b"S'\\x7f\\x80'\np5\nS'both \\' and \"'\np6\nS'nul\\x00'\np7\ntp8\n."),
    # u'\U0001f600 ok' on a narrow (UCS-2) build, protocol 0
    ("py2_p0_unicode_surrogates", 0, b"V\\ud83d\\ude00 ok\np1\n."),
    # an old-style instance with __dict__ {'a': 1}, protocol 0
    ("py2_p0_old_style_instance", 0, b"(i__main__\nOld\np1\n(dp2\nS'a'\np3\nI1\nsb."),
    # a new-style instance with __dict__ {'a': 1}, protocol 0
    ("py2_p0_new_style_instance", 0,
     b"ccopy_reg\n_reconstructor\np1\n(c__main__\nNew\np2\nc__builtin__\nobject\np3\nNtRp4\n"
     b"(dp5\nS'a'\np6\nI1\nsb."),
    # the same, protocol 2
    ("py2_p2_new_style_instance", 2, b"\x80\x02c__main__\nNew\nq\x01)\x81q\x02}q\x03U\x01aK\x01sb."),
    # (set([1, 2]), Decimal('1.10')), protocol 0
    ("py2_p0_set_decimal", 0,
     b"(c__builtin__\nset\np1\n((lp2\nI1\naI2\natRp3\n"
     b"cdecimal\nDecimal\np4\n(S'1.10'\np5\ntRp6\ntp7\n."),
    # [-1L, -256L, 2**64, -2**64, 255L, 0L], protocol 2: LONG1 two's complement
    ("py2_p2_longs", 2,
     b"\x80\x02]q\x01(\x8a\x01\xff\x8a\x02\x00\xff\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\x01"
     b"\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00\xff\x8a\x02\xff\x00\x8a\x00e."),
    # [0.1, nan, inf, -inf] as Python 2.6 wrote them, protocol 0
    ("py2_p0_floats", 0, b"(lp1\nF0.10000000000000001\naFnan\naFinf\naF-inf\na."),
    # {u'k\xe9y': u'v', 'k': 1}, protocol 2
    ("py2_p2_unicode_keys", 2, b"\x80\x02}q\x01(X\x04\x00\x00\x00k\xc3\xa9yq\x02X\x01\x00\x00\x00vU\x01kK\x01u."),
    # datetime(2012, 3, 4, 5, 6, 7, 890, tzinfo=pytz.utc), protocol 2
    ("py2_p2_datetime_pytz_utc", 2,
     b"\x80\x02cdatetime\ndatetime\nq\x01U\n" + WHEN + b"cpytz\n_UTC\nq\x02)Rq\x03\x86Rq\x04."),
    # Vienna winter time from pytz.timezone('Europe/Vienna').localize(...), protocol 2
    ("py2_p2_datetime_pytz_zone", 2,
     b"\x80\x02cdatetime\ndatetime\nq\x01U\n" + WHEN + b"cpytz\n_p\nq\x02(U\rEurope/Viennaq\x03M\x10\x0eK\x00U\x03CETq\x04tRq\x05\x86Rq\x06."),
    # (date(2012, 3, 4), time(5, 6, 7, 890), timedelta(-1, 3600, 5)), protocol 2
    ("py2_p2_date_time_delta", 2,
     b"\x80\x02cdatetime\ndate\nq\x01U\x04\x07\xdc\x03\x04\x85Rq\x02"
     b"cdatetime\ntime\nq\x03U\x06\x05\x06\x07\x00\x03z\x85Rq\x04"
     b"cdatetime\ntimedelta\nq\x05J\xff\xff\xff\xffM\x10\x0eK\x05\x87Rq\x06\x87q\x07."),
    # OrderedDict([('z', 1), ('a', 2)]), protocol 2 (Python 2.7 reduces it to a list of pairs)
    ("py2_p2_ordered_dict", 2,
     b"\x80\x02ccollections\nOrderedDict\nq\x01]q\x02(]q\x03(U\x01zK\x01e]q\x04(U\x01aK\x02ee\x85Rq\x05."),
    # (1+2j, frozenset(['a']), u'caf\xe9'), protocol 0
    ("py2_p0_complex_frozenset", 0,
     b"(c__builtin__\ncomplex\np1\n(F1.0\nF2.0\ntRp2\n"
     b"c__builtin__\nfrozenset\np3\n((lp4\nS'a'\natRp5\nVcaf\xe9\np6\ntp7\n."),
    # a memoised list used twice: [l, l] with l = ['x'], protocol 0 (GET)
    ("py2_p0_memo_get", 0, b"(lp1\n(lp2\nS'x'\naag2\na."),
]


class Py2Unpickler(pickle.Unpickler):
    """encoding="bytes" loads a Python 2 str as bytes, which Decimal
    refuses; give it text as Python 2's Decimal got."""

    def find_class(self, module, name):
        if (module, name) == ("decimal", "Decimal"):
            return lambda s="0", *a: decimal.Decimal(s.decode("latin-1") if isinstance(s, bytes) else s)
        return super().find_class(module, name)


# Vectors whose indented JSON is checked too (JSONIndent).
INDENTED = {"dict", "sets", "mixed_set", "atp_request", "object_state", "lists", "py2_p0_dict"}


def stable_repr(v):
    # Object reprs carry memory addresses; drop them so that the output
    # does not change from run to run.
    return re.sub(r" at 0x[0-9a-f]+", "", repr(v))[:200]


def envelope(p):
    return base64.b64encode(zlib.compress(p)).decode("ascii")


def max_proto(p):
    try:
        return max([0] + [op.proto for op, _, _ in pickletools.genops(p)])
    except UnicodeDecodeError:
        # pickletools decodes STRING arguments as ASCII and gives up on
        # Python 2 str with other bytes; pickle.loads below still checks.
        return 0


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Sets of strings are pickled in hash order: fix the seed so that
        # the output does not change from run to run.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    vectors = []
    for proto in range(6):
        values = py3_values() + (py3_values_p4() if proto >= 4 else [])
        for name, value in values:
            p = pickle.dumps(value, protocol=proto)
            loaded = pickle.loads(p)
            v = {
                "name": "%s_p%d" % (name, proto),
                "source": "python3",
                "protocol": proto,
                "input": envelope(p),
                "json": dumps(conv(loaded, proto)),
                "repr": stable_repr(loaded),
            }
            if name in INDENTED:
                v["json_indent"] = json.dumps(conv(loaded, proto), ensure_ascii=False, indent=2, allow_nan=False)
            vectors.append(v)
    for name, proto, p in PY2:
        assert max_proto(p) <= proto, (name, max_proto(p))
        # Both ways Python 3 reads Python 2 pickles must work.
        as_latin1 = pickle.loads(p, encoding="latin1")
        loaded = Py2Unpickler(io.BytesIO(p), encoding="bytes").load()
        v = {
            "name": name,
            "source": "python2-hand",
            "protocol": proto,
            "input": envelope(p),
            "json": dumps(conv(loaded, 2, py2=True)),
            "repr": stable_repr(as_latin1),
        }
        if name in INDENTED:
            v["json_indent"] = json.dumps(conv(loaded, 2, py2=True), ensure_ascii=False, indent=2)
        vectors.append(v)
    out = {
        "generator": "compat/pickle/testdata/gen.py",
        "python": sys.version.split()[0],
        "vectors": vectors,
    }
    with open(os.path.join(HERE, "vectors.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d vectors" % len(vectors))


if __name__ == "__main__":
    main()
