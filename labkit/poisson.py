"""The 2-D Poisson model problem: theory for Jacobi/Gauss-Seidel/SOR and red-black sweeps on the grid.

-Laplace(u) = f on the unit square, u = 0 on the boundary, m x m interior points, h = 1/(m+1),
5-point stencil 4u_ij - u_(i-1)j - u_(i+1)j - u_i(j-1) - u_i(j+1) = h^2 f_ij
(``systems.poisson_2d(m)`` is that matrix). Known spectral radii: Jacobi cos(pi h),
Gauss-Seidel cos^2(pi h), SOR with the optimal omega = 2/(1 + sin(pi h)): omega - 1.
Red-black ordering colours (i + j) even red and odd black: every red point's neighbours are
black, so each colour updates all at once, one array expression per half-sweep: the
ordering that parallelises. m is an int >= 1, omega a real in (0, 2), f a finite real (m, m)
array; otherwise TypeError/ValueError naming the argument (docs/contracts.md). Introduced in
notebook 09.
"""
from __future__ import annotations

import warnings

import numpy as np

from labkit.contracts import (ArgumentTypeError, check_int, check_matrix, check_real,
                              check_tolerance)
from labkit.iterative import ConvergenceWarning

_OMEGA = dict(low=0.0, high=2.0, why=" (SOR diverges otherwise)")


def grid_h(m: int) -> float:
    """Mesh width h = 1/(m+1) for m interior points per side."""
    m = check_int(m, "m", 1)
    return 1.0 / (m + 1)


def optimal_omega(m: int) -> float:
    """omega* = 2 / (1 + sin(pi h)): the SOR parameter minimising rho on the m x m Poisson grid."""
    return 2.0 / (1.0 + np.sin(np.pi * grid_h(m)))


def spectral_radius_theory(m: int, method: str, omega: float | None = None) -> float:
    """rho of the iteration matrix on the m x m grid: cos(pi h), cos^2(pi h), or SOR's.

    For SOR, omega defaults to the optimum (rho = omega* - 1); other omega use Young's formula.
    """
    c = np.cos(np.pi * grid_h(m))  # rho of Jacobi
    if method == "jacobi":
        return float(c)
    if method == "gauss-seidel":
        return float(c * c)
    if method != "sor":
        raise ValueError(f"method must be 'jacobi', 'gauss-seidel' or 'sor', got {method!r}")
    w = optimal_omega(m) if omega is None else check_real(omega, "omega", **_OMEGA)
    if w >= optimal_omega(m):
        return w - 1.0
    # Young: sqrt(lambda) = (w c + sqrt(w^2 c^2 - 4(w - 1))) / 2 for w below the optimum.
    root = (w * c + np.sqrt(w * w * c * c - 4.0 * (w - 1.0))) / 2.0
    return float(root * root)


def iterations_theory(m: int, method: str, rtol: float = 1e-6, omega: float | None = None,
                      jordan: bool | None = None) -> float:
    """Iterations to shrink the error by rtol: k = ln(rtol) / ln(rho) (Jacobi, GS ~ h^-2; SOR* ~ h^-1).

    At SOR's optimal omega the two largest eigenvalues of the iteration matrix coalesce into
    a 2 x 2 Jordan block, so the error falls like k rho^k, not rho^k; with ``jordan`` (the
    default there) k solves k rho^k = rtol instead.
    """
    rtol = check_real(rtol, "rtol", low=0.0, high=1.0)
    if jordan is not None and not isinstance(jordan, (bool, np.bool_)):
        raise ArgumentTypeError(f"jordan must be None or a bool, got {jordan!r}")
    rho = spectral_radius_theory(m, method, omega)
    k = float(np.log(rtol) / np.log(rho))
    if jordan is None:
        jordan = method == "sor" and (omega is None or np.isclose(omega, optimal_omega(m)))
    if jordan:
        for _ in range(50):  # fixed point of k = (ln rtol - ln k) / ln rho
            k = float((np.log(rtol) - np.log(max(k, 1.0))) / np.log(rho))
    return k


