MARK = "from sub"


def twice(x):
    return x * 2
