import triton
import triton.language as tl


@triton.jit
def flash_attention_backward_dkdv_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@triton.jit
def flash_attention_backward_dq_kernel(
        Q, K, V, DO, LSE, DELTA, DQ, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block i, b·H + h): dQ_i = scale · Σ_j dS_ij K_j over the key blocks."""
    start_m, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do, dq (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v (B, H, N_kv, D)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
    q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
    lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:  # keys after the query block's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
        k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    tl.store(DQ + q_offs, (dq * scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < n_q)


def flash_attention_backward_triton(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv