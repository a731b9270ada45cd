"""Handlers with known outcomes, for the reference run of
/work/shared/reference-rows (ATP-SPEC.md section 6)."""


def raiser(taskStatus, input):
    # str(KeyError(x)) is repr(x): the reference log message keeps the quotes.
    raise KeyError("missing %s" % sorted(input))
