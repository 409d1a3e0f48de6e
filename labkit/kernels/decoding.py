"""Flash-decoding as two Triton kernels: split-K partial states, then their merge; the paged cache too.

``decode_partials_kernel`` runs one program per (batch·head, chunk of the cache): it streams its
chunk's keys in BLOCK_N tiles through an online softmax (running max m_i, running sum l_i,
rescaled accumulator acc, base 2 with log2(e)-scaled scores) and stores the chunk's (m, l, acc).
A single query gives no matrix product, so the scores are a row of dot products (a product and
a sum, on CUDA cores: decoding is bound by memory, not by arithmetic). With PAGED the keys of
position j live in page ``block_table[b, j // PAGE]`` at slot ``j % PAGE``. Query head h reads
KV head h // group (grouped-query attention). ``decode_combine_kernel`` merges each head's chunk
states as notebook 03 merges (m, d) pairs. Introduced in notebook 10.
"""
from __future__ import annotations

import math

import torch

from labkit import device
from labkit.contracts import ArgumentTypeError, check_positive_int
from labkit.decoding import check_decode_inputs, check_paged_inputs
from labkit.kernels import launch
from labkit.kernels.flash_forward import LOG2E

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_SPLITS = 64  # the combine kernel's widest block of chunk states

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def decode_partials_kernel(Q, K, V, LENGTHS, BLOCK_TABLE, M, L, ACC,
                               stride_qb, stride_qh, stride_qd,
                               stride_kb, stride_kh, stride_kn, stride_kd,
                               stride_vb, stride_vh, stride_vn, stride_vd, stride_bt,
                               H, group, chunk, num_splits, qk_scale,
                               HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
                               PAGED: tl.constexpr, PAGE: tl.constexpr):
        off_bh = tl.program_id(0)
        split = tl.program_id(1)
        b = off_bh // H
        kv_h = (off_bh % H) // group  # grouped-query attention: G query heads share one KV head
        offs_d = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + b * stride_qb + (off_bh % H) * stride_qh + offs_d * stride_qd).to(tl.float32)  # (D,)
        length = tl.load(LENGTHS + b)
        start = split * chunk
        end = tl.minimum(start + chunk, length)  # a chunk wholly past the length runs no tile
        m_i = tl.full([], float("-inf"), tl.float32)
        l_i = tl.full([], 0.0, tl.float32)
        acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
        for start_n in range(start, end, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            valid = offs_n < end
            if PAGED:  # position j: slot j % PAGE of page block_table[b, j // PAGE]
                page = tl.load(BLOCK_TABLE + b * stride_bt + offs_n // PAGE, mask=valid, other=0)
                k_rows = K + page.to(tl.int64) * stride_kb + kv_h * stride_kh + (offs_n % PAGE) * stride_kn
                v_rows = V + page.to(tl.int64) * stride_vb + kv_h * stride_vh + (offs_n % PAGE) * stride_vn
            else:
                k_rows = K + b.to(tl.int64) * stride_kb + kv_h * stride_kh + offs_n * stride_kn
                v_rows = V + b.to(tl.int64) * stride_vb + kv_h * stride_vh + offs_n * stride_vn
            k = tl.load(k_rows[:, None] + offs_d[None, :] * stride_kd, mask=valid[:, None], other=0.0)
            s = tl.sum(k.to(tl.float32) * q[None, :], 1) * qk_scale  # (BLOCK_N,), log2 units
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 0))
            alpha = tl.exp2(m_i - m_new)  # 0 on the first tile (m_i = -inf)
            p = tl.exp2(s - m_new)
            l_i = l_i * alpha + tl.sum(p, 0)
            v = tl.load(v_rows[:, None] + offs_d[None, :] * stride_vd, mask=valid[:, None], other=0.0)
            acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
            m_i = m_new
        state = off_bh * num_splits + split
        tl.store(M + state, m_i)
        tl.store(L + state, l_i)
        tl.store(ACC + state * HEAD_DIM + offs_d, acc)

    @triton.jit
    def decode_combine_kernel(M, L, ACC, O, LSE, num_splits, stride_ob, stride_oh, stride_od, H,
                              HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr):
        off_bh = tl.program_id(0)
        offs_s = tl.arange(0, BLOCK_S)
        offs_d = tl.arange(0, HEAD_DIM)
        here = offs_s < num_splits
        state = off_bh * num_splits + offs_s
        m = tl.load(M + state, mask=here, other=float("-inf"))  # (S,), log2 units
        l = tl.load(L + state, mask=here, other=0.0)  # noqa: E741
        acc = tl.load(ACC + state[:, None] * HEAD_DIM + offs_d[None, :], mask=here[:, None], other=0.0)
        m_max = tl.max(m, 0)  # finite: every sequence has a first chunk with a position in it
        w = tl.exp2(m - m_max)  # an empty chunk (m = -inf) weighs 0
        total = tl.sum(w * l, 0)
        o = tl.sum(w[:, None] * acc, 0) / total
        b = off_bh // H
        tl.store(O + b * stride_ob + (off_bh % H) * stride_oh + offs_d * stride_od, o.to(O.dtype.element_ty))
        tl.store(LSE + off_bh, (m_max + tl.log2(total)) * 0.6931471805599453)  # log2 -> natural units


