"""Tests for labkit.iterative and labkit.poisson: Jacobi, Gauss-Seidel, SOR, red-black sweeps."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from labkit import iterative as it
from labkit import poisson, systems
from labkit.check import assert_close

SOLVERS = {
    "jacobi": lambda A, b, **kw: it.jacobi(A, b, **kw),
    "gauss-seidel": lambda A, b, **kw: it.gauss_seidel(A, b, **kw),
    "sor": lambda A, b, **kw: it.sor(A, b, omega=1.1, **kw),
}


def dd_system(n, sparse, seed=0):
    A, b, x_true = systems.diagonally_dominant(n, 0.2 if n < 50 else 0.02, seed)
    return (A if sparse else A.toarray()), b, x_true


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("n", [1, 7, 200])
def test_converges_on_diagonally_dominant(method, sparse, n):
    A, b, x_true = dd_system(n, sparse, n)
    A0 = A.copy()
    x, info = SOLVERS[method](A, b, rtol=1e-10)
    assert info == 0
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    assert_close(x, x_true, rtol=1e-7, atol=1e-9)
    assert (abs(A - A0)).max() == 0  # input untouched


@pytest.mark.parametrize("method", SOLVERS)
def test_atol_and_x0(method):
    A, b, x_true = dd_system(20, True, 3)
    x, info = SOLVERS[method](A, b, x0=x_true, rtol=0.0, atol=1e-12)
    assert info == 0 and np.array_equal(x, x_true)  # x0 already converged: 0 iterations
    x, info = SOLVERS[method](A, b, rtol=0.0, atol=1e-3)
    assert info == 0 and 0 < np.linalg.norm(b - A @ x) <= 1e-3


@pytest.mark.parametrize("method", SOLVERS)
def test_not_converged_warns_and_counts(method):
    A, b, _ = dd_system(50, True, 4)
    calls = []
    with pytest.warns(it.ConvergenceWarning, match="did not converge in 3 iterations"):
        x, info = SOLVERS[method](A, b, maxiter=3, callback=lambda xk: calls.append(xk.copy()))
    assert info == 3 and len(calls) == 3 and np.array_equal(calls[-1], x)


@pytest.mark.parametrize("method", ["jacobi", "gauss-seidel"])
def test_divergence_is_reported_not_hidden(method):
    A, b, _ = systems.large_spectral_radius(40, 0.1, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, info = SOLVERS[method](A, b, maxiter=500)
    assert info > 0 and np.isfinite(x).all()
    assert any(issubclass(w.category, it.ConvergenceWarning) and "diverged" in str(w.message)
               for w in caught)
    assert not any(issubclass(w.category, RuntimeWarning) for w in caught)  # no overflow noise


def test_callback_counts_iterations():
    A, b, _ = dd_system(30, False, 6)
    n_calls = []
    x, info = it.gauss_seidel(A, b, callback=lambda xk: n_calls.append(1))
    assert info == 0
    n = len(n_calls)
    with pytest.warns(it.ConvergenceWarning):
        _, info = it.gauss_seidel(A, b, maxiter=n - 1)
    assert info == n - 1
    assert it.gauss_seidel(A, b, maxiter=n)[1] == 0


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("method, omega", [("jacobi", 1.0), ("gauss-seidel", 1.0), ("sor", 1.4),
                                           ("sor", 0.6)])
def test_splitting_form_equals_componentwise(sparse, method, omega):
    A, b, _ = dd_system(25, sparse, 7)
    x = np.random.default_rng(8).uniform(-1, 1, 25)
    x_splitting = x + it.splitting_solver(A, method, omega)(b - A @ x)
    reference = {"jacobi": lambda: it.jacobi_sweep(A, b, x),
                 "gauss-seidel": lambda: it.gauss_seidel_sweep(A, b, x),
                 "sor": lambda: it.sor_sweep(A, b, x, omega)}[method]()
    assert_close(x_splitting, reference)


def test_getrow_sweep_is_the_same_sweep():
    A, b, _ = dd_system(30, True, 9)
    x = np.linspace(0, 1, 30)
    x0 = x.copy()
    assert_close(it.gauss_seidel_sweep_getrow(A, b, x), it.gauss_seidel_sweep(A, b, x))
    assert np.array_equal(x, x0)


def test_counterexamples_spectral_radius_and_behaviour():
    A = systems.jacobi_not_gauss_seidel()
    G = it.iteration_matrix(A, "jacobi")
    assert np.abs(np.linalg.matrix_power(G, 3)).max() < 1e-12  # nilpotent: rho = 0
    assert it.spectral_radius(it.iteration_matrix(A, "gauss-seidel")) == pytest.approx(2.0)
    b = A @ np.ones(3)
    assert it.jacobi(A, b)[1] == 0
    with pytest.warns(it.ConvergenceWarning):
        assert it.gauss_seidel(A, b, maxiter=100)[1] > 0
    B = systems.gauss_seidel_not_jacobi()
    assert it.spectral_radius(it.iteration_matrix(B, "jacobi")) == pytest.approx(np.sqrt(5) / 2)
    assert it.spectral_radius(it.iteration_matrix(B, "gauss-seidel")) == pytest.approx(0.5)
    b = B @ np.ones(3)
    assert it.gauss_seidel(B, b)[1] == 0
    with pytest.warns(it.ConvergenceWarning):
        assert it.jacobi(B, b, maxiter=100)[1] > 0


def test_zero_on_diagonal_is_a_clear_error():
    A = np.array([[0.0, 1.0], [1.0, 2.0]])
    for solve in SOLVERS.values():
        with pytest.raises(ValueError, match="zero on the diagonal at row 0"):
            solve(A, np.ones(2))
    with pytest.raises(ValueError, match="zero on the diagonal at row 1"):
        it.gauss_seidel_sweep(sp.csr_array(np.array([[1.0, 0.0], [1.0, 0.0]])), np.ones(2), np.zeros(2))


BAD = [
    (np.ones((2, 3)), np.ones(2), "square"),
    (np.eye(3), np.ones(2), "shape"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2), "NaN or inf"),
    (sp.csr_array(np.array([[1.0, np.inf], [0.0, 1.0]])), np.ones(2), "NaN or inf"),
    (np.eye(2), np.array([np.nan, 1.0]), "NaN or inf"),
]


@pytest.mark.parametrize("A, b, msg", BAD)
@pytest.mark.parametrize("method", SOLVERS)
def test_bad_input(A, b, msg, method):
    with pytest.raises(ValueError, match=msg):
        SOLVERS[method](A, b)


def test_bad_omega_and_x0():
    with pytest.raises(ValueError, match="omega"):
        it.sor(np.eye(2), np.ones(2), omega=2.0)
    with pytest.raises(ValueError, match="x0"):
        it.gauss_seidel(np.eye(2), np.ones(2), x0=np.ones(3))


def test_bcsstk01_gauss_seidel_converges_jacobi_does_not():
    A = systems.load_matrix("bcsstk01")
    b = A @ np.ones(48)
    x, info = it.gauss_seidel(A, b, rtol=1e-6, maxiter=20000)
    assert info == 0
    with pytest.warns(it.ConvergenceWarning, match="diverged"):
        assert it.jacobi(A, b)[1] > 0


# ---------------------------------------------------------------- Poisson
@pytest.mark.parametrize("m", [4, 7])
def test_poisson_theory_matches_iteration_matrices(m):
    A = systems.poisson_2d(m)
    for method in ["jacobi", "gauss-seidel"]:
        assert it.spectral_radius(it.iteration_matrix(A, method)) == \
            pytest.approx(poisson.spectral_radius_theory(m, method), rel=1e-8)
    w = poisson.optimal_omega(m)
    rho = it.spectral_radius(it.iteration_matrix(A, "sor", w))
    assert rho == pytest.approx(w - 1.0, rel=1e-3)  # a Jordan block: eigenvalues are sensitive


@pytest.mark.parametrize("m", [8, 16])
@pytest.mark.parametrize("method", ["gauss-seidel", "sor"])
def test_poisson_iteration_counts_within_30_percent_of_theory(m, method):
    A = systems.poisson_2d(m)
    f = np.full(m * m, poisson.grid_h(m) ** 2)
    count = []
    kw = {"omega": poisson.optimal_omega(m)} if method == "sor" else {}
    solve = it.sor if method == "sor" else it.gauss_seidel
    _, info = solve(A, f, rtol=1e-6, callback=lambda xk: count.append(1), **kw)
    assert info == 0
    assert abs(len(count) / poisson.iterations_theory(m, method, 1e-6) - 1) < 0.3


def test_red_black_sweep_is_gauss_seidel_in_red_black_order():
    m = 6
    A = systems.poisson_2d(m)
    p = poisson.red_black_ordering(m)
    f = np.random.default_rng(10).uniform(-1, 1, m * m)
    u = np.random.default_rng(11).uniform(-1, 1, (m + 2, m + 2))
    u[0], u[-1], u[:, 0], u[:, -1] = 0, 0, 0, 0
    for omega in [1.0, 1.5]:
        x = u[1:-1, 1:-1].ravel()[p]
        expected = np.empty(m * m)
        expected[p] = it.sor_sweep(A[p][:, p], f[p], x, omega)
        got = poisson.red_black_sweep(u.copy(), f.reshape(m, m), omega)
        assert_close(got[1:-1, 1:-1].ravel(), expected)


@pytest.mark.parametrize("m", [1, 9])
def test_poisson_red_black_solves(m):
    f = np.random.default_rng(m).uniform(0, 1, (m, m))
    u, info = poisson.poisson_red_black(f, omega=poisson.optimal_omega(m), rtol=1e-10)
    assert info == 0
    assert_close(u.ravel(), spla.spsolve(sp.csc_array(systems.poisson_2d(m)), f.ravel()),
                 rtol=1e-8, atol=1e-10)
    if m > 1:  # one sweep solves the 1 x 1 grid exactly
        with pytest.warns(it.ConvergenceWarning):
            assert poisson.poisson_red_black(f, maxiter=1)[1] == 1


def test_poisson_bad_input():
    with pytest.raises(ValueError, match="omega"):
        poisson.poisson_red_black(np.ones((3, 3)), omega=0.0)
    with pytest.raises(ValueError, match="square"):
        poisson.poisson_red_black(np.ones((3, 4)))
    with pytest.raises(ValueError, match="m must be"):
        poisson.optimal_omega(0)


def test_grid_solvers_live_in_poisson_only():
    """One name, one place: the red-black solvers are labkit.poisson's (no lazy re-export, no cycle)."""
    for name in ("red_black_sweep", "poisson_red_black"):
        assert hasattr(poisson, name) and not hasattr(it, name)
