"""Checkers for the pen-and-paper counting exercises of notebook 08: a derived formula, checked by its numbers.

``check.elimination_flops(fn)`` runs the student's ``elimination_flops(n)`` on a few n and
compares it exactly with labkit's count (``elimination.count_elimination_flops``, a loop over
the algorithm). A wrong count is named by probes: the value the usual slips give at one n
(only the leading term, a loop one step too long or short, the zeroed column computed, the
right-hand side or the multipliers forgotten, a multiply-add counted as one flop, back
substitution added). Introduced in notebook 08.
"""
from __future__ import annotations

from labkit import elimination
from labkit.check.core import Case, Checker, Probe, checker, is_number


def _steps(n: int, per_step) -> int:
    """sum over the elimination steps of per_step(m), m = n-1, ..., 1 rows below the pivot."""
    return sum(per_step(m) for m in range(1, n))


def _right(n: int) -> int:
    return elimination.count_elimination_flops(n)


# The counts that the usual mistakes give (m = rows below the pivot at a step).
MISTAKES = {
    "leading": lambda n: 2 * n ** 3 / 3,
    "fma_as_one": lambda n: _steps(n, lambda m: m + m * m + m),
    "no_rhs": lambda n: _steps(n, lambda m: m + 2 * m * m),
    "no_division": lambda n: _steps(n, lambda m: 2 * m * m + 2 * m),
    "one_step_more": lambda n: _right(n + 1),
    "one_step_less": lambda n: _right(max(n - 1, 0)),
    "pivot_column": lambda n: _steps(n, lambda m: m + 2 * m * (m + 1) + 2 * m),
    "with_back_substitution": lambda n: _right(n) + n * n,
}

_HINTS = {
    "leading": "that is only the leading term 2n^3/3: the exact count also has n^2 and n terms; "
               "sum each step's flops exactly (sum_m m^2 = (n-1)n(2n-1)/6, sum_m m = (n-1)n/2)",
    "fma_as_one": "a multiply-add a_ij - l_ik * a_kj counts as 2 flops here (one multiply, one subtract), "
                  "not 1",
    "no_rhs": "the right-hand side is eliminated too: b_i -= l_ik b_k costs 2 flops per row below the pivot "
              "at every step",
    "no_division": "each multiplier l_ik = a_ik / a_kk costs one division (1 flop per row below the pivot)",
    "one_step_more": "one elimination step too many: with m rows below the pivot, m runs from n-1 down to 1 "
                     "(n-1 steps; the last column has nothing below it)",
    "one_step_less": "one elimination step too few: with m rows below the pivot, m runs from n-1 down to 1, "
                     "the step with m = 1 included",
    "pivot_column": "the entries below the pivot (column k) become 0 without arithmetic: each row update "
                    "touches the n-k-1 columns to the right of the pivot, not n-k",
    "with_back_substitution": "count elimination only: back substitution (n^2 flops) is not part of it",
}


def _compare(out, expected) -> None:
    if not is_number(out):
        raise AssertionError(f"returned {type(out).__name__} {out!r}, expected a number (an int)")
    if not is_number(out, integer=True):
        raise AssertionError(f"returned {type(out).__name__} {out!r}, expected an int")
    if out != expected:
        raise AssertionError(f"returned {out!r}, expected {expected}")


def _gives(mistake: str):
    """violated(): the student's count equals the count ``mistake`` gives at the probe's n."""
    def violated(outcome, probe):
        n = probe.args[0]
        bad, got = MISTAKES[mistake](n), outcome.value
        if outcome.error or not is_number(got) or got == _right(n):
            return ""
        close = abs(got - bad) < 1 if mistake == "leading" else got == bad
        return f"elimination_flops({n}) = {got!r}" if close else ""
    return violated


_ROUNDING = ("the count is off by less than 3, as each term of the closed form rounded on its own: flooring (//) or rounding each term of "
             "(4n^3 + 3n^2 - 7n)/6 separately loses their fractions; the whole numerator is divisible by 6, "
             "so divide the sum once: (4 * n**3 + 3 * n**2 - 7 * n) // 6")
_NOT_INT = ("return an int: / gives a float even when the division is exact; use // (integer division) "
            "on the whole numerator, or int arithmetic throughout")


# The closed form (4n^3 + 3n^2 - 7n)/6 with each term rounded on its own: what "rounding" names.
ROUNDED_TERMS = (
    lambda n: 4 * n ** 3 // 6 + 3 * n ** 2 // 6 - 7 * n // 6,
    lambda n: round(4 * n ** 3 / 6) + round(3 * n ** 2 / 6) - round(7 * n / 6),
    lambda n: int(4 * n ** 3 / 6) + int(3 * n ** 2 / 6) - int(7 * n / 6),
    lambda n: (4 * n ** 3 + 3 * n ** 2) // 6 - 7 * n // 6,
    lambda n: 2 * n ** 3 // 3 + n ** 2 // 2 - 7 * n // 6,
    lambda n: round(2 * n ** 3 / 3) + round(n ** 2 / 2) - round(7 * n / 6),
)


def _off_by_rounding(o, p):
    """The count is the closed form with its terms rounded one by one (at a large n, where a wrong term is far off)."""
    n, got = p.args[0], o.value
    if o.error or not is_number(got) or got == _right(n) or not any(got == f(n) for f in ROUNDED_TERMS):
        return ""
    return f"elimination_flops({n}) = {got!r}, off by {got - _right(n):+g}"


def _not_an_int(o, p):
    got = o.value
    return not o.error and is_number(got) and not is_number(got, integer=True) and \
        f"returned {type(got).__name__} {got!r}"


@checker
def elimination_flops() -> Checker:
    """``fn(n) -> int``: the exact flops of elimination without pivoting on [A | b] (notebook 08, exercise 8.4).

    one flop per +, -, *, / (a multiply-add is 2); multipliers, the trailing block (columns right
    of the pivot only) and the right-hand side are counted; back substitution is not
    n = 1 has no elimination step (0 flops); n = 2, 3 by hand; n = 10, 100 need every lower term
    the result is an int (a float is not, even one equal to the count); the sum is divided by 6 once, exactly
    """
    exact = ("the count must be exact: sum over the steps (m = n-1 .. 1 rows below the pivot) of "
             "m divisions + 2m^2 for the block + 2m for b")
    cases = [
        Case("n = 1: nothing to eliminate", (1,), hint="a 1 x 1 system has no elimination step: 0 flops"),
        Case("n = 2, by hand", (2,), hint=exact),
        Case("n = 3, by hand", (3,), hint=exact),
        Case("n = 10", (10,), hint=exact),
        Case("n = 100", (100,), hint=exact),
    ]
    def not_a_number(o, p):
        return not o.error and not is_number(o.value) and f"returned {type(o.value).__name__}"
    probes = [Probe("n = 10, a number", (10,), {}, "return the count as a number (an int), not text or an "
                    "array", not_a_number)]
    probes += [Probe(f"n = 10, {name.replace('_', ' ')}", (10,), {}, _HINTS[name], _gives(name))
               for name in MISTAKES]
    probes += [Probe(f"n = {n}, rounding", (n,), {}, _ROUNDING, _off_by_rounding) for n in range(1000, 1012)]
    probes += [Probe("n = 10, an int", (10,), {}, _NOT_INT, _not_an_int)]
    return Checker("elimination_flops", cases, elimination.count_elimination_flops, probes,
                   compare=_compare)
