"""Tests for labkit.kernels.softmax: the fused and online Triton softmax kernels.

On CPU they run through Triton's interpreter, which executes each program in Python, so
row counts stay small. The float64 oracle is labkit.softmax.safe_softmax.
"""
import pytest
import torch

import labkit  # noqa: F401  (first: TRITON_INTERPRET on CPU)
from labkit import device
from labkit.check import assert_close
from labkit.kernels import online_softmax_triton, softmax_triton
from labkit.kernels.softmax import MAX_FUSED_WIDTH
from labkit.softmax import safe_softmax

DEV = device.DEVICE
# bfloat16 is checked on the GPU; on CPU the wrappers refuse it (test_bfloat16_refused_on_cpu).
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if device.HAS_CUDA else [])


def online_256(x):
    """The online kernel with blocks of 256 columns: widths 781, 1000, 1823 take 4-8 blocks."""
    return online_softmax_triton(x, block_size=256)


KERNELS = {"fused": softmax_triton, "online": online_256}


def _randn(*shape, seed, dtype=torch.float32, scale=3.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype).to(DEV)


def _assert_softmax(out, x):
    """out must be softmax(x) over the last dim, judged against float64 (and plain torch for fp16/bf16)."""
    assert out.dtype == x.dtype and out.shape == x.shape and out.device == x.device
    ref64 = safe_softmax(x.double())
    if x.dtype == torch.float32:
        assert_close(out, ref64)
    else:
        assert_close(out, ref64, baseline=torch.softmax(x, dim=-1))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("width", [1, 7, 64, 781, 1000, 1823])
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_reference(kernel, width, dtype):
    rows = {1: 17, 7: 5, 64: 3}.get(width, 3)
    x = _randn(rows, width, seed=width, dtype=dtype)
    _assert_softmax(KERNELS[kernel](x), x)


@pytest.mark.parametrize("kernel", KERNELS)
def test_large_values_do_not_overflow(kernel):
    # exp(1000) overflows float32: the kernels must subtract the row max.
    x = _randn(3, 300, seed=1, scale=300.0, shift=1000.0)
    _assert_softmax(KERNELS[kernel](x), x)


@pytest.mark.parametrize("kernel", KERNELS)
def test_many_short_rows(kernel):
    x = _randn(41, 13, seed=2)
    _assert_softmax(KERNELS[kernel](x), x)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", ["transposed", "strided columns", "row slice", "expanded"])
def test_non_contiguous_input(kernel, layout):
    base = _randn(40, 300, seed=3)
    x = {"transposed": base[:, :5].t(),  # (5, 40), column stride 300
         "strided columns": base[:4, ::2],  # (4, 150), column stride 2
         "row slice": base[1:9:3, 20:250],  # (3, 230), unit column stride, row stride 300
         "expanded": base[:1, :90].expand(4, 90)}[layout]  # row stride 0
    assert not x.is_contiguous()
    before = x.clone()
    _assert_softmax(KERNELS[kernel](x), x)
    assert torch.equal(x, before)  # the input is never written


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(2, 3, 100), (2, 1, 2, 33), (50,), ()])
def test_any_leading_dims(kernel, shape):
    x = _randn(*shape, seed=4)
    _assert_softmax(KERNELS[kernel](x), x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("kernel", KERNELS)
def test_all_neg_inf_row_is_nan_like_torch(kernel, dtype):
    x = _randn(4, 600, seed=5, dtype=dtype)
    x[1] = float("-inf")  # the whole row: NaN, as torch.softmax gives
    x[2, :520] = float("-inf")  # the first blocks all -inf, then finite values: a normal answer
    x[3, ::2] = float("-inf")
    out = KERNELS[kernel](x)
    expected = torch.softmax(x.double(), dim=-1)
    assert torch.isnan(out[1]).all() and not torch.isnan(out[[0, 2, 3]]).any()
    assert_close(out, expected, baseline=torch.softmax(x, dim=-1) if dtype != torch.float32 else None)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (2, 0, 4), (0,)])
def test_empty_input_gives_empty_output(kernel, shape):
    x = torch.empty(shape, device=DEV)
    out = KERNELS[kernel](x)
    assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize("block_size", [16, 64, 128, 512, 2048])
def test_online_same_answer_for_any_block_size(block_size):
    x = _randn(2, 700, seed=6)
    out = online_softmax_triton(x, block_size=block_size)
    _assert_softmax(out, x)
    assert_close(out, online_softmax_triton(x))  # the default block: one block of 1024


def test_online_block_of_one_column():
    x = _randn(2, 9, seed=6)
    _assert_softmax(online_softmax_triton(x, block_size=1), x)


def test_online_takes_rows_wider_than_the_fused_limit():
    x = _randn(1, MAX_FUSED_WIDTH + 100, seed=7)
    _assert_softmax(online_softmax_triton(x), x)


@pytest.mark.parametrize("block_size", [0, -8, 48, 2.0, MAX_FUSED_WIDTH * 2])
def test_online_bad_block_size(block_size):
    with pytest.raises(ValueError, match="block_size must be a power of two"):
        online_softmax_triton(_randn(2, 8, seed=8), block_size=block_size)


def test_fused_rejects_too_wide_rows():
    x = torch.zeros(2, MAX_FUSED_WIDTH + 1, device=DEV)
    with pytest.raises(ValueError, match="online_softmax_triton"):
        softmax_triton(x)


@pytest.mark.parametrize("kernel", [softmax_triton, online_softmax_triton])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool])
def test_integer_input_is_refused(kernel, dtype):
    with pytest.raises(ValueError, match="float32, float16 and bfloat16"):
        kernel(torch.ones(2, 8, dtype=dtype, device=DEV))


@pytest.mark.parametrize("kernel", [softmax_triton, online_softmax_triton])
def test_float64_is_refused(kernel):
    with pytest.raises(ValueError, match="safe_softmax"):
        kernel(torch.ones(2, 8, dtype=torch.float64, device=DEV))


@pytest.mark.parametrize("kernel", [softmax_triton, online_softmax_triton])
def test_wrong_device_is_refused(kernel):
    wrong = ["meta"] + (["cpu"] if not device.INTERPRET else [])
    for dev in wrong:
        with pytest.raises(ValueError, match="must be a (CPU|CUDA) tensor"):
            kernel(torch.ones(2, 8, device=dev))


@pytest.mark.parametrize("kernel", [softmax_triton, online_softmax_triton])
def test_not_a_tensor_is_refused(kernel):
    with pytest.raises(ValueError, match="torch.Tensor"):
        kernel([[1.0, 2.0]])


@pytest.mark.parametrize("kernel", [softmax_triton, online_softmax_triton])
def test_bfloat16_only_on_gpu(kernel):
    x = torch.ones(2, 8, dtype=torch.bfloat16, device=DEV)
    if device.INTERPRET:
        with pytest.raises(ValueError, match="bfloat16 runs on the GPU only"):
            kernel(x)
    else:
        _assert_softmax(kernel(x), x)


def test_input_requiring_grad_is_accepted():
    x = _randn(2, 10, seed=9).requires_grad_()
    with pytest.warns(UserWarning, match="no gradient flows.*safe_softmax"):
        out = softmax_triton(x)
    assert not out.requires_grad
    _assert_softmax(out, x.detach())
