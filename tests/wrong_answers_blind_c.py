"""Blind set C: wrong student answers to the exercises of notebooks 00-05, written without reading the checkers.

Each entry is a plausible mistake a real student makes, one mistake per answer, four per exercise.
The Triton answers copy the notebook's kernel and host wrapper and edit one mistake in; every
load and store stays masked, so no answer reads or writes out of bounds.
"""
import labkit  # noqa: F401  (first: Triton's interpreter on CPU)

import math

import torch

from labkit import device, softmax
from wrong_answer import WrongAnswer

if device.HAS_TRITON:
    import triton
    import triton.language as tl


# ====================================================================== 00 normalize
def normalize_last_axis_always(e, dim=-1):
    return e / e.sum(dim=-1, keepdim=True)


def normalize_fp32_sum_not_cast_back(e, dim=-1):
    return e / e.sum(dim=dim, keepdim=True, dtype=torch.float32)


def normalize_eps_in_denominator(e, dim=-1):
    return e / (e.sum(dim=dim, keepdim=True) + 1e-6)


def normalize_unsqueeze_front(e, dim=-1):
    return e / e.sum(dim=dim).unsqueeze(0)


# ====================================================================== 01 naive_softmax
def naive_softmax_no_upcast(x, dim=-1):
    e = torch.exp(x)
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def naive_softmax_global_sum(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum()).to(x.dtype)


