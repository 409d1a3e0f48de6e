"""Runs every answer of tests/wrong_answers_blind_d.py against labkit's reference implementation.

Usage: cd /work/main && .venv/bin/python tests/verify_blind_d.py

For each exercise a few witness inputs are built (fresh for every call); an answer DIFFERS when, on
at least one witness, its result has another type, shape or dtype than the reference's, values beyond
1e-6 (float64) / 1e-3 (float32) / 1e-2 (float16, bfloat16) relative (to the reference's largest
magnitude), NaN/inf where the reference is finite (or the reverse), or when it modified one of its
inputs in place. SAME means no witness told them apart; CRASH means every witness raised.

As a control of the witnesses and of the comparison, the notebooks' own solutions (the exercise
cells of notebooks 06-10, read at run time) are run the same way and must come out SAME.
Exit status 0 only if every answer differs and every control is SAME.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import tempfile
import traceback
import warnings
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import labkit  # noqa: E402,F401  (first: Triton's interpreter on CPU)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from labkit import attention, decoding, derivatives, elimination, iterative, poisson, systems  # noqa: E402
from labkit import attention_backward, kernels  # noqa: E402
from labkit.kernels.decoding import flash_decode_triton as ref_flash_decode_triton  # noqa: E402

import wrong_answers_blind_d as blind  # noqa: E402

warnings.simplefilter("ignore")


# ----------------------------------------------------------------------------- comparison
def _tol(dtype) -> float:
    if dtype in (torch.float64, np.float64):
        return 1e-6
    if dtype in (torch.float16, torch.bfloat16, np.float16):
        return 1e-2
    return 1e-3


def _kind(x):
    if isinstance(x, torch.Tensor):
        return "tensor"
    if isinstance(x, np.ndarray):
        return "ndarray"
    if isinstance(x, (bool, np.bool_)):
        return "bool"
    if isinstance(x, (int, np.integer)):
        return "int"
    if isinstance(x, (float, np.floating)):
        return "float"
    if isinstance(x, (tuple, list)):
        return "sequence"
    return type(x).__name__


def difference(a, r, where="result"):
    """None when a matches the reference r, else a short reason."""
    ka, kr = _kind(a), _kind(r)
    if ka != kr:
        return f"{where}: {ka} ({type(a).__name__}) instead of {kr} ({type(r).__name__})"
    if kr == "sequence":
        if len(a) != len(r):
            return f"{where}: {len(a)} items instead of {len(r)}"
        for i, (x, y) in enumerate(zip(a, r)):
            d = difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if kr in ("int", "bool"):
        return None if a == r else f"{where}: {a} instead of {r}"
    if kr in ("tensor", "ndarray", "float"):
        if kr == "tensor":
            if a.dtype != r.dtype:
                return f"{where}: dtype {a.dtype} instead of {r.dtype}"
            if tuple(a.shape) != tuple(r.shape):
                return f"{where}: shape {tuple(a.shape)} instead of {tuple(r.shape)}"
            tol = _tol(r.dtype)
            a64, r64 = a.detach().cpu().double().numpy(), r.detach().cpu().double().numpy()
        elif kr == "ndarray":
            if a.dtype != r.dtype:
                return f"{where}: dtype {a.dtype} instead of {r.dtype}"
            if a.shape != r.shape:
                return f"{where}: shape {a.shape} instead of {r.shape}"
            if a.dtype.kind in "iub":
                return None if np.array_equal(a, r) else f"{where}: integer values differ"
            tol = _tol(r.dtype.type)
            a64, r64 = a.astype(np.float64), r.astype(np.float64)
        else:
            tol = 1e-6
            a64, r64 = np.array([float(a)]), np.array([float(r)])
        fin_r, fin_a = np.isfinite(r64), np.isfinite(a64)
        if np.any(fin_r & ~fin_a):
            return f"{where}: NaN/inf at {int(np.sum(fin_r & ~fin_a))} entries where the reference is finite"
        nonfin = ~fin_r
        if np.any(nonfin):
            same = (np.isnan(a64[nonfin]) & np.isnan(r64[nonfin])) | (a64[nonfin] == r64[nonfin])
            if not np.all(same):
                return f"{where}: finite or other non-finite values where the reference is NaN/inf"
        if np.any(fin_r):
            scale = max(float(np.max(np.abs(r64[fin_r]))), 1e-30)
            err = float(np.max(np.abs(a64[fin_r] - r64[fin_r])))
            if err > tol * scale:
                return f"{where}: max abs difference {err:.3g} (relative {err / scale:.3g} > {tol:g})"
        return None
    return None if a == r else f"{where}: {a!r} instead of {r!r}"


def _snapshot(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    if sp.issparse(x):
        return x.copy()
    if isinstance(x, (list, tuple)):
        return type(x)(_snapshot(y) for y in x)
    return copy.copy(x)


def _unchanged(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype == y.dtype and x.shape == y.shape and torch.equal(
            torch.nan_to_num(x, nan=1.2345), torch.nan_to_num(y, nan=1.2345))
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
    if sp.issparse(x):
        return (x != y).nnz == 0
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_unchanged(a, b) for a, b in zip(x, y))
    return True


class Recorder:
    """A callback that keeps a copy of every iterate it is called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, xk):
        self.calls.append(np.array(xk, dtype=float, copy=True))

    def stacked(self):
        return np.stack(self.calls) if self.calls else np.zeros((0,))


