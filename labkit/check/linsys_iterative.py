"""Checkers for the iterative-solver exercises of notebook 09: the Gauss-Seidel and SOR sweeps and the solver.

Sweeps are probed on one small dense system on which each mistake gives its own value, written
as a splitting formula (Jacobi D^-1 (b - (L + U) x), rows in reverse (D + U)^-1 (b - L x), ...).
The solver is judged against labkit's run (``_Run``) with the ``callback`` calls as data: the
iterates after each sweep, ``info`` = 0 when ||b - A x|| <= max(rtol ||b||, atol), otherwise the
number of iterations done (labkit's contract, ``iterative.gauss_seidel``; maxiter defaults to
max(5000, 10 n), 5000 for every system here). Introduced in notebook 09.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from labkit import iterative, systems
from labkit.check.core import (
    NUMPY_DTYPE_HINT, RECORD, Case, Checker, DtypeMismatch, Outcome, Probe, Verdict, checker, rng_seed,
)
from labkit.check.tolerance import assert_close
from labkit.check.linsys import differs_from, equals_formula, near, quiet, show


def _dense(A) -> np.ndarray:
    return A.toarray() if sp.issparse(A) else np.asarray(A, dtype=np.float64)


def _dd_dense(n: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(rng_seed(seed)).uniform(-1, 1, (n, n))
    return A + np.diag(np.abs(A).sum(axis=1) + 0.5)


def relaxed_sweep(A, b, x, omega=1.0, new="lower", diagonal_in_sum=False) -> np.ndarray:
    """x' with x'_i = (1 - omega) x_i + omega (b_i - sum_new a_ij x'_j - sum_old a_ij x_j) / a_ii.

    ``new``: which part uses this sweep's values, "lower" (rows in order: SOR, Gauss-Seidel at
    omega = 1), "upper" (rows in reverse) or "none" (Jacobi); ``diagonal_in_sum`` adds a_ii x_i to
    the sum. As a splitting: (D + omega N) x' = omega b + ((1 - omega - c omega) D - omega O) x.
    """
    A, b, x = _dense(A), np.asarray(b, dtype=np.float64), np.asarray(x, dtype=np.float64)
    D, L, U = np.diag(np.diag(A)), np.tril(A, -1), np.triu(A, 1)
    N, O = {"lower": (L, U), "upper": (U, L), "none": (0 * A, L + U)}[new]
    c = 1.0 if diagonal_in_sum else 0.0
    return np.linalg.solve(D + omega * N, omega * b + ((1 - omega - c * omega) * D - omega * O) @ x)


# ---------------------------------------------------------------- the sweeps
A4 = np.array([[4.0, 1, 0, 1], [2, 5, 1, 0], [0, 1, 3, 1], [1, 0, 2, 6]])
B4, X4 = np.array([1.0, 2, 3, 4]), np.array([1.0, -1, 0.5, 2])  # x nonzero: a_ii x_i shows
CSR_ORDER = "; on CSR, row i is A.data[A.indptr[i]:A.indptr[i+1]] at columns A.indices[...]"


def _sweep_cases() -> list[Case]:
    Asp, bsp, _ = systems.diagonally_dominant(40, 0.1, 7)
    rng = np.random.default_rng(rng_seed(10))
    return [
        Case("1 x 1", (np.array([[2.0]]), np.array([4.0]), np.array([0.0]))),
        Case("4 x 4 dense", (_dd_dense(4, 8), np.array([1.0, -2, 3, 0.5]), np.zeros(4))),
        Case("6 x 6 dense, x = 1", (_dd_dense(6, 9), rng.uniform(-1, 1, 6), np.ones(6))),
        Case("40 x 40 sparse CSR", (Asp, bsp, np.random.default_rng(rng_seed(11)).uniform(0, 1, 40))),
        Case("1-D Poisson CSR, x = 1/2", (systems.poisson_1d(6), np.ones(6), np.full(6, 0.5))),
    ]


def _sweep_probes(omega: float | None) -> list[Probe]:
    """The probes both sweeps share (omega None: the Gauss-Seidel sweep, called without omega)."""
    w = 1.0 if omega is None else omega
    args = (A4, B4, X4) if omega is None else (A4, B4, X4, omega)
    csr = (systems.poisson_1d(5), np.ones(5), np.full(5, 0.5)) + (() if omega is None else (omega,))
    value = "the Gauss-Seidel value" if omega is None else "(1 - omega) x_i + omega * (Gauss-Seidel value)"
    return [
        Probe("4 x 4 dense, rows in order", args, {},
              "that is Jacobi: old values were used within the sweep. Gauss-Seidel uses each new "
              "x_j (j < i) as soon as it is computed: update x in place, row by row",
              equals_formula(lambda *a: relaxed_sweep(A4, B4, X4, w, new="none"),
                             "the Jacobi value (every x_j from the old x)")),
        Probe("4 x 4 dense, order of the rows", args, {},
              "the rows must be swept in order, i = 0, 1, ..., n-1 (row i uses the new x_j, j < i)",
              equals_formula(lambda *a: relaxed_sweep(A4, B4, X4, w, new="upper"),
                             "the value of a sweep from the last row up")),
        Probe("4 x 4 dense, x nonzero", args, {},
              "the sum leaves out j = i: x_i = (b_i - sum_{j != i} a_ij x_j) / a_ii (the diagonal "
              "term is not subtracted)",
              equals_formula(lambda *a: relaxed_sweep(A4, B4, X4, w, diagonal_in_sum=True),
                             "as if a_ii x_i were in the sum")),
        Probe("4 x 4 dense", args, {}, f"on a dense system, row i's new value must be {value}, "
              "with x_j already new for j < i", differs_from(relaxed_sweep(A4, B4, X4, w))),
        Probe("the same matrix, CSR", csr, {},
              "right on this matrix as a dense array, wrong on it as CSR: the CSR branch does not do what the "
              "dense one does; check each of its steps against the dense rule: the diagonal found by its column "
              "(it is not necessarily stored first), the sum over the row's other stored entries, " + value
              + CSR_ORDER, differs_from(relaxed_sweep(csr[0], csr[1], csr[2], w)),
              control=(csr[0].toarray(), *csr[1:])),
    ]


@checker
def gauss_seidel_sweep() -> Checker:
    """``fn(A, b, x) -> x_new``: one Gauss-Seidel sweep, dense or CSR (notebook 09, exercise 9.1).

    x_i = (b_i - sum_{j<i} a_ij x_j(new) - sum_{j>i} a_ij x_j(old)) / a_ii, rows in order
    the sum leaves out j = i
    CSR rows are read from indptr/indices/data, whatever the position of the diagonal
    x_new is float64, also for an integer x; x is not modified
    """
    cases = _sweep_cases() + [
        Case("integer x", (_dd_dense(4, 12), np.ones(4), np.zeros(4, dtype=int)),
             hint="x_new must be float64 whatever x's dtype: copy x with np.array(x, dtype=float)"),
    ]
    return Checker("gauss_seidel_sweep", cases, iterative.gauss_seidel_sweep, _sweep_probes(None),
                   prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)


@checker
def sor_sweep() -> Checker:
    """``fn(A, b, x, omega) -> x_new``: one SOR sweep (notebook 09, exercise 9.3).

    x_i = (1 - omega) x_i + omega * g_i, g_i the Gauss-Seidel value from the current (partly new) x
    the relaxation is applied row by row inside the sweep, for every omega in (0, 2)
    the sum leaves out j = i; rows in order; dense and CSR alike
    x_new is float64, also for an integer x; x is not modified
    """
    cases = [Case(c.label + f", omega={w}", c.args + (w,)) for c, w in
             zip(_sweep_cases(), (1.0, 1.5, 0.7, 1.2, 1.8))]
    cases.append(Case("integer x, omega=1.5", (_dd_dense(4, 13), np.ones(4), np.zeros(4, dtype=int), 1.5),
                      hint="x_new must be float64 whatever x's dtype (an integer x truncates every relaxed "
                           "value): copy x with np.array(x, dtype=float)"))
    w = 1.5
    args = (A4, B4, X4, w)
    probes = [
        Probe("omega = 1.5", args, {}, "omega had no effect (a plain Gauss-Seidel sweep): either omega is not "
              "used, or the blend reads x_i after it was overwritten by the Gauss-Seidel value (keep the old x_i "
              "until x_i <- (1 - omega) x_i + omega * (Gauss-Seidel value))", equals_formula(lambda *a: relaxed_sweep(A4, B4, X4, 1.0),
                                                     "a plain Gauss-Seidel sweep")),
        Probe("omega = 1.5: weights", args, {}, "omega and 1 - omega are swapped: the new "
              "(Gauss-Seidel) value gets weight omega, the old x_i gets 1 - omega",
              equals_formula(lambda *a: relaxed_sweep(A4, B4, X4, 1 - w), "SOR with 1 - omega")),
        Probe("omega = 1.5: relaxed when", args, {},
              "the relaxation must be applied to each row as soon as its Gauss-Seidel value is "
              "computed, inside the sweep: rows below use the relaxed new values, not a whole "
              "sweep relaxed afterwards",
              equals_formula(lambda *a: (1 - w) * X4 + w * relaxed_sweep(A4, B4, X4),
                             "a whole Gauss-Seidel sweep relaxed after the sweep")),
    ] + _sweep_probes(w)
    return Checker("sor_sweep", cases, iterative.sor_sweep, probes, prepare=quiet,
                   dtype_hint=NUMPY_DTYPE_HINT)


# ---------------------------------------------------------------- the solver
@dataclass
class _Run:
    """labkit's run of Gauss-Seidel on one case, with what judging a student's run needs."""

    x: np.ndarray
    info: int
    iterates: list  # x after each sweep (what callback receives)
    A: object
    b: np.ndarray
    tol: float  # max(rtol ||b||, atol)
    maxiter: int
    recorded: bool  # the case passes callback=RECORD

    @property
    def diverged(self) -> bool:
        """labkit stopped before maxiter without converging: the residual blew up."""
        return self.info != 0 and len(self.iterates) < self.maxiter


def _reference(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None) -> _Run:
    iterates: list = []
    x, info = quiet(iterative.gauss_seidel)(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter,
                                            callback=lambda xk: iterates.append(np.array(xk)))
    b = np.asarray(b, dtype=np.float64)
    n = len(b)
    return _Run(x, info, iterates, A, b, max(rtol * np.linalg.norm(b), atol),
                max(5000, 10 * n) if maxiter is None else maxiter, callback is RECORD)


def _sweeps(A, b) -> int:
    """How many sweeps labkit's Gauss-Seidel needs to converge on A x = b from zeros."""
    return len(_reference(A, b).iterates)


