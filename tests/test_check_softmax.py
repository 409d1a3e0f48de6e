"""The softmax checkers (notebooks 00-03): labkit's answers pass, and each catalogued mistake is named.

The catalogue below is the checkers' own list of wrong implementations (once inside labkit.check);
tests/wrong_answers_softmax.py holds the independent ones (run by tests/test_wrong_answers.py).
"""
import math
import time

import numpy as np
import pytest
import torch

import labkit  # noqa: F401  (turns on the Triton interpreter without CUDA)
from labkit import check, device
from labkit import softmax as S
from labkit.check.core import CHECKERS, CheckFailed

from hints import assert_rejected_with_hint

# ------------------------------------------------------------------ the catalogue of mistakes


def _norm(e, dim):
    return e / e.sum(dim=dim, keepdim=True)


def _f32(f):
    """f computed in float32 and returned in x's dtype, as a careful student would."""
    return lambda x, dim=-1, *a: f(x.float(), dim, *a).to(x.dtype)


NORMALIZE = {
    "keep the reduced dimension": lambda e, dim=-1: e / e.sum(dim),
    "wrong axis": lambda e, dim=-1: e / e.sum(-1, keepdim=True),
    "largest value is 1": lambda e, dim=-1: e / e.amax(dim, keepdim=True),
    "input's dtype": lambda e, dim=-1: e.double() / e.double().sum(dim, keepdim=True),
}
NAIVE = {
    "do not sum to 1": _f32(lambda x, dim: torch.exp(x)),
    "wrong axis": _f32(lambda x, dim: _norm(torch.exp(x), -1)),
    "keep the reduced dimension": _f32(lambda x, dim: torch.exp(x) / torch.exp(x).sum(dim)),
    "input's dtype": lambda x, dim=-1: _norm(torch.exp(x.float()), dim),
    "overflows float16": lambda x, dim=-1: _norm(torch.exp(x), dim),
    "float64 stays float64": _f32(lambda x, dim: _norm(torch.exp(x), dim)),
}
SAFE = {
    "subtract each row's max": _f32(lambda x, dim: _norm(torch.exp(x), dim)),
    "its own max": _f32(lambda x, dim: _norm(torch.exp(x - x.max()), dim)),
    "subtract each row's max ": _f32(lambda x, dim: _norm(torch.exp(x - x.amin(dim, keepdim=True)), dim)),
    "wrong axis": _f32(lambda x, dim: _norm(torch.exp(x - x.amax(-1, keepdim=True)), -1)),
    "do not sum to 1": _f32(lambda x, dim: torch.exp(x - x.amax(dim, keepdim=True))),
    "keep the reduced dimension": _f32(lambda x, dim: _norm(torch.exp(x - x.amax(dim)), dim)),
    "input's dtype": lambda x, dim=-1: S.safe_softmax(x.float(), dim),
    "float64 stays float64": _f32(lambda x, dim: _norm(torch.exp(x - x.amax(dim, keepdim=True)), dim)),
}


def _online(x, dim=-1, block_size=128, mistake=None):
    """A student's loop over blocks, with one mistake switched on."""
    xt = x.float().movedim(dim, -1)
    m = torch.full(xt.shape[:-1], -math.inf)
    l = torch.zeros(xt.shape[:-1])  # noqa: E741
    seen = []
    for s in range(0, xt.shape[-1], block_size):
        blk = xt[..., s:s + block_size]
        if mistake == "no max":
            l, m = l + torch.exp(blk).sum(-1), torch.zeros_like(m)  # noqa: E741
            continue
        m_new = blk.amax(-1) if mistake == "block max" else torch.maximum(m, blk.amax(-1))
        alpha = {"no rescale": torch.ones_like(m), "inverted": torch.exp(m_new - m).nan_to_num(posinf=0.0),
                 "own max": torch.zeros_like(m)}.get(mistake, torch.exp(m - m_new))
        if mistake == "own max":  # each block summed against its own max, the sums added up
            l = l + torch.exp(blk - blk.amax(-1, keepdim=True)).sum(-1)  # noqa: E741
        else:
            l = alpha * l + torch.exp(blk - m_new[..., None]).sum(-1)  # noqa: E741
        m = torch.maximum(m, m_new) if mistake == "own max" else m_new
        seen.append(m.clone())
    if mistake == "running max in pass 2":
        out = torch.cat([torch.exp(xt[..., i * block_size:(i + 1) * block_size] - mi[..., None])
                         for i, mi in enumerate(seen)], -1) / l[..., None]
    else:
        out = torch.exp(xt - m[..., None]) / l[..., None]
    return out.movedim(-1, dim).to(x.dtype)


def _online_mistake(mistake):
    return lambda x, dim=-1, block_size=128: _online(x, dim, block_size, mistake)


