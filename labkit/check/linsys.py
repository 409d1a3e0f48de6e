"""Checkers for the linear-systems exercises (notebooks 08 and 09).

Each ``check.<name>(fn)`` runs the student's ``<name>`` on fixed cases against labkit's own
and names the misconception behind a wrong answer: no pivoting, back substitution in the
wrong order, Jacobi passed off as Gauss-Seidel, a stopping test that stops before the
residual criterion holds, divergence reported as success. Introduced in notebooks 08 and 09.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from labkit import elimination, iterative, systems
from labkit.check.core import Case, Misconception, assert_close, run_checker


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _upper(n: int, seed: int, junk_below: bool = False) -> np.ndarray:
    r = _rng(seed)
    U = np.triu(r.uniform(-1, 1, (n, n))) + np.diag(r.uniform(1, 2, n) * r.choice([-1, 1], n))
    if junk_below:  # the lower triangle must be ignored
        U += np.tril(r.uniform(-5, 5, (n, n)), -1)
    return U


def _quiet(fn):
    """fn with ConvergenceWarnings silenced (the reference warns on purpose in some cases)."""
    def wrapped(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                return fn(*args, **kwargs)
    return wrapped


# ---------------------------------------------------------------- back substitution
def _back_top_down(U, y):
    x = np.zeros(len(y))
    for i in range(len(y)):
        x[i] = (y[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


def _back_no_divide(U, y):
    x = np.zeros(len(y))
    for i in range(len(y) - 1, -1, -1):
        x[i] = y[i] - U[i, i + 1:] @ x[i + 1:]
    return x


def back_substitution(fn) -> None:
    """Check ``fn(U, y) -> x`` solving U x = y for upper-triangular U (notebook 08, exercise 8.1)."""
    cases = [
        Case("1 x 1", (np.array([[4.0]]), np.array([2.0]))),
        Case("3 x 3 by hand", (np.array([[2.0, 1, -1], [0, 3, 2], [0, 0, 4]]), np.array([1.0, 2, 8]))),
        Case("8 x 8 random", (_upper(8, 1), _rng(2).uniform(-1, 1, 8))),
        Case("7 x 7, junk below the diagonal", (_upper(7, 3, junk_below=True), _rng(4).uniform(-1, 1, 7)),
             hint="only the upper triangle of U may be read: sum over j > i only"),
    ]
    run_checker("back_substitution", fn, cases, elimination.back_substitution, [
        Misconception("wrong order: back substitution starts from the LAST row (x_n = y_n / u_nn) and "
                      "goes up, because row i needs x_j for j > i", _back_top_down),
        Misconception("forgot to divide by the diagonal entry u_ii", _back_no_divide),
    ])


# ---------------------------------------------------------------- Gaussian elimination
def _ge(A, b, choose_row, swap_b=True):
    with np.errstate(all="ignore"):
        return _ge_steps(A, b, choose_row, swap_b)


def _ge_steps(A, b, choose_row, swap_b):
    A, b = np.array(A, dtype=float), np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = choose_row(A, k)
        A[[k, p]] = A[[p, k]]
        if swap_b:
            b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


def _ge_no_pivot(A, b, pivoting="partial"):
    return _ge(A, b, lambda A, k: k)


def _ge_signed_max(A, b, pivoting="partial"):
    return _ge(A, b, lambda A, k: k + int(np.argmax(A[k:, k])))


def _ge_forget_b(A, b, pivoting="partial"):
    return _ge(A, b, lambda A, k: k + int(np.argmax(np.abs(A[k:, k]))), swap_b=False)


def gaussian_elimination(fn) -> None:
    """Check ``fn(A, b) -> x`` (elimination with partial pivoting; notebook 08, exercise 8.2)."""
    r = _rng(5)
    A6 = r.uniform(-1, 1, (6, 6)) + np.diag([1e-3, 2, 3, 4, 5, 6])
    cases = [
        Case("1 x 1", (np.array([[3.0]]), np.array([6.0]))),
        Case("3 x 3, no swaps needed", (np.array([[4.0, 1, 0], [1, 4, 1], [0, 1, 4]]), np.array([1.0, 2, 3]))),
        Case("tiny pivot [[1e-20, 1], [1, 1]]", (np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0]))),
        Case("tiny pivots in column 0: [1e-20, 1e-18, -1]",
             (np.array([[1e-20, 1.0, 2.0], [1e-18, 2.0, 1.0], [-1.0, 1.0, 1.0]]), np.array([1.0, 2.0, 3.0]))),
        Case("zero pivot [[0, 1], [1, 1]]", (np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])),
             hint="a zero pivot: swap in the row with the largest |a_ik| below it (partial pivoting)"),
        Case("negative pivots", (np.array([[1.0, 2, 1], [-4, 1, 2], [2, -3, 5]]), np.array([1.0, -2, 3]))),
        Case("6 x 6 random, small leading entry", (A6, r.uniform(-1, 1, 6))),
    ]
    run_checker("gaussian_elimination", fn, cases, elimination.gaussian_elimination, [
        Misconception("no pivoting: a tiny or zero pivot a_kk must be avoided by swapping in the row "
                      "with the largest |a_ik|, i >= k (partial pivoting)", _ge_no_pivot),
        Misconception("the pivot is the entry of largest ABSOLUTE value: use |a_ik|, not a_ik",
                      _ge_signed_max),
        Misconception("when you swap two rows of A, swap the same two entries of b", _ge_forget_b),
    ])


# ---------------------------------------------------------------- LU
def _compare_lu(out, expected) -> None:
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError("return the pair (lu, piv), as scipy.linalg.lu_factor does")
    lu, piv = np.asarray(out[0]), np.asarray(out[1])
    if piv.shape != expected[1].shape or not np.issubdtype(piv.dtype, np.integer):
        raise AssertionError(f"piv: shape {piv.shape} dtype {piv.dtype}, expected integers of "
                             f"shape {expected[1].shape}")
    if not np.array_equal(piv, expected[1]):
        raise AssertionError(f"piv = {piv.tolist()}, expected {expected[1].tolist()}")
    assert_close(lu, expected[0], what="lu")


def _lu_unpivoted(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    for k in range(n):
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, np.arange(n, dtype=np.int32)


def _lu_one_based(A):
    lu, piv = elimination.lu_factor_rank1(A)
    return lu, piv + 1


def _lu_permutation(A):
    lu, piv = elimination.lu_factor_rank1(A)
    perm = np.arange(len(piv))
    for i, p in enumerate(piv):
        perm[[i, p]] = perm[[p, i]]
    return lu, perm


def _lu_no_multipliers(A):
    lu, piv = elimination.lu_factor_rank1(A)
    return np.triu(lu), piv


def lu_factor(fn) -> None:
    """Check ``fn(A) -> (lu, piv)`` in scipy.linalg.lu_factor's convention (notebook 08, exercise 8.3)."""
    r = _rng(6)
    cases = [
        Case("1 x 1", (np.array([[5.0]]),)),
        Case("2 x 2 needing a swap", (np.array([[1.0, 2.0], [3.0, 4.0]]),)),
        Case("4 x 4 by hand", (np.array([[2.0, 1, 1, 0], [4, 3, 3, 1], [8, 7, 9, 5], [6, 7, 9, 8]]),)),
        Case("9 x 9 random", (r.uniform(-1, 1, (9, 9)),)),
    ]
    run_checker("lu_factor", fn, cases, elimination.lu_factor, [
        Misconception("no pivoting: at step k swap in the row with the largest |a_ik| and record it in "
                      "piv[k]", _lu_unpivoted),
        Misconception("piv is 0-based in scipy (LAPACK's Fortran ipiv is 1-based): piv[k] = p, not p + 1",
                      _lu_one_based),
        Misconception("piv[k] is the row swapped with row k at step k (a sequence of swaps), not the final "
                      "permutation of the rows", _lu_permutation),
        Misconception("store the multipliers l_ik = a_ik / a_kk below the diagonal of lu (L's unit "
                      "diagonal is implied)", _lu_no_multipliers),
    ], compare=_compare_lu)


