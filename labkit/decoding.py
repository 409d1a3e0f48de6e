"""Attention at inference: one new query per head against a KV cache (notebook 10).

Shapes: q (B, H, D), one query per head; the cache k, v (B, H_kv, N, D), with H = G · H_kv
(grouped-query attention: query head h reads KV head h // G; G = H is multi-query attention,
G = 1 multi-head); ``lengths`` (B,) integers, the valid positions of each sequence (the rest of
the cache is padding, never read). Each attention returns (o, lse): o (B, H, D) in q's dtype and
lse (B, H), the logsumexp of each head's scaled scores, in float32 (float64 for float64 inputs).

``decode_attention`` is the definition; ``flash_decode`` (flash-decoding: the cache split into
chunks, one partial softmax state per chunk, merged as in notebook 03) and ``paged_attention``
(the cache in fixed-size pages reached through a block table, as in PagedAttention) give the
same result. The Triton kernels are ``labkit.kernels.decoding``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from labkit.attention import compute_dtype
from labkit.contracts import ArgumentTypeError, check_int, check_positive_int, check_tensor

__all__ = ["kv_cache_bytes", "Partials", "decode_attention", "split_partials", "combine_partials",
           "flash_decode", "paged_attention", "PagedKVCache", "reserved_bytes", "paged_bytes"]


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, tokens: int, dtype: torch.dtype = torch.float16,
                   batch: int = 1) -> int:
    """2 · layers · kv_heads · head_dim · tokens · batch · bytes per element: K and V of every layer (notebook 10)."""
    for name, value in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim), ("batch", batch)):
        check_positive_int(value, name, fn="kv_cache_bytes")
    check_int(tokens, "tokens", 0, fn="kv_cache_bytes")
    if not isinstance(dtype, torch.dtype):
        raise ArgumentTypeError(f"kv_cache_bytes: dtype must be a torch.dtype, got {dtype!r}")
    return 2 * layers * kv_heads * head_dim * tokens * batch * torch.empty((), dtype=dtype).element_size()


class Partials(NamedTuple):
    """Flash-decoding's per-chunk softmax states: m, l (B, H, S) and acc (B, H, S, D), float32 (or float64).

    For chunk s: m_s the max of its scores, l_s = Σ exp(score - m_s), acc_s = Σ exp(score - m_s) v.
    A chunk with no valid position has m_s = -inf, l_s = 0, acc_s = 0.
    """

    m: torch.Tensor
    l: torch.Tensor  # noqa: E741 - the paper's name
    acc: torch.Tensor


def _lengths(lengths, B: int, N: int, device, fn: str) -> torch.Tensor:
    """lengths as an int64 tensor (B,) on ``device``, each in 1..N (None: every sequence is N long)."""
    if lengths is None:
        return torch.full((B,), N, dtype=torch.int64, device=device)
    if not isinstance(lengths, torch.Tensor) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ArgumentTypeError(f"{fn}: lengths must be an integer tensor of shape ({B},), got "
                                f"{type(lengths).__name__}{'' if not isinstance(lengths, torch.Tensor) else ' ' + str(lengths.dtype)}")
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"{fn}: lengths must have shape ({B},), one per sequence, got {tuple(lengths.shape)}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > N):
        raise ValueError(f"{fn}: every length must be in 1..{N} (the cache holds {N} positions), got "
                         f"{lengths.tolist()}")
    return lengths.to(device=device, dtype=torch.int64)


def _query_and_pair(q, k, v, names: tuple[str, str], layout: str, fn: str) -> None:
    """q a floating (B, H, D) tensor; k and v floating tensors of one 4-D shape, ``layout``."""
    check_tensor(q, "q", fn=fn, floating=True)
    for name, t in zip(names, (k, v)):
        check_tensor(t, name, fn=fn, floating=True)
    if q.dim() != 3:
        raise ValueError(f"{fn}: q must have shape (B, H, D), one query per head, got {tuple(q.shape)}")
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"{fn}: {names[0]} and {names[1]} must both have shape {layout}, got {tuple(k.shape)} and "
                         f"{tuple(v.shape)}")


def check_decode_inputs(q, k, v, lengths, fn: str):
    """(B, H, H_kv, N, D, lengths) after checking q (B, H, D) and k, v (B, H_kv, N, D) with H a multiple of H_kv."""
    _query_and_pair(q, k, v, ("k", "v"), "(B, H_kv, N, D)", fn)
    B, H, D = q.shape
    if k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"{fn}: the cache must match q's batch {B} and head dim {D}, got k {tuple(k.shape)}")
    H_kv, N = k.shape[1], k.shape[2]
    if H % H_kv:
        raise ValueError(f"{fn}: the query heads H = {H} must be a multiple of the KV heads H_kv = {H_kv} "
                         f"(grouped-query attention: head h reads KV head h // (H / H_kv))")
    if N == 0:
        raise ValueError(f"{fn}: the cache is empty (N = 0): there is nothing to attend to")
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise ValueError(f"{fn}: q, k and v must share one dtype and device, got {q.dtype}/{k.dtype}/{v.dtype} "
                         f"on {q.device}/{k.device}/{v.device}")
    return B, H, H_kv, N, D, _lengths(lengths, B, N, q.device, fn)


def check_paged_inputs(q, k_pages, v_pages, block_table, lengths, fn: str):
    """(B, H, H_kv, P, D, lengths) after checking q (B, H, D), pages (num_pages, H_kv, P, D) and the block table:
    an integer (B, max_pages) tensor whose pages within each sequence's length exist."""
    _query_and_pair(q, k_pages, v_pages, ("k_pages", "v_pages"), "(num_pages, H_kv, P, D)", fn)
    check_tensor(block_table, "block_table", fn=fn)
    B, H, D = q.shape
    num_pages, H_kv, P, _ = k_pages.shape
    if k_pages.shape[3] != D or H % H_kv:
        raise ValueError(f"{fn}: the pages must have q's head dim {D} and H = {H} a multiple of H_kv = {H_kv}, "
                         f"got pages {tuple(k_pages.shape)}")
    if not (q.dtype == k_pages.dtype == v_pages.dtype) or not (q.device == k_pages.device == v_pages.device):
        raise ValueError(f"{fn}: q and the pages must share one dtype and device, got {q.dtype}/{k_pages.dtype} "
                         f"on {q.device}/{k_pages.device}")
    if block_table.dtype.is_floating_point or block_table.dtype == torch.bool or block_table.dim() != 2 \
            or block_table.shape[0] != B:
        raise ValueError(f"{fn}: block_table must be an integer tensor (B, max_pages) with B = {B}, got "
                         f"{block_table.dtype} {tuple(block_table.shape)}")
    lengths = _lengths(lengths, B, block_table.shape[1] * P, q.device, fn)
    for b in range(B):
        used = block_table[b, :-(-int(lengths[b]) // P)]
        if len(used) and (int(used.min()) < 0 or int(used.max()) >= num_pages):
            raise ValueError(f"{fn}: sequence {b}'s block table {used.tolist()} points outside the {num_pages} "
                             f"pages (its length {int(lengths[b])} needs {len(used)} of them)")
    return B, H, H_kv, P, D, lengths


def _scores(q, k, lengths, scale):
    """scale · q_h · k_{h//G, j} for every head h and position j, -inf past each length: (B, H_kv, G, N).

    The G query heads of a group are one (G, D) matrix against their KV head's keys: no copy of K per head.
    """
    ct = compute_dtype(q.dtype)
    B, H, D = q.shape
    H_kv = k.shape[1]
    qg = q.to(ct).view(B, H_kv, H // H_kv, D)  # (B, H_kv, G, D): query head h = g_kv · G + g
    s = torch.matmul(qg, k.to(ct).transpose(-1, -2)) * scale  # (B, H_kv, G, N)
    valid = torch.arange(k.shape[2], device=q.device)[None, :] < lengths[:, None]  # (B, N)
    return s.masked_fill(~valid[:, None, None, :], float("-inf"))


def decode_attention(q, k, v, lengths=None, scale=None):
    """o_h = softmax(scale · q_h K_{h//G}[:len]ᵀ) V_{h//G}[:len], lse_h its logsumexp: the definition (notebook 10)."""
    B, H, H_kv, N, D, lengths = check_decode_inputs(q, k, v, lengths, "decode_attention")
    scale = 1 / math.sqrt(D) if scale is None else float(scale)
    s = _scores(q, k, lengths, scale)  # (B, H_kv, G, N)
    o = torch.matmul(torch.softmax(s, dim=-1), v.to(s.dtype))  # (B, H_kv, G, D)
    return o.reshape(B, H, D).to(q.dtype), torch.logsumexp(s, dim=-1).reshape(B, H)


def split_partials(q, k, v, lengths=None, scale=None, num_splits: int = 4) -> Partials:
    """Flash-decoding's first pass: the N positions cut into num_splits chunks of ⌈N / num_splits⌉, a state each."""
    B, H, H_kv, N, D, lengths = check_decode_inputs(q, k, v, lengths, "split_partials")
    num_splits = check_positive_int(num_splits, "num_splits", fn="split_partials")
    scale = 1 / math.sqrt(D) if scale is None else float(scale)
    s = _scores(q, k, lengths, scale)  # (B, H_kv, G, N)
    G = H // H_kv
    chunk = -(-N // num_splits)
    pad = chunk * num_splits - N
    s = torch.nn.functional.pad(s, (0, pad), value=float("-inf")).view(B, H_kv, G, num_splits, chunk)
    vc = torch.nn.functional.pad(v.to(s.dtype), (0, 0, 0, pad)).view(B, H_kv, num_splits, chunk, D)
    m = s.amax(dim=-1)  # (B, H_kv, G, S)
    safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # an empty chunk: exp(-inf - 0) = 0
    p = torch.exp(s - safe[..., None])  # (B, H_kv, G, S, chunk)
    acc = torch.matmul(p.transpose(2, 3), vc).transpose(2, 3)  # (B, H_kv, S, G, D) -> (B, H_kv, G, S, D)
    return Partials(m.reshape(B, H, num_splits), p.sum(dim=-1).reshape(B, H, num_splits),
                    acc.reshape(B, H, num_splits, D))


def combine_partials(m, l, acc):  # noqa: E741
    """M = max_s m_s; o = Σ_s e^(m_s − M) acc_s / Σ_s e^(m_s − M) l_s; lse = M + log Σ_s e^(m_s − M) l_s (notebook 10)."""
    for name, t, dims in (("m", m, 3), ("l", l, 3), ("acc", acc, 4)):
        check_tensor(t, name, fn="combine_partials", floating=True)
        if t.dim() != dims:
            raise ValueError(f"combine_partials: {name} must have {dims} dims ({'(B, H, S, D)' if dims == 4 else '(B, H, S)'}), "
                             f"got {tuple(t.shape)}")
    if m.shape != l.shape or acc.shape[:3] != m.shape:
        raise ValueError(f"combine_partials: m and l must be (B, H, S) and acc (B, H, S, D) alike, got "
                         f"{tuple(m.shape)}, {tuple(l.shape)}, {tuple(acc.shape)}")
    M = m.amax(dim=-1, keepdim=True)  # (B, H, 1)
    w = torch.exp(m - torch.where(torch.isinf(M), torch.zeros_like(M), M))  # empty chunks weigh 0
    total = (w * l).sum(dim=-1)  # (B, H)
    o = (w[..., None] * acc).sum(dim=-2) / total[..., None]
    return o, M[..., 0] + torch.log(total)


def flash_decode(q, k, v, lengths=None, scale=None, num_splits: int = 4):
    """Flash-decoding in PyTorch: split_partials, then combine_partials; decode_attention's result (notebook 10)."""
    o, lse = combine_partials(*split_partials(q, k, v, lengths, scale, num_splits))
    return o.to(q.dtype), lse


def paged_attention(q, k_pages, v_pages, block_table, lengths, scale=None):
    """decode_attention through a block table: position i of sequence b is slot i % P of page block_table[b, i // P].

    k_pages, v_pages (num_pages, H_kv, P, D); block_table (B, max_pages) integer page indices (entries past a
    sequence's last page are never read); lengths (B,) (notebook 10).
    """
    B, H, H_kv, P, D, lengths = check_paged_inputs(q, k_pages, v_pages, block_table, lengths, "paged_attention")
    used = -(-int(lengths.max()) // P)  # pages the longest sequence needs; the rest of the table is never read
    pages = block_table[:, :used].to(torch.int64).clamp(0, k_pages.shape[0] - 1)  # (B, used): masked past lengths
    k = k_pages[pages].permute(0, 2, 1, 3, 4).reshape(B, H_kv, used * P, D)  # (B, used, H_kv, P, D) -> (B, H_kv, N, D)
    v = v_pages[pages].permute(0, 2, 1, 3, 4).reshape(B, H_kv, used * P, D)
    return decode_attention(q, k, v, lengths, scale)


class PagedKVCache:
    """A KV cache in pages of P positions: k_pages, v_pages (num_pages, H_kv, P, D), a block table per sequence.

    ``append(b, k, v)`` writes one position (k, v of shape (H_kv, D)) at sequence b's end, taking a free page
    when its last one is full; pages are handed out from a free list, so a sequence's pages need not be
    consecutive or in order. ``free(b)`` returns its pages (notebook 10).
    """

    def __init__(self, batch: int, kv_heads: int, head_dim: int, page_size: int, num_pages: int,
                 max_pages: int, dtype=torch.float32, device="cpu", seed: int = 0):
        for name, value in (("batch", batch), ("kv_heads", kv_heads), ("head_dim", head_dim),
                            ("page_size", page_size), ("num_pages", num_pages), ("max_pages", max_pages)):
            check_positive_int(value, name, fn="PagedKVCache")
        self.page_size = page_size
        self.k_pages = torch.zeros(num_pages, kv_heads, page_size, head_dim, dtype=dtype, device=device)
        self.v_pages = torch.zeros_like(self.k_pages)
        self.block_table = torch.full((batch, max_pages), -1, dtype=torch.int32, device=device)
        self.lengths = torch.zeros(batch, dtype=torch.int64, device=device)
        order = torch.randperm(num_pages, generator=torch.Generator().manual_seed(seed)).tolist()
        self.free_pages = order  # a shuffled free list: pages come out of order, as after many frees

    def append(self, b: int, k: torch.Tensor, v: torch.Tensor) -> None:
        n = int(self.lengths[b])
        page, slot = divmod(n, self.page_size)
        if slot == 0:  # the last page is full (or there is none yet): take a free one
            if page >= self.block_table.shape[1]:
                raise ValueError(f"PagedKVCache.append: sequence {b} would need page {page + 1} of at most "
                                 f"{self.block_table.shape[1]} (max_pages)")
            if not self.free_pages:
                raise MemoryError("PagedKVCache.append: no free page left; free a finished sequence")
            self.block_table[b, page] = self.free_pages.pop()
        p = int(self.block_table[b, page])
        self.k_pages[p, :, slot] = k
        self.v_pages[p, :, slot] = v
        self.lengths[b] = n + 1

    def free(self, b: int) -> None:
        used = self.block_table[b][self.block_table[b] >= 0].tolist()
        self.free_pages += used
        self.block_table[b] = -1
        self.lengths[b] = 0

    def pages_in_use(self) -> int:
        return int((self.block_table >= 0).sum())


def reserved_bytes(lengths, max_len: int, bytes_per_token: int) -> int:
    """A contiguous cache reserves max_len positions per sequence, whatever its length: B · max_len · bytes."""
    return len(lengths) * max_len * bytes_per_token


def paged_bytes(lengths, page_size: int, bytes_per_token: int) -> int:
    """A paged cache holds ⌈length / P⌉ pages per sequence: Σ_b ⌈len_b / P⌉ · P · bytes."""
    return sum(-(-int(n) // page_size) for n in lengths) * page_size * bytes_per_token
