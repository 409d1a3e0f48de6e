"""Wrong answers to the linear-systems exercises (notebooks 08 and 09), written as a student would.

Written from the exercise text and labkit's reference solvers only, without reading the checkers:
each ``fn`` was compared with labkit's reference (elimination.back_substitution,
elimination.gaussian_elimination, scipy.linalg.lu_factor, iterative.gauss_seidel_sweep,
the notebook 09 contract for gauss_seidel, iterative.sor_sweep) and differs from it. Where
the mistake only shows on special inputs, the comment above the function gives one that
exposes it ("Shows on: ...").
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from wrong_answer import WrongAnswer

from labkit import elimination

# Patterns a hint about the mistake would use (case-insensitive regexes).
DTYPE = r"dtype|float64|float32|float16|precision"
INPLACE = r"in[ -]?place|modif|overwr|copy"
PIVOT = r"pivot"
CALLBACK = r"callback"


# ================================================================ back_substitution(U, y)

# Shows on: any U with a nonzero above the diagonal, e.g. [[2, 1], [0, 4]], y = [4, 8] (x = [1, 2]).
def back_top_down(U, y):
    U = np.asarray(U, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    x = np.zeros(n)
    for i in range(n):  # first row first
        x[i] = (y[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# Shows on: any U whose diagonal is not all ones, e.g. [[2, 1], [0, 4]], y = [4, 8].
def back_no_divide(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = x[i] - U[i, i + 1:] @ x[i + 1:]
    return x


# Shows on: U with garbage below the diagonal (e.g. the lu array of lu_factor):
# U = [[2, 1], [5, 4]], y = [4, 8]; the upper triangle alone gives x = [1, 2].
def back_linalg_solve(U, y):
    return np.linalg.solve(np.asarray(U, dtype=float), np.asarray(y, dtype=float))


# Shows on: U with nonzeros below the diagonal, as above: the whole row is dotted with x,
# so the lower part multiplies the not-yet-solved entries of y.
def back_whole_row(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        s = U[i] @ x - U[i, i] * x[i]
        x[i] = (x[i] - s) / U[i, i]
    return x


# Shows on: any float64 y (np.asarray does not copy it, so the caller's y is overwritten).
def back_modifies_y(U, y):
    U = np.asarray(U, dtype=float)
    x = np.asarray(y, dtype=float)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# Shows on: any input: the result is float32 (and less accurate on e.g. hilbert(6)).
def back_float32(U, y):
    U = np.asarray(U, dtype=np.float32)
    x = np.array(y, dtype=np.float32)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# Shows on: integer y, e.g. U = [[2, 1], [0, 4]], y = [4, 7] -> x = [1.125, 1.75], but
# x is an int array so every x_i is truncated (and the dtype is int64).
def back_int_copy(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# Shows on: any U with u_00 != 1 (x_0 is left equal to y_0), e.g. [[2, 1], [0, 4]], y = [4, 8].
def back_skips_row0(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, 0, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# ================================================================ gaussian_elimination(A, b, pivoting)

# Shows on: A = [[1e-20, 1], [1, 1]], b = [1, 2] -> [0, 1] instead of [1, 1]
# (or any zero pivot, e.g. [[0, 1], [1, 0]] -> nan / ZeroDivision).
def ge_no_pivoting(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: a swap needed at a LATER step only: A = [[1, 0, 0], [0, 1e-20, 1], [0, 1, 1]],
# b = [1, 1, 2], x = [1, 1, 1]; column 0 below the diagonal is zero after step 0, so no swap
# is made at step 1 and the 1e-20 pivot gives x = [1, 0, 1].
def ge_pivot_column0(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, 0])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: A = [[0, 1, 0], [0, 0, 1], [1, 0, 0]], b = [1, 2, 3]: the largest entry of ROW 0 is
# in column 1, so rows 0 and 1 are swapped and the pivot is 0 (nan or an error). On random
# or diagonally dominant matrices it usually gives the right x: needs such a special input.
def ge_pivot_from_row(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k, k:])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: a column whose largest |a_ik| is negative: A = [[1e-20, 1], [-1, 1]], b = [1, 0]
# (x = [1, 1]); argmax picks the 1e-20 and gives x = [0, 1].
def ge_signed_max(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(A[k:, k]))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: any system where a swap is needed and b's swapped entries differ:
# A = [[1e-20, 1], [1, 1]], b = [1, 2] -> [-1, 2] instead of [1, 1].
def ge_b_not_swapped(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: any system needing elimination, e.g. [[2, 1], [1, 3]], b = [3, 4] (x = [1, 1]).
def ge_b_not_eliminated(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
    return elimination.back_substitution(A, b)


# Shows on: any system where a swap is needed: `A[k], A[p] = A[p], A[k]` swaps numpy VIEWS,
# so both rows end up equal to row p (singular, nan or garbage). [[1e-20, 1], [1, 1]], [1, 2].
def ge_view_swap(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        if p != k:
            A[k], A[p] = A[p], A[k]
            b[k], b[p] = b[p], b[k]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: any float64 A and b: np.asarray does not copy, so the caller's A and b are
# overwritten by the eliminated U and the updated right-hand side.
def ge_in_place(A, b, pivoting="partial"):
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# Shows on: any input: float16 result (and only ~3 digits right).
def ge_float16(A, b, pivoting="partial"):
    A = np.array(A, dtype=np.float16)
    b = np.array(b, dtype=np.float16)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    x = np.zeros_like(b)
    for i in range(n - 1, -1, -1):
        x[i] = (b[i] - A[i, i + 1:] @ x[i + 1:]) / A[i, i]
    return x


# Shows on: any input: float32 result (rel. error ~1e-7, much worse on hilbert(8)).
def ge_float32(A, b, pivoting="partial"):
    A = np.array(A, dtype=np.float32)
    b = np.array(b, dtype=np.float32)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return np.linalg.solve(np.triu(A), b)


# ================================================================ lu_factor(A) -> (lu, piv)

# Shows on: any A: piv[k] is 1-based (LAPACK/Fortran), e.g. identity(3) gives [1, 2, 3].
def lu_piv_one_based(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p + 1
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# Shows on: any A that needs a swap, e.g. [[1, 2], [3, 4]]: perm [1, 0] vs piv [1, 1].
# (With no swaps at all perm == piv == arange(n): invisible on diagonally dominant A.)
def lu_piv_permutation(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    perm = np.arange(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        lu[[k, p]] = lu[[p, k]]
        perm[[k, p]] = perm[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, perm.astype(np.int32)


# Shows on: any A with n >= 2 and a nonzero below the pivot: the strictly lower part of lu is 0.
def lu_no_multipliers(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        m = lu[k + 1:, k] / lu[k, k]
        lu[k + 1:, k:] -= np.outer(m, lu[k, k:])
    return lu, piv


# Shows on: any A where |a_00| is not the column maximum, e.g. [[1, 2], [3, 4]]
# (on a diagonally dominant A partial pivoting never swaps and this is right).
def lu_no_pivoting(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    for k in range(n):
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, np.arange(n, dtype=np.int32)


# Shows on: any A: returns (L, U, piv), three things, not (lu, piv).
def lu_returns_L_U(A):
    U = np.array(A, dtype=float)
    n = len(U)
    L = np.eye(n)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(U[k:, k])))
        piv[k] = p
        U[[k, p]] = U[[p, k]]
        L[[k, p], :k] = L[[p, k], :k]
        L[k + 1:, k] = U[k + 1:, k] / U[k, k]
        U[k + 1:, k:] -= np.outer(L[k + 1:, k], U[k, k:])
    return L, U, piv


# Shows on: any A: lu = L + U with L's unit diagonal included, so diag(lu) = diag(U) + 1.
def lu_unit_diagonal_added(A):
    U = np.array(A, dtype=float)
    n = len(U)
    L = np.eye(n)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(U[k:, k])))
        piv[k] = p
        U[[k, p]] = U[[p, k]]
        L[[k, p], :k] = L[[p, k], :k]
        L[k + 1:, k] = U[k + 1:, k] / U[k, k]
        U[k + 1:, k:] -= np.outer(L[k + 1:, k], U[k, k:])
    return L + U, piv


# Shows on: any A with a nonzero below a pivot that is not 1: the raw a_ik is stored in L
# instead of l_ik = a_ik / a_kk (the update itself is right, so U is right).
def lu_multiplier_not_divided(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        m = lu[k + 1:, k] / lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(m, lu[k, k + 1:])
    return lu, piv


# Shows on: any A: piv is a float array (np.zeros default), not integers.
def lu_piv_float(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# Shows on: any A: lu is float32.
def lu_float32(A):
    lu = np.array(A, dtype=np.float32)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# Shows on: any float64 A: np.asarray does not copy, the caller's A is overwritten by lu.
def lu_in_place(A):
    lu = np.asarray(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# ================================================================ gauss_seidel_sweep(A, b, x)

def _gs_rows(A):
    """A student's helper: (cols, vals) of each row, dense or CSR."""
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(A.shape[0]):
            s = slice(A.indptr[i], A.indptr[i + 1])
            yield A.indices[s], A.data[s]
    else:
        A = np.asarray(A, dtype=float)
        for row in A:
            yield np.arange(len(row)), row


