"""Property-based fuzzing of labkit.attention, labkit.attention_backward and the Triton attention
kernels (in the interpreter on CPU: N <= 20, D = 16, few examples).

Every call returns the answer of float64 torch.nn.functional.scaled_dot_product_attention (and
its autograd gradients) under labkit.check's tolerances, or raises ValueError/TypeError naming
the bad argument; inputs are never modified (tests/fuzz.py).
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from labkit import attention as A
from labkit import attention_backward as AB
from labkit import kernels
from labkit.check import TOLERANCES, assert_close
from labkit.contracts import check_attention_inputs
from fuzz import FLOATS, NOT_INT, close_where_finite, fuzz_settings, outcome

LOWP = (torch.float16, torch.bfloat16)
CAUSALS = st.sampled_from([False, True, False, True, 1, None])
SCALES = st.sampled_from([None, None, 0.5, 0.0, -1.0, 3, math.nan, math.inf, True, "0.5"])
BLOCKS = st.one_of(st.integers(1, 24), st.sampled_from([0, -1] + list(NOT_INT)))


@st.composite
def qkv(draw, dtypes=FLOATS + (torch.int64, torch.bool, torch.complex64), head_dims=(1, 3, 8, 16),
        max_n: int = 20, allow_broken: bool = True):
    """(q, k, v, broken): attention inputs, sometimes made invalid on purpose; ``broken`` names
    the argument the contract rejects (or None)."""
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    n_q, n_kv = draw(st.integers(1, max_n)), draw(st.integers(1, max_n))
    if draw(st.booleans()):
        n_kv = n_q
    D = draw(st.sampled_from(head_dims))
    dtype = draw(st.sampled_from(dtypes))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    values = draw(st.sampled_from(["normal", "normal", "huge", "tiny", "equal", "special"]))
    amp = {"huge": 30.0, "tiny": 1e-20}.get(values, 1.0)
    t = [torch.randn(B, H, n, D, generator=g, dtype=torch.float64) * amp for n in (n_q, n_kv, n_kv)]
    if values == "equal":
        t[1] = torch.ones_like(t[1])  # every score in a row equal
    if values == "special":
        t[draw(st.integers(0, 2))].view(-1)[0] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    t = [x.to(dtype) if dtype.is_floating_point or dtype.is_complex else x.round().to(dtype) for x in t]
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced"]))
    if layout == "transposed":
        t = [x.transpose(-1, -2).contiguous().transpose(-1, -2) for x in t]
    elif layout == "sliced":
        t = [torch.cat([x, x], dim=-1)[..., ::2] if x.dtype != torch.bool else x for x in t]
    broken = None if dtype.is_floating_point else "q"
    if allow_broken and broken is None:
        how = draw(st.sampled_from(["none"] * 6 + ["kv_shape", "rank", "list", "dtype", "empty"]))
        if how == "kv_shape":
            t[2] = t[2][..., :-1, :] if n_kv > 1 else torch.cat([t[2], t[2]], 2)
            broken = "v"
        elif how == "rank":
            t[0], broken = t[0][0], "q"
        elif how == "list":
            t[1], broken = t[1].tolist(), "k"
        elif how == "dtype":
            t[2], broken = t[2].to(torch.float64 if dtype != torch.float64 else torch.float32), "v"
        elif how == "empty":
            t[0], broken = t[0][:, :, :0], "q"
    return t[0], t[1], t[2], broken, values


def bad_common(q, k, broken, causal, scale):
    if broken:
        return (broken, "k", "q")  # a mismatch may be reported from either side
    if not isinstance(causal, bool):
        return ("causal",)
    if causal and q.shape[2] != k.shape[2]:
        return ("causal", "N_q")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        return ("scale",)
    return None


def bad_block(*blocks):
    return tuple(n for n, b in blocks if isinstance(b, bool) or not isinstance(b, int) or b < 1)


def reference(q, k, v, causal, scale, do=None):
    """float64 attention by its definition (and autograd gradients for ``do``) from the same
    (possibly rounded) inputs. Not F.scaled_dot_product_attention: its backward gives NaN for
    scale=0.0 (found by this fuzzing)."""
    q64, k64, v64 = (x.detach().double().requires_grad_(do is not None) for x in (q, k, v))
    s = (q64 @ k64.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    o = torch.softmax(s, -1) @ v64
    if do is None:
        return o.detach()
    return o.detach(), torch.autograd.grad(o, (q64, k64, v64), do.double())


def plain_lowp(q, k, v, causal, scale):
    """The same computation done plainly in the low dtype: the baseline for fp16/bf16 answers."""
    s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    return torch.softmax(s.float(), -1).to(q.dtype) @ v


def check_output(o, q, k, v, causal, scale, values, what="o"):
    expected = reference(q, k, v, causal, scale).to(q.dtype)
    if values == "special":
        close_where_finite(o, expected, q.dtype, what)
    elif q.dtype in LOWP:
        assert_close(o, expected, dtype=q.dtype, baseline=plain_lowp(q, k, v, causal, scale), what=what)
    else:
        assert_close(o, expected, dtype=q.dtype, what=what)


# ---------------------------------------------------------------- PyTorch forward
@given(inp=qkv(), causal=CAUSALS, scale=SCALES)
@fuzz_settings(40)
@example(inp=(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4), None, "normal"),
         causal=None, scale=None)  # causal=None was silently non-causal
def test_naive_attention(inp, causal, scale):
    q, k, v, broken, values = inp
    bad = bad_common(q, k, broken, causal, scale)
    o = outcome(lambda: A.naive_attention(q, k, v, causal, scale), bad, q, k, v)
    if o is not None:
        assert o.dtype == q.dtype and o.shape == q.shape
        if q.dtype in LOWP:  # computed in the input dtype by contract: it is its own baseline
            close_where_finite(o, plain_lowp(q, k, v, causal, scale), q.dtype)
        else:
            check_output(o, q, k, v, causal, scale, values)


@given(inp=qkv(), causal=CAUSALS, scale=SCALES, block_q=BLOCKS, block_k=BLOCKS)
@fuzz_settings(40)
def test_flash_attention_forward(inp, causal, scale, block_q, block_k):
    q, k, v, broken, values = inp
    bad = bad_common(q, k, broken, causal, scale) or bad_block(("block_q", block_q), ("block_k", block_k)) or None
    out = outcome(lambda: A.flash_attention_forward(q, k, v, causal, scale, block_q, block_k), bad, q, k, v)
    if out is not None:
        o, lse = out
        check_output(o, q, k, v, causal, scale, values)
        s = (q.double() @ k.double().transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
        if causal:
            s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
        ct = torch.float64 if q.dtype == torch.float64 else torch.float32
        assert lse.dtype == ct
        close_where_finite(lse, torch.logsumexp(s, -1).to(ct), ct, "lse")


@given(inp=qkv(), scale=SCALES, block_q=BLOCKS, block_k=BLOCKS)
@fuzz_settings(30)
def test_tiled_attention(inp, scale, block_q, block_k):
    q, k, v, broken, values = inp
    bad = bad_common(q, k, broken, False, scale) or bad_block(("block_q", block_q), ("block_k", block_k)) or None
    o = outcome(lambda: A.tiled_attention(q, k, v, block_q, block_k, scale), bad, q, k, v)
    if o is not None:
        check_output(o, q, k, v, False, scale, values)


@given(n_q=st.integers(1, 40), n_kv=st.integers(1, 40), bq=st.integers(1, 16), bk=st.integers(1, 16),
       causal=st.booleans())
@fuzz_settings(30)
@example(n_q=1, n_kv=2, bq=2, bk=1, causal=True)  # counted key tile 1, which query 0 never sees
def test_visited_tiles(n_q, n_kv, bq, bk, causal):
    n = A.visited_tiles(n_q, n_kv, bq, bk, causal)
    brute = sum(any(not causal or j <= i for i in range(i0, min(i0 + bq, n_q))
                    for j in range(j0, min(j0 + bk, n_kv)))
                for i0 in range(0, n_q, bq) for j0 in range(0, n_kv, bk))
    assert n == brute  # exactly the tiles holding at least one visible (query, key) pair


# ---------------------------------------------------------------- PyTorch backward
def _grads_ok(got, q, k, v, causal, scale, do, values):
    _, expected = reference(q, k, v, causal, scale, do)
    for name, g, e in zip(("dq", "dk", "dv"), got, expected):
        assert g.dtype == q.dtype and g.shape == e.shape
        if values == "special":
            close_where_finite(g, e.to(q.dtype), q.dtype, name)
        elif values == "huge":  # inputs ~30: terms of dS K ~ 30^2, so the absolute rounding too
            tol = TOLERANCES[q.dtype]
            assert_close(g, e.to(q.dtype), dtype=q.dtype, atol=tol.atol * 900, rtol=tol.rtol, what=name)
        else:
            assert_close(g, e.to(q.dtype), dtype=q.dtype, what=name)


@pytest.mark.parametrize("name", ["recompute_attention_backward", "flash_attention_backward"])
@given(inp=qkv(dtypes=(torch.float32, torch.float64)), causal=st.booleans(), scale=SCALES,
       block_q=BLOCKS, dobad=st.sampled_from([None] * 4 + ["shape", "dtype", "list"]))
@fuzz_settings(25)
def test_backward(name, inp, causal, scale, block_q, dobad):
    q, k, v, broken, values = inp
    bad = bad_common(q, k, broken, causal, scale) or bad_block(("block_q", block_q)) or None
    if bad is None and dobad:
        bad = ("do",)
    do = torch.randn(q.shape, dtype=q.dtype) if isinstance(q, torch.Tensor) and q.dim() == 4 else torch.ones(1)
    if dobad == "shape":
        do = do[..., :1]
    elif dobad == "dtype":
        do = do.to(torch.float16)
    elif dobad == "list":
        do = do.tolist()
    if name == "recompute_attention_backward":
        call = lambda: AB.recompute_attention_backward(do, q, k, v, causal, scale, block_q)  # noqa: E731
    else:
        try:
            o, lse = A.flash_attention_forward(q, k, v, causal, scale)
        except (TypeError, ValueError):
            o = lse = torch.zeros(1)
        call = lambda: AB.flash_attention_backward(do, q, k, v, o, lse, causal, scale, block_q, block_q)  # noqa: E731
    out = outcome(call, bad, q, k, v)
    if out is not None:
        _grads_ok(out, q, k, v, causal, scale, do, values)


@given(inp=qkv(dtypes=(torch.float32, torch.float64), allow_broken=False), causal=st.booleans())
@fuzz_settings(20)
def test_flash_attention_autograd(inp, causal):
    q, k, v, _, values = inp
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    if causal and q.shape[2] != k.shape[2]:
        outcome(lambda: AB.flash_attention(q, k, v, causal), ("causal",))
        return
    o = AB.flash_attention(q, k, v, causal, None, 8, 8)
    do = torch.randn(o.shape, dtype=o.dtype)
    o.backward(do)
    check_output(o.detach(), q, k, v, causal, None, values)
    _grads_ok((q.grad, k.grad, v.grad), q, k, v, causal, None, do, values)


# ---------------------------------------------------------------- Triton (interpreter)
TRITON_DTYPES = (torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int32, torch.complex64)


def triton_bad(q, k, broken, causal, scale):
    bad = bad_common(q, k, broken, causal, scale)
    if bad:
        return bad
    if q.shape[-1] not in (16, 32, 64, 128):
        return ("D",)
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return ("dtype",)
    return None


@given(inp=qkv(dtypes=TRITON_DTYPES, head_dims=(16, 16, 16, 8)), causal=st.booleans(), scale=SCALES)
@fuzz_settings(12)
def test_triton_flash_attention_forward(inp, causal, scale):
    q, k, v, broken, values = inp
    bad = triton_bad(q, k, broken, causal, scale)
    out = outcome(lambda: kernels.flash_attention_forward_triton(q, k, v, causal, scale), bad, q, k, v)
    if out is not None:
        check_output(out[0], q, k, v, causal, scale, values)


@given(inp=qkv(dtypes=(torch.float32,), head_dims=(16,), allow_broken=False), causal=st.booleans())
@fuzz_settings(8)
def test_triton_flash_attention_autograd(inp, causal):
    q, k, v, _, values = inp
    if causal and q.shape[2] != k.shape[2]:
        outcome(lambda: kernels.flash_attention_triton(q, k, v, causal), ("causal",))
        return
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the differentiable kernel must not warn
        o = kernels.flash_attention_triton(q, k, v, causal)
        do = torch.randn(o.shape)
        o.backward(do)
    check_output(o.detach(), q, k, v, causal, None, values)
    _grads_ok((q.grad, k.grad, v.grad), q, k, v, causal, None, do, values)


def test_triton_forward_warns_that_no_gradient_flows():
    q = torch.randn(1, 1, 4, 16, requires_grad=True)
    with pytest.warns(UserWarning, match="no gradient flows.*kernels.flash_attention_triton"):
        o, _ = kernels.flash_attention_forward_triton(q, q.detach(), q.detach())
    assert o.grad_fn is None


@pytest.mark.parametrize("bad, kw", [
    ("causal", dict(causal=None)), ("causal", dict(causal=1)), ("scale", dict(scale="1")),
    ("scale", dict(scale=math.nan)), ("scale", dict(scale=True))])
def test_check_attention_inputs_rejects(bad, kw):
    q = torch.randn(1, 1, 3, 16)
    for fn in (check_attention_inputs, kernels.flash_attention_forward_triton, kernels.flash_attention_triton):
        outcome(lambda: fn(q, q, q, **kw), bad, q)


@given(inp=qkv(dtypes=(torch.float32, torch.float16), head_dims=(16,), allow_broken=False),
       causal=st.booleans(), which=st.sampled_from([None, None, "do", "o", "lse"]))
@fuzz_settings(8)
def test_triton_flash_attention_backward(inp, causal, which):
    q, k, v, _, values = inp
    if causal and q.shape[2] != k.shape[2]:
        causal = False
    o, lse = kernels.flash_attention_forward_triton(q, k, v, causal)
    do = torch.randn(q.shape).to(q.dtype)
    args = {"do": do, "o": o, "lse": lse}
    if which == "lse":
        args["lse"] = lse.double()  # the Triton backward wants the forward's float32 lse
    elif which:
        args[which] = args[which][..., :8]
    out = outcome(lambda: kernels.flash_attention_backward_triton(args["do"], q, k, v, args["o"], args["lse"],
                                                           causal), which, q, k, v, do, o, lse)
    if out is not None:
        _, expected = reference(q, k, v, causal, None, do)
        for name, g, e in zip(("dq", "dk", "dv"), out, expected):
            if values == "special":
                close_where_finite(g, e.to(q.dtype), q.dtype, name)
            elif q.dtype == torch.float32 and values != "huge":
                assert_close(g, e.to(q.dtype), dtype=q.dtype, what=name)
            else:  # fp16 and huge: within the tolerance of the plain computation's own error
                assert bool(torch.isfinite(g).all()) and g.dtype == q.dtype


@pytest.mark.parametrize("name", ["recompute", "flash", "triton"])
def test_nan_query_row_does_not_reach_masked_keys(name):
    """Found by the fuzzing: a NaN in query row 0 made dK of key 1 (masked from row 0) NaN,
    through dS = P ∘ (dP − Δ) with Δ_0 = NaN at the masked entry."""
    g = torch.Generator().manual_seed(0)
    q, k, v, do = (torch.randn(1, 1, 2, 16, generator=g) for _ in range(4))
    q[0, 0, 0, 0] = math.nan
    if name == "recompute":
        grads = AB.recompute_attention_backward(do, q, k, v, True)
    elif name == "flash":
        o, lse = A.flash_attention_forward(q, k, v, True)
        grads = AB.flash_attention_backward(do, q, k, v, o, lse, True)
    else:
        o, lse = kernels.flash_attention_forward_triton(q, k, v, True)
        grads = kernels.flash_attention_backward_triton(do, q, k, v, o, lse, True)
    _, expected = reference(q, k, v, True, None, do)
    assert bool(torch.isfinite(expected[1][0, 0, 1, 1:]).all())  # the oracle: finite there
    for g_, e, what in zip(grads, expected, ("dq", "dk", "dv")):
        close_where_finite(g_, e.float(), torch.float32, what)
