"""Tests for labkit.check.linsys and linsys_iterative: references pass; wrong answers fail with their hint.

The wrong implementations here are test data: some written independently of the checkers, and the
catalogue the old checkers carried (each now named by a probe of what the function does).
"""
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labkit import check, elimination, iterative
from labkit.check.core import CHECKERS, evaluate
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
            if callback is not None:
                callback(x)
    return x, 0  # always "converged"


def sor_ignores_omega(A, b, x, omega):
    return iterative.gauss_seidel_sweep(A, b, x)


def sor_jacobi_relaxed(A, b, x, omega):
    x = np.asarray(x, float)
    return x + omega * (jacobi_as_gs_sweep(A, b, x) - x)


# ---------------------------------------------------------------- the old checker catalogue (was labkit.check.linsys)
def ge_with_pivot_rule(choose_row, swap_b=True):
    def ge(A, b, pivoting="partial"):
        A, b = np.array(A, dtype=float), np.array(b, dtype=float)
        with np.errstate(all="ignore"):
            for k in range(len(b)):
                p = choose_row(A, k)
                A[[k, p]] = A[[p, k]]
                if swap_b:
                    b[[k, p]] = b[[p, k]]
                m = A[k + 1:, k] / A[k, k]
                A[k + 1:, k:] -= np.outer(m, A[k, k:])
                b[k + 1:] -= m * b[k]
            return np.linalg.solve(np.triu(A), b) if np.isfinite(A).all() else A[:, 0]
    return ge


ge_catalogue_no_pivot = ge_with_pivot_rule(lambda A, k: k)
ge_catalogue_signed_max = ge_with_pivot_rule(lambda A, k: k + int(np.argmax(A[k:, k])))
ge_catalogue_forget_b = ge_with_pivot_rule(lambda A, k: k + int(np.argmax(np.abs(A[k:, k]))), swap_b=False)
ge_pivot_in_column_0 = ge_with_pivot_rule(lambda A, k: k + int(np.argmax(np.abs(A[k:, 0]))))
ge_pivot_along_row = ge_with_pivot_rule(lambda A, k: k + int(np.argmax(np.abs(A[k, k:]))))


def ge_float32_result(A, b, pivoting="partial"):
    return elimination.gaussian_elimination(A, b).astype(np.float32)


def ge_float16_result(A, b, pivoting="partial"):
    return elimination.gaussian_elimination(A, b).astype(np.float16)


def back_sub_float16(U, y):
    return elimination.back_substitution(U, y).astype(np.float16)


def lu_catalogue_permutation(A):
    lu, piv = elimination.lu_factor_rank1(A)
    perm = np.arange(len(piv))
    for i, p in enumerate(piv):
        perm[[i, p]] = perm[[p, i]]
    return lu, perm


def lu_catalogue_no_multipliers(A):
    lu, piv = elimination.lu_factor_rank1(A)
    return np.triu(lu), piv


def sweep_catalogue_with_diagonal(A, b, x):
    A, x = dense(A), np.array(x, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x) / A[i, i]
    return x


