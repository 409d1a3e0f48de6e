"""labkit.kernels.flash_attention_forward_triton (Triton; the interpreter on CPU) against float64 references."""

import pytest
import torch
import torch.nn.functional as F

import labkit  # noqa: F401  (device switch first)
from labkit import attention, device
from labkit.check import assert_close
from labkit.kernels import flash_attention_forward_triton
from labkit.kernels.flash_forward import DTYPES, HEAD_DIMS, block_sizes
from attention_inputs import make_qkv, ref64

NS = (1, 17, 64, 100)
DS = (16, 32, 64, 128)
# bf16 in the full matrix on a GPU only (the interpreter does its dots in fp32: slow there).
MATRIX_DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if device.HAS_CUDA else [])


def judge(o, lse, q, k, v, causal=False, scale=None):
    expected, expected_lse = ref64(q, k, v, causal, scale)
    # SDPA in float64 is the second oracle for the reference itself.
    assert_close(expected, F.scaled_dot_product_attention(
        *(x.double() for x in (q, k, v)), is_causal=causal, scale=scale))
    assert o.dtype == q.dtype and o.shape == q.shape
    assert lse.dtype == torch.float32 and lse.shape == q.shape[:3]
    if q.dtype == torch.float32:
        assert_close(o, expected)
    else:  # low precision: at most 2x the error of plain same-dtype attention
        assert_close(o, expected, baseline=attention.naive_attention(q, k, v, causal, scale))
    assert_close(lse, expected_lse, what="lse")