# ---------------------------------------------------------------- Gauss-Seidel
def _dd_dense(n: int, seed: int) -> np.ndarray:
    A = _rng(seed).uniform(-1, 1, (n, n))
    return A + np.diag(np.abs(A).sum(axis=1) + 0.5)


def _sweep_jacobi(A, b, x, *args):
    return iterative.jacobi_sweep(A, b, x)


def _sweep_with_diagonal(A, b, x, *args):
    A = A.toarray() if sp.issparse(A) else np.asarray(A)
    x = np.array(x, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x) / A[i, i]
    return x


def _sweep_cases():
    Asp, bsp, _ = systems.diagonally_dominant(40, 0.1, 7)
    return [
        Case("1 x 1", (np.array([[2.0]]), np.array([4.0]), np.array([0.0]))),
        Case("4 x 4 dense", (_dd_dense(4, 8), np.array([1.0, -2, 3, 0.5]), np.zeros(4))),
        Case("6 x 6 dense, x = 1", (_dd_dense(6, 9), _rng(10).uniform(-1, 1, 6), np.ones(6))),
        Case("40 x 40 sparse CSR", (Asp, bsp, _rng(11).uniform(0, 1, 40))),
    ]


def gauss_seidel_sweep(fn) -> None:
    """Check ``fn(A, b, x) -> x_new``: one Gauss-Seidel sweep (notebook 09, exercise 9.1)."""
    run_checker("gauss_seidel_sweep", fn, _sweep_cases(), iterative.gauss_seidel_sweep, [
        Misconception("that is Jacobi: old values were used within the sweep. Gauss-Seidel uses each "
                      "new x_j (j < i) as soon as it is computed: update x in place, row by row",
                      _sweep_jacobi),
        Misconception("the sum leaves out j = i: x_i = (b_i - sum_{j != i} a_ij x_j) / a_ii",
                      _sweep_with_diagonal),
    ])


