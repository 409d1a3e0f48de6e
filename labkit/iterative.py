"""Stationary iterative methods: Jacobi, Gauss-Seidel and SOR, componentwise and as splittings.

Splitting A = M - N with M = D (Jacobi), D + L (Gauss-Seidel) or D/omega + L (SOR), where
D, L, U are A's diagonal, strictly lower and strictly upper parts. One iteration is
x <- x + M^{-1} (b - A x): a residual (one product with A) and a triangular solve with M,
both in compiled code, for dense arrays and scipy.sparse CSR alike. The componentwise
``*_sweep`` functions are the slow, obviously correct references. The solvers follow
scipy.sparse.linalg: converged when ||b - A x|| <= max(rtol ||b||, atol); ``info`` is 0 then,
otherwise the number of iterations done (with a ConvergenceWarning). A is a real square matrix
(dense or scipy.sparse), b and x0 real vectors, all finite; rtol, atol >= 0; 0 < omega < 2;
otherwise TypeError/ValueError naming the argument (docs/contracts.md). Introduced in notebook 09.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg.lapack import dtrtrs

from labkit.contracts import check_int, check_matrix, check_real, check_tolerance, check_vector

METHODS = ("jacobi", "gauss-seidel", "sor")
DIVERGED = 1e12  # a residual this many times the starting one counts as divergence


class ConvergenceWarning(UserWarning):
    """An iterative method stopped before ||b - A x|| <= max(rtol ||b||, atol)."""


# ---------------------------------------------------------------- validation
def _system(A, b):
    """(A, b) as float64 (dense copy or CSR copy) after checking types, shapes and finiteness."""
    A = check_matrix(A, "A", allow_sparse=True)
    return A, check_vector(b, A.shape[0], "b", against="A")


def _diagonal(A) -> np.ndarray:
    """A's diagonal, or ValueError naming the first zero on it."""
    d = A.diagonal() if sp.issparse(A) else np.diag(A).copy()
    zero = np.flatnonzero(d == 0.0)
    if zero.size:
        raise ValueError(f"A has a zero on the diagonal at row {zero[0]}: Jacobi, Gauss-Seidel and SOR "
                         f"divide by a_ii; reorder the rows (pivot) so the diagonal is nonzero")
    return d


def _start(x0, n: int, name: str = "x0") -> np.ndarray:
    """A float64 copy of the starting vector (zeros for None), named ``name`` in errors."""
    if x0 is None:
        return np.zeros(n)
    return check_vector(x0, n, name, against="A")


