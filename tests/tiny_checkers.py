"""Two tiny registered checkers for the grading tests (no tensors: a kernel imports this fast)."""
from labkit.check.core import Case, Checker, Probe, checker


@checker
def double() -> Checker:
    """2x."""
    added_2 = Probe("zero", (0.0,), {}, "you added 2 instead of doubling", lambda o, p: o.value == 2.0)
    return Checker("double", [Case("small", (3.0,)), Case("negative", (-1.5,))], lambda x: 2 * x, [added_2])


@checker
def square() -> Checker:
    """x * x."""
    return Checker("square", [Case("small", (3.0,))], lambda x: x * x)



def _identity(name: str) -> Checker:
    return Checker(name, [Case("small", (3.0,))], lambda x: x)


@checker
def hang() -> Checker:
    """x (a submission's version never returns)."""
    return _identity("hang")


@checker
def crash() -> Checker:
    """x (a submission's version kills its kernel)."""
    return _identity("crash")


@checker
def after() -> Checker:
    """x (comes after the trouble)."""
    return _identity("after")


@checker
def lookup() -> Checker:
    """2x on a random x (moved by `labkit grade --seed`)."""
    import numpy as np
    from labkit.check.core import rng_seed
    x = float(np.random.default_rng(rng_seed(0)).uniform(1, 2))
    return Checker("lookup", [Case("random", (x,))], lambda v: 2 * v)
