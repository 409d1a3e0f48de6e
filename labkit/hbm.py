"""HBM traffic of attention's forward, counted element by element per (batch, head) (notebook 05).

The model of Dao et al., *FlashAttention* (2022): an on-chip memory of ``M`` elements, and every
element read from or written to main memory (HBM) counts one access, whatever its dtype. Standard
attention is the paper's Algorithm 0; ``flash_hbm_accesses`` follows Algorithm 1 line by line,
with key tiles of B_c = ⌈M/(4d)⌉ rows outside and query tiles of B_r = min(B_c, d) rows inside.
"""
from __future__ import annotations

import math

__all__ = ["flash_block_sizes", "standard_hbm_accesses", "flash_hbm_accesses",
           "flash_hbm_accesses_closed_form", "flash_q_outer_hbm_accesses"]


def _check(N: int, d: int, M: int | None = None) -> None:
    for name, value in (("N", N), ("d", d)) + ((("M", M),) if M is not None else ()):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def flash_block_sizes(d: int, M: int) -> tuple[int, int]:
    """(B_c, B_r) = (⌈M/(4d)⌉, min(⌈M/(4d)⌉, d)): the tile sizes of Algorithm 1 for on-chip size M."""
    _check(1, d, M)
    b_c = math.ceil(M / (4 * d))
    return b_c, min(b_c, d)


def standard_hbm_accesses(N: int, d: int) -> int:
    """4N² + 4Nd: Algorithm 0 reads Q, K, writes S, reads S, writes P, reads P, V, writes O."""
    _check(N, d)
    reads = 2 * N * d + N * N + N * N + N * d
    writes = N * N + N * N + N * d
    return reads + writes


def flash_hbm_accesses(N: int, d: int, M: int) -> int:
    """HBM element accesses of Algorithm 1 (FlashAttention forward) for N queries and keys, head dim d.

    Counted by walking the algorithm: line 2 writes O = 0, ℓ = 0, m = −∞ (Nd + 2N); each key
    tile j loads K_j, V_j once (2·b_c·d, line 6); for every (key tile, query tile) pair, line 8
    reads Q_i, O_i, ℓ_i, m_i (2·b_r·d + 2·b_r) and lines 12–13 write O_i, ℓ_i, m_i back
    (b_r·d + 2·b_r). Partial last tiles count their actual rows. The slow, obvious reference.
    """
    B_c, B_r = flash_block_sizes(d, M)
    _check(N, d, M)
    accesses = N * d + 2 * N  # line 2: O, l, m initialised in HBM
    for j0 in range(0, N, B_c):  # outer loop: key tiles
        b_c = min(B_c, N - j0)
        accesses += 2 * b_c * d  # line 6: load K_j, V_j
        for i0 in range(0, N, B_r):  # inner loop: query tiles
            b_r = min(B_r, N - i0)
            accesses += 2 * b_r * d + 2 * b_r  # line 8: load Q_i, O_i, l_i, m_i
            accesses += b_r * d + 2 * b_r  # lines 12-13: write O_i, l_i, m_i
    return accesses


def flash_hbm_accesses_closed_form(N: int, d: int, M: int) -> int:
    """3Nd + 2N + T_c·(3Nd + 4N) with T_c = ⌈N/B_c⌉: ``flash_hbm_accesses`` summed by hand."""
    B_c, _ = flash_block_sizes(d, M)
    _check(N, d, M)
    return 3 * N * d + 2 * N + math.ceil(N / B_c) * (3 * N * d + 4 * N)


def flash_q_outer_hbm_accesses(N: int, d: int, M: int) -> int:
    """Query tiles outside (labkit's forward, FlashAttention-2), B_r = ⌈M/(4d)⌉ query rows per tile.

    Q_i read and O_i, lse_i written once (2Nd + N); all of K, V read once per query tile (T_r·2Nd).
    """
    B_r, _ = flash_block_sizes(d, M)
    _check(N, d, M)
    return N * d + math.ceil(N / B_r) * 2 * N * d + N * d + N
