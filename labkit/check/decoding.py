"""Checkers for notebook 10 (attention at inference): the KV cache's size, flash-decoding's merge of chunk
states, attention through a paged cache's block table, and the split-K kernel's inner loop in Triton.

Each named mistake is a twin: the mistake written out, run on the probe's input; a probe names it only when
the student's result agrees with the twin's there (labkit.check.twins). The caches hold garbage (large
values) past every sequence's length, as a recycled page does, so reading past a length shows.
"""
from __future__ import annotations

import math

import torch

from labkit import decoding as ref
from labkit.check.core import Case, Checker, Probe, checker, compare_outputs, is_number
from labkit.check.twins import twin
from labkit.check.evidence import overflow, reads
from labkit.check.kernel_runs import on_course_device
from labkit.kernels import launch
from labkit.kernels.decoding import chunking

GARBAGE = 50.0  # what a recycled page holds past a sequence's end: keys that would dominate any softmax


def _cache(B, H, H_kv, N, D, lengths, seed, dtype=torch.float32, fall=None):
    """q (B, H, D) and a contiguous cache k, v (B, H_kv, N, D) holding garbage past each length. With ``fall``
    (a tile size), keys after the first tile point away from q: the scores fall by about 100 there."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, D, generator=g)
    k = torch.randn(B, H_kv, N, D, generator=g)
    v = torch.randn(B, H_kv, N, D, generator=g)
    if fall:
        G = H // H_kv
        direction = q.view(B, H_kv, G, D).mean(2)  # (B, H_kv, D)
        k[:, :, fall:] -= 100 * math.sqrt(D) * direction[:, :, None] / direction.norm(dim=-1)[..., None, None] ** 2
    lengths = torch.tensor(lengths)
    past = torch.arange(N)[None, :] >= lengths[:, None]  # (B, N)
    k[past[:, None, :, None].expand_as(k)] = GARBAGE
    v[past[:, None, :, None].expand_as(v)] = -GARBAGE
    return q.to(dtype), k.to(dtype), v.to(dtype), lengths


# ------------------------------------------------------------------------ 10.1 the KV cache's size

def _bytes_compare(out, expected) -> None:
    if not is_number(out, integer=True):
        raise AssertionError(f"returned {type(out).__name__} {out!r}, expected an int (a number of bytes)")
    if out != expected:
        raise AssertionError(f"returned {out}, expected {expected}")


def _formula(factor):
    return lambda o, p: is_number(o.value) and o.value == factor(p) * ref.kv_cache_bytes(*p.args, **p.kwargs) \
        and f"{o.value} bytes, {factor(p):g} × the size"


@checker
def kv_cache_bytes() -> Checker:
    """kv_cache_bytes(layers, kv_heads, head_dim, tokens, dtype=torch.float16, batch=1) -> int (notebook 10).

    2 (K and V) · layers · kv_heads · head_dim · tokens · batch · bytes per element of dtype, an int;
    0 for no tokens; the KV heads (not the query heads) set the size under grouped-query attention
    """
    cases = [
        Case("Llama-2-7B's shape, one token: 32 layers, 32 KV heads of 128, float16", (32, 32, 128, 1)),
        Case("Llama-3-8B's shape (GQA, 8 KV heads), 8192 tokens", (32, 8, 128, 8192)),
        Case("multi-query (1 KV head), float32, 1000 tokens", (24, 1, 64, 1000), {"dtype": torch.float32},
             hint="float32 takes 4 bytes per element: element_size() of the dtype, not a fixed 2"),
        Case("a batch of 4 sequences, bfloat16", (32, 8, 128, 100), {"dtype": torch.bfloat16, "batch": 4},
             hint="every sequence of the batch has its own cache: multiply by batch"),
        Case("no tokens yet", (32, 8, 128, 0), hint="an empty cache holds 0 bytes"),
    ]
    # float64: K only gives 1/2 of the size, a fixed 2 bytes 1/4, elements 1/8, all apart; 3 layers and 5 KV heads,
    # so that a slip on layers or heads (2 / layers) gives none of these
    f64 = {"dtype": torch.float64}
    probes = [
        Probe("K only? (float64)", (3, 5, 16, 10), f64, "the cache holds K and V: 2 tensors of layers · kv_heads · "
              "head_dim entries per token", _formula(lambda p: 0.5)),
        Probe("elements? (float64)", (3, 5, 16, 10), f64, "that counts elements, not bytes: multiply by the bytes "
              "per element, torch.empty((), dtype=dtype).element_size() (8 for float64)", _formula(lambda p: 0.125)),
        Probe("bits?", (2, 3, 16, 10), {}, "bytes, not bits: an element of float16 is 2 bytes (16 bits)",
              _formula(lambda p: 8)),
        Probe("dtype? (float64)", (3, 5, 16, 10), f64, "the element size comes from dtype "
              "(torch.empty((), dtype=dtype).element_size()): float64 is 8 bytes, not float16's 2",
              _formula(lambda p: 0.25)),
        Probe("batch?", (2, 3, 16, 10), {"batch": 5}, "each of the batch's sequences has its own cache: "
              "multiply by batch", _formula(lambda p: 1 / 5)),
        Probe("layers?", (7, 3, 16, 10), {}, "every layer has its own K and V: multiply by layers",
              _formula(lambda p: 1 / 7)),
        Probe("tokens?", (2, 3, 16, 10), {}, "that is the size of one token: multiply by tokens",
              _formula(lambda p: 0.1)),
        Probe("GiB?", (32, 8, 128, 65536), {}, "bytes, not GiB: leave out the division by 2**30",
              lambda o, p: is_number(o.value) and o.value != 0 and
              abs(o.value - ref.kv_cache_bytes(*p.args) / 2 ** 30) < 1 and f"{o.value!r}, the size in GiB"),
        Probe("an int?", (2, 3, 16, 10), {}, "the right number of bytes, but not an int: use integer arithmetic "
              "(// or int(...)), as element_size() is an int", lambda o, p: is_number(o.value) and not is_number(
                  o.value, integer=True) and o.value == ref.kv_cache_bytes(*p.args) and f"{o.value!r}"),
    ]
    return Checker("kv_cache_bytes", cases, ref.kv_cache_bytes, probes, compare=_bytes_compare)


# ---------------------------------------------------------------- 10.2 merging the chunk states

def _partials(B, H, N, D, lengths, splits, seed, dtype=torch.float32, shift=0.0):
    q, k, v, lengths = _cache(B, H, H, N, D, lengths, seed, dtype)
    m, l, acc = ref.split_partials(q, k, v, lengths, num_splits=splits)
    return m + shift, l, acc


def _apart(states):
    """The chunk states with head 1's maxima moved 200 below head 0's: e^(-200) underflows float32."""
    m, l, acc = states
    return m - torch.tensor([0.0, 200.0])[None, :, None], l, acc


def _weights(m):
    return torch.exp(m - m.amax(-1, keepdim=True))


def _no_weights(m, l, acc):  # noqa: E741
    """The chunk states added as they are: o = Σ acc_s / Σ l_s."""
    return acc.sum(-2) / l.sum(-1)[..., None], torch.log(l.sum(-1)) + m.amax(-1)


def _mean_of_outputs(m, l, acc):  # noqa: E741
    """Each chunk's own output acc_s / l_s, averaged over the chunks."""
    return (acc / l[..., None]).mean(-2), m.amax(-1)


def _mean_of_filled(m, l, acc):  # noqa: E741
    """The chunks' own outputs averaged over the chunks that hold a position."""
    full = l > 0
    own = torch.where(full[..., None], acc / l.clamp_min(1e-30)[..., None], torch.zeros_like(acc))
    return own.sum(-2) / full.sum(-1, keepdim=True).to(acc.dtype), m.amax(-1)


def _normalised_first(m, l, acc):  # noqa: E741
    """Each chunk's output acc_s / l_s first, then weighed by its share e^(lse_s − lse): 0/0 for an empty chunk."""
    lse_s = m + torch.log(l)
    lse = torch.logsumexp(lse_s, -1)
    return (torch.exp(lse_s - lse[..., None])[..., None] * (acc / l[..., None])).sum(-2), lse


def _weights_without_l(m, l, acc):  # noqa: E741
    w = _weights(m)
    return (w[..., None] * acc).sum(-2) / w.sum(-1)[..., None], m.amax(-1)


def _over_head_dim(m, l, acc):  # noqa: E741
    w = _weights(m)
    return (w[..., None] * acc).sum(-1) / (w * l).sum(-1)[..., None], m.amax(-1)


def _l_not_weighed(m, l, acc):  # noqa: E741
    return (_weights(m)[..., None] * acc).sum(-2) / l.sum(-1)[..., None], m.amax(-1)


