"""Tests for labkit.elimination: substitution, elimination with pivoting, the LU ladder, lu_solve."""
import numpy as np
import pytest
import scipy.linalg
import threadpoolctl

from labkit import elimination as el
from labkit import systems
from labkit.check import assert_close

LU_VARIANTS = [el.lu_factor_loops, el.lu_factor_rows, el.lu_factor_rank1, el.lu_factor]


def well_conditioned(n, seed=0):
    r = np.random.default_rng(seed)
    return r.uniform(-1, 1, (n, n)) + n * np.eye(n) * r.choice([-1, 1], n)


def random_matrix(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n))


@pytest.mark.parametrize("n", [1, 5, 37])
@pytest.mark.parametrize("k", [None, 3])
def test_substitution_matches_scipy(n, k):
    r = np.random.default_rng(n)
    M = well_conditioned(n, n)
    b = r.standard_normal(n if k is None else (n, k))
    assert_close(el.forward_substitution(M, b),
                 scipy.linalg.solve_triangular(M, b, lower=True))
    assert_close(el.forward_substitution(M, b, unit_diagonal=True),
                 scipy.linalg.solve_triangular(M, b, lower=True, unit_diagonal=True))
    assert_close(el.back_substitution(M, b), scipy.linalg.solve_triangular(M, b, lower=False))


@pytest.mark.parametrize("pivoting", el.PIVOTING)
@pytest.mark.parametrize("n", [1, 4, 33])
def test_gaussian_elimination_solves(pivoting, n):
    A = well_conditioned(n, n)
    b = np.random.default_rng(1).standard_normal(n)
    A0, b0 = A.copy(), b.copy()
    assert_close(el.gaussian_elimination(A, b, pivoting), np.linalg.solve(A, b))
    assert np.array_equal(A, A0) and np.array_equal(b, b0)  # inputs untouched


@pytest.mark.parametrize("pivoting", ["partial", "complete"])
def test_pivoting_needed_random(pivoting):
    A, b = random_matrix(30, 3), np.ones(30)
    assert_close(el.gaussian_elimination(A, b, pivoting), np.linalg.solve(A, b), rtol=1e-7)


def test_naive_elimination_fails_on_tiny_pivot():
    A, b = np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])
    naive = el.gaussian_elimination(A, b, "none")
    assert abs(naive[0] - 1.0) > 0.5  # x_1 = 0 instead of about 1: all digits lost
    assert_close(el.gaussian_elimination(A, b, "partial"), np.linalg.solve(A, b))
    assert_close(el.gaussian_elimination(A, b, "complete"), np.linalg.solve(A, b))


def test_complete_pivoting_swaps_columns():
    A = np.array([[1.0, 1e-3, 50.0], [2.0, 1.0, 1.0], [0.5, 3.0, 1.0]])
    b = np.array([1.0, 2.0, 3.0])
    assert_close(el.gaussian_elimination(A, b, "complete"), np.linalg.solve(A, b))


@pytest.mark.parametrize("variant", LU_VARIANTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_lu_ladder_matches_scipy(variant, n):
    A = random_matrix(n, n)
    lu, piv = variant(A)
    ref_lu, ref_piv = scipy.linalg.lu_factor(A)
    assert np.array_equal(piv, ref_piv)
    assert_close(lu, ref_lu)


@pytest.mark.parametrize("n, block", [(130, 16), (97, 32), (300, el.BLOCK), (64, 64), (65, 1)])
def test_blocked_lu_awkward_sizes(n, block):
    A = random_matrix(n, 7)
    lu, piv = el.lu_factor(A, block)
    ref_lu, ref_piv = scipy.linalg.lu_factor(A)
    assert np.array_equal(piv, ref_piv)
    assert_close(lu, ref_lu, rtol=1e-7, atol=1e-9)
    b = np.random.default_rng(8).standard_normal((n, 3))
    assert_close(scipy.linalg.lu_solve((lu, piv), b), np.linalg.solve(A, b), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("blas_threads", [1, 2, 3])
def test_blocked_lu_threads_give_identical_factors(blas_threads):
    # Look-ahead runs the trailing update in chunks on worker threads while the next panel is
    # factored; any race (a swap or a panel read before its update lands) changes the bits.
    A = random_matrix(300, 11)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        ref_lu, ref_piv = el.lu_factor(A, 32)
    with threadpoolctl.threadpool_limits(blas_threads, user_api="blas"):
        lu, piv = el.lu_factor(A, 32)
    assert np.array_equal(piv, ref_piv)
    assert np.array_equal(lu, ref_lu)


@pytest.mark.parametrize("blas_threads", [1, 2])
def test_blocked_lu_names_a_singular_column_in_a_late_panel(blas_threads):
    A = random_matrix(200, 12)
    A[:, 150] = 0.0  # stays exactly zero through every update
    with threadpoolctl.threadpool_limits(blas_threads, user_api="blas"), \
            pytest.raises(np.linalg.LinAlgError, match="column 150"):
        el.lu_factor(A, 32)


@pytest.mark.parametrize("shape", [(6,), (6, 1), (6, 4)])
def test_lu_solve_many_right_hand_sides(shape):
    A = random_matrix(6, 9)
    b = np.random.default_rng(10).standard_normal(shape)
    factors = el.lu_factor(A)
    x = el.lu_solve(factors, b)
    assert x.shape == shape
    assert_close(x, np.linalg.solve(A, b))
    assert_close(el.lu_solve(scipy.linalg.lu_factor(A), b), np.linalg.solve(A, b))


def test_lu_solve_rejects_one_based_pivots():
    A = random_matrix(4, 2)
    lu, piv = el.lu_factor(A)
    with pytest.raises(ValueError, match="0-based"):
        el.lu_solve((lu, piv + 1), np.ones(4))


SINGULAR = [
    (np.array([[1.0, 2.0], [2.0, 4.0]]), "column 1"),
    (np.array([[0.0, 1.0], [0.0, 2.0]]), "column 0"),
    (np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 1.0, 1.0]]), "column 2"),
]


