"""Checkers for the exercises on the structure that makes solvers fast: blocked LU (08) and red-black order (09).

``check.blocked_lu(fn)`` judges ``fn(A, block) -> (lu, piv)`` against ``elimination.lu_factor(A,
block)``; probes name the step of a panel that went wrong (swaps not applied left or right of the
panel, U_12 not solved for, the trailing update missing, added, done twice or before U_12, a panel
factored without pivoting or searching only its own rows, piv holding offsets).
``check.red_black_sweep(fn)`` judges ``fn(u, f, omega) -> new padded grid`` against
``poisson.red_black_sweep`` on a copy; probes name the ordering mistakes (black first, both colours
from old values, the natural order, stripes), the stencil (a one-hot u shows which neighbours a
point reads), the sign of f and the relaxation weights. Introduced in notebooks 08, 09.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from labkit import elimination, poisson
from labkit.check.evidence import reads
from labkit.check.core import NUMPY_DTYPE_HINT, Case, Checker, Probe, checker, compare_outputs
from labkit.check.linsys import quiet, seeded
from labkit.check.lu import compare_lu, in_pivot_order, lu_pair


# ---------------------------------------------------------------- blocked LU (notebook 08)
def _late_pivots(n: int, seed: int) -> np.ndarray:
    """A random matrix whose largest entries in the later columns sit in early rows.

    Rows swapped in a later panel then hold multipliers of the earlier panels: those must move too.
    """
    r = seeded(seed)
    A = r.uniform(-1, 1, (n, n))
    A[:, n // 2:] *= np.linspace(10.0, 1.0, n)[:, None]  # big entries at the top of the right half
    return A


def _blocked_variant(A, block, *, swap_left=True, swap_right=True, solve_u12=True, update=True,
                     pivot=True, unit=True):
    """Blocked LU with one step of the panel algorithm switched off (the mistake a probe looks for)."""
    lu = np.array(A, dtype=np.float64)
    n = len(lu)
    piv = np.arange(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):  # the tall panel lu[k:, k:e], rank-1 steps
            p = j + int(np.argmax(np.abs(lu[j:, j]))) if pivot else j
            piv[j] = p
            lu[[j, p], k:e] = lu[[p, j], k:e]
            if swap_left:
                lu[[j, p], :k] = lu[[p, j], :k]
            if swap_right:
                lu[[j, p], e:] = lu[[p, j], e:]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        if solve_u12:
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                        unit_diagonal=unit)
        if update:
            lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


def _blocked_probe(**switched_off):
    """violated(): the student's (lu, piv) equals the blocked LU with these steps switched off."""
    def violated(outcome, probe):
        lu, piv = lu_pair(outcome.value)
        bad_lu, bad_piv = _blocked_variant(*probe.args, **switched_off)
        ref_lu, _ = elimination.lu_factor(*probe.args)
        lu = np.asarray(lu, dtype=np.float64)
        same = lu.shape == bad_lu.shape and np.allclose(lu, bad_lu, rtol=1e-9, atol=1e-12)
        return same and not np.allclose(lu, ref_lu, rtol=1e-9, atol=1e-12) and \
            f"lu matches a blocked LU without that step (worst difference from the right lu " \
            f"{np.abs(lu - ref_lu).max():.2g})"
    return violated


# Small matrices that need no row swap (the largest |a_ij| of each column is on the diagonal), so
# each probe below looks at one number of the factor: piv, or one entry of the trailing block.
_NO_SWAP_2 = np.array([[4.0, 1.0], [2.0, 3.0]])  # block 1: lu[1, 1] = a_11 - l_10 u_01
_NO_SWAP_3 = np.array([[4.0, 1.0, 2.0], [1.0, 5.0, 1.0], [2.0, 1.0, 6.0]])  # block 2: U_12 != A_12
# Column 0's largest |a_i0| (9) is below the first panel (rows 0..1); within the panel it is row 1.
_PIVOT_BELOW = np.array([[1.0, 0.2, 0.1, 0.3], [3.0, 5.0, 0.2, 0.1], [0.5, 0.3, 6.0, 0.2],
                         [9.0, 0.1, 0.4, 7.0]])


def _piv_relative(outcome, probe):
    """piv[j] < j: an offset within column j, not the row swapped with row j."""
    piv = np.asarray(lu_pair(outcome.value)[1])
    low = [j for j in range(len(piv)) if piv[j] < j]
    return bool(low) and f"on a matrix needing no swap piv = {piv.tolist()}: piv[{low[0]}] = " \
        f"{int(piv[low[0]])} < {low[0]}"


