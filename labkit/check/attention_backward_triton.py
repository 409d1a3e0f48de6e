"""Checker for notebook 07's Triton exercise: a FlashAttention-2 backward built from kernels.

The student's host wrapper fn(do, q, k, v, o, lse, causal=False, scale=None) -> (dq, dk, dv) gets
o and the logsumexp lse (float32, natural log) of the forward, as ``labkit.kernels.
flash_attention_forward`` returns them, and is judged against autograd through float64 attention.
"""
from __future__ import annotations

import math

import torch

from labkit import device
from labkit.check.attention_backward import compare_grads
from labkit.check.core import Case, misconceptions, run_checker

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _scores(q, k, scale):
    """scale · q kᵀ in float64, (B, H, N_q, N_kv)."""
    return (q.double() @ k.double().transpose(-2, -1)) * scale


def _causal_hidden(s: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """True where key j is hidden from query i (j > i) in scores s; off by one for 'diagonal masked'."""
    i = torch.arange(s.shape[-2], device=s.device)[:, None]
    j = torch.arange(s.shape[-1], device=s.device)[None, :]
    return j >= i if mistake == "diagonal masked" else j > i


def _inputs(B: int, H: int, n_q: int, n_kv: int, D: int, *, seed: int, causal: bool = False,
            scale: float | None = None, dtype: torch.dtype = torch.float32):
    """(do, q, k, v, o, lse) on the course device, o (input dtype) and lse (float32) from the exact forward."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, D, generator=g, dtype=torch.float64).to(device.DEVICE, dtype)
               for n in (n_q, n_kv, n_kv))
    do = torch.randn(B, H, n_q, D, generator=g, dtype=torch.float64).to(device.DEVICE, dtype)
    s = _scores(q, k, 1 / math.sqrt(D) if scale is None else scale)
    if causal:
        s = s.masked_fill(_causal_hidden(s), float("-inf"))
    o = torch.softmax(s, -1) @ v.double()
    return do, q, k, v, o.to(dtype), torch.logsumexp(s, -1).float()


class _Expected:
    """Float64 autograd gradients of a case, with plain same-dtype autograd gradients for fp16."""

    def __init__(self, do, q, k, v, o=None, lse=None, causal=False, scale=None):
        self.dtype = q.dtype
        self.grads = self._autograd(do, q, k, v, causal, scale, torch.float64)
        self.baseline = self._autograd(do, q, k, v, causal, scale, q.dtype) \
            if q.dtype != torch.float32 else (None,) * 3

    @staticmethod
    def _autograd(do, q, k, v, causal, scale, dtype):
        leaves = [x.detach().to(dtype).requires_grad_() for x in (q, k, v)]
        s = (leaves[0] @ leaves[1].transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None
                                                         else scale)
        if causal:
            s = s.masked_fill(_causal_hidden(s), float("-inf"))
        o = torch.softmax(s, -1) @ leaves[2]
        return torch.autograd.grad(o, leaves, do.to(dtype))


def _backward_variant(do, q, k, v, o, lse, causal=False, scale=None, *, mistake):
    """What a backward kernel with one deliberate mistake returns: (dq, dk, dv) in q's dtype.

    P is rebuilt from the given lse as the kernels do; the mistakes that depend on a kernel's
    tiles (a row max, a causal mask on the diagonal tile only) are exact when one tile holds the
    whole row, which the checker's first cases ensure (N = 13 <= 16, the smallest tl.dot size).
    """
    D = q.shape[-1]
    s_ = 1 / math.sqrt(D) if scale is None or mistake == "scale ignored" else scale
    dtype = q.dtype
    do, q, k, v, o, lse = (x.double() for x in (do, q, k, v, o, lse))
    s = _scores(q, k, s_)
    if causal and mistake != "no causal mask":
        s = s.masked_fill(_causal_hidden(s, mistake), float("-inf"))
    exponent = {"P without lse": s, "P with row max": s - s.amax(-1, keepdim=True),
                "exp2 without log2e": (s - lse[..., None]) * LN2,
                "lse not in log2 units": s - lse[..., None] * LN2}.get(mistake, s - lse[..., None])
    p = torch.exp(exponent)
    dv = p.transpose(-2, -1) @ do
    dp = do @ v.transpose(-2, -1)
    delta = 0.0 if mistake == "no D term" else (do * o).sum(-1, keepdim=True)
    ds = p * (dp - delta)
    dq_scale = {"dq not scaled": 1.0, "dq and dk not scaled": 1.0, "scaled with log2e": s_ * LOG2E}
    dk_scale = {"dk not scaled": 1.0, "dq and dk not scaled": 1.0, "scaled with log2e": s_ * LOG2E}
    dq = ds @ k * dq_scale.get(mistake, s_)
    dk = ds.transpose(-2, -1) @ q * dk_scale.get(mistake, s_)
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


_HINTS = {
    "no D term": "dS = P ∘ (dP − Δ) with Δ = rowsum(dO ∘ O) (FlashAttention-2's D term, one number "
                 "per query row): subtract delta[:, None] (delta[None, :] on transposed tiles) "
                 "from dP before multiplying by P",
    "dk not scaled": "dK = scale · dSᵀ Q: multiply the dK accumulator by `scale` before storing it",
    "dq not scaled": "dQ = scale · dS K: multiply the dQ accumulator by `scale` before storing it",
    "dq and dk not scaled": "S = scale · Q Kᵀ, so dQ = scale · dS K and dK = scale · dSᵀ Q: multiply "
                            "both accumulators by `scale` before storing them",
    "scaled with log2e": "dQ and dK are scaled by `scale` itself, not scale · log2(e): log2(e) only "
                         "belongs inside tl.exp2",
    "P without lse": "rebuild P from the saved logsumexp: P = exp(scale · S − lse) (with exp2: "
                     "tl.exp2(s * scale * log2(e) − lse * log2(e))); exp of the scores alone is not "
                     "normalised",
    "P with row max": "P = exp(scale · S − lse), not exp(scale · S − row max): the max only keeps the "
                      "exponent safe, lse = max + log(l) also divides by the row sum; load the lse "
                      "the forward saved",
    "no causal mask": "causal: rebuild P with the forward's mask: scores of keys j > i must be -inf "
                      "before the exp (tl.where(offs_m[:, None] >= offs_n[None, :], s, "
                      "float('-inf')) on tiles that touch the diagonal)",
    "diagonal masked": "causal mask off by one: query i sees key i itself; hide only keys j > i",
    "exp2 without log2e": "tl.exp2(x) is 2**x, not e**x: multiply the scaled scores and lse by "
                          "log2(e) = 1.4427 before tl.exp2, or use tl.exp",
    "lse not in log2 units": "lse is saved in natural-log units: with tl.exp2 subtract "
                             "lse * log2(e), not lse",
    "scale ignored": "use the `scale` argument when it is given; 1/sqrt(D) is only the default "
                     "(scale=None)",
}


def flash_attention_backward_triton(fn) -> None:
    """Check a Triton FlashAttention backward via its host wrapper fn(do, q, k, v, o, lse, causal=False, scale=None) -> (dq, dk, dv).

    Small cases for the interpreter: one tile (N = 13) first, then several ragged tiles
    (N = 40, 70), N = 1, cross-attention both ways, causal, a given scale, fp16.
    Introduced in notebook 07.
    """
    cases = [
        Case("B=1, H=2, N=13, D=16 (one tile)", _inputs(1, 2, 13, 13, 16, seed=71)),
        Case("causal, B=1, H=2, N=13, D=16 (one tile, on the diagonal)",
             _inputs(1, 2, 13, 13, 16, seed=72, causal=True), {"causal": True}),
        Case("one query and one key: N=1, D=16", _inputs(1, 1, 1, 1, 16, seed=73),
             hint="with one key P = 1, so dS = 0, dQ = dK = 0 and dV = dO"),
        Case("B=2, H=1, N=40, D=32 (ragged tiles)", _inputs(2, 1, 40, 40, 32, seed=74),
             hint="N is not a multiple of the block: mask loads past N (other=0) and set the "
                  "scores of keys past N_kv to -inf"),
        Case("cross-attention: N_q=17, N_kv=40, D=16", _inputs(1, 2, 17, 40, 16, seed=75)),
        Case("cross-attention: N_q=70, N_kv=17, D=16", _inputs(1, 1, 70, 17, 16, seed=76)),
        Case("causal, B=2, H=1, N=70, D=32 (tiles on and below the diagonal)",
             _inputs(2, 1, 70, 70, 32, seed=77, causal=True), {"causal": True}),
        Case("causal, N=17, D=16, scale=0.5", _inputs(1, 2, 17, 17, 16, seed=78, causal=True,
                                                      scale=0.5), {"causal": True, "scale": 0.5}),
        Case("float16, causal, N=40, D=16", _inputs(1, 2, 40, 40, 16, seed=79, causal=True,
                                                    dtype=torch.float16), {"causal": True}),
    ]
    run_checker("flash_attention_backward_triton", fn, cases, _Expected,
                misconceptions(_backward_variant, _HINTS), compare=compare_grads)
