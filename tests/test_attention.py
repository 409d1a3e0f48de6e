"""labkit.attention: naive, tiled and FlashAttention forward against float64 and torch SDPA."""

import pytest
import torch
import torch.nn.functional as F

import labkit  # noqa: F401  (device switch first)
from labkit import attention
from labkit.check import assert_close
from attention_inputs import make_qkv, ref64

NS = (1, 17, 64, 100)
DS = (16, 32, 64, 128)


def judge(out, q, k, v, causal=False, what="output"):
    """fp32/fp64 by the tolerance table; fp16 against plain same-dtype attention as baseline."""
    expected, _ = ref64(q, k, v, causal)
    assert out.dtype == q.dtype and out.shape == q.shape
    if q.dtype in (torch.float16, torch.bfloat16):
        assert_close(out, expected, baseline=attention.naive_attention(q, k, v, causal), what=what)
    else:
        assert_close(out, expected, what=what)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("D", DS)
def test_naive_matches_sdpa_float64(causal, n, D):
    q, k, v = make_qkv(2, 3, n, n, D, torch.float64, seed=n + D)
    out = attention.naive_attention(q, k, v, causal=causal)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    assert_close(out, ref64(q, k, v, causal)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv", [(1, 100), (17, 64), (100, 17), (64, 1)])
def test_naive_cross_attention(dtype, n_q, n_kv):
    q, k, v = make_qkv(2, 2, n_q, n_kv, 32, dtype, seed=n_q)
    out = attention.naive_attention(q, k, v)
    expected = ref64(q, k, v)[0]
    if dtype == torch.float16:
        assert_close(out, expected, baseline=F.scaled_dot_product_attention(q, k, v))
    else:
        assert_close(out, expected)


def test_naive_scale_argument():
    q, k, v = make_qkv(1, 2, 17, 17, 16, torch.float64)
    assert_close(attention.naive_attention(q, k, v, scale=0.3),
                 F.scaled_dot_product_attention(q, k, v, scale=0.3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("D", DS)
def test_flash_forward(dtype, causal, n, D):
    q, k, v = make_qkv(1, 2, n, n, D, dtype, seed=3 * n + D)
    o, lse = attention.flash_attention_forward(q, k, v, causal=causal, block_q=16, block_k=32)
    judge(o, q, k, v, causal)
    assert lse.shape == (1, 2, n) and lse.dtype == torch.float32
    assert_close(lse, ref64(q, k, v, causal)[1], what="lse")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv", [(1, 100), (17, 64), (100, 17), (64, 1)])
def test_flash_forward_cross_attention(dtype, n_q, n_kv):
    q, k, v = make_qkv(2, 2, n_q, n_kv, 64, dtype, seed=n_kv)
    o, lse = attention.flash_attention_forward(q, k, v, block_q=16, block_k=16)
    judge(o, q, k, v)
    assert_close(lse, ref64(q, k, v)[1], what="lse")


@pytest.mark.parametrize("causal", [False, True])
def test_flash_forward_float64_matches_sdpa(causal):
    q, k, v = make_qkv(2, 2, 100, 100, 32, torch.float64, seed=7)
    o, lse = attention.flash_attention_forward(q, k, v, causal=causal, block_q=32, block_k=16)
    assert lse.dtype == torch.float64
    assert_close(o, F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    assert_close(lse, ref64(q, k, v, causal)[1], what="lse")


@pytest.mark.parametrize("causal", [False, True])
def test_flash_forward_same_for_every_block_size(causal):
    q, k, v = make_qkv(2, 2, 50, 50, 32, torch.float32, seed=11)
    o0, lse0 = attention.flash_attention_forward(q, k, v, causal=causal)
    for block_q, block_k in [(1, 7), (7, 1), (16, 16), (17, 33), (64, 32), (128, 128)]:
        o, lse = attention.flash_attention_forward(q, k, v, causal=causal, block_q=block_q,
                                                   block_k=block_k)
        assert_close(o, o0, what=f"o with blocks ({block_q}, {block_k})")
        assert_close(lse, lse0, what=f"lse with blocks ({block_q}, {block_k})")


def test_flash_forward_scale_argument():
    q, k, v = make_qkv(1, 2, 33, 33, 16, torch.float64, seed=5)
    o, lse = attention.flash_attention_forward(q, k, v, causal=True, scale=0.7, block_q=8,
                                               block_k=8)
    assert_close(o, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7))
    s = (q @ k.transpose(-2, -1) * 0.7).masked_fill(torch.ones(33, 33, dtype=torch.bool).triu(1),
                                                     float("-inf"))
    assert_close(lse, torch.logsumexp(s, -1), what="lse")


def test_flash_forward_large_scores_do_not_overflow():
    q, k, v = make_qkv(1, 1, 40, 40, 16, torch.float32, seed=2)
    o, lse = attention.flash_attention_forward(q * 30, k * 30, v, block_q=16, block_k=8)
    assert torch.isfinite(o).all() and torch.isfinite(lse).all()
    judge(o, q * 30, k * 30, v)


@pytest.mark.parametrize("n_q, n_kv", [(1, 1), (17, 100), (100, 17), (64, 64)])
@pytest.mark.parametrize("D", [16, 64])
def test_tiled_matches_naive(n_q, n_kv, D):
    q, k, v = make_qkv(2, 2, n_q, n_kv, D, torch.float64, seed=n_q * n_kv)
    for block_q, block_k in [(64, 64), (16, 32), (7, 5)]:
        out = attention.tiled_attention(q, k, v, block_q=block_q, block_k=block_k)
        assert_close(out, attention.naive_attention(q, k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_tiled_dtypes(dtype):
    q, k, v = make_qkv(1, 2, 100, 70, 32, dtype, seed=1)
    judge(attention.tiled_attention(q, k, v, block_q=32, block_k=16), q, k, v)


def test_tiled_scale_argument():
    q, k, v = make_qkv(1, 2, 30, 20, 16, torch.float64, seed=6)
    assert_close(attention.tiled_attention(q, k, v, 8, 8, scale=0.5),
                 F.scaled_dot_product_attention(q, k, v, scale=0.5))


def test_non_contiguous_inputs():
    q, k, v = make_qkv(2, 3, 50, 50, 32, torch.float32, seed=4, bnhd=True)
    assert not q.is_contiguous()
    qc, kc, vc = (x.contiguous() for x in (q, k, v))
    for causal in (False, True):
        expected = attention.naive_attention(qc, kc, vc, causal)
        assert_close(attention.naive_attention(q, k, v, causal), expected)
        o, lse = attention.flash_attention_forward(q, k, v, causal=causal, block_q=16, block_k=16)
        assert_close(o, expected)
        assert_close(lse, attention.flash_attention_forward(qc, kc, vc, causal=causal)[1])
    assert_close(attention.tiled_attention(q, k, v, 16, 16), attention.naive_attention(qc, kc, vc))


def test_inputs_are_not_modified():
    q, k, v = make_qkv(1, 2, 40, 40, 16, torch.float32, seed=9)
    copies = [x.clone() for x in (q, k, v)]
    attention.flash_attention_forward(q, k, v, causal=True, block_q=16, block_k=16)
    attention.tiled_attention(q, k, v, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip((q, k, v), copies))


def brute_force_visited(n_q, n_kv, block_q, block_k, causal):
    """Count (query tile, key tile) pairs holding at least one visible (query, key) pair."""
    count = 0
    for i0 in range(0, n_q, block_q):
        for j0 in range(0, n_kv, block_k):
            count += (not causal) or j0 <= min(i0 + block_q, n_q) - 1
    return count


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [1, 17, 64, 100, 1000])
@pytest.mark.parametrize("block_q, block_k", [(64, 64), (64, 32), (128, 64), (16, 16)])
def test_visited_tiles(causal, n, block_q, block_k):
    assert attention.visited_tiles(n, n, block_q, block_k, causal) == \
        brute_force_visited(n, n, block_q, block_k, causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_kv", [(1, 1), (17, 17), (100, 37), (37, 100), (1000, 1000)])
@pytest.mark.parametrize("block_q, block_k", [(64, 64), (64, 32), (16, 48)])
def test_key_tiles_are_the_visible_tiles_in_order_and_cover_every_visible_key(causal, n_q, n_kv, block_q, block_k):
    pairs = [(i0, j) for i0 in range(0, n_q, block_q)
             for j in attention.key_tiles(i0, min(i0 + block_q, n_q), n_kv, block_k, causal)]
    assert len(pairs) == brute_force_visited(n_q, n_kv, block_q, block_k, causal)
    for i0 in range(0, n_q, block_q):
        i1 = min(i0 + block_q, n_q)
        tiles = list(attention.key_tiles(i0, i1, n_kv, block_k, causal))
        assert [j0 for j0, _ in tiles] == list(range(0, len(tiles) * block_k, block_k))  # in order, no gap
        last_visible = min(i1 - 1, n_kv - 1) if causal else n_kv - 1  # the tile's last row sees keys up to here
        assert tiles[-1][0] <= last_visible < tiles[-1][1]


def test_visited_tiles_causal_roughly_halves():
    full = attention.visited_tiles(4096, 4096, 128, 64, False)
    causal = attention.visited_tiles(4096, 4096, 128, 64, True)
    assert full == 32 * 64 and causal == sum(2 * (i + 1) for i in range(32))


FUNCTIONS = {
    "naive": lambda q, k, v, causal=False: attention.naive_attention(q, k, v, causal),
    "tiled": lambda q, k, v, causal=False: attention.tiled_attention(q, k, v),
    "flash": lambda q, k, v, causal=False: attention.flash_attention_forward(q, k, v, causal),
}


def bad_inputs():
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    return [
        ("not 4-D", (q[0], k[0], v[0]), {}, "4-D"),
        ("not a tensor", (q.numpy(), k, v), {}, "torch.Tensor"),
        ("integer dtype", (q.long(), k.long(), v.long()), {}, "floating-point"),
        ("mixed dtypes", (q, k.double(), v), {}, "dtype"),
        ("mixed devices", (q, k.to("meta"), v), {}, "device"),
        ("k and v lengths differ", (q, k, v[:, :, :5]), {}, "k and v"),
        ("head dims differ", (q, k[..., :8], v[..., :8]), {}, "agree on B, H and D"),
        ("heads differ", (q, k[:, :1], v[:, :1]), {}, "agree on B, H and D"),
        ("empty", (q[:, :, :0], k, v), {}, "empty"),
        ("bad scale", (q, k, v), {"scale": float("nan")}, "scale"),
    ]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("label, args, kwargs, words", bad_inputs(),
                         ids=[c[0] for c in bad_inputs()])
def test_bad_inputs_raise_value_error(name, label, args, kwargs, words):
    fn = {"naive": attention.naive_attention, "tiled": attention.tiled_attention,
          "flash": attention.flash_attention_forward}[name]
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        fn(*args, **kwargs)


@pytest.mark.parametrize("name", ["naive", "flash"])
def test_causal_needs_square(name):
    q, k, v = make_qkv(1, 2, 8, 12, 16)
    with pytest.raises(ValueError, match="N_q == N_kv"):
        FUNCTIONS[name](q, k, v, causal=True)


@pytest.mark.parametrize("blocks", [(0, 64), (64, -1), (16.5, 16), (True, 16)])
def test_bad_block_sizes(blocks):
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    with pytest.raises(ValueError, match="block_"):
        attention.flash_attention_forward(q, k, v, block_q=blocks[0], block_k=blocks[1])
    with pytest.raises(ValueError, match="block_"):
        attention.tiled_attention(q, k, v, block_q=blocks[0], block_k=blocks[1])


# ------------------------------------------------- the readable reference and the fast variant

SHAPES = [  # (N_q, N_kv, causal, block_q, block_k): one tile, ragged tiles, cross-attention, N = 1
    (16, 16, False, 4, 4), (13, 13, True, 4, 3), (5, 19, False, 4, 8), (1, 1, False, 64, 64),
    (40, 40, True, 16, 8), (33, 7, False, 8, 16),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv, causal, block_q, block_k", SHAPES)
def test_fast_forward_matches_the_readable_reference(n_q, n_kv, causal, block_q, block_k, dtype):
    g = torch.Generator().manual_seed(n_q * 100 + n_kv)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64).to(dtype) for n in (n_q, n_kv, n_kv))
    o_fast, lse_fast = attention.flash_attention_forward(q, k, v, causal, None, block_q, block_k)
    o_ref, lse_ref = attention.flash_attention_forward_reference(q, k, v, causal, None, block_q, block_k)
    assert (o_fast.dtype, lse_fast.dtype) == (o_ref.dtype, lse_ref.dtype)
    assert_close(o_fast, o_ref, what="o")
    assert_close(lse_fast, lse_ref, dtype=attention.compute_dtype(dtype), what="lse")
    assert_close(o_ref.double(), attention.naive_attention(q.double(), k.double(), v.double(), causal),
                 dtype=dtype, what="o against the definition")


def test_the_one_causal_mask_uses_global_indices():
    rows, cols = torch.arange(4, 7), torch.arange(5, 8)  # a tile away from the origin
    assert attention.causal_mask(rows, cols).tolist() == [[True, True, True], [False, True, True],
                                                           [False, False, True]]
