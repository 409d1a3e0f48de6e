"""Checker for LU with partial pivoting (notebook 08, exercise 8.3), and the (lu, piv) comparison and pivot-order
controls the blocked LU's checker shares (``check.linsys_structure``). Introduced in notebook 08."""
from __future__ import annotations

import numpy as np

from labkit import elimination
from labkit.check.evidence import reads
from labkit.check.core import NUMPY_DTYPE_HINT, Case, Checker, DtypeMismatch, Probe, checker
from labkit.check.linsys import near, quiet, seeded, swap_at_step
from labkit.check.tolerance import assert_close


def lu_pair(out) -> tuple[np.ndarray, np.ndarray]:
    """The (lu, piv) a function returned, as arrays; AssertionError when it is not a pair."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"returned {type(out).__name__}"
                             f"{' of ' + str(len(out)) if isinstance(out, (tuple, list)) else ''}, "
                             f"expected the pair (lu, piv)")
    return np.asarray(out[0]), np.asarray(out[1])


def compare_lu(out, expected) -> None:
    """(lu, piv) in scipy.linalg.lu_factor's convention: piv exactly (0-based swaps), then lu at float64's tolerance."""
    lu, piv = lu_pair(out)
    if lu.dtype != expected[0].dtype:
        raise DtypeMismatch(f"lu: dtype {lu.dtype}, expected {expected[0].dtype}")
    if piv.shape != expected[1].shape or not np.issubdtype(piv.dtype, np.integer):
        raise AssertionError(f"piv: shape {piv.shape} dtype {piv.dtype}, expected integers of "
                             f"shape {expected[1].shape}")
    if not np.array_equal(piv, expected[1]):
        raise AssertionError(f"piv = {piv.tolist()}, expected {expected[1].tolist()}")
    assert_close(lu, expected[0], dtype=expected[0].dtype, what="lu")


_SIGNED = np.array([[1.0, 2, 0], [3, 4, 1], [-5, 6, 2]])  # column 0: |.| picks row 2, signed row 1, none row 0


def _lu_probe(test):
    """violated(): ``test(lu, piv, lu_ref, piv_ref)`` on the student's pair and labkit's."""
    def violated(outcome, probe):
        lu, piv = lu_pair(outcome.value)
        ref_lu, ref_piv = elimination.lu_factor(*probe.args)
        return test(np.asarray(lu, dtype=np.float64), piv, ref_lu, ref_piv)
    return violated


def in_pivot_order(A: np.ndarray) -> tuple[np.ndarray]:
    """A probe's control: A with its rows already in partial pivoting's final order, so that no step swaps; a
    function right there and wrong on A itself errs in its pivot search or its swaps."""
    return (A[_permutation(elimination.lu_factor(A)[1])],)


def _permutation(piv: np.ndarray) -> np.ndarray:
    """The final order of the rows after the swaps piv[0], piv[1], ... ."""
    perm = np.arange(len(piv))
    for k, p in enumerate(piv):
        perm[[k, p]] = perm[[p, k]]
    return perm


@checker
def lu_factor() -> Checker:
    """``fn(A) -> (lu, piv)`` in scipy.linalg.lu_factor's convention (notebook 08, exercise 8.3).

    returns the pair (lu, piv): U on and above lu's diagonal, the multipliers l_ik = a_ik / a_kk below
    (L's unit diagonal implied, not stored)
    piv is an integer array, 0-based: piv[k] = the row swapped with row k at step k (not the final order)
    the pivot at step k is the largest |a_ik|, i >= k, at every step
    lu is float64, also for an integer A; A is not modified
    """
    r = seeded(6)
    pivots = ("at step k the row p >= k with the largest |a_pk| is swapped with row k, the whole row (the "
              "multipliers already stored left of column k too), and piv[k] = p")
    factors = ("lu holds U on and above the diagonal and l_ik = a_ik / a_kk below it, after the swaps recorded "
               "in piv (whole rows exchanged, as copies); the step-k update touches only rows and columns after k")
    cases = [
        Case("1 x 1", (np.array([[5.0]]),), hint=factors),
        Case("2 x 2 needing a swap", (np.array([[1.0, 2.0], [3.0, 4.0]]),), hint=factors),
        Case("3 x 3, no swaps", (np.array([[4.0, 1, 0], [1, 4, 1], [0, 1, 4]]),), hint=factors),
        Case("4 x 4 by hand", (np.array([[2.0, 1, 1, 0], [4, 3, 3, 1], [8, 7, 9, 5], [6, 7, 9, 8]]),),
             hint=factors),
        Case("swap needed at step 2 only", (swap_at_step(5, 2)[0],), hint=pivots),
        Case("9 x 9 random", (r.uniform(-1, 1, (9, 9)),), hint=pivots),
        Case("integer A", (np.array([[1, 2], [3, 4]]),),
             hint="lu must be float64 (the multiplier here is 1/3), whatever A's dtype"),
    ]
    A3 = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 10]])  # piv = [2, 2, 2], final order [2, 0, 1]
    probes = [
        Probe("the returned pair", (A3,), {},
              "return the pair (lu, piv) as scipy.linalg.lu_factor does: L and U together in ONE "
              "array lu (U on and above the diagonal, L's multipliers below), and piv",
              reads("shape")(lambda o, p: "" if isinstance(o.value, (tuple, list)) and len(o.value) == 2
                             else f"returned {type(o.value).__name__}")),
        Probe("piv's dtype", (A3,), {}, "piv must be an integer array (e.g. np.zeros(n, dtype=np.int32))",
              _lu_probe(lambda lu, piv, *_: "" if np.issubdtype(piv.dtype, np.integer)
                        else f"piv has dtype {piv.dtype}")),
        Probe("piv with no swaps", (np.array([[4.0, 1, 0], [1, 4, 1], [0, 1, 4]]),), {},
              "piv is 0-based as in scipy (LAPACK's Fortran ipiv is 1-based): no swap at step k "
              "means piv[k] = k",
              _lu_probe(lambda lu, piv, _, ref: f"piv = {piv.tolist()}"
                        if np.array_equal(piv, ref + 1) else "")),
        Probe("piv after swaps", (A3,), {},
              "piv[k] is the row swapped with row k at step k (a sequence of swaps), not the final "
              "permutation of the rows",
              _lu_probe(lambda lu, piv, _, ref: f"piv = {piv.tolist()}, the final row order; "
                        f"the swaps were {ref.tolist()}" if np.array_equal(piv, _permutation(ref)) else "")),
        Probe("pivoting", (A3,), {},
              "no pivoting: at step k swap in the row with the largest |a_ik| (i >= k) and record "
              "it in piv[k]",
              _lu_probe(lambda lu, piv, _, ref: f"piv = {piv.tolist()}, expected {ref.tolist()}"
                        if np.array_equal(piv, np.arange(len(ref))) else ""), control=in_pivot_order(A3)),
        Probe("the largest |a_p0| is negative", (_SIGNED,), {},
              "the pivot is the entry of largest ABSOLUTE value: compare |a_pk|, not a_pk (here the largest is -5)",
              _lu_probe(lambda lu, piv, _, ref: f"piv[0] = {int(piv[0])}, the row of the largest signed entry; "
                        f"expected {int(ref[0])}" if int(piv[0]) == 1 else ""),
              control=(np.abs(_SIGNED),)),  # the same, the -5 made +5
        Probe("pivot at every step", (A3,), {}, pivots,
              _lu_probe(lambda lu, piv, _, ref: "" if np.array_equal(piv, ref)
                        else f"piv = {piv.tolist()}, expected {ref.tolist()}"), control=in_pivot_order(A3)),
        Probe("lower part of lu", (A3,), {},
              "store the multipliers l_ik = a_ik / a_kk below the diagonal of lu (L's unit "
              "diagonal is implied)",
              _lu_probe(lambda lu, piv, ref, _: "the strictly lower part of lu is zero"
                        if near(np.tril(lu, -1), 0 * lu) and np.tril(ref, -1).any() else "")),
        Probe("multipliers", (A3,), {},
              "the multiplier is l_ik = a_ik / a_kk: divide the entries below the pivot by it",
              _lu_probe(lambda lu, piv, ref, _: "below the diagonal lu holds a_ik, not a_ik / a_kk"
                        if near(np.tril(lu, -1), np.tril(ref, -1) * np.diag(ref)) else "")),
        Probe("diagonal of lu", (A3,), {},
              "lu's diagonal is U's: L's unit diagonal is implied and not added (lu = L + U - I)",
              _lu_probe(lambda lu, piv, ref, _: "diag(lu) = diag(U) + 1"
                        if near(np.diag(lu), np.diag(ref) + 1) else "")),
    ]
    return Checker("lu_factor", cases, elimination.lu_factor, probes, compare=compare_lu,
                   prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)
