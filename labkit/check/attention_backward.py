"""Checker for notebook 07's Exercise 7.1, the FlashAttention-2 backward in PyTorch tiles.

Cases compare (dq, dk, dv) with autograd through float64 attention; the probes
(``attention_backward_probes``) name the mistake. The Triton checker (``attention_backward_triton``)
uses the same reference, comparison and probes on the dK/dV side.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from labkit.check.attention import exact_attention, qkv, rising
from labkit.check.attention_backward_probes import HINTS, P_LSE, TILES, backward_args, dq_probes, p_probes
from labkit.check.core import Case, Checker, DtypeMismatch, checker, describe
from labkit.check.tolerance import assert_close

# ---------------------------------------------------------------------------- the reference

@dataclass
class Grads:
    """Expected (dq, dk, dv): float64 autograd gradients, and for fp16 the plain same-dtype ones (baseline)."""

    dtype: torch.dtype
    grads: tuple
    baseline: tuple


def reference(do, q, k, v, o=None, lse=None, causal=False, scale=None, block_q=64, block_k=64) -> Grads:
    """Autograd through float64 softmax attention (and through the inputs' own dtype for fp16)."""
    def autograd(dtype):
        leaves = [x.detach().to(dtype).requires_grad_() for x in (q, k, v)]
        return torch.autograd.grad(exact_attention(*leaves, causal, scale, dtype=dtype)[2], leaves, do.to(dtype))
    low = q.dtype in (torch.float16, torch.bfloat16)
    return Grads(q.dtype, autograd(torch.float64), autograd(q.dtype) if low else (None,) * 3)


def compare_grads(out, expected: Grads, order=(0, 1, 2), given=()) -> None:
    """(dq, dk, dv) against ``expected``, checked in ``order``; ``given`` names gradients the student did not write."""
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise AssertionError(f"returned {describe(out)}, expected a tuple (dq, dk, dv)")
    for i in order:
        what = ("dq", "dk", "dv")[i] + (" (from the given code, not your part)" if i in given else "")
        g, e = out[i], expected.grads[i]
        if not isinstance(g, torch.Tensor):
            raise AssertionError(f"{what}: returned {type(g).__name__}, expected a torch.Tensor")
        if g.dtype != expected.dtype:
            raise DtypeMismatch(f"{what}: dtype {g.dtype}, expected {expected.dtype}")
        assert_close(g, e, dtype=expected.dtype, baseline=expected.baseline[i], what=what)


# ------------------------------------------------------------------------- the checker


@checker
def flash_attention_backward() -> Checker:
    """fn(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64) -> (dq, dk, dv) (notebook 07, 7.1).

    dq, dk, dv have q's, k's, v's shape and dtype.
    dV = Pᵀ dO, with P = exp(S − lse) rebuilt from the saved lse (not a per-tile softmax or max).
    dS = P ∘ (dP − D), dP = dO Vᵀ, D_i = rowsum(dO_i ∘ O_i) over the whole row.
    dQ = scale · dS K and dK = scale · dSᵀ Q, with the given scale (1/√D by default).
    causal: P = 0 for the keys j > i, also in the backward.
    dQ accumulates over the key tiles, dK and dV over the query tiles; the last, partial tiles count.
    N_q ≠ N_kv (cross-attention); float16 inputs.
    """
    tiles = {"block_q": 4, "block_k": 4}
    grads = "dV = Pᵀ dO, dS = P ∘ (dP − D), dQ = scale · dS K, dK = scale · dSᵀ Q, added up over all tiles"
    cases = [
        Case("N=16, tiles 4 x 4", backward_args(*qkv(1, 2, 16, 16, 8, seed=71), seed=1), tiles, hint=grads),
        Case("scores rising along the keys: each tile's max differs from the row's",
             backward_args(*rising(16, 8, seed=72), seed=2), tiles, hint=P_LSE),
        Case("N=13, tiles 4 x 4 (last tiles partial)", backward_args(*qkv(1, 2, 13, 13, 8, seed=73), seed=3),
             tiles, hint=TILES),
        Case("cross-attention: N_q=5, N_kv=19, tiles 4 x 8", backward_args(*qkv(2, 1, 5, 19, 8, seed=74), seed=4),
             {"block_q": 4, "block_k": 8}, hint=HINTS["N_q != N_kv"]),
        Case("causal, N=13, tiles 4 x 4", backward_args(*qkv(1, 2, 13, 13, 8, seed=75), True, seed=5),
             {"causal": True, **tiles}, hint="causal: P = 0 for the keys j > i, in the backward too"),
        Case("causal, N=16, tiles 8 x 4, scale=0.5", backward_args(*qkv(1, 2, 16, 16, 8, seed=76), True, 0.5,
                                                                   seed=6),
             {"causal": True, "scale": 0.5, "block_q": 8, "block_k": 4},
             hint="use the given scale: S = scale · Q Kᵀ, dQ = scale · dS K, dK = scale · dSᵀ Q"),
        Case("float16, causal, N=10, tiles 4 x 4", backward_args(
            *qkv(1, 2, 10, 10, 8, seed=77, dtype=torch.float16), True, seed=7), {"causal": True, **tiles},
            hint="float16 inputs: compute in float32, return float16 gradients"),
        Case("scores up to 139: exp(S) overflows float32, exp(S − lse) does not",
             backward_args(*qkv(1, 2, 8, 8, 8, seed=78, scale=6.0), seed=8), tiles,
             hint="rebuild P as exp(S − lse), one exponent: exp(S) alone overflows once a score passes 88.7"),
    ]
    return Checker("flash_attention_backward", cases, reference,
                   p_probes(tiles, (4,), n_kv=14, n_q_acc=14, student_dq=True) + dq_probes(tiles), compare=compare_grads)
