"""Direct solvers: substitution, Gaussian elimination with pivoting, and LU from loops to BLAS-3.

Every ``lu_factor*`` returns ``(lu, piv)`` in ``scipy.linalg.lu_factor``'s convention: ``lu``
holds U on and above the diagonal and the unit-lower L strictly below it; ``piv[i]`` is the
(0-based) row swapped with row i at step i. So ``scipy.linalg.lu_solve`` accepts any of them.
The ladder ``lu_factor_loops`` -> ``lu_factor_rows`` -> ``lu_factor_rank1`` -> ``lu_factor``
(blocked) computes the same factors ever faster. Matrices must be dense (numpy arrays or nested
lists), real, finite, square and non-empty: scipy.sparse and complex input raise TypeError,
anything else ValueError naming the argument; a zero pivot raises numpy.linalg.LinAlgError
(a ValueError). Inputs are never modified (docs/contracts.md). Introduced in notebook 08.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.linalg.blas import dger, dscal, dswap, dtrsm, idamax
from threadpoolctl import ThreadpoolController

from labkit.contracts import ArgumentTypeError, check_int, check_matrix, check_positive_int, check_vector

PIVOTING = ("none", "partial", "complete")
BLOCK = 256  # panel width of the blocked LU
PANEL_LEAF = 16  # panel columns this few are factored by rank-1 steps, more recursively
SOLVE_LEAF = 64  # triangular solves this small call dtrsm, larger ones split in halves


# ---------------------------------------------------------------- validation
def _singular(col: int) -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"matrix is singular: no nonzero pivot in column {col} (0-based)")


# ---------------------------------------------------------------- substitution
def forward_substitution(L, b, unit_diagonal: bool = False) -> np.ndarray:
    """Solve L y = b for lower-triangular L, top row first: y_i = (b_i - sum_{j<i} l_ij y_j) / l_ii.

    Only the lower triangle of L is read; b may be (n,) or (n, k). Introduced in notebook 08.
    """
    L = check_matrix(L, "L")
    n = L.shape[0]
    y = check_vector(b, n, "b", allow_2d=True)
    for i in range(n):
        y[i] -= L[i, :i] @ y[:i]
        if not unit_diagonal:
            if L[i, i] == 0.0:
                raise _singular(i)
            y[i] /= L[i, i]
    return y


def back_substitution(U, y) -> np.ndarray:
    """Solve U x = y for upper-triangular U, bottom row first: x_i = (y_i - sum_{j>i} u_ij x_j) / u_ii.

    Only the upper triangle of U is read; y may be (n,) or (n, k). Introduced in notebook 08.
    """
    U = check_matrix(U, "U")
    n = U.shape[0]
    x = check_vector(y, n, "y", allow_2d=True)
    for i in range(n - 1, -1, -1):
        if U[i, i] == 0.0:
            raise _singular(i)
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# ---------------------------------------------------------------- elimination
def gaussian_elimination(A, b, pivoting: str = "partial") -> np.ndarray:
    """Solve A x = b by row reduction of [A | b] to upper-triangular form, then back substitution.

    pivoting: "none" (the textbook algorithm; fails on a zero or tiny pivot), "partial"
    (largest |a_ik| in the column moved up) or "complete" (largest entry of the whole
    trailing block; columns swapped too, so x is unpermuted at the end). The caller's
    arrays are never modified. Introduced in notebook 08.
    """
    if pivoting not in PIVOTING:
        raise ValueError(f"pivoting must be one of {PIVOTING}, got {pivoting!r}")
    A = check_matrix(A, "A")
    n = A.shape[0]
    b = check_vector(b, n, "b", allow_2d=True)
    cols = np.arange(n)  # cols[j]: which unknown sits in column j after column swaps
    for k in range(n):
        if pivoting == "partial":
            p = k + int(np.argmax(np.abs(A[k:, k])))
            q = k
        elif pivoting == "complete":
            flat = int(np.argmax(np.abs(A[k:, k:])))
            p, q = k + flat // (n - k), k + flat % (n - k)
        else:
            p = q = k
        if A[p, q] == 0.0:
            raise _singular(int(cols[q]) if pivoting == "complete" else k)
        if p != k:
            A[[k, p]] = A[[p, k]]
            b[[k, p]] = b[[p, k]]
        if q != k:
            A[:, [k, q]] = A[:, [q, k]]
            cols[[k, q]] = cols[[q, k]]
        m = A[k + 1:, k] / A[k, k]  # multipliers l_ik
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= np.multiply.outer(m, b[k])
    x = back_substitution(A, b)
    out = np.empty_like(x)
    out[cols] = x
    return out


def growth_factor(A, pivoting: str = "partial") -> float:
    """rho = max_{i,j,k} |a_ij^(k)| / max_{i,j} |a_ij| over every stage k of elimination.

    Backward error of elimination is bounded by about n * rho * eps * ||A||; partial pivoting
    keeps rho <= 2^(n-1), reached by ``systems.wilkinson``. Introduced in notebook 08.
    """
    if pivoting not in ("none", "partial"):
        raise ValueError(f"pivoting must be 'none' or 'partial', got {pivoting!r}")
    A = check_matrix(A, "A")
    n, a0 = A.shape[0], np.abs(A).max()
    if a0 == 0.0:
        raise _singular(0)
    biggest = a0
    for k in range(n - 1):
        p = k + int(np.argmax(np.abs(A[k:, k]))) if pivoting == "partial" else k
        if A[p, k] == 0.0:
            raise _singular(k)
        A[[k, p]] = A[[p, k]]
        A[k + 1:, k:] -= np.outer(A[k + 1:, k] / A[k, k], A[k, k:])
        biggest = max(biggest, np.abs(A[k + 1:, k + 1:]).max())
    return float(biggest / a0)


# ---------------------------------------------------------------- the LU ladder
def lu_factor_loops(A):
    """LU with partial pivoting, three plain Python loops: the slow, obviously correct reference.

    Same (lu, piv) as ``scipy.linalg.lu_factor``. Introduced in notebook 08.
    """
    lu = check_matrix(A, "A")
    n = lu.shape[0]
    piv = np.arange(n, dtype=np.int32)
    for k in range(n):
        p = max(range(k, n), key=lambda i: abs(lu[i, k]))
        if lu[p, k] == 0.0:
            raise _singular(k)
        piv[k] = p
        for j in range(n):
            lu[k, j], lu[p, j] = lu[p, j], lu[k, j]
        for i in range(k + 1, n):
            lu[i, k] = lu[i, k] / lu[k, k]
            for j in range(k + 1, n):
                lu[i, j] -= lu[i, k] * lu[k, j]
    return lu, piv


def lu_factor_rows(A):
    """LU with partial pivoting, one numpy row operation per (i, k): the inner loop vectorised.

    Introduced in notebook 08.
    """
    lu = check_matrix(A, "A")
    n = lu.shape[0]
    piv = np.arange(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        if lu[p, k] == 0.0:
            raise _singular(k)
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        for i in range(k + 1, n):
            lu[i, k] /= lu[k, k]
            lu[i, k + 1:] -= lu[i, k] * lu[k, k + 1:]
    return lu, piv


def _rank1_steps(lu: np.ndarray, piv: np.ndarray, k0: int, k1: int, row_end: int,
                 col0: int = 0) -> None:
    """Eliminate columns k0..k1-1 in place by rank-1 updates on lu[:, k0:row_end] (swaps whole rows).

    col0: where lu's column 0 sits in the whole matrix (for the singular-column message).
    """
    for k in range(k0, k1):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        if lu[p, k] == 0.0:
            raise _singular(col0 + k)
        piv[k] = p
        if p != k:
            lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:row_end] -= np.outer(lu[k + 1:, k], lu[k, k + 1:row_end])


def lu_factor_rank1(A):
    """LU with partial pivoting, one rank-1 (outer-product) update of the trailing block per column.

    A_22 <- A_22 - l_21 u_12^T: a single numpy call per column (BLAS-2 speed: every step
    streams the whole trailing block through memory). Introduced in notebook 08.
    """
    lu = check_matrix(A, "A")
    n = lu.shape[0]
    piv = np.arange(n, dtype=np.int32)
    _rank1_steps(lu, piv, 0, n, n)
    return lu, piv


def _trsm(T: np.ndarray, B: np.ndarray, lower: bool, unit: bool) -> np.ndarray:
    """T^{-1} B for triangular T by BLAS dtrsm (B may be 1-D); T's other triangle is ignored."""
    X = dtrsm(1.0, T, B.reshape(B.shape[0], -1), lower=int(lower), diag=int(unit))
    return X.reshape(B.shape)


