"""Run every wrong answer of wrong_answers_blind_a on its witness input and check it differs from labkit.

Usage (from the repository root): .venv/bin/python tests/verify_blind_a.py
Prints one line per wrong answer (DIFFERS / SAME / CRASH) and a summary; exits 1 unless all differ.
A difference is: another type, shape or dtype, NaN/inf where the reference has none (or the other way
round), values apart by more than the dtype's tolerance, or the input tensors modified in place.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402,F401  (first: Triton's interpreter on CPU)
import torch  # noqa: E402
from labkit import attention, hbm, kernels, softmax  # noqa: E402

import wrong_answers_blind_a as blind  # noqa: E402

REFERENCE = {
    "normalize": softmax.normalize,
    "naive_softmax": softmax.naive_softmax,
    "overflow_threshold": softmax.overflow_threshold,
    "logsumexp": softmax.logsumexp,
    "safe_softmax": softmax.safe_softmax,
    "softmax_triton": kernels.softmax_triton,
    "merge_states": softmax.merge_states,
    "merge_states_many": lambda states: functools.reduce(softmax.merge_states, states),
    "online_softmax": softmax.online_softmax,
    "online_softmax_triton": lambda x, block=64: kernels.online_softmax_triton(x, block_size=block),
    "naive_attention": attention.naive_attention,
    "tiled_attention": attention.tiled_attention,
    "flash_hbm_accesses": hbm.flash_hbm_accesses,
    "flash_attention_forward": attention.flash_attention_forward,
    "flash_attention_forward_triton": kernels.flash_attention_forward_triton,
}

# tolerance by dtype of the reference (tight: a difference must be real, not rounding)
TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3),
       torch.bfloat16: (1e-2, 1e-2)}


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def difference(got, ref) -> str | None:
    """Why got differs from ref, or None when they agree."""
    if isinstance(ref, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"type {type(got).__name__} instead of a tensor"
        if got.shape != ref.shape:
            return f"shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
        if got.dtype != ref.dtype:
            return f"dtype {got.dtype} instead of {ref.dtype}"
        g, r = got.double(), ref.double()
        if not torch.equal(torch.isnan(g), torch.isnan(r)):
            return f"NaN pattern differs ({int(torch.isnan(g).sum())} NaN vs {int(torch.isnan(r).sum())})"
        fin = torch.isfinite(r) & torch.isfinite(g)
        if not torch.equal(torch.isinf(g), torch.isinf(r)) or not torch.equal(g[torch.isinf(r)], r[torch.isinf(r)]):
            return "inf pattern differs"
        atol, rtol = TOL.get(ref.dtype, (1e-5, 1e-5))
        err = (g[fin] - r[fin]).abs()
        bound = atol + rtol * r[fin].abs()
        if err.numel() and bool((err > bound).any()):
            return f"max abs error {err.max().item():.3g} (tolerance {atol:g} + {rtol:g}|ref|)"
        return None
    if isinstance(ref, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(ref):
            return f"{type(got).__name__} instead of a {len(ref)}-tuple"
        for i, (a, b) in enumerate(zip(got, ref)):
            why = difference(a, b)
            if why:
                return f"[{i}] {why}"
        return None
    if isinstance(ref, int) and not isinstance(ref, bool):
        if isinstance(got, torch.Tensor) or got != ref:
            return f"{got!r} instead of {ref!r}"
        return None
    if isinstance(ref, float):
        if isinstance(got, torch.Tensor):
            return f"a tensor ({got!r}) instead of a Python number"
        if not (isinstance(got, (int, float)) and math.isclose(got, ref, rel_tol=1e-9, abs_tol=1e-12)):
            return f"{got!r} instead of {ref!r}"
        return None
    return None if got == ref else f"{got!r} instead of {ref!r}"


def main() -> int:
    counts: dict[str, list[int]] = {}
    n_diff = n_same = n_crash = 0
    for i, wa in enumerate(blind.WRONG):
        t0 = time.time()
        args, kwargs = blind.WITNESS[i]()
        before = [t.clone() for t in _tensors((args, kwargs))]
        try:
            got = wa.fn(*args, **kwargs)
        except Exception as err:  # a wrong answer must differ, not crash
            status, why = "CRASH", f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        else:
            after = _tensors((args, kwargs))
            mutated = any(not torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)) or a.dtype != b.dtype
                          for a, b in zip(before, after))
            ref_args, ref_kwargs = blind.WITNESS[i]()  # fresh inputs for the reference
            ref = REFERENCE[wa.exercise](*ref_args, **ref_kwargs)
            why = difference(got, ref)
            if mutated:
                why = (why + "; " if why else "") + "input modified in place"
            status = "DIFFERS" if why else "SAME"
        n_diff += status == "DIFFERS"
        n_same += status == "SAME"
        n_crash += status == "CRASH"
        c = counts.setdefault(wa.exercise, [0, 0])
        c[0] += 1
        c[1] += status == "DIFFERS"
        print(f"{i:3d} {status:7s} {wa.exercise:31s} {wa.fn.__name__:36s} {why or ''}  "
              f"[{time.time() - t0:.1f}s] witness: {blind.witness(i)}")
    print()
    for ex, (n, d) in counts.items():
        print(f"  {ex:31s} {d}/{n} differ")
    total = len(blind.WRONG)
    print(f"\n{n_diff}/{total} wrong answers differ from labkit's reference on their witness "
          f"({n_same} same, {n_crash} crash)")
    return 0 if n_diff == total else 1


if __name__ == "__main__":
    sys.exit(main())