def _lse_base2(m, l, acc):  # noqa: E741
    o, lse = ref.combine_partials(m, l, acc)
    M = m.amax(-1)
    return o, M + torch.log2(torch.exp(lse - M))


def _sign_flipped(m, l, acc):  # noqa: E741
    M = m.amax(-1, keepdim=True)
    w = torch.exp(M - m)
    total = (w * l).sum(-1)
    return (w[..., None] * acc).sum(-2) / total[..., None], M[..., 0] + torch.log(total)


def _lse_without_max(m, l, acc):  # noqa: E741
    o, lse = ref.combine_partials(m, l, acc)
    return o, lse - m.amax(-1)


def _inf_or_nan(o, p):
    return not all(torch.isfinite(t).all() for t in o.value) and "o or lse holds inf or NaN"


_nonfinite = overflow(lambda o, p: _inf_or_nan(o, p))  # speaks only when right on the same states scaled down


@checker
def combine_partials() -> Checker:
    """combine_partials(m, l, acc) -> (o, lse) for chunk states m, l (B, H, S), acc (B, H, S, D) (notebook 10).

    M = max_s m_s; o = Σ_s e^(m_s − M) acc_s / Σ_s e^(m_s − M) l_s; lse = M + log Σ_s e^(m_s − M) l_s
    a chunk past the length (m = -inf, l = 0, acc = 0) weighs nothing; large maxima stay finite
    (exponents m_s − M <= 0); the states' dtype is kept (float32, float64)
    """
    cases = [
        Case("one chunk (S = 1)", _partials(1, 2, 9, 8, [9], 1, seed=1)),
        Case("4 chunks, B = 2, H = 3, D = 8", _partials(2, 3, 30, 8, [30, 30], 4, seed=2)),
        Case("chunks past a length: m = -inf, l = 0, acc = 0", _partials(2, 2, 32, 8, [3, 32], 4, seed=3),
             hint="a chunk with no position weighs e^(-inf) = 0; keep the shift by M finite"),
        Case("maxima around 1000 (float32)", _partials(1, 2, 24, 8, [24], 3, seed=4, shift=1000.0),
             hint="subtract the largest max M before exp: e^(m_s) alone overflows above 88.7"),
        Case("float64 states, 5 chunks", _partials(2, 2, 23, 4, [23, 11], 5, seed=5, dtype=torch.float64),
             hint="float64 states give a float64 o and lse"),
        Case("heads whose maxima are 200 apart (float32)", _apart(_partials(1, 2, 24, 8, [24], 3, seed=7)),
             hint="M is each head's own max over its chunks (amax over S, the last dim): one max over all heads "
                  "underflows e^(m_s - M) to 0 for a head whose scores lie far below another's"),
    ]
    args = _partials(2, 3, 40, 8, [40, 17], 5, seed=6)  # sequence 1's last two chunks are empty
    mean = "o is not the mean of the chunks' own outputs: a chunk's weight is e^(m_s − M) l_s, its share of the sum"
    probes = [
        Probe("5 chunks", args, {}, "the chunk states were added as they are: each was summed against its own "
              "max m_s, so weigh it by e^(m_s − M) before adding, acc and l alike",
              twin(_no_weights, first_only=True)),
        Probe("5 chunks", args, {}, mean, twin(_mean_of_outputs, first_only=True)),
        Probe("5 chunks", args, {}, mean, twin(_mean_of_filled, first_only=True)),
        Probe("5 chunks, two of them empty", args, {}, "each chunk's output acc_s / l_s is 0/0 = NaN for an empty "
              "chunk: weigh acc_s itself, o = Σ e^(m_s − M) acc_s / Σ e^(m_s − M) l_s", twin(_normalised_first)),
        Probe("5 chunks", args, {}, "the weights e^(m_s − M) multiply l_s too: o = Σ w_s acc_s / Σ w_s l_s",
              twin(_weights_without_l, first_only=True)),
        Probe("5 chunks", args, {}, "sum over the chunk axis S (dim=-2 of acc), not over the head dim D: o has "
              "shape (B, H, D)", twin(_over_head_dim, first_only=True)),
        Probe("5 chunks", args, {}, "the denominator must weigh l_s as the numerator weighs acc_s: "
              "Σ_s e^(m_s − M) l_s", twin(_l_not_weighed, first_only=True)),
        Probe("5 chunks", args, {}, "the exponent's sign is flipped: weigh chunk s by e^(m_s − M) <= 1, not "
              "e^(M − m_s)", twin(_sign_flipped)),
        Probe("5 chunks", args, {}, "lse is a natural log: M + log Σ e^(m_s − M) l_s (torch.log, not log2)",
              twin(_lse_base2)),
        Probe("5 chunks", args, {}, "o is right but lse is not: lse = M + log Σ_s e^(m_s − M) l_s (add M back)",
              twin(_lse_without_max)),
        Probe("maxima around 1000", _partials(1, 2, 24, 8, [24], 3, seed=7, shift=1000.0), {},
              "exp overflows: compute each weight as one exponent, e^(m_s − M) <= 1", _nonfinite),
    ]
    return Checker("combine_partials", cases, ref.combine_partials, probes)