ONLINE = {
    "rescale the old sum": _online_mistake("no rescale"),
    "rescale the old sum ": _online_mistake("inverted"),
    "not a sum against each block's own max": _online_mistake("own max"),
    "final max m_i": _online_mistake("running max in pass 2"),
    "running max, max(m_i, block max)": _online_mistake("block max"),
    "subtract the running max": _online_mistake("no max"),
    "wrong axis": lambda x, dim=-1, block_size=128: S.online_softmax(x, -1, block_size),
    "input's dtype": lambda x, dim=-1, block_size=128: S.online_softmax(x.float(), dim, block_size),
    "float64 stays float64": lambda x, dim=-1, block_size=128: _online(x, dim, block_size),
}


def _lse_unguarded(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim, keepdim=True)
    return (m.squeeze(dim) + torch.log(torch.exp(xf - m).sum(dim))).to(x.dtype)


LSE = {
    "factor the max out": _f32(lambda x, dim: torch.log(torch.exp(x).sum(dim))),
    "add the max back": _f32(lambda x, dim: torch.log(torch.exp(x - x.amax(dim, keepdim=True)).sum(dim))),
    "one dimension fewer": _f32(lambda x, dim: torch.logsumexp(x, dim, keepdim=True)),
    "all -inf has logsumexp -inf": _lse_unguarded,
    "wrong axis": _f32(lambda x, dim: torch.logsumexp(x, -1)),
    "its own max": _f32(lambda x, dim: x.max() + torch.log(torch.exp(x - x.max()).sum(dim))),
    "float64 stays float64": _f32(lambda x, dim: torch.logsumexp(x, dim)),
}
THRESHOLD = {
    "not log2": lambda dtype: math.log2(torch.finfo(dtype).max),
    "not log10": lambda dtype: math.log10(torch.finfo(dtype).max),
    "exp underflows": lambda dtype: math.log(torch.finfo(dtype).tiny),
    "its natural log": lambda dtype: torch.finfo(dtype).max,
    "depends on the dtype": lambda dtype: 88.72,
}


def _merge(a, b, rescale_a=True, rescale_b=True, guard=True, inverted=False):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m) if guard else m
    factor = (lambda t: torch.exp(-t).nan_to_num(posinf=0.0)) if inverted else torch.exp
    d_a = a.d * factor(a.m - base) if rescale_a else a.d
    d_b = b.d * factor(b.m - base) if rescale_b else b.d
    return S.OnlineState(m, d_a + d_b)


MERGE = {
    "rescale both": lambda a, b: _merge(a, b, False, False),
    "rescale both ": lambda a, b: _merge(a, b, True, False),
    "rescale both  ": lambda a, b: _merge(a, b, False, True),
    "(<= 1)": lambda a, b: _merge(a, b, inverted=True),
    "-inf - (-inf) is NaN": lambda a, b: _merge(a, b, guard=False),
    "larger of the two": lambda a, b: S.OnlineState(torch.minimum(a.m, b.m), _merge(a, b).d),
}

def _many(states, rescale=True, inverted=False, guard=True, first=None, max_of=None):
    """A student's closed form for K states, with one mistake switched on."""
    ms, ds = torch.stack([s.m for s in states]), torch.stack([s.d for s in states])
    if first:
        ms, ds = ms[:first], ds[:first]
    m = ms[max_of] if max_of is not None else ms.amax(0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m) if guard else m
    factor = torch.exp(base - ms).nan_to_num(posinf=0.0) if inverted else torch.exp(ms - base)
    return S.OnlineState(m, (ds * factor).sum(0) if rescale else ds.sum(0))


MERGE_MANY = {
    "sum against its own max": lambda states: _many(states, rescale=False),
    "(<= 1)": lambda states: _many(states, inverted=True),
    "-inf - (-inf) is NaN": lambda states: _many(states, guard=False),
    "wherever it sits in the list": lambda states: _many(states, max_of=-1),
    "wherever it sits in the list ": lambda states: S.OnlineState(states[-1].m, _many(states).d),
    "rescale every one": lambda states: _many(states, first=2),
    "rescale every one ": lambda states: S.merge_states(states[0], states[-1]) if len(states) > 1 else states[0],
    "float64 states": lambda states: S.OnlineState(*(t.to(states[0].m.dtype) for t in _many(
        [S.OnlineState(s.m.float(), s.d.float()) for s in states]))),
    "one exponent": lambda states: _many_quotient(states),
    "one max per row": lambda states: _many_global_max(states),
    "exp(m_old - m_new)": lambda states: _fold_stale_max(states),
    "work on a copy": lambda states: _many_in_place(states),
}


