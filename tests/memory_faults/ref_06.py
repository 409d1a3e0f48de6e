import triton
import triton.language as tl


@triton.jit
def flash_attention_forward_kernel(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse