"""Softmax four ways: naive, safe (max-subtracted), online (one pass for max and sum), and logsumexp.

The softmaxes take a floating-point tensor and a ``dim``, compute in float32 for fp16/bf16 (float64
stays float64) and return the input's dtype. As ``torch.softmax`` does, rows that are entirely
-inf, or that contain +inf or NaN, give all NaN (log_softmax too); logsumexp is +inf for a row
with +inf. Inputs are never modified. x must be a floating torch.Tensor and dim an int in range;
otherwise TypeError/ValueError naming the argument (labkit.contracts, docs/contracts.md).
Introduced in notebooks 01-03.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from labkit.contracts import ArgumentTypeError, check_dim, check_positive_int, check_tensor

DEFAULT_BLOCK = 128  # columns per block in online_softmax


def _prepare(x: torch.Tensor, dim: int, name: str) -> tuple[torch.Tensor, int]:
    """Validate input (contracts.check_tensor, check_dim); return it upcast (fp16/bf16 -> fp32) and dim normalised."""
    check_tensor(x, "x", fn=name, floating=True)
    dim = check_dim(dim, x.dim(), "dim", fn=name, shape=tuple(x.shape))
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return compute, dim


def normalize(e: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """e / sum(e) along ``dim``, so each slice sums to 1: the last step of every softmax (notebook 00)."""
    ec, dim = _prepare(e, dim, "normalize")
    return (ec / ec.sum(dim=dim, keepdim=True)).to(e.dtype)


def overflow_threshold(dtype: torch.dtype) -> float:
    """The largest x with exp(x) finite in ``dtype``: ln(finfo(dtype).max), about 88.72 in float32 (notebook 01)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArgumentTypeError(f"overflow_threshold needs a floating-point torch dtype, got {dtype!r}")
    return math.log(torch.finfo(dtype).max)


def naive_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j), exactly as written: a finite x > ~88.7 overflows to NaN there (notebook 01)."""
    xc, dim = _prepare(x, dim, "naive_softmax")
    e = torch.exp(xc)  # read x (sum fused in a good kernel)
    out = normalize(e, dim)  # read again, write
    if xc.numel():  # a row holding +inf is all NaN, as in torch.softmax (inf/inf alone would leave 0s)
        out = out.masked_fill(torch.isposinf(xc).any(dim=dim, keepdim=True), float("nan"))
    return out.to(x.dtype)


def safe_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """softmax(x) = exp(x - max x) / sum exp(x - max x): the same value, no overflow (notebook 02)."""
    xc, dim = _prepare(x, dim, "safe_softmax")
    m = xc.amax(dim=dim, keepdim=True) if xc.numel() else xc.sum(dim=dim, keepdim=True)
    e = torch.exp(xc - m)
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def logsumexp(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log sum_j exp(x_j) = m + log sum_j exp(x_j - m) with m = max x; -inf for all -inf rows (notebook 02)."""
    xc, dim = _prepare(x, dim, "logsumexp")
    if xc.dim() and xc.shape[dim] == 0:  # empty sum: log 0
        return torch.full(xc.sum(dim=dim).shape, float("-inf"), dtype=x.dtype, device=x.device)
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # keep ±inf rows out of inf - inf
    out = m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))
    return out.to(x.dtype)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log softmax(x)_i = (x_i - m) - log sum_j exp(x_j - m), m = max x: exact where softmax underflows; +inf rows NaN, as torch (notebook 02)."""
    xc, dim = _prepare(x, dim, "log_softmax")
    if xc.numel() == 0:
        return x.clone()
    m = xc.amax(dim=dim, keepdim=True)
    z = xc - torch.where(torch.isinf(m), torch.zeros_like(m), m)  # shifted first: x - lse cancels
    out = z - torch.log(torch.exp(z).sum(dim=dim, keepdim=True))
    return out.masked_fill(torch.isposinf(m), float("nan")).to(x.dtype)  # +inf row: NaN, as torch


class OnlineState(NamedTuple):
    """The online normaliser's state for a block of a row: running max m and d = sum exp(x - m)."""

    m: torch.Tensor
    d: torch.Tensor


