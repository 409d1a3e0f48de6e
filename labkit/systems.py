"""Test problems for the linear-systems notebooks: the lab's three generated systems,
Poisson 2-D, Hilbert, Wilkinson, and the real matrices kept in ``data/``.

Every generator is deterministic (numpy ``default_rng(seed)``). The lab's generators
return ``(A, b, x_true)`` with ``A`` in CSR, ``x_true`` uniform in [0, 1) and
``b = A @ x_true``. Sizes n, m are ints >= 1, seeds ints >= 0, density a real in [0, 1];
otherwise TypeError/ValueError naming the argument (docs/contracts.md). Introduced in
notebooks 08 and 09.
"""
from __future__ import annotations

import numpy as np
import scipy.io
import scipy.sparse as sp

from labkit import course
from labkit.contracts import ArgumentTypeError, check_int, check_real

# The lab's experiment: N = 1000, density 0.01, seed 10.
LAB_N, LAB_DENSITY, LAB_SEED = 1000, 0.01, 10

# data/ sits next to the labkit package in the repository (labkit/../data).
DATA_DIR = course.data_dir()  # data/ in a clone, labkit/course/data in an installed wheel


def _offdiagonal(n: int, density: float, rng: np.random.Generator) -> sp.csr_array:
    """Random sparse (n, n) matrix with values in [0, 1) and an empty diagonal."""
    n = check_int(n, "n", 1)
    density = check_real(density, "density")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    R = sp.random_array((n, n), density=density, format="coo", rng=rng)
    keep = R.row != R.col
    R = sp.coo_array((R.data[keep], (R.row[keep], R.col[keep])), shape=(n, n))
    return R.tocsr()


def _with_solution(A: sp.csr_array, rng: np.random.Generator):
    A = sp.csr_array(A)
    A.sum_duplicates()
    A.sort_indices()
    x_true = rng.uniform(0.0, 1.0, size=A.shape[0])
    return A, A @ x_true, x_true


def diagonally_dominant(n: int = LAB_N, density: float = LAB_DENSITY, seed: int = LAB_SEED):
    """Lab system 1: a_ii = sum_j |a_ij| + U(0.1, 1.0), so strictly diagonally dominant.

    Jacobi and Gauss-Seidel both converge. Returns (A csr, b, x_true).
    """
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    R = _offdiagonal(n, density, rng)
    diag = np.abs(R).sum(axis=1) + rng.uniform(0.1, 1.0, size=n)
    return _with_solution(R + sp.diags_array(diag), rng)


def not_diagonally_dominant(n: int = LAB_N, density: float = LAB_DENSITY, seed: int = LAB_SEED):
    """Lab system 2: a_ii = sum_j |a_ij| - U(0.1, 1.0), entries <= 0 there replaced by -1.

    Diagonal dominance fails in every row; convergence is no longer guaranteed.
    Returns (A csr, b, x_true).
    """
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    R = _offdiagonal(n, density, rng)
    diag = np.abs(R).sum(axis=1) - rng.uniform(0.1, 1.0, size=n)
    diag[diag <= 0] = -1.0
    return _with_solution(R + sp.diags_array(diag), rng)


def large_spectral_radius(n: int = LAB_N, density: float = LAB_DENSITY, seed: int = LAB_SEED,
                          scale: float = 5.0):
    """Lab system 3: off-diagonals times ``scale``, diagonal U(0.1, 0.9): rho(iteration) >> 1.

    Jacobi and Gauss-Seidel diverge; direct methods do not care. Returns (A csr, b, x_true).
    """
    scale = check_real(scale, "scale")
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    R = _offdiagonal(n, density, rng) * scale
    diag = rng.uniform(0.1, 0.9, size=n)
    return _with_solution(R + sp.diags_array(diag), rng)


LAB_SYSTEMS = {
    "diagonally dominant": diagonally_dominant,
    "not diagonally dominant": not_diagonally_dominant,
    "large spectral radius": large_spectral_radius,
}


def poisson_1d(n: int) -> sp.csr_array:
    """tridiag(-1, 2, -1) of order n: -u'' on n interior points, times h^2."""
    n = check_int(n, "n", 1)
    return sp.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)],
                          offsets=[-1, 0, 1], format="csr")


def poisson_2d(m: int) -> sp.csr_array:
    """5-point Laplacian on an m x m interior grid, times h^2 (h = 1/(m+1)): order m^2, CSR.

    Row k = i*m + j is grid point (i, j), i the row (y), j the column (x). Introduced in
    notebook 09.
    """
    T = poisson_1d(check_int(m, "m", 1))
    I = sp.identity(m, format="csr")
    return sp.csr_array(sp.kron(I, T) + sp.kron(T, I))


def hilbert(n: int) -> np.ndarray:
    """H_ij = 1 / (i + j + 1) (0-based): SPD and famously ill-conditioned, kappa ~ e^(3.5 n)."""
    n = check_int(n, "n", 1)
    i = np.arange(n)
    return 1.0 / (i[:, None] + i[None, :] + 1.0)


def wilkinson(n: int) -> np.ndarray:
    """Wilkinson's growth matrix: 1 on the diagonal and in the last column, -1 below.

    Partial pivoting never swaps on it, and the last column doubles at every step:
    growth factor 2^(n-1), the worst case. Introduced in notebook 08.
    """
    n = check_int(n, "n", 1)
    W = np.eye(n) - np.tril(np.ones((n, n)), -1)
    W[:, -1] = 1.0
    return W


def jacobi_not_gauss_seidel() -> np.ndarray:
    """3 x 3 counterexample: Jacobi converges (rho = 0), Gauss-Seidel diverges (rho = 2)."""
    return np.array([[1.0, 2.0, -2.0], [1.0, 1.0, 1.0], [2.0, 2.0, 1.0]])


def gauss_seidel_not_jacobi() -> np.ndarray:
    """3 x 3 counterexample: Gauss-Seidel converges (rho = 1/2), Jacobi diverges (rho = sqrt(5)/2)."""
    return np.array([[2.0, -1.0, 1.0], [2.0, 2.0, 2.0], [-1.0, -1.0, 2.0]])


def load_matrix(name: str) -> sp.csr_array:
    """The Matrix Market file data/matrices/<name>.mtx as a CSR array (see data/README.md)."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str (a file stem in data/matrices), got {name!r}")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be a plain file stem in data/matrices, got {name!r}")
    path = DATA_DIR / "matrices" / f"{name}.mtx"
    if not path.is_file():
        have = sorted(p.stem for p in (DATA_DIR / "matrices").glob("*.mtx")) \
            if (DATA_DIR / "matrices").is_dir() else []
        raise FileNotFoundError(
            f"matrix {name!r} not found at {path} (available: {', '.join(have) or 'none'})")
    return sp.csr_array(scipy.io.mmread(path))
