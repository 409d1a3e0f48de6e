"""labkit.check: the tolerance table, assert_close, run_checker, and the softmax checkers.

Each checker must pass labkit's own implementation and reject every wrong
implementation in the catalogue below *with the hint that names its mistake*.
"""
import math

import numpy as np
import pytest
import torch

import labkit  # noqa: F401  (turns on the Triton interpreter without CUDA)
from labkit import check, device
from labkit import softmax as S
from labkit.check import Case, Misconception, assert_close, run_checker

# ------------------------------------------------------------------ assert_close


def test_tolerance_table_covers_the_course_dtypes():
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        tol = check.tolerance(dtype)
        assert 0 < tol.atol < 0.1 and 0 < tol.rtol < 0.1
    assert check.tolerance(torch.float64).rtol < check.tolerance(torch.float32).rtol \
        < check.tolerance(torch.float16).rtol
    import numpy as np
    assert check.tolerance(np.float64) == check.tolerance(torch.float64)
    with pytest.raises(ValueError, match="no tolerance"):
        check.tolerance(torch.int32)


def test_assert_close_accepts_rounding_and_rejects_real_errors():
    x = torch.randn(10, dtype=torch.float64)
    assert_close(x.float(), x)  # float32 rounding is within the float32 tolerance
    with pytest.raises(AssertionError, match=r"worst error 0\.01 at index \(3,\)"):
        y = x.clone()
        y[3] += 0.01
        assert_close(y.float(), x)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x[:5], x)


def test_assert_close_nan_and_inf_must_sit_where_the_reference_has_them():
    ref = torch.tensor([1.0, math.nan, math.inf])
    assert_close(ref.clone(), ref)
    with pytest.raises(AssertionError, match="worst error 1"):  # a NaN elsewhere hides nothing
        assert_close(torch.tensor([2.0, math.nan, math.inf]), ref)
    with pytest.raises(AssertionError, match="NaN mismatch at index"):
        assert_close(torch.tensor([math.nan, math.nan, math.inf]), ref)
    with pytest.raises(AssertionError, match="infinity mismatch"):
        assert_close(torch.tensor([1.0, math.nan, -math.inf]), ref)


def test_assert_close_low_precision_rule_is_relative_to_the_plain_computation():
    x = torch.randn(64, 64, dtype=torch.float64)
    ref = x @ x
    plain = (x.half() @ x.half())
    assert_close(plain, ref, baseline=plain)
    worse = plain + 0.5  # far more than 2x the plain fp16 error
    with pytest.raises(AssertionError, match="2 x the plain float16 error"):
        assert_close(worse, ref, baseline=plain)


# ------------------------------------------------------------------ run_checker


def _double(x):
    return 2 * x


CASES = [Case("three values", (torch.tensor([1.0, 2.0, 3.0]),)),
         Case("one value", (torch.tensor([5.0]),), hint="look at the one-element case")]


def test_run_checker_prints_the_fixed_pass_line(capsys):
    run_checker("double", lambda x: x * 2, CASES, _double)
    assert capsys.readouterr().out == "✔ double: 2/2 cases passed\n"


def test_blank_exercise_says_not_implemented_yet(capsys):
    def blank(x):
        raise NotImplementedError("Exercise 0.1: double x")
    run_checker("double", blank, CASES, _double)
    assert "✘ double: not implemented yet" in capsys.readouterr().out


def test_failure_names_case_shapes_error_and_hint():
    wrong = [Misconception("you added instead of multiplying", lambda x: x + 2)]
    with pytest.raises(AssertionError) as info:
        run_checker("double", lambda x: x + 2, CASES, _double, wrong)
    text = str(info.value)
    assert "case 1/2 (three values) failed" in text and "tensor(3,) float32" in text
    assert "worst error" in text and "hint: you added instead of multiplying" in text


def test_unmatched_failure_falls_back_to_the_case_hint():
    with pytest.raises(AssertionError, match="hint: look at the one-element case"):
        run_checker("double", lambda x: 2 * x if x.numel() > 1 else x, CASES, _double)


def test_modifying_the_input_in_place_is_reported():
    def in_place(x):
        return x.mul_(2)
    with pytest.raises(AssertionError, match="modified its input in place"):
        run_checker("double", in_place, CASES, _double)


def test_a_crash_is_reported_with_its_error_and_a_matching_hint():
    def crash(x):
        return x.reshape(2, 2) * 2
    same_crash = [Misconception("reshape needs the right number of elements", crash)]
    with pytest.raises(AssertionError, match=r"raised RuntimeError.*\n  hint: reshape needs"):
        run_checker("double", crash, CASES, _double, same_crash)


def test_checker_demands_a_function():
    with pytest.raises(TypeError, match=r"check.naive_softmax\(naive_softmax\)"):
        check.naive_softmax(torch.zeros(3))


# --------------------------------------------------------- the softmax checkers


def _norm(e, dim):
    return e / e.sum(dim=dim, keepdim=True)


