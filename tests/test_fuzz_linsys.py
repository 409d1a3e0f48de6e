"""Property-based fuzzing of labkit.elimination, labkit.iterative, labkit.poisson and labkit.systems.

Every call returns numpy/scipy's answer under labkit.check's float64 tolerances, or raises
ValueError/TypeError naming the bad argument (numpy.linalg.LinAlgError, a ValueError, only for a
singular matrix); inputs are never modified (tests/fuzz.py). Regression cases that Hypothesis
found are kept as @example / parametrized tests below.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from labkit import elimination as el
from labkit import iterative as it
from labkit import poisson as po
from labkit import systems
from labkit.check import assert_close
from fuzz import NOT_INT, fuzz_settings, outcome

F64 = torch.float64
MATRIX_KINDS = ("dense", "list", "transposed", "sliced", "huge", "tiny", "int", "sparse",
                "complex", "nan", "inf", "empty", "nonsquare", "1d", "3d", "ragged", "str", "none")
VALID_DENSE = ("dense", "list", "transposed", "sliced", "huge", "tiny", "int")


@st.composite
def systems_(draw, kinds=MATRIX_KINDS, max_n: int = 6):
    """(A, kind, n, seed): a strictly diagonally dominant (so regular, and Jacobi/GS converge)
    matrix in one of many forms, valid or not; ``kind`` says which."""
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    R = rng.uniform(-1, 1, (n, n))
    if kind == "int":
        R = np.round(R * 4)
    A = R + np.diag(np.abs(R).sum(axis=1) + 1) * rng.choice([-1, 1], n)
    if kind == "int":
        A = A.astype(np.int64)
    elif kind == "list":
        A = A.tolist()
    elif kind == "transposed":
        A = A.T.copy().T  # the same values in column-major (transposed) strides
    elif kind == "sliced":
        big = np.zeros((n, 2 * n))
        big[:, ::2] = A
        A = big[:, ::2]
    elif kind == "huge":
        A = A * 1e150
    elif kind == "tiny":
        A = A * 1e-150
    elif kind == "sparse":
        A = sp.csr_array(A)
    elif kind == "complex":
        A = A + 1j * np.eye(n)
    elif kind in ("nan", "inf"):
        A[rng.integers(n), rng.integers(n)] = np.nan if kind == "nan" else -np.inf
    elif kind == "empty":
        A = np.zeros((0, 0))
    elif kind == "nonsquare":
        A = np.hstack([A, np.ones((n, 1))])
    elif kind == "1d":
        A = A[0]
    elif kind == "3d":
        A = A[None]
    elif kind == "ragged":
        A = [[1.0, 2.0], [3.0]]
    elif kind == "str":
        A = np.full((n, n), "1.0")
    elif kind == "none":
        A = None
    return A, kind, n, rng


def dense(A) -> np.ndarray:
    return A.toarray() if sp.issparse(A) else np.asarray(A, dtype=np.float64)


VECTOR_KINDS = ("good", "good", "good", "list", "int", "nan", "inf", "short", "2d", "complex",
                "none", "str")


def vector(kind: str, n: int, rng, k: int = 2):
    v = rng.uniform(-1, 1, n)
    return {"good": v, "list": v.tolist(), "int": np.round(v * 5).astype(np.int64),
            "nan": np.where(np.arange(n) == 0, np.nan, v), "inf": np.where(np.arange(n) == 0, np.inf, v),
            "short": v[:-1], "2d": rng.uniform(-1, 1, (n, k)), "complex": v + 1j,
            "none": None, "str": "b"}[kind]


def vector_ok(kind: str, allow_2d: bool = False) -> bool:
    return kind in ("good", "list", "int") or (allow_2d and kind == "2d")


def close(actual, expected, what="x"):
    assert_close(torch.as_tensor(np.asarray(actual, dtype=np.float64)),
                 torch.as_tensor(np.asarray(expected, dtype=np.float64)), dtype=F64, what=what)


# ---------------------------------------------------------------- elimination
@given(sysA=systems_(), bkind=st.sampled_from(VECTOR_KINDS),
       pivoting=st.sampled_from(["partial", "partial", "none", "complete", "rook", None, 1]))
@fuzz_settings(80)
@example(sysA=(sp.csr_array(np.eye(2)), "sparse", 2, np.random.default_rng(0)), bkind="good",
         pivoting="partial")  # was "sparse array length is ambiguous"
@example(sysA=(np.eye(2) * (1 + 1j), "complex", 2, np.random.default_rng(0)), bkind="good",
         pivoting="partial")  # was a wrong answer with only numpy's ComplexWarning
def test_gaussian_elimination(sysA, bkind, pivoting):
    A, kind, n, rng = sysA
    b = vector(bkind, n, rng)
    bad = ("pivoting" if pivoting not in el.PIVOTING else
           "A" if kind not in VALID_DENSE else None if vector_ok(bkind, True) else "b")
    x = outcome(lambda: el.gaussian_elimination(A, b, pivoting), bad, A, b)
    if bad is None:
        close(x, np.linalg.solve(dense(A), np.asarray(b, dtype=np.float64)))


SUBST = {"forward_substitution": (el.forward_substitution, "L", True),
         "back_substitution": (el.back_substitution, "U", False)}


@pytest.mark.parametrize("name", SUBST)
@given(sysA=systems_(), bkind=st.sampled_from(VECTOR_KINDS))
@fuzz_settings(40)
def test_substitution(name, sysA, bkind):
    fn, arg, lower = SUBST[name]
    A, kind, n, rng = sysA
    b = vector(bkind, n, rng)
    bad = arg if kind not in VALID_DENSE else None if vector_ok(bkind, True) else ("b" if lower else "y")
    x = outcome(lambda: fn(A, b), bad, A, b)
    if bad is None:
        T = np.tril(dense(A)) if lower else np.triu(dense(A))
        close(x, sla.solve_triangular(T, np.asarray(b, dtype=np.float64), lower=lower))


LU = {"lu_factor_loops": el.lu_factor_loops, "lu_factor_rows": el.lu_factor_rows,
      "lu_factor_rank1": el.lu_factor_rank1, "lu_factor": el.lu_factor}


@pytest.mark.parametrize("name", LU)
@given(sysA=systems_(), bkind=st.sampled_from(VECTOR_KINDS))
@fuzz_settings(40)
@example(sysA=(sp.csr_array(np.eye(2)), "sparse", 2, np.random.default_rng(0)), bkind="good")
def test_lu_factor_and_solve(name, sysA, bkind):
    A, kind, n, rng = sysA
    out = outcome(lambda: LU[name](A), None if kind in VALID_DENSE else "A", A)
    if out is None:
        return
    lu, piv = out
    lu_ref, piv_ref = sla.lu_factor(dense(A))
    np.testing.assert_array_equal(piv, piv_ref)
    close(lu, lu_ref, "lu")
    b = vector(bkind, n, rng)
    x = outcome(lambda: el.lu_solve((lu, piv), b), None if vector_ok(bkind, True) else "b", b, lu, piv)
    if x is not None:
        close(x, sla.lu_solve((lu_ref, piv_ref), np.asarray(b, dtype=np.float64)))


@given(block=st.one_of(st.integers(-1, 5), st.sampled_from(NOT_INT)))
@fuzz_settings(20)
@example(block=True)
@example(block=2.5)  # int(2.5) was silently used as 2
def test_lu_factor_block(block):
    A = systems.hilbert(4) + np.eye(4)
    ok = isinstance(block, int) and not isinstance(block, bool) and block >= 1
    out = outcome(lambda: el.lu_factor(A, block), None if ok else "block", A)
    if ok:
        close(out[0], sla.lu_factor(A)[0], "lu")


@pytest.mark.parametrize("lu_and_piv, bad", [
    ((np.eye(2),), "lu_and_piv"), (None, "lu_and_piv"), ((np.eye(2), np.array([0.0, 1.0])), "piv"),
    ((np.eye(2), np.array([0, 2])), "piv"), ((np.ones((2, 3)), np.array([0, 1])), "lu"),
    ((sp.eye(2), np.array([0, 1])), "lu"), ((np.eye(2) * 1j, np.array([0, 1])), "lu")])
def test_lu_solve_rejects(lu_and_piv, bad):
    outcome(lambda: el.lu_solve(lu_and_piv, np.ones(2)), bad)


@given(sysA=systems_(), pivoting=st.sampled_from(["partial", "none", "complete"]))
@fuzz_settings(30)
def test_growth_factor(sysA, pivoting):
    A, kind, n, rng = sysA
    bad = "pivoting" if pivoting == "complete" else None if kind in VALID_DENSE else "A"
    rho = outcome(lambda: el.growth_factor(A, pivoting), bad, A)
    if rho is not None:
        assert 1.0 <= rho <= 2.0 ** (n - 1) + 1e-12 or pivoting == "none"


@given(n=st.one_of(st.integers(-2, 50), st.sampled_from(NOT_INT)))
@fuzz_settings(20)
def test_lu_flops(n):
    ok = isinstance(n, int) and not isinstance(n, bool) and n >= 0
    out = outcome(lambda: el.lu_flops(n), None if ok else "n")
    if ok:
        assert out == sum(2 * (n - k - 1) * (n - k - 1) + (n - k - 1) for k in range(n))


# ---------------------------------------------------------------- iterative
SOLVERS = {"jacobi": it.jacobi, "gauss_seidel": it.gauss_seidel,
           "sor": lambda A, b, **kw: it.sor(A, b, omega=kw.pop("omega"), **kw)}
TOLS = st.sampled_from([1e-8, 1e-8, 1e-3, 0.0, math.inf, math.nan, -1e-8, True, None, "1e-8"])
OMEGAS = st.sampled_from([1.0, 1.2, 0.7, 0.0, 2.0, math.nan, True, None])
MAXITERS = st.sampled_from([None, None, 0, 3, -1, 2.5, True])
TOL_OK = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0  # noqa: E731
ITERATIVE_KINDS = tuple(k for k in MATRIX_KINDS if k not in ("str",))


@pytest.mark.parametrize("name", SOLVERS)
@given(sysA=systems_(ITERATIVE_KINDS), bkind=st.sampled_from(VECTOR_KINDS),
       x0kind=st.sampled_from(["none", "good", "short", "nan"]), rtol=TOLS, atol=TOLS,
       maxiter=MAXITERS, omega=OMEGAS)
@fuzz_settings(60)
@example(sysA=(np.eye(2) * 2, "dense", 2, np.random.default_rng(0)), bkind="good",
         x0kind="none", rtol=math.nan, atol=0.0, maxiter=None, omega=1.0)  # ran 5000 iterations
@example(sysA=(np.eye(2) * 2, "dense", 2, np.random.default_rng(0)), bkind="good",
         x0kind="none", rtol=-1.0, atol=0.0, maxiter=None, omega=1.0)
def test_solvers(name, sysA, bkind, x0kind, rtol, atol, maxiter, omega):
    A, kind, n, rng = sysA
    b, x0 = vector(bkind, n, rng), vector(x0kind, n, rng)
    kw = dict(rtol=rtol, atol=atol, maxiter=maxiter) | ({"omega": omega} if name == "sor" else {})
    bad = []
    if name == "sor" and not (TOL_OK(omega) and 0 < omega < 2):
        bad.append("omega")
    bad += [a for a, v in (("rtol", rtol), ("atol", atol)) if not TOL_OK(v)]
    if not (maxiter is None or isinstance(maxiter, int) and not isinstance(maxiter, bool)
            and maxiter >= 0):
        bad.append("maxiter")
    if kind not in VALID_DENSE + ("sparse",):
        bad.append("A")
    if not vector_ok(bkind):
        bad.append("b")
    if x0kind in ("short", "nan"):
        bad.append("x0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = outcome(lambda: SOLVERS[name](A, b, x0=x0, **dict(kw)), tuple(bad) or None, A, b, x0)
    if out is None:
        return
    x, info = out
    r = np.linalg.norm(np.asarray(b, dtype=np.float64) - dense(A) @ x)
    tol = max(rtol * np.linalg.norm(np.asarray(b, dtype=np.float64)), atol)
    if info == 0:
        assert r <= tol * (1 + 1e-12) + 1e-300
    else:
        assert any(issubclass(w.category, it.ConvergenceWarning) for w in caught)
        assert maxiter is not None and info >= 1 or tol < 1e-12 * np.linalg.norm(dense(A)) * (
            np.linalg.norm(x) + 1)  # the default maxiter converges on a dominant diagonal


SWEEPS = ("jacobi_sweep", "gauss_seidel_sweep", "sor_sweep", "gauss_seidel_sweep_getrow")


def sweep_oracle(name, A, b, x, omega):
    A = dense(A)
    D, L, U = np.diag(np.diag(A)), np.tril(A, -1), np.triu(A, 1)
    if name == "jacobi_sweep":
        return (b - (L + U) @ x) / np.diag(A)
    w = omega if name == "sor_sweep" else 1.0
    return sla.solve_triangular(D + w * L, w * b - (w * U + (w - 1) * D) @ x, lower=True)


@pytest.mark.parametrize("name", SWEEPS)
@given(sysA=systems_(ITERATIVE_KINDS), bkind=st.sampled_from(VECTOR_KINDS),
       xkind=st.sampled_from(["good", "good", "short", "nan", "list"]), omega=OMEGAS)
@fuzz_settings(40)
@example(sysA=(np.eye(2), "dense", 2, np.random.default_rng(0)), bkind="good", xkind="short",
         omega=1.0)  # blamed "x0", which is not a parameter of the sweeps
def test_sweeps(name, sysA, bkind, xkind, omega):
    A, kind, n, rng = sysA
    b, x = vector(bkind, n, rng), vector(xkind, n, rng)
    fn = getattr(it, name)
    call = (lambda: fn(A, b, x, omega)) if name == "sor_sweep" else (lambda: fn(A, b, x))
    bad = []
    if name == "sor_sweep" and not (TOL_OK(omega) and 0 < omega < 2):
        bad.append("omega")
    if kind not in VALID_DENSE + ("sparse",):
        bad.append("A")
    if not vector_ok(bkind):
        bad.append("b")
    if not vector_ok(xkind):
        bad.append("x")
    out = outcome(call, tuple(bad) or None, A, b, x)
    if out is not None:
        close(out, sweep_oracle(name, A, np.asarray(b, float), np.asarray(x, float), omega))


@pytest.mark.parametrize("name", ["splitting", "iteration_matrix", "splitting_solver"])
@given(sysA=systems_(ITERATIVE_KINDS), method=st.sampled_from(["jacobi", "gauss-seidel", "sor", "ssor"]),
       omega=OMEGAS)
@fuzz_settings(40)
def test_splittings(name, sysA, method, omega):
    A, kind, n, rng = sysA
    bad = tuple(a for a, ok in (
        ("method", method in it.METHODS),
        ("omega", method != "sor" or TOL_OK(omega) and 0 < omega < 2),
        ("A", kind in VALID_DENSE + ("sparse",))) if not ok) or None
    out = outcome(lambda: getattr(it, name)(A, method, omega), bad, A)
    if out is None:
        return
    Ad = dense(A)
    w = omega if method == "sor" else 1.0
    M = np.diag(np.diag(Ad)) / w if method == "jacobi" else np.tril(Ad, -1) + np.diag(np.diag(Ad)) / w
    if method == "jacobi":
        M = np.diag(np.diag(Ad))
    if name == "splitting":
        close(dense(out), M, "M")
    elif name == "iteration_matrix":
        close(out, np.eye(n) - np.linalg.solve(M, Ad), "G")
    else:
        r = rng.uniform(-1, 1, n)
        close(out(r), np.linalg.solve(M, r), "M^-1 r")


@given(sysA=systems_(ITERATIVE_KINDS))
@fuzz_settings(30)
def test_spectral_radius(sysA):
    A, kind, n, rng = sysA
    rho = outcome(lambda: it.spectral_radius(A), None if kind in VALID_DENSE + ("sparse",) else "G", A)
    if rho is not None:
        close(rho, np.abs(np.linalg.eigvals(dense(A))).max(), "rho")


@given(sysA=systems_(("dense", "sparse", "list", "nan", "complex")),
       xkind=st.sampled_from(["good", "short", "nan", "none"]), bkind=st.sampled_from(VECTOR_KINDS))
@fuzz_settings(40)
def test_relative_residual_and_error(sysA, xkind, bkind):
    A, kind, n, rng = sysA
    x, b = vector(xkind, n, rng), vector(bkind, n, rng)
    bad = tuple(a for a, ok in (("A", kind in ("dense", "sparse", "list")), ("b", vector_ok(bkind)),
                                ("x", vector_ok(xkind))) if not ok) or None
    out = outcome(lambda: it.relative_residual(A, x, b), bad, A, x, b)
    if out is not None:
        bd = np.asarray(b, float)
        close(out, np.linalg.norm(bd - dense(A) @ np.asarray(x, float)) / np.linalg.norm(bd), "rr")
    bad = tuple(a for a, ok in (("x_true", vector_ok(bkind)), ("x", vector_ok(xkind))) if not ok) or None
    out = outcome(lambda: it.relative_error(x, b), bad, x, b)
    if out is not None:
        bd = np.asarray(b, float)
        close(out, np.linalg.norm(np.asarray(x, float) - bd) / np.linalg.norm(bd), "re")


# ---------------------------------------------------------------- poisson
MS = st.one_of(st.integers(-1, 4), st.sampled_from(NOT_INT))
M_OK = lambda m: isinstance(m, int) and not isinstance(m, bool) and m >= 1  # noqa: E731


@given(m=MS, method=st.sampled_from(["jacobi", "gauss-seidel", "sor", "ssor"]),
       omega=st.one_of(st.none(), OMEGAS))
@fuzz_settings(40)
def test_poisson_theory(m, method, omega):
    bad = ("m" if not M_OK(m) else "method" if method not in it.METHODS else
           "omega" if method == "sor" and omega is not None and not (TOL_OK(omega) and 0 < omega < 2)
           else None)
    rho = outcome(lambda: po.spectral_radius_theory(m, method, omega), bad)
    if rho is None:
        return
    assert outcome(lambda: po.grid_h(m), None) == 1 / (m + 1)
    G = it.iteration_matrix(systems.poisson_2d(m), method,
                            (po.optimal_omega(m) if omega is None else omega) if method == "sor" else 1.0)
    # at SOR's optimum the top eigenvalue is defective (a Jordan block): only ~sqrt(eps) accurate
    assert rho == pytest.approx(np.abs(np.linalg.eigvals(G)).max(), rel=1e-6, abs=1e-7)
    k = outcome(lambda: po.iterations_theory(m, method, 1e-6, omega), None)
    assert k > 0 or rho == 0


@given(m=MS)
@fuzz_settings(20)
def test_red_black_ordering(m):
    perm = outcome(lambda: po.red_black_ordering(m), None if M_OK(m) else "m")
    if perm is not None:
        red, black = po.red_black_masks(m)
        np.testing.assert_array_equal(np.sort(perm), np.arange(m * m))
        assert red.ravel()[perm[: red.sum()]].all() and black.ravel()[perm[red.sum():]].all()


@given(m=st.integers(1, 4), fkind=st.sampled_from(["good", "good", "nan", "nonsquare", "complex", "list"]),
       ukind=st.sampled_from(["good", "good", "small", "int", "list"]), omega=OMEGAS,
       seed=st.integers(0, 99))
@fuzz_settings(40)
def test_red_black_sweep_is_sor_in_red_black_order(m, fkind, ukind, omega, seed):
    rng = np.random.default_rng(seed)
    f = {"good": rng.uniform(-1, 1, (m, m)), "nan": np.full((m, m), np.nan),
         "nonsquare": np.ones((m, m + 1)), "complex": np.ones((m, m)) * 1j,
         "list": rng.uniform(-1, 1, (m, m)).tolist()}[fkind]
    u = np.zeros((m + 2, m + 2))
    u[1:-1, 1:-1] = rng.uniform(-1, 1, (m, m))
    u = {"good": u, "small": u[1:, 1:], "int": u.astype(np.int64), "list": u.tolist()}[ukind]
    bad = tuple(a for a, ok in (("f", fkind in ("good", "list")), ("u", ukind == "good"),
                                ("omega", TOL_OK(omega) and 0 < omega < 2)) if not ok) or None
    u_before = np.array(u, dtype=float) if ukind == "good" else None
    out = outcome(lambda: po.red_black_sweep(u, f, omega), bad, f)  # u is updated in place: its contract
    if out is None:
        return
    assert out is u
    perm = po.red_black_ordering(m)
    A = systems.poisson_2d(m).toarray()[np.ix_(perm, perm)]
    fd = np.asarray(f, float).ravel()[perm]
    expected = sweep_oracle("sor_sweep", A, fd, u_before[1:-1, 1:-1].ravel()[perm], omega)
    got = u[1:-1, 1:-1].ravel()[perm]
    close(got, expected, "u")
    close(po.grid_residual(u, f).ravel()[perm], fd - A @ got, "residual")


@given(m=st.integers(1, 4), omega=OMEGAS, rtol=TOLS, maxiter=MAXITERS, seed=st.integers(0, 99))
@fuzz_settings(40)
def test_poisson_red_black(m, omega, rtol, maxiter, seed):
    f = np.random.default_rng(seed).uniform(-1, 1, (m, m))
    bad = tuple(a for a, ok in (("omega", TOL_OK(omega) and 0 < omega < 2), ("rtol", TOL_OK(rtol)),
                                ("maxiter", maxiter is None or isinstance(maxiter, int)
                                 and not isinstance(maxiter, bool) and maxiter >= 0)) if not ok) or None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = outcome(lambda: po.poisson_red_black(f, omega=omega, rtol=rtol, maxiter=maxiter), bad, f)
    if out is None:
        return
    u, info = out
    r = np.linalg.norm(f.ravel() - systems.poisson_2d(m) @ u.ravel())
    if info == 0:
        assert r <= max(rtol * np.linalg.norm(f), 0.0) * (1 + 1e-9)
    else:
        assert any(issubclass(w.category, it.ConvergenceWarning) for w in caught)


# ---------------------------------------------------------------- systems
GENERATORS = ("diagonally_dominant", "not_diagonally_dominant", "large_spectral_radius")


@pytest.mark.parametrize("name", GENERATORS)
@given(n=st.one_of(st.integers(-1, 30), st.sampled_from(NOT_INT)),
       density=st.sampled_from([0.0, 0.1, 0.5, 1.0, -0.1, 1.5, math.nan, None, True]),
       seed=st.one_of(st.integers(-1, 5), st.sampled_from([None, 1.5, True])))
@fuzz_settings(30)
def test_lab_systems(name, n, density, seed):
    bad = tuple(a for a, ok in (("n", M_OK(n)), ("density", TOL_OK(density) and density <= 1),
                                ("seed", isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0))
                if not ok) or None
    out = outcome(lambda: getattr(systems, name)(n, density, seed), bad)
    if out is None:
        return
    A, b, x_true = out
    Ad = A.toarray()
    close(b, Ad @ x_true, "b")
    off = np.abs(Ad).sum(axis=1) - np.abs(np.diag(Ad))
    if name == "diagonally_dominant":
        assert (np.abs(np.diag(Ad)) > off).all()
    assert ((0 <= x_true) & (x_true < 1)).all()


@pytest.mark.parametrize("name", ["poisson_1d", "poisson_2d", "hilbert", "wilkinson"])
@given(n=st.one_of(st.integers(-1, 6), st.sampled_from(NOT_INT)))
@fuzz_settings(20)
@example(n=2.5)  # hilbert(2.5) built a 3 x 3 matrix from np.arange(2.5)
def test_matrix_families(name, n):
    arg = "m" if name == "poisson_2d" else "n"
    out = outcome(lambda: getattr(systems, name)(n), None if M_OK(n) else arg)
    if out is None:
        return
    M = dense(out)
    if name == "poisson_1d":
        close(M, 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1), name)
    elif name == "poisson_2d":
        T = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
        close(M, np.kron(np.eye(n), T) + np.kron(T, np.eye(n)), name)
    elif name == "hilbert":
        close(M, sla.hilbert(n), name)
    else:
        assert el.growth_factor(M) == pytest.approx(2.0 ** (n - 1))


def test_counterexamples():
    for fn, gs, jac in ((systems.jacobi_not_gauss_seidel, 2.0, 0.0),
                        (systems.gauss_seidel_not_jacobi, 0.5, math.sqrt(5) / 2)):
        A = fn()
        assert it.spectral_radius(it.iteration_matrix(A, "gauss-seidel")) == pytest.approx(gs, abs=1e-6)
        # G nilpotent (rho = 0): eigvals of a 3 x 3 Jordan block are only eps**(1/3) accurate
        assert it.spectral_radius(it.iteration_matrix(A, "jacobi")) == pytest.approx(jac, abs=1e-4)


@pytest.mark.parametrize("name, err", [
    ("bcsstk01", None), ("not_there", FileNotFoundError), ("../README", ValueError),
    ("", ValueError), (None, TypeError), (1, TypeError)])
def test_load_matrix(name, err):
    if err is None:
        assert systems.load_matrix(name).shape == (48, 48)
    elif err is FileNotFoundError:
        with pytest.raises(FileNotFoundError, match="not_there"):
            systems.load_matrix(name)
    else:
        outcome(lambda: systems.load_matrix(name), "name")