# Shows on: any A with a nonzero strictly below the diagonal, e.g. poisson_1d(4), b = ones,
# x = zeros: every x_i is computed from the OLD x (a Jacobi sweep).
def gs_sweep_jacobi(A, b, x):
    x_old = np.array(x, dtype=float)
    x_new = x_old.copy()
    for i, (cols, vals) in enumerate(_gs_rows(A)):
        d = vals[cols == i].sum()
        x_new[i] = (b[i] - vals @ x_old[cols] + d * x_old[i]) / d
    return x_new


# Shows on: a nonzero x, e.g. [[4, 1], [1, 3]], b = [1, 2], x = [1, 1]. With x = zeros the
# extra a_ii x_i is 0 (x_i is still the old value when row i is done): invisible there.
def gs_sweep_keeps_diagonal(A, b, x):
    x = np.array(x, dtype=float)
    for i, (cols, vals) in enumerate(_gs_rows(A)):
        d = vals[cols == i].sum()
        x[i] = (b[i] - vals @ x[cols]) / d
    return x


# Shows on: any A that is not diagonal, e.g. poisson_1d(4), b = ones, x = zeros.
def gs_sweep_reverse(A, b, x):
    x = np.array(x, dtype=float)
    rows = list(_gs_rows(A))
    for i in reversed(range(len(rows))):
        cols, vals = rows[i]
        d = vals[cols == i].sum()
        x[i] = (b[i] - vals @ x[cols] + d * x[i]) / d
    return x


