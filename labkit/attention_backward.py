"""Attention backward in PyTorch: the lab's recompute algorithm, the FlashAttention-2 backward, autograd.

For O = P V with P = softmax(S), S = s · Q Kᵀ (masked if causal) and an upstream gradient dO:
dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − D) with D = rowsum(dP ∘ P) = rowsum(dO ∘ O),
dQ = s · dS K and dK = s · dSᵀ Q. ``recompute_attention_backward`` is the lab's pseudo-code
(a second softmax per query tile), ``flash_attention_backward`` the FlashAttention-2 backward
that rebuilds P from the logsumexp saved by the forward, and ``flash_attention`` wires forward
and backward into autograd. Introduced in notebook 07.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from labkit.attention import (SCORE_BLOCK_ELEMENTS, causal_mask, check_blocks, compute_dtype,
                              flash_attention_forward)
from labkit.contracts import check_attention_inputs, check_saved_tensors

__all__ = ["recompute_attention_backward", "flash_attention_backward_reference", "flash_attention_backward",
           "FlashAttention", "flash_attention"]


def recompute_attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                                 v: torch.Tensor, causal: bool = False, scale: float | None = None,
                                 block_q: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lab's backward: per query tile recompute P_i = softmax(S_i) over the full key row, then dV, dS, dQ, dK.

    dV += P_iᵀ dO_i, dP_i = dO_i Vᵀ, dS_i = P_i ∘ (dP_i − rowsum(dP_i ∘ P_i)),
    dQ_i = s · dS_i K, dK += s · dS_iᵀ Q_i. Slow and obviously correct: the reference for
    ``flash_attention_backward``. Computes in float32 (float64 for float64 inputs); returns
    (dq, dk, dv) in the input dtype. Introduced in notebook 07.
    """
    scale = check_attention_inputs(q, k, v, causal, scale)
    check_blocks(block_q, 1)
    check_saved_tensors(q, do=do)
    dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v, do = (x.to(ct) for x in (q, k, v, do))
    n_q, n_kv = q.shape[2], k.shape[2]
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for i0 in range(0, n_q, block_q):
        q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = (q_i @ k.transpose(-2, -1)) * scale  # (B, H, T_q, N_kv): the whole score row block
        if causal:
            hidden = causal_mask(torch.arange(i0, i0 + q_i.shape[2], device=q.device),
                                 torch.arange(n_kv, device=q.device))
            s_i = s_i.masked_fill(hidden, float("-inf"))
        p_i = torch.softmax(s_i, dim=-1)  # the second softmax the FlashAttention backward avoids
        dv += p_i.transpose(-2, -1) @ do_i
        dp_i = do_i @ v.transpose(-2, -1)  # (B, H, T_q, N_kv)
        ds_i = p_i * (dp_i - (dp_i * p_i).sum(dim=-1, keepdim=True))
        if causal:  # masked keys get exactly 0, even from a query row holding NaN
            ds_i = ds_i.masked_fill_(hidden, 0.0)
        dq[:, :, i0:i0 + block_q] = (ds_i @ k) * scale
        dk += (ds_i.transpose(-2, -1) @ q_i) * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


def flash_attention_backward_reference(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                       o: torch.Tensor, lse: torch.Tensor, causal: bool = False,
                                       scale: float | None = None, block_q: int = 64, block_k: int = 64
                                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loop notebook 07 teaches, one (key tile, query tile) pair at a time: (dq, dk, dv), as ``flash_attention_backward``.

    D_i = rowsum(dO_i ∘ O_i); per pair P = exp(S − lse), dV_j += Pᵀ dO_i, dP = dO_i V_jᵀ,
    dS = P ∘ (dP − D_i), dQ_i += s · dS K_j, dK_j += s · dSᵀ Q_i. Slow and obviously correct:
    the reference the fast variant is tested against.
    """
    scale = check_attention_inputs(q, k, v, causal, scale)
    check_blocks(block_q, block_k)
    check_saved_tensors(q, do=do, o=o, lse=lse)
    dtype, ct = q.dtype, compute_dtype(q.dtype)
    do, q, k, v, o, lse = (x.to(ct) for x in (do, q, k, v, o, lse))
    n_q, n_kv = q.shape[2], k.shape[2]
    delta = (do * o).sum(dim=-1)  # D_i (B, H, N_q)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for j0 in range(0, n_kv, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
        cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)
        for i0 in range(0, n_q, block_q):
            q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
            s_ij = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            p_ij = torch.exp(s_ij - lse[:, :, i0:i0 + block_q, None])  # normalised: no second softmax
            dp_ij = do_i @ v_j.transpose(-2, -1)
            ds_ij = p_ij * (dp_ij - delta[:, :, i0:i0 + block_q, None])
            if causal:  # hidden keys have P = 0 and dS = 0 (exactly, even next to a NaN)
                hidden = causal_mask(torch.arange(i0, i0 + q_i.shape[2], device=q.device), cols)
                p_ij, ds_ij = p_ij.masked_fill(hidden, 0.0), ds_ij.masked_fill(hidden, 0.0)
            dv[:, :, j0:j0 + block_k] += p_ij.transpose(-2, -1) @ do_i
            dq[:, :, i0:i0 + block_q] += (ds_ij @ k_j) * scale
            dk[:, :, j0:j0 + block_k] += (ds_ij.transpose(-2, -1) @ q_i) * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


def flash_attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             o: torch.Tensor, lse: torch.Tensor, causal: bool = False,
                             scale: float | None = None, block_q: int = 64, block_k: int = 64
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashAttention-2 backward, the fast variant of ``flash_attention_backward_reference``: (dq, dk, dv).

    Loop order: K/V tiles outer (dK_j and dV_j accumulate in place, as in one GPU program),
    query tiles inner (dQ_i accumulates across key tiles, the FlashAttention-2 atomic add).
    P is rebuilt from the forward's logsumexp, so there is no second softmax and nothing of
    size N_q × N_kv is ever stored. Causal: query tiles wholly before a key tile are skipped
    and the diagonal tiles masked. Query tiles are independent, so several run together as one
    batch (see SCORE_BLOCK_ELEMENTS), vectorised over (B, H). Computes in float32 (float64 for
    float64 inputs); returns (dq, dk, dv) in the input dtype. Introduced in notebook 07.
    """
    scale = check_attention_inputs(q, k, v, causal, scale)
    check_blocks(block_q, block_k)
    check_saved_tensors(q, do=do, o=o, lse=lse)
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    dtype, ct = q.dtype, compute_dtype(q.dtype)
    qs = (q.to(ct) * scale).reshape(B * H, n_q, D)  # scale folded into q: S = qs kᵀ, dK = dSᵀ qs
    k = k.to(ct).reshape(B * H, n_kv, D)
    v = v.to(ct).reshape(B * H, n_kv, D)
    do = do.to(ct).reshape(B * H, n_q, D)
    lse = lse.to(ct).reshape(B * H, n_q, 1)
    delta = (do * o.to(ct).reshape(B * H, n_q, D)).sum(dim=-1, keepdim=True)  # D_i (BH, N_q, 1)
    dq = torch.zeros(B * H, n_q, D, dtype=ct, device=q.device)  # holds dS K; times s at the end
    dk = torch.empty(B * H, n_kv, D, dtype=ct, device=q.device)
    dv = torch.empty(B * H, n_kv, D, dtype=ct, device=q.device)
    rows = torch.arange(max(n_q, n_kv), device=q.device)
    group = block_q * max(1, SCORE_BLOCK_ELEMENTS // (B * H * block_q * min(block_k, n_kv)))
    for j0 in range(0, n_kv, block_k):
        j1 = min(j0 + block_k, n_kv)
        k_j, v_j = k[:, j0:j1], v[:, j0:j1]  # (BH, T_k, D)
        dk_j = torch.zeros(B * H, j1 - j0, D, dtype=ct, device=q.device)
        dv_j = torch.zeros(B * H, j1 - j0, D, dtype=ct, device=q.device)
        # Causal block skipping: query tiles that end before key j0 never see this tile; start
        # at the query tile holding row j0 (the same tile pairs the forward visits).
        i_start = (j0 // block_q) * block_q if causal else 0
        for g0 in range(i_start, n_q, group):
            g1 = min(g0 + group, n_q)
            s = torch.bmm(qs[:, g0:g1], k_j.transpose(1, 2))  # (BH, rows, T_k) scaled scores
            if causal and j1 - 1 > g0:  # some of these keys lie above the diagonal
                s.masked_fill_(rows[j0:j1][None, :] > rows[g0:g1, None], float("-inf"))
            p = s.sub_(lse[:, g0:g1]).exp_()  # P = exp(S − lse): normalised, no second softmax
            dv_j.baddbmm_(p.transpose(1, 2), do[:, g0:g1])  # dV_j += Pᵀ dO_i
            dp = torch.bmm(do[:, g0:g1], v_j.transpose(1, 2))  # dP = dO_i V_jᵀ
            ds = p.mul_(dp.sub_(delta[:, g0:g1]))  # dS = P ∘ (dP − D_i), in place: P is done
            if causal and j1 - 1 > g0:  # masked keys get exactly 0, even from a row holding NaN
                ds.masked_fill_(rows[j0:j1][None, :] > rows[g0:g1, None], 0.0)
            dq[:, g0:g1] += torch.bmm(ds, k_j)  # dQ_i += dS K_j
            dk_j.baddbmm_(ds.transpose(1, 2), qs[:, g0:g1])  # dK_j += dSᵀ (s Q_i)
        dk[:, j0:j1] = dk_j
        dv[:, j0:j1] = dv_j
    dq *= scale
    return tuple(x.reshape(B, H, -1, D).to(dtype) for x in (dq, dk, dv))


class FlashAttention(torch.autograd.Function):
    """Autograd for flash attention: forward saves only q, k, v, o and lse (O(N) extra), backward rebuilds P.

    Introduced in notebook 07.
    """

    @staticmethod
    def forward(ctx, q, k, v, causal=False, scale=None, block_q=64, block_k=64):
        o, lse = flash_attention_forward(q, k, v, causal, scale, block_q, block_k)
        ctx.save_for_backward(q, k, v, o, lse)  # no N_q × N_kv tensor is kept for the backward
        ctx.args = (causal, scale, block_q, block_k)
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(do, q, k, v, o, lse, *ctx.args)
        return dq, dk, dv, None, None, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    scale: float | None = None, block_q: int = 64, block_k: int = 64) -> torch.Tensor:
    """O = softmax(s · Q Kᵀ, causal mask) V by FlashAttention, differentiable (``FlashAttention.apply``).

    Introduced in notebook 07.
    """
    return FlashAttention.apply(q, k, v, causal, scale, block_q, block_k)
