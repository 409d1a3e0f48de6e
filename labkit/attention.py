"""Attention in PyTorch: the standard definition, the lab's tiled version, and FlashAttention.

O = softmax(s · Q Kᵀ + mask) V for q, k, v of shape (B, H, N, D). ``naive_attention`` is the
definition (notebook 04), ``tiled_attention`` the lab's pseudo-code that tiles the scores but
keeps a full score row block per query tile (notebook 05), and ``flash_attention_forward``
the FlashAttention forward with an online softmax over K/V tiles, which also returns the
logsumexp of each score row for the backward pass (notebook 05).
"""
from __future__ import annotations

import torch

from labkit.contracts import check_attention_inputs, check_positive_int

__all__ = ["check_blocks", "compute_dtype", "key_tiles", "visited_tiles", "causal_mask",
           "naive_attention", "tiled_attention", "flash_attention_forward_reference", "flash_attention_forward"]


# The PyTorch flash forward batches query tiles so that one score block holds about this many
# elements (1 MiB in float32): large enough to amortise Python's per-tile overhead, small
# enough to stay in cache on a CPU.
SCORE_BLOCK_ELEMENTS = 1 << 18


def check_blocks(block_q, block_k) -> None:
    """block_q and block_k must be positive ints (not bool or float): contracts.check_positive_int."""
    check_positive_int(block_q, "block_q")
    check_positive_int(block_k, "block_k")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in float32, or float64 for float64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def key_tiles(i0: int, i1: int, n_kv: int, block_k: int, causal: bool):
    """(j0, j1) of each key tile the query tile of rows i0..i1-1 visits, in order (labkit's one tile iterator).

    Non-causal: every key tile. Causal: up to the tile holding key i1 - 1 (the tile's last query
    row); the tiles wholly above the diagonal would add exp(-inf) = 0 and are skipped. The
    reference and fast forwards, ``visited_tiles`` and notebook 05's figure all walk this. Notebook 05.
    """
    hi = min(i1, n_kv) if causal else n_kv
    for j0 in range(0, hi, block_k):
        yield j0, min(j0 + block_k, n_kv)