_BLAS = None  # threadpoolctl's view of the BLAS libraries numpy and scipy loaded (found once)


def _leaf_lu(lu: np.ndarray, piv: np.ndarray, k0: int, k1: int, c0: int, c1: int) -> None:
    """Rank-1 LU steps on columns k0..k1-1 (rows k0..) of lu, on a column-major copy of them.

    One BLAS-1/2 call per task and column, so Python does little per column: idamax finds the
    pivot, dswap swaps two rows (in the copy and in lu's columns c0..c1-1), dscal divides the
    multipliers by the pivot, dger does the rank-1 update of the copy's later columns. dger
    needs a contiguous matrix, so it updates whole columns, with zero multipliers above row j.
    """
    n, m, w = lu.shape[1], lu.shape[0] - k0, k1 - k0
    L = np.array(lu[k0:, k0:k1], order="F")
    f = L.T.reshape(-1)  # the same memory, column after column: BLAS-1 calls index into it
    lf = lu.reshape(-1)
    x = np.zeros(m)  # the multipliers of the current column, zero in the rows above them
    for j in range(w):
        top = j * m + j  # f[top]: diagonal entry of column j
        p = j + idamax(f, m - j, top)
        pivot = f[top + p - j]
        if pivot == 0.0:
            raise _singular(k0 + j)
        piv[k0 + j] = k0 + p
        if p != j:
            dswap(f, f, w, j, m, p, m)
            dswap(lf, lf, c1 - c0, (k0 + j) * n + c0, 1, (k0 + p) * n + c0, 1)
        if j + 1 < m:
            dscal(1.0 / pivot, f, m - j - 1, top + 1)
        if j + 1 < w:
            x[j + 1:] = f[top + 1:top + m - j]
            x[j] = 0.0
            dger(-1.0, x, L[j, j + 1:], a=L[:, j + 1:], overwrite_a=1)
    lu[k0:, k0:k1] = L