# Shows on: any float64 x: np.asarray does not copy, so the caller's x is overwritten.
def gs_sweep_in_place(A, b, x):
    x = np.asarray(x, dtype=float)
    for i, (cols, vals) in enumerate(_gs_rows(A)):
        d = vals[cols == i].sum()
        x[i] = (b[i] - vals @ x[cols] + d * x[i]) / d
    return x


# Shows on: CSR A whose rows do not start with the diagonal entry, e.g. poisson_1d(4) (row 1
# stores a_10 = -1 first); dense A and diagonal-first CSR (e.g. upper-triangular) are right.
def gs_sweep_csr_first_is_diag(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[0]  # diagonal is stored first in the row
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# Shows on: CSR A only (dense is right): the row slice stops one entry early
# (indptr[i + 1] - 1), dropping each row's last stored entry. poisson_1d(4), b = ones, x = 0.
def gs_sweep_csr_off_by_one(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1] - 1]
            vals = A.data[A.indptr[i]:A.indptr[i + 1] - 1]
            diag = A[i, i]
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# Shows on: any input: float32 result.
def gs_sweep_float32(A, b, x):
    x = np.array(x, dtype=np.float32)
    for i, (cols, vals) in enumerate(_gs_rows(A)):
        d = vals[cols == i].sum()
        x[i] = (b[i] - vals @ x[cols] + d * x[i]) / d
    return x


# Shows on: an integer x, e.g. x = np.zeros(4, dtype=int): the new values are truncated
# to integers (and the result's dtype is int64). With float x it is right.
def gs_sweep_int_copy(A, b, x):
    x = np.array(x)
    for i, (cols, vals) in enumerate(_gs_rows(A)):
        d = vals[cols == i].sum()
        x[i] = (b[i] - vals @ x[cols] + d * x[i]) / d
    return x


