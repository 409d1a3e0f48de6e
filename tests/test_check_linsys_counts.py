"""Tests for labkit.check.linsys_counts and the flop counts it judges against.

The count is held to an elimination that really counts its operations (a float that counts every
+, -, *, /); the wrong answers are the slips a student makes when deriving 2n^3/3 by hand.
"""
from pathlib import Path

import numpy as np
import pytest

from labkit import check, elimination
from labkit.check.core import CHECKERS, evaluate
from labkit.grading.outcomes import encode
from hints import assert_rejected_with_hint


class Counted:
    """A float that counts every arithmetic operation done on it (one tally for all of them)."""

    ops = 0

    def __init__(self, v):
        self.v = float(v)

    def _op(self, other, f):
        Counted.ops += 1
        return Counted(f(self.v, other.v if isinstance(other, Counted) else float(other)))

    def __add__(self, o): return self._op(o, lambda a, b: a + b)
    def __sub__(self, o): return self._op(o, lambda a, b: a - b)
    def __mul__(self, o): return self._op(o, lambda a, b: a * b)
    def __truediv__(self, o): return self._op(o, lambda a, b: a / b)


def textbook_elimination(A, b):
    """Row reduction of [A | b] without pivoting, as notebook 08 writes it (entries below the pivot set to 0)."""
    n = len(b)
    for k in range(n):
        for i in range(k + 1, n):
            l_ik = A[i][k] / A[k][k]
            A[i][k] = Counted(0.0)
            for j in range(k + 1, n):
                A[i][j] = A[i][j] - l_ik * A[k][j]
            b[i] = b[i] - l_ik * b[k]


@pytest.mark.parametrize("n", range(0, 9))
def test_count_matches_the_operations_elimination_does(n):
    r = np.random.default_rng(n)
    A = [[Counted(v) for v in row] for row in r.uniform(1, 2, (n, n)) + 3 * np.eye(n)]
    b = [Counted(v) for v in r.uniform(-1, 1, n)]
    Counted.ops = 0
    textbook_elimination(A, b)
    assert Counted.ops == elimination.count_elimination_flops(n)


def test_closed_form_matches_the_counting_loop():
    assert all(elimination.elimination_flops(n) == elimination.count_elimination_flops(n) for n in range(120))
    assert [elimination.elimination_flops(n) for n in (1, 2, 3, 10, 100)] == [0, 5, 19, 705, 671550]
    assert elimination.elimination_flops(10_000) / (2 / 3 * 1e12) == pytest.approx(1.0, rel=1e-3)


def test_elimination_is_lu_plus_the_right_hand_side():
    """Elimination on [A | b] = LU's flops + 2 flops per multiplier for b."""
    for n in range(30):
        assert elimination.elimination_flops(n) == elimination.lu_flops(n) + n * (n - 1)


@pytest.mark.parametrize("bad", [-1, 2.0, True, "3"])
def test_flop_counts_reject_bad_n(bad):
    for fn in (elimination.elimination_flops, elimination.count_elimination_flops):
        with pytest.raises((TypeError, ValueError), match="n must be"):
            fn(bad)


# ---------------------------------------------------------------- student-like wrong answers
def only_leading_term(n):
    return 2 * n ** 3 / 3


def rounded_leading_term(n):
    return round(2 * n ** 3 / 3)


def multiply_add_is_one_flop(n):
    flops = 0
    for k in range(n - 1):
        for i in range(k + 1, n):
            flops += 1 + (n - k - 1) + 1  # division, one fused update per entry, one for b
    return flops


def forgot_right_hand_side(n):
    return sum(m + 2 * m * m for m in range(1, n))


def forgot_the_divisions(n):
    flops = 0
    for k in range(n):
        rows = n - k - 1
        flops += rows * 2 * rows + rows * 2
    return flops