def _residual(A, b, x) -> float:
    with np.errstate(all="ignore"):
        return float(np.linalg.norm(b - A @ np.asarray(x, dtype=np.float64)))


def _pair(out) -> tuple[np.ndarray, int]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"returned {type(out).__name__}, expected the pair (x, info)")
    x, info = out
    if isinstance(info, bool) or not isinstance(info, (int, np.integer)):
        raise AssertionError(f"info must be an int (0 when converged), got {type(info).__name__}")
    return x, int(info)


def _compare_calls(calls: list, run: _Run, info: int) -> None:
    """callback once per sweep with the iterate: labkit's iterates, or (diverged) as many as sweeps."""
    want = info if run.diverged else len(run.iterates)
    if len(calls) != want:
        raise AssertionError(f"callback called {len(calls)} times, expected once per sweep: {want}")
    for i, (got, ref) in enumerate(zip(calls, run.iterates)):
        assert_close(np.asarray(got, dtype=np.float64), ref, dtype=np.float64,
                     what=f"callback's argument after sweep {i + 1}")


def _compare_solver(out, run: _Run) -> None:
    value, calls = out
    x, info = _pair(value)
    if not isinstance(x, np.ndarray):
        raise AssertionError(f"x: returned {type(x).__name__}, expected a numpy array")
    if x.dtype != np.float64:
        raise DtypeMismatch(f"x: dtype {x.dtype}, expected float64")
    r = _residual(run.A, run.b, x)
    if info == 0 and not r <= run.tol:
        raise AssertionError(f"info = 0 (converged) but ||b - A x|| = {r:.3g} > max(rtol ||b||, atol) "
                             f"= {run.tol:.3g}")
    if run.info == 0 and info != 0:
        raise AssertionError(f"info = {info}, but labkit converged (info = 0) after "
                             f"{len(run.iterates)} sweeps")
    if run.info != 0 and info == 0:
        raise AssertionError(f"info = 0, but {run.maxiter} sweeps do not converge here")
    if run.info != 0 and info != run.info:
        why = (f"the residual passed 1e12 ||r_0|| (or overflowed) after {run.info} sweeps" if run.diverged else
               f"{run.maxiter} sweeps were done" + (" (info is at least 1 when not converged)" if not run.maxiter else ""))
        raise AssertionError(f"info = {info}, expected {run.info}: {why}")
    if run.recorded:
        _compare_calls(calls, run, info)
    if not run.diverged:
        assert_close(x, run.x, dtype=np.float64, what="x")