def _schur_entry(times: float):
    """violated(): on _NO_SWAP_2, block 1, lu[1, 1] = a_11 - times * l_10 u_01 (times != 1)."""
    def violated(outcome, probe):
        (A, _), lu = probe.args, np.asarray(lu_pair(outcome.value)[0], dtype=np.float64)
        product = A[1, 0] * A[0, 1] / A[0, 0]
        term = ("+ " if times < 0 else "- ") + ("" if abs(times) == 1 else f"{abs(times):g} ") + "l_10 u_01"
        return np.isclose(lu[1, 1], A[1, 1] - times * product, rtol=1e-12) and \
            f"lu[1, 1] = {lu[1, 1]:g} = a_11 {term}, expected a_11 - l_10 u_01 = {A[1, 1] - product:g}"
    return violated


def _schur_with_a12(outcome, probe):
    """On _NO_SWAP_3, block 2: lu[2, 2] = a_22 - L_21 A_12 (A_12 before the solve) instead of L_21 U_12."""
    A = probe.args[0]
    lu = np.asarray(lu_pair(outcome.value)[0], dtype=np.float64)
    ref = elimination.lu_factor(*probe.args)[0]
    bad = A[2, 2] - lu[2, :2] @ A[:2, 2]
    return np.isclose(lu[2, 2], bad, rtol=1e-12) and not np.isclose(lu[2, 2], ref[2, 2], rtol=1e-12) and \
        f"lu[2, 2] = {lu[2, 2]:.6g} = a_22 - L_21 A_12, expected a_22 - L_21 U_12 = {ref[2, 2]:.6g}"


def _pivot_in_panel(outcome, probe):
    """piv[0] is the largest |a_i0| among the panel's rows, while the column's largest lies below them."""
    (A, block), piv = probe.args, np.asarray(lu_pair(outcome.value)[1])
    in_panel, whole = int(np.argmax(np.abs(A[:block, 0]))), int(np.argmax(np.abs(A[:, 0])))
    return int(piv[0]) == in_panel != whole and \
        f"piv[0] = {in_panel}, the largest |a_i0| among rows 0..{block - 1}; the column's largest is row {whole}"