def sor_catalogue_swapped(A, b, x, omega):
    A, x = dense(A), np.array(x, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = omega * x[i] + (1 - omega) * gs
    return x


def gs_solver(step=None, info_when_done=None, call=lambda cb, x, r: cb(x), call_at_end=False):
    """A Gauss-Seidel solver with one part of its contract changed (the rest as labkit's)."""
    def solve(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
        b = np.asarray(b, dtype=float)
        x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
        maxiter = 5000 if maxiter is None else maxiter
        tol = max(rtol * np.linalg.norm(b), atol)
        for k in range(maxiter):
            if step is None and np.linalg.norm(b - A @ x) <= tol:
                if callback is not None and call_at_end and k > 0:
                    callback(x)
                return x, 0
            x_new = iterative.gauss_seidel_sweep(A, b, x)
            done = step is not None and step(x_new, x, tol)
            x = x_new
            if callback is not None and not call_at_end:
                call(callback, x, b - A @ x)
            if done:
                return x, 0
        if callback is not None and call_at_end:
            callback(x)
        converged = np.linalg.norm(b - A @ x) <= tol
        return x, 0 if converged else (maxiter if info_when_done is None else info_when_done)
    return solve


gs_relative_step_test = gs_solver(step=lambda new, old, tol: np.linalg.norm(new - old) <= 1e-8 * np.linalg.norm(new))
gs_never_calls_back = gs_solver(call=lambda cb, x, r: None)
gs_calls_back_residual = gs_solver(call=lambda cb, x, r: cb(r))
gs_calls_back_once = gs_solver(call_at_end=True)
gs_reports_zero = gs_solver(info_when_done=0)


WRONG = [
    (check.back_substitution, back_sub_forward_order, "the rows solved from the first one down"),
    (check.back_substitution, back_sub_no_division, "divide by the diagonal"),
    (check.back_substitution, back_sub_float16, "float64"),
    (check.gaussian_elimination, ge_without_pivoting, "no pivoting"),
    (check.gaussian_elimination, ge_pivot_without_abs, "ABSOLUTE"),
    (check.gaussian_elimination, ge_in_place, "work on a copy"),
    (check.gaussian_elimination, ge_catalogue_no_pivot, "no pivoting"),
    (check.gaussian_elimination, ge_catalogue_signed_max, "ABSOLUTE"),
    (check.gaussian_elimination, ge_catalogue_forget_b, "swap the same two entries of b"),
    (check.gaussian_elimination, ge_pivot_in_column_0, "a search in column 0"),
    (check.gaussian_elimination, ge_pivot_along_row, "pivot searched along the pivot row"),
    (check.gaussian_elimination, ge_float32_result, "float64"),
    (check.gaussian_elimination, ge_float16_result, "float64"),
    (check.lu_factor, lu_no_pivot, "no pivoting"),
    (check.lu_factor, lu_fortran_piv, "0-based"),
    (check.lu_factor, lu_catalogue_permutation, "not the final"),
    (check.lu_factor, lu_catalogue_no_multipliers, "store the multipliers"),
    (check.gauss_seidel_sweep, jacobi_as_gs_sweep, "that is Jacobi"),
    (check.gauss_seidel_sweep, sweep_catalogue_with_diagonal, "leaves out j = i"),
    (check.gauss_seidel, gs_solver_jacobi_inside, "that is Jacobi"),
    (check.gauss_seidel, gs_solver_stops_on_small_step, "step size"),
    (check.gauss_seidel, gs_relative_step_test, "step size"),
    (check.gauss_seidel, gs_solver_claims_success, "divergence reported as success"),
    (check.gauss_seidel, gs_reports_zero, "divergence reported as success"),
    (check.gauss_seidel, gs_never_calls_back, "callback was never called"),
    (check.gauss_seidel, gs_calls_back_residual, "callback received the residual"),
    (check.gauss_seidel, gs_calls_back_once, "callback was called once"),
    (check.sor_sweep, sor_ignores_omega, "omega is not used"),
    (check.sor_sweep, sor_jacobi_relaxed, "old values were used within the sweep"),
    (check.sor_sweep, sor_catalogue_swapped, "swapped"),
]


@pytest.mark.parametrize("checker, wrong, hint", WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_answer_rejected_with_its_hint(checker, wrong, hint):
    assert_rejected_with_hint(checker, wrong, hint)


REFERENCES = [
    (check.back_substitution, elimination.back_substitution, "back_substitution", 5),
    (check.gaussian_elimination, elimination.gaussian_elimination, "gaussian_elimination", 12),
    (check.lu_factor, elimination.lu_factor, "lu_factor", 7),
    (check.lu_factor, elimination.lu_factor_loops, "lu_factor", 7),
    (check.gauss_seidel_sweep, iterative.gauss_seidel_sweep, "gauss_seidel_sweep", 6),
    (check.sor_sweep, iterative.sor_sweep, "sor_sweep", 6),
    (check.gauss_seidel, iterative.gauss_seidel, "gauss_seidel", 16),
]


@pytest.mark.parametrize("checker, ref, name, n", REFERENCES, ids=[r[1].__name__ for r in REFERENCES])
def test_reference_passes(checker, ref, name, n, capsys):
    checker(ref)
    assert capsys.readouterr().out.strip() == f"✔ {name}: {n}/{n} cases passed"


def notebook_solution(notebook: str, name: str):
    """The solved notebook's own answer to exercise ``name``, read from its exercise cell."""
    import nbformat
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / notebook, as_version=4)
    cell = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []) and f"def {name}(" in c.source)
    scope = {"np": np, "iterative": iterative}
    exec(cell.source, scope)
    return scope[name]


def test_notebook_solution_of_the_solver_passes(capsys):
    check.gauss_seidel(notebook_solution("09_gauss_seidel.ipynb", "gauss_seidel"))
    assert "16/16 cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["back_substitution", "gaussian_elimination", "lu_factor",
                                  "gauss_seidel_sweep", "sor_sweep", "gauss_seidel"])
def test_judgement_is_pure(name):
    """The verdict comes from outcomes as data: judged again from a saved list, it is the same."""
    build = CHECKERS[name]
    wrong = {"gauss_seidel": gs_calls_back_once, "gaussian_elimination": ge_pivot_in_column_0}.get(name)
    fn = wrong or dict((r[2], r[1]) for r in REFERENCES)[name]
    c = build()
    outcomes = [evaluate(c.prepare(fn) if c.prepare else fn, a, k) for a, k in c.inputs()]
    seen = c.judge(lambda i: outcomes[i])
    assert seen == build().judge(lambda i: outcomes[i])
    assert seen.status == ("failed" if wrong else "passed"), seen


def test_a_swap_at_each_later_step_is_needed():
    """Cases that make a pivot needed at step 1 and at step 2 (not only at step 0)."""
    labels = [c.label for c in CHECKERS["gaussian_elimination"]().cases]
    assert any("step 1" in s for s in labels) and any("step 2" in s for s in labels)


@pytest.mark.parametrize("checker", [r[0] for r in REFERENCES[:3]] + [check.gauss_seidel_sweep,
                                                                        check.sor_sweep, check.gauss_seidel])
def test_blank_exercise_is_not_implemented(checker, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise: fill me in")
    checker(blank)
    assert "not implemented yet" in capsys.readouterr().out


def test_checker_takes_the_function():
    with pytest.raises(TypeError, match="your function itself"):
        check.gauss_seidel(np.eye(2))