def _sor_as_gs(A, b, x, omega):
    return iterative.gauss_seidel_sweep(A, b, x)


def _sor_on_jacobi(A, b, x, omega):
    return (1 - omega) * np.asarray(x, dtype=float) + omega * iterative.jacobi_sweep(A, b, x)


def _sor_swapped(A, b, x, omega):
    return iterative.sor_sweep(A, b, x, 2.0 - omega) if 0 < 2.0 - omega < 2 else None


def sor_sweep(fn) -> None:
    """Check ``fn(A, b, x, omega) -> x_new``: one SOR sweep (notebook 09, exercise 9.3)."""
    cases = [Case(c.label + f", omega={w}", c.args + (w,)) for c, w in
             zip(_sweep_cases(), (1.0, 1.5, 0.7, 1.2))]
    run_checker("sor_sweep", fn, cases, iterative.sor_sweep, [
        Misconception("omega was ignored: x_i <- (1 - omega) x_i + omega * (Gauss-Seidel value)",
                      _sor_as_gs),
        Misconception("the relaxation must be applied row by row inside the Gauss-Seidel sweep, not to "
                      "a whole Jacobi step (old values were used within the sweep)", _sor_on_jacobi),
        Misconception("omega and 1 - omega are swapped: the new value gets weight omega",
                      _sor_swapped),
    ])


@dataclass
class _Run:
    """The reference run of an iterative solver, with what is needed to judge a student's run."""

    x: np.ndarray
    info: int
    A: object
    b: np.ndarray
    rtol: float
    atol: float