def online_state(x: torch.Tensor, dim: int = -1) -> OnlineState:
    """(m, d) = (max x, sum exp(x - max x)) of one block; the state merge_states combines (notebook 03)."""
    xc, dim = _prepare(x, dim, "online_state")
    if xc.dim() and xc.shape[dim] == 0:  # no elements: the identity of merge_states
        m = torch.full(xc.sum(dim=dim).shape, float("-inf"), dtype=xc.dtype, device=xc.device)
        return OnlineState(m, torch.zeros_like(m))
    m = xc.amax(dim=dim)
    d = torch.exp(xc - _finite_or_zero(m).unsqueeze(dim)).sum(dim=dim)
    return OnlineState(m, d)


def _finite_or_zero(m: torch.Tensor) -> torch.Tensor:
    """A max of -inf (a block that is all -inf so far) is replaced by 0 so that -inf - m stays -inf."""
    return torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def merge_states(a: OnlineState, b: OnlineState) -> OnlineState:
    """m = max(m_a, m_b), d = d_a e^(m_a - m) + d_b e^(m_b - m): associative, so blocks merge in any grouping (notebook 03).

    a and b must be OnlineStates (as online_state returns) whose m and d are floating tensors
    of one shape on one device; otherwise TypeError/ValueError naming a or b.
    """
    for name, st in (("a", a), ("b", b)):
        if not isinstance(st, OnlineState):
            raise ArgumentTypeError(f"merge_states: {name} must be an OnlineState(m, d) as "
                                    f"online_state returns, got {type(st).__name__} (wrap a "
                                    f"pair: OnlineState(m, d))")
        check_tensor(st.m, f"{name}.m", fn="merge_states", floating=True)
        check_tensor(st.d, f"{name}.d", fn="merge_states", floating=True)
        if st.m.shape != st.d.shape:
            raise ValueError(f"merge_states: {name}.m and {name}.d must have one shape, got "
                             f"{tuple(st.m.shape)} and {tuple(st.d.shape)}")
    if a.m.shape != b.m.shape or a.m.device != b.m.device:
        raise ValueError(f"merge_states: a and b must be states of the same rows (one shape, one "
                         f"device), got a.m {tuple(a.m.shape)} on {a.m.device} and b.m "
                         f"{tuple(b.m.shape)} on {b.m.device}")
    m = torch.maximum(a.m, b.m)
    safe = _finite_or_zero(m)
    d = a.d * torch.exp(a.m - safe) + b.d * torch.exp(b.m - safe)
    return OnlineState(m, d)


def online_softmax(x: torch.Tensor, dim: int = -1, block_size: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Online normaliser (Milakov & Gimelshein 2018): one pass over blocks for (m, d), one to normalise (notebook 03).

    Same answer for any ``block_size`` up to rounding; matches torch.softmax including all -inf rows.
    """
    block_size = check_positive_int(block_size, "block_size", fn="online_softmax")
    xc, dim = _prepare(x, dim, "online_softmax")
    if xc.dim() == 0 or xc.numel() == 0:
        return safe_softmax(x, dim)
    xt = xc.movedim(dim, -1)  # (..., N): blocks run along the last dim
    n = xt.shape[-1]
    m_i = torch.full(xt.shape[:-1], float("-inf"), dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros_like(m_i)
    for start in range(0, n, block_size):  # pass 1: running max and rescaled running sum
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        safe = _finite_or_zero(m_new)
        l_i = l_i * torch.exp(m_i - safe) + torch.exp(block - safe.unsqueeze(-1)).sum(dim=-1)
        m_i = m_new
    m_i = torch.where(torch.isneginf(m_i), torch.full_like(m_i, float("nan")), m_i)  # all -inf row
    out = torch.exp(xt - m_i.unsqueeze(-1)) / l_i.unsqueeze(-1)  # pass 2: normalise
    return out.movedim(-1, dim).to(x.dtype)
