"""labkit.kernels.decoding: the split-K and combine kernels, contiguous and paged, against torch's SDPA.

In Triton's interpreter on CPU (every access bounds-checked by labkit.kernels.guard), compiled on a GPU."""
from __future__ import annotations

import pytest
import torch

from labkit import decoding as dc
from labkit import device
from labkit.check.tolerance import assert_close
from labkit.kernels import decoding as kd
from test_decoding import _inputs, _paged, sdpa_oracle

pytestmark = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)

# (B, H, H_kv, N, D): N = 1; N prime and no multiple of the interpreter's 16-position tile; GQA 4:1 and
# multi-query; a long sequence beside length-1 ones (whole chunks past their length)
SHAPES = [(1, 2, 2, 1, 16), (3, 8, 2, 37, 16), (2, 4, 1, 50, 32)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _on_device(*xs):
    return [x.to(device.DEVICE) for x in xs]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("splits", [None, 1, 3], ids=lambda s: f"splits={s}")
def test_flash_decode_triton_is_attention_of_each_prefix(shape, dtype, splits):
    q, k, v, lengths = _inputs(*shape, dtype=dtype, seed=sum(shape))
    o, lse = kd.flash_decode_triton(*_on_device(q, k, v, lengths), num_splits=splits)
    want_o, want_lse = sdpa_oracle(q, k, v, lengths)
    assert o.dtype == dtype and lse.dtype == torch.float32
    assert_close(o.cpu(), want_o, dtype=dtype, what="o")
    assert_close(lse.cpu().double(), want_lse, dtype=torch.float32, what="lse")


@pytest.mark.parametrize("page_size", [16, 3, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_paged_attention_triton_reads_through_out_of_order_pages(page_size, dtype):
    q, k, v, lengths = _inputs(3, 4, 2, 29, 16, dtype=dtype, seed=page_size)
    cache = _paged(k, v, lengths, page_size)
    o, lse = kd.paged_attention_triton(*_on_device(q, cache.k_pages, cache.v_pages, cache.block_table,
                                                   cache.lengths), num_splits=2)
    want_o, want_lse = sdpa_oracle(q, k, v, lengths)
    assert_close(o.cpu(), want_o, dtype=dtype, what="o")
    assert_close(lse.cpu().double(), want_lse, dtype=torch.float32, what="lse")


def test_kernels_agree_with_the_pytorch_partials_at_a_given_scale():
    q, k, v, lengths = _inputs(2, 4, 4, 40, 16, scale=6.0, seed=3)
    o, lse = kd.flash_decode_triton(*_on_device(q, k, v, lengths), scale=0.4, num_splits=4)
    want_o, want_lse = dc.flash_decode(q, k, v, lengths, scale=0.4, num_splits=4)
    assert torch.isfinite(o).all()
    assert_close(o.cpu(), want_o, dtype=torch.float32)
    assert_close(lse.cpu(), want_lse, dtype=torch.float32)


@pytest.mark.parametrize("call, match", [
    (lambda q, k, v: kd.flash_decode_triton(q[..., :8], k[..., :8], v[..., :8]), "head dim D = 8 is not supported"),
    (lambda q, k, v: kd.flash_decode_triton(q, k, v, num_splits=0), "num_splits must be a positive"),
    (lambda q, k, v: kd.flash_decode_triton(q.double(), k.double(), v.double()), "dtype torch.float64"),
    (lambda q, k, v: kd.flash_decode_triton(q[:, :3], k, v), "multiple of the KV heads"),
])
def test_bad_input_is_refused_before_any_launch(call, match):
    q, k, v, _ = _inputs(2, 4, 2, 7, 16)
    with pytest.raises(ValueError, match=match):
        call(*_on_device(q, k, v))


def test_the_configs_compile_check_builds_for_decoding():
    from labkit.kernels import compile_check, launch
    jobs = compile_check.jobs((75, 90), ("fp16",), (16, 128), (False,), ("decode", "decode_paged", "decode_combine"))
    assert {j["kernel"] for j in jobs} == {"decode", "decode_paged", "decode_combine"}
    assert all(j["causal"] is None for j in jobs)  # a single query has no causal mask
    assert launch.decode_config(None, torch.float32, 16).block_n == 16  # the interpreter's tiles
    assert launch.decode_splits(None, 8, 3) == 3 and launch.decode_splits(None, 8, 10) == 4
    h100 = launch.Arch(90, launch.ARCHS[90].shared_limit, "H100", sms=132)
    assert launch.decode_splits(h100, 8, 1000) == 66  # four programs per SM: 4 * 132 / (B * H = 8)
    assert launch.decode_splits(h100, 1024, 1000) == 1 and launch.decode_splits(h100, 8, 10) == 10
    assert launch.decode_splits(launch.ARCHS[90], 8, 1000) == 4  # a table entry: the SM count is not known