def naive_softmax_exp2(x, dim=-1):
    e = torch.exp2(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def naive_softmax_float_downcasts_fp64(x, dim=-1):
    e = torch.exp(x.float())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# ====================================================================== 01 overflow_threshold
def overflow_threshold_log2(dtype):
    return math.log2(torch.finfo(dtype).max)


def overflow_threshold_hardcoded_fp32(dtype):
    return 88.72283935546875


def overflow_threshold_integer_probe(dtype):
    x = 0
    while torch.isfinite(torch.exp(torch.tensor(float(x + 1), dtype=dtype))):
        x += 1
    return float(x)


def overflow_threshold_from_tiny(dtype):
    return -math.log(torch.finfo(dtype).tiny)


# ====================================================================== 02 safe_softmax
def safe_softmax_global_max(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.max())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def safe_softmax_shift_only_positive_max(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True).clamp(min=0)  # only shift when exp could overflow
    e = torch.exp(xc - m)
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def safe_softmax_max_without_keepdim(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=dim))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def safe_softmax_max_last_axis(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=-1, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# ====================================================================== 02 logsumexp
def logsumexp_no_inf_guard(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


def logsumexp_shift_by_mean(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.mean(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


def logsumexp_squeeze_all(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze() + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


def logsumexp_keepdim_shape(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m + torch.log(torch.exp(xc - m).sum(dim=dim, keepdim=True))).to(x.dtype)


# ====================================================================== 02 softmax_triton
if device.HAS_TRITON:

    @triton.jit
    def _sm_kernel_other_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=0.0).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        y = e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _sm_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        y = e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _sm_kernel_exp2(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
        e = tl.exp2(x - tl.max(x, axis=0))  # exp2 is the fast one on GPUs
        y = e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_other_zero(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _sm_kernel_other_zero[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                                     BLOCK=triton.next_power_of_2(n_cols))
    return y


def softmax_triton_block_from_rows(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _sm_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                          BLOCK=triton.next_power_of_2(n_rows))
    return y


def softmax_triton_exp2(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _sm_kernel_exp2[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                               BLOCK=triton.next_power_of_2(n_cols))
    return y


def softmax_triton_column_stride(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _sm_kernel[(n_rows,)](y, x, x.stride(1), y.stride(0), n_cols,
                          BLOCK=triton.next_power_of_2(n_cols))
    return y


# ====================================================================== 03 merge_states
def merge_states_no_guard(a, b):
    m = torch.maximum(a.m, b.m)
    return softmax.OnlineState(m, a.d * torch.exp(a.m - m) + b.d * torch.exp(b.m - m))


def merge_states_rescale_a_only(a, b):
    m = torch.maximum(a.m, b.m)  # the new block b brings the larger max
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d * torch.exp(a.m - base) + b.d)


def merge_states_flipped_exponent(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d * torch.exp(base - a.m) + b.d * torch.exp(base - b.m))


def merge_states_returns_guarded_max(a, b):
    m = torch.maximum(a.m, b.m)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # keep -inf out of the exponent
    return softmax.OnlineState(m, a.d * torch.exp(a.m - m) + b.d * torch.exp(b.m - m))


# ====================================================================== 03 merge_states_many
def merge_states_many_zero_start(states):
    m = torch.zeros_like(states[0].m)
    d = torch.zeros_like(states[0].d)
    for s in states:
        m_new = torch.maximum(m, s.m)
        d = d * torch.exp(m - m_new) + s.d * torch.exp(s.m - m_new)
        m = m_new
    return softmax.OnlineState(m, d)


def merge_states_many_cat(states):
    ms = torch.cat([s.m for s in states])
    ds = torch.cat([s.d for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(ms - base)).sum(dim=0))


def merge_states_many_no_guard(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    return softmax.OnlineState(m, (ds * torch.exp(ms - m)).sum(dim=0))


def merge_states_many_drops_last(states):
    m, d = states[0].m, states[0].d
    for s in states[1:-1]:
        m_new = torch.maximum(m, s.m)
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        d = d * torch.exp(m - base) + s.d * torch.exp(s.m - base)
        m = m_new
    return softmax.OnlineState(m, d)


# ====================================================================== 03 online_softmax
def online_softmax_max_updated_before_rescale(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        m_i = m_new
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


def online_softmax_drops_partial_block(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1] - block_size + 1, block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


def online_softmax_no_move_back(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).to(x.dtype)


def online_softmax_no_masked_block_guard(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# ====================================================================== 03 online_softmax_triton
if device.HAS_TRITON:

    @triton.jit
    def _osm_kernel_max_starts_at_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols,
                                       BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m_i = 0.0
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
            l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _osm_kernel_block_max_in_pass2(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols,
                                       BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
            l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - tl.max(x, axis=0)) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _osm_kernel_full_blocks_only(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols,
                                     BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for b in range(0, n_cols // BLOCK):
            offs = b * BLOCK + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
            l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _osm_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
            l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_max_starts_at_zero(x, block=64):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _osm_kernel_max_starts_at_zero[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


def online_softmax_triton_block_max_in_pass2(x, block=64):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _osm_kernel_block_max_in_pass2[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


def online_softmax_triton_full_blocks_only(x, block=64):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _osm_kernel_full_blocks_only[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


def online_softmax_triton_float32_output(x, block=64):
    x = x.contiguous()
    y = torch.empty(x.shape, device=x.device)
    n_rows, n_cols = x.shape
    _osm_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


# ====================================================================== 04 naive_attention
def naive_attention_scale_or_default(q, k, v, causal=False, scale=None):
    scale = scale or 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def naive_attention_mask_multiplies(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        visible = torch.ones(n, n, dtype=s.dtype, device=q.device).tril()
        s = s * visible  # zero out the future scores
    return torch.softmax(s, dim=-1) @ v


def naive_attention_mask_after_softmax(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    p = torch.softmax(s, dim=-1)
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        p = p.masked_fill(future, 0.0)
    return p @ v


def naive_attention_scale_both(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q * scale) @ (k * scale).transpose(-2, -1)
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# ====================================================================== 05 tiled_attention
def tiled_attention_softmax_per_tile(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        p_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            p_i[..., j0:j0 + block_k] = torch.softmax((q_i @ k_j.transpose(-2, -1)) * scale, dim=-1)
        o[:, :, i0:i0 + block_q] = p_i @ v
    return o.to(dtype)


def tiled_attention_key_loop_over_nq(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_q, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


def tiled_attention_no_cast_back(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o


def tiled_attention_scale_twice(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    q = q * scale  # scale the queries once, up front
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


# ====================================================================== 05 flash_attention_forward
def _flash(q, k, v, causal, scale, block_q, block_k, variant):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)
        l_i = torch.zeros_like(m_i)
        acc = torch.zeros_like(q_i)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
            s = (q_i @ k_j.transpose(-2, -1)) * scale
            if causal:
                if variant == "local_cols":
                    cols = torch.arange(k_j.shape[2], device=q.device)  # key indices
                else:
                    cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
            if variant == "tile_max_only":
                m_new = s.amax(dim=-1)  # the max of this tile
            else:
                m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m_i - m_new)
            if variant == "l_not_rescaled":
                l_i = l_i + p.sum(dim=-1)
            else:
                l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        if variant == "lse_no_max":
            lse[:, :, i0:i0 + block_q] = torch.log(l_i)
        else:
            lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


def flash_attention_forward_lse_without_max(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    return _flash(q, k, v, causal, scale, block_q, block_k, "lse_no_max")


def flash_attention_forward_local_mask_cols(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    return _flash(q, k, v, causal, scale, block_q, block_k, "local_cols")


def flash_attention_forward_tile_max_only(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    return _flash(q, k, v, causal, scale, block_q, block_k, "tile_max_only")


def flash_attention_forward_l_not_rescaled(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    return _flash(q, k, v, causal, scale, block_q, block_k, "l_not_rescaled")


# ====================================================================== 05 flash_hbm_accesses
def flash_hbm_accesses_floor_block(N, d, M):
    B_c = M // (4 * d)  # key rows per tile
    T_c = math.ceil(N / B_c)
    once = N * d + 2 * N
    once += 2 * N * d
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


def flash_hbm_accesses_floor_tiles(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = N // B_c  # key tiles
    once = N * d + 2 * N
    once += 2 * N * d
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


def flash_hbm_accesses_no_init(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    once = 2 * N * d  # every K_j, V_j loaded once
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


def flash_hbm_accesses_kv_per_query_tile(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    T_c = math.ceil(N / B_c)
    T_r = math.ceil(N / B_r)
    once = N * d + 2 * N
    per_key_tile = T_r * 2 * B_c * d + 3 * N * d + 4 * N  # K_j, V_j loaded with each Q_i
    return once + T_c * per_key_tile


# ====================================================================== the list
W = WrongAnswer
WRONG: list[WrongAnswer] = [
    # normalize
    W("normalize", "The sum always runs over the last axis (dim=-1 hard-coded), so normalizing along any other dim divides by the wrong sums.",
      (r"\bdim\b", r"axis"), normalize_last_axis_always),
    W("normalize", "The sum is taken with dtype=torch.float32, so for float16 input the division promotes and the result comes back float32 instead of the input's dtype.",
      (r"dtype", r"float16|half"), normalize_fp32_sum_not_cast_back),
    W("normalize", "An epsilon (1e-6) is added to the denominator, which changes the result whenever the slice sum is small, so slices no longer sum to 1.",
      (r"eps", r"sum to 1|sums? to one|small"), normalize_eps_in_denominator),
    W("normalize", "The sum is taken without keepdim and unsqueezed at position 0 rather than at dim, so it broadcasts against the wrong axis (each column is divided by a row sum).",
      (r"keepdim", r"broadcast"), normalize_unsqueeze_front),
    # naive_softmax
    W("naive_softmax", "exp is taken in the input dtype, so float16 input overflows to inf (and NaN) already for x above about 11.1 instead of being computed in float32.",
      (r"float32|upcast|promot", r"float16|half", r"overflow"), naive_softmax_no_upcast),
    W("naive_softmax", "The exponentials are divided by the sum over the whole tensor instead of the sum along dim, so rows do not each sum to 1.",
      (r"\bdim\b", r"sum"), naive_softmax_global_sum),
    W("naive_softmax", "Uses exp2 (2**x) instead of exp, which is a softmax with base 2, i.e. of x*ln2, not of x.",
      (r"exp2|base", r"\bexp\b"), naive_softmax_exp2),
    W("naive_softmax", "Upcasts with x.float(), which downcasts float64 input to float32, so float64 rows with x above ~88.7 overflow to NaN.",
      (r"float64|double", r"dtype|downcast|promot", r"overflow"), naive_softmax_float_downcasts_fp64),
    # overflow_threshold
    W("overflow_threshold", "Takes log base 2 of the largest finite value (math.log2) instead of the natural log, giving 128 instead of ~88.72 for float32.",
      (r"natural|\bln\b|math\.log\b", r"log2|base"), overflow_threshold_log2),
    W("overflow_threshold", "Returns the float32 value 88.72 for every dtype instead of ln(finfo(dtype).max).",
      (r"dtype", r"finfo", r"float16|float64"), overflow_threshold_hardcoded_fp32),
    W("overflow_threshold", "Probes integers until exp overflows and returns the last integer, so it returns 88 instead of 88.72 (floor of the threshold).",
      (r"finfo|max", r"\bln\b|log", r"integer|floor|round"), overflow_threshold_integer_probe),
    W("overflow_threshold", "Uses -ln(finfo.tiny), the underflow side (smallest normal), instead of ln(finfo.max), the overflow side.",
      (r"tiny|underflow|smallest", r"\.max|largest"), overflow_threshold_from_tiny),
    # safe_softmax
    W("safe_softmax", "Subtracts the maximum of the whole tensor instead of each row's max along dim, so rows far below the global max underflow to 0/0 = NaN.",
      (r"per.?row|each row|along dim|\bdim\b", r"global|whole tensor", r"underflow"), safe_softmax_global_max),
    W("safe_softmax", "Clamps the shift at 0 (only subtracts positive maxima), so rows whose values are all very negative underflow to 0/0 = NaN.",
      (r"underflow", r"negative", r"clamp"), safe_softmax_shift_only_positive_max),
    W("safe_softmax", "The max is taken without keepdim=True, so it broadcasts along the wrong axis and different entries of a row get different shifts.",
      (r"keepdim", r"broadcast"), safe_softmax_max_without_keepdim),
    W("safe_softmax", "The max is taken over the last axis (dim=-1 hard-coded) while the sum is over dim, so for dim != -1 the shift varies within a slice and the values are wrong.",
      (r"\bdim\b", r"axis"), safe_softmax_max_last_axis),
    # logsumexp
    W("logsumexp", "No guard for infinite maxima: an all -inf row gives -inf - (-inf) = NaN instead of -inf.",
      (r"-inf|inf", r"NaN", r"all.?-?inf|masked"), logsumexp_no_inf_guard),
    W("logsumexp", "Shifts by the row mean instead of the row max, so exp(x - mean) still overflows for rows with a large spread.",
      (r"\bmax", r"mean", r"overflow"), logsumexp_shift_by_mean),
    W("logsumexp", "m.squeeze() drops every size-1 axis instead of only dim, so inputs with another size-1 axis broadcast to the wrong shape.",
      (r"squeeze", r"shape"), logsumexp_squeeze_all),
    W("logsumexp", "The result keeps the reduced axis (keepdim=True) so it has shape (..., 1) instead of dropping dim.",
      (r"keepdim", r"shape", r"squeeze"), logsumexp_keepdim_shape),
    # softmax_triton
    W("softmax_triton", "The masked lanes load other=0.0 instead of -inf, so the padding lanes add exp(0 - max) to the sum whenever n_cols is not a power of two.",
      (r"other", r"-inf", r"mask|padding"), softmax_triton_other_zero),
    W("softmax_triton", "The wrapper sizes BLOCK from n_rows instead of n_cols, so rows wider than that block are only partly read, normalized and written.",
      (r"BLOCK", r"n_cols|next_power_of_2|width"), softmax_triton_block_from_rows),
    W("softmax_triton", "The kernel uses tl.exp2 instead of tl.exp without multiplying by log2(e), so it computes a base-2 softmax.",
      (r"exp2|log2", r"\bexp\b"), softmax_triton_exp2),
    W("softmax_triton", "The wrapper passes x.stride(1) (the column stride, 1) as the row stride, so every program reads a window starting at element `row` instead of row `row`.",
      (r"stride", r"row"), softmax_triton_column_stride),
    # merge_states
    W("merge_states", "No guard for m = -inf: merging two empty states computes exp(-inf - (-inf)) = NaN instead of d = 0.",
      (r"-inf|inf", r"NaN", r"empty"), merge_states_no_guard),
    W("merge_states", "Only a.d is rescaled; b.d is added unscaled as if b always held the larger max, which is wrong whenever a.m > b.m.",
      (r"rescale|exp\(m_b|b\.m|both", r"\bmax"), merge_states_rescale_a_only),
    W("merge_states", "The rescale factors have the sign flipped: exp(m - m_a) instead of exp(m_a - m), so the smaller state's d is multiplied up instead of down.",
      (r"sign|exp\(m_a - m\)|m_a - m", r"rescale|factor"), merge_states_flipped_exponent),
    W("merge_states", "The guarded max (0 in place of -inf) is returned as m, so merging two empty states gives m = 0 instead of -inf.",
      (r"-inf", r"empty", r"\bm\b"), merge_states_returns_guarded_max),
    # merge_states_many
    W("merge_states_many", "The running merge starts from (m=0, d=0) instead of (-inf, 0), so m is never below 0 and d underflows for very negative maxima.",
      (r"-inf", r"initial|start"), merge_states_many_zero_start),
    W("merge_states_many", "torch.cat instead of torch.stack flattens all rows of all states together, so one scalar max and sum come out instead of one per row.",
      (r"stack|cat", r"shape|per row|rows"), merge_states_many_cat),
    W("merge_states_many", "No guard for rows where every state is empty: exp(-inf - (-inf)) = NaN instead of d = 0.",
      (r"-inf|inf", r"NaN", r"empty"), merge_states_many_no_guard),
    W("merge_states_many", "The loop runs over states[1:-1], so the last state is never merged in.",
      (r"last", r"every state|all states|off.by.one|skip"), merge_states_many_drops_last),
    # online_softmax
    W("online_softmax", "m_i is updated to m_new before l_i is rescaled, so the factor exp(m_i - m_new) is always 1 and the old sum is never rescaled when the max grows.",
      (r"rescal", r"exp\(m_i ?- ?m_new\)|factor|alpha"), online_softmax_max_updated_before_rescale),
    W("online_softmax", "The block loop stops at N - block_size + 1, so the partial last block is never included in (m_i, l_i) when N is not a multiple of block_size.",
      (r"last|partial|tail", r"block"), online_softmax_drops_partial_block),
    W("online_softmax", "The result is never moved back with movedim(-1, dim), so for dim != -1 it comes out with the axes permuted.",
      (r"movedim|axis|\bdim\b", r"shape"), online_softmax_no_move_back),
    W("online_softmax", "No guard for a block that is all -inf so far: m_new = -inf gives exp(-inf - (-inf)) = NaN, so rows starting with a masked block become NaN.",
      (r"-inf", r"NaN", r"block|masked"), online_softmax_no_masked_block_guard),
    # online_softmax_triton
    W("online_softmax_triton", "m_i starts at 0.0 instead of -inf, so for rows whose values are all very negative exp(x - 0) underflows and l_i = 0 gives NaN.",
      (r"-inf", r"initial|start|m_i"), online_softmax_triton_max_starts_at_zero),
    W("online_softmax_triton", "Pass 2 subtracts each block's own max instead of the row's running max m_i, so blocks whose max is below the row max come out too large.",
      (r"m_i", r"running max|row max|pass 2|second"), online_softmax_triton_block_max_in_pass2),
    W("online_softmax_triton", "Pass 1 loops over n_cols // BLOCK full blocks only, so the partial last block never enters m_i and l_i.",
      (r"last|partial|tail", r"block|cdiv"), online_softmax_triton_full_blocks_only),
    W("online_softmax_triton", "The wrapper allocates y with torch.empty(x.shape) (float32), so float16 input comes back as float32.",
      (r"dtype", r"float16|half|empty_like"), online_softmax_triton_float32_output),
    # naive_attention
    W("naive_attention", "`scale = scale or 1/sqrt(D)` treats an explicit scale=0.0 as missing and uses 1/sqrt(D) instead.",
      (r"scale", r"None|0\.0|zero"), naive_attention_scale_or_default),
    W("naive_attention", "The causal mask multiplies the future scores by 0 instead of setting them to -inf, so future keys still get weight exp(0).",
      (r"-inf", r"mask", r"causal|future"), naive_attention_mask_multiplies),
    W("naive_attention", "The causal mask zeroes P after the softmax without renormalizing, so causal rows no longer sum to 1.",
      (r"-inf|before.{0,20}softmax", r"mask", r"sum to 1|renormal"), naive_attention_mask_after_softmax),
    W("naive_attention", "The scale is applied to both q and k, so the scores are multiplied by scale² instead of scale.",
      (r"scale", r"sqrt|1/√|twice|squared"), naive_attention_scale_both),
    # tiled_attention
    W("tiled_attention", "Softmax is applied to each key tile separately inside the inner loop, so each tile's weights sum to 1 instead of the whole row's.",
      (r"softmax", r"row|whole|tile"), tiled_attention_softmax_per_tile),
    W("tiled_attention", "The key-tile loop runs up to n_q instead of n_kv, so for N_kv > N_q the later keys keep score 0 instead of their real scores.",
      (r"n_kv|N_kv|key", r"loop|range|tile"), tiled_attention_key_loop_over_nq),
    W("tiled_attention", "The float32 result is returned without casting back to the input dtype, so float16 input gives float32 output.",
      (r"dtype", r"float16|half|cast"), tiled_attention_no_cast_back),
    W("tiled_attention", "q is pre-multiplied by scale and every tile's scores are multiplied by scale again, so the scores carry scale² .",
      (r"scale", r"twice|squared|sqrt"), tiled_attention_scale_twice),
    # flash_attention_forward
    W("flash_attention_forward", "lse is stored as log(l_i) without adding the running max m_i, so it is off by m_i (o is right).",
      (r"lse|logsumexp", r"m_i|max"), flash_attention_forward_lse_without_max),
    W("flash_attention_forward", "The causal mask uses tile-local key indices arange(T_k) instead of j0 + arange(T_k), so in later key tiles future keys are not masked.",
      (r"causal|mask", r"j0|offset|global|index"), flash_attention_forward_local_mask_cols),
    W("flash_attention_forward", "m_new is the current tile's max only, not max(m_i, tile max), so a later tile with much smaller scores makes exp(m_i - m_new) overflow to inf, and a causal tile whose rows are all masked gives m_new = -inf and NaN.",
      (r"m_i|running max|maximum", r"overflow|inf|NaN"), flash_attention_forward_tile_max_only),
    W("flash_attention_forward", "l_i is not multiplied by exp(m_i - m_new) when the max grows (acc is), so the normalizer is too large and o too small.",
      (r"l_i|normali[sz]", r"rescal|alpha|exp\(m_i"), flash_attention_forward_l_not_rescaled),
    # flash_hbm_accesses
    W("flash_hbm_accesses", "B_c = M // (4d) floors instead of rounding up, so when 4d does not divide M there are more key tiles than Algorithm 1's.",
      (r"B_c|ceil|round up", r"M/\(4d\)|tile"), flash_hbm_accesses_floor_block),
    W("flash_hbm_accesses", "T_c = N // B_c floors, so the partial last key tile (and its pass over all queries) is not counted.",
      (r"T_c|ceil|partial|last", r"tile"), flash_hbm_accesses_floor_tiles),
    W("flash_hbm_accesses", "Omits line 2: the initial writes of O, l and m to HBM (Nd + 2N accesses).",
      (r"line 2|initiali[sz]", r"O, ?l|Nd \+ 2N|write"), flash_hbm_accesses_no_init),
    W("flash_hbm_accesses", "Counts K_j and V_j as reloaded for every query tile, although Algorithm 1 loads them once per key tile (line 6, outside the inner loop).",
      (r"K_j|V_j|line 6", r"once|outer|inner"), flash_hbm_accesses_kv_per_query_tile),
]
