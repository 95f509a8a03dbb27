"""The trivial task of the redis_pool comparison (RQ imports it by name)."""


def inc(x):
    return x + 1
