"""Linear-systems benchmark: the LU ladder in GFLOP/s, labkit's LU vs scipy, Gauss-Seidel sweeps, iterations vs theory.

GFLOP/s = (2n^3/3 - n^2/2 - n/6) / median seconds (``elimination.lu_flops``). The targets of
the course: ``lu_solve(lu_factor(A), b)`` within 2x of ``scipy.linalg.solve`` at n = 2000;
labkit's ``lu_factor`` within 1.5x of ``scipy.linalg.lu_factor`` (LAPACK getrf) at n = 1000 and
2000 on one BLAS thread; one Gauss-Seidel iteration on the lab's 1000 x 1000 diagonally dominant
system >= 50x faster than the lab's ``getrow()`` sweep; SOR iteration counts on Poisson within
30% of theory.
Introduced in notebooks 08 and 09; ``python -m labkit bench linsys [--save]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from labkit import elimination, iterative, poisson, systems
from labkit.bench import print_table
from labkit.bench.sweep import Provider, long_table, max_abs_error, notes, pivot, sweep

# (label, lu function, largest n it is timed at: Python loops are slow)
LADDER = [
    ("Python loops", elimination.lu_factor_loops, 64),
    ("row-vectorised", elimination.lu_factor_rows, 256),
    ("rank-1 updates", elimination.lu_factor_rank1, 1000),
    ("blocked LU (labkit)", elimination.lu_factor, 10**9),
    ("LAPACK getrf (scipy)", scipy.linalg.lu_factor, 10**9),
]


def _random(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n))


def ladder_rows(sizes=(64, 256, 1000), rep: int = 3) -> list[list]:
    """[label, GFLOP/s at each size (None where too slow to time)] for every LU in the ladder."""
    providers = [Provider(label, fn, skip=lambda n, n_max=n_max: f"too slow above n = {n_max}" if n > n_max else "")
                 for label, fn, n_max in LADDER]
    results = sweep(sizes, providers, lambda n: (_random(n),), rep=rep, max_seconds=1.0, interleave=True,
                    describe=lambda n: f"n={n}")  # the rungs of a size take turns: a load slows them alike
    _, labels, rows = pivot(results, lambda m: elimination.lu_flops(m.size) / m.seconds / 1e9, by="provider")
    return [[label] + row for label, row in zip(labels, rows)]


def ladder_table(sizes=(64, 256, 1000), rep: int = 3, rows: list | None = None) -> str:
    """GFLOP/s of every LU in the ladder at every size (one run), as a printed table."""
    rows = ladder_rows(sizes, rep) if rows is None else rows
    return print_table("LU with partial pivoting, GFLOP/s (the vectorisation ladder)",
                       ["variant"] + [f"n={n}" for n in sizes], rows)


def lu_times(n: int, rep: int) -> dict:
    """Median seconds of scipy.linalg.solve, scipy's and labkit's lu_solve(lu_factor) at size n, interleaved."""
    providers = [
        Provider("scipy.linalg.solve", scipy.linalg.solve),
        Provider("scipy lu_solve(lu_factor)", lambda A, b: scipy.linalg.lu_solve(scipy.linalg.lu_factor(A), b)),
        Provider("labkit lu_solve(lu_factor)", lambda A, b: elimination.lu_solve(elimination.lu_factor(A), b)),
    ]
    results = sweep([n], providers, lambda n: (_random(n, 1), np.random.default_rng(2).standard_normal(n)),
                    rep=rep, interleave=True, report=None)
    return {m.provider: m.seconds for m in results}


def _one_blas_thread(call: str):
    """``call`` (a call of a function of this module, as text) in a fresh process whose BLAS runs
    on one thread (set before numpy loads); its JSON result, or None if the process failed."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = f"import json; from labkit.bench import linsys; print(json.dumps(linsys.{call}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:  # pragma: no cover - report, do not fail the whole bench
        print(done.stderr, file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _lu_times_one_blas_thread(n: int, rep: int) -> dict | None:
    """lu_times in a fresh process whose BLAS runs on one thread."""
    return _one_blas_thread(f"lu_times({n}, {rep})")


def lu_factor_times(sizes=(1000, 2000), rep: int = 5) -> list[list]:
    """[n, scipy seconds, labkit seconds]: median of ``rep`` interleaved calls of scipy's and labkit's lu_factor."""
    providers = [Provider("scipy lu_factor (getrf)", scipy.linalg.lu_factor),
                 Provider("labkit lu_factor", elimination.lu_factor)]
    results = sweep(sizes, providers, lambda n: (_random(n, 1),), rep=rep, interleave=True, report=None)
    _, measured_sizes, rows = pivot(results, lambda m: m.seconds)
    return [[n, *row] for n, row in zip(measured_sizes, rows)]


def lu_factor_one_thread(sizes=(1000, 2000), rep: int = 5):
    """Table and [(n, labkit / scipy)] of lu_factor on one BLAS thread (this process if it already has one)."""
    if os.environ.get("OPENBLAS_NUM_THREADS") == "1":
        rows = lu_factor_times(sizes, rep)
    else:
        rows = _one_blas_thread(f"lu_factor_times({tuple(sizes)}, {rep})")
        if rows is None:
            return None, []
    text = print_table(f"LU factorisation on one BLAS thread (median of {rep}, calls interleaved)",
                       ["n", "scipy lu_factor (getrf) ms", "labkit lu_factor ms", "labkit / scipy"],
                       [[n, s * 1e3, t * 1e3, t / s] for n, s, t in rows])
    return text, [(n, t / s) for n, s, t in rows]


def lu_vs_scipy(n: int = 2000, rep: int = 5):
    """Table and ratios (default BLAS threads, one BLAS thread): labkit LU solve vs scipy.linalg.solve."""
    A, b = _random(n, 1), np.random.default_rng(2).standard_normal(n)
    x = elimination.lu_solve(elimination.lu_factor(A), b)
    err = np.linalg.norm(x - scipy.linalg.solve(A, b)) / np.linalg.norm(x)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    runs = {f"BLAS threads: {threads}": lu_times(n, rep)}
    if threads != "1":
        one = _lu_times_one_blas_thread(n, rep)
        if one is not None:
            runs["BLAS threads: 1 (subprocess)"] = one
    rows, ratios = [], []
    for setting, t in runs.items():
        base = t["scipy.linalg.solve"]
        rows += [[setting, name, s * 1e3, elimination.lu_flops(n) / s / 1e9, s / base]
                 for name, s in t.items()]
        ratios.append((setting, t["labkit lu_solve(lu_factor)"] / base))
    text = print_table(f"Dense solve at n = {n} (median of {rep}, calls interleaved); labkit vs scipy "
                       f"relative difference {err:.1e}",
                       ["BLAS", "solver", "ms", "GFLOP/s", "time / scipy.solve"], rows)
    return text, ratios


def sweep_table(rep: int = 20):
    """One Gauss-Seidel iteration on the lab's 1000 x 1000 diagonally dominant system, four ways."""
    A, b, _ = systems.diagonally_dominant()
    x = np.random.default_rng(3).uniform(0, 1, A.shape[0])
    M = sp.csr_array(sp.tril(A, format="csr"))
    solve = iterative.splitting_solver(A, "gauss-seidel")
    providers = [
        Provider("lab: getrow(i).toarray() per row", lambda: iterative.gauss_seidel_sweep_getrow(A, b, x)),
        Provider("CSR slices per row (gauss_seidel_sweep)", lambda: iterative.gauss_seidel_sweep(A, b, x)),
        Provider("spsolve_triangular(D+L, b - U x)",
                 lambda: x + spla.spsolve_triangular(M, b - A @ x, lower=True)),
        Provider("labkit: x + (D+L)^-1 (b - A x), SuperLU", lambda: x + solve(b - A @ x)),
    ]

    def same(out, ref):
        assert np.allclose(out, ref, rtol=1e-12, atol=1e-12), "differs from the lab's sweep"
        return max_abs_error(out, ref)
    results = sweep([A.shape[0]], providers, lambda n: (), rep=rep, max_seconds=1.0, error=same,
                    reference=lambda: iterative.gauss_seidel_sweep_getrow(A, b, x), report=None)
    wrong = notes(results)
    if wrong:  # a sweep that disagrees with the lab's is a bug, not a benchmark result
        raise AssertionError("; ".join(wrong))
    base = results[0].seconds
    text = long_table("One Gauss-Seidel sweep, lab system 1 (N = 1000, density 0.01)", results,
                      [("sweep", lambda m: m.provider), ("ms", lambda m: m.seconds * 1e3),
                       ("speed-up vs getrow", lambda m: base / m.seconds)])
    return text, base / results[-1].seconds


def _count(solve, *args, **kwargs) -> int:
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iterative.ConvergenceWarning)
        _, info = solve(*args, callback=lambda xk: calls.append(1), **kwargs)
    return len(calls) if info == 0 else -1


def poisson_table(grids=(16, 32, 64), rtol: float = 1e-6):
    """Iterations to ||r|| <= rtol ||b|| on the m x m Poisson grid vs k = ln(rtol)/ln(rho)."""
    rows, worst = [], 0.0
    for m in grids:
        A = systems.poisson_2d(m)
        f = np.full(m * m, poisson.grid_h(m) ** 2)
        w = poisson.optimal_omega(m)
        gs = _count(iterative.gauss_seidel, A, f, rtol=rtol)
        so = _count(iterative.sor, A, f, rtol=rtol, omega=w)
        rb = _count(poisson.poisson_red_black, f.reshape(m, m), omega=w, rtol=rtol)
        th_gs = poisson.iterations_theory(m, "gauss-seidel", rtol)
        th_so = poisson.iterations_theory(m, "sor", rtol)
        naive = poisson.iterations_theory(m, "sor", rtol, jordan=False)
        worst = max(worst, abs(so / th_so - 1), abs(rb / th_so - 1))
        rows.append([m, f"{poisson.grid_h(m):.4f}", gs, round(th_gs), f"{w:.4f}", so, rb,
                     round(th_so), round(naive), so / th_so])
    text = print_table(
        f"Poisson 2-D, iterations to relative residual {rtol:g} from x0 = 0: Gauss-Seidel ~ h^-2, "
        f"SOR(omega*) ~ h^-1. SOR theory: k rho^k = rtol (rho = omega* - 1, a Jordan block); "
        f"plain ln(rtol)/ln(rho) shown too",
        ["m", "h", "GS", "GS theory", "omega*", "SOR", "red-black SOR", "SOR theory",
         "plain ln/ln", "SOR / theory"], rows)
    return text, worst


def lab_experiment(A, b, x_true, maxiter: int = 5000) -> list[list]:
    """The lab's table on one system: method, seconds, relative residual, relative error, iterations.

    Dense methods see A.toarray(); iterative ones and scipy's sparse solvers see CSR.
    Introduced in notebook 09.
    """
    Ad = A.toarray()
    Acsc = sp.csc_array(A)
    methods = [
        ("Gaussian elimination (partial)", lambda cb: (elimination.gaussian_elimination(Ad, b), None)),
        ("labkit lu_solve(lu_factor)",
         lambda cb: (elimination.lu_solve(elimination.lu_factor(Ad), b), None)),
        ("Jacobi", lambda cb: iterative.jacobi(A, b, maxiter=maxiter, callback=cb)),
        ("Gauss-Seidel", lambda cb: iterative.gauss_seidel(A, b, maxiter=maxiter, callback=cb)),
        ("scipy spsolve", lambda cb: (spla.spsolve(Acsc, b), None)),
        ("scipy splu", lambda cb: (spla.splu(Acsc).solve(b), None)),
        ("scipy cg", lambda cb: spla.cg(A, b, rtol=1e-8, maxiter=maxiter, callback=cb)),
    ]
    rows = []
    for name, run_method in methods:
        calls: list = []
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with np.errstate(all="ignore"):
                x, info = run_method(lambda xk: calls.append(1))
        seconds = time.perf_counter() - t0
        diverged = any("diverged" in str(w.message) for w in caught)
        status = "diverged" if diverged else "not converged" if info else "ok"
        with np.errstate(all="ignore"):
            rows.append([name, seconds * 1e3, f"{iterative.relative_residual(A, x, b):.2e}",
                         f"{iterative.relative_error(x, x_true):.2e}",
                         None if info is None else len(calls), status])
    return rows


LAB_HEADER = ["method", "ms", "rel. residual", "rel. error", "iterations", "status"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000, help="size of the dense LU vs scipy test")
    parser.add_argument("--rep", type=int, default=5, help="interleaved repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")


def environment() -> str:
    """numpy, scipy and BLAS versions and the BLAS thread setting (the numbers depend on them)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy: say so rather than fail
        blas = "unknown"
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    text = (f"numpy {np.__version__}, scipy {scipy.__version__}, BLAS {blas}, "
            f"OPENBLAS_NUM_THREADS={threads}, load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} cores at start")
    print(text)
    return text


def run(args: argparse.Namespace) -> str:
    """Print and return the ladder, LU vs scipy, sweeps, Poisson and target-summary tables."""
    quick = getattr(args, "quick", False)
    n = 200 if quick else args.n
    parts = [environment(), ladder_table((32, 64, 128) if quick else (64, 256, 1000), rep=2 if quick else 3)]
    text, lu_ratios = lu_vs_scipy(n, 2 if quick else args.rep)
    parts.append(text)
    text, factor_ratios = lu_factor_one_thread((200, 400) if quick else (1000, 2000), 2 if quick else args.rep)
    if text is not None:
        parts.append(text)
    text, sweep_speedup = sweep_table(5 if quick else 20)
    parts.append(text)
    text, sor_worst = poisson_table((8, 16) if quick else (16, 32, 64))
    parts.append(text)
    parts.append(print_table("Targets", ["target", "measured", "goal", "met"], [
        *[[f"labkit LU solve / scipy.linalg.solve at n = {n} ({setting})", f"{ratio:.2f}x", "<= 2x",
           ratio <= 2] for setting, ratio in lu_ratios],
        *[[f"labkit lu_factor / scipy lu_factor (getrf) at n = {m}, one BLAS thread", f"{ratio:.2f}x",
           "<= 1.5x", ratio <= 1.5] for m, ratio in factor_ratios],
        ["Gauss-Seidel sweep speed-up vs getrow (N = 1000)", f"{sweep_speedup:.0f}x", ">= 50x",
         sweep_speedup >= 50],
        ["SOR iterations vs theory, worst deviation", f"{100 * sor_worst:.1f}%", "<= 30%",
         sor_worst <= 0.3],
    ]))
    return "\n\n".join(parts)