class _SolverChecker(Checker):
    """A Checker whose judgement sees each outcome's value as (value, callback calls)."""

    def judge(self, outcome) -> Verdict:
        def with_calls(i: int) -> Outcome:
            got = outcome(i)
            return dataclasses.replace(got, value=(got.value, got.calls)) if got.ok else got
        return super().judge(with_calls)


def _solver_probe(test):
    """violated(): ``test(x, info, calls, run)``, run = labkit's run on the probe's inputs."""
    def violated(outcome, probe):
        (value, calls) = outcome.value
        x, info = _pair(value)
        return test(np.asarray(x, dtype=np.float64), info, calls, _reference(*probe.args, **probe.kwargs))
    return violated


def _malformed(outcome, probe) -> str:
    try:
        _pair(outcome.value[0])
    except AssertionError as err:
        return str(err)
    return ""


def _callback_seen(x, info, calls, run) -> str:
    if not near(x, run.iterates[-1]):  # the solve itself is wrong: how often callback ran says nothing
        return ""
    if not calls:
        return f"callback was never called; labkit did {len(run.iterates)} sweeps"
    last = np.asarray(calls[-1], dtype=np.float64)
    if near(last, run.b - run.A @ x) and not near(last, x):
        return "callback received the residual b - A x, not the iterate x"
    if all(near(c, r) for c, r in zip(calls, run.iterates)):
        return ""  # the student's own sweeps, each reported right: a count that differs is the stopping rule's
    if len(calls) == 1 and len(run.iterates) > 1:
        return f"callback was called once, for {len(run.iterates)} sweeps"
    if len(calls) != len(run.iterates):
        return f"callback was called {len(calls)} times for {len(run.iterates)} sweeps"
    bad = [i for i, (c, r) in enumerate(zip(calls, run.iterates)) if not near(c, r)]
    return f"callback's argument after sweep {bad[0] + 1} is not that sweep's iterate" if bad else ""


