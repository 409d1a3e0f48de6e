"""labkit.decoding: decode attention, flash-decoding's split and merge, the paged cache, against torch's SDPA."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labkit import decoding as dc
from labkit.contracts import ArgumentTypeError
from labkit.check.tolerance import assert_close

# (B, H, H_kv, N, D): multi-head, GQA groups of 2 and 4, multi-query; N = 1, N prime, N a multiple of 8
SHAPES = [(1, 1, 1, 1, 8), (2, 4, 4, 13, 16), (3, 8, 2, 37, 16), (1, 8, 1, 64, 32), (2, 6, 3, 5, 8)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _inputs(B, H, H_kv, N, D, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, H, D, generator=g, dtype=torch.float64) * scale).to(dtype)
    k = (torch.randn(B, H_kv, N, D, generator=g, dtype=torch.float64) * scale).to(dtype)
    v = torch.randn(B, H_kv, N, D, generator=g, dtype=torch.float64).to(dtype)
    lengths = torch.randint(1, N + 1, (B,), generator=g)
    lengths[0] = N
    return q, k, v, lengths


def sdpa_oracle(q, k, v, lengths, scale=None):
    """torch's SDPA (enable_gqa) on each sequence's valid prefix, in float64; lse by torch.logsumexp."""
    o, lse = [], []
    for b in range(q.shape[0]):
        n = int(lengths[b])
        qb, kb, vb = q[b:b + 1, :, None].double(), k[b:b + 1, :, :n].double(), v[b:b + 1, :, :n].double()
        o.append(F.scaled_dot_product_attention(qb, kb, vb, scale=scale, enable_gqa=True)[:, :, 0])
        G = q.shape[1] // k.shape[1]
        s = torch.einsum("hd,hnd->hn", qb[0, :, 0], kb[0].repeat_interleave(G, 0)) * \
            (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
        lse.append(torch.logsumexp(s, -1)[None])
    return torch.cat(o), torch.cat(lse)


def _paged(k, v, lengths, page_size, seed=0):
    B, H_kv, N, D = k.shape
    cache = dc.PagedKVCache(B, H_kv, D, page_size, num_pages=B * -(-N // page_size) + 3,
                            max_pages=-(-N // page_size), dtype=k.dtype, seed=seed)
    for i in range(N):  # sequences grow together, one token each step: their pages interleave
        for b in range(B):
            if i < int(lengths[b]):
                cache.append(b, k[b, :, i], v[b, :, i])
    return cache


VARIANTS = {
    "decode_attention": lambda q, k, v, n: dc.decode_attention(q, k, v, n),
    "flash_decode, 1 chunk": lambda q, k, v, n: dc.flash_decode(q, k, v, n, num_splits=1),
    "flash_decode, 3 chunks": lambda q, k, v, n: dc.flash_decode(q, k, v, n, num_splits=3),
    "flash_decode, more chunks than positions": lambda q, k, v, n: dc.flash_decode(q, k, v, n, num_splits=70),
    "paged, pages of 4": lambda q, k, v, n: dc.paged_attention(q, *_pages(k, v, n, 4), n),
    "paged, pages of 1": lambda q, k, v, n: dc.paged_attention(q, *_pages(k, v, n, 1), n),
}


def _pages(k, v, lengths, page_size):
    c = _paged(k, v, lengths, page_size)
    return c.k_pages, c.v_pages, c.block_table


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_variant_is_attention_of_each_prefix(variant, shape, dtype):
    q, k, v, lengths = _inputs(*shape, dtype=dtype)
    o, lse = VARIANTS[variant](q, k, v, lengths)
    want_o, want_lse = sdpa_oracle(q, k, v, lengths)
    assert o.dtype == dtype and o.shape == q.shape and lse.shape == q.shape[:2]
    assert_close(o, want_o, dtype=dtype, what="o")
    assert_close(lse.double(), want_lse, dtype=torch.float32 if dtype != torch.float64 else dtype, what="lse")


def test_a_given_scale_and_large_scores_stay_finite():
    q, k, v, lengths = _inputs(2, 4, 2, 21, 16, scale=30.0)
    for fn in (dc.decode_attention, dc.flash_decode):
        o, lse = fn(q, k, v, lengths, scale=0.7)
        want_o, want_lse = sdpa_oracle(q, k, v, lengths, scale=0.7)
        assert torch.isfinite(o).all()
        assert_close(o, want_o, dtype=torch.float32)
        assert_close(lse.double(), want_lse, dtype=torch.float32)


def test_partials_of_a_chunk_past_the_length_are_the_empty_state():
    q, k, v, _ = _inputs(1, 2, 1, 16, 8)
    m, l, acc = dc.split_partials(q, k, v, torch.tensor([5]), num_splits=4)  # chunks 0..3, 4..7, 8..11, 12..15
    assert m.shape == l.shape == (1, 2, 4) and acc.shape == (1, 2, 4, 8)
    assert torch.isinf(m[..., 2:]).all() and (m[..., 2:] < 0).all()
    assert (l[..., 2:] == 0).all() and (acc[..., 2:, :] == 0).all()
    assert torch.isfinite(m[..., :2]).all() and (l[..., :2] >= 1).all()  # each chunk counts its own max once


def test_combine_is_the_merge_of_notebook_03():
    """Chunk states merged in one go equal the states merged pairwise by softmax.merge_states."""
    from labkit.softmax import OnlineState, merge_states
    q, k, v, lengths = _inputs(2, 2, 2, 23, 8)
    m, l, acc = dc.split_partials(q, k, v, lengths, num_splits=5)
    o, lse = dc.combine_partials(m, l, acc)
    state = OnlineState(m[..., 0], l[..., 0])
    for s in range(1, 5):
        state = merge_states(state, OnlineState(m[..., s], l[..., s]))
    assert_close(lse, state.m + torch.log(state.d), dtype=torch.float32)


def test_paged_cache_hands_out_pages_out_of_order_and_frees_them():
    q, k, v, lengths = _inputs(3, 4, 2, 19, 8)
    cache = _paged(k, v, lengths, page_size=4)
    table = cache.block_table
    used = [table[b, :-(-int(n) // 4)].tolist() for b, n in enumerate(lengths)]
    assert any(pages != sorted(pages) or pages != list(range(pages[0], pages[0] + len(pages))) for pages in used)
    assert cache.pages_in_use() == sum(len(p) for p in used) == sum(-(-int(n) // 4) for n in lengths)
    free = len(cache.free_pages)
    cache.free(1)
    assert len(cache.free_pages) == free + len(used[1]) and (cache.block_table[1] == -1).all()
    assert int(cache.lengths[1]) == 0


def test_paged_cache_refuses_to_grow_past_its_pages():
    cache = dc.PagedKVCache(1, 1, 4, page_size=2, num_pages=1, max_pages=4)
    row = torch.zeros(1, 4)
    cache.append(0, row, row)
    cache.append(0, row, row)
    with pytest.raises(MemoryError, match="no free page"):
        cache.append(0, row, row)
    small = dc.PagedKVCache(1, 1, 4, page_size=2, num_pages=5, max_pages=1)
    small.append(0, row, row)
    small.append(0, row, row)
    with pytest.raises(ValueError, match="max_pages"):
        small.append(0, row, row)


def test_memory_of_a_paged_cache_against_a_reserved_one():
    lengths = [1, 100, 4096, 37]
    assert dc.reserved_bytes(lengths, 4096, 10) == 4 * 4096 * 10
    assert dc.paged_bytes(lengths, 16, 10) == (1 + 7 + 256 + 3) * 16 * 10
    assert dc.paged_bytes(lengths, 1, 10) == sum(lengths) * 10


def test_kv_cache_bytes_counts_k_and_v_of_every_layer():
    # Llama-3-8B's shape: 32 layers, 8 KV heads of 128, fp16: 128 KiB per token
    assert dc.kv_cache_bytes(32, 8, 128, 1) == 131072
    assert dc.kv_cache_bytes(32, 8, 128, 8192, batch=2, dtype=torch.float32) == 2 * 32 * 8 * 128 * 8192 * 2 * 4
    assert dc.kv_cache_bytes(1, 1, 1, 0) == 0


@pytest.mark.parametrize("call, match", [
    (lambda q, k, v: dc.decode_attention(q[0], k, v), "q must have shape"),
    (lambda q, k, v: dc.decode_attention(q, k[:, :, :, :4], v), "k and v must both"),
    (lambda q, k, v: dc.decode_attention(q[:, :3], k, v), "multiple of the KV heads"),
    (lambda q, k, v: dc.decode_attention(q, k, v, torch.tensor([0, 1])), "every length must be in 1..7"),
    (lambda q, k, v: dc.decode_attention(q, k, v, torch.tensor([8, 1])), "every length must be in 1..7"),
    (lambda q, k, v: dc.decode_attention(q, k, v, torch.tensor([1.0, 2.0])), "lengths must be an integer"),
    (lambda q, k, v: dc.decode_attention(q, k, v, torch.tensor([1])), r"lengths must have shape \(2,\)"),
    (lambda q, k, v: dc.decode_attention(q, k.half(), v), "one dtype and device"),
    (lambda q, k, v: dc.flash_decode(q, k, v, num_splits=0), "num_splits must be a positive"),
    (lambda q, k, v: dc.paged_attention(q, k[..., :4], v[..., :4], torch.zeros(2, 1, dtype=torch.int32),
                                        torch.tensor([1, 1])), "must have q's head dim"),
    (lambda q, k, v: dc.paged_attention(q, k, v, torch.zeros(2, 1), torch.tensor([1, 1])),
     "block_table must be an integer"),
    (lambda q, k, v: dc.kv_cache_bytes(32, 8, 128, -1), "tokens must be an int >= 0"),
])
def test_bad_input_gets_an_error_that_names_it(call, match):
    q, k, v, _ = _inputs(2, 4, 2, 7, 8)
    with pytest.raises((ValueError, ArgumentTypeError), match=match):
        call(q, k, v)


def test_a_block_table_pointing_outside_the_pages_is_refused():
    q, k, v, lengths = _inputs(1, 2, 1, 8, 8)
    c = _paged(k, v, lengths, 4)
    bad = c.block_table.clone()
    bad[0, 1] = 99
    with pytest.raises(ValueError, match="points outside the"):
        dc.paged_attention(q, c.k_pages, c.v_pages, bad, c.lengths)