def loop_one_step_too_long(n):
    flops = 0
    for k in range(n):
        m = n - k  # should be n - k - 1 rows below the pivot
        flops += m * (1 + 2 * m + 2)
    return flops


def loop_one_step_too_short(n):
    return sum(m * (1 + 2 * m + 2) for m in range(1, n - 1))


def pivot_column_updated(n):
    flops = 0
    for k in range(n):
        for i in range(k + 1, n):
            flops += 1 + 2 * (n - k) + 2  # j from k: the entry that becomes zero is computed too
    return flops


def back_substitution_added(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) // 6 + n ** 2


def returns_text(n):
    return f"{(4 * n ** 3 + 3 * n ** 2 - 7 * n) // 6} flops"


def true_division(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) / 6  # a float, 705.0 at n = 10


def each_term_floored(n):
    return 4 * n ** 3 // 6 + 3 * n ** 2 // 6 - 7 * n // 6


def each_term_rounded(n):
    return round(4 * n ** 3 / 6) + round(3 * n ** 2 / 6) - round(7 * n / 6)  # right at n = 10, not at n = 2


WRONG = [
    (only_leading_term, "only the leading term"),
    (rounded_leading_term, "only the leading term"),
    (multiply_add_is_one_flop, "counts as 2 flops"),
    (forgot_right_hand_side, "right-hand side is eliminated too"),
    (forgot_the_divisions, "costs one division"),
    (loop_one_step_too_long, "one elimination step too many"),
    (loop_one_step_too_short, "one elimination step too few"),
    (pivot_column_updated, "become 0 without arithmetic"),
    (back_substitution_added, "back substitution"),
    (returns_text, "as a number (an int)"),
    (true_division, "return an int: / gives a float"),
    (each_term_floored, "rounded on its own"),
    (each_term_rounded, "rounded on its own"),
]


@pytest.mark.parametrize("wrong, hint", WRONG, ids=[w[0].__name__ for w in WRONG])
def test_wrong_count_rejected_with_its_hint(wrong, hint):
    assert_rejected_with_hint(check.elimination_flops, wrong, hint)


def test_text_answer_is_called_what_it_is():
    with pytest.raises(AssertionError, match="expected a number"):
        check.elimination_flops(returns_text)


@pytest.mark.parametrize("fn", [elimination.elimination_flops, elimination.count_elimination_flops,
                                lambda n: int((4 * n ** 3 + 3 * n ** 2 - 7 * n) / 6),  # a float made an int
                                lambda n: np.int64((4 * n ** 3 + 3 * n ** 2 - 7 * n) // 6)])
def test_right_answers_pass(fn, capsys):
    check.elimination_flops(fn)
    assert capsys.readouterr().out.strip() == "✔ elimination_flops: 5/5 cases passed"


def test_notebook_solution_passes(capsys):
    import nbformat
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "08_gaussian_elimination.ipynb",
                       as_version=4)
    cell = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", [])
                and "def elimination_flops(" in c.source)
    scope = {"np": np}
    exec(cell.source, scope)
    check.elimination_flops(scope["elimination_flops"])
    assert "5/5 cases passed" in capsys.readouterr().out


def test_blank_exercise_is_not_implemented(capsys):
    def blank(n):
        raise NotImplementedError("Exercise 8.4: fill me in")
    check.elimination_flops(blank)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("fn", [elimination.elimination_flops, forgot_right_hand_side])
def test_judgement_is_pure(fn):
    """Judged again from outcomes that went through the grader's encoding, the verdict is the same."""
    c = CHECKERS["elimination_flops"]()
    outcomes = [evaluate(fn, a, k) for a, k in c.inputs()]
    for o in outcomes:
        encode(o.value)  # every value is carried as data
    seen = c.judge(lambda i: outcomes[i])
    assert seen == CHECKERS["elimination_flops"]().judge(lambda i: outcomes[i])
    assert seen.status == ("passed" if fn is elimination.elimination_flops else "failed")
