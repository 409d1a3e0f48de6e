"""Blind set D: wrong student answers for notebooks 06-10, written from the notebooks and labkit's reference code only.

Each answer is a copy of the notebook's exercise function (for the Triton exercises: the kernel
and its host wrapper) with exactly one mistake a student plausibly makes. ``tests/verify_blind_d.py``
checks that every answer differs from labkit's reference on a witness input.
"""
import labkit  # noqa: F401  (first: Triton's interpreter on CPU)

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from labkit import decoding, elimination, iterative, poisson
from labkit.decoding import check_decode_inputs
from labkit.kernels import launch
from labkit.kernels.flash_forward import LOG2E
from wrong_answer import WrongAnswer

import triton
import triton.language as tl
from labkit.kernels.decoding import decode_combine_kernel

WRONG: list[WrongAnswer] = []


def _add(exercise, mistake, names, fn):
    WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
    return fn


# =====================================================================================
# 06 · flash_attention_forward_triton
# =====================================================================================

# --- 06 a: alpha computed after m_i was already overwritten (always 1: the old state is never rescaled)
@triton.jit
def fwd_a_kernel(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        m_i = m_new
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def fwd_a(q, k, v, causal=False, scale=None):
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    fwd_a_kernel[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add("flash_attention_forward_triton",
     "The rescale factor alpha = exp2(m_i - m_new) is computed after m_i has already been set to m_new, so it is "
     "always 1 and the running sum and accumulator of earlier K/V tiles are never rescaled when the max grows.",
     (r"alpha", r"rescal", r"m_i"), fwd_a)


# --- 06 b: keys past n_kv masked only inside the causal branch
@triton.jit
def fwd_b_kernel(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if CAUSAL:  # padded keys: the masked load already gave them k = 0, v = 0 (so I thought)
            s = tl.where((offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] < n_kv), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def fwd_b(q, k, v, causal=False, scale=None):
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    fwd_b_kernel[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add("flash_attention_forward_triton",
     "Keys past n_kv are set to -inf only inside the `if CAUSAL` branch: without the causal mask the padded keys of "
     "the last, partial K/V tile keep the score 0 (k loaded as 0) and add 2^(0 - m_i) each to the softmax sum.",
     (r"n_kv", r"pad", r"-inf|mask"), fwd_b)


# --- 06 c: tl.exp instead of tl.exp2 while qk_scale already holds log2(e)
@triton.jit
def fwd_c_kernel(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def fwd_c(q, k, v, causal=False, scale=None):
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    fwd_c_kernel[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add("flash_attention_forward_triton",
     "p and alpha use tl.exp (base e) although qk_scale already contains log2(e) and the epilogue converts from "
     "base 2: the softmax is taken of scores multiplied by log2(e) and the lse is off as well.",
     (r"exp2", r"log2|LOG2E", r"base"), fwd_c)


# --- 06 d: the wrapper's grid drops the last, partial query tile (floor division)
@triton.jit
def fwd_d_kernel(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def fwd_d(q, k, v, causal=False, scale=None):
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (n_q // BLOCK_M, B * H)
    fwd_d_kernel[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add("flash_attention_forward_triton",
     "The wrapper's grid uses n_q // BLOCK_M instead of triton.cdiv(n_q, BLOCK_M), so when N_q is not a multiple "
     "of BLOCK_M no program computes the last query rows and o, lse keep torch.empty's garbage there.",
     (r"grid", r"cdiv|ceil", r"last (query )?(tile|block|rows)"), fwd_d)


# =====================================================================================
# 07 · softmax_jacobian
# =====================================================================================

def jac_a(p):
    return torch.diag_embed(p * (1 - p))  # p_j (δ_jl − p_l): I applied δ to both factors


_add("softmax_jacobian",
     "Returns only the diagonal p_j(1 - p_j): the off-diagonal entries -p_j p_l of diag(p) - p pᵀ are missing.",
     (r"off.?diag", r"p\s*p|outer", r"diag"), jac_a)


def jac_b(p):
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-1)


_add("softmax_jacobian",
     "The outer product is p.unsqueeze(-1) * p.unsqueeze(-1), which broadcasts to p_j² in every column instead of "
     "p_j p_l: one of the two factors must be p.unsqueeze(-2).",
     (r"outer", r"unsqueeze", r"p_?j\s*p_?l|broadcast"), jac_b)


def jac_c(p):
    p = torch.softmax(p, dim=-1)  # p = softmax(s)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


_add("softmax_jacobian",
     "Applies torch.softmax to p first, treating the probabilities as scores: the Jacobian is that of softmax at "
     "s = p, not at the given probability vector.",
     (r"softmax", r"probabilit", r"score"), jac_c)


def jac_d(p):
    n = p.shape[-1]
    return torch.eye(n) * p.unsqueeze(-1) - p.unsqueeze(-1) * p.unsqueeze(-2)


_add("softmax_jacobian",
     "Builds diag(p) as torch.eye(n) * p, and torch.eye is float32 by default, so a float16 or bfloat16 p gets a "
     "float32 Jacobian instead of one in p's dtype.",
     (r"dtype", r"eye", r"float32|float16|bfloat16"), jac_d)


# =====================================================================================
# 07 · flash_attention_backward (PyTorch tiles)
# =====================================================================================

def flash_attention_backward_a(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    dtype, n_q, n_kv = q.dtype, q.shape[2], k.shape[2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (t.to(ct) for t in (do, q, k, v, o, lse))
    d = (do * o).sum(-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j0 in range(0, n_kv, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
        for i0 in range(0, n_q, block_q):
            if causal and j0 > i0 + block_q - 1:
                continue
            q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]
            lse_i, d_i = lse[:, :, i0:i0 + block_q], d[:, :, i0:i0 + block_q]
            s = q_i @ k_j.transpose(-2, -1) * scale
            if causal:
                rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            p = torch.exp(s - lse_i.unsqueeze(-2))
            dp = do_i @ v_j.transpose(-2, -1)
            ds = p * (dp - d_i[..., None])
            dv[:, :, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
            dq[:, :, i0:i0 + block_q] += ds @ k_j * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


_add("flash_attention_backward",
     "p = torch.exp(s - lse_i.unsqueeze(-2)) puts lse_i on the key axis: with square tiles it broadcasts silently and "
     "column j gets query row j's logsumexp; each row i of the tile needs its own lse_i (lse_i[..., None]).",
     (r"lse", r"broadcast|\[\.\.\., None\]|unsqueeze\(-1\)", r"row"), flash_attention_backward_a)


def flash_attention_backward_b(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    dtype, n_q, n_kv = q.dtype, q.shape[2], k.shape[2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (t.to(ct) for t in (do, q, k, v, o, lse))
    d = (do * o).sum(-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j0 in range(0, n_kv, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
        for i0 in range(0, n_q, block_q):
            if causal and j0 > i0 + block_q - 1:
                continue
            q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]
            lse_i, d_i = lse[:, :, i0:i0 + block_q], d[:, :, i0:i0 + block_q]
            s = q_i @ k_j.transpose(-2, -1) * scale
            if causal:
                rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            p = torch.exp(s - lse_i[..., None])
            dp = do_i @ v_j.transpose(-2, -1)
            ds = p * (dp - (p * dp).sum(-1, keepdim=True))  # D = rowsum(P ∘ dP)
            dv[:, :, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
            dq[:, :, i0:i0 + block_q] += ds @ k_j * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


_add("flash_attention_backward",
     "ds uses D = rowsum(p ∘ dp) over the current key tile only instead of the precomputed d_i = rowsum(dO ∘ O): "
     "the row sum must run over the whole row of P, all key tiles, so it is wrong as soon as there are several "
     "key tiles.",
     (r"\bD\b|d_i|delta", r"rowsum|row sum", r"dO\s*[∘*]\s*O|whole row|tile"), flash_attention_backward_b)


def flash_attention_backward_c(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    dtype, n_q, n_kv = q.dtype, q.shape[2], k.shape[2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (t.to(ct) for t in (do, q, k, v, o, lse))
    d = (do * o).sum(-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j0 in range(0, n_kv, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
        for i0 in range(0, n_q, block_q):
            if causal and j0 > i0 + block_q - 1:
                continue
            q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]
            lse_i, d_i = lse[:, :, i0:i0 + block_q], d[:, :, i0:i0 + block_q]
            s = q_i @ k_j.transpose(-2, -1) * scale
            if causal:
                rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            p = torch.exp(s - lse_i[..., None])
            dp = do_i @ v_j.transpose(-2, -1)
            ds = p * dp - d_i[..., None]
            dv[:, :, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
            dq[:, :, i0:i0 + block_q] += ds @ k_j * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


_add("flash_attention_backward",
     "ds = p * dp - d_i[..., None] is missing the parentheses: the D term must be multiplied by P too, "
     "dS = P ∘ (dP - D).",
     (r"P\s*[∘*]\s*\(dP\s*-\s*D\)|parenthes", r"\bD\b|d_i", r"ds|dS"), flash_attention_backward_c)


def flash_attention_backward_d(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    dtype, n_q, n_kv = q.dtype, q.shape[2], k.shape[2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (t.to(ct) for t in (do, q, k, v, o, lse))
    d = (do * o).sum(-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j0 in range(0, n_kv, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
        for i0 in range(0, n_q, block_q):
            if causal and j0 > i0 + block_q - 1:
                continue
            q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]
            lse_i, d_i = lse[:, :, i0:i0 + block_q], d[:, :, i0:i0 + block_q]
            s = q_i @ k_j.transpose(-2, -1) * scale
            if causal:
                rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            p = torch.softmax(s, dim=-1)
            dp = do_i @ v_j.transpose(-2, -1)
            ds = p * (dp - d_i[..., None])
            dv[:, :, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
            dq[:, :, i0:i0 + block_q] += ds @ k_j * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


_add("flash_attention_backward",
     "p is rebuilt with torch.softmax over the tile's scores, which normalises each tile on its own; "
     "P must be exp(S - lse) with the saved logsumexp of the whole row.",
     (r"lse|logsumexp", r"softmax", r"exp\(\s*s\s*-"), flash_attention_backward_d)


# =====================================================================================
# 07 · flash_attention_backward_triton (dK/dV kernel loop body)
# =====================================================================================

@triton.jit
def bwd_dq_kernel(
        Q, K, V, DO, LSE, DELTA, DQ, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """The notebook's given dQ kernel, unchanged."""
    start_m, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
    q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
    do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
    lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
        k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
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


def _bwd_wrapper(dkdv_kernel):
    def flash_attention_backward_triton(do, q, k, v, o, lse, causal=False, scale=None):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        scale = 1.0 / math.sqrt(D) if scale is None else scale
        q, k, v, do = (t.contiguous() for t in (q, k, v, do))
        lse = lse.float().contiguous()
        delta = (do.float() * o.float()).sum(-1).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        BLOCK_M, BLOCK_N = 32, 32
        precision = "ieee" if q.dtype == torch.float32 else "tf32"
        args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
        meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
        dkdv_kernel[(triton.cdiv(n_kv, BLOCK_N), B * H)](
            q, k, v, do, lse, delta, dk, dv, *args, **meta)
        bwd_dq_kernel[(triton.cdiv(n_q, BLOCK_M), B * H)](
            q, k, v, do, lse, delta, dq, *args, **meta)
        return dq, dk, dv
    return flash_attention_backward_triton


# --- 07.2 a: no causal mask on p (the loop's lower bound `lo` was thought to be enough)
@triton.jit
def dkdv_a_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


_add("flash_attention_backward_triton",
     "The dK/dV loop never applies the causal mask to p (only the bounds mask): starting the loop at `lo` skips "
     "whole query blocks, but inside the diagonal blocks keys after the query still get p = exp(s - lse) > 0.",
     (r"causal", r"diagonal", r"offs_n\[None, :\] <= offs_m|mask"), _bwd_wrapper(dkdv_a_kernel))


# --- 07.2 b: dK accumulates dSᵀ K (the dQ kernel's right factor) instead of dSᵀ Q
@triton.jit
def dkdv_b_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), k, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


_add("flash_attention_backward_triton",
     "dk accumulates tl.dot(tl.trans(ds), k), copied from the dQ kernel's ds @ k: dK_j = scale · dSᵀ Q_i needs the "
     "query tile q, not the key tile (it only runs because BLOCK_M = BLOCK_N).",
     (r"dS.?ᵀ\s*Q|dk|trans\(ds", r"\bq\b|query tile|Q_i"), _bwd_wrapper(dkdv_b_kernel))


# --- 07.2 c: delta loaded at the key offsets offs_n instead of the query rows offs_m
@triton.jit
def dkdv_c_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_n, mask=offs_n < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
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


_add("flash_attention_backward_triton",
     "delta is loaded at DELTA + off_bh * n_q + offs_n, the program's key positions, instead of the query rows "
     "offs_m of the current tile: D_i belongs to query row i, like lse.",
     (r"delta|\bD_i\b", r"offs_m", r"query row"), _bwd_wrapper(dkdv_c_kernel))


# --- 07.2 d: s without the softmax scale ("the scale is applied once after the loop")
@triton.jit
def dkdv_d_kernel(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # scale: applied once after the loop
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


_add("flash_attention_backward_triton",
     "The scores s = Q_i K_jᵀ are not multiplied by scale before exp(s - lse): the scale applied after the loop is "
     "dK's factor only, while lse was computed from scaled scores, so P is wrong.",
     (r"scale", r"exp\(\s*s\s*-\s*lse|scores"), _bwd_wrapper(dkdv_d_kernel))


# =====================================================================================
# 08 · back_substitution
# =====================================================================================

def back_substitution_a(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i, i:] @ x[i:]) / U[i, i]
    return x


_add("back_substitution",
     "The sum runs over U[i, i:] @ x[i:], which includes the diagonal term u_ii · y_i; it must start right of the "
     "diagonal, U[i, i+1:] @ x[i+1:].",
     (r"i\s*\+\s*1", r"diagonal", r"slice"), back_substitution_a)


def back_substitution_b(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i] @ x + U[i, i] * x[i]) / U[i, i]
    return x


_add("back_substitution",
     "Uses the whole row, U[i] @ x (minus the diagonal term), so entries below the diagonal of U are read and "
     "multiply the not yet solved y values; only the upper triangle may be read.",
     (r"upper triang", r"below the diagonal|lower", r"whole row"), back_substitution_b)


def back_substitution_c(U, y):
    U = np.asarray(U, dtype=float)
    x = np.asarray(y, dtype=float)  # no copy needed
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


_add("back_substitution",
     "x = np.asarray(y, dtype=float) does not copy a float64 y, so the solve overwrites the caller's y in place.",
     (r"in place|modif", r"cop(y|ies)", r"asarray"), back_substitution_c)


def back_substitution_d(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


_add("back_substitution",
     "x = np.array(y) keeps an integer y's dtype, so every x[i] is truncated to an integer when assigned and an "
     "integer array is returned instead of float64.",
     (r"float64|dtype", r"integer|int\b", r"truncat"), back_substitution_d)


# =====================================================================================
# 08 · gaussian_elimination
# =====================================================================================

def gaussian_elimination_a(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(A[k:, k]))  # the largest entry of the column
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


_add("gaussian_elimination",
     "The pivot is the largest signed entry, argmax(A[k:, k]), not the largest in absolute value: a column of "
     "negative numbers gets its smallest-magnitude entry (possibly tiny) as pivot, and the multipliers blow up.",
     (r"abs|absolute|magnitude", r"pivot", r"argmax"), gaussian_elimination_a)


def gaussian_elimination_b(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


_add("gaussian_elimination",
     "The rows of A are swapped at each pivot but the same rows of b are not, so the right-hand side no longer "
     "matches its equations.",
     (r"\bb\b", r"swap", r"right.hand"), gaussian_elimination_b)


def gaussian_elimination_c(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        for i in range(k + 1, n):
            A[i, k:] -= A[i, k] / A[k, k] * A[k, k:]
            b[i] -= A[i, k] / A[k, k] * b[k]
    return elimination.back_substitution(A, b)


_add("gaussian_elimination",
     "The multiplier A[i, k] / A[k, k] is recomputed for b after row i of A was updated, when A[i, k] is already "
     "0: b is never eliminated. Compute the multiplier once, before the update.",
     (r"multiplier", r"\bb\b", r"before|already"), gaussian_elimination_c)


def gaussian_elimination_d(A, b, pivoting="partial"):
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


_add("gaussian_elimination",
     "np.asarray does not copy float64 arrays, so the elimination overwrites the caller's A and b.",
     (r"in place|modif", r"cop(y|ies)", r"asarray"), gaussian_elimination_d)


# =====================================================================================
# 08 · lu_factor
# =====================================================================================

def lu_factor_a(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p], k:] = lu[[p, k], k:]  # the multipliers left of column k stay where they are
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


_add("lu_factor",
     "Swaps only columns k: onward, so the multipliers already stored left of the pivot column are not permuted "
     "with their rows and L does not satisfy PA = LU; swap whole rows.",
     (r"whole row|entire row", r"multiplier", r"swap"), lu_factor_a)


def lu_factor_b(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    perm = np.arange(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        perm[[k, p]] = perm[[p, k]]
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, perm


_add("lu_factor",
     "Returns the final row permutation (perm[i] = original row now in row i) as piv, but scipy's piv lists the "
     "swaps: piv[k] is the row exchanged with row k at step k.",
     (r"piv", r"swap", r"permutation"), lu_factor_b)


def lu_factor_c(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


_add("lu_factor",
     "piv is created with np.zeros(n), a float64 array; it must be an integer array of row indices.",
     (r"integer|int32|int\b", r"piv", r"dtype|float"), lu_factor_c)


def lu_factor_d(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k:] -= np.outer(lu[k + 1:, k], lu[k, k:])
    return lu, piv


_add("lu_factor",
     "The rank-1 update covers lu[k+1:, k:], including the pivot column, so the multipliers just stored in column k "
     "are overwritten by l - l·u_kk; the update is for the columns right of the pivot, lu[k+1:, k+1:].",
     (r"k\s*\+\s*1", r"multiplier", r"rank.?1|trailing|update"), lu_factor_d)


# =====================================================================================
# 08 · elimination_flops
# =====================================================================================

def elimination_flops_a(n):
    # a multiply-add a_ij - l_ik a_kj counted as one flop: sum_m (m^2 + m + m)
    return (2 * n ** 3 + 3 * n ** 2 - 5 * n) // 6


_add("elimination_flops",
     "Counts a multiply-add a_ij - l_ik a_kj (and b_i - l_ik b_k) as one flop; in this course it is two, so the "
     "leading term must be 2n³/3, not n³/3.",
     (r"multiply.add", r"2\s*flops|two flops", r"2\s*n\^?3\s*/\s*3|leading"), elimination_flops_a)


def elimination_flops_b(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) / 6


_add("elimination_flops",
     "The closed form is divided with /, which returns a float; the count must be an int (use // on an exact "
     "numerator).",
     (r"\bint\b|integer", r"float", r"//"), elimination_flops_b)


def elimination_flops_c(n):
    # the update runs over the columns j >= k (pivot column included): m (m + 1) entries per step
    return (4 * n ** 3 + 9 * n ** 2 - 13 * n) // 6


_add("elimination_flops",
     "Counts the update a_ij -= l_ik a_kj for the columns j >= k, pivot column included; the entries below the "
     "pivot become 0 without arithmetic, so only the columns j > k (m per row) cost flops.",
     (r"j\s*>\s*k|pivot column", r"below the pivot|become 0|zero"), elimination_flops_c)


def elimination_flops_d(n):
    # sum_{m=1}^{n} (2m^2 + 3m)
    return (4 * n ** 3 + 15 * n ** 2 + 11 * n) // 6


_add("elimination_flops",
     "Sums 2m² + 3m over m = 1..n instead of m = 1..n-1: the first step has n - 1 rows below the pivot, and the "
     "last step none.",
     (r"n\s*-\s*1", r"off.by.one|range|sum"), elimination_flops_d)


# =====================================================================================
# 08 · blocked_lu
# =====================================================================================

def blocked_lu_a(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:] -= np.outer(lu[j + 1:, j], lu[j, j + 1:])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                    unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


_add("blocked_lu",
     "The rank-1 steps inside the panel update every column to the right (lu[j+1:, j+1:]) instead of only the "
     "panel's columns (j+1:e), so A_12 and A_22 are updated twice: once by the rank-1 steps and again by the "
     "triangular solve and the matrix product.",
     (r"panel", r"\be\b|j\s*\+\s*1\s*:\s*e", r"twice|trailing"), blocked_lu_a)


def blocked_lu_b(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p], k:] = lu[[p, j], k:]  # the panel and the columns to come
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                    unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


_add("blocked_lu",
     "Each pivot swap is applied from column k (the panel) rightwards only, so the multipliers stored left of the "
     "panel by earlier panels are not permuted; the swap must move the whole row.",
     (r"whole row|entire row", r"left of the panel|multiplier", r"swap"), blocked_lu_b)


def blocked_lu_c(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:e, j])))  # the panel's rows
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                    unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


_add("blocked_lu",
     "The pivot is searched only in rows j..e-1 of the panel's square block (lu[j:e, j]) instead of down the whole "
     "tall panel to the last row (lu[j:, j]), so it is not the largest entry of the column.",
     (r"pivot", r"bottom|last row|lu\[j:, j\]|tall", r"search|largest"), blocked_lu_c)


def blocked_lu_d(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


_add("blocked_lu",
     "The solve for U_12 omits unit_diagonal=True, so it divides by the diagonal of lu[k:e, k:e], which holds U's "
     "pivots, not L_11's implicit ones.",
     (r"unit", r"diagonal", r"solve_triangular|U_12"), blocked_lu_d)


# =====================================================================================
# 09 · gauss_seidel_sweep
# =====================================================================================

def gauss_seidel_sweep_a(A, b, x):
    x = np.array(x, dtype=float)
    r = b - A @ x  # the residual, once: vectorised
    if sp.issparse(A):
        d = A.diagonal()
    else:
        d = np.diag(np.asarray(A, dtype=float))
    for i in range(len(b)):
        x[i] += r[i] / d[i]
    return x


_add("gauss_seidel_sweep",
     "The residual b - A x is computed once before the loop, so every row is updated from the old x: that is a "
     "Jacobi sweep; Gauss-Seidel must use the new values of the rows above as soon as they exist.",
     (r"jacobi", r"new values|old", r"residual"), gauss_seidel_sweep_a)


def gauss_seidel_sweep_b(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[0]  # the first stored entry of the row
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


_add("gauss_seidel_sweep",
     "For a CSR matrix the diagonal is taken as the row's first stored value, vals[0]; it is the entry whose column "
     "is i (vals[cols == i]), which is first only when the row has nothing left of the diagonal.",
     (r"diagonal", r"cols\s*==\s*i|column", r"csr|indices"), gauss_seidel_sweep_b)


def gauss_seidel_sweep_c(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i, :i] @ x[:i] - A[i, i:] @ x[i:]) / A[i, i]
    return x


_add("gauss_seidel_sweep",
     "For a dense A the upper sum is A[i, i:] @ x[i:], which includes the diagonal term a_ii x_i; it must be "
     "A[i, i+1:] @ x[i+1:].",
     (r"i\s*\+\s*1", r"diagonal", r"slice"), gauss_seidel_sweep_c)


def gauss_seidel_sweep_d(A, b, x):
    x = np.asarray(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


_add("gauss_seidel_sweep",
     "x = np.asarray(x, dtype=float) does not copy a float64 x, so the sweep overwrites the caller's iterate.",
     (r"in place|modif", r"cop(y|ies)", r"asarray"), gauss_seidel_sweep_d)


# =====================================================================================
# 09 · gauss_seidel
# =====================================================================================

def gauss_seidel_a(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = None
    r0 = None
    with np.errstate(all="ignore"):
        for k in range(maxiter + 1):
            r = np.linalg.norm(b - A @ x)
            if tol is None:
                tol = max(rtol * r, atol)  # relative to the starting residual
            if r <= tol:
                return x, 0
            r0 = r if r0 is None else r0
            if not r <= 1e12 * r0:
                return x, max(k, 1)
            if k == maxiter:
                break
            x = iterative.gauss_seidel_sweep(A, b, x)
            if callback is not None:
                callback(x)
    return x, max(maxiter, 1)


_add("gauss_seidel",
     "The tolerance is rtol times the initial residual ||b - A x0|| instead of rtol · ||b||: with a starting guess "
     "x0 the test stops at the wrong sweep.",
     (r"\|\|b\|\||norm\(b\)|rtol", r"initial residual|x0"), gauss_seidel_a)


def gauss_seidel_b(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    r0 = None
    with np.errstate(all="ignore"):
        for k in range(maxiter + 1):
            r = np.linalg.norm(b - A @ x)
            if r <= tol:
                return x, 0
            r0 = r if r0 is None else r0
            if not r <= 1e12 * r0:
                return x, max(k, 1)
            if k == maxiter:
                break
            x = iterative.gauss_seidel_sweep(A, b, x)
            if callback is not None:
                callback(x)
    return x, maxiter


_add("gauss_seidel",
     "When the sweeps run out it returns info = maxiter, which is 0 for maxiter=0 and so reports success for an x0 "
     "that failed the test; info must be at least 1 there.",
     (r"info", r"maxiter\s*=\s*0|at least 1|max\(\s*maxiter\s*,\s*1\)"), gauss_seidel_b)


def gauss_seidel_c(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    r0 = None
    with np.errstate(all="ignore"):
        for k in range(maxiter + 1):
            r = np.linalg.norm(b - A @ x)
            if r <= tol:
                return x, 0
            r0 = r if r0 is None else r0
            if not r <= 1e12 * r0:
                return x, max(k, 1)
            if k == maxiter:
                break
            if callback is not None:
                callback(x)
            x = iterative.gauss_seidel_sweep(A, b, x)
    return x, max(maxiter, 1)


_add("gauss_seidel",
     "callback(x) is called before each sweep, with the previous iterate (x0 first, and never the last one); it must "
     "be called after each sweep with the new x.",
     (r"callback", r"after (each|every) sweep"), gauss_seidel_c)


def gauss_seidel_d(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter + 1):
            r = np.linalg.norm(b - A @ x)
            if r <= tol:
                return x, 0
            if k == maxiter:
                break
            x = iterative.gauss_seidel_sweep(A, b, x)
            if callback is not None:
                callback(x)
    return x, max(maxiter, 1)


_add("gauss_seidel",
     "There is no divergence test: when the iteration blows up it keeps sweeping until maxiter and reports "
     "info = maxiter, instead of stopping as soon as ||b - A x|| > 1e12 ||b - A x0|| with info = the sweeps done.",
     (r"diverg|blow", r"1e12|10\^?12", r"sweeps done|info"), gauss_seidel_d)


# =====================================================================================
# 09 · sor_sweep
# =====================================================================================

def sor_sweep_a(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * x[i]
    return x


_add("sor_sweep",
     "x[i] is overwritten with the Gauss-Seidel value before the relaxation, so (1 - omega) x_i + omega x̃_i uses "
     "the new value twice and the sweep is plain Gauss-Seidel for every omega.",
     (r"omega|relax", r"old value|x_i|before"), sor_sweep_a)


def sor_sweep_b(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = omega * x[i] + (1 - omega) * gs
    return x


_add("sor_sweep",
     "The weights are swapped: omega multiplies the old x_i and 1 - omega the Gauss-Seidel value; SOR is "
     "(1 - omega) x_i + omega x̃_i.",
     (r"omega", r"swap|weights|1\s*-\s*omega"), sor_sweep_b)


def sor_sweep_c(A, b, x, omega):
    x_old = np.array(x, dtype=float)
    x = x_old.copy()
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return (1 - omega) * x_old + omega * x  # relax the whole sweep at the end


_add("sor_sweep",
     "Relaxes after the whole Gauss-Seidel sweep, (1 - omega) x_old + omega x_GS, so the later rows use unrelaxed "
     "values; in SOR each row's relaxed value is used by the rows after it within the same sweep.",
     (r"relax", r"within the (same )?sweep|each row|in order"), sor_sweep_c)


def sor_sweep_d(A, b, x, omega):
    x = np.array(x)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


_add("sor_sweep",
     "x = np.array(x) keeps an integer x's dtype, so every new x_i is truncated to an integer and an integer array "
     "is returned instead of float64.",
     (r"float64|dtype", r"integer|int\b", r"truncat"), sor_sweep_d)


# =====================================================================================
# 09 · red_black_sweep
# =====================================================================================

def red_black_sweep_a(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4  # one stencil for both colours
    for mask in poisson.red_black_masks(f.shape[0]):
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


_add("red_black_sweep",
     "The stencil is evaluated once before the two colours, so the black points are updated from the old red values "
     "(a Jacobi step); recompute it after the red half-sweep.",
     (r"black", r"new red|after the red|recompute", r"jacobi|stencil"), red_black_sweep_a)


def red_black_sweep_b(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    m = f.shape[0]
    h = 1 / (m + 1)
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(m):
        gs = (h * h * f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


_add("red_black_sweep",
     "Multiplies f by h² again although f is already multiplied by h², so the right-hand side is scaled by h² "
     "twice.",
     (r"h\s*\^?\s*2|h²|h\*\*2", r"already|twice|scal"), red_black_sweep_b)


def red_black_sweep_c(u, f, omega=1.0):
    u = np.asarray(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(f.shape[0]):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


_add("red_black_sweep",
     "u = np.asarray(u, dtype=float) does not copy a float64 grid, so the sweep updates the caller's u in place.",
     (r"in place|modif", r"cop(y|ies)", r"asarray"), red_black_sweep_c)


def red_black_sweep_d(u, f, omega=1.0):
    m = f.shape[0]
    new = np.zeros((m + 2, m + 2))
    new[1:-1, 1:-1] = u[1:-1, 1:-1]
    inner = new[1:-1, 1:-1]
    for mask in poisson.red_black_masks(m):
        gs = (f + new[:-2, 1:-1] + new[2:, 1:-1] + new[1:-1, :-2] + new[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return new


_add("red_black_sweep",
     "The new grid copies only the interior of u and leaves a zero boundary, so nonzero boundary values are lost "
     "(and not used by the stencil); copy the whole padded grid.",
     (r"boundary", r"cop(y|ies)|padded"), red_black_sweep_d)


# =====================================================================================
# 10 · kv_cache_bytes
# =====================================================================================

def kv_cache_bytes_a(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.finfo(dtype).bits
    return 2 * layers * kv_heads * head_dim * tokens * batch * element


_add("kv_cache_bytes",
     "Multiplies by torch.finfo(dtype).bits, the bits of an element, not its bytes: the result is 8 times too large.",
     (r"bits?", r"bytes?|element_size"), kv_cache_bytes_a)


def kv_cache_bytes_b(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.finfo(dtype).bits / 8
    return 2 * layers * kv_heads * head_dim * tokens * batch * element


_add("kv_cache_bytes",
     "The bytes per element are computed as bits / 8 with true division, so the function returns a float instead of "
     "an int.",
     (r"\bint\b|integer", r"float", r"//|element_size"), kv_cache_bytes_b)


def kv_cache_bytes_c(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * layers * kv_heads * head_dim * tokens * element


_add("kv_cache_bytes",
     "The batch argument is ignored: the cache holds K and V for each of the batch sequences, so the product must "
     "include batch.",
     (r"batch",), kv_cache_bytes_c)


def kv_cache_bytes_d(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1):
    return 2 * layers * kv_heads * head_dim * tokens * batch * 2  # fp16: 2 bytes


_add("kv_cache_bytes",
     "Hard-codes 2 bytes per element (fp16) and ignores dtype: a float32 or float64 cache is under-counted.",
     (r"dtype", r"element_size|bytes per element", r"float32|fp16|2 bytes"), kv_cache_bytes_d)


# =====================================================================================
# 10 · combine_partials
# =====================================================================================

def combine_partials_a(m, l, acc):
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    o = (w[..., None] * acc).sum(dim=-2) / total[..., None]
    return o, torch.log(total)


_add("combine_partials",
     "lse is returned as log Σ e^(m_s - M) l_s, without adding back the max M that was subtracted.",
     (r"lse", r"\bM\b|max"), combine_partials_a)


def combine_partials_b(m, l, acc):
    M = m.amax(dim=-1, keepdim=True)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    o = (w[..., None] * acc).sum(dim=-2) / w.sum(dim=-1)[..., None]
    return o, M[..., 0] + torch.log(total)


_add("combine_partials",
     "o is normalised by Σ e^(m_s - M), the sum of the weights alone, instead of Σ e^(m_s - M) l_s: each chunk's "
     "running sum l_s must be weighted too.",
     (r"\bl_s\b|\bl\b|running sum", r"normali|denominator|total"), combine_partials_b)


def combine_partials_c(m, l, acc):
    M = m.max()  # the largest m_s: every exponent is <= 0
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    w = torch.exp(m - M)
    total = (w * l).sum(dim=-1)
    o = (w[..., None] * acc).sum(dim=-2) / total[..., None]
    return o, M + torch.log(total)


_add("combine_partials",
     "M = m.max() is the maximum over every batch and head, not each head's maximum over its chunks "
     "(amax(dim=-1)): a head whose scores are far below another head's underflows to 0/0.",
     (r"dim\s*=\s*-1|per head|each head", r"amax|max", r"underflow"), combine_partials_c)


def combine_partials_d(m, l, acc):
    B, H, S, D = acc.shape
    o = torch.zeros(B, H, D)
    lse = torch.zeros(B, H)
    M = m.amax(dim=-1)
    M = torch.where(torch.isinf(M), torch.zeros_like(M), M)
    total = torch.zeros(B, H)
    for s in range(S):
        w = torch.exp(m[..., s] - M)
        total += w * l[..., s]
        o += w[..., None] * acc[..., s, :]
    o /= total[..., None]
    lse = M + torch.log(total)
    return o, lse


_add("combine_partials",
     "The accumulators are created with torch.zeros(B, H, D), float32 by default, so float64 states lose precision "
     "and o comes back float32 instead of in the states' dtype.",
     (r"dtype", r"float32|float64", r"zeros"), combine_partials_d)


# =====================================================================================
# 10 · paged_attention
# =====================================================================================

def paged_attention_a(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos % P].long().clamp(min=0)
    slots = (pos // P).expand_as(pages)
    k = k_pages[pages, :, slots].permute(0, 2, 1, 3)
    v = v_pages[pages, :, slots].permute(0, 2, 1, 3)
    return decoding.decode_attention(q, k, v, lengths, scale)


_add("paged_attention",
     "Page and slot are swapped: position i is in page block_table[b, i // P] at slot i % P, not page "
     "block_table[b, i % P] at slot i // P.",
     (r"i\s*//\s*P", r"i\s*%\s*P", r"slot|page"), paged_attention_a)


def paged_attention_b(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    H, H_kv = q.shape[1], k_pages.shape[1]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k = k_pages[pages, :, slots].permute(0, 2, 1, 3)
    v = v_pages[pages, :, slots].permute(0, 2, 1, 3)
    k, v = k.repeat(1, H // H_kv, 1, 1), v.repeat(1, H // H_kv, 1, 1)  # one KV head per query head
    return decoding.decode_attention(q, k, v, lengths, scale)


_add("paged_attention",
     "The KV heads are expanded with repeat, which maps query head h to KV head h % H_kv; grouped-query attention "
     "needs h // (H / H_kv) (repeat_interleave, or leave the grouping to decode_attention).",
     (r"h\s*//|group", r"repeat_interleave|GQA|grouped", r"kv head"), paged_attention_b)


def paged_attention_c(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k = k_pages[pages, :, slots].permute(0, 2, 1, 3)
    v = v_pages[pages, :, slots].permute(0, 2, 1, 3)
    return decoding.decode_attention(q, k, v, None, scale)  # the gather already stops at the longest length


_add("paged_attention",
     "lengths is not passed on to decode_attention, so every sequence shorter than the longest also attends to the "
     "stale slots of its last page and to whatever the clamped table entries point at.",
     (r"lengths?", r"mask|past|stale"), paged_attention_c)


def paged_attention_d(q, k_pages, v_pages, block_table, lengths, scale=None):
    P = k_pages.shape[2]
    B, H_kv, D = q.shape[0], k_pages.shape[1], k_pages.shape[3]
    n = int(lengths.max())
    pos = torch.arange(n)
    pages = block_table[:, pos // P].long().clamp(min=0)
    slots = (pos % P).expand_as(pages)
    k = k_pages[pages, :, slots].reshape(B, H_kv, n, D)
    v = v_pages[pages, :, slots].reshape(B, H_kv, n, D)
    return decoding.decode_attention(q, k, v, lengths, scale)


_add("paged_attention",
     "The gathered (B, n, H_kv, D) keys and values are reshaped to (B, H_kv, n, D) instead of permuted, which "
     "interleaves heads and positions.",
     (r"permute|transpose", r"reshape|view", r"\(B, H_kv, n, D\)|axes|layout"), paged_attention_d)


# =====================================================================================
# 10 · flash_decode_triton
# =====================================================================================

def _decode_wrapper(kernel):
    def flash_decode_triton(q, k, v, lengths=None, scale=None, num_splits=None):
        B, H, H_kv, N, D, lengths = check_decode_inputs(q, k, v, lengths, "flash_decode_triton")
        scale = 1 / math.sqrt(D) if scale is None else scale
        block = launch.decode_config(launch.current_arch(), q.dtype, D).block_n
        tiles = triton.cdiv(N, block)
        splits = min(num_splits or launch.decode_splits(launch.current_arch(), B * H, tiles), tiles)
        chunk = triton.cdiv(tiles, splits) * block
        splits = triton.cdiv(N, chunk)
        m = torch.empty(B * H * splits, dtype=torch.float32, device=q.device)
        l = torch.empty_like(m)  # noqa: E741
        acc = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
        o = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
        lse = torch.empty(B, H, dtype=torch.float32, device=q.device)
        kernel[(B * H, splits)](q, k, v, lengths.to(torch.int32), m, l, acc, *q.stride(), *k.stride(), *v.stride(),
                                H, H // H_kv, chunk, splits, scale * LOG2E,
                                HEAD_DIM=D, BLOCK_N=block)
        decode_combine_kernel[(B * H,)](m, l, acc, o, lse, splits, *o.stride(), H, HEAD_DIM=D,
                                        BLOCK_S=max(16, triton.next_power_of_2(splits)))
        return o, lse
    return flash_decode_triton


# --- 10.4 a: invalid positions not set to -inf (the masked load gave them k = 0)
@triton.jit
def decode_a_kernel(Q, K, V, LENGTHS, M, L, ACC,
                    stride_qb, stride_qh, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd,
                    H, group, chunk, num_splits, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr):
    off_bh = tl.program_id(0)
    split = tl.program_id(1)
    b, h = off_bh // H, off_bh % H
    kv_h = h // group
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_d * stride_qd).to(tl.float32)
    k_base = K + b.to(tl.int64) * stride_kb + kv_h * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kv_h * stride_vh
    start = split * chunk
    end = tl.minimum(start + chunk, tl.load(LENGTHS + b))
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        valid = offs_n < end
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd, mask=valid[:, None], other=0.0)
        s = tl.sum(k.to(tl.float32) * q[None, :], 1) * qk_scale
        m_new = tl.maximum(m_i, tl.max(s, 0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, mask=valid[:, None], other=0.0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
        m_i = m_new
    state = off_bh * num_splits + split
    tl.store(M + state, m_i)
    tl.store(L + state, l_i)
    tl.store(ACC + state * HEAD_DIM + offs_d, acc)


_add("flash_decode_triton",
     "The scores of positions past `end` are never set to -inf: the masked load gives them k = 0, so each one adds "
     "a score of 0, i.e. 2^(0 - m) to the sum l_i, in the last tile of a chunk.",
     (r"-inf|inf", r"valid|mask", r"tl\.where|past"), _decode_wrapper(decode_a_kernel))


# --- 10.4 b: acc is not rescaled by alpha when the running max grows
@triton.jit
def decode_b_kernel(Q, K, V, LENGTHS, M, L, ACC,
                    stride_qb, stride_qh, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd,
                    H, group, chunk, num_splits, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr):
    off_bh = tl.program_id(0)
    split = tl.program_id(1)
    b, h = off_bh // H, off_bh % H
    kv_h = h // group
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_d * stride_qd).to(tl.float32)
    k_base = K + b.to(tl.int64) * stride_kb + kv_h * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kv_h * stride_vh
    start = split * chunk
    end = tl.minimum(start + chunk, tl.load(LENGTHS + b))
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        valid = offs_n < end
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd, mask=valid[:, None], other=0.0)
        s = tl.sum(k.to(tl.float32) * q[None, :], 1) * qk_scale
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, mask=valid[:, None], other=0.0)
        acc = acc + tl.sum(p[:, None] * v.to(tl.float32), 0)
        m_i = m_new
    state = off_bh * num_splits + split
    tl.store(M + state, m_i)
    tl.store(L + state, l_i)
    tl.store(ACC + state * HEAD_DIM + offs_d, acc)


_add("flash_decode_triton",
     "acc is not multiplied by alpha before the new tile's p·v is added (only l_i is rescaled), so the values of "
     "earlier tiles keep weights relative to an outdated max.",
     (r"alpha", r"acc", r"rescal"), _decode_wrapper(decode_b_kernel))


# --- 10.4 c: p uses the old max m_i instead of m_new
@triton.jit
def decode_c_kernel(Q, K, V, LENGTHS, M, L, ACC,
                    stride_qb, stride_qh, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd,
                    H, group, chunk, num_splits, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr):
    off_bh = tl.program_id(0)
    split = tl.program_id(1)
    b, h = off_bh // H, off_bh % H
    kv_h = h // group
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_d * stride_qd).to(tl.float32)
    k_base = K + b.to(tl.int64) * stride_kb + kv_h * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kv_h * stride_vh
    start = split * chunk
    end = tl.minimum(start + chunk, tl.load(LENGTHS + b))
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        valid = offs_n < end
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd, mask=valid[:, None], other=0.0)
        s = tl.sum(k.to(tl.float32) * q[None, :], 1) * qk_scale
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_i)
        l_i = l_i * alpha + tl.sum(p, 0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, mask=valid[:, None], other=0.0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
        m_i = m_new
    state = off_bh * num_splits + split
    tl.store(M + state, m_i)
    tl.store(L + state, l_i)
    tl.store(ACC + state * HEAD_DIM + offs_d, acc)


_add("flash_decode_triton",
     "p = exp2(s - m_i) subtracts the previous max instead of m_new: on the first tile m_i = -inf gives inf and NaN, "
     "and later the new tile is weighted against a different max than the rescaled state.",
     (r"m_new", r"m_i|max", r"nan|inf"), _decode_wrapper(decode_c_kernel))


# --- 10.4 d: the wrapper passes scale instead of scale · log2(e) while the kernel works in base 2
@triton.jit
def decode_d_kernel(Q, K, V, LENGTHS, M, L, ACC,
                    stride_qb, stride_qh, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd,
                    H, group, chunk, num_splits, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr):
    off_bh = tl.program_id(0)
    split = tl.program_id(1)
    b, h = off_bh // H, off_bh % H
    kv_h = h // group
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_d * stride_qd).to(tl.float32)
    k_base = K + b.to(tl.int64) * stride_kb + kv_h * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kv_h * stride_vh
    start = split * chunk
    end = tl.minimum(start + chunk, tl.load(LENGTHS + b))
    m_i = tl.full([], float("-inf"), tl.float32)
    l_i = tl.full([], 0.0, tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        valid = offs_n < end
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd, mask=valid[:, None], other=0.0)
        s = tl.sum(k.to(tl.float32) * q[None, :], 1) * qk_scale
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 0))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, mask=valid[:, None], other=0.0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
        m_i = m_new
    state = off_bh * num_splits + split
    tl.store(M + state, m_i)
    tl.store(L + state, l_i)
    tl.store(ACC + state * HEAD_DIM + offs_d, acc)


def flash_decode_triton_d(q, k, v, lengths=None, scale=None, num_splits=None):
    B, H, H_kv, N, D, lengths = check_decode_inputs(q, k, v, lengths, "flash_decode_triton")
    scale = 1 / math.sqrt(D) if scale is None else scale
    block = launch.decode_config(launch.current_arch(), q.dtype, D).block_n
    tiles = triton.cdiv(N, block)
    splits = min(num_splits or launch.decode_splits(launch.current_arch(), B * H, tiles), tiles)
    chunk = triton.cdiv(tiles, splits) * block
    splits = triton.cdiv(N, chunk)
    m = torch.empty(B * H * splits, dtype=torch.float32, device=q.device)
    l = torch.empty_like(m)  # noqa: E741
    acc = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
    o = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, dtype=torch.float32, device=q.device)
    decode_d_kernel[(B * H, splits)](q, k, v, lengths.to(torch.int32), m, l, acc, *q.stride(), *k.stride(),
                                     *v.stride(), H, H // H_kv, chunk, splits, scale, HEAD_DIM=D, BLOCK_N=block)
    decode_combine_kernel[(B * H,)](m, l, acc, o, lse, splits, *o.stride(), H, HEAD_DIM=D,
                                    BLOCK_S=max(16, triton.next_power_of_2(splits)))
    return o, lse


_add("flash_decode_triton",
     "The wrapper passes qk_scale = scale instead of scale * LOG2E, but the kernel and the combine work in base 2 "
     "(exp2, log2): the softmax is taken of scores multiplied by ln 2, and the lse is off.",
     (r"LOG2E|log2", r"qk_scale|scale", r"exp2|base"), flash_decode_triton_d)