NAIVE_MUTANTS = {
    "not normalised": lambda x, dim=-1: torch.exp(x),
    "wrong dimension": lambda x, dim=-1: _norm(torch.exp(x), -1),
    "keep the reduced dimension": lambda x, dim=-1: torch.exp(x) / torch.exp(x).sum(dim),
    "input's dtype": lambda x, dim=-1: _norm(torch.exp(x.float()), dim),
}

SAFE_MUTANTS = {
    "subtract the row max": lambda x, dim=-1: _norm(torch.exp(x.float()), dim).to(x.dtype),
    "not the max of the whole tensor": lambda x, dim=-1: _norm(torch.exp(x - x.max()), dim),
    "not the min": lambda x, dim=-1: _norm(torch.exp(x - x.amin(dim, keepdim=True)), dim),
    "wrong dimension": lambda x, dim=-1: _norm(torch.exp(x - x.amax(-1, keepdim=True)), -1),
    "not normalised": lambda x, dim=-1: torch.exp(x - x.amax(dim, keepdim=True)),
}


def _loop_online(x, dim=-1, block_size=128, mistake=None):
    """A student's loop over blocks, with one mistake switched on."""
    xt = x.float().movedim(dim, -1)
    m = torch.full(xt.shape[:-1], -math.inf)
    l = torch.zeros(xt.shape[:-1])
    seen = []
    for s in range(0, xt.shape[-1], block_size):
        blk = xt[..., s:s + block_size]
        if mistake == "no max":
            l = l + torch.exp(blk).sum(-1)
            m = torch.zeros_like(m)
            continue
        m_new = torch.maximum(m, blk.amax(-1))
        alpha = torch.ones_like(m) if mistake == "no rescale" else torch.exp(m - m_new)
        l = alpha * l + torch.exp(blk - m_new[..., None]).sum(-1)
        m = m_new
        seen.append(m.clone())
    if mistake == "running max in pass 2":
        out = torch.cat([torch.exp(xt[..., i * block_size:(i + 1) * block_size] - mi[..., None])
                         for i, mi in enumerate(seen)], -1) / l[..., None]
    else:
        out = torch.exp(xt - m[..., None]) / l[..., None]
    return out.movedim(-1, dim).to(x.dtype)


ONLINE_MUTANTS = {
    "running sum not rescaled": lambda x, dim=-1, block_size=128: _loop_online(x, dim, block_size, "no rescale"),
    "final max and sum": lambda x, dim=-1, block_size=128: _loop_online(x, dim, block_size, "running max in pass 2"),
    "subtract the row max": lambda x, dim=-1, block_size=128: _loop_online(x, dim, block_size, "no max"),
    "wrong dimension": lambda x, dim=-1, block_size=128: S.online_softmax(x, -1, block_size),
}


def _lse_unguarded(x, dim=-1):
    m = x.amax(dim, keepdim=True)
    return m.squeeze(dim) + torch.log(torch.exp(x - m).sum(dim))


LSE_MUTANTS = {
    "subtract the row max": lambda x, dim=-1: torch.log(torch.exp(x).sum(dim)),
    "did not add it back": lambda x, dim=-1: torch.log(torch.exp(x - x.amax(dim, keepdim=True)).sum(dim)),
    "one dimension fewer": lambda x, dim=-1: torch.logsumexp(x, dim, keepdim=True),
    "must give -inf": _lse_unguarded,
    "wrong dimension": lambda x, dim=-1: torch.logsumexp(x, -1),
}

NORMALIZE_MUTANTS = {
    "keep the reduced dimension": lambda e, dim=-1: e / e.sum(dim),
    "wrong dimension": lambda e, dim=-1: e / e.sum(-1, keepdim=True),
    "not the largest value": lambda e, dim=-1: e / e.max(dim, keepdim=True).values,
    "input's dtype": lambda e, dim=-1: e.double() / e.double().sum(dim, keepdim=True),
}

THRESHOLD_MUTANTS = {
    "underflows": lambda dtype: math.log(torch.finfo(dtype).tiny),
    "natural log": lambda dtype: math.log2(torch.finfo(dtype).max),
    "largest exponent": lambda dtype: torch.finfo(dtype).max,
}


def _merge(a, b, rescale_a=True, rescale_b=True, guard=True):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m) if guard else m
    d_a = a.d * torch.exp(a.m - base) if rescale_a else a.d
    d_b = b.d * torch.exp(b.m - base) if rescale_b else b.d
    return m, d_a + d_b


MERGE_MUTANTS = {
    "sums not rescaled": lambda a, b: _merge(a, b, False, False),
    "rescale both sums": lambda a, b: _merge(a, b, True, False),
    "-inf - (-inf) is NaN": lambda a, b: _merge(a, b, guard=False),
}

CATALOGUE = [
    (check.normalize, S.normalize, NORMALIZE_MUTANTS),
    (check.overflow_threshold, S.overflow_threshold, THRESHOLD_MUTANTS),
    (check.merge_states, S.merge_states, MERGE_MUTANTS),
    (check.naive_softmax, S.naive_softmax, NAIVE_MUTANTS),
    (check.safe_softmax, S.safe_softmax, SAFE_MUTANTS),
    (check.online_softmax, S.online_softmax, ONLINE_MUTANTS),
    (check.logsumexp, S.logsumexp, LSE_MUTANTS),
]


