"""Property-based fuzzing of labkit.softmax and the Triton softmax kernels (in the interpreter on CPU).

Every call returns torch's answer under labkit.check's tolerances, or raises ValueError/TypeError
naming the bad argument; inputs are never modified (tests/fuzz.py). Regression cases that
Hypothesis found are kept as @example / parametrized tests below.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from labkit import kernels
from labkit import softmax as S
from labkit.check import assert_close
from fuzz import FLOATS, NOT_INT, fuzz_settings, outcome, tensors

DIMS = st.one_of(st.integers(-4, 3), st.sampled_from([None, 1.0, True, "0"]))
SOFTMAXES = {"naive_softmax": S.naive_softmax, "safe_softmax": S.safe_softmax,
             "online_softmax": S.online_softmax}


def bad_x_dim(x, dim):
    """The argument the contract rejects first (x: a floating tensor; dim: an int in range)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return "x"
    if isinstance(dim, bool) or not isinstance(dim, int) or not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return "dim"
    return None


def compute_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def naive_out_of_range(x, dim):
    """Rows (keepdim mask) where naive exp(x) overflows or every exp underflows: its documented failure."""
    xc = x.to(compute_dtype(x.dtype))
    e = torch.exp(xc)
    tiny = torch.finfo(xc.dtype).tiny
    plain = ~(torch.isnan(xc).any(dim, keepdim=True) | torch.isposinf(xc).any(dim, keepdim=True))
    some_finite = torch.isfinite(xc).any(dim, keepdim=True)
    bad = torch.isinf(e.sum(dim, keepdim=True)) | (e.amax(dim, keepdim=True) < tiny)
    return plain & some_finite & bad


@pytest.mark.parametrize("name", SOFTMAXES)
@given(x=tensors(), dim=DIMS)
@fuzz_settings(60)
@example(x=torch.tensor([math.inf, 1.0, 2.0]), dim=-1)  # naive gave [nan, 0, 0]; torch: all NaN
@example(x=torch.tensor([1.0, 2.0]), dim=None)  # was "'<=' not supported between int and NoneType"
@example(x=torch.tensor([1.0, 2.0]), dim=1.0)
def test_softmaxes(name, x, dim):
    fn = SOFTMAXES[name]
    bad = bad_x_dim(x, dim)
    out = outcome(lambda: fn(x, dim), bad, x)
    if bad:
        return
    expected = torch.softmax(x.double(), dim).to(x.dtype)
    assert out.dtype == x.dtype and out.shape == x.shape
    if name == "naive_softmax" and x.numel():
        rows = naive_out_of_range(x, dim if x.dim() else None) if x.dim() else \
            naive_out_of_range(x.reshape(1), 0).reshape(())
        rows = rows.expand_as(x)
        # overflow/underflow of exp is naive's documented failure: those rows hold NaN or 0
        assert bool((torch.isnan(out[rows]) | (out[rows] == 0)).all())
        out, expected = out[~rows], expected[~rows]
    assert_close(out, expected, dtype=x.dtype)


@given(x=tensors(), dim=DIMS)
@fuzz_settings(60)
@example(x=torch.tensor([math.inf, 1.0, 2.0]), dim=-1)  # was [nan, -inf, -inf]; torch: all NaN
@example(x=torch.tensor([1e4, 1e4], dtype=torch.float32), dim=-1)  # x - lse cancelled: 5e-4 off
def test_log_softmax(x, dim):
    bad = bad_x_dim(x, dim)
    out = outcome(lambda: S.log_softmax(x, dim), bad, x)
    if not bad:
        assert out.dtype == x.dtype
        assert_close(out, torch.log_softmax(x.double(), dim).to(x.dtype), dtype=x.dtype)


@given(x=tensors(), dim=DIMS)
@fuzz_settings(60)
def test_logsumexp(x, dim):
    bad = bad_x_dim(x, dim)
    out = outcome(lambda: S.logsumexp(x, dim), bad, x)
    if not bad:
        assert out.dtype == x.dtype
        assert_close(out, torch.logsumexp(x.double(), dim).to(x.dtype), dtype=x.dtype)


@given(e=tensors(specials=False, bound=1e3), dim=DIMS)
@fuzz_settings(40)
def test_normalize(e, dim):
    if e.is_floating_point():
        e = e.abs()
    bad = bad_x_dim(e, dim)
    out = outcome(lambda: S.normalize(e, dim), bad, e)
    if not bad:
        ed = e.double()
        expected = (ed / ed.sum(dim, keepdim=True)).to(e.dtype) if e.dim() else (ed / ed).to(e.dtype)
        assert_close(out, expected, dtype=e.dtype)


@given(dtype=st.sampled_from(FLOATS + (torch.int64, torch.bool, None, "float32", float)))
@fuzz_settings(20)
def test_overflow_threshold(dtype):
    ok = isinstance(dtype, torch.dtype) and dtype.is_floating_point
    out = outcome(lambda: S.overflow_threshold(dtype), None if ok else "dtype")
    if ok:
        assert out == pytest.approx(math.log(torch.finfo(dtype).max))
        assert math.isfinite(math.exp(out)) or dtype == torch.float64


