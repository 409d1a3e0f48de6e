"""labkit.softmax against torch.softmax / torch.logsumexp (float64 oracles)."""
import math

import pytest
import torch

from labkit import softmax as S
from labkit.check import assert_close

STABLE = [S.safe_softmax, S.online_softmax]
ALL = [S.naive_softmax, *STABLE]
SHAPES = [(1, 1), (1, 7), (3, 1), (4, 1000), (17, 781), (2, 3, 129)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_softmax_matches_torch(fn, shape, dtype):
    x = randn(*shape, dtype=dtype, seed=sum(shape))
    out = fn(x)
    assert out.dtype == dtype and out.shape == x.shape
    expected = torch.softmax(x.double(), dim=-1)
    if dtype in (torch.float16, torch.bfloat16):
        assert_close(out, expected, baseline=torch.softmax(x, dim=-1))
    else:
        assert_close(out, expected, dtype=dtype)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dim", [0, 1, 2, -2])
def test_softmax_any_dim(fn, dim):
    x = randn(3, 5, 7, seed=dim + 10)
    assert_close(fn(x, dim=dim), torch.softmax(x.double(), dim=dim), dtype=torch.float32)


@pytest.mark.parametrize("fn", STABLE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_stable_variants_survive_large_inputs(fn, dtype):
    x = randn(4, 50, seed=3, scale=1000.0).to(dtype)
    out = fn(x)
    assert torch.isfinite(out).all()
    assert_close(out, torch.softmax(x.double(), -1), baseline=torch.softmax(x, -1)) \
        if dtype == torch.float16 else assert_close(out, torch.softmax(x.double(), -1), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_naive_softmax_overflows_where_the_maths_says(dtype):
    # exp(89) overflows float32 (and so float16 computed in float32): inf / inf = NaN.
    x = torch.tensor([[88.0, 0.0], [89.0, 0.0]], dtype=dtype)
    out = S.naive_softmax(x)
    assert torch.isfinite(out[0]).all()
    assert torch.isnan(out[1, 0])
    # and underflow: every exp(x) is 0, so 0 / 0
    assert torch.isnan(S.naive_softmax(torch.tensor([[-200.0, -201.0]], dtype=dtype))).all()
    assert torch.isfinite(S.safe_softmax(x)).all()


@pytest.mark.parametrize("block_size", [1, 2, 7, 64, 128, 999, 1000, 5000])
def test_online_softmax_same_answer_for_any_block_size(block_size):
    x = randn(5, 1000, seed=4, scale=10.0)
    assert_close(S.online_softmax(x, block_size=block_size), torch.softmax(x.double(), -1),
                 dtype=torch.float32)


@pytest.mark.parametrize("fn", STABLE + [S.naive_softmax], ids=lambda f: f.__name__)
def test_rows_of_minus_infinity_match_torch(fn):
    x = randn(4, 6, seed=5)
    x[1] = -math.inf
    x[2, :3] = -math.inf
    out, expected = fn(x), torch.softmax(x, -1)
    assert torch.isnan(out[1]).all() and torch.isnan(expected[1]).all()
    assert_close(out, expected, dtype=torch.float32)


@pytest.mark.parametrize("fn", ALL + [S.logsumexp, S.log_softmax], ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), ()], ids=str)
def test_empty_and_scalar_inputs_match_torch(fn, shape):
    x = randn(*shape, seed=6) if shape else torch.tensor(0.3)
    expected = {S.logsumexp: torch.logsumexp, S.log_softmax: torch.log_softmax}.get(fn, torch.softmax)
    out = fn(x)
    ref = expected(x, -1)
    assert out.shape == ref.shape
    assert_close(out, ref, dtype=torch.float32)


@pytest.mark.parametrize("fn", ALL + [S.logsumexp, S.log_softmax], ids=lambda f: f.__name__)
def test_non_contiguous_input(fn):
    x = randn(40, 30, seed=7).t()  # (30, 40), stride (1, 30)
    assert not x.is_contiguous()
    ref = {S.logsumexp: torch.logsumexp, S.log_softmax: torch.log_softmax}.get(fn, torch.softmax)
    assert_close(fn(x), ref(x.double(), -1), dtype=torch.float32)


@pytest.mark.parametrize("fn", ALL + [S.logsumexp, S.log_softmax], ids=lambda f: f.__name__)
def test_bad_input_is_named(fn):
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        fn(torch.zeros(2, 3), dim=2)
    with pytest.raises(ValueError, match="torch.Tensor"):
        fn([[1.0, 2.0]])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logsumexp_matches_torch(dtype):
    x = randn(6, 333, seed=8, scale=30.0).to(dtype)
    x[0] = -math.inf
    x[1, 5] = math.inf
    out = S.logsumexp(x)
    assert out.dtype == dtype
    expected = torch.logsumexp(x.double(), -1)
    assert out[0] == -math.inf and out[1] == math.inf
    if dtype in (torch.float16, torch.bfloat16):
        assert_close(out, expected, baseline=torch.logsumexp(x.float(), -1).to(dtype))
    else:
        assert_close(out, expected, dtype=dtype)


def test_logsumexp_survives_overflow_and_underflow():
    x = torch.tensor([[1000.0, 1000.0], [-1000.0, -1000.0]])
    assert_close(S.logsumexp(x), torch.tensor([1000 + math.log(2), -1000 + math.log(2)]))


def test_log_softmax_is_exact_where_softmax_underflows():
    x = torch.tensor([[0.0, -200.0]])
    assert S.safe_softmax(x)[0, 1] == 0.0  # float32 underflow
    assert_close(S.log_softmax(x), torch.log_softmax(x.double(), -1), dtype=torch.float32)


@pytest.mark.parametrize("split", [1, 100, 299, 300])
def test_merge_states_equals_state_of_whole_row(split):
    x = randn(3, 300, seed=9, scale=20.0)
    whole = S.online_state(x)
    merged = S.merge_states(S.online_state(x[:, :split]), S.online_state(x[:, split:]))
    assert_close(merged.m, whole.m)
    assert_close(merged.d, whole.d)
    assert_close(merged.m + merged.d.log(), torch.logsumexp(x.double(), -1), dtype=torch.float32)


def test_merge_states_is_associative_and_handles_empty_blocks():
    x = randn(2, 90, seed=10, scale=5.0)
    a, b, c = (S.online_state(x[:, i:i + 30]) for i in (0, 30, 60))
    left, right = S.merge_states(S.merge_states(a, b), c), S.merge_states(a, S.merge_states(b, c))
    assert_close(left.m, right.m)
    assert_close(left.d, right.d)
    empty = S.OnlineState(torch.full((2,), -math.inf), torch.zeros(2))  # state of no elements
    same = S.merge_states(empty, a)
    assert_close(same.m, a.m)
    assert_close(same.d, a.d)
    none = S.merge_states(empty, empty)
    assert (none.m == -math.inf).all() and (none.d == 0).all()


def test_online_softmax_rejects_bad_block_size():
    with pytest.raises(ValueError, match="block_size"):
        S.online_softmax(torch.zeros(2, 3), block_size=0)
