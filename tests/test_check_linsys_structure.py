"""Tests for labkit.check.linsys_structure: blocked LU (notebook 08) and the red-black sweep (notebook 09).

References pass; wrong answers written as a student would (not built from the checker's variants)
fail with a hint that names the mistake.
"""
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from labkit import check, elimination, poisson
from labkit.check.core import CHECKERS, evaluate
from hints import assert_rejected_with_hint


# ---------------------------------------------------------------- blocked LU
def blocked(A, block, *, left=True, right=True, u12=True, schur=True, unit=True, search_panel_rows=False,
            plus=False, schur_first=False, rank1_whole_rows=False, piv_offset=False):
    """A student's blocked LU; keyword switches plant one mistake each."""
    lu = np.array(A, dtype=float)
    n = lu.shape[0]
    piv = np.zeros(n, dtype=np.int64)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            last = e if search_panel_rows else n
            p = j + int(np.argmax(np.abs(lu[j:last, j])))
            piv[j] = p - j if piv_offset else p
            cols = np.r_[0:k] if left else np.r_[0:0]
            cols = np.r_[cols, k:e] if not right else np.r_[cols, k:n]
            lu[np.ix_([j, p], cols)] = lu[np.ix_([p, j], cols)]
            lu[j + 1:, j] /= lu[j, j]
            last_col = n if rank1_whole_rows else e
            lu[j + 1:, j + 1:last_col] -= np.outer(lu[j + 1:, j], lu[j, j + 1:last_col])
        if schur_first:
            lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
        if u12:
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=unit)
        if schur and not schur_first:
            lu[e:, e:] = lu[e:, e:] + lu[e:, k:e] @ lu[k:e, e:] if plus else lu[e:, e:] - lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


def blocked_ok(A, block):
    return blocked(A, block)


def blocked_no_left_swaps(A, block):
    return blocked(A, block, left=False)


def blocked_no_right_swaps(A, block):
    return blocked(A, block, right=False)


def blocked_forgets_u12(A, block):
    return blocked(A, block, u12=False)


def blocked_forgets_schur(A, block):
    return blocked(A, block, schur=False)


def blocked_non_unit_solve(A, block):
    return blocked(A, block, unit=False)


def blocked_fixed_panels(A, block):
    """Assumes block divides n: the ragged last panel is never factored."""
    lu = np.array(A, dtype=float)
    n = len(lu)
    out, piv = blocked(lu[: n - n % block, : n - n % block], block) if n % block else blocked(lu, block)
    full = np.array(A, dtype=float)
    full[: len(out), : len(out)] = out
    return full, np.r_[piv, np.arange(len(piv), n)]


def blocked_returns_lu_only(A, block):
    return blocked(A, block)[0]


def blocked_no_pivoting(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    for k in range(n):
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, np.arange(n)


WRONG_LU = [
    (blocked_no_left_swaps, "move the multipliers already stored left"),
    (blocked_no_right_swaps, "columns right of the panel"),
    (blocked_forgets_u12, "U_12 = L_11^{-1} A_12"),
    (blocked_forgets_schur, "A_22 -= L_21 @ U_12"),
    (blocked_non_unit_solve, "unit_diagonal=True"),
    (blocked_fixed_panels, "min(k + block, n)"),
    (blocked_returns_lu_only, "the pair (lu, piv)"),
    (blocked_no_pivoting, "pivot"),
    (lambda A, block: blocked(A, block, search_panel_rows=True), "down to the bottom"),
    (lambda A, block: blocked(A, block, plus=True), "sign of the trailing update"),
    (lambda A, block: blocked(A, block, schur_first=True), "not L_21 A_12"),
    (lambda A, block: blocked(A, block, rank1_whole_rows=True), "subtracted twice"),
    (lambda A, block: blocked(A, block, piv_offset=True), "the absolute row"),
]


@pytest.mark.parametrize("wrong, hint", WRONG_LU, ids=[f"lu{i}" for i in range(len(WRONG_LU))])
def test_blocked_lu_wrong_answer_rejected_with_its_hint(wrong, hint):
    assert_rejected_with_hint(check.blocked_lu, wrong, hint)


@pytest.mark.parametrize("fn", [elimination.lu_factor, blocked_ok,
                                lambda A, block: scipy.linalg.lu_factor(np.asarray(A, dtype=float))])
def test_blocked_lu_right_answers_pass(fn, capsys):
    check.blocked_lu(fn)
    assert capsys.readouterr().out.strip() == "✔ blocked_lu: 7/7 cases passed"


def test_panel_search_limited_to_the_diagonal_block_is_rejected():
    with pytest.raises(AssertionError, match="hint:"):
        check.blocked_lu(lambda A, block: blocked(A, block, search_panel_rows=True))


# ---------------------------------------------------------------- red-black sweep
def rb(u, f, omega=1.0, *, order=("red", "black"), jacobi=False, stripes=False, keep_old=True,
       copy=True, interior=False, east_twice=False, blend_swapped=False, minus_f=False):
    """A student's red-black sweep; keyword switches plant one mistake each."""
    u = np.array(u, dtype=float) if copy else u
    m = f.shape[0]
    i, j = np.indices((m, m))
    colour = (i % 2 == 0) if stripes else ((i + j) % 2 == 0)
    frozen = u.copy()
    for name in order:
        mask = colour if name == "red" else ~colour
        src = frozen if jacobi else u
        west = src[1:-1, 2:] if east_twice else src[1:-1, :-2]
        nb = src[:-2, 1:-1] + src[2:, 1:-1] + west + src[1:-1, 2:]
        new = ((nb - f) if minus_f else (f + nb)) / 4
        inner = u[1:-1, 1:-1]
        if blend_swapped:
            inner[mask] += (1 - omega) * (new[mask] - inner[mask])
        else:
            inner[mask] = ((1 - omega) * inner[mask] if keep_old else 0) + omega * new[mask]
    return u[1:-1, 1:-1].copy() if interior else u


def rb_ok(u, f, omega=1.0):
    return rb(u, f, omega)


def rb_loop_natural(u, f, omega=1.0):
    u = u.copy()
    for i in range(1, u.shape[0] - 1):
        for j in range(1, u.shape[1] - 1):
            gs = 0.25 * (f[i - 1, j - 1] + u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1])
            u[i, j] += omega * (gs - u[i, j])
    return u


