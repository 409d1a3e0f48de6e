"""Inputs and the float64 oracle shared by the attention tests (PyTorch tiles and Triton)."""
import math

import torch

from labkit import device


def make_qkv(B, H, n_q, n_kv, D, dtype=torch.float32, seed=0, bnhd=False):
    """Deterministic q (B, H, n_q, D), k, v (B, H, n_kv, D) on the course device; bnhd=True gives transposed views."""
    g = torch.Generator().manual_seed(seed)
    shapes = ((B, n_q, H, D), (B, n_kv, H, D), (B, n_kv, H, D)) if bnhd else \
        ((B, H, n_q, D), (B, H, n_kv, D), (B, H, n_kv, D))
    out = [torch.randn(s, generator=g, dtype=torch.float64).to(device.DEVICE, dtype) for s in shapes]
    return tuple(x.transpose(1, 2) for x in out) if bnhd else tuple(out)


def ref64(q, k, v, causal=False, scale=None):
    """Float64 output and lse (torch.softmax / torch.logsumexp of the masked scaled scores)."""
    q, k, v = (x.to(torch.float64) for x in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def make_do(q, seed=1):
    """A deterministic upstream gradient dO shaped like the output (q's shape, dtype and device)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q.shape, generator=g, dtype=torch.float64).to(q.device, q.dtype)


def grads64(do, q, k, v, causal=False, scale=None):
    """(dq, dk, dv) in float64: autograd through the float64 oracle ref64."""
    leaves = [x.detach().to(torch.float64).requires_grad_() for x in (q, k, v)]
    return torch.autograd.grad(ref64(*leaves, causal, scale)[0], leaves, do.to(torch.float64))


def plain_grads(do, q, k, v, causal=False, scale=None):
    """(dq, dk, dv) by autograd through plain attention in the inputs' own dtype (the fp16/bf16 baseline)."""
    from labkit import attention

    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    return torch.autograd.grad(attention.naive_attention(*leaves, causal, scale), leaves, do)


def judge_grads(grads, do, q, k, v, causal=False, scale=None):
    """fp32/fp64 by the tolerance table; fp16/bf16 against plain same-dtype autograd (the low-precision rule)."""
    from labkit.check import assert_close

    expected = grads64(do, q, k, v, causal, scale)
    low = q.dtype in (torch.float16, torch.bfloat16)
    baseline = plain_grads(do, q, k, v, causal, scale) if low else (None,) * 3
    assert isinstance(grads, tuple) and len(grads) == 3
    for name, g, x, e, b in zip(("dq", "dk", "dv"), grads, (q, k, v), expected, baseline):
        assert g.dtype == x.dtype and g.shape == x.shape, (name, g.dtype, g.shape)
        assert_close(g, e, baseline=b, what=name)