def visited_tiles(n_q: int, n_kv: int, block_q: int, block_k: int, causal: bool) -> int:
    """Number of (query tile, key tile) pairs a tiled forward computes for one (batch, head).

    Non-causal: every key tile for every query tile. Causal: query tile i stops after the key
    tile holding its last query index, so key tiles wholly above the diagonal are skipped
    (``key_tiles``). Both ``flash_attention_forward`` here and the Triton kernel follow this count.
    Sizes are ints >= 1 (contracts.check_positive_int). Introduced in notebook 05.
    """
    n_q, n_kv = check_positive_int(n_q, "n_q"), check_positive_int(n_kv, "n_kv")
    check_blocks(block_q, block_k)
    n_blocks_q = -(-n_q // block_q)
    if not causal:
        return n_blocks_q * -(-n_kv // block_k)
    return sum(-(-min((i + 1) * block_q, n_q, n_kv) // block_k) for i in range(n_blocks_q))


def causal_mask(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """True where key ``cols[j]`` is hidden from query ``rows[i]`` (j > i): the one causal mask, (len(rows), len(cols)).

    Global indices, so a tile's mask is ``causal_mask(arange(i0, i1), arange(j0, j1))``. Notebook 04.
    """
    return cols[None, :] > rows[:, None]


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    scale: float | None = None) -> torch.Tensor:
    """O = softmax(scale · Q Kᵀ, masked to j <= i if causal) V, all N² scores at once, in the input dtype.

    Introduced in notebook 04.
    """
    scale = check_attention_inputs(q, k, v, causal, scale)
    s = (q @ k.transpose(-2, -1)) * scale  # (B, H, N_q, N_kv)
    if causal:
        rows = torch.arange(q.shape[2], device=q.device)
        s = s.masked_fill(causal_mask(rows, torch.arange(k.shape[2], device=q.device)), float("-inf"))
    p = torch.softmax(s, dim=-1)
    return p @ v  # (B, H, N_q, D)


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_q: int = 64,
                    block_k: int = 64, scale: float | None = None) -> torch.Tensor:
    """The lab's pseudo-code: scores computed tile by tile into a full (block_q × N_kv) row block, then softmax and P V.

    No online softmax, so the memory per query tile still grows with N_kv. Accumulates in
    float32 (float64 for float64 inputs); returns the input dtype. Introduced in notebook 05.
    """
    scale = check_attention_inputs(q, k, v, False, scale)
    check_blocks(block_q, block_k)
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    o = torch.empty(B, H, n_q, D, dtype=ct, device=q.device)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=ct, device=q.device)  # whole row block
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        p_i = torch.softmax(s_i, dim=-1)
        o[:, :, i0:i0 + block_q] = p_i @ v
    return o.to(dtype)


def flash_attention_forward_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                      causal: bool = False, scale: float | None = None, block_q: int = 64,
                                      block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop notebook 05 teaches, one (query tile, key tile) pair at a time: (o, lse), as ``flash_attention_forward``.

    Slow and obviously correct: the reference the fast variant is tested against.
    """
    scale = check_attention_inputs(q, k, v, causal, scale)
    check_blocks(block_q, block_k)
    dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    n_q, n_kv = q.shape[2], k.shape[2]
    o, lse = torch.empty_like(q), torch.empty(q.shape[:3], dtype=ct, device=q.device)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)
        m_i = torch.full(q_i.shape[:3], float("-inf"), dtype=ct, device=q.device)  # running max
        l_i = torch.zeros(q_i.shape[:3], dtype=ct, device=q.device)  # running sum
        acc = torch.zeros_like(q_i)  # running P V
        for j0, j1 in key_tiles(i0, i0 + q_i.shape[2], n_kv, block_k, causal):
            k_j, v_j = k[:, :, j0:j1], v[:, :, j0:j1]  # (B, H, T_k, D)
            s_ij = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)
                s_ij = s_ij.masked_fill(causal_mask(rows, cols), float("-inf"))
            m_new = torch.maximum(m_i, s_ij.amax(dim=-1))
            m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a tile all masked so far
            p_ij = torch.exp(s_ij - m_safe[..., None])
            alpha = torch.exp(m_i - m_safe)  # rescales the old state; 0 on the first tile
            l_i = alpha * l_i + p_ij.sum(dim=-1)
            acc = alpha[..., None] * acc + p_ij @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse.to(torch.float64 if dtype == torch.float64 else torch.float32)


def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            causal: bool = False, scale: float | None = None, block_q: int = 64,
                            block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention forward, the fast variant of ``flash_attention_forward_reference``: (o, lse), lse = logsumexp_j(s_ij).

    For each query tile it keeps a running row max m_i, a running sum l_i and an accumulator
    acc, rescaled by exp(m_old - m_new) whenever the max grows; o = acc / l_i and
    lse = m_i + log(l_i), the logsumexp of the scaled (masked) scores, shape (B, H, N_q).
    Vectorised over (B, H) and over groups of query tiles (independent, like the programs of a
    GPU grid; see SCORE_BLOCK_ELEMENTS). With causal=True, key tiles wholly above a query
    tile's diagonal are skipped (see ``visited_tiles``). Accumulates in float32 (float64 for
    float64 inputs); o has the input dtype, lse is float32 (float64 for float64 inputs, so
    the backward can be gradchecked). Introduced in notebook 05.
    """
    scale = check_attention_inputs(q, k, v, causal, scale)
    check_blocks(block_q, block_k)
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    dtype, ct = q.dtype, compute_dtype(q.dtype)
    q = (q.to(ct) * scale).reshape(B * H, n_q, D)  # scaled once: s = (scale q) k^T
    k_t = k.to(ct).reshape(B * H, n_kv, D).transpose(1, 2)  # (BH, D, N_kv)
    v = v.to(ct).reshape(B * H, n_kv, D)
    o = torch.empty(B * H, n_q, D, dtype=ct, device=q.device)
    lse = torch.empty(B * H, n_q, dtype=ct, device=q.device)
    rows = torch.arange(n_q, device=q.device)
    # Query tiles are independent (on a GPU they are parallel programs), so several run together
    # as one batch: as many as keep a score block near SCORE_BLOCK_ELEMENTS (cache-sized).
    group = block_q * max(1, SCORE_BLOCK_ELEMENTS // (B * H * block_q * min(block_k, n_kv)))
    for g0 in range(0, n_q, group):
        g1 = min(g0 + group, n_q)
        m_i = torch.full((B * H, g1 - g0), float("-inf"), dtype=ct, device=q.device)
        l_i = torch.zeros(B * H, g1 - g0, dtype=ct, device=q.device)
        acc = torch.zeros(B * H, g1 - g0, D, dtype=ct, device=q.device)
        # Causal: stop after the key tile holding row g1 - 1. Key 0 is in the first tile and
        # visible to every query, so m_i is finite from the first tile on (no exp(-inf + inf)).
        for j0 in range(0, min(g1, n_kv) if causal else n_kv, block_k):
            j1 = min(j0 + block_k, n_kv)
            # Causal block skipping: query tiles ending before key j0 never visit this K/V
            # tile; only the tiles from the one holding row j0 onwards take part.
            r0 = max(g0, (j0 // block_q) * block_q) if causal else g0
            s = torch.bmm(q[:, r0:g1], k_t[:, :, j0:j1])  # (BH, rows, T_k) scaled scores
            if causal and j1 - 1 > r0:  # some of these rows lie above the diagonal
                s.masked_fill_(rows[j0:j1][None, :] > rows[r0:g1, None], float("-inf"))
            r = r0 - g0
            m_new = torch.maximum(m_i[:, r:], s.amax(dim=-1))
            p = s.sub_(m_new.unsqueeze(-1)).exp_()  # in place: s is not needed again
            alpha = torch.exp(m_i[:, r:] - m_new)  # rescales the old state; 0 on a first tile
            l_i[:, r:] = l_i[:, r:] * alpha + p.sum(dim=-1)
            acc[:, r:] = torch.baddbmm(acc[:, r:] * alpha.unsqueeze(-1), p, v[:, j0:j1])
            m_i[:, r:] = m_new
        o[:, g0:g1] = acc / l_i.unsqueeze(-1)
        lse[:, g0:g1] = m_i + torch.log(l_i)
    lse_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return o.reshape(B, H, n_q, D).to(dtype), lse.reshape(B, H, n_q).to(lse_dtype)
