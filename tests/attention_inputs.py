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
