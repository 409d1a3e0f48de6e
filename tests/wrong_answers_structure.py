"""Wrong answers to blocked_lu (Exercise 8.5) and red_black_sweep (Exercise 9.4).

Written from the exercise text alone, as a student would get them wrong, without reading the
checkers. Each ``names`` holds the words a fair hint naming that mistake would use.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from wrong_answer import WrongAnswer


# --------------------------------------------------------------------------- blocked LU (8.5)

def _blu(A, block, *, swap="whole", pivot_rows="all", unit=True, solve=True, sign=-1.0,
         update_first=False, ragged=True, copy=True, panel_cols="panel", piv_offset=False):
    lu = np.array(A, dtype=float) if copy else np.asarray(A)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    stop = n if ragged else (n // block) * block
    for k in range(0, stop, block):
        e = min(k + block, n)
        for j in range(k, e):
            bottom = n if pivot_rows == "all" else e
            off = int(np.argmax(np.abs(lu[j:bottom, j])))
            p = j + off
            piv[j] = off if piv_offset else p
            if swap == "whole":
                lu[[j, p]] = lu[[p, j]]
            elif swap == "panel":
                lu[[j, p], k:e] = lu[[p, j], k:e]
            elif swap == "panel_right":
                lu[[j, p], k:] = lu[[p, j], k:]
            lu[j + 1:, j] /= lu[j, j]
            c1 = e if panel_cols == "panel" else n
            lu[j + 1:, j + 1:c1] -= np.outer(lu[j + 1:, j], lu[j, j + 1:c1])
        if update_first:
            lu[e:, e:] += sign * lu[e:, k:e] @ lu[k:e, e:]
        if solve:
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                        unit_diagonal=unit)
        if not update_first:
            lu[e:, e:] += sign * lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


def blu_swap_panel_only(A, block):
    return _blu(A, block, swap="panel")


def blu_swap_not_left(A, block):
    return _blu(A, block, swap="panel_right")


def blu_nonunit_solve(A, block):
    return _blu(A, block, unit=False)


def blu_no_u12(A, block):
    return _blu(A, block, solve=False)


def blu_plus_update(A, block):
    return _blu(A, block, sign=+1.0)


def blu_update_before_solve(A, block):
    return _blu(A, block, update_first=True)


def blu_pivot_in_panel(A, block):
    return _blu(A, block, pivot_rows="panel")


def blu_skip_ragged(A, block):
    return _blu(A, block, ragged=False)


def blu_in_place(A, block):
    return _blu(A, block, copy=False)


def blu_panel_updates_whole_row(A, block):
    return _blu(A, block, panel_cols="all")


def blu_piv_offset(A, block):
    return _blu(A, block, piv_offset=True)


def blu_no_pivoting(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                    unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, np.arange(n, dtype=np.int32)


# --------------------------------------------------------------------------- red-black (9.4)

def _masks(m):
    i, j = np.indices((m, m))
    red = (i + j) % 2 == 0
    return red, ~red


def _gs(u, f):
    return (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4


def rb_black_first(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    red, black = _masks(f.shape[0])
    for mask in (black, red):
        g = _gs(u, f)
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return u


def rb_old_red(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    g = _gs(u, f)  # computed once, before the red update
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return u


def rb_natural_order(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    m = f.shape[0]
    for i in range(1, m + 1):
        for j in range(1, m + 1):
            g = (f[i - 1, j - 1] + u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) / 4
            u[i, j] = (1 - omega) * u[i, j] + omega * g
    return u


def rb_row_stripes(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    i, _ = np.indices(f.shape)
    red = i % 2 == 0  # "even" meant even rows
    for mask in (red, ~red):
        g = _gs(u, f)
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return u


def rb_stencil_self(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        # east neighbour sliced as u[1:-1, 1:-1]: the point itself instead of u[i, j+1]
        g = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 1:-1]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return u


def rb_omega_ignored(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        g = _gs(u, f)
        inner[mask] = g[mask]
    return u


def rb_omega_swapped(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        g = _gs(u, f)
        inner[mask] = omega * inner[mask] + (1 - omega) * g[mask]
    return u


def rb_zero_boundary(u, f, omega=1.0):
    u = np.asarray(u, dtype=float)
    new = np.zeros_like(u)  # fresh grid: the boundary comes out zero
    new[1:-1, 1:-1] = u[1:-1, 1:-1]
    inner = new[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        g = _gs(new, f)
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return new


def rb_in_place(u, f, omega=1.0):
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        g = _gs(u, f)
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return u


def rb_minus_f(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        g = (-f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return u


def rb_interior_only(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _masks(f.shape[0]):
        g = _gs(u, f)
        inner[mask] = (1 - omega) * inner[mask] + omega * g[mask]
    return inner.copy()  # returns the m x m unknowns, not the padded grid


B, R = "blocked_lu", "red_black_sweep"

WRONG: list[WrongAnswer] = [
    WrongAnswer(B, "row swaps applied only inside the panel columns, not to the whole row",
                (r"whole rows?", r"swaps?.{0,40}(outside|left|right|all columns|every column)"), blu_swap_panel_only),
    WrongAnswer(B, "row swaps skip the columns left of the panel (stored multipliers not moved)",
                (r"multiplier", r"left of the panel", r"columns 0"), blu_swap_not_left),
    WrongAnswer(B, "U12 solved with the non-unit lower triangle of L11 (diagonal of U used)",
                (r"unit", r"diagonal"), blu_nonunit_solve),
    WrongAnswer(B, "U12 never solved: the panel's right block left as A12",
                (r"left as A_?12", r"(never|not) solved|skipp", r"triangular solve"), blu_no_u12),
    WrongAnswer(B, "trailing update adds L21 U12 instead of subtracting it",
                (r"sign", r"subtract", r"added|adds|\+= ?L_?21"), blu_plus_update),
    WrongAnswer(B, "trailing update done before U12 is solved (L21 times A12, wrong block)",
                (r"before", r"order", r"L_?21 ?A_?12|A_?12 instead"), blu_update_before_solve),
    WrongAnswer(B, "pivot searched only among the panel's rows, not down to the bottom",
                (r"bottom", r"below the panel|whole panel height|whole column", r"search"), blu_pivot_in_panel),
    WrongAnswer(B, "last ragged panel skipped when block does not divide n",
                (r"ragged", r"last panel", r"divide"), blu_skip_ragged),
    WrongAnswer(B, "factors A in place (modifies the caller's array)",
                (r"modif", r"in.place", r"copy"), blu_in_place),
    WrongAnswer(B, "rank-1 steps in the panel update the whole row, then the trailing update again",
                (r"twice", r"double", r"inside the panel|only the panel|j ?\+ ?1 ?: ?e"), blu_panel_updates_whole_row),
    WrongAnswer(B, "piv stores the argmax offset within the column, not the row index",
                (r"\bpiv\b", r"row index", r"offset|absolute"), blu_piv_offset),
    WrongAnswer(B, "no pivoting at all (piv = identity)",
                (r"no pivoting|without pivoting", r"largest \|a"), blu_no_pivoting),

    WrongAnswer(R, "black points updated before the red ones",
                (r"black.{0,40}(before|first)", r"red first|red.{0,20}before", r"order"), rb_black_first),
    WrongAnswer(R, "black points updated from the old red values (both colours from the start grid)",
                (r"new red", r"old (red|values|grid)|stale", r"Jacobi"), rb_old_red),
    WrongAnswer(R, "natural (row-by-row) Gauss-Seidel ordering instead of red-black",
                (r"natural", r"lexicographic", r"row.by.row|ordering"), rb_natural_order),
    WrongAnswer(R, "colours by row parity (i even) instead of (i+j) even",
                (r"chess|checker", r"alternate rows|rows? parity|stripe", r"parity"), rb_row_stripes),
    WrongAnswer(R, "east neighbour sliced wrong: the point itself used instead of u[i, j+1]",
                (r"east|u_?\{?i, ?j ?\+ ?1", r"stencil", r"slic"), rb_stencil_self),
    WrongAnswer(R, "omega ignored: plain Gauss-Seidel step",
                (r"(omega|\u03c9).{0,20}(ignor|not used|no effect)", r"relax"), rb_omega_ignored),
    WrongAnswer(R, "omega and 1 - omega swapped in the SOR blend",
                (r"(omega|\u03c9).{0,40}(swapped|reversed|other way|wrong)", r"weights?", r"relaxation factor"), rb_omega_swapped),
    WrongAnswer(R, "boundary overwritten with zeros (fresh grid)",
                (r"boundary", r"border", r"edge"), rb_zero_boundary),
    WrongAnswer(R, "updates u in place and returns it",
                (r"modif", r"in.place", r"copy"), rb_in_place),
    WrongAnswer(R, "f subtracted instead of added in the update",
                (r"sign", r"add(ed)? f|minus f|subtract", r"right.hand side|source"), rb_minus_f),
    WrongAnswer(R, "returns only the m x m interior, not the padded grid",
                (r"shape", r"pad", r"\(m ?\+ ?2"), rb_interior_only),
]