@checker
def blocked_lu() -> Checker:
    """``fn(A, block) -> (lu, piv)``: LU with partial pivoting panel by panel (notebook 08, exercise 8.5).

    the same (lu, piv) as lu_factor, in scipy's convention (0-based piv: the row swapped with row k)
    for every block: 1 (plain rank-1 steps), a divisor of n, not a divisor of n (a ragged last
    panel), block >= n (one panel)
    swaps found in a panel are applied to the whole rows: the earlier panels' multipliers (left) and
    the columns not factored yet (right)
    U_12 = L_11^{-1} A_12 and A_22 -= L_21 U_12 after each panel
    the pivot of column j is the largest |a_ij| over all rows i >= j, down to the bottom (not the panel's rows)
    lu is float64, also for an integer A; A is not modified
    """
    panel = ("factor each panel of `block` columns with partial pivoting, apply its row swaps to the whole "
             "rows, then U_12 = L_11^{-1} A_12 and A_22 -= L_21 U_12")
    r = seeded(20)
    cases = [
        Case("1 x 1, block 1", (np.array([[5.0]]), 1), hint=panel),
        Case("6 x 6, block 1 (rank-1 steps)", (r.uniform(-1, 1, (6, 6)), 1), hint=panel),
        Case("8 x 8, block 4", (r.uniform(-1, 1, (8, 8)), 4), hint=panel),
        Case("10 x 10, block 4: ragged last panel", (r.uniform(-1, 1, (10, 10)), 4),
             hint="the last panel has n % block columns: use e = min(k + block, n)"),
        Case("5 x 5, block 8 >= n: one panel", (r.uniform(-1, 1, (5, 5)), 8),
             hint="with block >= n the whole matrix is one panel"),
        Case("12 x 12, block 3, swaps in later panels", (_late_pivots(12, 21), 3), hint=panel),
        Case("integer A, block 2", (np.array([[1, 2, 0], [3, 4, 1], [0, 1, 5]]), 2),
             hint="lu must be float64, whatever A's dtype"),
    ]
    late = (_late_pivots(9, 22), 3)
    probes = [
        Probe("returned pair", late, {}, "return the pair (lu, piv), as lu_factor does",
              reads("shape")(lambda o, p: "" if isinstance(o.value, (tuple, list)) and len(o.value) == 2
                             else f"returned {type(o.value).__name__}")),
        Probe("piv holds row indices", (_NO_SWAP_3, 1), {},
              "piv[j] < j on a matrix that needs no swap, so piv[j] is not the row swapped with row j; either "
              "piv holds the argmax offset within the column (piv[j] must be the absolute row, j + offset, as "
              "lu_factor returns it), or piv[j] was never set (a column or panel the loop skips: the panels "
              "end at min(k + block, n) and run up to n)", _piv_relative),
        Probe("swaps at later panels", late, {},
              "a row swap found in a later panel must also move the multipliers already stored left "
              "of the panel (columns 0..k-1), or L no longer matches P A = L U",
              _blocked_probe(swap_left=False)),
        Probe("swaps at later panels", late, {},
              "a row swap found in a panel must also be applied to the columns right of the panel "
              "(not factored yet), before U_12 is computed",
              _blocked_probe(swap_right=False)),
        Probe("U_12", late, {},
              "after factoring a panel, the block right of it becomes U_12 = L_11^{-1} A_12 (a unit lower "
              "triangular solve); it was left as A_12",
              _blocked_probe(solve_u12=False)),
        Probe("U_12 with L's unit diagonal", late, {},
              "L_11 has a unit diagonal that is not stored: lu's diagonal is U's, so solve with "
              "unit_diagonal=True (scipy.linalg.solve_triangular)",
              _blocked_probe(unit=False)),
        Probe("trailing update", late, {},
              "after each panel, update the trailing block: A_22 -= L_21 @ U_12 (one matrix product)",
              _blocked_probe(update=False)),
        Probe("pivoting", late, {},
              "no pivoting inside the panel: at column j swap in the row (j or below, whole panel height) "
              "with the largest |a_ij|",
              _blocked_probe(pivot=False)),
        Probe("sign of the trailing update", (_NO_SWAP_2, 1), {},
              "sign of the trailing update: subtract, A_22 -= L_21 @ U_12 (it was added)", _schur_entry(-1.0)),
        Probe("trailing update once", (_NO_SWAP_2, 1), {},
              "L_21 U_12 was subtracted twice: the rank-1 steps inside the panel update only the panel's "
              "columns (lu[j+1:, j+1:e]); the trailing update A_22 -= L_21 @ U_12 does the rest, once",
              _schur_entry(2.0)),
        Probe("trailing update after U_12", (_NO_SWAP_3, 2), {},
              "order: the trailing update comes after the solve, A_22 -= L_21 @ U_12 with the solved U_12, "
              "not L_21 A_12 (the block before the solve)", _schur_with_a12),
        Probe("pivot search down to the bottom", (_PIVOT_BELOW, 2), {},
              "the pivot at column j is the largest |a_ij| over all rows i >= j down to the bottom of the "
              "matrix (the whole column below the diagonal), not only among the panel's `block` rows",
              _pivot_in_panel, control=(*in_pivot_order(_PIVOT_BELOW), 2)),
    ]
    return Checker("blocked_lu", cases, elimination.lu_factor, probes, compare=compare_lu,
                   prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)