def rb_ignores_omega(u, f, omega=1.0):
    return rb(u, f, 1.0)


def rb_zero_boundary(u, f, omega=1.0):
    out = np.zeros_like(np.asarray(u, dtype=float))
    out[1:-1, 1:-1] = rb(u, f, omega)[1:-1, 1:-1]
    return out


WRONG_RB = [
    (lambda u, f, omega=1.0: rb(u, f, omega, order=("black", "red")), "red first"),
    (lambda u, f, omega=1.0: rb(u, f, omega, jacobi=True), "NEW red values"),
    (lambda u, f, omega=1.0: rb(u, f, omega, stripes=True), "chess board"),
    (lambda u, f, omega=1.0: rb(u, f, omega, keep_old=False), "(1 - omega) u_ij term is missing"),
    (lambda u, f, omega=1.0: rb(u, f, omega, copy=False), "copy"),
    (lambda u, f, omega=1.0: rb(u, f, omega, interior=True), "padded grid"),
    (rb_loop_natural, "natural (row by row) order"),
    (rb_ignores_omega, "omega is not used"),
    (rb_zero_boundary, "boundary"),
    (lambda u, f, omega=1.0: rb(u, f, omega, east_twice=True), "west neighbour u[i, j-1]"),
    (lambda u, f, omega=1.0: rb(u, f, omega, blend_swapped=True), "weights of the SOR blend"),
    (lambda u, f, omega=1.0: rb(u, f, omega, minus_f=True), "sign of f"),
]


@pytest.mark.parametrize("wrong, hint", WRONG_RB, ids=[f"rb{i}" for i in range(len(WRONG_RB))])
def test_red_black_wrong_answer_rejected_with_its_hint(wrong, hint):
    assert_rejected_with_hint(check.red_black_sweep, wrong, hint)


@pytest.mark.parametrize("fn", [rb_ok, lambda u, f, omega=1.0: poisson.red_black_sweep(u.copy(), f, omega)])
def test_red_black_right_answers_pass(fn, capsys):
    check.red_black_sweep(fn)
    assert capsys.readouterr().out.strip() == "✔ red_black_sweep: 6/6 cases passed"


# ---------------------------------------------------------------- both
@pytest.mark.parametrize("notebook, name", [("08_gaussian_elimination.ipynb", "blocked_lu"),
                                            ("09_gauss_seidel.ipynb", "red_black_sweep")])
def test_notebook_solution_passes(notebook, name, capsys):
    import nbformat
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / notebook, as_version=4)
    cell = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []) and f"def {name}(" in c.source)
    scope = {"np": np, "scipy": scipy, "poisson": poisson}
    exec(cell.source, scope)
    getattr(check, name)(scope[name])
    assert "cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["blocked_lu", "red_black_sweep"])
def test_blank_exercise_is_not_implemented(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("fill me in")
    getattr(check, name)(blank)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn", [("blocked_lu", blocked_no_left_swaps), ("red_black_sweep", rb_ok)])
def test_judgement_is_pure(name, fn):
    c = CHECKERS[name]()
    run = c.prepare(fn) if c.prepare else fn
    outcomes = [evaluate(run, a, k) for a, k in c.inputs()]
    seen = c.judge(lambda i: outcomes[i])
    assert seen == CHECKERS[name]().judge(lambda i: outcomes[i])
    assert seen.status == ("passed" if fn is rb_ok else "failed")
