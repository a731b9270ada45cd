"""Reject Python-3-only syntax in a file that must also run on Python 2.7.

Python 2 is not installable here, so this walks Python 3's AST (and the
token stream, for string prefixes) for every construct 2.7 cannot parse or
parses differently. Usage: py2check.py FILE...; prints one line per finding
and exits 1 when there is any.
"""
import ast
import io
import sys
import tokenize

NODES = {
    "JoinedStr": "f-string",
    "AsyncFunctionDef": "async def",
    "Await": "await",
    "AsyncFor": "async for",
    "AsyncWith": "async with",
    "Nonlocal": "nonlocal",
    "YieldFrom": "yield from",
    "AnnAssign": "variable annotation",
    "NamedExpr": "assignment expression",
    "MatMult": "@ operator",
    "Match": "match statement",
}
PY2_PREFIXES = {"", "u", "b", "r", "ur", "br"}


def check(path):
    src = open(path, "rb").read()
    tree = ast.parse(src, path)
    found = []

    def bad(node, what):
        found.append("%s:%d: %s is not Python 2.7" % (path, getattr(node, "lineno", 0), what))

    future = set()
    for node in ast.walk(tree):
        kind = type(node).__name__
        if kind in NODES:
            bad(node, NODES[kind])
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.update(a.name for a in node.names)
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            a = node.args
            if a.kwonlyargs:
                bad(node, "keyword-only argument")
            if getattr(a, "posonlyargs", []):
                bad(node, "positional-only argument")
            for arg in a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                if arg is not None and arg.annotation is not None:
                    bad(node, "argument annotation")
            if isinstance(node, ast.FunctionDef) and node.returns is not None:
                bad(node, "return annotation")
        if isinstance(node, ast.Raise) and node.cause is not None:
            bad(node, "raise ... from")
        if isinstance(node, ast.Starred) and not isinstance(getattr(node, "ctx", None), ast.Load):
            bad(node, "starred assignment target")
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            bad(node, "... outside a slice")
        if isinstance(node, ast.Call):
            if sum(isinstance(x, ast.Starred) for x in node.args) > 1 or \
               sum(k.arg is None for k in node.keywords) > 1:
                bad(node, "several * or ** unpackings in one call")
            if isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(("print", node))
        if isinstance(node, (ast.Dict,)) and any(k is None for k in node.keys):
            bad(node, "** in a dict display")
    prints = [n for f, n in [x for x in found if isinstance(x, tuple)]]
    found = [x for x in found if not isinstance(x, tuple)]
    if prints and "print_function" not in future:
        bad(prints[0], "print() without from __future__ import print_function")

    for tok in tokenize.tokenize(io.BytesIO(src).readline):
        if tok.type == tokenize.STRING:
            prefix = ""
            for ch in tok.string:
                if ch in "'\"":
                    break
                prefix += ch
            if prefix.lower() not in PY2_PREFIXES:
                found.append("%s:%d: string prefix %r is not Python 2.7" % (path, tok.start[0], prefix))
    return found


if __name__ == "__main__":
    problems = []
    for p in sys.argv[1:]:
        problems.extend(check(p))
    for line in problems:
        print(line)
    sys.exit(1 if problems else 0)