@pytest.mark.parametrize("dtype", MATRIX_DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("D", DS)
def test_forward(dtype, causal, n, D):
    q, k, v = make_qkv(1, 2, n, n, D, dtype, seed=n * D)
    o, lse = flash_attention_forward_triton(q, k, v, causal=causal)
    judge(o, lse, q, k, v, causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n_q, n_kv", [(1, 100), (17, 64), (100, 17), (64, 1)])
def test_forward_cross_attention(dtype, n_q, n_kv):
    q, k, v = make_qkv(2, 1, n_q, n_kv, 32, dtype, seed=n_q + n_kv)
    o, lse = flash_attention_forward_triton(q, k, v)
    judge(o, lse, q, k, v)


@pytest.mark.parametrize("causal", [False, True])
def test_forward_long_ragged_sequence(causal):
    # N = 1000 is not a multiple of any block size: the last K/V tile and query block are ragged.
    q, k, v = make_qkv(1, 1, 1000, 1000, 16, torch.float32, seed=1000)
    o, lse = flash_attention_forward_triton(q, k, v, causal=causal)
    judge(o, lse, q, k, v, causal)


@pytest.mark.parametrize("causal", [False, True])
def test_forward_bfloat16(causal):
    # The interpreter's tl.dot is wrong for bf16 operands; the kernel does those dots in fp32
    # there (bf16 values are exact in fp32), and natively on a GPU.
    q, k, v = make_qkv(2, 1, 100, 100, 32, torch.bfloat16, seed=16)
    o, lse = flash_attention_forward_triton(q, k, v, causal=causal)
    judge(o, lse, q, k, v, causal)


def test_forward_scale_argument():
    q, k, v = make_qkv(1, 2, 40, 40, 16, torch.float32, seed=3)
    o, lse = flash_attention_forward_triton(q, k, v, causal=True, scale=0.3)
    judge(o, lse, q, k, v, True, 0.3)


def test_forward_agrees_with_pytorch_flash():
    q, k, v = make_qkv(1, 2, 100, 100, 64, torch.float32, seed=8)
    o, lse = flash_attention_forward_triton(q, k, v, causal=True)
    o_pt, lse_pt = attention.flash_attention_forward(q, k, v, causal=True)
    assert_close(o, o_pt)
    assert_close(lse, lse_pt, what="lse")


def test_forward_non_contiguous_inputs():
    q, k, v = make_qkv(2, 2, 50, 50, 32, torch.float32, seed=5, bnhd=True)  # (B, N, H, D) views
    assert not q.is_contiguous()
    for causal in (False, True):
        o, lse = flash_attention_forward_triton(q, k, v, causal=causal)
        judge(o, lse, q, k, v, causal)
        o_c, lse_c = flash_attention_forward_triton(*(x.contiguous() for x in (q, k, v)), causal=causal)
        assert_close(o, o_c)


def test_forward_large_scores_do_not_overflow():
    q, k, v = make_qkv(1, 1, 50, 50, 16, torch.float32, seed=2)
    o, lse = flash_attention_forward_triton(q * 30, k * 30, v)
    assert torch.isfinite(o).all() and torch.isfinite(lse).all()
    judge(o, lse, q * 30, k * 30, v)


@pytest.mark.parametrize("causal, n_q, n_kv", [
    (c, n, n) for c in (False, True) for n in (1, 17, 64, 100, 130)] + [(False, 20, 130)])
def test_kernel_visits_the_tiles_visited_tiles_counts(causal, n_q, n_kv):
    q, k, v = make_qkv(1, 2, n_q, n_kv, 16, torch.float32, seed=n_q)
    o, lse, tiles = flash_attention_forward_triton(q, k, v, causal=causal, return_tiles=True)
    block_m, block_n, _, _ = block_sizes(16, torch.float32)
    assert tiles.shape == (1, 2, -(-n_q // block_m))
    expected = attention.visited_tiles(n_q, n_kv, block_m, block_n, causal)
    assert tiles.sum(-1).tolist() == [[expected, expected]]
    # Query block i stops after the key tile holding its last row: later tiles are never loaded.
    for i, t in enumerate(tiles[0, 0].tolist()):
        last_key = min((i + 1) * block_m, n_q) - 1 if causal else n_kv - 1
        assert t == last_key // block_n + 1
    judge(o, lse, q, k, v, causal)


def test_causal_skips_about_half_the_tiles():
    block_m, block_n, _, _ = block_sizes(16, torch.float32)
    n = 4 * block_m
    full = attention.visited_tiles(n, n, block_m, block_n, False)
    causal = attention.visited_tiles(n, n, block_m, block_n, True)
    assert causal < 0.7 * full


@pytest.mark.parametrize("D", [8, 48, 96, 256])
def test_unsupported_head_dim(D):
    q, k, v = make_qkv(1, 1, 4, 4, D)
    with pytest.raises(ValueError, match="head dim D=%d.*16, 32, 64, 128" % D):
        flash_attention_forward_triton(q, k, v)
    assert D not in HEAD_DIMS


def test_unsupported_dtype():
    q, k, v = make_qkv(1, 1, 4, 4, 16, torch.float64)
    assert torch.float64 not in DTYPES
    with pytest.raises(ValueError, match="float64.*float32, float16, bfloat16"):
        flash_attention_forward_triton(q, k, v)


def bad_inputs():
    q, k, v = make_qkv(1, 2, 8, 8, 16)
    return [
        ("not 4-D", (q[0], k[0], v[0]), {}, "4-D"),
        ("mixed dtypes", (q, k.half(), v), {}, "one dtype"),
        ("mixed devices", (q, k.to("meta"), v), {}, "one device"),
        ("k and v lengths differ", (q, k, v[:, :, :5]), {}, "k and v"),
        ("heads differ", (q, k[:, :1], v[:, :1]), {}, "agree on B, H and D"),
        ("causal with N_q != N_kv", (q[:, :, :5], k, v), {"causal": True}, "N_q == N_kv"),
        ("empty", (q[:, :, :0], k, v), {}, "empty"),
    ]


@pytest.mark.parametrize("label, args, kwargs, words", bad_inputs(),
                         ids=[c[0] for c in bad_inputs()])
def test_bad_inputs_raise_value_error(label, args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        flash_attention_forward_triton(*args, **kwargs)


def test_wrong_device_for_the_mode():
    q, k, v = make_qkv(1, 1, 4, 4, 16)
    q, k, v = (x.to("meta") for x in (q, k, v))
    with pytest.raises(ValueError, match="CPU tensors" if device.INTERPRET else "CUDA tensors"):
        flash_attention_forward_triton(q, k, v)
