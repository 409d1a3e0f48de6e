"""Check that every answer of wrong_answers_blind_c differs from labkit's reference on some witness input.

Run from the repository root: ``.venv/bin/python tests/verify_blind_c.py``. For each answer it runs
the witness inputs of its exercise through the answer and the reference and prints DIFFERS (some
witness gives different values beyond 1e-3 relative in float32 / 1e-2 in float16, or a different
shape, dtype or type, or NaN/inf where the reference is finite), CRASH (no witness differs and
some raised) or SAME. Exit status 0 only when every answer DIFFERS.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labkit  # noqa: E402,F401  (first: Triton's interpreter on CPU)
import torch  # noqa: E402

from labkit import attention, hbm, softmax  # noqa: E402
from labkit import kernels  # noqa: E402
from wrong_answers_blind_c import WRONG  # noqa: E402

TOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-3, torch.float64: 1e-3}


def differs(out, ref) -> str:
    """'' when out matches ref; otherwise why it differs."""
    if type(out) is not type(ref):
        if not (isinstance(out, (int, float)) and isinstance(ref, (int, float))
                and not isinstance(out, bool) and not isinstance(ref, bool)):
            return f"type {type(out).__name__} != {type(ref).__name__}"
    if isinstance(ref, tuple):
        if len(out) != len(ref):
            return f"length {len(out)} != {len(ref)}"
        for i, (a, b) in enumerate(zip(out, ref)):
            why = differs(a, b)
            if why:
                return f"[{i}] {why}"
        return ""
    if isinstance(ref, torch.Tensor):
        if out.shape != ref.shape:
            return f"shape {tuple(out.shape)} != {tuple(ref.shape)}"
        if out.dtype != ref.dtype:
            return f"dtype {out.dtype} != {ref.dtype}"
        a, b = out.detach().double().cpu(), ref.detach().double().cpu()
        fin = torch.isfinite(b)
        if (~torch.isfinite(a) & fin).any():
            return "NaN/inf where the reference is finite"
        same_nonfinite = (torch.isnan(a) & torch.isnan(b)) | (a == b)
        if (~fin & ~same_nonfinite).any():
            return "different non-finite values (NaN vs inf, or finite where the reference is not)"
        if fin.any():
            tol = TOL.get(ref.dtype, 1e-3)
            scale = b[fin].abs().max().item()
            err = (a[fin] - b[fin]).abs()
            bad = err > tol * b[fin].abs() + tol * scale * 1e-2
            if bad.any():
                return f"values differ (max abs error {err.max().item():.3g})"
        return ""
    if isinstance(ref, (int, float)):
        if isinstance(ref, int) and isinstance(out, int):
            return "" if out == ref else f"{out} != {ref}"
        if math.isnan(ref) or math.isnan(out):
            return "" if (math.isnan(ref) and math.isnan(out)) else f"{out} != {ref}"
        return "" if abs(out - ref) <= 1e-3 * abs(ref) else f"{out} != {ref}"
    return "" if out == ref else f"{out!r} != {ref!r}"


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=g(seed)).to(dtype)


def _neg_inf_rows(x: torch.Tensor, row: int) -> torch.Tensor:
    x = x.clone()
    x[row] = float("-inf")
    return x


def _states(m: list[float], d: list[float]) -> softmax.OnlineState:
    return softmax.OnlineState(torch.tensor(m, dtype=torch.float32), torch.tensor(d, dtype=torch.float32))


INF = float("inf")

# exercise -> (reference, [(args, kwargs), ...])
WITNESSES = {
    "normalize": (softmax.normalize, [
        ((torch.rand(3, 5, generator=g(1)) + 0.1,), {"dim": 0}),
        ((torch.rand(4, 6, generator=g(2)).half() + 0.1,), {"dim": -1}),
        ((torch.rand(3, 5, generator=g(3)) * 1e-7,), {"dim": -1}),
        ((torch.rand(4, 4, generator=g(4)) + 0.1,), {"dim": -1}),
    ]),
    "naive_softmax": (softmax.naive_softmax, [
        ((torch.linspace(-2, 12, 24).reshape(3, 8).half(),), {"dim": -1}),
        ((randn(3, 5, seed=5),), {"dim": -1}),
        ((randn(3, 5, seed=6, dtype=torch.float64) * 50 + 100,), {"dim": -1}),
    ]),
    "overflow_threshold": (softmax.overflow_threshold, [
        ((torch.float32,), {}), ((torch.float16,), {}), ((torch.float64,), {}),
    ]),
    "safe_softmax": (softmax.safe_softmax, [
        ((torch.stack([randn(5, seed=7), randn(5, seed=8) - 1000]),), {"dim": -1}),
        ((randn(4, 4, seed=9) * 3,), {"dim": -1}),
        ((randn(3, 5, seed=10) * 3,), {"dim": 0}),
    ]),
    "logsumexp": (softmax.logsumexp, [
        ((_neg_inf_rows(randn(3, 5, seed=11), 1),), {"dim": -1}),
        ((torch.tensor([[0.0, 200.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]]),), {"dim": -1}),
        ((randn(3, 1, 5, seed=12),), {"dim": -1}),
        ((randn(3, 5, seed=13),), {"dim": -1}),
    ]),
    "softmax_triton": (kernels.softmax_triton, [
        ((randn(4, 20, seed=14),), {}),
        ((randn(6, 37, seed=15, dtype=torch.float16),), {}),
    ]),
    "merge_states": (softmax.merge_states, [
        ((_states([1, 5, -INF, 0, 2, -INF], [2, 1, 0, 3, 1, 0]),
          _states([3, 2, -INF, 0, -INF, 1], [1, 4, 0, 2, 0, 2])), {}),
    ]),
    "merge_states_many": (lambda states: functools.reduce(softmax.merge_states, states), [
        (([_states([1.0, -2.0, 0.5, -INF, -200.0], [2, 1, 3, 0, 1]),
           _states([-1.0, 3.0, 0.5, -INF, -201.0], [1, 2, 1, 0, 2]),
           _states([2.0, -1.0, -INF, -INF, -199.0], [4, 1, 0, 0, 1]),
           _states([0.0, 1.0, 2.0, -INF, -202.0], [1, 3, 2, 0, 3])],), {}),
    ]),
    "online_softmax": (softmax.online_softmax, [
        ((randn(3, 300, seed=16) * 3,), {"dim": -1, "block_size": 64}),
        ((randn(4, 6, seed=17),), {"dim": 0, "block_size": 2}),
        ((torch.cat([torch.full((2, 64), -INF), randn(2, 136, seed=18)], dim=1),),
         {"dim": -1, "block_size": 64}),
    ]),
    "online_softmax_triton": (lambda x, block=64: kernels.online_softmax_triton(x, block_size=block), [
        ((randn(3, 200, seed=19) * 3,), {"block": 64}),
        ((randn(2, 100, seed=20) - 200,), {"block": 64}),
        ((randn(3, 100, seed=21, dtype=torch.float16),), {"block": 32}),
    ]),
}


def _qkv(n_q, n_kv, D=16, seed=0, dtype=torch.float32):
    return (randn(1, 2, n_q, D, seed=seed, dtype=dtype), randn(1, 2, n_kv, D, seed=seed + 1, dtype=dtype),
            randn(1, 2, n_kv, D, seed=seed + 2, dtype=dtype))


def _spiky():
    """Scores +120 on the first key tile, -120 on the second (scale=1): the running max must not drop."""
    q = torch.ones(1, 1, 64, 4)
    k = torch.cat([torch.full((1, 1, 32, 4), 30.0), torch.full((1, 1, 32, 4), -30.0)], dim=2)
    v = randn(1, 1, 64, 4, seed=30)
    return q, k, v


WITNESSES.update({
    "naive_attention": (attention.naive_attention, [
        (_qkv(16, 16, 8, seed=22), {"causal": False, "scale": 0.0}),
        (_qkv(16, 16, 8, seed=25), {"causal": True}),
        (_qkv(12, 20, 8, seed=28), {"causal": False}),
    ]),
    "tiled_attention": (attention.tiled_attention, [
        (_qkv(40, 100, seed=31), {"block_q": 16, "block_k": 32}),
        (_qkv(40, 40, seed=34, dtype=torch.float16), {"block_q": 16, "block_k": 16}),
    ]),
    "flash_attention_forward": (attention.flash_attention_forward, [
        (_qkv(100, 100, seed=37), {"causal": False, "block_q": 32, "block_k": 32}),
        (_qkv(100, 100, seed=40), {"causal": True, "block_q": 32, "block_k": 16}),
        (_spiky(), {"causal": False, "scale": 1.0, "block_q": 32, "block_k": 32}),
    ]),
    "flash_hbm_accesses": (hbm.flash_hbm_accesses, [
        ((1000, 64, 1000), {}), ((1001, 64, 1024), {}), ((4096, 64, 100_000), {}),
    ]),
})


def verdict(answer) -> tuple[str, str]:
    ref_fn, witnesses = WITNESSES[answer.exercise]
    crashes = []
    for i, (args, kwargs) in enumerate(witnesses):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ref_fn(*args, **kwargs)
            try:
                out = answer.fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001  a crash is evidence, not a difference
                crashes.append(f"witness {i}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
                continue
        why = differs(out, ref)
        if why:
            return "DIFFERS", f"witness {i}: {why}"
    if crashes:
        return "CRASH", "; ".join(crashes)
    return "SAME", ""


def main() -> int:
    from collections import Counter

    counts = Counter(a.exercise for a in WRONG)
    ok = True
    for answer in WRONG:
        status, why = verdict(answer)
        ok &= status == "DIFFERS"
        print(f"{status:8} {answer.exercise:24} {answer.fn.__name__:46} {why}")
    print("answers per exercise:", dict(counts))
    missing = set(WITNESSES) - set(counts)
    if missing or any(n != 4 for n in counts.values()) or len(WRONG) != 56:
        print("expected 4 answers for each of the 14 exercises, 56 in all; missing:", sorted(missing))
        ok = False
    print("all answers differ from the reference" if ok else "SOME ANSWERS DO NOT DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
