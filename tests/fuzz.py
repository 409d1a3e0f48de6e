"""Shared pieces of the property-based fuzz tests (tests/test_fuzz_*.py): settings, tensors, the outcome rule.

The rule every fuzzed call must satisfy: it returns the right answer (checked by the caller
against a torch/scipy oracle under labkit.check's tolerances), or it raises ValueError or
TypeError whose message names the offending argument. Nothing else is allowed to escape, and
no input may be modified in place.
"""
from __future__ import annotations

import math
import re

import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from labkit.check import assert_close

FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
NOT_FLOAT = (torch.int64, torch.int32, torch.bool, torch.complex64)
SPECIALS = (math.nan, math.inf, -math.inf, 1e30, -1e30, 1e-30, -1e-30, 0.0, 88.0, 89.0,
            -104.0, 1e4, -1e4)
# Arguments that are not what an int/float parameter expects.
NOT_INT = (None, True, False, 1.0, 2.5, "3", [2])


def fuzz_settings(n: int) -> settings:
    """Deterministic, no deadline, ``n`` examples; no example database (CI needs no state)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def names(message: str, name: str) -> bool:
    """Whether an error message names ``name`` as a word (x, dim, block_size, a.m, ...)."""
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message) is not None


def _snapshot(v):
    if isinstance(v, torch.Tensor):
        return ("t", v.detach().clone(), v.stride())
    if isinstance(v, np.ndarray):
        return ("n", v.copy())
    if sp.issparse(v):
        return ("s", v.copy())
    return None


def _same(v, snap) -> bool:
    kind = snap[0]
    if kind == "t":
        return (v.stride() == snap[2] and v.dtype == snap[1].dtype
                and bool(((v == snap[1]) | (v != v) & (snap[1] != snap[1])).all()))
    if kind == "n":
        return np.array_equal(v, snap[1], equal_nan=v.dtype.kind in "fc")
    return (v != snap[1]).nnz == 0 if v.shape == snap[1].shape else False


def outcome(call, bad: str | tuple[str, ...] | None, *inputs):
    """Run ``call()``: None if it raised ValueError/TypeError naming ``bad``, else its result.

    bad: the argument the contract says is wrong (the call must raise naming it; with several
    wrong, naming any one of them), or None (the call must succeed). ``inputs`` are checked to be unmodified afterwards.
    """
    snaps = [(v, _snapshot(v)) for v in inputs]
    try:
        out = call()
    except (TypeError, ValueError) as err:
        msg = str(err)
        assert bad is not None, f"a valid call raised {type(err).__name__}: {msg}"
        wrong = (bad,) if isinstance(bad, str) else bad
        assert any(names(msg, b) for b in wrong), \
            f"the error should name {' or '.join(wrong)}: {type(err).__name__}: {msg}"
        out = None
    else:
        assert bad is None, f"expected a ValueError/TypeError naming {bad!r}, got a result"
    for v, snap in snaps:
        if snap is not None:
            assert _same(v, snap), "an input was modified in place"
    return out


def close_where_finite(actual: torch.Tensor, expected: torch.Tensor, dtype, what="output"):
    """Where the oracle is finite, the answer is finite and within tolerance (no silent NaN)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    keep = torch.isfinite(expected)
    assert_close(actual[keep], expected[keep], dtype=dtype, what=what)


@st.composite
def tensors(draw, dtypes=FLOATS + NOT_FLOAT, shape=None, max_dims: int = 3, max_side: int = 5,
            specials: bool = True, bound: float = 50.0):
    """A tensor of ``shape`` (or a random one), any of ``dtypes``, with special values, all-equal
    and fully -inf rows, and contiguous, transposed or sliced strides."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, max_side), max_size=max_dims)))
    dtype = draw(st.sampled_from(dtypes))
    n = math.prod(shape)
    finite = st.floats(-bound, bound, allow_nan=False, width=32)
    elems = st.one_of(finite, st.sampled_from(SPECIALS)) if specials else finite
    vals = draw(st.lists(elems, min_size=n, max_size=n))
    t = torch.tensor(vals, dtype=torch.float64).reshape(shape)
    if len(shape) >= 1 and n:
        rows = t.reshape(-1, shape[-1])
        for r in draw(st.lists(st.integers(0, rows.shape[0] - 1), max_size=2)):
            rows[r] = draw(st.sampled_from([-math.inf, 0.0, 7.0, 1e30] if specials else [0.0, 7.0]))
        t = rows.reshape(shape)
    if dtype.is_floating_point:
        t = t.to(dtype)
    elif dtype.is_complex:
        t = torch.nan_to_num(t, posinf=1.0, neginf=-1.0).to(dtype) * (1 + 1j)
    else:
        t = torch.nan_to_num(t, posinf=1.0, neginf=-1.0).clamp(-100, 100).to(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced"]))
    if layout == "transposed" and t.dim() >= 2:
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "sliced" and t.dim() >= 1:
        big = torch.zeros(*shape[:-1], 2 * shape[-1], dtype=t.dtype)
        big[..., ::2] = t
        t = big[..., ::2]
    return t
