"""Tests for labkit.systems: the lab's generators, Poisson, Hilbert, Wilkinson, data/ loader."""
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from labkit import iterative as it
from labkit import systems


@pytest.mark.parametrize("gen", systems.LAB_SYSTEMS.values(), ids=list(systems.LAB_SYSTEMS))
@pytest.mark.parametrize("n", [1, 10, 300])
def test_lab_generators_shape_determinism_solution(gen, n):
    A, b, x_true = gen(n, 0.05, 3)
    assert sp.issparse(A) and A.format == "csr" and A.shape == (n, n)
    assert np.allclose(A @ x_true, b, rtol=0, atol=1e-12)
    assert ((0 <= x_true) & (x_true < 1)).all()
    A2, b2, _ = gen(n, 0.05, 3)
    assert (A != A2).nnz == 0 and np.array_equal(b, b2)
    assert (A.diagonal() != 0).all()


def test_lab_defaults_are_the_labs():
    A, _, _ = systems.diagonally_dominant()
    assert A.shape == (1000, 1000)
    off = A.nnz - 1000
    assert abs(off / 1000 ** 2 - 0.01) < 0.002  # density 0.01 off the diagonal


def _offdiag_rowsum(A):
    return np.abs(A).sum(axis=1) - np.abs(A.diagonal())


def test_diagonal_rules():
    A, _, _ = systems.diagonally_dominant(200, 0.05, 1)
    excess = A.diagonal() - _offdiag_rowsum(A)
    assert (excess >= 0.1).all() and (excess < 1.0).all()
    B, _, _ = systems.not_diagonally_dominant(200, 0.05, 1)
    d, s = B.diagonal(), _offdiag_rowsum(B)
    assert ((d == -1.0) | ((d > 0) & (d < s))).all()
    C, _, _ = systems.large_spectral_radius(200, 0.05, 1)
    assert ((C.diagonal() >= 0.1) & (C.diagonal() < 0.9)).all()
    assert it.spectral_radius(it.iteration_matrix(C, "jacobi")) > 1


@pytest.mark.parametrize("m", [1, 2, 5])
def test_poisson_2d(m):
    A = systems.poisson_2d(m)
    assert A.format == "csr" and A.shape == (m * m, m * m)
    assert (abs(A - A.T)).max() == 0 and (A.diagonal() == 4).all()
    h = 1 / (m + 1)
    k = np.arange(1, m + 1)
    lam1 = 4 * np.sin(k * np.pi * h / 2) ** 2
    expected = np.sort((lam1[:, None] + lam1[None, :]).ravel())
    assert np.allclose(np.sort(np.linalg.eigvalsh(A.toarray())), expected)


@pytest.mark.parametrize("n", [1, 4, 9])
def test_hilbert_and_wilkinson(n):
    assert np.array_equal(systems.hilbert(n), scipy.linalg.hilbert(n))
    W = systems.wilkinson(n)
    assert (np.diag(W)[:-1] == 1).all() and (W[:, -1] == 1).all()
    assert (np.tril(W, -1)[np.tril_indices(n, -1)] == -1).all()
    assert (np.triu(W[:, :-1], 1) == 0).all()


def test_load_bcsstk01():
    A = systems.load_matrix("bcsstk01")
    assert A.shape == (48, 48) and A.nnz == 400
    assert (abs(A - A.T)).max() == 0
    assert np.linalg.eigvalsh(A.toarray()).min() > 0  # SPD
    assert 5e5 < np.linalg.cond(A.toarray()) < 2e6


def test_load_missing_matrix_is_clear():
    with pytest.raises(FileNotFoundError, match="not_there.*bcsstk01"):
        systems.load_matrix("not_there")


@pytest.mark.parametrize("call", [lambda: systems.hilbert(0), lambda: systems.poisson_2d(0),
                                  lambda: systems.diagonally_dominant(0),
                                  lambda: systems.diagonally_dominant(5, 1.5)])
def test_bad_sizes(call):
    with pytest.raises(ValueError):
        call()