def run(fn, make):
    """(output, modified_input_names) of fn on fresh witness arguments."""
    args, kwargs = make()
    before = {i: _snapshot(a) for i, a in enumerate(args)}
    before.update({k: _snapshot(v) for k, v in kwargs.items() if not callable(v)})
    with np.errstate(all="ignore"):
        out = fn(*args, **kwargs)
    modified = [f"argument {i}" for i, a in enumerate(args) if not _unchanged(a, before[i])]
    modified += [k for k, v in kwargs.items() if not callable(v) and not _unchanged(v, before[k])]
    recorders = [v for v in kwargs.values() if isinstance(v, Recorder)]
    if recorders:
        out = (out, recorders[0].stacked())
    return out, modified


# ----------------------------------------------------------------------------- witnesses
def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(seed, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def rng(seed):
    return np.random.default_rng(seed)


def w_fwd(causal):
    def make():
        q, k, v = (randn(10 + i, 1, 2, 40, 16) for i in range(3))
        return (q, k, v), dict(causal=causal)
    return make


def w_bwd_triton(causal):
    def make():
        q, k, v, do = (randn(20 + i, 1, 2, 40, 16) for i in range(4))
        o, lse = kernels.flash_attention_forward_triton(q, k, v, causal)
        return (do, q, k, v, o, lse), dict(causal=causal)
    return make


def w_bwd(causal):
    def make():
        q, k, v, do = (randn(30 + i, 1, 2, 128, 16, dtype=torch.float64) for i in range(4))
        o, lse = attention.flash_attention_forward(q, k, v, causal)
        return (do, q, k, v, o, lse), dict(causal=causal)
    return make


def w_jac(shape, dtype):
    def make():
        return (torch.softmax(randn(40, *shape, dtype=torch.float64) * 2, dim=-1).to(dtype),), {}
    return make


def upper_with_garbage(n, seed):
    A = rng(seed).standard_normal((n, n))
    A[np.diag_indices(n)] += 4.0 * np.sign(A[np.diag_indices(n)])  # well away from 0
    return A  # the strictly lower triangle holds garbage a back substitution must not read


def w_back(int_y):
    def make():
        U = upper_with_garbage(6, 50)
        y = np.array([3, -1, 4, 1, -5, 9]) if int_y else rng(51).standard_normal(6)
        if int_y:
            U = np.triu(U)
        return (U, y), {}
    return make


def w_gauss(n, seed):
    def make():
        r = rng(seed)
        return (r.standard_normal((n, n)), r.standard_normal(n)), {}
    return make


def w_gauss_negative_column():
    A = np.array([[-1.0, 1.0], [1e-20, 1.0]])  # partial pivoting takes -1; a signed argmax the tiny 1e-20
    return (A, np.array([0.0, 1.0])), {}  # x = (1, 1)


def w_lu(n, seed):
    def make():
        return (rng(seed).standard_normal((n, n)),), {}
    return make


def w_blocked(n, block, seed):
    def make():
        return (rng(seed).standard_normal((n, n)), block), {}
    return make


def dominant_dense(n, seed):
    A = rng(seed).uniform(-1, 1, (n, n))
    A[np.diag_indices(n)] = np.abs(A).sum(1) + 0.5
    return A


def w_sweep(sparse, int_x=False, omega=None):
    def make():
        A = dominant_dense(7, 60)
        A[np.abs(A) < 0.3] = 0.0  # some structure for the CSR case
        A[np.diag_indices(7)] = np.abs(A).sum(1) + 0.5
        b = rng(61).standard_normal(7)
        x = np.array([1, -2, 0, 3, 1, -1, 2]) if int_x else rng(62).standard_normal(7)
        args = (sp.csr_array(A) if sparse else A, b, x)
        return (args + (omega,) if omega is not None else args), {}
    return make


def w_gs_converge():
    A, b, _ = systems.diagonally_dominant(30, 0.2, 3)
    x0 = 10 * rng(70).uniform(-1, 1, 30)
    return (A, b, x0), dict(rtol=1e-3, callback=Recorder())


def w_gs_maxiter0():
    A, b, _ = systems.diagonally_dominant(30, 0.2, 4)
    return (A, b), dict(maxiter=0, callback=Recorder())


def w_gs_diverge():
    A = systems.jacobi_not_gauss_seidel()
    return (A, A @ np.ones(3)), dict(maxiter=200, callback=Recorder())


def w_redblack(omega):
    def make():
        m = 5
        u = rng(80).uniform(-1, 1, (m + 2, m + 2))  # nonzero boundary and a starting interior
        f = rng(81).uniform(-1, 1, (m, m))
        return (u, f), dict(omega=omega)
    return make


def w_kv(*args, **kwargs):
    def make():
        return args, dict(kwargs)
    return make


def w_combine_split(dtype):
    def make():
        q = randn(90, 2, 4, 16, dtype=dtype)
        k, v = randn(91, 2, 2, 50, 16, dtype=dtype), randn(92, 2, 2, 50, 16, dtype=dtype)
        parts = decoding.split_partials(q, k, v, torch.tensor([50, 11]), num_splits=4)  # empty chunks for b = 1
        return tuple(parts), {}
    return make


def w_combine_far_heads():
    m = torch.randn(1, 3, 4, generator=gen(93), dtype=torch.float64) + torch.tensor([0.0, 900.0, -900.0]).view(1, 3, 1)
    l = torch.rand(1, 3, 4, generator=gen(94), dtype=torch.float64) + 0.5  # noqa: E741
    acc = torch.randn(1, 3, 4, 8, generator=gen(95), dtype=torch.float64)
    return (m, l, acc), {}


def w_paged():
    B, H, H_kv, P, D, num_pages, max_pages = 2, 4, 2, 4, 16, 12, 4
    k_pages, v_pages = randn(100, num_pages, H_kv, P, D), randn(101, num_pages, H_kv, P, D)
    block_table = torch.tensor([[7, 2, 10, 5], [3, 9, -1, -1]], dtype=torch.int32)  # shuffled, unused pages -1
    lengths = torch.tensor([13, 6])
    q = randn(102, B, H, D)
    return (q, k_pages, v_pages, block_table, lengths), {}


def w_decode(num_splits):
    def make():
        q = randn(110, 2, 4, 16)
        k, v = randn(111, 2, 2, 100, 16), randn(112, 2, 2, 100, 16)
        return (q, k, v, torch.tensor([100, 37])), dict(num_splits=num_splits)
    return make


def _ref_red_black(u, f, omega=1.0):
    return poisson.red_black_sweep(np.array(u, dtype=float), f, omega)


EXERCISES = {
    "flash_attention_forward_triton": (kernels.flash_attention_forward_triton, [w_fwd(False), w_fwd(True)]),
    "softmax_jacobian": (derivatives.softmax_jacobian,
                         [w_jac((3, 5), torch.float64), w_jac((6,), torch.float64), w_jac((2, 4), torch.float16)]),
    "flash_attention_backward": (attention_backward.flash_attention_backward, [w_bwd(False), w_bwd(True)]),
    "flash_attention_backward_triton": (kernels.flash_attention_backward_triton,
                                        [w_bwd_triton(False), w_bwd_triton(True)]),
    "back_substitution": (elimination.back_substitution, [w_back(False), w_back(True)]),
    "gaussian_elimination": (elimination.gaussian_elimination, [w_gauss(7, 1), w_gauss(5, 2), w_gauss_negative_column]),
    "lu_factor": (elimination.lu_factor, [w_lu(7, 3), w_lu(6, 4)]),
    "elimination_flops": (lambda ns: tuple(elimination.elimination_flops(n) for n in ns),
                          [lambda: ((tuple(range(0, 25)),), {})]),
    "blocked_lu": (elimination.lu_factor, [w_blocked(10, 3, 5), w_blocked(9, 4, 6)]),
    "gauss_seidel_sweep": (iterative.gauss_seidel_sweep, [w_sweep(False), w_sweep(True)]),
    "gauss_seidel": (iterative.gauss_seidel, [w_gs_converge, w_gs_maxiter0, w_gs_diverge]),
    "sor_sweep": (iterative.sor_sweep, [w_sweep(False, omega=1.3), w_sweep(True, omega=0.7),
                                        w_sweep(False, int_x=True, omega=1.3)]),
    "red_black_sweep": (_ref_red_black, [w_redblack(1.0), w_redblack(1.4)]),
    "kv_cache_bytes": (decoding.kv_cache_bytes, [w_kv(32, 8, 128, 8192), w_kv(2, 4, 64, 100, torch.float32, 3),
                                                 w_kv(3, 1, 16, 7, torch.bfloat16, 2)]),
    "combine_partials": (decoding.combine_partials, [w_combine_split(torch.float32), w_combine_split(torch.float64),
                                                     w_combine_far_heads]),
    "paged_attention": (decoding.paged_attention, [w_paged]),
    "flash_decode_triton": (ref_flash_decode_triton, [w_decode(None), w_decode(1)]),
}

# elimination_flops answers take one n: the witness maps them over a range of n
FLOPS_SEQ = "elimination_flops"


def adapt(exercise, fn):
    if exercise == FLOPS_SEQ:
        return lambda ns: tuple(fn(n) for n in ns)
    return fn


# ----------------------------------------------------------------------------- controls
def notebook_solutions():
    """The notebooks' exercise functions (solution included), imported from a temporary module."""
    header = (
        "import labkit\nimport math\nimport numpy as np\nimport scipy.linalg\nimport scipy.sparse as sp\n"
        "import torch\nimport triton\nimport triton.language as tl\n"
        "from labkit import decoding, elimination, iterative, poisson\n"
        "from labkit.decoding import check_decode_inputs\nfrom labkit.kernels import launch\n"
        "from labkit.kernels.flash_forward import LOG2E\n"
        "from labkit.kernels.decoding import decode_combine_kernel\n\n")
    cells = []
    for name in ("06_flash_attention_triton", "07_flash_attention_backward", "08_gaussian_elimination",
                 "09_gauss_seidel", "10_attention_at_inference"):
        with open(os.path.join(ROOT, "notebooks", name + ".ipynb"), encoding="utf-8") as fh:
            nb = json.load(fh)
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and "### BEGIN SOLUTION" in src:
                lines = [ln for ln in src.splitlines() if not ln.startswith("%%")]
                cells.append("\n".join(lines))
    path = os.path.join(tempfile.mkdtemp(prefix="blind_d_controls_"), "blind_d_controls.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(header + "\n\n".join(cells) + "\n")
    spec = importlib.util.spec_from_file_location("blind_d_controls", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- main
def judge(exercise, fn, references):
    """('DIFFERS' | 'SAME' | 'CRASH', reason)."""
    _, witnesses = EXERCISES[exercise]
    crashes = []
    for i, make in enumerate(witnesses):
        ref = references[i]
        try:
            out, modified = run(adapt(exercise, fn), make)
        except Exception as err:  # noqa: BLE001
            crashes.append(f"witness {i}: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}")
            continue
        if modified:
            return "DIFFERS", f"witness {i}: modified its input in place ({', '.join(modified)})"
        d = difference(out, ref)
        if d:
            return "DIFFERS", f"witness {i}: {d}"
    if crashes and len(crashes) == len(witnesses):
        return "CRASH", "; ".join(crashes)
    return "SAME", "; ".join(crashes) if crashes else "equal on every witness"


def main() -> int:
    torch.set_num_threads(1)
    references = {}
    for exercise, (ref_fn, witnesses) in EXERCISES.items():
        references[exercise] = [run(ref_fn, make)[0] for make in witnesses]

    ok = True
    print("== controls: the notebooks' solutions (must be SAME)")
    controls = notebook_solutions()
    for exercise in EXERCISES:
        verdict, reason = judge(exercise, getattr(controls, exercise), references[exercise])
        print(f"  {verdict:7} {exercise}: {reason}")
        ok &= verdict == "SAME"

    print(f"\n== {len(blind.WRONG)} wrong answers (must DIFFER)")
    counts = Counter(w.exercise for w in blind.WRONG)
    for w in blind.WRONG:
        try:
            verdict, reason = judge(w.exercise, w.fn, references[w.exercise])
        except Exception:  # noqa: BLE001
            verdict, reason = "CRASH", traceback.format_exc(limit=1).strip().splitlines()[-1]
        print(f"  {verdict:7} {w.exercise}: {w.mistake[:90]}...\n          -> {reason}")
        ok &= verdict == "DIFFERS"

    print("\n== answers per exercise")
    for exercise in EXERCISES:
        print(f"  {counts.get(exercise, 0)}  {exercise}")
        ok &= counts.get(exercise, 0) == 4
    unknown = set(counts) - set(EXERCISES)
    if unknown:
        print("  unknown exercises:", sorted(unknown))
        ok = False
    print("\nPASS" if ok else "\nFAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
