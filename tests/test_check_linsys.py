"""Tests for labkit.check.linsys: references pass; a catalogue of wrong answers fails with its hint.

The wrong implementations here are written independently of the checker's own mutants.
"""
import numpy as np
import pytest
import scipy.sparse as sp

from labkit import check, elimination, iterative
from hints import assert_rejected_with_hint


def dense(A):
    return A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)


# ---------------------------------------------------------------- student-like wrong answers
def back_sub_forward_order(U, y):
    n = len(y)
    x = np.zeros(n)
    for i in range(n):  # top row first: uses x_j (j > i) before they exist
        s = sum(U[i, j] * x[j] for j in range(i + 1, n))
        x[i] = (y[i] - s) / U[i, i]
    return x


def back_sub_no_division(U, y):
    x = np.zeros(len(y))
    for i in reversed(range(len(y))):
        x[i] = y[i] - np.dot(U[i, i + 1:], x[i + 1:])
    return x


def ge_without_pivoting(A, b, pivoting="partial"):
    M = np.column_stack([np.array(A, float), np.array(b, float)])
    n = len(b)
    for k in range(n - 1):
        for i in range(k + 1, n):
            M[i] -= M[i, k] / M[k, k] * M[k]
    return elimination.back_substitution(M[:, :n], M[:, n])


def ge_pivot_without_abs(A, b, pivoting="partial"):
    M = np.column_stack([np.array(A, float), np.array(b, float)])
    n = len(b)
    for k in range(n - 1):
        p = k + np.argmax(M[k:, k])
        M[[k, p]] = M[[p, k]]
        for i in range(k + 1, n):
            M[i] -= M[i, k] / M[k, k] * M[k]
    return elimination.back_substitution(M[:, :n], M[:, n])


def ge_in_place(A, b, pivoting="partial"):
    x = elimination.gaussian_elimination(A, b)
    A[0, 0] += 1.0  # modifies the caller's matrix
    return x


def lu_no_pivot(A):
    U = np.array(A, float)
    n = len(U)
    for k in range(n):
        for i in range(k + 1, n):
            U[i, k] = U[i, k] / U[k, k]
            U[i, k + 1:] -= U[i, k] * U[k, k + 1:]
    return U, np.arange(n)


def lu_fortran_piv(A):
    lu, piv = elimination.lu_factor_rows(A)
    return lu, piv + 1


def jacobi_as_gs_sweep(A, b, x):
    A = dense(A)
    x_old = np.array(x, float)
    x_new = np.empty_like(x_old)
    for i in range(len(b)):
        x_new[i] = (b[i] - A[i] @ x_old + A[i, i] * x_old[i]) / A[i, i]
    return x_new


def gs_solver_jacobi_inside(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    x = np.zeros(len(b)) if x0 is None else np.array(x0, float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    for k in range(maxiter):
        if np.linalg.norm(b - A @ x) <= tol:
            return x, 0
        x = jacobi_as_gs_sweep(A, b, x)
    return x, (0 if np.linalg.norm(b - A @ x) <= tol else maxiter)


def gs_solver_stops_on_small_step(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    x = np.zeros(len(b)) if x0 is None else np.array(x0, float)
    for k in range(maxiter or 5000):
        x_new = iterative.gauss_seidel_sweep(A, b, x)
        if np.max(np.abs(x_new - x)) < rtol:  # step size, not residual
            return x_new, 0
        x = x_new
    return x, maxiter or 5000


def gs_solver_claims_success(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    x = np.zeros(len(b)) if x0 is None else np.array(x0, float)
    with np.errstate(all="ignore"):
        for k in range(maxiter or 5000):
            if np.linalg.norm(b - A @ x) <= max(rtol * np.linalg.norm(b), atol):
                break
            x = iterative.gauss_seidel_sweep(A, b, x)
    return x, 0  # always "converged"


def sor_ignores_omega(A, b, x, omega):
    return iterative.gauss_seidel_sweep(A, b, x)


def sor_jacobi_relaxed(A, b, x, omega):
    x = np.asarray(x, float)
    return x + omega * (jacobi_as_gs_sweep(A, b, x) - x)


WRONG = [
    (check.back_substitution, back_sub_forward_order, "wrong order"),
    (check.back_substitution, back_sub_no_division, "divide by the diagonal"),
    (check.gaussian_elimination, ge_without_pivoting, "no pivoting"),
    (check.gaussian_elimination, ge_pivot_without_abs, "ABSOLUTE"),
    (check.gaussian_elimination, ge_in_place, "work on a copy"),
    (check.lu_factor, lu_no_pivot, "no pivoting"),
    (check.lu_factor, lu_fortran_piv, "0-based"),
    (check.gauss_seidel_sweep, jacobi_as_gs_sweep, "that is Jacobi"),
    (check.gauss_seidel, gs_solver_jacobi_inside, "that is Jacobi"),
    (check.gauss_seidel, gs_solver_stops_on_small_step, "residual"),
    (check.gauss_seidel, gs_solver_claims_success, "info = 0"),
    (check.sor_sweep, sor_ignores_omega, "omega was ignored"),
    (check.sor_sweep, sor_jacobi_relaxed, "old values were used within the sweep"),
]


@pytest.mark.parametrize("checker, wrong, hint", WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_answer_rejected_with_its_hint(checker, wrong, hint):
    assert_rejected_with_hint(checker, wrong, hint)


REFERENCES = [
    (check.back_substitution, elimination.back_substitution, "back_substitution", 4),
    (check.gaussian_elimination, elimination.gaussian_elimination, "gaussian_elimination", 7),
    (check.lu_factor, elimination.lu_factor, "lu_factor", 4),
    (check.lu_factor, elimination.lu_factor_loops, "lu_factor", 4),
    (check.gauss_seidel_sweep, iterative.gauss_seidel_sweep, "gauss_seidel_sweep", 4),
    (check.sor_sweep, iterative.sor_sweep, "sor_sweep", 4),
    (check.gauss_seidel, iterative.gauss_seidel, "gauss_seidel", 5),
]


@pytest.mark.parametrize("checker, ref, name, n", REFERENCES, ids=[r[1].__name__ for r in REFERENCES])
def test_reference_passes(checker, ref, name, n, capsys):
    checker(ref)
    assert capsys.readouterr().out.strip() == f"✔ {name}: {n}/{n} cases passed"


@pytest.mark.parametrize("checker", [r[0] for r in REFERENCES[:3]] + [check.gauss_seidel])
def test_blank_exercise_is_not_implemented(checker, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise: fill me in")
    checker(blank)
    assert "not implemented yet" in capsys.readouterr().out


def test_checker_takes_the_function():
    with pytest.raises(TypeError, match="your function itself"):
        check.gauss_seidel(np.eye(2))
