"""FlashAttention forward as one Triton kernel: a program per (query block, batch·head).

Each program loads its query block once, streams K/V tiles through an online softmax (running
max m_i, running sum l_i, rescaled accumulator acc, in base 2 with log2(e)-scaled scores), and
writes o and the logsumexp lse. Causal attention skips key tiles wholly above the diagonal and
masks only the tiles on it. Introduced in notebook 06.
"""
from __future__ import annotations

import torch

from labkit import device
from labkit.kernels import launch
from labkit.contracts import check_attention_inputs, warn_no_grad

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x · log2(e))

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _attn_fwd_tiles(acc, l_i, m_i, n_tiles, q, k_base, v_base, stride_kn, stride_kd,
                        stride_vn, stride_vd, offs_m, lo, hi, n_kv, qk_scale,
                        HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
                        ON_DIAGONAL: tl.constexpr, CHECK_N: tl.constexpr,
                        DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
                        COUNT_TILES: tl.constexpr):
        """Online-softmax update of (acc, l_i, m_i) over the key tiles starting in [lo, hi)."""
        offs_d = tl.arange(0, HEAD_DIM)
        for start_n in range(lo, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kt_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
            v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
            if CHECK_N:
                kt = tl.load(kt_ptrs, mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
                v = tl.load(v_ptrs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
            else:
                kt = tl.load(kt_ptrs)
                v = tl.load(v_ptrs)
            if DOT_FP32:  # the interpreter computes bf16 dots wrongly: do them in fp32
                kt = kt.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
            if CHECK_N:
                s = tl.where(offs_n[None, :] < n_kv, s, float("-inf"))
            if ON_DIAGONAL:
                s = tl.where(offs_m[:, None] >= offs_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp2(s - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)  # 0 on the first tile (m_i = -inf)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            p = p.to(v.dtype)  # P V runs in the input dtype, as on the GPU's tensor cores
            if DOT_FP32:
                p = p.to(tl.float32)
                v = v.to(tl.float32)
            acc = tl.dot(p, v, acc, input_precision=PRECISION)
            m_i = m_new
            if COUNT_TILES:
                n_tiles += 1
        return acc, l_i, m_i, n_tiles

    @triton.jit
    def flash_attention_forward_kernel(
            Q, K, V, O, LSE, TILES,
            stride_qb, stride_qh, stride_qm, stride_qd,
            stride_kb, stride_kh, stride_kn, stride_kd,
            stride_vb, stride_vh, stride_vn, stride_vd,
            stride_ob, stride_oh, stride_om, stride_od,
            H, n_q, n_kv, qk_scale,
            HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            CAUSAL: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
            COUNT_TILES: tl.constexpr):
        """One query block of one (batch, head): o = softmax(scale · q kᵀ) v and lse, streamed over K/V tiles."""
        tl.static_assert(BLOCK_M % BLOCK_N == 0)
        start_m = tl.program_id(0)
        off_bh = tl.program_id(1)
        off_b = (off_bh // H).to(tl.int64)
        off_h = (off_bh % H).to(tl.int64)
        q_base = Q + off_b * stride_qb + off_h * stride_qh
        k_base = K + off_b * stride_kb + off_h * stride_kh
        v_base = V + off_b * stride_vb + off_h * stride_vh
        o_base = O + off_b * stride_ob + off_h * stride_oh

        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < n_q
        q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
        if DOT_FP32:
            q = q.to(tl.float32)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        n_tiles = tl.full([], 0, dtype=tl.int32)  # K/V tiles this program loads
        if CAUSAL:  # n_q == n_kv
            # Tiles wholly below the diagonal (keys < start_m · BLOCK_M): no mask needed.
            lo = start_m * BLOCK_M
            acc, l_i, m_i, n_tiles = _attn_fwd_tiles(
                acc, l_i, m_i, n_tiles, q, k_base, v_base, stride_kn, stride_kd, stride_vn,
                stride_vd, offs_m, 0, lo, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N,
                ON_DIAGONAL=False, CHECK_N=False, DOT_FP32=DOT_FP32, PRECISION=PRECISION,
                COUNT_TILES=COUNT_TILES)
            # Tiles on the diagonal; those above it are never visited.
            hi = tl.minimum(lo + BLOCK_M, n_kv)
            acc, l_i, m_i, n_tiles = _attn_fwd_tiles(
                acc, l_i, m_i, n_tiles, q, k_base, v_base, stride_kn, stride_kd, stride_vn,
                stride_vd, offs_m, lo, hi, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N,
                ON_DIAGONAL=True, CHECK_N=True, DOT_FP32=DOT_FP32, PRECISION=PRECISION,
                COUNT_TILES=COUNT_TILES)
        else:
            # Full tiles without bounds checks, then at most one ragged tile with them.
            n_full = (n_kv // BLOCK_N) * BLOCK_N
            acc, l_i, m_i, n_tiles = _attn_fwd_tiles(
                acc, l_i, m_i, n_tiles, q, k_base, v_base, stride_kn, stride_kd, stride_vn,
                stride_vd, offs_m, 0, n_full, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N,
                ON_DIAGONAL=False, CHECK_N=False, DOT_FP32=DOT_FP32, PRECISION=PRECISION,
                COUNT_TILES=COUNT_TILES)
            acc, l_i, m_i, n_tiles = _attn_fwd_tiles(
                acc, l_i, m_i, n_tiles, q, k_base, v_base, stride_kn, stride_kd, stride_vn,
                stride_vd, offs_m, n_full, n_kv, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N,
                ON_DIAGONAL=False, CHECK_N=True, DOT_FP32=DOT_FP32, PRECISION=PRECISION,
                COUNT_TILES=COUNT_TILES)

        o = acc / l_i[:, None]
        tl.store(o_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
                 o.to(O.dtype.element_ty), mask=row_ok[:, None])
        lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # log2 -> natural units: · ln(2)
        tl.store(LSE + off_bh.to(tl.int64) * n_q + offs_m, lse, mask=row_ok)
        if COUNT_TILES:
            tl.store(TILES + off_bh * tl.num_programs(0) + start_m, n_tiles)


def block_sizes(head_dim: int, dtype: torch.dtype, causal: bool = False) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) the wrapper launches with on this device.

    Chosen per GPU architecture by ``labkit.kernels.launch.forward_config`` (smaller tiles on
    the T4's 64 KiB of shared memory). In the interpreter every program runs as numpy calls,
    so fewer, larger blocks are faster; 64 × 32 keeps padding small for short sequences.
    """
    c = launch.forward_config(launch.current_arch(), dtype, head_dim, causal)
    return c.block_m, c.block_n, c.num_warps, c.num_stages


def flash_attention_forward_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            causal: bool = False, scale: float | None = None, *,
                            return_tiles: bool = False):
    """Triton FlashAttention forward: (o, lse) for q, k, v (B, H, N, D), as labkit.attention.flash_attention_forward.

    o has the input dtype (fp32, fp16, bf16), lse = logsumexp of the scaled (masked) scores,
    float32 (B, H, N_q). With ``return_tiles=True`` also returns an int32 (B, H, n_query_blocks)
    tensor counting the K/V tiles each program actually loaded, which sums per (b, h) to
    ``visited_tiles(N_q, N_kv, BLOCK_M, BLOCK_N, causal)``. Forward only: inputs that require
    grad get a UserWarning (kernels.flash_attention_triton is differentiable). Introduced in notebook 06.
    """
    warn_no_grad("kernels.flash_attention_forward_triton", "kernels.flash_attention_triton", q=q, k=k, v=v)
    device.require_triton()
    scale = check_attention_inputs(q, k, v, causal, scale, head_dims=HEAD_DIMS, dtypes=DTYPES)
    if device.INTERPRET and q.device.type != "cpu":
        raise ValueError(f"the Triton interpreter runs on CPU tensors, got {q.device}")
    if not device.INTERPRET and q.device.type != "cuda":
        raise ValueError(f"compiled Triton kernels need CUDA tensors, got {q.device}")
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    BLOCK_M, BLOCK_N, num_warps, num_stages = block_sizes(D, q.dtype, causal)
    o = torch.empty((B, H, n_q, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    n_blocks = triton.cdiv(n_q, BLOCK_M)
    tiles = torch.zeros((B, H, n_blocks), dtype=torch.int32, device=q.device)
    grid = (n_blocks, B * H)
    with launch.interpreter_quiet():  # a fully masked row does -inf - (-inf) on purpose
        flash_attention_forward_kernel[grid](
            q, k, v, o, lse, tiles,
            *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            H, n_q, n_kv, scale * LOG2E,
            HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=bool(causal),
            DOT_FP32=device.INTERPRET and q.dtype == torch.bfloat16,
            PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
            COUNT_TILES=return_tiles, num_warps=num_warps, num_stages=num_stages)
    if return_tiles:
        return o, lse, tiles
    return o, lse

