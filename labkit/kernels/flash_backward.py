"""FlashAttention backward as Triton kernels, and the autograd wiring of the Triton forward and backward.

With S = s · Q Kᵀ (masked if causal), P = exp(S − lse) rebuilt from the logsumexp the forward saved,
and the upstream gradient dO: dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − Δ) with Δ = rowsum(dO ∘ O),
dQ = s · dS K and dK = s · dSᵀ Q. Three kernels, as in FlashAttention-2:

1. ``flash_attention_backward_preprocess_kernel``: Δ, one program per (query block, batch·head);
2. ``flash_attention_backward_dkdv_kernel``: a program owns one key block of one (batch, head),
   keeps its dK, dV in registers and streams the query blocks past it;
3. ``flash_attention_backward_dq_kernel``: a program owns one query block and streams the key
   blocks past it, like the forward.

Splitting dK/dV from dQ means every program writes only its own rows: no atomics, deterministic
results, at the price of computing S, P and dP twice (once per kernel). Scores are in base 2
(exp2 with log2(e)-scaled scores), accumulators in float32, outputs in the input dtype. Causal:
key/query tiles wholly above the diagonal are skipped, tiles on it are masked.
Introduced in notebook 07.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from labkit import device
from labkit.kernels import launch
from labkit.contracts import check_attention_inputs, check_saved_tensors
from labkit.kernels.flash_forward import DTYPES, HEAD_DIMS, LOG2E, flash_attention_forward_triton

__all__ = ["flash_attention_backward_triton", "FlashAttentionTriton", "flash_attention_triton", "backward_block_sizes"]

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    _LOG2E = tl.constexpr(LOG2E)  # kernels read only constexpr globals

    @triton.jit
    def _dot(a, b, acc, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
        """acc + a @ b; in fp32 where the interpreter computes bf16 dots wrongly (bf16 is exact in fp32)."""
        if DOT_FP32:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        return tl.dot(a, b, acc, input_precision=PRECISION)

    @triton.jit
    def flash_attention_backward_preprocess_kernel(
            O, DO, DELTA, stride_ob, stride_oh, stride_om, stride_od,
            stride_dob, stride_doh, stride_dom, stride_dod, H, n_q,
            HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
        """Δ = rowsum(dO ∘ O) in float32 for one query block of one (batch, head)."""
        start_m = tl.program_id(0)
        off_bh = tl.program_id(1)
        off_b = (off_bh // H).to(tl.int64)
        off_h = (off_bh % H).to(tl.int64)
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < n_q
        o = tl.load(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
                    + offs_d[None, :] * stride_od, mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + off_b * stride_dob + off_h * stride_doh + offs_m[:, None] * stride_dom
                     + offs_d[None, :] * stride_dod, mask=row_ok[:, None], other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)  # (BLOCK_M,)
        tl.store(DELTA + off_bh.to(tl.int64) * n_q + offs_m, delta, mask=row_ok)

    @triton.jit
    def _attn_bwd_dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                             stride_qm, stride_qd, stride_dom, stride_dod, offs_n, lo, hi, n_q,
                             qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                             ON_DIAGONAL: tl.constexpr, CHECK_M: tl.constexpr,
                             DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
        """dk += dSᵀ q, dv += Pᵀ dO for one key block over the query blocks starting in [lo, hi) (dk unscaled).

        Works on transposed tiles (keys × queries) so that no tile is transposed twice.
        """
        offs_d = tl.arange(0, HEAD_DIM)
        for start_m in range(lo, hi, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            q_ptrs = q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
            do_ptrs = do_base + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod
            if CHECK_M:
                row_ok = offs_m < n_q
                q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
                do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
                lse = tl.load(lse_base + offs_m, mask=row_ok, other=0.0)  # (BLOCK_M,)
                delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
            else:
                q = tl.load(q_ptrs)
                do = tl.load(do_ptrs)
                lse = tl.load(lse_base + offs_m)
                delta = tl.load(delta_base + offs_m)
            s_t = _dot(k, tl.trans(q), None, DOT_FP32, PRECISION) * qk_scale  # Sᵀ · s · log2(e)
            if CHECK_M:
                s_t = tl.where(row_ok[None, :], s_t, float("-inf"))
            if ON_DIAGONAL:  # query i sees key j only if j <= i
                s_t = tl.where(offs_m[None, :] >= offs_n[:, None], s_t, float("-inf"))
            p_t = tl.exp2(s_t - lse[None, :] * _LOG2E)  # Pᵀ = exp(Sᵀ·s − lse)
            dv = _dot(p_t.to(do.dtype), do, dv, DOT_FP32, PRECISION)  # dV += Pᵀ dO
            dp_t = _dot(v, tl.trans(do), None, DOT_FP32, PRECISION)  # dPᵀ = V dOᵀ (BLOCK_N, BLOCK_M)
            # dSᵀ = Pᵀ ∘ (dPᵀ − Δ), exactly 0 where masked (a NaN row must not reach masked keys)
            ds_t = tl.where(s_t == float("-inf"), 0.0, p_t * (dp_t - delta[None, :]))
            dk = _dot(ds_t.to(q.dtype), q, dk, DOT_FP32, PRECISION)  # dK += dSᵀ Q
        return dk, dv

    @triton.jit
    def flash_attention_backward_dkdv_kernel(
            Q, K, V, DO, LSE, DELTA, DK, DV,
            stride_qb, stride_qh, stride_qm, stride_qd,
            stride_kb, stride_kh, stride_kn, stride_kd,
            stride_vb, stride_vh, stride_vn, stride_vd,
            stride_dob, stride_doh, stride_dom, stride_dod,
            stride_dkb, stride_dkh, stride_dkn, stride_dkd,
            stride_dvb, stride_dvh, stride_dvn, stride_dvd,
            H, n_q, n_kv, scale,
            HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            CAUSAL: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
        """dK = s · dSᵀ Q and dV = Pᵀ dO for one key block of one (batch, head), streamed over query blocks."""
        tl.static_assert(BLOCK_N % BLOCK_M == 0)
        start_n = tl.program_id(0) * BLOCK_N
        off_bh = tl.program_id(1)
        off_b = (off_bh // H).to(tl.int64)
        off_h = (off_bh % H).to(tl.int64)
        q_base = Q + off_b * stride_qb + off_h * stride_qh
        do_base = DO + off_b * stride_dob + off_h * stride_doh
        lse_base = LSE + off_bh.to(tl.int64) * n_q
        delta_base = DELTA + off_bh.to(tl.int64) * n_q

        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = offs_n < n_kv
        k = tl.load(K + off_b * stride_kb + off_h * stride_kh + offs_n[:, None] * stride_kn
                    + offs_d[None, :] * stride_kd, mask=col_ok[:, None], other=0.0)  # (BLOCK_N, D)
        v = tl.load(V + off_b * stride_vb + off_h * stride_vh + offs_n[:, None] * stride_vn
                    + offs_d[None, :] * stride_vd, mask=col_ok[:, None], other=0.0)  # (BLOCK_N, D)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        qk_scale = scale * _LOG2E  # exp(x) = exp2(x · log2(e))
        lo = 0
        if CAUSAL:  # n_q == n_kv
            # Queries before start_n see none of these keys: those tiles are skipped. The
            # queries [start_n, start_n + BLOCK_N) straddle the diagonal: masked tiles.
            lo = tl.minimum(start_n + BLOCK_N, n_q)
            dk, dv = _attn_bwd_dkdv_tiles(
                dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
                stride_dom, stride_dod, offs_n, start_n, lo, n_q, qk_scale, HEAD_DIM=HEAD_DIM,
                BLOCK_M=BLOCK_M, ON_DIAGONAL=True, CHECK_M=True, DOT_FP32=DOT_FP32, PRECISION=PRECISION)
        # Queries from lo on see every key of this block: full tiles, then one ragged tile.
        n_full = lo + (n_q - lo) // BLOCK_M * BLOCK_M
        dk, dv = _attn_bwd_dkdv_tiles(
            dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
            stride_dom, stride_dod, offs_n, lo, n_full, n_q, qk_scale, HEAD_DIM=HEAD_DIM,
            BLOCK_M=BLOCK_M, ON_DIAGONAL=False, CHECK_M=False, DOT_FP32=DOT_FP32, PRECISION=PRECISION)
        dk, dv = _attn_bwd_dkdv_tiles(
            dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
            stride_dom, stride_dod, offs_n, n_full, n_q, n_q, qk_scale, HEAD_DIM=HEAD_DIM,
            BLOCK_M=BLOCK_M, ON_DIAGONAL=False, CHECK_M=True, DOT_FP32=DOT_FP32, PRECISION=PRECISION)

        dk = dk * scale  # dK = s · dSᵀ Q
        tl.store(DK + off_b * stride_dkb + off_h * stride_dkh + offs_n[:, None] * stride_dkn
                 + offs_d[None, :] * stride_dkd, dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
        tl.store(DV + off_b * stride_dvb + off_h * stride_dvh + offs_n[:, None] * stride_dvn
                 + offs_d[None, :] * stride_dvd, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])

    @triton.jit
    def _attn_bwd_dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd,
                           stride_vn, stride_vd, offs_m, lo, hi, n_kv, qk_scale,
                           HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
                           ON_DIAGONAL: tl.constexpr, CHECK_N: tl.constexpr,
                           DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
        """dq += dS k for one query block over the key tiles starting in [lo, hi) (dq unscaled)."""
        offs_d = tl.arange(0, HEAD_DIM)
        for start_n in range(lo, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kt_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
            vt_ptrs = v_base + offs_n[None, :] * stride_vn + offs_d[:, None] * stride_vd
            if CHECK_N:
                kt = tl.load(kt_ptrs, mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
                vt = tl.load(vt_ptrs, mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
            else:
                kt = tl.load(kt_ptrs)
                vt = tl.load(vt_ptrs)
            s = _dot(q, kt, None, DOT_FP32, PRECISION) * qk_scale  # S · s · log2(e) (BLOCK_M, BLOCK_N)
            if CHECK_N:
                s = tl.where(offs_n[None, :] < n_kv, s, float("-inf"))
            if ON_DIAGONAL:
                s = tl.where(offs_m[:, None] >= offs_n[None, :], s, float("-inf"))
            p = tl.exp2(s - lse[:, None])  # P = exp(S·s − lse); lse here in log2 units
            dp = _dot(do, vt, None, DOT_FP32, PRECISION)  # dP = dO Vᵀ
            ds = tl.where(s == float("-inf"), 0.0, p * (dp - delta[:, None]))  # dS = P ∘ (dP − Δ), 0 if masked
            dq = _dot(ds.to(kt.dtype), tl.trans(kt), dq, DOT_FP32, PRECISION)  # dQ += dS K
        return dq

    @triton.jit
    def flash_attention_backward_dq_kernel(
            Q, K, V, DO, LSE, DELTA, DQ,
            stride_qb, stride_qh, stride_qm, stride_qd,
            stride_kb, stride_kh, stride_kn, stride_kd,
            stride_vb, stride_vh, stride_vn, stride_vd,
            stride_dob, stride_doh, stride_dom, stride_dod,
            stride_dqb, stride_dqh, stride_dqm, stride_dqd,
            H, n_q, n_kv, scale,
            HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            CAUSAL: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
        """dQ = s · dS K for one query block of one (batch, head), streamed over key blocks."""
        tl.static_assert(BLOCK_M % BLOCK_N == 0)
        start_m = tl.program_id(0) * BLOCK_M
        off_bh = tl.program_id(1)
        off_b = (off_bh // H).to(tl.int64)
        off_h = (off_bh % H).to(tl.int64)
        k_base = K + off_b * stride_kb + off_h * stride_kh
        v_base = V + off_b * stride_vb + off_h * stride_vh

        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < n_q
        q = tl.load(Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qm
                    + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + off_b * stride_dob + off_h * stride_doh + offs_m[:, None] * stride_dom
                     + offs_d[None, :] * stride_dod, mask=row_ok[:, None], other=0.0)
        lse = tl.load(LSE + off_bh.to(tl.int64) * n_q + offs_m, mask=row_ok, other=0.0)
        lse = lse * _LOG2E  # natural log -> log2 units, to go with exp2
        delta = tl.load(DELTA + off_bh.to(tl.int64) * n_q + offs_m, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        qk_scale = scale * _LOG2E
        if CAUSAL:  # n_q == n_kv
            # Keys before start_m: wholly below the diagonal, full tiles, no mask needed.
            dq = _attn_bwd_dq_tiles(
                dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                offs_m, 0, start_m, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N, ON_DIAGONAL=False,
                CHECK_N=False, DOT_FP32=DOT_FP32, PRECISION=PRECISION)
            # Keys on the diagonal; those above it are never visited.
            dq = _attn_bwd_dq_tiles(
                dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                offs_m, start_m, tl.minimum(start_m + BLOCK_M, n_kv), n_kv, qk_scale, HEAD_DIM=HEAD_DIM,
                BLOCK_N=BLOCK_N, ON_DIAGONAL=True, CHECK_N=True, DOT_FP32=DOT_FP32, PRECISION=PRECISION)
        else:
            n_full = n_kv // BLOCK_N * BLOCK_N
            dq = _attn_bwd_dq_tiles(
                dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                offs_m, 0, n_full, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N, ON_DIAGONAL=False,
                CHECK_N=False, DOT_FP32=DOT_FP32, PRECISION=PRECISION)
            dq = _attn_bwd_dq_tiles(
                dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                offs_m, n_full, n_kv, n_kv, qk_scale, HEAD_DIM=HEAD_DIM, BLOCK_N=BLOCK_N, ON_DIAGONAL=False,
                CHECK_N=True, DOT_FP32=DOT_FP32, PRECISION=PRECISION)
        dq = dq * scale  # dQ = s · dS K
        tl.store(DQ + off_b * stride_dqb + off_h * stride_dqh + offs_m[:, None] * stride_dqm
                 + offs_d[None, :] * stride_dqd, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


def backward_block_sizes(head_dim: int, dtype: torch.dtype,
                         causal: bool = False) -> tuple[int, int, int, int, int, int]:
    """(BLOCK_M1, BLOCK_N1, BLOCK_M2, BLOCK_N2, num_warps, num_stages) of the backward launch on this device.

    The dK/dV kernel holds a key block of BLOCK_N1 rows and streams query tiles of BLOCK_M1 rows;
    the dQ kernel holds BLOCK_M2 query rows and streams key tiles of BLOCK_N2 rows: the block a
    program keeps (with its fp32 accumulators) is the larger one, as in FlashAttention-2. Chosen
    per GPU architecture by ``labkit.kernels.launch`` (dkdv_config, dq_config); in the
    interpreter, 32 x 64 tiles keep padding small and still give several tiles per diagonal.
    """
    arch = launch.current_arch()
    c1 = launch.dkdv_config(arch, dtype, head_dim, causal)
    c2 = launch.dq_config(arch, dtype, head_dim, causal)
    return c1.block_m, c1.block_n, c2.block_m, c2.block_n, c1.num_warps, c1.num_stages


def flash_attention_backward_triton(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             o: torch.Tensor, lse: torch.Tensor, causal: bool = False,
                             scale: float | None = None):
    """Triton FlashAttention-2 backward: (dq, dk, dv) for o = attention(q, k, v) and its gradient do.

    o and lse (natural log, float32, (B, H, N_q)) are what ``flash_attention_forward`` returned;
    P is rebuilt from lse, never stored. q, k, v (B, H, N, D) in fp32, fp16 or bf16 with
    D in {16, 32, 64, 128}; gradients have the input dtype, accumulated in float32.
    Introduced in notebook 07.
    """
    device.require_triton()
    scale = check_attention_inputs(q, k, v, causal, scale, head_dims=HEAD_DIMS, dtypes=DTYPES)
    check_saved_tensors(q, do=do, o=o, lse=lse, lse_dtype=torch.float32)
    if device.INTERPRET and q.device.type != "cpu":
        raise ValueError(f"the Triton interpreter runs on CPU tensors, got {q.device}")
    if not device.INTERPRET and q.device.type != "cuda":
        raise ValueError(f"compiled Triton kernels need CUDA tensors, got {q.device}")
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    BLOCK_M1, BLOCK_N1, BLOCK_M2, BLOCK_N2, num_warps, num_stages = backward_block_sizes(
        D, q.dtype, causal)
    pre = launch.preprocess_config(launch.current_arch(), q.dtype, D, causal)
    lse = lse.contiguous()
    delta = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    flash_attention_backward_preprocess_kernel[(triton.cdiv(n_q, pre.block_m), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, n_q, HEAD_DIM=D, BLOCK_M=pre.block_m,
        num_warps=pre.num_warps, num_stages=pre.num_stages)
    options = dict(HEAD_DIM=D, CAUSAL=bool(causal),
                   DOT_FP32=device.INTERPRET and q.dtype == torch.bfloat16,
                   PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
                   num_warps=num_warps, num_stages=num_stages)
    with launch.interpreter_quiet():  # masked scores and NaN rows: IEEE arithmetic on purpose
        flash_attention_backward_dkdv_kernel[(triton.cdiv(n_kv, BLOCK_N1), B * H)](
            q, k, v, do, lse, delta, dk, dv, *q.stride(), *k.stride(), *v.stride(), *do.stride(),
            *dk.stride(), *dv.stride(), H, n_q, n_kv, scale, BLOCK_M=BLOCK_M1, BLOCK_N=BLOCK_N1,
            **options)
        flash_attention_backward_dq_kernel[(triton.cdiv(n_q, BLOCK_M2), B * H)](
            q, k, v, do, lse, delta, dq, *q.stride(), *k.stride(), *v.stride(), *do.stride(),
            *dq.stride(), H, n_q, n_kv, scale, BLOCK_M=BLOCK_M2, BLOCK_N=BLOCK_N2, **options)
    return dq, dk, dv


class FlashAttentionTriton(torch.autograd.Function):
    """o = attention(q, k, v) with the Triton forward and backward; saves only q, k, v, o and lse.

    Introduced in notebook 07.
    """

    @staticmethod
    def forward(ctx, q, k, v, causal, scale):
        o, lse = flash_attention_forward_triton(q, k, v, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)  # O(N·D) memory: no N × N matrix is kept
        ctx.causal, ctx.scale = causal, scale
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward_triton(do, q, k, v, o, lse, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None


def flash_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    scale: float | None = None) -> torch.Tensor:
    """softmax(s · q kᵀ, causal mask) v with Triton kernels both ways: differentiable with autograd.

    Introduced in notebook 07.
    """
    device.require_triton()
    scale = check_attention_inputs(q, k, v, causal, scale, head_dims=HEAD_DIMS, dtypes=DTYPES)
    return FlashAttentionTriton.apply(q, k, v, bool(causal), scale)