# ================================================================ gauss_seidel(A, b, x0=None, *, ...)
# Contract (notebook 09, exercise 9.2): residual tested BEFORE each sweep; info = 0 as soon as
# ||b - A x|| <= max(rtol ||b||, atol); callback(x) after each sweep; maxiter defaults to 5000;
# info = maxiter when maxiter sweeps were not enough, also when the iteration blows up.

def _sweep(A, b, x):
    """The student's own sweep from exercise 9.1 (no input checks: inf and nan go through)."""
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            d = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x[cols] + d * x[i]) / d
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# Shows on: any system needing at least one sweep and a callback: it is never called.
def gs_no_callback(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                return x, 0
            x = _sweep(A, b, x)
        converged = np.linalg.norm(b - A @ x) <= tol
    return x, 0 if converged else maxiter


# Shows on: any system needing a sweep: callback receives the residual b - A x, not x.
def gs_callback_residual(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            r = b - A @ x
            if np.linalg.norm(r) <= tol:
                return x, 0
            x = _sweep(A, b, x)
            if callback is not None:
                callback(b - A @ x)
        converged = np.linalg.norm(b - A @ x) <= tol
    return x, 0 if converged else maxiter


# Shows on: any system needing 2 or more sweeps: callback is called once, at the end.
def gs_callback_once(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    info = maxiter
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                info = 0
                break
            x = _sweep(A, b, x)
        else:
            if np.linalg.norm(b - A @ x) <= tol:
                info = 0
    if callback is not None:
        callback(x)
    return x, info


# Shows on: a system whose sweeps are small but whose residual is not: a large diagonal,
# e.g. A = 1e6 * (poisson_1d(20) + 2 I), b = A @ ones: the step is ~1e-6 of the residual,
# so it stops after a few sweeps with info = 0 and ||b - A x|| >> rtol ||b||.
def gs_stops_on_step(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            x_new = _sweep(A, b, x)
            step = np.linalg.norm(x_new - x)
            x = x_new
            if callback is not None:
                callback(x)
            if step <= tol:
                return x, 0
    return x, maxiter


# Shows on: a system that does not converge within maxiter, e.g. the divergent
# systems.jacobi_not_gauss_seidel() (rho = 2), b = ones, or poisson_1d(30) with maxiter=10:
# info is 0 although ||b - A x|| > tol.
def gs_info_zero_always(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                break
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
    return x, 0


# Shows on: a system that blows up to inf/nan within maxiter: jacobi_not_gauss_seidel(),
# b = ones, default maxiter (2^k overflows after ~1000 sweeps): `norm > tol` is False for nan,
# the while loop ends early and info = 0 is returned with x full of nan. Fine on maxiter
# exhaustion without overflow (poisson_1d(30), maxiter=10 gives info = 10 as it should).
def gs_nan_counts_as_converged(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    if maxiter is None:
        maxiter = 5000
    tol = max(rtol * np.linalg.norm(b), atol)
    k = 0
    with np.errstate(all="ignore"):
        while np.linalg.norm(b - A @ x) > tol and k < maxiter:
            x = _sweep(A, b, x)
            k += 1
            if callback is not None:
                callback(x)
    info = 0 if k < maxiter else maxiter
    if k == maxiter and np.linalg.norm(b - A @ x) <= tol:
        info = 0
    return x, info


# Shows on: any system that converges: info = maxiter (5000 by default) instead of 0.
def gs_info_maxiter_always(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                break
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
    return x, maxiter


# Shows on: any system that converges after >= 1 sweep: info = number of sweeps done
# (scipy-style iteration count) instead of 0.
def gs_info_iterations(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                return x, k
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
    return x, maxiter


# Shows on: atol > rtol ||b||, e.g. poisson_1d(10), b = ones, rtol=1e-12, atol=1e-2:
# the reference stops after a handful of sweeps, this one goes on to 1e-12.
def gs_ignores_atol(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = rtol * np.linalg.norm(b)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                return x, 0
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
        converged = np.linalg.norm(b - A @ x) <= tol
    return x, 0 if converged else maxiter


# Shows on: a nonzero x0, best x0 = the exact solution: the reference returns x0 with no
# sweep and no callback; this one starts from zeros and sweeps (also wrong with maxiter=0).
def gs_ignores_x0(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b))
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                return x, 0
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
        converged = np.linalg.norm(b - A @ x) <= tol
    return x, 0 if converged else maxiter


# Shows on: a system needing more than 100 sweeps with maxiter left at its default, e.g.
# poisson_1d(30), b = ones (1783 sweeps): info = 100 where the reference converges (info 0).
def gs_default_maxiter_100(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = maxiter or 100
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - A @ x) <= tol:
                return x, 0
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
        converged = np.linalg.norm(b - A @ x) <= tol
    return x, 0 if converged else maxiter


# Shows on: an x0 that already satisfies the test (x0 = exact solution, or b = 0): the
# residual is tested only AFTER a sweep, so one sweep and one callback are done where the
# reference does none. On ordinary inputs the results agree.
def gs_tests_after_sweep(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = 5000 if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(max(maxiter, 1)):
            x = _sweep(A, b, x)
            if callback is not None:
                callback(x)
            if np.linalg.norm(b - A @ x) <= tol:
                return x, 0
    return x, maxiter


# ================================================================ sor_sweep(A, b, x, omega)

def _dense(A):
    return A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)


# Shows on: any omega != 1, e.g. poisson_1d(4), b = ones, x = ones, omega = 1.5 (omega = 1 hides it).
def sor_ignores_omega(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = _dense(A)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# Shows on: omega != 0.5 (omega = 0.5 gives the same numbers!), e.g. poisson_1d(4), b = ones,
# x = ones, omega = 1.5; with omega = 1 it returns x unchanged.
def sor_weights_swapped(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = _dense(A)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = omega * x[i] + (1 - omega) * gs
    return x


# Shows on: A with a nonzero below the diagonal and any omega (also omega = 1):
# the relaxation is applied to a Jacobi step from the old x. poisson_1d(4), omega = 1.2.
def sor_jacobi_relaxed(A, b, x, omega):
    x_old = np.array(x, dtype=float)
    A = _dense(A)
    d = np.diag(A)
    jac = (b - A @ x_old + d * x_old) / d
    return (1 - omega) * x_old + omega * jac


# Shows on: omega != 1 and A with a nonzero below the diagonal: a full Gauss-Seidel sweep
# first, relaxed afterwards, so rows below use the unrelaxed values. poisson_1d(4), 1.5.
def sor_relax_after_gs_sweep(A, b, x, omega):
    x_old = np.array(x, dtype=float)
    A = _dense(A)
    x_gs = x_old.copy()
    for i in range(len(b)):
        x_gs[i] = (b[i] - A[i] @ x_gs + A[i, i] * x_gs[i]) / A[i, i]
    return (1 - omega) * x_old + omega * x_gs


# Shows on: a nonzero x, e.g. [[4, 1], [1, 3]], b = [1, 2], x = [1, 1] (x = zeros hides it).
def sor_keeps_diagonal(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = _dense(A)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


# Shows on: any float64 x: the caller's x is overwritten.
def sor_in_place(A, b, x, omega):
    x = np.asarray(x, dtype=float)
    A = _dense(A)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


# Shows on: A that is not diagonal: rows in reverse order. poisson_1d(4), omega = 1.2.
def sor_reverse(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = _dense(A)
    for i in reversed(range(len(b))):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


WRONG: list[WrongAnswer] = [
    # ---- back_substitution
    WrongAnswer("back_substitution", "goes top-down (row 0 first) instead of from the last row",
                (r"bottom|last row|top|order|revers|backward|first row",), back_top_down),
    WrongAnswer("back_substitution", "forgets to divide by the diagonal entry u_ii",
                (r"divid|diagonal|u_?\{?ii|pivot",), back_no_divide),
    WrongAnswer("back_substitution", "np.linalg.solve on the whole U: reads the lower triangle",
                (r"lower|triangle|below",), back_linalg_solve),
    WrongAnswer("back_substitution", "dots the whole row with x, so entries below the diagonal are used",
                (r"lower|triangle|below",), back_whole_row),
    WrongAnswer("back_substitution", "overwrites the caller's y (np.asarray does not copy)",
                (INPLACE,), back_modifies_y),
    WrongAnswer("back_substitution", "computes and returns float32",
                (DTYPE,), back_float32),
    WrongAnswer("back_substitution", "np.array(y) keeps an integer y's dtype, so x is truncated",
                (DTYPE + r"|int",), back_int_copy),
    WrongAnswer("back_substitution", "loop range(n-1, 0, -1) never solves row 0",
                (r"row 0|first (row|entry|component|unknown)|x_?\[?0|x_0|range|every row|all rows",),
                back_skips_row0),
    # ---- gaussian_elimination
    WrongAnswer("gaussian_elimination", "no pivoting at all", (PIVOT,), ge_no_pivoting),
    WrongAnswer("gaussian_elimination", "pivot searched in column 0 at every step, not column k",
                (r"column|pivot",), ge_pivot_column0),
    WrongAnswer("gaussian_elimination", "pivot chosen as the largest entry of the pivot ROW",
                (r"column|pivot",), ge_pivot_from_row),
    WrongAnswer("gaussian_elimination", "largest signed value instead of largest |a_ik|",
                (r"abs|magnitude|\|a|sign|negative",), ge_signed_max),
    WrongAnswer("gaussian_elimination", "swaps the rows of A but not of b",
                (r"\bb\b|right[- ]hand|rhs",), ge_b_not_swapped),
    WrongAnswer("gaussian_elimination", "never subtracts the multiples from b",
                (r"\bb\b|right[- ]hand|rhs",), ge_b_not_eliminated),
    WrongAnswer("gaussian_elimination", "swaps rows with A[k], A[p] = A[p], A[k] (numpy views)",
                (r"swap|view|copy",), ge_view_swap),
    WrongAnswer("gaussian_elimination", "modifies the caller's A and b in place",
                (INPLACE,), ge_in_place),
    WrongAnswer("gaussian_elimination", "works and returns in float16", (DTYPE,), ge_float16),
    WrongAnswer("gaussian_elimination", "works and returns in float32", (DTYPE,), ge_float32),
    # ---- lu_factor
    WrongAnswer("lu_factor", "piv is 1-based (LAPACK style) instead of 0-based",
                (r"0-based|1-based|zero-based|one-based|off by one|index",), lu_piv_one_based),
    WrongAnswer("lu_factor", "piv is the final row permutation, not the swap at each step",
                (r"permutation|swap|piv",), lu_piv_permutation),
    WrongAnswer("lu_factor", "multipliers not stored below the diagonal (lower part left 0)",
                (r"multiplier|\bL\b|lower|below",), lu_no_multipliers),
    WrongAnswer("lu_factor", "no pivoting: piv = arange(n)", (PIVOT,), lu_no_pivoting),
    WrongAnswer("lu_factor", "returns L, U and piv separately instead of (lu, piv)",
                (r"\(lu, ?piv\)|one array|single array|combined|tuple|separate|three|3 (items|values|things)",),
                lu_returns_L_U),
    WrongAnswer("lu_factor", "lu = L + U with L's unit diagonal added onto U's diagonal",
                (r"diagonal|unit",), lu_unit_diagonal_added),
    WrongAnswer("lu_factor", "stores a_ik instead of the multiplier a_ik / a_kk",
                (r"multiplier|divid|\bL\b|lower|below",), lu_multiplier_not_divided),
    WrongAnswer("lu_factor", "piv is a float array (np.zeros default), not integers",
                (r"integer|\bint|dtype",), lu_piv_float),
    WrongAnswer("lu_factor", "lu in float32", (DTYPE,), lu_float32),
    WrongAnswer("lu_factor", "factors the caller's A in place", (INPLACE,), lu_in_place),
    # ---- gauss_seidel_sweep
    WrongAnswer("gauss_seidel_sweep", "really a Jacobi sweep: every row uses the old x",
                (r"jacobi|new(ly)? (computed )?values?|updated|\bold\b|already|same sweep",), gs_sweep_jacobi),
    WrongAnswer("gauss_seidel_sweep", "the sum includes the diagonal term a_ii x_i",
                (r"diagonal|j ?(!=|≠|\\ne) ?i|a_?\{?ii",), gs_sweep_keeps_diagonal),
    WrongAnswer("gauss_seidel_sweep", "goes over the rows in reverse order",
                (r"order|revers|backward|last row|first row",), gs_sweep_reverse),
    WrongAnswer("gauss_seidel_sweep", "overwrites the caller's x", (INPLACE,), gs_sweep_in_place),
    WrongAnswer("gauss_seidel_sweep", "CSR: takes each row's first stored value as the diagonal",
                (r"csr|sparse|diagonal",), gs_sweep_csr_first_is_diag),
    WrongAnswer("gauss_seidel_sweep", "CSR: row slice ends at indptr[i+1]-1, dropping an entry",
                (r"csr|sparse|indptr",), gs_sweep_csr_off_by_one),
    WrongAnswer("gauss_seidel_sweep", "works and returns in float32", (DTYPE,), gs_sweep_float32),
    WrongAnswer("gauss_seidel_sweep", "np.array(x) keeps an integer x's dtype: values truncated",
                (DTYPE + r"|int",), gs_sweep_int_copy),
    # ---- gauss_seidel
    WrongAnswer("gauss_seidel", "never calls callback", (CALLBACK,), gs_no_callback),
    WrongAnswer("gauss_seidel", "calls callback with the residual instead of x",
                (CALLBACK,), gs_callback_residual),
    WrongAnswer("gauss_seidel", "calls callback once, at the end", (CALLBACK,), gs_callback_once),
    WrongAnswer("gauss_seidel", "stops when the step ||x_new - x|| is small, not the residual",
                (r"residual|step|b ?- ?A ?x",), gs_stops_on_step),
    WrongAnswer("gauss_seidel", "returns info = 0 even when it did not converge",
                (r"info|diverg|converge|maxiter",), gs_info_zero_always),
    WrongAnswer("gauss_seidel", "a nan residual ends the loop and counts as converged (info 0)",
                (r"info|diverg|nan|blow|overflow|inf",), gs_nan_counts_as_converged),
    WrongAnswer("gauss_seidel", "returns info = maxiter even when converged",
                (r"info",), gs_info_maxiter_always),
    WrongAnswer("gauss_seidel", "returns the iteration count as info when converged",
                (r"info",), gs_info_iterations),
    WrongAnswer("gauss_seidel", "ignores atol (tolerance is rtol*||b|| only)",
                (r"atol",), gs_ignores_atol),
    WrongAnswer("gauss_seidel", "ignores x0, always starts from zeros",
                (r"x0|start|initial",), gs_ignores_x0),
    WrongAnswer("gauss_seidel", "maxiter defaults to 100 instead of 5000",
                (r"maxiter|5000|default",), gs_default_maxiter_100),
    WrongAnswer("gauss_seidel", "tests the residual after each sweep, not before (always sweeps once)",
                (r"before|already|x0|first sweep|no sweep|zero sweeps",), gs_tests_after_sweep),
    # ---- sor_sweep
    WrongAnswer("sor_sweep", "omega ignored: a plain Gauss-Seidel sweep",
                (r"omega|ω|relax",), sor_ignores_omega),
    WrongAnswer("sor_sweep", "omega and 1 - omega swapped",
                (r"omega|ω|swap",), sor_weights_swapped),
    WrongAnswer("sor_sweep", "relaxation applied to a whole Jacobi step from the old x",
                (r"jacobi|new(ly)? (computed )?values?|updated|\bold\b|already",), sor_jacobi_relaxed),
    WrongAnswer("sor_sweep", "full Gauss-Seidel sweep first, relaxed afterwards",
                (r"relax|each row|per row|partly new|new value|after the sweep|whole sweep|gauss-seidel value",),
                sor_relax_after_gs_sweep),
    WrongAnswer("sor_sweep", "the sum includes the diagonal term a_ii x_i",
                (r"diagonal|j ?(!=|≠|\\ne) ?i|a_?\{?ii",), sor_keeps_diagonal),
    WrongAnswer("sor_sweep", "overwrites the caller's x", (INPLACE,), sor_in_place),
    WrongAnswer("sor_sweep", "goes over the rows in reverse order",
                (r"order|revers|backward|last row|first row",), sor_reverse),
]