def _many_quotient(states):
    """exp(m_k) / exp(m) instead of exp(m_k - m): inf / inf for large maxima."""
    ms, ds = torch.stack([s.m for s in states]), torch.stack([s.d for s in states])
    m = ms.amax(0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return S.OnlineState(m, (ds * torch.exp(ms) / torch.exp(base)).sum(0))


def _many_global_max(states):
    """One max over all rows and states (guarded against -inf), broadcast to every row."""
    ms, ds = torch.stack([s.m for s in states]), torch.stack([s.d for s in states])
    m = ms.max()
    base = m if torch.isfinite(m) else torch.zeros_like(m)
    return S.OnlineState(m.expand_as(states[0].m), (ds * torch.exp(ms - base)).sum(0))


def _fold_stale_max(states):
    """A running merge that updates m first, then rescales the running d against the new m: a factor of 1."""
    m, d = states[0].m.clone(), states[0].d.clone()
    for s in states[1:]:
        m = torch.maximum(m, s.m)
        base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
        d = d * torch.exp(m - base) + s.d * torch.exp(s.m - base)
    return S.OnlineState(m, d)


def _many_in_place(states):
    """Rescales every state's d in place (mul_) before adding them up."""
    m = torch.stack([s.m for s in states]).amax(0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    for s in states:
        s.d.mul_(torch.exp(s.m - base))
    return S.OnlineState(m, sum(s.d for s in states))

def merge_states_many(states):
    """The closed form, right: m = max_k m_k, d = sum_k d_k exp(m_k - m)."""
    return _many(states)


CATALOGUE = [
    (check.normalize, S.normalize, NORMALIZE),
    (check.overflow_threshold, S.overflow_threshold, THRESHOLD),
    (check.merge_states, S.merge_states, MERGE),
    (check.merge_states_many, merge_states_many, MERGE_MANY),
    (check.naive_softmax, S.naive_softmax, NAIVE),
    (check.safe_softmax, S.safe_softmax, SAFE),
    (check.online_softmax, S.online_softmax, ONLINE),
    (check.logsumexp, S.logsumexp, LSE),
]


@pytest.mark.parametrize("checker,reference,_", CATALOGUE, ids=lambda v: getattr(v, "__name__", ""))
def test_reference_passes_its_checker_fast(checker, reference, _, capsys):
    start = time.perf_counter()
    checker(reference)
    assert time.perf_counter() - start < 1.0
    n = len(CHECKERS[reference.__name__]().cases)
    assert capsys.readouterr().out == f"✔ {reference.__name__}: {n}/{n} cases passed\n"


@pytest.mark.parametrize("checker,mutant,hint", [
    (c, m, h.strip()) for c, _, mutants in CATALOGUE for h, m in mutants.items()
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""))
def test_every_catalogued_mistake_is_rejected_with_its_hint(checker, mutant, hint):
    with np.errstate(all="ignore"):
        assert_rejected_with_hint(checker, mutant, hint)


def test_torch_softmax_is_accepted_by_every_pytorch_checker(capsys):
    check.naive_softmax(lambda x, dim=-1: torch.softmax(x, dim))
    check.safe_softmax(lambda x, dim=-1: torch.softmax(x, dim))
    check.online_softmax(lambda x, dim=-1, block_size=128: torch.softmax(x, dim))
    check.logsumexp(lambda x, dim=-1: torch.logsumexp(x, dim))
    assert capsys.readouterr().out.count("✔") == 4


def _hint(checker, fn) -> str:
    with pytest.raises(CheckFailed) as err:
        checker(fn)
    return err.value.hint


def test_block_max_in_online_softmax_is_named_and_not_blamed_on_the_row_max():
    """Issue 9: 3.2 with each block's own max was told "did you subtract the row max?"."""
    hint = _hint(check.online_softmax, ONLINE["not a sum against each block's own max"])
    assert "running max" in hint and "row max" not in hint


def test_an_element_by_element_loop_without_rescaling_is_named():
    def by_element(x, dim=-1, block_size=128):
        xt = x.float().movedim(dim, -1)
        m, d = torch.full(xt.shape[:-1], -math.inf), torch.zeros(xt.shape[:-1])
        for j in range(xt.shape[-1]):
            m = torch.maximum(m, xt[..., j])
            d = d + torch.exp(xt[..., j] - m)
        return (torch.exp(xt - m[..., None]) / d[..., None]).movedim(-1, dim).to(x.dtype)
    assert "rescale the old sum" in _hint(check.online_softmax, by_element)


def test_softmax_over_the_wrong_axis_is_named_with_what_was_seen():
    hint = _hint(check.safe_softmax, SAFE["wrong axis"])
    assert "wrong axis" in hint and "with dim=0 the slices along dim 1 sum to 1" in hint


def test_every_checker_docstring_lists_its_properties():
    for name in ("normalize", "naive_softmax", "overflow_threshold", "safe_softmax", "logsumexp",
                 "merge_states", "merge_states_many", "online_softmax", "softmax_triton", "online_softmax_triton"):
        assert "Properties:" in getattr(check, name).__doc__, name


# ------------------------------------------------- Triton exercises (interpreter on CPU)

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _fused_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr, BUG: tl.constexpr):
        """The notebook-02 scaffold's softmax_kernel, with one mistake switched on by BUG."""
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        other = 0.0 if BUG == "other=0" else -float("inf")
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=other).to(tl.float32)
        if BUG != "no max":
            x = x - tl.max(x, axis=0)
        e = tl.exp(x)
        y = e if BUG == "no sum" else e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _online_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr, BUG: tl.constexpr):
        """The notebook-03 scaffold's online_softmax_kernel, with one mistake switched on by BUG."""
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            other = 0.0 if BUG == "other=0" else -float("inf")
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=other).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
            alpha = 1.0 if BUG == "no rescale" else tl.exp(m_i - base)
            l_i = l_i * alpha + tl.sum(tl.exp(x - base), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
            m = tl.max(x, axis=0) if BUG == "stale max" else m_i
            y = tl.exp(x - m) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    def _wrapper(kernel, bug, block=None):
        """The scaffold's host wrapper: one program per row, BLOCK = next power of 2 (fused) or 64 (online)."""
        def fn(x):
            x = x.contiguous()
            y = torch.empty_like(x)
            n_rows, n_cols = x.shape
            kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=block or triton.next_power_of_2(n_cols), BUG=bug)
            return y
        return fn


