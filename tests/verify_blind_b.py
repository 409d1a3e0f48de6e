"""Run every wrong answer of tests/wrong_answers_blind_b.py on its witness and compare with labkit's reference.

A wrong answer "differs" when, on its witness input, its result differs from the reference's (values
beyond a tight tolerance, shape, dtype, or int versus float), when the calls it makes to a callback
differ, or when it modifies an input that the reference leaves alone. It must differ for every entry.

    .venv/bin/python tests/verify_blind_b.py [substring-of-exercise ...]
"""
from __future__ import annotations

import copy
import os
import sys
import time
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402,F401  (first: Triton's interpreter on a CPU)
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from labkit import attention_backward, derivatives, elimination, iterative, poisson  # noqa: E402

import wrong_answers_blind_b as blind  # noqa: E402


def _rb_reference(u, f, omega=1.0):
    return poisson.red_black_sweep(np.array(u, dtype=float), f, omega)  # labkit's works in place: give it a copy


def _gs_reference(A, b, x0=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return iterative.gauss_seidel(A, b, x0, **kw)


def _triton_reference(do, q, k, v, o, lse, causal=False, scale=None):
    return attention_backward.flash_attention_backward(do, q, k, v, o, lse, causal, scale)


REFERENCE = {
    "softmax_jacobian": derivatives.softmax_jacobian,
    "flash_attention_backward": attention_backward.flash_attention_backward,
    "flash_attention_backward_triton": _triton_reference,
    "back_substitution": elimination.back_substitution,
    "gaussian_elimination": elimination.gaussian_elimination,
    "lu_factor": elimination.lu_factor,
    "elimination_flops": elimination.elimination_flops,
    "blocked_lu": elimination.lu_factor,  # lu_factor(A, block): the same factors whatever the block
    "gauss_seidel_sweep": iterative.gauss_seidel_sweep,
    "sor_sweep": iterative.sor_sweep,
    "red_black_sweep": _rb_reference,
    "gauss_seidel": _gs_reference,
}


def _tol(dtype):
    if dtype in (torch.float64, np.float64):
        return 1e-9, 1e-11
    if dtype in (torch.float16, torch.bfloat16, np.float16):
        return 1e-2, 1e-3
    return 1e-3, 1e-4


def differences(a, b, path="result") -> list[str]:
    """Where a (wrong answer) and b (reference) differ; [] when they agree."""
    if isinstance(b, (tuple, list)):
        if not isinstance(a, (tuple, list)) or len(a) != len(b):
            return [f"{path}: {type(a).__name__} of length {len(a) if hasattr(a, '__len__') else '?'} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(b, blind.Recorder):
        return differences(a.calls, b.calls, f"{path}.calls")
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            return [f"{path}: {type(a).__name__} vs Tensor"]
        if a.shape != b.shape:
            return [f"{path}: shape {tuple(a.shape)} vs {tuple(b.shape)}"]
        if a.dtype != b.dtype:
            return [f"{path}: dtype {a.dtype} vs {b.dtype}"]
        rtol, atol = _tol(b.dtype)
        if not torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True):
            return [f"{path}: max |diff| {(a.double() - b.double()).abs().nan_to_num(float('inf')).max().item():.3g}"]
        return []
    if sp.issparse(b):
        return differences(a.toarray() if sp.issparse(a) else a, b.toarray(), path)
    if isinstance(b, np.ndarray):
        a_arr = np.asarray(a)
        if a_arr.shape != b.shape:
            return [f"{path}: shape {a_arr.shape} vs {b.shape}"]
        if a_arr.dtype.kind != b.dtype.kind:
            return [f"{path}: dtype {a_arr.dtype} vs {b.dtype}"]
        rtol, atol = _tol(b.dtype)
        if not np.allclose(a_arr, b, rtol=rtol, atol=atol, equal_nan=True):
            with np.errstate(all="ignore"):
                gap = np.nan_to_num(np.abs(a_arr.astype(float) - b.astype(float)), nan=np.inf).max()
            return [f"{path}: max |diff| {gap:.3g}"]
        return []
    if isinstance(b, (int, np.integer, float, np.floating)):
        if isinstance(b, (int, np.integer)) != isinstance(a, (int, np.integer)) or isinstance(a, bool):
            return [f"{path}: {type(a).__name__} {a!r} vs {type(b).__name__} {b!r}"]
        if not np.isclose(a, b, rtol=1e-12, atol=0):
            return [f"{path}: {a!r} vs {b!r}"]
        return []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def _recorders(kwargs):
    return {k: v for k, v in kwargs.items() if isinstance(v, blind.Recorder)}


def verify(wrong, witness):
    """(differs, why) for one wrong answer on its witness."""
    args, kwargs = witness()
    ref_args, ref_kwargs = witness()  # a fresh copy of the same input for the reference
    originals = copy.deepcopy(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = wrong.fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - a crash on a valid input also differs, but say so
        return True, f"RAISES {type(err).__name__}: {err}".splitlines()[0][:160]
    expected = REFERENCE[wrong.exercise](*ref_args, **ref_kwargs)
    why = differences(got, expected)
    for name, rec in _recorders(kwargs).items():
        why += differences(rec, ref_kwargs[name], f"callback {name}")
    for i, (now, before) in enumerate(zip(args, originals)):
        if differences(now, before, f"input {i}"):
            why.append(f"input {i} modified")
    return bool(why), "; ".join(why)[:200]


def main(filters):
    rows, failures, crashes = [], [], 0
    counts = {}
    for n, (wrong, witness) in enumerate(zip(blind.WRONG, blind.WITNESS)):
        if filters and not any(f in wrong.exercise for f in filters):
            continue
        t0 = time.perf_counter()
        try:
            differs, why = verify(wrong, witness)
        except Exception:  # noqa: BLE001
            differs, why = False, "VERIFY ERROR " + traceback.format_exc().splitlines()[-1]
        dt = time.perf_counter() - t0
        crashes += why.startswith("RAISES")
        counts.setdefault(wrong.exercise, [0, 0])
        counts[wrong.exercise][0] += 1
        counts[wrong.exercise][1] += differs
        print(f"[{n:2d}] {'DIFFERS' if differs else 'SAME   '} {wrong.exercise:32} {dt:6.2f}s  {why}")
        print(f"      mistake: {wrong.mistake}")
        if not differs:
            failures.append(n)
    assert len(blind.WRONG) == len(blind.WITNESS), "WRONG and WITNESS must have the same length"
    print("\nper exercise (differs / total):")
    for ex, (total, ok) in counts.items():
        print(f"  {ex:34} {ok:2d} / {total:2d}")
    total = sum(c[0] for c in counts.values())
    print(f"\nSUMMARY: {total - len(failures)} of {total} wrong answers differ from the reference on their witness"
          f" ({crashes} by raising); not differing: {failures or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
