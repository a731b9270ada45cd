from . import sub


def greet(name):
    return "hello " + name + " " + sub.MARK