def _compare_solver(out, expected) -> None:
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError("return the pair (x, info), as scipy.sparse.linalg's solvers do")
    x, info = np.asarray(out[0], dtype=float), out[1]
    if not isinstance(info, (int, np.integer)):
        raise AssertionError(f"info must be an int (0 when converged), got {type(info).__name__}")
    ref_x, ref_info = (expected.x, expected.info) if isinstance(expected, _Run) else expected
    if isinstance(expected, _Run):
        with np.errstate(all="ignore"):
            r = np.linalg.norm(expected.b - expected.A @ x)
        tol = max(expected.rtol * np.linalg.norm(expected.b), expected.atol)
        if info == 0 and not r <= tol:
            raise AssertionError(f"info = 0 (converged) but ||b - A x|| = {r:.3g} > max(rtol ||b||, "
                                 f"atol) = {tol:.3g}")
        if info != 0 and ref_info == 0:
            raise AssertionError(f"info = {info} (not converged), but this system converges: "
                                 f"labkit reached ||b - A x|| <= {tol:.3g}")
        with np.errstate(all="ignore"):
            r_ref = np.linalg.norm(expected.b - expected.A @ expected.x)
        if not r_ref <= np.linalg.norm(expected.b):
            return  # the reference diverged: only info matters
    elif (info == 0) != (ref_info == 0):
        raise AssertionError(f"info {info} vs {ref_info}")
    assert_close(x, ref_x, what="x")


def _gs_jacobi(A, b, x0=None, **kw):
    return iterative.jacobi(A, b, x0, **kw)


def _gs_step_test(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    for k in range(1, (maxiter or 5000) + 1):
        x_new = iterative.gauss_seidel_sweep(A, b, x)
        if np.linalg.norm(x_new - x) <= rtol * np.linalg.norm(x_new):
            return x_new, 0
        x = x_new
    return x, k


def _gs_always_zero(A, b, x0=None, **kw):
    return iterative.gauss_seidel(A, b, x0, **kw)[0], 0


def gauss_seidel(fn) -> None:
    """Check ``fn(A, b, x0=None, *, rtol, atol, maxiter, callback) -> (x, info)`` (notebook 09, 9.2)."""
    Asp, bsp, _ = systems.diagonally_dominant(60, 0.1, 12)
    Adiv, bdiv, _ = systems.large_spectral_radius(30, 0.1, 13)
    Ap = systems.poisson_1d(20)
    bp = np.full(20, 1.0 / 21 ** 2)
    cases = [
        Case("8 x 8 dense, diagonally dominant", (_dd_dense(8, 14), _rng(15).uniform(-1, 1, 8))),
        Case("60 x 60 sparse, maxiter=4", (Asp, bsp), {"maxiter": 4},
             hint="after 4 sweeps x differs from Gauss-Seidel's: does each sweep use the new x_j "
                  "(j < i) as soon as it is computed?"),
        Case("1-D Poisson n=20 (slow: rho = 0.98), rtol=1e-6", (Ap, bp), {"rtol": 1e-6},
             hint="stopped before ||b - A x|| <= max(rtol ||b||, atol) held: test the residual, "
                  "not the size of the last step"),
        Case("x0 given, atol=1e-3", (_dd_dense(5, 16), np.ones(5), np.ones(5)), {"rtol": 0.0, "atol": 1e-3}),
        Case("30 x 30 divergent (rho >> 1), maxiter=20", (Adiv, bdiv), {"maxiter": 20},
             hint="this iteration diverges: return info > 0 (iterations done), never info = 0"),
    ]
    run_checker("gauss_seidel", _quiet(fn) if callable(fn) else fn, cases, _Reference(), [
        Misconception("that is Jacobi: old values were used within the sweep. Gauss-Seidel uses each "
                      "new x_j (j < i) as soon as it is computed", _quiet(_gs_jacobi)),
        Misconception("the stopping test stops before ||b - A x|| <= max(rtol ||b||, atol) holds: a small "
                      "step ||x_k+1 - x_k|| does not mean a small residual when rho is near 1",
                      _quiet(_gs_step_test)),
        Misconception("divergence reported as success: info = 0 only when the residual test passed; "
                      "otherwise return the number of iterations done", _quiet(_gs_always_zero)),
    ], compare=_compare_solver)


class _Reference:
    def __call__(self, A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
        x, info = _quiet(iterative.gauss_seidel)(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter)
        return _Run(x, info, A, np.asarray(b, dtype=float), rtol, atol)


__all__ = ["back_substitution", "gaussian_elimination", "lu_factor", "gauss_seidel_sweep",
           "gauss_seidel", "sor_sweep"]