def _solve_rows(lu: np.ndarray, k0: int, k1: int, c0: int, c1: int) -> None:
    """lu[k0:k1, c0:c1] <- L_11^{-1} lu[k0:k1, c0:c1], L_11 the unit lower triangle of lu[k0:k1, k0:k1].

    Recursive, like the LU: solve with the top half of the triangle, subtract its product with
    the rows below (a matrix product, faster than dtrsm), solve with the bottom half. Triangles
    of at most ``SOLVE_LEAF`` rows go to dtrsm, as X^T = B^T L_11^{-T} (the triangle on the
    right: the faster form for lu's row-major blocks).
    """
    if k1 - k0 > SOLVE_LEAF:
        h = (k0 + k1) // 2
        _solve_rows(lu, k0, h, c0, c1)
        lu[h:k1, c0:c1] -= lu[h:k1, k0:h] @ lu[k0:h, c0:c1]
        _solve_rows(lu, h, k1, c0, c1)
        return
    X = dtrsm(1.0, lu[k0:k1, k0:k1].T, lu[k0:k1, c0:c1].T, side=1, lower=0, diag=1)
    lu[k0:k1, c0:c1] = X.T


def _recursive_lu(lu: np.ndarray, piv: np.ndarray, k0: int, k1: int, c0: int, c1: int) -> None:
    """Toledo's recursive LU of columns k0..k1-1 (rows k0..) of lu, in place.

    Split the columns in halves: factor the left half, U_12 = L_11^{-1} A_12 (triangular
    solve), A_22 -= L_21 U_12 (matrix product), factor the right half. Nearly all flops become
    matrix products; leaves of at most ``PANEL_LEAF`` columns use rank-1 steps (``_leaf_lu``).
    Pivots swap rows of lu's columns c0..c1-1 (the panel, or the whole matrix), as they are found.
    """
    if k1 - k0 <= PANEL_LEAF:
        _leaf_lu(lu, piv, k0, k1, c0, c1)
        return
    h = k0 + max(PANEL_LEAF, (k1 - k0) // 2 // PANEL_LEAF * PANEL_LEAF)  # leaves stay whole
    _recursive_lu(lu, piv, k0, h, c0, c1)
    _solve_rows(lu, k0, h, h, k1)
    lu[h:, h:k1] -= lu[h:, k0:h] @ lu[k0:h, h:k1]
    _recursive_lu(lu, piv, h, k1, c0, c1)


def _swap_rows(lu: np.ndarray, piv: np.ndarray, k: int, e: int, c0: int, c1: int) -> None:
    """Apply the row swaps piv[k:e] to lu[:, c0:c1], one dswap per swap (rows are contiguous)."""
    n, lf = lu.shape[1], lu.reshape(-1)
    for j in range(k, e) if c1 > c0 else ():
        if piv[j] != j:
            dswap(lf, lf, c1 - c0, j * n + c0, 1, int(piv[j]) * n + c0, 1)


def _update(lu: np.ndarray, k: int, e: int, c0: int, c1: int) -> None:
    """A_22 -= L_21 U_12 on columns c0..c1-1 (numpy releases the GIL, so chunks run in parallel)."""
    lu[e:, c0:c1] -= lu[e:, k:e] @ lu[k:e, c0:c1]


def lu_factor(A, block: int = BLOCK):
    """Blocked right-looking LU with partial pivoting: LU of a panel, then BLAS-3 updates.

    For each panel of ``block`` columns: factor the tall panel A[k:, k:e] with Toledo's
    recursive LU, swap the rows of the other columns as its pivots say, U_12 = L_11^{-1} A_12
    (triangular solve), A_22 -= L_21 U_12 (matrix products). The products do almost all the
    flops while each tile is reused from cache: the same idea as FlashAttention's tiles.
    Look-ahead: the next panel's columns are updated first, so the next panel is factored (one
    thread, many small steps) while the rest of the update runs, in column chunks, on the other
    cores: as many threads in all as BLAS had, each BLAS call on one. With one BLAS thread the
    chunks run in turn, so the factors are the same bits whatever the thread count; block >= n
    is one Toledo recursion over the whole matrix. lu is row-major, so a row swap is one
    contiguous dswap. Returns (lu, piv) for ``lu_solve`` or ``scipy.linalg.lu_solve``.
    Introduced in notebook 08.
    """
    global _BLAS
    block = check_positive_int(block, "block", fn="lu_factor")
    lu = np.ascontiguousarray(check_matrix(A, "A"))
    n = lu.shape[0]
    piv = np.arange(n, dtype=np.int32)
    if _BLAS is None:
        _BLAS = ThreadpoolController().select(user_api="blas")
    threads = min((lib["num_threads"] for lib in _BLAS.info()), default=1)
    with _BLAS.limit(limits=1), ThreadPoolExecutor(max(1, threads - 1)) as pool:
        e = min(block, n)
        _recursive_lu(lu, piv, 0, e, 0, e)
        _swap_rows(lu, piv, 0, e, e, n)
        for k in range(0, n - block, block):
            e, e2 = k + block, min(k + 2 * block, n)
            _solve_rows(lu, k, e, e, n)
            _update(lu, k, e, e, e2)  # the next panel's columns first
            chunks = [(c, min(c + block, n)) for c in range(e2, n, block)]
            jobs = [pool.submit(_update, lu, k, e, *c) if threads > 1 else None for c in chunks]
            _recursive_lu(lu, piv, e, e2, e, e2)  # ... so it is factored while the jobs run
            for job, c in zip(jobs[::-1], chunks[::-1]):
                if job is None or job.cancel():  # one thread, or not started yet: do it here
                    _update(lu, k, e, *c)
                else:
                    job.result()  # waits, and re-raises anything the job raised
            _swap_rows(lu, piv, e, e2, 0, e)
            _swap_rows(lu, piv, e, e2, e2, n)
    return lu, piv


def lu_solve(lu_and_piv, b) -> np.ndarray:
    """Solve A x = b from A's (lu, piv): swap b's rows as recorded, then L y = Pb, U x = y.

    b may be (n,) or (n, k): one O(n^2) solve per column after the single O(n^3) factorisation.
    Introduced in notebook 08.
    """
    if not isinstance(lu_and_piv, (tuple, list)) or len(lu_and_piv) != 2:
        raise ArgumentTypeError(f"lu_and_piv must be the pair (lu, piv) that lu_factor returns, "
                                f"got {type(lu_and_piv).__name__}")
    lu, piv = lu_and_piv
    lu = check_matrix(lu, "lu")
    n = lu.shape[0]
    piv = np.asarray(piv)
    if piv.dtype.kind not in "iu":
        raise ArgumentTypeError(f"piv must hold integer row indices (0-based, as scipy's "
                                f"lu_factor returns), got dtype {piv.dtype}")
    if piv.shape != (n,) or piv.min(initial=0) < 0 or piv.max(initial=0) >= n:
        raise ValueError(f"piv must hold {n} row indices in [0, {n}) (0-based, as scipy's "
                         f"lu_factor returns), got shape {piv.shape}")
    x = check_vector(b, n, "b", allow_2d=True)
    for i, p in enumerate(piv):
        if p != i:
            x[[i, p]] = x[[p, i]]
    if np.any(np.diag(lu) == 0.0):
        raise _singular(int(np.flatnonzero(np.diag(lu) == 0.0)[0]))
    return _trsm(lu, _trsm(lu, x, lower=True, unit=True), lower=False, unit=False)


def lu_flops(n: int) -> int:
    """Floating-point operations of LU (divisions, multiplies, subtractions): 2n^3/3 - n^2/2 - n/6 ~ 2n^3/3."""
    n = check_int(n, "n", 0, fn="lu_flops")
    return (4 * n ** 3 - 3 * n ** 2 - n) // 6


def count_elimination_flops(n: int) -> int:
    """Flops of elimination without pivoting on [A | b], counted loop by loop (the readable reference).

    The convention of notebook 08: every +, -, *, / on floats is one flop (a multiply-add is 2).
    Step k computes one multiplier l_ik = a_ik / a_kk per row i > k (1 flop), updates
    a_ij -= l_ik a_kj for j > k (2 flops each; a_ik becomes 0 without arithmetic) and
    b_i -= l_ik b_k (2 flops). Back substitution is not included. Introduced in notebook 08.
    """
    n = check_int(n, "n", 0, fn="count_elimination_flops")
    flops = 0
    for k in range(n):
        for i in range(k + 1, n):
            flops += 1  # l_ik = a_ik / a_kk
            flops += 2 * (n - k - 1)  # a_ij -= l_ik * a_kj, j = k+1 .. n-1
            flops += 2  # b_i -= l_ik * b_k
    return flops


def elimination_flops(n: int) -> int:
    """Flops of elimination without pivoting on [A | b]: sum_{m=1}^{n-1} (2m^2 + 3m) = (4n^3 + 3n^2 - 7n)/6.

    Same convention and count as ``count_elimination_flops`` (one flop per +, -, *, /; back
    substitution excluded); the leading term is 2n^3/3. Introduced in notebook 08.
    """
    n = check_int(n, "n", 0, fn="elimination_flops")
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) // 6