def _stopped_early(x, info, calls, run) -> str:
    r = _residual(run.A, run.b, x)
    if info != 0 or r <= run.tol:
        return ""
    step = (f"last step {np.linalg.norm(np.subtract(calls[-1], calls[-2])):.2g}, "
            if len(calls) >= 2 else "")
    return f"info = 0 after {len(calls) or '?'} sweeps: {step}||b - A x|| = {r:.2g} > {run.tol:.2g}"


@checker
def gauss_seidel() -> Checker:
    """``fn(A, b, x0=None, *, rtol, atol, maxiter, callback) -> (x, info)`` (notebook 09, exercise 9.2).

    the iterates are Gauss-Seidel sweeps from x0 (zeros when x0 is None)
    the residual is tested before each sweep: info = 0 and x at the first iterate with
    ||b - A x|| <= max(rtol ||b||, atol) (atol honoured; x0 that already passes: no sweep)
    callback(x) is called once after every sweep, with that sweep's iterate
    not converged: info = the number of sweeps done, never 0 (maxiter, at least 1; or fewer when the
    residual blew up: grew past 1e12 ||r_0||, or overflowed to inf/NaN); maxiter defaults to max(5000, 10 n)
    x is float64
    """
    Asp, bsp, _ = systems.diagonally_dominant(60, 0.1, 12)
    Adiv, bdiv, _ = systems.large_spectral_radius(30, 0.1, 13)
    Ap, bp = systems.poisson_1d(20), np.full(20, 1.0 / 21 ** 2)
    A10 = systems.poisson_1d(10)
    A8, b8 = _dd_dense(8, 14), np.random.default_rng(rng_seed(15)).uniform(-1, 1, 8)
    A5 = np.array([[4.0, 1, 0, 1, 0], [1, 5, 1, 0, 2], [0, 1, 4, 1, 0], [1, 0, 1, 6, 1], [0, 2, 0, 1, 5]])
    Aslow = 1e4 * np.array([[1.0, 0.98], [0.98, 1.0]])  # rho = 0.96, steps ~1e-4 of the residual
    Ablow = np.array([[1.0, 1e3], [1e3, 1.0]])  # grows 1e6 per sweep: inf after ~50 sweeps
    A9 = np.array([[1.0, 3.0], [3.0, 1.0]])  # G_GS has rho = 9: past 1e12 ||r_0|| after 13 sweeps
    stop = "x must be the first iterate with ||b - A x|| <= max(rtol ||b||, atol), and info = 0"
    cases = [
        Case("8 x 8 dense, diagonally dominant", (A8, b8), hint=stop),
        Case("callback after every sweep", (A8, b8), {"callback": RECORD},
             hint="callback(x) must be called once after every sweep, with that sweep's iterate"),
        Case("60 x 60 sparse, maxiter=4", (Asp, bsp), {"maxiter": 4},
             hint="after maxiter sweeps without converging: x = the 4th Gauss-Seidel iterate, info = 4"),
        Case("1-D Poisson n=20 (slow: rho = 0.98), rtol=1e-6", (Ap, bp), {"rtol": 1e-6}, hint=stop),
        Case("x0 given, atol=1e-3", (_dd_dense(5, 16), np.ones(5), np.ones(5)), {"rtol": 0.0, "atol": 1e-3},
             hint="start from x0; stop when ||b - A x|| <= max(rtol ||b||, atol)"),
        Case("x0 = 10 given, rtol=1e-6: ||b - A x0|| is far above ||b||", (A8, b8, np.full(8, 10.0)),
             {"rtol": 1e-6, "callback": RECORD},
             hint="the tolerance is rtol ||b|| (or atol), whatever x0: not rtol times the first residual "
                  "||b - A x0||"),
        Case("x0 already solves it", (A5, A5 @ np.ones(5), np.ones(5)), {"callback": RECORD},
             hint="the residual is tested before each sweep: here x0 passes, so no sweep and no callback"),
        Case("atol above rtol ||b||", (A10, np.ones(10)), {"rtol": 1e-12, "atol": 1e-2}, hint=stop),
        Case("small steps, large residual", (Aslow, np.array([1.0, 0.0])), hint=stop),
        Case("30 x 30 divergent (rho >> 1), maxiter=20", (Adiv, bdiv), {"maxiter": 20, "callback": RECORD},
             hint="not converged: stop as soon as ||b - A x|| > 1e12 ||r_0|| (the iteration blew up); info = the "
                  "sweeps done (never 0), one callback per sweep"),
        Case("2 x 2 whose iterates overflow to inf, maxiter=100", (Ablow, np.ones(2)), {"maxiter": 100},
             hint="an iteration that blows up is not converged: info = the iterations done, never 0"),
        Case("2 x 2 with rho = 9: the residual grows 9x per sweep, maxiter=500", (A9, np.ones(2)),
             {"maxiter": 500, "callback": RECORD},
             hint="stop as soon as ||b - A x|| > 1e12 ||r_0|| (or is not finite): the iteration blew up; "
                  "info = the sweeps done (here 13), not the sweeps until overflow"),
        Case("maxiter=0, not converged", (A8, b8), {"maxiter": 0, "callback": RECORD},
             hint="maxiter=0: no sweep, and info = 1 (never 0 unless ||b - A x0|| passed the test)"),
        Case("maxiter = exactly the sweeps it needs", (A8, b8), {"maxiter": _sweeps(A8, b8), "callback": RECORD},
             hint="the residual is tested before each sweep and once more after the last: converging on the "
                  "last allowed sweep is info = 0"),
        Case("b = 0: x0 = 0 is exact (||b - A x|| = 0 = the tolerance)", (A8, np.zeros(8)),
             hint="the test is ||b - A x|| <= max(rtol ||b||, atol), with <=: for b = 0 both sides are 0"),
        Case("2 x 2 that blows up in one sweep", (np.array([[1.0, 1e7], [1e7, 1.0]]), np.ones(2)),
             hint="a blow-up after the first sweep is info = 1, the sweeps done"),
    ]
    info_hint = ("info = 0 only when ||b - A x|| <= max(rtol ||b||, atol) held; otherwise info = the "
                 "number of iterations done")
    probes = [
        Probe("the returned pair", (A5, np.ones(5)), {},
              "return the pair (x, info), info an int: 0 when converged, else the iterations done",
              _malformed),
        Probe("one sweep from zeros", (A5, np.ones(5)), {"maxiter": 1},
              "that is Jacobi: old values were used within the sweep. Gauss-Seidel uses each new x_j "
              "(j < i) as soon as it is computed",
              _solver_probe(lambda x, info, calls, run: "x after one sweep is the Jacobi value"
                            if near(x, relaxed_sweep(A5, np.ones(5), np.zeros(5), new="none")) else "")),
        Probe("one sweep from x0", (A5, np.ones(5), np.full(5, 3.0)), {"maxiter": 1},
              "x0 was ignored: start from x0 (from zeros only when x0 is None)",
              _solver_probe(lambda x, info, calls, run: "x after one sweep is the sweep from zeros"
                            if near(x, relaxed_sweep(A5, np.ones(5), np.zeros(5))) else "")),
        Probe("small steps, large residual", (Aslow, np.array([1.0, 0.0])), {"callback": RECORD},
              "stopped on the step size: a small step ||x_k+1 - x_k|| does not mean a small residual "
              "(slow convergence, large diagonal); stop only when ||b - A x|| <= max(rtol ||b||, atol)",
              _solver_probe(_stopped_early)),
        Probe("x0 already solves it", (A5, A5 @ np.ones(5), np.ones(5)), {"callback": RECORD},
              "test the residual BEFORE each sweep: x0 already satisfies the test here, so no sweep "
              "(and no callback) is due",
              _solver_probe(lambda x, info, calls, run: f"{len(calls)} callback(s) though x0 passes"
                            if calls else ""),
              control=(A5, np.ones(5))),  # a function that solves it from zeros errs in its test's order
        Probe("atol above rtol ||b||", (A10, np.ones(10)), {"rtol": 1e-12, "atol": 1e-2},
              "atol was ignored: the tolerance is max(rtol ||b||, atol); stop as soon as "
              "||b - A x|| <= atol, even when rtol ||b|| is smaller",
              _solver_probe(lambda x, info, calls, run: f"||b - A x|| = {_residual(A10, run.b, x):.2g}: "
                            f"went on past atol = 1e-2" if info == 0 and
                            _residual(A10, run.b, x) < 0.1 * _residual(A10, run.b, run.x) else "")),
        Probe("default maxiter, ~600 sweeps needed", (Ap, bp), {"rtol": 1e-6},
              "maxiter=None means the default max(5000, 10 n) sweeps (5000 here); stopped too soon",
              _solver_probe(lambda x, info, calls, run: f"info = {info} with maxiter not given"
                            if 0 < info < len(run.iterates) else ""),
              control=(A5, np.ones(5))),  # right where a few sweeps do: its limit is the default's
        Probe("converges in a few sweeps", (A5, np.ones(5)), {},
              "x solves the system, yet info is not 0: either info is not set to 0 when the test passes, or the "
              "residual tested is not ||b - A x|| of the current x (so the test never passes); " + info_hint,
              _solver_probe(lambda x, info, calls, run: f"info = {info} though ||b - A x|| = "
                            f"{_residual(A5, run.b, x):.2g} <= {run.tol:.2g}"
                            if info != 0 and _residual(A5, run.b, x) <= run.tol else "")),
        Probe("callback after every sweep", (A5, np.ones(5)), {"callback": RECORD},
              "call callback(x) once after every sweep, with the new iterate x",
              _solver_probe(_callback_seen)),
        Probe("divergent, maxiter=20", (Adiv, bdiv), {"maxiter": 20},
              "divergence reported as success: " + info_hint,
              _solver_probe(lambda x, info, calls, run: f"info = 0, ||b - A x|| = "
                            f"{_residual(Adiv, run.b, x):.3g}" if info == 0 else "")),
        Probe("blows up to inf, maxiter=100", (Ablow, np.ones(2)), {"maxiter": 100},
              "an overflowing iteration (residual inf/NaN) reported as converged: `norm > tol` is "
              "False for NaN, so test `not norm <= tol`; " + info_hint,
              _solver_probe(lambda x, info, calls, run: f"info = 0, x = {show(x)}" if info == 0 else "")),
    ]
    return _SolverChecker("gauss_seidel", cases, _reference, probes, compare=_compare_solver,
                          prepare=quiet, dtype_hint=NUMPY_DTYPE_HINT)