def _device_and_head_dim(q, fn: str) -> None:
    device.require_triton()
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"{fn}: head dim D = {q.shape[-1]} is not supported; the kernels take D in {HEAD_DIMS}")
    if q.dtype not in DTYPES:
        raise ArgumentTypeError(f"{fn}: dtype {q.dtype} is not supported; use one of {DTYPES}")
    if device.INTERPRET and q.device.type != "cpu":
        raise ValueError(f"{fn}: the Triton interpreter runs on CPU tensors, got {q.device}")
    if not device.INTERPRET and q.device.type != "cuda":
        raise ValueError(f"{fn}: compiled Triton kernels need CUDA tensors, got {q.device}")


def chunking(num_splits, programs: int, n: int, block_n: int) -> tuple[int, int]:
    """(chunk, splits): chunks of a whole number of BLOCK_N tiles, at most MAX_SPLITS of them."""
    tiles = -(-n // block_n)
    if num_splits is None:
        num_splits = launch.decode_splits(launch.current_arch(), programs, tiles)
    num_splits = min(check_positive_int(num_splits, "num_splits"), MAX_SPLITS, tiles)
    chunk = -(-tiles // num_splits) * block_n
    return chunk, -(-n // chunk)


def _run(q, k, v, lengths, block_table, page, scale, num_splits, H_kv, n_max):
    B, H, D = q.shape
    config = launch.decode_config(launch.current_arch(), q.dtype, D, False)
    chunk, splits = chunking(num_splits, B * H, n_max, config.block_n)
    m = torch.empty(B * H * splits, dtype=torch.float32, device=q.device)
    l = torch.empty_like(m)  # noqa: E741
    acc = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
    o = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, dtype=torch.float32, device=q.device)
    lengths32 = lengths.to(torch.int32).contiguous()
    table = block_table if block_table is not None else lengths32  # never read without PAGED
    with launch.interpreter_quiet():
        decode_partials_kernel[(B * H, splits)](
            q, k, v, lengths32, table, m, l, acc, *q.stride(), *k.stride(), *v.stride(),
            table.stride(0) if block_table is not None else 0, H, H // H_kv, chunk, splits,
            scale * LOG2E, HEAD_DIM=D, BLOCK_N=config.block_n, PAGED=block_table is not None,
            PAGE=page, num_warps=config.num_warps, num_stages=config.num_stages)
        decode_combine_kernel[(B * H,)](
            m, l, acc, o, lse, splits, *o.stride(), H, HEAD_DIM=D,
            BLOCK_S=max(16, triton.next_power_of_2(splits)), num_warps=4)
    return o, lse


def flash_decode_triton(q, k, v, lengths=None, scale=None, num_splits=None):
    """Flash-decoding in Triton: (o, lse) for q (B, H, D) against k, v (B, H_kv, N, D), as labkit.decoding.flash_decode.

    ``num_splits`` chunks per head (default: enough programs to fill the GPU, launch.decode_splits). Notebook 10.
    """
    B, H, H_kv, N, D, lengths = check_decode_inputs(q, k, v, lengths, "flash_decode_triton")
    _device_and_head_dim(q, "flash_decode_triton")
    scale = 1 / math.sqrt(D) if scale is None else float(scale)
    return _run(q, k, v, lengths, None, 1, scale, num_splits, H_kv, N)


def paged_attention_triton(q, k_pages, v_pages, block_table, lengths, scale=None, num_splits=None):
    """Flash-decoding through a block table: (o, lse) as labkit.decoding.paged_attention (notebook 10).

    k_pages, v_pages (num_pages, H_kv, P, D); block_table (B, max_pages) int32; lengths (B,).
    """
    fn = "paged_attention_triton"
    B, H, H_kv, P, D, lengths = check_paged_inputs(q, k_pages, v_pages, block_table, lengths, fn)
    _device_and_head_dim(q, fn)
    scale = 1 / math.sqrt(D) if scale is None else float(scale)
    return _run(q, k_pages, v_pages, lengths, block_table.to(torch.int32).contiguous(), P, scale, num_splits,
                H_kv, int(lengths.max()))