def red_black_masks(m: int):
    """Boolean (m, m) masks of the red ((i + j) even) and black points."""
    m = check_int(m, "m", 1)
    i, j = np.indices((m, m))
    red = (i + j) % 2 == 0
    return red, ~red


def red_black_ordering(m: int) -> np.ndarray:
    """Permutation of 0..m^2-1 listing the red unknowns first, then the black ones."""
    red, black = red_black_masks(m)
    return np.concatenate([np.flatnonzero(red.ravel()), np.flatnonzero(black.ravel())])


def _neighbours(u: np.ndarray) -> np.ndarray:
    """Sum of the four neighbours of each interior point; u is (m+2, m+2) with a zero boundary."""
    return u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]


def grid_residual(u: np.ndarray, f: np.ndarray) -> np.ndarray:
    """h^2 f - A u on the interior, u (m+2, m+2) padded, f (m, m) already times h^2."""
    f = check_matrix(f, "f")
    u = check_matrix(u, "u")
    if u.shape != (f.shape[0] + 2,) * 2:
        raise ValueError(f"u must be {(f.shape[0] + 2,) * 2} (the grid with its boundary) to "
                         f"match f {f.shape}, got {u.shape}")
    return f - (4.0 * u[1:-1, 1:-1] - _neighbours(u))


def red_black_sweep(u: np.ndarray, f: np.ndarray, omega: float = 1.0) -> np.ndarray:
    """One red-black SOR sweep in place (Gauss-Seidel for omega = 1): all red points, then all black.

    u is (m+2, m+2) with its zero boundary, a float64 numpy array (updated in place: the one
    labkit function that modifies an argument), f is (m, m) times h^2. Returns u.
    """
    f = check_matrix(f, "f")
    omega = check_real(omega, "omega", **_OMEGA)
    if not isinstance(u, np.ndarray) or u.dtype != np.float64:
        raise ArgumentTypeError(f"u must be a float64 numpy array (it is updated in place), got "
                                f"{type(u).__name__}" + (f" of dtype {u.dtype}"
                                                         if isinstance(u, np.ndarray) else ""))
    m = f.shape[0]
    if u.shape != (m + 2, m + 2):
        raise ValueError(f"u must be ({m + 2}, {m + 2}) (the grid with its boundary), got {u.shape}")
    inner = u[1:-1, 1:-1]  # a view: writes land in u
    for mask in red_black_masks(m):
        gs = (f + _neighbours(u)) / 4.0
        inner[mask] = (1.0 - omega) * inner[mask] + omega * gs[mask]
    return u


def poisson_red_black(f: np.ndarray, *, omega: float = 1.0, rtol: float = 1e-8,
                      atol: float = 0.0, maxiter: int | None = None, callback=None):
    """Solve the m x m Poisson system A u = f (f already times h^2) by red-black SOR sweeps.

    Same contract as ``iterative.gauss_seidel``: returns (u (m, m), info), converged when
    ||f - A u|| <= max(rtol ||f||, atol). Introduced in notebook 09.
    """
    f = check_matrix(f, "f")
    omega = check_real(omega, "omega", **_OMEGA)
    rtol, atol = check_tolerance(rtol, "rtol"), check_tolerance(atol, "atol")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (called as callback(u)), got {callback!r}")
    m = f.shape[0]
    maxiter = max(5000, 10 * m * m) if maxiter is None else check_int(maxiter, "maxiter", 0)
    u = np.zeros((m + 2, m + 2))
    tol = max(rtol * np.linalg.norm(f), atol)
    for k in range(maxiter + 1):
        rnorm = np.linalg.norm(grid_residual(u, f))
        if rnorm <= tol:
            return u[1:-1, 1:-1].copy(), 0
        if k == maxiter:
            break
        red_black_sweep(u, f, omega)
        if callback is not None:
            callback(u[1:-1, 1:-1])
    warnings.warn(f"red-black SOR(omega={omega:g}) did not converge in {maxiter} iterations: "
                  f"||f - A u|| = {rnorm:.3g} > {tol:.3g}", ConvergenceWarning, stacklevel=2)
    return u[1:-1, 1:-1].copy(), max(maxiter, 1)