# ---------------------------------------------------------------- splittings
def splitting(A, method: str = "gauss-seidel", omega: float = 1.0):
    """M of the splitting A = M - N: D (jacobi), D + L (gauss-seidel), D/omega + L (sor).

    Dense in, dense out; sparse in, CSR out. Introduced in notebook 09.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    w = check_real(omega, "omega", low=0.0, high=2.0, why=" (SOR diverges otherwise)") \
        if method == "sor" else 1.0
    A = check_matrix(A, "A", allow_sparse=True)
    d = _diagonal(A)
    if sp.issparse(A):
        D = sp.diags_array(d / w, format="csr")
        return D if method == "jacobi" else sp.csr_array(sp.tril(A, -1, format="csr") + D)
    D = np.diag(d / w)
    return D if method == "jacobi" else np.tril(A, -1) + D


def iteration_matrix(A, method: str = "gauss-seidel", omega: float = 1.0) -> np.ndarray:
    """G = I - M^{-1} A (dense): e_{k+1} = G e_k, so the method converges iff rho(G) < 1."""
    A = check_matrix(A, "A", allow_sparse=True)
    A = A.toarray() if sp.issparse(A) else A
    M = splitting(A, method, omega)
    return np.eye(A.shape[0]) - np.linalg.solve(M, A)


def spectral_radius(G) -> float:
    """rho(G) = max |lambda_i(G)| (dense eigenvalues: for the small matrices of notebook 09)."""
    G = check_matrix(G, "G", allow_sparse=True)
    G = G.toarray() if sp.issparse(G) else G
    return float(np.abs(np.linalg.eigvals(G)).max())


def splitting_solver(A, method: str = "gauss-seidel", omega: float = 1.0):
    """A function r -> M^{-1} r, set up once: a division (Jacobi) or a triangular solve.

    Sparse M = D/omega + L is factored once by SuperLU in its natural order with no pivoting:
    its factors are M itself, so each solve is one O(nnz) compiled pass, the whole
    Gauss-Seidel sweep without a Python loop.
    """
    M = splitting(A, method, omega)
    if method == "jacobi":
        d = M.diagonal() if sp.issparse(M) else np.diag(M).copy()
        return lambda r: r / d
    if sp.issparse(M):
        lu = spla.splu(sp.csc_array(M), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        if not (np.array_equal(lu.perm_r, np.arange(M.shape[0]))
                and np.array_equal(lu.perm_c, np.arange(M.shape[0]))):  # pragma: no cover
            return lambda r: spla.spsolve_triangular(M, r, lower=True)
        return lu.solve
    M = np.asfortranarray(M)
    return lambda r: dtrtrs(M, r, lower=1)[0]


# ---------------------------------------------------------------- the solvers
def _iterate(A, b, x0, method, omega, rtol, atol, maxiter, callback):
    rtol, atol = check_tolerance(rtol, "rtol"), check_tolerance(atol, "atol")
    maxiter = None if maxiter is None else check_int(maxiter, "maxiter", 0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (called as callback(xk)), got {callback!r}")
    A, b = _system(A, b)
    n = A.shape[0]
    x = _start(x0, n)
    solve = splitting_solver(A, method, omega)
    maxiter = max(5000, 10 * n) if maxiter is None else maxiter
    with np.errstate(over="ignore", invalid="ignore"):
        tol = max(rtol * np.linalg.norm(b), atol)
    name = {"jacobi": "Jacobi", "gauss-seidel": "Gauss-Seidel", "sor": f"SOR(omega={omega:g})"}[method]
    r0norm = None
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(maxiter + 1):
            r = b - A @ x
            rnorm = np.linalg.norm(r)
            if rnorm <= tol:
                return x, 0
            r0norm = rnorm if r0norm is None else r0norm
            if not rnorm <= DIVERGED * r0norm:  # also catches inf and NaN
                rnorm = np.inf
                break
            if k == maxiter:
                break
            x_new = x + solve(r)
            if not np.isfinite(x_new).all():
                k += 1
                rnorm = np.inf
                break
            x = x_new
            if callback is not None:
                callback(x)
    if not np.isfinite(rnorm):
        warnings.warn(f"{name} diverged: after {k} iterations ||b - A x|| had grown more than "
                      f"{DIVERGED:.0e} times (or overflowed); stopped there (info={max(k, 1)}). "
                      f"Check rho(M^-1 N) < 1 (e.g. diagonal dominance)", ConvergenceWarning, stacklevel=3)
        return x, max(k, 1)
    warnings.warn(f"{name} did not converge in {k} iterations: ||b - A x|| = {rnorm:.3g} > "
                  f"{tol:.3g} (info={max(k, 1)})", ConvergenceWarning, stacklevel=3)
    return x, max(k, 1)


def jacobi(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    """Jacobi: x_i <- (b_i - sum_{j != i} a_ij x_j) / a_ii, all from the previous iterate.

    Returns (x, info), info 0 when ||b - A x|| <= max(rtol ||b||, atol), else the number of
    iterations done (plus a ConvergenceWarning). maxiter defaults to max(5000, 10 n).
    ``callback(xk)`` runs after every iteration. Introduced in notebook 09.
    """
    return _iterate(A, b, x0, "jacobi", 1.0, rtol, atol, maxiter, callback)


def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    """Gauss-Seidel: as Jacobi, but x_j for j < i are this sweep's new values: (D + L) x' = b - U x.

    Same contract as ``jacobi``. Introduced in notebook 09.
    """
    return _iterate(A, b, x0, "gauss-seidel", 1.0, rtol, atol, maxiter, callback)


def sor(A, b, x0=None, *, omega, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    """SOR: x_i <- (1 - omega) x_i + omega * (Gauss-Seidel value), 0 < omega < 2.

    Splitting M = D/omega + L. Same contract as ``jacobi``. Introduced in notebook 09.
    """
    omega = check_real(omega, "omega", low=0.0, high=2.0, why=" (SOR diverges otherwise)")
    return _iterate(A, b, x0, "sor", omega, rtol, atol, maxiter, callback)


# ---------------------------------------------------------------- componentwise references
def _rows(A):
    """Yield (columns, values) of each row: CSR slices or dense rows."""
    if sp.issparse(A):
        ip, ix, v = A.indptr, A.indices, A.data
        for i in range(A.shape[0]):
            yield ix[ip[i]:ip[i + 1]], v[ip[i]:ip[i + 1]]
    else:
        cols = np.arange(A.shape[0])
        for row in A:
            yield cols, row


def jacobi_sweep(A, b, x) -> np.ndarray:
    """One Jacobi sweep, componentwise: every x_i from the old x. Returns a new array."""
    A, b = _system(A, b)
    d = _diagonal(A)
    x_old = _start(x, A.shape[0], "x")
    x_new = np.empty_like(x_old)
    for i, (cols, vals) in enumerate(_rows(A)):
        x_new[i] = (b[i] - vals @ x_old[cols] + d[i] * x_old[i]) / d[i]
    return x_new


def sor_sweep(A, b, x, omega: float) -> np.ndarray:
    """One SOR sweep: x_i <- (1 - omega) x_i + omega (b_i - sum_{j != i} a_ij x_j) / a_ii, in order.

    x_j is already the new value for j < i. Returns a new array; x is not modified.
    """
    omega = check_real(omega, "omega", low=0.0, high=2.0, why=" (SOR diverges otherwise)")
    A, b = _system(A, b)
    d = _diagonal(A)
    x = _start(x, A.shape[0], "x")
    for i, (cols, vals) in enumerate(_rows(A)):
        gs = (b[i] - vals @ x[cols] + d[i] * x[i]) / d[i]
        x[i] = (1.0 - omega) * x[i] + omega * gs
    return x


def gauss_seidel_sweep(A, b, x) -> np.ndarray:
    """One Gauss-Seidel sweep, componentwise: x_i <- (b_i - sum_{j<i} a_ij x_j' - sum_{j>i} a_ij x_j) / a_ii.

    Rows in order, each using the new values above it. Returns a new array. Introduced in
    notebook 09.
    """
    return sor_sweep(A, b, x, 1.0)


def gauss_seidel_sweep_getrow(A, b, x) -> np.ndarray:
    """The lab's sweep: each row densified with ``getrow(i).toarray()`` (O(n) per row, O(n^2) per sweep).

    Kept to measure against: benchmark only.
    """
    A, b = _system(A, b)
    A = sp.csr_matrix(A)
    _diagonal(A)
    x = _start(x, A.shape[0], "x")
    for i in range(A.shape[0]):
        row = A.getrow(i).toarray().ravel()
        x[i] = (b[i] - row @ x + row[i] * x[i]) / row[i]
    return x


def relative_residual(A, x, b) -> float:
    """||b - A x|| / ||b|| for A (dense or sparse, square) and vectors x, b (b nonzero)."""
    A, b = _system(A, b)
    x = check_vector(x, A.shape[0], "x", against="A")
    if not np.any(b):
        raise ValueError("b is zero: the relative residual ||b - A x|| / ||b|| is undefined")
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def relative_error(x, x_true) -> float:
    """||x - x*|| / ||x*|| for finite vectors of one shape (x_true nonzero)."""
    x_true = check_vector(x_true, np.shape(x_true)[0] if np.ndim(x_true) else -1, "x_true")
    x = check_vector(x, x_true.shape[0], "x", against="x_true")
    if not np.any(x_true):
        raise ValueError("x_true is zero: the relative error ||x - x*|| / ||x*|| is undefined")
    return float(np.linalg.norm(x - x_true) / np.linalg.norm(x_true))
