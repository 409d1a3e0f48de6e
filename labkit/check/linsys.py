"""Checkers for the direct-solver exercises of notebook 08, and the probe helpers both linsys modules use.

Each ``check.<name>(fn)`` runs the student's ``<name>`` on cases that each isolate one property
of a right answer, against labkit's own; a wrong answer is named by probes: small systems on
which one property alone decides the result (a swap needed at step k, a pivot that only a row
search would pick, a system whose last step is small while its residual is not, ...).
The LU checker is in ``check.lu``, the notebook 09 checkers in ``check.linsys_iterative``. Introduced in
notebook 08.
"""
from __future__ import annotations

import warnings

import numpy as np

from labkit import elimination
from labkit.check.evidence import reads
from labkit.check.core import NUMPY_DTYPE_HINT, Case, Checker, Outcome, Probe, checker, rng_seed
from labkit.check.twins import twin


def seeded(seed: int) -> np.random.Generator:
    """The generator of a checker's random input ``seed`` (moved by ``labkit grade --seed``)."""
    return np.random.default_rng(rng_seed(seed))


def _upper(n: int, seed: int, junk_below: bool = False) -> np.ndarray:
    r = seeded(seed)
    U = np.triu(r.uniform(-1, 1, (n, n))) + np.diag(r.uniform(1, 2, n) * r.choice([-1, 1], n))
    if junk_below:  # the lower triangle must be ignored
        U += np.tril(r.uniform(-5, 5, (n, n)), -1)
    return U