triton_only = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)


@triton_only
@pytest.mark.parametrize("checker,fn", [
    (check.softmax_triton, lambda: _wrapper(_fused_kernel, "none")),
    (check.online_softmax_triton, lambda: _wrapper(_online_kernel, "none", 64)),
    (check.softmax_triton, lambda: __import__("labkit.kernels.softmax").kernels.softmax.softmax_triton),
    (check.online_softmax_triton, lambda: __import__("labkit.kernels.softmax").kernels.softmax.online_softmax_triton),
], ids=["scaffold fused", "scaffold online", "labkit fused", "labkit online"])
def test_right_kernels_pass_within_the_interpreter_budget(checker, fn, capsys):
    start = time.perf_counter()
    checker(fn())
    assert time.perf_counter() - start < 15
    assert capsys.readouterr().out.startswith("✔")


@triton_only
@pytest.mark.parametrize("bug,hint", [
    ("other=0", "masked lanes must load as -inf"),
    ("no max", "subtract the row max (tl.max)"),
    ("no sum", "the rows do not sum to 1"),
])
def test_softmax_triton_names_kernel_bugs(bug, hint):
    assert_rejected_with_hint(check.softmax_triton, _wrapper(_fused_kernel, bug), hint)


@triton_only
@pytest.mark.parametrize("bug,hint", [
    ("other=0", "masked lanes padded with 0"),
    ("no rescale", "l_i not rescaled"),
    ("stale max", "the second loop must normalise every block with the final"),
])
def test_online_softmax_triton_names_kernel_bugs(bug, hint):
    assert_rejected_with_hint(check.online_softmax_triton, _wrapper(_online_kernel, bug, 64), hint)


@triton_only
def test_triton_checker_reports_blank_kernel_as_not_implemented(capsys):
    @triton.jit
    def blank_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
        raise NotImplementedError("Exercise 2.3: the kernel body")

    def fn(x):
        y = torch.empty_like(x)
        blank_kernel[(1,)](x, y, BLOCK=8)
        return y
    check.softmax_triton(fn)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("wrap, accepted", [(float, True), (np.float64, True), (np.float32, True),
                                             (lambda v: torch.tensor(v), False),
                                             (lambda v: torch.tensor(v, dtype=torch.float64), False)])
def test_the_threshold_is_a_number_numpy_scalars_included_never_a_tensor(wrap, accepted, capsys):
    """Issue 20, item 6: the spec says a number. A 0-d tensor is refused with a hint about its type, not its value."""
    from labkit import softmax as ref
    fn = lambda dtype: wrap(ref.overflow_threshold(dtype))  # noqa: E731
    if accepted:
        check.overflow_threshold(fn)
        assert capsys.readouterr().out.startswith("✔ overflow_threshold")
    else:
        with pytest.raises(CheckFailed) as err:
            check.overflow_threshold(fn)
        assert "expected a number" in str(err.value) and err.value.hint.startswith("return a number")


def test_merge_states_takes_an_online_state_or_a_plain_pair_in_the_order_m_then_d(capsys):
    """Issue 20, item 6: the spec says "the merged (m, d)"; either tuple type, never (d, m)."""
    check.merge_states(lambda a, b: tuple(S.merge_states(a, b)))
    assert capsys.readouterr().out.startswith("✔ merge_states")
    with pytest.raises(CheckFailed):
        check.merge_states(lambda a, b: tuple(S.merge_states(a, b))[::-1])
