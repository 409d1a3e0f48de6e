"""tiny_checkers' five exercises and ten more identity ones (slot06..slot15), for tests/test_grade_attacks.py.

Each hostile notebook of the main batch carries up to fifteen independent probes, one per exercise, so the
batch needs fewer kernels (each costs a torch import): graded with `--checkers attack_checkers`.
"""
from labkit.check.core import Case, Checker, checker

import tiny_checkers  # noqa: F401  (registers double, square, hang, crash, after)

SLOTS = tuple(f"slot{i:02d}" for i in range(6, 16))


def _builder(name: str):
    def build() -> Checker:
        return Checker(name, [Case("small", (3.0,))], lambda x: x)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = "x (an identity exercise: a probe's slot)."
    return build


for _name in SLOTS:
    globals()[_name] = checker(_builder(_name))