def quiet(fn):
    """fn with numpy's and labkit's warnings silenced (a tiny pivot, an overflowing iteration)."""
    def quiet_fn(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                return fn(*args, **kwargs)
    return quiet_fn


def as_vector(outcome: Outcome) -> np.ndarray:
    """The student's result as a float64 vector (a probe looks at its values, not its dtype)."""
    return np.asarray(outcome.value, dtype=np.float64)


def near(x, y) -> bool:
    """x and y have the same shape and agree to about 6 digits (a probe's test, not the tolerance)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return x.shape == y.shape and bool(np.allclose(x, y, rtol=1e-6, atol=1e-9))


def show(x) -> str:
    """A short print of a vector for a probe's observation, the same whatever numpy's print options are."""
    with np.printoptions(precision=4, suppress=True, floatmode="maxprec", linewidth=75):
        return np.array2string(np.asarray(x, dtype=np.float64), separator=", ")


def differs_from(expected, errors: bool = False):
    """violated(): the observation 'x = ..., expected ...' when the result differs from ``expected``. A NaN there is
    evidence; an error only with ``errors``, for a probe whose control is the same system in another row order
    (``_pivoted``): a function right there that raises here fails on the row order alone."""
    @reads("nan", *(("error",) if errors else ()))
    def violated(outcome, probe):
        if outcome.error:
            return f"raised {outcome.error}"
        x = as_vector(outcome)
        return "" if near(x, expected) else f"x = {show(x)}, expected {show(expected)}"
    return violated


def equals_formula(formula, what: str):
    """violated(): the result equals ``formula(*probe.args)``, the value the property's violation gives."""
    def violated(outcome, probe):
        x, bad = as_vector(outcome), formula(*probe.args)
        return f"x = {show(x)}, {what}" if near(x, bad) else ""
    return violated


# ---------------------------------------------------------------- back substitution
_U2, _Y2 = np.array([[2.0, 1.0], [0.0, 4.0]]), np.array([4.0, 8.0])  # x = [1, 2]
_U3, _Y3 = np.array([[2.0, 1.0, -1.0], [0.0, 4.0, 2.0], [0.0, 0.0, 5.0]]), np.array([3.0, 7.0, 10.0])


def same_x(out, expected) -> None:
    """A twin's comparison for a solution vector: same shape, about 6 digits (``near``)."""
    if not near(np.asarray(out, dtype=np.float64), expected):
        raise AssertionError("differs")


def _bs_rows(U, y, rows, divide: bool = True, start=None):
    """Back substitution's update x_i = (x_i - sum_{j>i} u_ij x_j) / u_ii over ``rows`` in that order, from
    x = ``start`` (y itself unless given): the twins of its mistakes."""
    U, y = np.asarray(U, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x = y.copy() if start is None else start
    for i in rows:
        x[i] = (y[i] - U[i, i + 1:] @ x[i + 1:]) / (U[i, i] if divide else 1.0)
    return x


def _bs_undivided(U, y):
    return _bs_rows(U, y, range(len(y) - 1, -1, -1), divide=False)


def _bs_upward(U, y):
    return _bs_rows(U, y, range(len(y)))


def _bs_diagonal_only(U, y):
    """x_i = y_i / u_ii: the sum left out, or the rows solved from the top on x = 0 (the same result)."""
    return _bs_rows(U, y, range(len(y)), start=np.zeros(len(y)))


def _bs_row0_skipped(U, y):
    return _bs_rows(U, y, range(len(y) - 1, 0, -1))


@checker
def back_substitution() -> Checker:
    """``fn(U, y) -> x`` with U x = y for upper-triangular U (notebook 08, exercise 8.1).

    x solves U x = y: x_i = (y_i - sum_{j>i} u_ij x_j) / u_ii, from the last row up
    every row is solved, row 0 included
    only the upper triangle of U is read
    x is float64, also for integer y
    U and y are not modified
    """
    solve = "x must satisfy U x = y: x_i = (y_i - sum_{j>i} u_ij x_j) / u_ii, for i = n-1 down to 0"
    cases = [
        Case("1 x 1", (np.array([[4.0]]), np.array([2.0])), hint=solve),
        Case("3 x 3 by hand", (np.array([[2.0, 1, -1], [0, 3, 2], [0, 0, 4]]), np.array([1.0, 2, 8])),
             hint=solve),
        Case("8 x 8 random", (_upper(8, 1), seeded(2).uniform(-1, 1, 8)), hint=solve),
        Case("7 x 7, junk below the diagonal", (_upper(7, 3, junk_below=True), seeded(4).uniform(-1, 1, 7)),
             hint="only the upper triangle of U may be read: sum over j > i only"),
        Case("integer y", (np.array([[2.0, 1.0], [0.0, 4.0]]), np.array([4, 7])),
             hint="x must be float64 (x = [1.125, 1.75] here), whatever y's dtype"),
    ]
    probes = [
        Probe("unit upper triangle, junk below: x = y", (np.array([[1.0, 0.0], [5.0, 1.0]]), _Y2), {},
              "only the upper triangle of U may be read (below it may hold anything, e.g. L's "
              "multipliers): x_i = (y_i - sum_{j>i} u_ij x_j) / u_ii, j > i only",
              differs_from(_Y2), control=(np.eye(2), _Y2)),
        Probe("3 x 3: divided by u_ii", (_U3, _Y3), {},
              "forgot to divide by the diagonal entry u_ii: x_i = (y_i - sum_{j>i} u_ij x_j) / u_ii",
              twin(_bs_undivided, compare=same_x, seen="x equals back substitution without the division by u_ii")),
        Probe("3 x 3: from the last row up", (_U3, _Y3), {},
              "wrong order: back substitution starts from the LAST row (x_n-1 = y_n-1 / u_n-1,n-1) "
              "and goes up, because row i needs x_j for j > i",
              twin(_bs_upward, compare=same_x, seen="x equals the rows solved from the first one down")),
        Probe("3 x 3: the sum over j > i", (_U3, _Y3), {},
              "x_i = y_i / u_ii: the sum over j > i is missing, either left out or computed while every x_j was "
              "still 0 (the rows solved from the first one down, on x = zeros): x_i = (y_i - sum_{j>i} u_ij x_j) "
              "/ u_ii, from the last row up", twin(_bs_diagonal_only, compare=same_x)),
        Probe("3 x 3: row 0 solved", (_U3, _Y3), {},
              "row 0 was not solved (x_0 = y_0 left as it was): the loop must run down to i = 0, "
              "e.g. range(n - 1, -1, -1)",
              twin(_bs_row0_skipped, compare=same_x, seen=f"x_0 = y_0 = {_Y3[0]:g}, the other rows right")),
    ]
    return Checker("back_substitution", cases, elimination.back_substitution, probes,
                   prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)


# ---------------------------------------------------------------- Gaussian elimination
def swap_at_step(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A system (x = ones) whose pivot at step k is 1e-20 unless row k+1 is swapped in.

    Rows k and k+1 are [.., 1e-20, 1, ..] and [.., 1, 1, ..] in columns k, k+1; the rows above are
    coupled to them (2 on the diagonal, 1 to the right), so steps 0..k-1 change them.
    """
    A = np.eye(n) * 2.0 + np.triu(np.ones((n, n)), 1) * 0.5
    A[k, k], A[k, k + 1] = 1e-20, 1.0
    A[k + 1, k], A[k + 1, k + 1] = 1.0, 1.0
    A[k + 1:, :k] = 0.0
    A[k:k + 2, k + 2:] = 0.0
    return A, A @ np.ones(n)


def _ge_b_not_eliminated(A, b, *_):
    """x that solves U x = b with U eliminated from A but b left as it was (no swaps on this input)."""
    A = np.array(A, dtype=np.float64)
    return elimination.back_substitution(elimination.lu_factor(A)[0], b)


def _ge_b_not_swapped(A, b, *_):
    """x when A's rows were swapped for pivoting but b's were not (one swap, rows 0 and 1)."""
    return np.linalg.solve(np.asarray(A, dtype=np.float64)[[1, 0]], b)


def _pivoted(system, order):
    """A probe's control: the same system with its rows already in partial pivoting's order (no swap needed), so
    a function right there and wrong on the probe errs in its pivot search or its swap."""
    A, b = system
    return A[order], b[order]


def _ge_signed_pivot(A, b):
    """The twin of a pivot search by signed value: elimination with the row of the largest a_ik (not |a_ik|)."""
    A, b = np.array(A, dtype=np.float64), np.array(b, dtype=np.float64)
    n = len(b)
    for k in range(n - 1):
        p = k + int(np.argmax(A[k:, k]))
        A[[k, p]], b[[k, p]] = A[[p, k]], b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _bs_rows(A, b, range(n - 1, -1, -1))


@reads("error", "nan")
def _row_lost(o, p):
    """[[1, 2], [3, 4]] is solved accurately by any pivot order: a raise or a non-finite x means a zero pivot."""
    if o.error:
        return f"raised {o.error}"
    x = as_vector(o)
    return not np.isfinite(x).all() and f"x = {show(x)}"


@checker
def gaussian_elimination() -> Checker:
    """``fn(A, b) -> x`` by elimination with partial pivoting (notebook 08, exercise 8.2).

    x solves A x = b (float64, also for integer inputs)
    the multiples of the pivot row are subtracted from b too
    at step k the pivot is the entry of largest |a_ik|, i >= k, in column k: needed at step 0,
    at later steps (1, 2), for a zero pivot, and when the largest entry is negative
    the same rows of b are swapped as of A, and a swap really exchanges the two rows
    A and b are not modified
    """
    pivot = ("partial pivoting: at step k the pivot is the entry of largest |a_ik|, i >= k, in column "
             "k (a swap is needed at step {k} here)")
    solve = "x must satisfy A x = b: eliminate below each pivot (b too), then back-substitute"
    r = seeded(5)
    A6 = r.uniform(-1, 1, (6, 6)) + np.diag([1e-3, 2, 3, 4, 5, 6])
    cases = [
        Case("1 x 1", (np.array([[3.0]]), np.array([6.0])), hint=solve),
        Case("3 x 3, no swaps needed", (np.array([[4.0, 1, 0], [1, 4, 1], [0, 1, 4]]), np.array([1.0, 2, 3])),
             hint=solve),
        Case("tiny pivot [[1e-20, 1], [1, 1]]", (np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])),
             hint=pivot.format(k=0)),
        Case("zero pivot [[0, 1], [1, 1]]", (np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])),
             hint=pivot.format(k=0)),
        Case("swap needed at step 1 only", (np.array([[1.0, 0, 0], [0, 1e-20, 1], [0, 1, 1]]),
                                            np.array([1.0, 1, 2])), hint=pivot.format(k=1)),
        Case("swap needed at step 1, coupled 4 x 4", swap_at_step(4, 1), hint=pivot.format(k=1)),
        Case("swap needed at step 2, 5 x 5", swap_at_step(5, 2), hint=pivot.format(k=2)),
        Case("largest |a_i0| is negative", (np.array([[1e-20, 1.0], [-1.0, 1.0]]), np.array([1.0, 0.0])),
             hint=pivot.format(k=0)),
        Case("pivot found down column 0, not along row 0",
             (np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]), np.array([1.0, 2, 3])), hint=pivot.format(k=0)),
        Case("negative pivots", (np.array([[1.0, 2, 1], [-4, 1, 2], [2, -3, 5]]), np.array([1.0, -2, 3])),
             hint=solve),
        Case("6 x 6 random, small leading entry", (A6, r.uniform(-1, 1, 6)), hint=solve),
        Case("integer A and b", (np.array([[2, 1], [1, 3]]), np.array([3, 5])),
             hint="x must be float64 (x = [0.8, 1.4] here), whatever the inputs' dtype"),
    ]
    no_swap = (np.array([[2.0, 1.0], [1.0, 3.0]]), np.array([3.0, 4.0]))  # no pivot rule swaps
    one_swap = (np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 6.0]))  # any pivot is accurate
    row_search = (np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]), np.array([1.0, 2, 3]))
    probes = [
        Probe("no swap needed: b eliminated", no_swap, {},
              "the multiples of the pivot row must be subtracted from b too: b_i -= l_ik b_k",
              equals_formula(_ge_b_not_eliminated, "which solves U x = b with b not eliminated")),
        Probe("one swap, any pivot accurate: swap is an exchange", one_swap, {},
              "a row was lost on a non-singular 2 x 2 whose every pivot works, so a pivot became 0 after "
              "the swap; two mistakes do this: a swap that copies one row over the other (numpy rows are "
              "views: A[k], A[p] = A[p], A[k]; use A[[k, p]] = A[[p, k]]), or a pivot search that also looks at "
              "rows above k (search rows k..n-1 only)", _row_lost, control=_pivoted(one_swap, [1, 0])),
        Probe("one swap, any pivot accurate: b swapped", one_swap, {},
              "when you swap two rows of A, swap the same two entries of b",
              equals_formula(_ge_b_not_swapped, "which solves A x = b with b's rows not swapped")),
        Probe("tiny pivot at step 0", (np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])), {},
              "no pivoting: the tiny pivot 1e-20 was used; at step k swap in the row with the largest "
              "|a_ik|, i >= k (partial pivoting)", differs_from(np.ones(2), errors=True),
              control=_pivoted((np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])), [1, 0])),
        Probe("largest |a_i0| is negative", (np.array([[1e-20, 1.0], [-1.0, 1.0]]), np.array([1.0, 0.0])), {},
              "the pivot is the entry of largest ABSOLUTE value: compare |a_ik|, not a_ik (here the "
              "largest is -1)", twin(_ge_signed_pivot, compare=same_x, seen="x equals elimination whose pivot is "
                                                                            "the largest signed a_ik"),
              control=(np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0]))),  # the same, the -1 made +1
        Probe("swap needed at step 1 only", (np.array([[1.0, 0, 0], [0, 1e-20, 1], [0, 1, 1]]),
                                             np.array([1.0, 1, 2])), {},
              "only step 1 needs a swap here, and x is wrong: at step k search column k over the rows i >= k, "
              "row k itself included, for the largest |a_ik|; a search in column 0, or over the rows after k only, "
              "picks another row", differs_from(np.ones(3), errors=True),
              control=_pivoted((np.array([[1.0, 0, 0], [0, 1e-20, 1], [0, 1, 1]]), np.array([1.0, 1, 2])), [0, 2, 1])),
        Probe("pivot a column search finds, a row search does not", row_search, {},
              "pivot searched along the pivot row: partial pivoting compares |a_ik| DOWN column k "
              "(rows i >= k) and swaps rows", differs_from(np.array([3.0, 1.0, 2.0]), errors=True),
              control=_pivoted(row_search, [2, 0, 1])),
    ]
    return Checker("gaussian_elimination", cases, elimination.gaussian_elimination, probes,
                   prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)