# ---------------------------------------------------------------- red-black sweep (notebook 09)
def _grid(m: int, seed: int, boundary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A padded (m+2, m+2) grid u (zero boundary unless ``boundary``) and f (m, m), both random."""
    r = seeded(seed)
    u = np.zeros((m + 2, m + 2))
    u[1:-1, 1:-1] = r.uniform(-1, 1, (m, m))
    if boundary:
        u[0, :], u[-1, :], u[:, 0], u[:, -1] = r.uniform(1, 2, (4, m + 2))
    return u, r.uniform(-1, 1, (m, m))


def red_black_reference(u, f, omega=1.0) -> np.ndarray:
    """poisson.red_black_sweep on a copy of u (the exercise returns a new grid)."""
    return poisson.red_black_sweep(np.array(u, dtype=np.float64), f, omega)


def _neighbours(u):
    return u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]


def _sweep_by_masks(u, f, omega, masks, from_old=False):
    u = np.array(u, dtype=np.float64)
    old = u.copy()
    inner = u[1:-1, 1:-1]
    for mask in masks:
        gs = (f + _neighbours(old if from_old else u)) / 4.0
        inner[mask] = (1.0 - omega) * inner[mask] + omega * gs[mask]
    return u


def _scaled_gs(u, f, w):
    """u_ij <- omega * (Gauss-Seidel value) in red-black order, the (1 - omega) u_ij term dropped."""
    u = np.array(u, dtype=np.float64)
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(len(f)):
        gs = (f + _neighbours(u)) / 4.0
        inner[mask] = w * gs[mask]
    return u


def _natural_order(u, f, omega):
    u = np.array(u, dtype=np.float64)
    m = len(f)
    for i in range(1, m + 1):
        for j in range(1, m + 1):
            gs = (f[i - 1, j - 1] + u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) / 4.0
            u[i, j] = (1.0 - omega) * u[i, j] + omega * gs
    return u


_MISTAKES = {
    "black_first": lambda u, f, w: _sweep_by_masks(u, f, w, poisson.red_black_masks(len(f))[::-1]),
    "from_old": lambda u, f, w: _sweep_by_masks(u, f, w, poisson.red_black_masks(len(f)), from_old=True),
    "natural": _natural_order,
    "stripes": lambda u, f, w: _sweep_by_masks(
        u, f, w, [np.indices(f.shape)[0] % 2 == 0, np.indices(f.shape)[0] % 2 == 1]),
    "omega_ignored": lambda u, f, w: red_black_reference(u, f, 1.0),
    "no_one_minus_omega": lambda u, f, w: _scaled_gs(u, f, w),
    "f_negated": lambda u, f, w: red_black_reference(u, -np.asarray(f, dtype=np.float64), w),
    "weights_swapped": lambda u, f, w: _sweep_by_masks(u, f, 1.0 - w, poisson.red_black_masks(len(f))),
}


def _grid_probe(mistake: str):
    def violated(outcome, probe):
        got = np.asarray(outcome.value, dtype=np.float64)
        u, f = probe.args[:2]
        w = probe.args[2] if len(probe.args) > 2 else 1.0
        bad, right = _MISTAKES[mistake](u, f, w), red_black_reference(u, f, w)
        return got.shape == bad.shape and np.allclose(got, bad, rtol=1e-9, atol=1e-12) and \
            not np.allclose(got, right, rtol=1e-9, atol=1e-12) and "the grid matches that mistake"
    return violated


@reads("shape")
def _interior_only(outcome, probe):
    got, u = np.asarray(outcome.value), probe.args[0]
    return got.shape == (u.shape[0] - 2,) * 2 and f"returned shape {got.shape}, the interior only"


def _boundary_changed(outcome, probe):
    got, u = np.asarray(outcome.value, dtype=np.float64), probe.args[0]
    if got.shape != u.shape:
        return False
    edge = np.ones(u.shape, bool)
    edge[1:-1, 1:-1] = False
    return not np.array_equal(got[edge], u[edge]) and "the boundary values changed"


# u = 1 at one black point only (interior (1, 2)), f = 0: after the sweep its four red neighbours hold
# omega / 4 (each read it once), every other red point 0 (the black half-sweep writes black points only).
_ONE_HOT = np.zeros((6, 6))
_ONE_HOT[2, 3] = 1.0
_READERS = {(-1, 0): "the point north of it did not read its south neighbour u[i+1, j]",
            (1, 0): "the point south of it did not read its north neighbour u[i-1, j]",
            (0, -1): "the point west of it did not read its east neighbour u[i, j+1]",
            (0, 1): "the point east of it did not read its west neighbour u[i, j-1]"}


def _stencil(outcome, probe):
    """Which neighbours read the one black point: evidence only when the blend itself is right where a neighbour
    did read it (it holds omega / 4), so that the pattern of zeros is the stencil's."""
    got, u, w = np.asarray(outcome.value, dtype=np.float64), probe.args[0], probe.args[2]
    (b,) = np.argwhere(u == 1.0)
    if not any(np.isclose(got[b[0] + di, b[1] + dj], w / 4, rtol=1e-12) for di, dj in _READERS):
        return False
    missing = [text for (di, dj), text in _READERS.items() if got[b[0] + di, b[1] + dj] == 0.0]
    red = np.zeros(u.shape, bool)
    red[1:-1, 1:-1] = poisson.red_black_masks(len(u) - 2)[0]
    for d in _READERS:
        red[b[0] + d[0], b[1] + d[1]] = False
    extra = np.argwhere(red & (got != 0.0))
    seen = missing + [f"red point u[{i}, {j}], not next to it, read it" for i, j in extra[:2]]
    return bool(seen) and f"with u = 1 at u[{b[0]}, {b[1]}] only: " + "; ".join(seen)


@checker
def red_black_sweep() -> Checker:
    """``fn(u, f, omega) -> new u``: one red-black SOR sweep on the padded grid (notebook 09, exercise 9.4).

    u is (m+2, m+2) with its boundary, f is (m, m) already times h^2; the result is a new (m+2, m+2)
    array and u is not modified
    all red points ((i + j) even, interior indices from 0) are updated first, from the current values,
    then all black points, from the new red values
    point value: (1 - omega) u_ij + omega (f_ij + sum of the 4 neighbours) / 4; the boundary is read,
    never written
    m = 1 (a single red point), even and odd m, omega = 1 and omega != 1, a nonzero boundary
    """
    rule = ("red points ((i + j) even) first, all at once from the current values, then black points "
            "from the new red values: u_ij <- (1 - omega) u_ij + omega (f_ij + 4 neighbours) / 4")
    one = (np.zeros((3, 3)), np.array([[1.0]]), 1.0)
    cases = [
        Case("m = 1: one red point", one, hint="with f = 1 and a zero boundary the point becomes 1/4"),
        Case("m = 2, omega = 1", (*_grid(2, 30), 1.0), hint=rule),
        Case("m = 5 (odd), omega = 1", (*_grid(5, 31), 1.0), hint=rule),
        Case("m = 4, omega = 1.5", (*_grid(4, 32), 1.5), hint=rule),
        Case("m = 3, nonzero boundary", (*_grid(3, 33, boundary=True), 1.0),
             hint="the boundary values are neighbours too: read them, do not change them"),
        Case("m = 6, omega = 0.8", (*_grid(6, 34), 0.8), hint=rule),
    ]
    g = (*_grid(4, 35), 1.0)
    gw = (*_grid(4, 36), 1.5)
    probes = [
        Probe("shape", g, {}, "return the whole padded grid (m+2, m+2), boundary included", _interior_only),
        Probe("boundary", (*_grid(3, 37, boundary=True), 1.0), {},
              "only the interior is updated: the boundary is data (read it, never write it)", _boundary_changed),
        Probe("order of colours", g, {},
              "red first: the red points are those with (i + j) even (i, j interior indices from 0), "
              "black after them", _grid_probe("black_first")),
        Probe("black from new red", g, {},
              "the black half-sweep must use the NEW red values (that is what makes it Gauss-Seidel); "
              "both colours were computed from the old grid, as in Jacobi", _grid_probe("from_old")),
        Probe("ordering", g, {},
              "that is Gauss-Seidel in the natural (row by row) order: red-black updates all red points "
              "first, then all black ones", _grid_probe("natural")),
        Probe("colouring", g, {},
              "the colouring is a chess board ((i + j) even is red), not alternate rows: only then are a "
              "point's four neighbours all of the other colour", _grid_probe("stripes")),
        Probe("sign of f", gw, {},
              "sign of f: add it, u_ij <- (1 - omega) u_ij + omega (f_ij + sum of the 4 neighbours) / 4, where f "
              "is the right-hand side of -laplace(u) = f already times h^2", _grid_probe("f_negated")),
        Probe("omega", gw, {}, "omega had no effect (a plain Gauss-Seidel sweep): either omega is not used, or "
              "the blend reads u_ij after it was overwritten by the GS value: u_ij <- (1 - omega) u_ij + omega * "
              "(GS value), with the old u_ij",
              _grid_probe("omega_ignored")),
        Probe("relaxation", gw, {}, "the (1 - omega) u_ij term is missing: u_ij <- (1 - omega) u_ij + "
              "omega * (GS value)", _grid_probe("no_one_minus_omega")),
        Probe("stencil", (_ONE_HOT, np.zeros((4, 4)), 1.5), {},
              "the stencil reads the wrong neighbours: each point averages u[i-1, j], u[i+1, j], u[i, j-1] and "
              "u[i, j+1] (north, south, west, east; never itself): check the four slices", _stencil),
        Probe("weights of the blend", gw, {},
              "the weights of the SOR blend: the old value u_ij keeps weight (1 - omega) and the Gauss-Seidel "
              "value gets weight omega (not the other way round)", _grid_probe("weights_swapped")),
    ]
    return Checker("red_black_sweep", cases, red_black_reference, probes, compare=compare_outputs,
                   prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)