# ---------------------------------------------------------------- 10.3 attention through a block table

def _paged_args(B, H, H_kv, D, lengths, page, seed, dtype=torch.float32, pages_in_order=False):
    """(q, k_pages, v_pages, block_table, lengths): recycled pages hold GARBAGE in every unused slot."""
    n = max(lengths)
    q, k, v, _ = _cache(B, H, H_kv, n, D, lengths, seed, dtype)
    max_pages = -(-n // page)
    cache = ref.PagedKVCache(B, H_kv, D, page, num_pages=B * max_pages + 2, max_pages=max_pages, dtype=dtype,
                             seed=seed)
    if pages_in_order:
        cache.free_pages = list(range(cache.k_pages.shape[0]))[::-1]
    cache.k_pages.fill_(GARBAGE)
    cache.v_pages.fill_(-GARBAGE)
    for i in range(n):
        for b in range(B):
            if i < lengths[b]:
                cache.append(b, k[b, :, i], v[b, :, i])
    return q, cache.k_pages, cache.v_pages, cache.block_table, cache.lengths


def _paged_twin(*, rows: str = "own", swap: bool = False, extra: int = 0, lengths: str = "own",
                permute: bool = True, heads: str = "group", default_scale: str = "sqrt"):
    """A paged attention with one mistake: another row or order of the block table, page and slot swapped, a length
    off by ``extra``, lengths ignored or whole pages read, a reshape for the permute, the GQA map h % H_kv, or
    scale 1/D."""
    def run(q, k_pages, v_pages, block_table, lens, scale=None):
        B, P = q.shape[0], k_pages.shape[2]
        n = int(lens.max()) + extra
        if lengths == "whole pages":
            n = -(-int(lens.max()) // P) * P
        pos = torch.arange(n)
        col, slot = (pos % P, pos // P) if swap else (pos // P, pos % P)
        if rows == "in order":
            pages = torch.arange(B)[:, None] * block_table.shape[1] + col[None, :]
        else:
            table = block_table[:1].expand(B, -1) if rows == "first" else block_table
            pages = table[:, col].long().clamp(min=0)
        slots = slot.expand_as(pages)
        k, v = k_pages[pages, :, slots], v_pages[pages, :, slots]  # (B, n, H_kv, D)
        if permute:
            k, v = k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        else:
            k, v = k.reshape(B, k.shape[2], n, -1), v.reshape(B, v.shape[2], n, -1)
        if heads == "modulo":  # query head h reads KV head h % H_kv
            idx = torch.arange(q.shape[1]) % k.shape[1]
            k, v = k[:, idx], v[:, idx]
        use = lens + extra if lengths == "own" else None if lengths == "ignored" else torch.full_like(lens, n)
        if default_scale == "1/D" and scale is None:
            scale = 1 / q.shape[-1]
        return ref.decode_attention(q, k, v, use, scale)
    return run


@checker
def paged_attention() -> Checker:
    """paged_attention(q, k_pages, v_pages, block_table, lengths, scale=None) -> (o, lse) (notebook 10).

    position i of sequence b is slot i % P of page block_table[b, i // P]; pages come in any order
    only positions < lengths[b] count (a recycled page holds garbage past them); query head h reads KV head
    h // (H / H_kv); scale defaults to 1/sqrt(D); o in q's dtype, lse float32
    """
    cases = [
        Case("one sequence, pages in order, 2 full pages of 4", _paged_args(1, 2, 2, 8, [8], 4, seed=11,
                                                                            pages_in_order=True)),
        Case("3 sequences, pages out of order, lengths 1, 9, 16, pages of 4",
             _paged_args(3, 2, 2, 8, [1, 9, 16], 4, seed=12),
             hint="pages come from a free list in any order: find each position's page in the block table"),
        Case("pages of 1 position", _paged_args(2, 2, 2, 8, [5, 3], 1, seed=13)),
        Case("the last page partly filled: lengths 6 and 7, pages of 4", _paged_args(2, 2, 2, 8, [6, 7], 4, seed=14),
             hint="only positions < length count: the rest of the last page holds old data"),
        Case("grouped-query attention: 8 query heads, 2 KV heads", _paged_args(2, 8, 2, 8, [10, 4], 4, seed=15),
             hint="query head h reads KV head h // (H / H_kv): heads 0-3 read KV head 0, heads 4-7 KV head 1"),
        Case("scale = 0.5 given", _paged_args(1, 2, 1, 16, [7], 4, seed=16), {"scale": 0.5}),
        Case("float16", _paged_args(2, 4, 2, 16, [9, 12], 4, seed=17, dtype=torch.float16)),
    ]
    # lengths 16 and 13 in pages of 4: every block-table entry a swapped page and slot reaches is a page
    shuffled = _paged_args(2, 4, 2, 8, [16, 13], 4, seed=18)
    table_hint = ("each sequence's pages come from its own row of the block table, block_table[b, i // P], in any "
                  "order: not one after another, nor another sequence's row")
    past = ("positions past the length were counted: the last page's free slots hold old data; count only the "
            "positions i < lengths[b] of each sequence")
    probes = [
        Probe("pages out of order", shuffled, {}, table_hint, twin(_paged_twin(rows="in order"))),
        Probe("pages out of order", shuffled, {}, table_hint, twin(_paged_twin(rows="first"))),
        Probe("pages out of order", shuffled, {}, "page and slot are swapped: position i is slot i % P of page "
              "block_table[b, i // P]", twin(_paged_twin(swap=True))),
        Probe("lengths 16 and 13, pages of 4", shuffled, {}, past, twin(_paged_twin(lengths="whole pages"))),
        Probe("lengths 16 and 13, pages of 4", shuffled, {}, past, twin(_paged_twin(lengths="ignored"))),
        Probe("lengths 14 and 11, pages of 4", _paged_args(2, 4, 2, 8, [14, 11], 4, seed=19), {}, "off by one: "
              "position i counts when i < lengths[b], not i <= lengths[b]", twin(_paged_twin(extra=1))),
        Probe("the gathered keys", shuffled, {}, "the gathered keys are (B, n, H_kv, D): permute them to "
              "(B, H_kv, n, D) (a reshape keeps the memory order and mixes positions with heads)",
              twin(_paged_twin(permute=False))),
        Probe("the default scale", shuffled, {}, "the default scale is 1/sqrt(D), not 1/D",
              twin(_paged_twin(default_scale="1/D"))),
        Probe("4 query heads, 2 KV heads", shuffled, {}, "grouped-query attention maps query head h to KV head "
              "h // (H / H_kv) (a group of consecutive heads), not h % H_kv", twin(_paged_twin(heads="modulo"))),
    ]
    return Checker("paged_attention", cases, ref.paged_attention, probes)


# ------------------------------------------------------------ 10.4 the split-K kernel's inner loop

def _simulate(q, k, v, lengths=None, scale=None, num_splits=None, *, mistake: str):
    """The split-K loop in PyTorch (natural units), tile by tile as the kernel runs it, with one ``mistake``; then
    the merge. The scaffold's offs_n and valid are the tile's; the mistakes are those of the loop body."""
    B, H, D = q.shape
    H_kv, N = k.shape[1], k.shape[2]
    lengths = torch.full((B,), N) if lengths is None else lengths
    scale = 1 / math.sqrt(D) if scale is None else scale
    block = launch.decode_config(launch.current_arch(), q.dtype, D).block_n
    chunk, splits = chunking(num_splits, B * H, N, block)  # the kernels' own split of the cache
    ninf = torch.tensor(-math.inf, dtype=torch.float64)
    m = torch.full((B, H, splits), -math.inf, dtype=torch.float64)
    l, acc = torch.zeros(B, H, splits, dtype=torch.float64), torch.zeros(B, H, splits, D, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            kh = h // (H // H_kv)
            for s in range(splits):
                start, end = s * chunk, min(s * chunk + chunk, int(lengths[b]))
                m_i, l_i, a_i = -math.inf, 0.0, torch.zeros(D, dtype=torch.float64)
                for t0 in range(start, end, block):
                    tile = torch.arange(t0, t0 + block)
                    valid = tile < end
                    at = (torch.arange(start, start + block) if mistake == "tile start" else tile).clamp(max=N - 1)
                    kk = torch.where(valid[:, None], k[b, kh, at].double(), torch.zeros(1, dtype=torch.float64))
                    vv = torch.where(valid[:, None], v[b, kh, at].double(), torch.zeros(1, dtype=torch.float64))
                    raw = kk @ q[b, h].double() if mistake != "wrong axis" else (kk * q[b, h].double()).sum(0)
                    sc = raw * (math.log(2) if mistake == "no scale" else scale)
                    if mistake == "natural exp":  # exp on scores in log2 units: softmax(log2 e · s)
                        sc = sc / math.log(2)
                    if mistake != "no mask":
                        sc = torch.where(valid, sc, ninf)
                    m_new = max(m_i, float(sc.max()))
                    alpha = math.exp(m_i - m_new) if m_i > -math.inf else 0.0
                    if mistake == "alpha after update":
                        alpha = 1.0
                    p = torch.exp(sc - m_new)
                    l_i = (l_i if mistake in ("l not rescaled",) else l_i * alpha) + float(p.sum())
                    a_i = (a_i if mistake in ("acc not rescaled",) else a_i * alpha) + p @ vv
                    m_i = m_new
                m[b, h, s], l[b, h, s], acc[b, h, s] = m_i, l_i, a_i
    o, lse = ref.combine_partials(m, l, acc)
    return o.to(q.dtype), lse.float()


def _expected(q, k, v, lengths=None, scale=None, num_splits=None):
    o, lse = ref.decode_attention(q, k, v, lengths, scale)
    return o, lse.float()


def _sim(mistake):
    return twin(lambda *a, **kw: _simulate(*a, **kw, mistake=mistake), first_only=True)


@checker
def flash_decode_triton() -> Checker:
    """The split-K kernel's loop, through the scaffold's wrapper fn(q, k, v, lengths=None, scale=None, num_splits=None)
    -> (o, lse) (notebook 10). Each tile: scores q · k_j (log2 units), masked to -inf past the chunk's end
    (the length); m_new = max(m_i, max(s)); l_i and acc rescaled by exp2(m_i - m_new); then p = exp2(s - m_new)
    added in; a chunk past the length runs no tile; GQA: the scaffold maps query head h to KV head h // G."""
    block = launch.decode_config(launch.current_arch(), torch.float32, 16).block_n
    cases = [
        Case("B = 1, H = 2, N = 40, D = 16, 2 chunks", _cache(1, 2, 2, 40, 16, [40], seed=21)[:3], {"num_splits": 2}),
        Case("one position: N = 1", _cache(1, 2, 2, 1, 16, [1], seed=22)[:3]),
        Case("lengths 37 and 5 of N = 48: tiles and chunks past a length", _cache(2, 2, 2, 48, 16, [37, 5], seed=23),
             {"num_splits": 3}, hint="positions past the length (the chunk's end) must score -inf"),
        Case("GQA: 8 query heads, 2 KV heads, 3 chunks", _cache(1, 8, 2, 45, 16, [45], seed=24), {"num_splits": 3}),
        Case("float16, lengths 30 and 17", _cache(2, 4, 2, 33, 16, [30, 17], seed=25, dtype=torch.float16)),
        Case("the max in the first tile, later scores about 100 lower, one chunk",
             _cache(1, 2, 1, 4 * block, 16, [4 * block], seed=27, fall=block), {"num_splits": 1},
             hint="the running max never decreases: m_new = max(m_i, max(s)); a tile's own max makes "
                  "alpha = exp2(m_i - m_new) overflow when the scores fall"),
    ]
    args = _cache(2, 2, 1, 4 * block, 16, [4 * block, 2 * block + 9], seed=26)
    one = {"num_splits": 1}
    probes = [
        Probe("one chunk of 4 tiles", args, one, "positions past the length were counted with score 0: set the "
              "scores of the invalid positions to -inf with tl.where(valid, s, float('-inf'))", _sim("no mask")),
        Probe("one chunk of 4 tiles", args, one, "every step read the chunk's first tile: the offsets of a step are "
              "offs_n = start_n + tl.arange(0, BLOCK_N), for the keys and the values", _sim("tile start")),
        Probe("one chunk of 4 tiles", args, one, "acc not rescaled when the running max grows: acc = acc * alpha + "
              "sum(p[:, None] * v, 0) with alpha = exp2(m_i - m_new)", _sim("acc not rescaled")),
        Probe("one chunk of 4 tiles", args, one, "l_i not rescaled when the running max grows: l_i = l_i * alpha + "
              "sum(p) with alpha = exp2(m_i - m_new)", _sim("l not rescaled")),
        Probe("one chunk of 4 tiles", args, one, "nothing is rescaled: alpha = exp2(m_i - m_new) must use the old "
              "m_i, before m_i = m_new at the end of the step (updated first, alpha is always 1)",
              _sim("alpha after update")),
        Probe("one chunk of 4 tiles", args, one, "the scores are in log2 units (qk_scale = log2 e / sqrt(D)): "
              "exponentiate with tl.exp2, not tl.exp", _sim("natural exp")),
        Probe("one chunk of 4 tiles", args, one, "multiply the scores by qk_scale (log2 e / sqrt(D))",
              _sim("no scale")),
        Probe("one chunk of 4 tiles", args, one, "a score is the dot product of q with one key, a sum over the head "
              "dim (axis 1 of the (BLOCK_N, D) tile), not over the tile's positions", _sim("wrong axis")),
        Probe("one chunk of 4 tiles", args, one, "inf or NaN came out of the loop: check each update in turn: "
              "m_new = tl.maximum(m_i, tl.max(s, 0)) (the running max, not the tile's own), alpha = exp2(m_i - m_new), "
              "p = exp2(s - m_new) against the new max (m_i is -inf on the first tile), l_i = l_i * alpha + "
              "tl.sum(p, 0), acc = acc * alpha + tl.sum(p[:, None] * v, 0), and m_i = m_new at the end of every step",
              reads("nan")(_inf_or_nan)),
    ]
    return Checker("flash_decode_triton", cases, _expected, probes, compare=compare_outputs,
                   prepare=on_course_device)