def state_oracle(x, dim):
    xd = x.double()
    if xd.dim() and xd.shape[dim] == 0:
        m = torch.full(xd.sum(dim).shape, -math.inf, dtype=torch.float64)
        return m, torch.zeros_like(m)
    m = xd.amax(dim)
    shift = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    return m, torch.exp(xd - shift.unsqueeze(dim) if xd.dim() else xd - shift).sum(dim)


@given(x=tensors(), dim=DIMS)
@fuzz_settings(40)
def test_online_state(x, dim):
    bad = bad_x_dim(x, dim)
    out = outcome(lambda: S.online_state(x, dim), bad, x)
    if not bad:
        m, d = state_oracle(x, dim)
        ct = compute_dtype(x.dtype)
        assert out.m.dtype == out.d.dtype == ct
        assert_close(out.m, m.to(ct), dtype=ct, what="m")
        assert_close(out.d, d.to(ct), dtype=ct, what="d")


@given(x=tensors(dtypes=FLOATS, max_dims=2), cut=st.integers(0, 5), data=st.data())
@fuzz_settings(40)
def test_merge_states_is_the_state_of_the_whole_row(x, cut, data):
    if x.dim() == 0:
        x = x.reshape(1)
    n = x.shape[-1]
    cut = min(cut, n)
    a, b = S.online_state(x[..., :cut]), S.online_state(x[..., cut:])
    out = outcome(lambda: S.merge_states(a, b), None, a.m, a.d, b.m, b.d)
    m, d = state_oracle(x, -1)
    ct = compute_dtype(x.dtype)
    assert_close(out.m, m.to(ct), dtype=ct, what="m")
    assert_close(out.d, d.to(ct), dtype=ct, what="d")


GOOD_STATE = S.OnlineState(torch.zeros(2), torch.ones(2))
BAD_STATES = [
    ("a", (torch.zeros(2), torch.ones(2)), GOOD_STATE),  # a plain tuple: was AttributeError
    ("b", GOOD_STATE, (torch.zeros(2), torch.ones(2))),
    ("b", GOOD_STATE, S.OnlineState(torch.zeros(3), torch.ones(3))),  # was a torch RuntimeError
    ("a", S.OnlineState(torch.zeros(2), torch.ones(3)), GOOD_STATE),
    ("a", S.OnlineState(1.0, 2.0), GOOD_STATE),
    ("b", GOOD_STATE, S.OnlineState(torch.zeros(2, dtype=torch.long), torch.ones(2))),
    ("a", None, GOOD_STATE),
]


@pytest.mark.parametrize("bad, a, b", BAD_STATES)
def test_merge_states_rejects(bad, a, b):
    outcome(lambda: S.merge_states(a, b), bad)


@given(x=tensors(max_dims=2), dim=st.integers(-2, 1),
       block=st.one_of(st.integers(-1, 9), st.sampled_from([128] + list(NOT_INT))))
@fuzz_settings(60)
@example(x=torch.ones(3), dim=-1, block=True)  # a bool block size was accepted
def test_online_softmax_block_size(x, dim, block):
    bad = tuple(b for b in (bad_x_dim(x, dim),) if b)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        bad += ("block_size",)
    out = outcome(lambda: S.online_softmax(x, dim, block), bad or None, x)
    if not bad:
        assert_close(out, torch.softmax(x.double(), dim).to(x.dtype), dtype=x.dtype)


# ---------------------------------------------------------------- Triton kernels (interpreter)
TRITON = {"softmax_triton": kernels.softmax_triton,
          "online_softmax_triton": kernels.online_softmax_triton}


@pytest.mark.parametrize("name", TRITON)
@given(x=tensors(dtypes=(torch.float32, torch.float16, torch.float64, torch.bfloat16,
                         torch.int32, torch.bool, torch.complex64), max_dims=2, max_side=20))
@fuzz_settings(15)
def test_triton_softmax(name, x):
    ok = x.dtype in (torch.float32, torch.float16)  # bfloat16 is GPU-only, float64 unsupported
    out = outcome(lambda: TRITON[name](x), None if ok else "x", x)
    if ok:
        assert out.dtype == x.dtype and out.shape == x.shape
        assert_close(out, torch.softmax(x.double(), -1).to(x.dtype), dtype=x.dtype)


@pytest.mark.parametrize("block", [0, 3, True, 2.0, "4", -8])
def test_online_softmax_triton_rejects_block_size(block):
    outcome(lambda: kernels.online_softmax_triton(torch.ones(2, 5), block), "block_size")


@pytest.mark.parametrize("fn, alternative", [
    (kernels.softmax_triton, "safe_softmax"), (kernels.online_softmax_triton, "online_softmax")])
def test_triton_softmax_warns_that_no_gradient_flows(fn, alternative):
    x = torch.randn(2, 5, requires_grad=True)
    with pytest.warns(UserWarning, match=f"no gradient flows.*{alternative}"):
        out = fn(x)
    assert out.grad_fn is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            fn(x)  # autograd off: nothing to warn about
        fn(x.detach())
