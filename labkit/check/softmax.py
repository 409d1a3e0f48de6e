"""Checkers for the PyTorch softmax exercises of notebooks 00-03: cases, probes and the hints they give."""
from __future__ import annotations

import math

import torch

from labkit import softmax as ref
from labkit.check.evidence import overflow, raises_like, reads
from labkit.check.twins import twin
from labkit.check.core import Case, Checker, DtypeMismatch, Probe, checker, describe, is_number, rng_seed
from labkit.check.tolerance import assert_close

# ---------------------------------------------------------------------------- inputs


def randn(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(rng_seed(seed))
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


def ascending(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Rows whose values grow along the row, so the running max changes in every block."""
    g = torch.Generator().manual_seed(rng_seed(seed))
    base = torch.linspace(-20.0, 20.0, cols, dtype=torch.float64)
    return (base + 0.5 * torch.randn(rows, cols, generator=g, dtype=torch.float64)).float()


def _rows_at(*centres: float, seed: int, cols: int = 9) -> torch.Tensor:
    """One random row per centre: rows at very different scales."""
    return randn(len(centres), cols, seed=seed) + torch.tensor(centres).unsqueeze(1)


NONSQUARE = randn(3, 5, seed=90)  # rows and columns differ, so a wrong axis cannot pass or broadcast


# ----------------------------------------------------- observations on a probe's output


def output_of(outcome) -> torch.Tensor:
    """The student's output as a float64 tensor (a malformed output raises: the probe is skipped)."""
    return outcome.value.detach().double()


def all_ones(t: torch.Tensor, tol: float = 1e-3) -> bool:
    return bool(torch.isfinite(t).all() and (t - 1).abs().max() <= tol)


def shown(t: torch.Tensor) -> str:
    return ", ".join(f"{v:.3g}" for v in t.flatten()[:4].tolist()) + (", ..." if t.numel() > 4 else "")


def _unkept_row(x, dim=-1, **_):
    """The twin of a reduction without keepdim broadcast back against x (it raises on a non-square x)."""
    return x - x.amax(dim=dim)


def _unkept_block(x, dim=-1, block_size=1, **_):
    """The same inside the online softmax's first block."""
    block = x.movedim(dim, -1)[..., :block_size]
    return block - block.amax(dim=-1)


def _error_says(text: str, seen: str):
    return reads("error")(lambda o, p: text in o.error and seen)


@reads("shape")
def _shape_changed(o, p):
    x = p.args[0]
    return tuple(o.value.shape) != tuple(x.shape) and \
        f"output shape {tuple(o.value.shape)} for an input of shape {tuple(x.shape)}"


@reads("shape")
def _other_axis(o, p):
    out, dim = output_of(o), p.kwargs["dim"] % o.value.dim()
    other = 1 - dim
    return not all_ones(out.sum(dim)) and all_ones(out.sum(other)) and \
        f"with dim={dim} the slices along dim {other} sum to 1; those along dim {dim} sum to {shown(out.sum(dim))}"


def _whole_tensor(o, p):
    out = output_of(o)
    return not all_ones(out.sum(-1)) and abs(out.sum().item() - 1) < 1e-3 and \
        "the whole tensor sums to 1, its rows do not"


def not_normalised(o, p):
    """Finite rows that do not sum to 1 (an inf comes from elsewhere: no division leaves exp(x - m) <= 1)."""
    out = output_of(o)
    sums = out.sum(-1)
    if all_ones(sums) or not torch.isfinite(sums).all():
        return False
    seen = f"rows sum to {shown(sums)}"
    if torch.isfinite(out).all() and (out.amax(-1) - 1).abs().max() < 1e-3:
        seen += "; each row's largest value is 1"
    elif all_ones(sums / out.shape[-1]):
        seen += f", the row length {out.shape[-1]}"
    return seen


@overflow
def nonfinite(o, p):
    out = output_of(o)
    return not torch.isfinite(out).all() and f"output holds {shown(out[~torch.isfinite(out)])}"


def _top_row_only(reference):
    """Rows at very different scales: the top row right, the bottom one lost (NaN, 0 or wrong)."""
    @reads("nan")
    def violated(o, p):
        out, want = output_of(o), reference(*p.args, **p.kwargs).double()
        ok = [bool(torch.allclose(out[i], want[i], rtol=1e-3, atol=1e-5)) for i in (0, -1)]
        return ok[1] and not ok[0] and f"the row around {p.args[0][-1].mean():.0f} is right, the row " \
            f"around {p.args[0][0].mean():.0f} gives {shown(out[0])}"
    return violated


def _probe(label, x, hint, violated, **kwargs) -> Probe:
    return Probe(label, (x,), kwargs, hint, violated)


DEFINITION = "each row is exp(x_i) / sum_j exp(x_j) over `dim` (so it sums to 1)"
BASE2 = ("your weights are softmax(x · ln 2), a softmax in base 2: exp2(x) is 2^x, not e^x; use exp, or exp2 of "
         "x · log2 e")


def same_values(out, expected) -> None:
    """A twin's comparison for a softmax: the same values to 1e-4 (NaN equal to NaN), the dtype left aside."""
    got = (out[0] if isinstance(out, (tuple, list)) else out).detach().double()
    if got.shape != expected.shape or not torch.allclose(got, expected.double(), rtol=1e-4, atol=1e-7, equal_nan=True):
        raise AssertionError("differs")


def base2_probe(**kwargs) -> Probe:
    """Moderate rows: weights equal to softmax(x · ln 2) are a softmax taken with exp2 (or 2**x)."""
    def in_base_2(x, dim=-1, **_):
        return torch.softmax(x.double() * math.log(2.0), dim).to(x.dtype)
    return _probe("moderate rows", NONSQUARE, BASE2, twin(in_base_2, compare=same_values), **kwargs)


_KEEPDIM = ("a reduced tensor (sum or max over `dim`) was broadcast against the wrong axis: keep the reduced "
            "dimension (keepdim=True) so it lines up with `dim`")
_MAX_TUPLE = "x.max(dim) returns a (values, indices) pair: use x.amax(dim=dim, keepdim=True)"
_SHAPE = ("the output must have the input's shape: if you moved `dim` to the end (movedim(dim, -1)), move it "
          "back (movedim(-1, dim))")
_WRONG_DIM = "reduced over the wrong axis: reduce over the `dim` argument, not always the last one"
_WHOLE = "each slice along `dim` must sum to 1, not the whole tensor: sum over `dim` only"
OVERFLOW = ("exp overflowed on large inputs: subtract each row's max before exp, so every exponent "
             "x - max is <= 0")
_OWN_MAX = ("each row needs its own max (amax over `dim`, keepdim=True): one max for the whole tensor makes "
            "exp underflow to 0 in rows far below it")


def shape_probes(x: torch.Tensor = NONSQUARE, **kwargs) -> list[Probe]:
    """Broadcasting, shape and axis on a (3, 5) input: the first things a softmax-like function gets wrong."""
    return [
        _probe("non-square input", x, _KEEPDIM, raises_like(_unkept_row, "a (3, 5) input raised what x - "
                                                            "x.amax(dim) raises without keepdim"), **kwargs),
        *([_probe("non-square input", x, _KEEPDIM, raises_like(_unkept_block, "a block raised what block - "
                                                               "block.amax(-1) raises without keepdim"), **kwargs)]
          if "block_size" in kwargs else []),
        _probe("non-square input", x, _MAX_TUPLE,
               _error_says("return_types", "x.max(...) gave (values, indices) where a tensor was needed"), **kwargs),
        _probe("non-square input, dim=0", x, _SHAPE, _shape_changed, **{**kwargs, "dim": 0}),
        _probe("non-square input, dim=0", x, _WRONG_DIM, _other_axis, **{**kwargs, "dim": 0}),
        _probe("non-square input", x, _WHOLE, _whole_tensor, **kwargs),
    ]


def float16_case(label: str = "float16 input", **kwargs) -> Case:
    return Case(label, (randn(3, 17, seed=6, dtype=torch.float16),), kwargs,
                hint="a float16 input gives a float16 output, as accurate as float32 arithmetic rounded once")


_PROMOTE = ("float64 stays float64: compute in torch.promote_types(x.dtype, torch.float32) (float32 for "
            "float16/bfloat16/float32 inputs, float64 for float64) and cast back with .to(x.dtype); x.float() "
            "rounds a float64 input to float32")


def float64_case(label: str = "float64 input (judged at float64 tolerance)", **kwargs) -> Case:
    """A float64 input: a result that went through float32 is off by ~1e-7, far above float64's rtol of 1e-8."""
    return Case(label, (randn(4, 9, seed=24, scale=10.0, dtype=torch.float64),), kwargs,
                hint="a float64 input is computed in float64 and judged at float64 tolerance (rtol 1e-8)")


def float64_probe(reference, **kwargs) -> Probe:
    """Names the float32 round trip: right to float32 accuracy, wrong at float64's."""
    x = randn(3, 8, seed=99, scale=10.0, dtype=torch.float64)

    def violated(o, p):
        out = o.value.detach()
        want = reference(*p.args, **p.kwargs).double()
        via32 = reference(p.args[0].float(), **p.kwargs).double()
        err, err32 = (out.double() - want).abs().max().item(), (out.double() - via32).abs().max().item()
        return out.dtype == torch.float64 and err > 1e-9 and err32 <= 2e-6 and \
            f"float64 input: worst error {err:.1g}, the size of float32 rounding"
    return _probe("float64 input", x, _PROMOTE, violated, **kwargs)


def _softmax_cases(extra: list[Case]) -> list[Case]:
    return [
        Case("small random rows", (randn(4, 10, seed=1),), hint=DEFINITION),
        Case("square input (rows and columns both 5)", (randn(5, 5, seed=2),),
             hint="the reduction runs along `dim`, broadcast back along it"),
        Case("3-D input, dim=1", (randn(2, 6, 3, seed=3),), {"dim": 1},
             hint="reduce over `dim`, whatever the number of dimensions"),
        Case("dim=0", (randn(6, 3, seed=4),), {"dim": 0}, hint="reduce over `dim`, not the last axis"),
        Case("single column: softmax of one value is 1", (randn(5, 1, seed=5),)),
        float16_case(),
        *extra,
        float64_case(),
    ]


# ------------------------------------------------------------------------- checkers


@checker
def normalize() -> Checker:
    """e / sum(e) along ``dim`` (notebook 00). Properties:
    each slice along ``dim`` sums to 1 and keeps the proportions of e;
    ``dim`` is honoured (dim=0, dim=1 of 3-D, any shape);
    the output has e's shape and dtype; e is not modified; the divisor is the plain sum (a negative entry
    counts negatively)."""
    def positive(*shape, seed):
        return randn(*shape, seed=seed).exp()
    cases = [
        Case("rows of 10", (positive(4, 10, seed=51),), hint="each row of e / sum(e) sums to 1"),
        Case("square input (rows and columns both 5)", (positive(5, 5, seed=52),),
             hint="each row is divided by its own sum, broadcast along `dim`"),
        Case("dim=0", (positive(6, 3, seed=53),), {"dim": 0}, hint="reduce over `dim`, not the last axis"),
        Case("3-D input, dim=1", (positive(2, 4, 3, seed=54),), {"dim": 1},
             hint="reduce over `dim`, whatever the number of dimensions"),
        Case("float16 input", (positive(3, 17, seed=55).half(),)),
        Case("a row with a negative entry: e / sum(e), the plain sum", (torch.tensor([[2.0, -1.0, 3.0]]),),
             hint="divide by the plain sum of e along `dim`, not the sum of |e| (an L1 norm)"),
        Case("tiny entries (about 1e-8): e / sum(e) at any scale", (positive(3, 6, seed=56) * 1e-8,),
             hint="e / sum(e) whatever the scale of e: with entries about 1e-8 an epsilon or a clamp added to the "
                  "sum shows"),
    ]
    e = NONSQUARE.exp()
    probes = shape_probes(e)
    probes.append(_probe("positive rows", e, "each slice along `dim` must sum to 1: divide e by its sum over "
                         "`dim` (e.sum(dim=dim, keepdim=True))", not_normalised))
    return Checker("normalize", cases, ref.normalize, probes)


@checker
def naive_softmax() -> Checker:
    """exp(x) / sum exp(x) over ``dim`` (notebook 01). Properties:
    each slice along ``dim`` sums to 1 and is proportional to exp(x);
    ``dim`` is honoured; the output has x's shape and dtype;
    float16 inputs are computed in float32 (exp of a float16 above 11.1 overflows float16), float64 in float64;
    x is not modified."""
    cases = _softmax_cases([
        Case("float16 input with values up to 15", (randn(3, 12, seed=10, scale=3.0, shift=9.0).half(),),
             hint="exp of a value above 11.1 overflows float16 but not float32: compute in float32"),
    ])
    probes = shape_probes() + [
        base2_probe(),
        _probe("moderate rows", NONSQUARE, "the rows do not sum to 1: divide exp(x) by the sum of exp(x) over "
               "`dim`", not_normalised),
        _probe("float16 values around 12", randn(2, 6, seed=91, shift=12.0).half(),
               "exp of a float16 value above 11.1 overflows float16 (max 65504): compute in "
               "torch.promote_types(x.dtype, torch.float32), then cast the result back to x.dtype", nonfinite),
        float64_probe(ref.naive_softmax),
    ]
    return Checker("naive_softmax", cases, ref.naive_softmax, probes)


@checker
def safe_softmax() -> Checker:
    """exp(x - max x) / sum exp(x - max x) over ``dim`` (notebook 02). Properties:
    each slice along ``dim`` sums to 1; ``dim`` is honoured; output has x's shape and dtype;
    no overflow for large inputs and no 0/0 for very negative ones (each row shifted by its own max);
    rows at very different scales are all right; float64 is computed in float64; x is not modified."""
    cases = _softmax_cases([
        Case("large inputs (values around ±1000)", (randn(3, 8, seed=7, scale=1000.0),),
             hint="exp(x) overflows for x > 88.7: the result must stay finite for large x"),
        Case("very negative inputs (around -1000)", (randn(3, 8, seed=8, shift=-1000.0),),
             hint="every exp(x) underflows to 0 here: the result must still be a softmax, not 0/0"),
        Case("rows at very different scales", (_rows_at(-300.0, 0.0, 150.0, 300.0, seed=9),),
             hint="each row is shifted by its own max, whatever the other rows hold"),
    ])
    probes = shape_probes() + [
        base2_probe(),
        _probe("moderate rows", NONSQUARE, "the rows do not sum to 1: divide exp(x - m) by the sum of the same "
               "exp(x - m) over `dim`", not_normalised),
        _probe("rows around 60 and 200", _rows_at(60.0, 200.0, seed=92, cols=5), _OWN_MAX,
               _top_row_only(ref.safe_softmax)),
        _probe("values around ±1000", randn(2, 6, seed=93, scale=1000.0), OVERFLOW, nonfinite),
        float64_probe(ref.safe_softmax),
    ]
    return Checker("safe_softmax", cases, ref.safe_softmax, probes)


def _shift_response(o, p):
    """Row 1 is row 0 + 10, so its logsumexp must be 10 more."""
    out = output_of(o)
    step = (out[1] - out[0]).item()
    return abs(step - 10.0) > 1e-3 and f"adding 10 to a row changed its result by {step:.3g}, not 10"


@reads("shape")
def _lse_keepdim(o, p):
    x, dim = p.args[0], p.kwargs.get("dim", -1)
    return tuple(o.value.shape) == tuple(x.sum(dim, keepdim=True).shape) and \
        f"output shape {tuple(o.value.shape)} for an input of shape {tuple(x.shape)}"


@reads("shape")
def _lse_wrong_axis(o, p):
    x = p.args[0]
    want = tuple(x.sum(p.kwargs["dim"]).shape)
    return tuple(o.value.shape) != want and f"with dim=0 the output has shape {tuple(o.value.shape)}, not {want}"


@reads("nan")
def _nan_for_minus_inf(o, p):
    out = output_of(o)
    return bool(torch.isnan(out[1]).any()) and "a row of all -inf gave NaN"


@checker
def logsumexp() -> Checker:
    """log sum exp(x) over ``dim``, ``dim`` reduced away (notebook 02). Properties:
    the value m + log sum exp(x - m); the shape of x without ``dim``; ``dim`` honoured; the input's dtype;
    finite for large and very negative inputs (each row's own max); -inf for a row of all -inf, +inf for a
    row holding +inf; a size-1 axis other than ``dim`` kept; float64 is computed in float64."""
    all_neg_inf = randn(3, 6, seed=21)
    all_neg_inf[1] = -math.inf
    pos_inf = randn(3, 6, seed=22)
    pos_inf[1, 2] = math.inf
    shifted = randn(1, 6, seed=94)
    cases = [
        Case("small random rows", (randn(4, 10, seed=17),), hint="log sum exp(x) of each row"),
        Case("dim=0", (randn(6, 3, seed=18),), {"dim": 0}, hint="reduce over `dim`, not the last axis"),
        Case("large inputs (around 1000)", (randn(3, 8, seed=19, shift=1000.0),),
             hint="exp(x) overflows for x > 88.7: the result must stay finite for large x"),
        Case("very negative inputs (around -1000)", (randn(3, 8, seed=20, shift=-1000.0),),
             hint="every exp(x) underflows to 0 here: the result must still be finite"),
        Case("rows at very different scales", (_rows_at(-1000.0, 0.0, 1000.0, seed=23),),
             hint="each row is shifted by its own max, whatever the other rows hold"),
        Case("a wide row: values 0 and -200 (float32)", (torch.tensor([[0.0, -200.0, -100.0]]),),
             hint="shift by each row's max, so that every exponent x - max is <= 0: against any smaller shift "
                  "(the min, say) exp overflows once a row spans more than 88.7"),
        Case("a row that is all -inf (the answer is -inf, as torch.logsumexp)", (all_neg_inf,)),
        Case("a row holding +inf (the answer is +inf, as torch.logsumexp)", (pos_inf,),
             hint="a row holding +inf has logsumexp +inf: with m = +inf, x - m is inf - inf = NaN, so shift by 0 "
                  "where the max is infinite (either sign)"),
        Case("a (2, 1, 5) input: a size-1 axis before the reduced one", (randn(2, 1, 5, seed=24),),
             hint="keep the max's reduced axis (keepdim=True) until the end: squeezing it drops the size-1 axis "
                  "too, and the shapes then broadcast to (2, 2)"),
        float16_case(),
        float64_case(),
    ]
    probes = [
        _probe("non-square input", NONSQUARE, "the result has one dimension fewer than x: reduce `dim` away "
               "(no keepdim on the final result)", _lse_keepdim),
        _probe("non-square input, dim=0", NONSQUARE, _WRONG_DIM, _lse_wrong_axis, dim=0),
        _probe("a row and the same row + 10", torch.cat([shifted, shifted + 10.0]),
               "lse(x + c) = lse(x) + c: add the max back after the log: lse = m + log sum exp(x - m)",
               _shift_response),
        _probe("rows around 800 and 1000", _rows_at(800.0, 1000.0, seed=95, cols=5),
               _OWN_MAX.replace("exp underflow to 0", "exp underflow to 0 (log 0 = -inf)"),
               _top_row_only(ref.logsumexp)),
        _probe("values around 1000", randn(2, 6, seed=96, shift=1000.0),
               "exp overflowed on large inputs: factor the max out: lse = m + log sum exp(x - m)", nonfinite),
        _probe("a row of all -inf", all_neg_inf, "a row of all -inf has logsumexp -inf: with m = -inf, x - m is "
               "-inf - (-inf) = NaN, so shift by 0 where the max is infinite", _nan_for_minus_inf),
        float64_probe(ref.logsumexp),
    ]
    return Checker("logsumexp", cases, ref.logsumexp, probes)


_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _threshold_seen(o, p):
    """What the returned number is, in terms of the dtype's finfo (empty when it is none of them)."""
    value, info = float(o.value), torch.finfo(p.args[0])
    near = lambda a, b: math.isfinite(a) and abs(a - b) <= 1e-3 * abs(b)  # noqa: E731
    for seen, target in [("log2 of finfo.max", math.log2(info.max)), ("log10 of finfo.max", math.log10(info.max)),
                         ("ln of finfo.tiny", math.log(info.tiny)), ("-ln of finfo.tiny", -math.log(info.tiny)),
                         ("finfo.max itself", info.max)]:
        if near(value, target):
            return seen
    for other in _FLOATS:
        if other != p.args[0] and near(value, math.log(torch.finfo(other).max)):
            return f"the threshold of {str(other).replace('torch.', '')}, {value:.4g}, for {p.args[0]}"
    return ""


def _threshold_probe(dtype, seen_starts, hint) -> Probe:
    def violated(o, p):
        seen = _threshold_seen(o, p)
        return seen.startswith(seen_starts) and seen
    return Probe(str(dtype).replace("torch.", ""), (dtype,), {}, hint, violated)


@checker
def overflow_threshold() -> Checker:
    """ln(finfo(dtype).max), to 0.1% and never above it, for each floating dtype (notebook 01). A number (int, float
    or numpy scalar), not a tensor. Properties:
    it is the natural log of the largest finite value of the given dtype (float32, float16, bfloat16, float64);
    exp of it does not overflow (not above ln(finfo.max) by more than a float32 rounding)."""
    cases = [Case(str(d).replace("torch.", ""), (d,), hint="the natural log of torch.finfo(dtype).max")
             for d in _FLOATS]

    def within_a_thousandth(out, expected):
        if not is_number(out):  # numpy scalars are numbers; tensors are not
            raise DtypeMismatch(f"returned {describe(out)}, expected a number (a float)")
        assert_close(float(out), expected, rtol=1e-3, atol=0.0, what="threshold")
        if float(out) > expected + 1e-5 * abs(expected):  # a threshold x must have a finite exp(x)
            raise AssertionError(f"threshold: {float(out):.6g} is above ln(finfo.max) = {expected:.6g}, "
                                 "so exp of it overflows")

    def rounded_up(o, p):
        value, exact = float(o.value), math.log(torch.finfo(p.args[0]).max)
        return exact * (1 + 1e-5) < value <= exact * (1 + 1e-3) and f"{value:.6g} > ln(finfo.max) = {exact:.6g}"

    f16 = torch.float16
    probes = [
        Probe("float16", (f16,), {}, "the threshold is rounded up past ln(finfo.max) (a power of 2, or a ceil): "
              "exp of it is inf in that dtype; return math.log(torch.finfo(dtype).max) itself", rounded_up),
        _threshold_probe(f16, "log2", "exp is base e: take the natural log (math.log), not log2"),
        _threshold_probe(f16, "log10", "exp is base e: take the natural log (math.log), not log10"),
        _threshold_probe(f16, "ln of finfo.tiny", "that is where exp underflows (ln of finfo.tiny); overflow "
                         "is set by the largest value, finfo.max"),
        _threshold_probe(f16, "-ln of finfo.tiny", "-ln(finfo.tiny) is close but not equal: the threshold is "
                         "the log of the largest value, finfo.max"),
        _threshold_probe(f16, "finfo.max", "finfo.max is the largest value; the threshold is its natural log"),
        _threshold_probe(f16, "the threshold of", "the answer depends on the dtype argument: use torch.finfo(dtype) of "
                         "the dtype you are given (float16 overflows far sooner than float32)"),
    ]
    return Checker("overflow_threshold", cases, ref.overflow_threshold, probes, compare=within_a_thousandth,
                   dtype_hint="return a number, math.log(torch.finfo(dtype).max), not a tensor: .item() gives a "
                              "tensor's number (a numpy scalar is a number too)")
