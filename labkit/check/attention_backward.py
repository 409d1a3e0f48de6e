"""Checker for the FlashAttention backward exercise of notebook 07 (P rebuilt from lse, D = rowsum(dO ∘ O))."""
from __future__ import annotations

import math

import torch

from labkit import attention as ref
from labkit.check.attention import _qkv, _rising
from labkit.check.core import Case, assert_close, compare_outputs, describe, misconceptions, run_checker

# ---------------------------------------------------------------------------- inputs


def _case_args(q, k, v, causal=False, scale=None, *, seed: int):
    """(do, q, k, v, o, lse): an upstream gradient and the forward's o and lse for q, k, v."""
    g = torch.Generator().manual_seed(seed)
    do = torch.randn(q.shape, generator=g, dtype=torch.float64).to(q.dtype)
    o, lse = ref.flash_attention_forward(q, k, v, causal, scale)
    return do, q, k, v, o, lse


class _Expected:
    """Float64 gradients of a case, with plain same-dtype autograd gradients as the fp16 baseline."""

    def __init__(self, do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
        self.dtype = q.dtype
        self.grads = ref.recompute_attention_backward(
            *(x.double() for x in (do, q, k, v)), causal, scale)
        self.baseline = (None,) * 3
        if q.dtype != torch.float32:
            leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
            self.baseline = torch.autograd.grad(ref.naive_attention(*leaves, causal, scale), leaves, do)


def compare_grads(out, expected) -> None:
    """(dq, dk, dv) against an expectation's float64 ``grads`` (fp16: the low-precision rule with its
    ``baseline``), or against a mutant's output. Shared with the Triton backward checker."""
    if not hasattr(expected, "grads"):  # a mutant's (dq, dk, dv)
        compare_outputs(out, expected)
        return
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise AssertionError(f"returned {describe(out)}, expected a tuple (dq, dk, dv)")
    for what, g, e, b in zip(("dq", "dk", "dv"), out, expected.grads, expected.baseline):
        if not isinstance(g, torch.Tensor):
            raise AssertionError(f"{what}: returned {type(g).__name__}, expected a torch.Tensor")
        if g.dtype != expected.dtype:
            raise AssertionError(f"{what}: dtype {g.dtype}, expected {expected.dtype}")
        assert_close(g, e, dtype=expected.dtype, baseline=b, what=what)


# ----------------------------------------------------------- misconceptions (mutants)


def _backward_variant(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64, *,
                      mistake):
    """The tiled backward (K/V tiles outer, query tiles inner) in float64, with one deliberate mistake."""
    dtype = q.dtype
    s_ = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    do, q, k, v, o, lse = (x.double() for x in (do, q, k, v, o, lse))
    n_q, n_kv = q.shape[2], k.shape[2]
    delta = (do * o).sum(-1, keepdim=True)  # (B, H, N_q, 1)
    s_full = (q @ k.transpose(-2, -1)) * s_
    if causal:
        s_full = s_full.masked_fill(torch.ones(n_q, n_kv, dtype=torch.bool).triu(1), -math.inf)
    row_max = s_full.amax(-1, keepdim=True)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j0 in range(0, n_kv, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
        for i0 in range(0, n_q, block_q):
            i1 = min(i0 + block_q, n_q)
            if causal and i1 - 1 < j0 and mistake != "no mask":
                continue  # the whole tile lies above the diagonal
            sl = slice(i0, i1)
            s = (q[:, :, sl] @ k_j.transpose(-2, -1)) * s_
            if causal and mistake not in ("no mask", "diagonal not masked"):
                hidden = torch.arange(j0, j0 + s.shape[-1])[None, :] > torch.arange(i0, i1)[:, None]
                s = s.masked_fill(hidden, -math.inf)
            p = {"tile max": lambda: torch.exp(s - s.amax(-1, keepdim=True)),
                 "tile softmax": lambda: torch.softmax(s, -1),
                 "row max": lambda: torch.exp(s - row_max[:, :, sl]),
                 "lse not subtracted": lambda: torch.exp(s),
                 }.get(mistake, lambda: torch.exp(s - lse[:, :, sl, None]))()
            dv_ij = p @ do[:, :, sl] if mistake == "P dO" else p.transpose(-2, -1) @ do[:, :, sl]
            dp = do[:, :, sl] @ v_j.transpose(-2, -1)
            d_i = {"no D": 0.0, "D from one tile": (dp * p).sum(-1, keepdim=True)}.get(
                mistake, delta[:, :, sl])
            ds = p * (dp - d_i)
            dq_ij = ds @ k_j * (1.0 if mistake == "dq unscaled" else s_)
            dk_ij = ds.transpose(-2, -1) @ q[:, :, sl] * (1.0 if mistake == "dk unscaled" else s_)
            if mistake == "dq overwritten":
                dq[:, :, sl] = dq_ij
            else:
                dq[:, :, sl] += dq_ij
            if mistake == "dk, dv overwritten":
                dk[:, :, j0:j0 + block_k], dv[:, :, j0:j0 + block_k] = dk_ij, dv_ij
            else:
                dk[:, :, j0:j0 + block_k] += dk_ij
                dv[:, :, j0:j0 + block_k] += dv_ij
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


_P_FROM_LSE = "rebuild P = exp(S − lse) with the saved lse of the whole row"
_MASK = ("causal mask missing in the backward: mask the keys j > i of the diagonal tiles (P = 0 "
         "there, like the forward) and skip the tiles above the diagonal")
_HINTS = {
    "no D": "the D term is missing: dS = P ∘ (dP − D) with D_i = rowsum(dO_i ∘ O_i), not P ∘ dP",
    "D from one tile": "D_i = rowsum(dO_i ∘ O_i) sums over the whole row; rowsum(dP ∘ P) over one "
                       "key tile misses the others (compute D once, before the loops)",
    "dq unscaled": "the scale is missing on dQ: dQ = dS K · scale (S = scale · Q Kᵀ)",
    "dk unscaled": "the scale is missing on dK: dK = dSᵀ Q · scale (S = scale · Q Kᵀ)",
    "tile max": f"P is built from each tile's own max: {_P_FROM_LSE}, which already holds the "
                "max and the log-sum",
    "tile softmax": f"a softmax over one key tile normalises over that tile only: {_P_FROM_LSE}",
    "row max": f"the row max alone leaves P unnormalised: {_P_FROM_LSE} (lse = m + log l)",
    "lse not subtracted": f"exp(S) overflows and is unnormalised: {_P_FROM_LSE}",
    "no mask": _MASK,
    "diagonal not masked": _MASK,
    "P dO": "dV = Pᵀ dO (a (T_k, D) tile for the keys), not P · dO: transpose P",
    "dq overwritten": "dQ_i accumulates over all key tiles: dQ_i += dS K_j · scale, not =",
    "dk, dv overwritten": "dK_j and dV_j accumulate over all query tiles: dK_j += ..., dV_j += ..., "
                          "not =",
}


# ------------------------------------------------------------------------- the checker


def flash_attention_backward(fn) -> None:
    """Check fn(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64) -> (dq, dk, dv) (notebook 07).

    Small cases: square tiles first, then scores rising along the keys (each tile's max far
    from the row's), ragged tiles, cross-attention, causal, a given scale and one float16 case.
    """
    tiles = {"block_q": 4, "block_k": 4}
    cases = [
        Case("N=16, tiles 4 x 4", _case_args(*_qkv(1, 2, 16, 16, 8, seed=71), seed=1), tiles),
        Case("scores rising along the keys: each tile's max differs from the row's",
             _case_args(*_rising(16, 8, seed=72), seed=2), tiles),
        Case("N=13, tiles 4 x 4 (last tiles partial)", _case_args(*_qkv(1, 2, 13, 13, 8, seed=73),
                                                                  seed=3), tiles,
             hint="the last tiles are shorter: slice [j:j + block] and loop with range(0, N, block)"),
        Case("cross-attention: N_q=5, N_kv=19, tiles 4 x 8",
             _case_args(*_qkv(2, 1, 5, 19, 8, seed=74), seed=4), {"block_q": 4, "block_k": 8}),
        Case("causal, N=13, tiles 4 x 4", _case_args(*_qkv(1, 2, 13, 13, 8, seed=75), True, seed=5),
             {"causal": True, **tiles}),
        Case("causal, N=16, tiles 8 x 4, scale=0.5",
             _case_args(*_qkv(1, 2, 16, 16, 8, seed=76), True, 0.5, seed=6),
             {"causal": True, "scale": 0.5, "block_q": 8, "block_k": 4}),
        Case("float16, causal, N=10, tiles 4 x 4",
             _case_args(*_qkv(1, 2, 10, 10, 8, seed=77, dtype=torch.float16), True, seed=7),
             {"causal": True, **tiles}),
    ]
    run_checker("flash_attention_backward", fn, cases, _Expected,
                misconceptions(_backward_variant, _HINTS), compare=compare_grads)