@pytest.mark.parametrize("A, where", SINGULAR)
@pytest.mark.parametrize("solver", [
    *LU_VARIANTS, lambda A: el.lu_factor(A, 1),
    lambda A: el.gaussian_elimination(A, np.ones(len(A)), "partial"),
    lambda A: el.gaussian_elimination(A, np.ones(len(A)), "none")])
def test_singular_matrix_names_the_column(A, where, solver):
    with pytest.raises(np.linalg.LinAlgError, match="singular.*column"):
        solver(A)


@pytest.mark.parametrize("A, where", SINGULAR)
def test_singular_column_is_named(A, where):
    with pytest.raises(np.linalg.LinAlgError, match=where):
        el.lu_factor(A)
    with pytest.raises(np.linalg.LinAlgError, match=where):
        el.gaussian_elimination(A, np.ones(len(A)))


def test_zero_diagonal_in_substitution():
    U = np.array([[1.0, 2.0], [0.0, 0.0]])
    with pytest.raises(np.linalg.LinAlgError, match="column 1"):
        el.back_substitution(U, np.ones(2))
    with pytest.raises(np.linalg.LinAlgError, match="column 1"):
        el.forward_substitution(U.T, np.ones(2))


BAD = [
    (np.ones((2, 3)), np.ones(2), ValueError, "square"),
    (np.ones(3), np.ones(3), ValueError, "square"),
    (np.eye(3), np.ones(4), ValueError, "shape"),
    (np.eye(3), np.ones((2, 2)), ValueError, "shape"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2), ValueError, "NaN or inf"),
    (np.eye(2), np.array([1.0, np.inf]), ValueError, "NaN or inf"),
]


@pytest.mark.parametrize("A, b, err, msg", BAD)
@pytest.mark.parametrize("fn", [el.gaussian_elimination, el.back_substitution,
                                el.forward_substitution,
                                lambda A, b: el.lu_solve(el.lu_factor(A), b)])
def test_bad_input(A, b, err, msg, fn):
    with pytest.raises(err, match=msg):
        fn(A, b)


def test_bad_pivoting_and_block():
    with pytest.raises(ValueError, match="pivoting"):
        el.gaussian_elimination(np.eye(2), np.ones(2), "rook")
    with pytest.raises(ValueError, match="block"):
        el.lu_factor(np.eye(2), 0)


@pytest.mark.parametrize("n", [2, 10, 30])
def test_growth_factor_wilkinson_is_worst_case(n):
    assert el.growth_factor(systems.wilkinson(n)) == pytest.approx(2.0 ** (n - 1))


def test_growth_factor_small_for_random_and_no_pivot_blows_up():
    assert el.growth_factor(random_matrix(50, 4)) < 50
    A = np.array([[1e-10, 1.0], [1.0, 1.0]])
    assert el.growth_factor(A, "none") > 1e9 and el.growth_factor(A) < 2.1


def test_lu_flops():
    assert el.lu_flops(1) == 0
    assert el.lu_flops(3) == pytest.approx(2 * 27 / 3 - 9 / 2 - 3 / 6)
    assert el.lu_flops(1000) / (2e9 / 3) == pytest.approx(1.0, rel=1e-2)