@pytest.mark.parametrize("checker,reference,_", CATALOGUE, ids=lambda v: getattr(v, "__name__", ""))
def test_reference_passes_its_checker(checker, reference, _, capsys):
    checker(reference)
    assert capsys.readouterr().out.startswith(f"✔ {reference.__name__}: ")


@pytest.mark.parametrize("checker,mutant,hint", [
    (c, m, h) for c, _, mutants in CATALOGUE for h, m in mutants.items()
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""))
def test_every_mutant_is_rejected_with_its_hint(checker, mutant, hint):
    with pytest.raises(AssertionError) as info:
        checker(mutant)
    assert "hint: " in str(info.value)
    assert hint in str(info.value).split("hint: ", 1)[1], str(info.value)


def test_torch_softmax_is_accepted_by_every_pytorch_checker(capsys):
    check.naive_softmax(lambda x, dim=-1: torch.softmax(x, dim))
    check.safe_softmax(lambda x, dim=-1: torch.softmax(x, dim))
    check.online_softmax(lambda x, dim=-1, block_size=128: torch.softmax(x, dim))
    check.logsumexp(lambda x, dim=-1: torch.logsumexp(x, dim))
    assert capsys.readouterr().out.count("✔") == 4


# ------------------------------------------------- Triton exercises (interpreter on CPU)

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _row_softmax_kernel(x_ptr, y_ptr, stride, n_cols, BLOCK: tl.constexpr, BUG: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        other = 0.0 if BUG == "other=0" else -float("inf")
        x = tl.load(x_ptr + row * stride + offs, mask=offs < n_cols, other=other).to(tl.float32)
        if BUG != "no max":
            x = x - tl.max(x, axis=0)
        e = tl.exp(x)
        y = e if BUG == "no sum" else e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _online_softmax_kernel(x_ptr, y_ptr, stride, n_cols, BLOCK: tl.constexpr, BUG: tl.constexpr):
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            other = 0.0 if BUG == "other=0" else -float("inf")
            x = tl.load(x_ptr + row * stride + offs, mask=offs < n_cols, other=other).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            alpha = 1.0 if BUG == "no rescale" else tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(tl.exp(x - m_new), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i) / l_i
            tl.store(y_ptr + row * stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    def _launcher(kernel, bug, block=None):
        def fn(x):
            x = x.contiguous()
            y = torch.empty_like(x)
            n = x.shape[-1]
            b = block or triton.next_power_of_2(n)
            kernel[(x.shape[0],)](x, y, x.stride(0), n, BLOCK=b, BUG=bug)
            return y
        return fn


triton_only = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)


@triton_only
@pytest.mark.parametrize("bug,hint", [
    ("other=0", "masked lanes must load as -inf"),
    ("no max", "subtract the row max"),
    ("no sum", "not normalised"),
])
def test_softmax_triton_checker_names_kernel_bugs(bug, hint):
    check.softmax_triton(_launcher(_row_softmax_kernel, "none"))
    with pytest.raises(AssertionError, match=hint), np.errstate(over="ignore", invalid="ignore"):
        check.softmax_triton(_launcher(_row_softmax_kernel, bug))  # "no max" overflows on purpose


@triton_only
@pytest.mark.parametrize("block", [32, 64])
@pytest.mark.parametrize("bug,hint", [
    ("other=0", "masked lanes must load as -inf"),
    ("no rescale", "running sum not rescaled"),
])
def test_online_softmax_triton_checker_names_kernel_bugs(block, bug, hint):
    check.online_softmax_triton(_launcher(_online_softmax_kernel, "none", block))
    with pytest.raises(AssertionError, match=hint):
        check.online_softmax_triton(_launcher(_online_softmax_kernel, bug, block))


@triton_only
def test_triton_checker_reports_blank_kernel_as_not_implemented(capsys):
    @triton.jit
    def blank_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
        raise NotImplementedError("Exercise 2.2: the kernel body")

    def fn(x):
        y = torch.empty_like(x)
        blank_kernel[(1,)](x, y, BLOCK=8)
        return y
    check.softmax_triton(fn)
    assert "not implemented yet" in capsys.readouterr().out


def test_on_course_device_moves_arguments_there_and_results_back(monkeypatch):
    from labkit.check import core
    seen = []

    def kernel_wrapper(x, scale=None):
        seen.append((x.device.type, scale.device.type))
        return x * scale, x
    monkeypatch.setattr(device, "DEVICE", torch.device("meta"))  # stands in for "cuda"
    moved = core.on_course_device(kernel_wrapper)
    with pytest.raises(NotImplementedError):  # meta tensors cannot come back: proves they went
        moved(torch.ones(2), scale=torch.ones(2))
    assert seen == [("meta", "meta")]
    monkeypatch.setattr(device, "DEVICE", torch.device("cpu"))
    out = core.on_course_device(kernel_wrapper)(torch.ones(2), scale=torch.full((2,), 3.0))
    assert isinstance(out, tuple) and out[0].tolist() == [3.0, 3.0]
    assert core.on_course_device(42) == 42  # not a function: run_checker says what it wants
