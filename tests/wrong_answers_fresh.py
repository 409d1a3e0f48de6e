"""A fresh set of wrong (and unusual right) answers to the 27 exercises, written from the notebooks'
statements and labkit's reference implementations only, without reading the checkers.

WRONG: the mistakes students make, each with the words a good hint would use (``names``).
RIGHT: correct but unusual answers, which every checker must accept.
WITNESS[i]: a function of WRONG[i].fn that returns a short description of one valid input on
which the wrong answer differs from labkit's reference (None when it does not differ):
``tests/verify_fresh.py`` runs them all, so every wrong answer here is shown to be wrong.
"""
from __future__ import annotations

import functools
import math

import labkit  # noqa: F401  (first: without a GPU this switches Triton to its interpreter)
import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from labkit import attention, attention_backward, derivatives, elimination, hbm, iterative, poisson
from labkit import softmax
from labkit.kernels.flash_forward import LOG2E

from wrong_answer import WrongAnswer

import triton
import triton.language as tl

WRONG: list[WrongAnswer] = []
WITNESS: list = []
RIGHT: list[tuple[str, callable]] = []


def _add(exercise, mistake, names, witness=None):
    def deco(fn):
        WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
        WITNESS.append(witness)
        return fn
    return deco


def _right(exercise):
    def deco(fn):
        RIGHT.append((exercise, fn))
        return fn
    return deco


# ============================================================ witnesses: "differs from the reference"
def _tol(dtype):
    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2, 2e-3
    if dtype == torch.float32:
        return 1e-4, 1e-5
    return 1e-9, 1e-11


def _diff(a, b, path="out"):
    """A description of how a differs from b (None if they agree)."""
    if isinstance(b, (tuple, list)):
        if not isinstance(a, (tuple, list)) or len(a) != len(b):
            return f"{path}: {type(a).__name__} instead of a {len(b)}-tuple"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            return f"{path}: {type(a).__name__} instead of a tensor"
        if a.shape != b.shape:
            return f"{path}: shape {tuple(a.shape)} instead of {tuple(b.shape)}"
        if a.dtype != b.dtype:
            return f"{path}: dtype {a.dtype} instead of {b.dtype}"
        rtol, atol = _tol(b.dtype)
        if not torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True):
            err = (a.double() - b.double()).abs().nan_to_num(float("inf")).max().item()
            return f"{path}: values differ (max |err| {err:.3g})"
        return None
    if isinstance(b, np.ndarray):
        a_arr = np.asarray(a)
        if not isinstance(a, np.ndarray):
            return f"{path}: {type(a).__name__} instead of an ndarray"
        if a_arr.shape != b.shape:
            return f"{path}: shape {a_arr.shape} instead of {b.shape}"
        if a_arr.dtype.kind != b.dtype.kind:
            return f"{path}: dtype {a_arr.dtype} instead of {b.dtype}"
        if not np.allclose(a_arr, b, rtol=1e-9, atol=1e-12, equal_nan=True):
            return f"{path}: values differ (max |err| {np.nanmax(np.abs(a_arr - b)):.3g})"
        return None
    if isinstance(b, bool) or isinstance(b, (int, np.integer)):
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool) or a != b:
            return f"{path}: {a!r} instead of {b!r}"
        return None
    if isinstance(b, float):
        if not isinstance(a, (float, int)) or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            return f"{path}: {a!r} instead of {b!r}"
        return None
    return None if a == b else f"{path}: {a!r} instead of {b!r}"


def _clone(x):
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    if sp.issparse(x):
        return x.copy()
    if isinstance(x, softmax.OnlineState):
        return softmax.OnlineState(x.m.clone(), x.d.clone())
    if isinstance(x, list):
        return [_clone(y) for y in x]
    return x


def _equal_inputs(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if sp.issparse(a):
        return (a != b).nnz == 0
    if isinstance(a, softmax.OnlineState):
        return _equal_inputs(a.m, b.m) and _equal_inputs(a.d, b.d)
    if isinstance(a, list):
        return all(_equal_inputs(x, y) for x, y in zip(a, b))
    return True


def differs(ref, *args, **kwargs):
    """witness: fn(*args, **kwargs) differs from ref(*args, **kwargs) (values, shape, dtype,
    an exception, or a modified input)."""
    def witness(fn):
        ins = [_clone(a) for a in args]
        kws = {k: _clone(v) for k, v in kwargs.items()}
        expected = ref(*[_clone(a) for a in args], **{k: _clone(v) for k, v in kwargs.items()})
        try:
            got = fn(*ins, **kws)
        except Exception as err:  # noqa: BLE001
            return f"raises {type(err).__name__}: {str(err)[:80]}"
        for a, b in zip(ins, args):
            if not _equal_inputs(a, b):
                return "modifies its input"
        for k in kwargs:
            if not _equal_inputs(kws[k], kwargs[k]):
                return f"modifies its input {k}"
        return _diff(got, expected)
    return witness


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=_g(seed), dtype=torch.float64) * scale).to(dtype)


def _ct(x):
    return torch.promote_types(x.dtype, torch.float32)


# ================================================================ normalize (notebook 00)
_E = torch.rand(4, 6, generator=_g(1)) + 0.1  # positive, like exponentials
_E_SQ = torch.rand(5, 5, generator=_g(2)) + 0.1


# differs: (4, 6) float32 with dim=0 (shape mismatch); (5, 5) dim=0 gives wrong values
@_add("normalize", "adds the summed axis back at the end ([..., None]) whatever dim is",
      [r"keepdim", r"axis", r"broadcast", r"\bdim\b", r"line[s]? up"],
      differs(softmax.normalize, _E_SQ, dim=0))
def normalize(e, dim=-1):
    return e / e.sum(dim=dim)[..., None]


# differs: (5, 5) float32, dim=0
@_add("normalize", "always sums over the last axis, ignoring the dim argument",
      [r"\bdim\b", r"axis", r"wrong (axis|dimension)"],
      differs(softmax.normalize, _E_SQ, dim=0))
def normalize(e, dim=-1):
    return e / e.sum(dim=-1, keepdim=True)


# differs: a float16 input comes back float32
@_add("normalize", "upcasts to float32 and returns float32 for a float16 input",
      [r"dtype", r"float16", r"half", r"fp16", r"float32"],
      differs(softmax.normalize, _E.half()))
def normalize(e, dim=-1):
    e = e.float()
    return e / e.sum(dim=dim, keepdim=True)


# differs: any input with more than one slice: (4, 6)
@_add("normalize", "divides by the sum of the whole tensor instead of the sum along dim",
      [r"\bdim\b", r"axis", r"whole", r"total", r"all elements", r"every element", r"each slice", r"along"],
      differs(softmax.normalize, _E))
def normalize(e, dim=-1):
    return e / e.sum()


# differs: (4, 6): divides by the max, rows do not sum to 1
@_add("normalize", "divides by the maximum along dim instead of the sum",
      [r"\bsum", r"max"],
      differs(softmax.normalize, _E))
def normalize(e, dim=-1):
    return e / e.amax(dim=dim, keepdim=True)


# differs: modifies its argument
@_add("normalize", "divides in place (e /= ...), overwriting the caller's tensor",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(softmax.normalize, _E))
def normalize(e, dim=-1):
    e /= e.sum(dim=dim, keepdim=True)
    return e


# differs: a slice with a negative entry: [1, -2, 4] sums to 3, |.| sums to 7
@_add("normalize", "uses F.normalize(p=1), dividing by the sum of absolute values",
      [r"abs", r"sum", r"negative", r"\|"],
      differs(softmax.normalize, torch.tensor([[1.0, -2.0, 4.0], [0.5, 0.25, 0.25]])))
def normalize(e, dim=-1):
    return torch.nn.functional.normalize(e, p=1, dim=dim)


@_right("normalize")
def normalize(e, dim=-1):
    return torch.div(e, e.sum(dim=dim).unsqueeze(dim))


@_right("normalize")
def normalize(e, dim=-1):
    et = e.movedim(dim, -1)
    return (et / et.sum(-1, keepdim=True)).movedim(-1, dim)


# ================================================================ naive_softmax (notebook 01)
_X = _randn(4, 7, seed=3)
_XSQ = _randn(6, 6, seed=4)


# differs: (6, 6), dim=0
@_add("naive_softmax", "normalises along the last axis whatever dim says",
      [r"\bdim\b", r"axis", r"wrong (axis|dimension)"],
      differs(softmax.naive_softmax, _XSQ, dim=0))
def naive_softmax(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum(dim=-1, keepdim=True)).to(x.dtype)


# differs: float16 [[12, 0]]: exp(12) = inf in fp16 arithmetic -> NaN; float32 gives 1/(1+e^-12)
@_add("naive_softmax", "exponentiates in the input dtype: float16 overflows above 11.1",
      [r"float32", r"fp32", r"promote", r"upcast", r"overflow", r"float16", r"half", r"compute"],
      differs(softmax.naive_softmax, torch.tensor([[12.0, 0.0], [1.0, 2.0]]).half()))
def naive_softmax(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


# differs: float64 input computed in float32: errors ~1e-8, far above float64 rounding
@_add("naive_softmax", "computes in float32 with x.float(), losing float64 precision",
      [r"float64", r"double", r"precision", r"promote", r"x\.float", r"float32"],
      differs(softmax.naive_softmax, _randn(3, 50, seed=5, dtype=torch.float64, scale=5)))
def naive_softmax(x, dim=-1):
    e = torch.exp(x.float())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: float16 input -> float32 output
@_add("naive_softmax", "forgets to cast the result back: float16 in, float32 out",
      [r"dtype", r"cast", r"float16", r"half", r"fp16", r"\.to\("],
      differs(softmax.naive_softmax, _X.half()))
def naive_softmax(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return e / e.sum(dim=dim, keepdim=True)


# differs: (4, 7): exp of the sum instead of sum of the exps
@_add("naive_softmax", "divides by exp(sum x) instead of sum(exp x)",
      [r"sum of (the )?exp", r"exp.*sum", r"denominator", r"normali[sz]", r"sum"],
      differs(softmax.naive_softmax, _X))
def naive_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    return (torch.exp(xc) / torch.exp(xc.sum(dim=dim, keepdim=True))).to(x.dtype)


# differs: (4, 7): one sum over the whole tensor
@_add("naive_softmax", "sums the exponentials over the whole tensor, not along dim",
      [r"\bdim\b", r"axis", r"whole", r"total", r"each (row|slice)", r"along"],
      differs(softmax.naive_softmax, _X))
def naive_softmax(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum()).to(x.dtype)


# differs: modifies x (float32 input: x.to(float32) is x itself, exp_ writes into it)
@_add("naive_softmax", "exponentiates in place with exp_(), overwriting the input",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(softmax.naive_softmax, _X))
def naive_softmax(x, dim=-1):
    e = x.to(torch.promote_types(x.dtype, torch.float32)).exp_()
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


@_right("naive_softmax")
def naive_softmax(x, dim=-1):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    e = xt.exp()
    return (e / e.sum(-1).unsqueeze(-1)).movedim(-1, dim).to(x.dtype)


@_right("naive_softmax")
def naive_softmax(x, dim=-1):
    e = torch.exp(x.type(torch.promote_types(x.dtype, torch.float32)))
    return torch.div(e, torch.sum(e, dim, True)).type(x.dtype)


# ================================================================ overflow_threshold (notebook 01)
def _thr(dtype):
    return softmax.overflow_threshold(dtype)


# differs: every dtype (a negative number)
@_add("overflow_threshold", "takes the log of finfo.tiny (the smallest normal) instead of finfo.max",
      [r"\bmax", r"largest", r"tiny", r"smallest"],
      differs(_thr, torch.float32))
def overflow_threshold(dtype):
    return math.log(torch.finfo(dtype).tiny)


# differs: float32: log10(3.4e38) = 38.5, not 88.7
@_add("overflow_threshold", "uses log10 instead of the natural log",
      [r"natural", r"\bln\b", r"log10", r"base", r"math\.log\b", r"\be\b"],
      differs(_thr, torch.float32))
def overflow_threshold(dtype):
    return math.log10(torch.finfo(dtype).max)


# differs: float16 (should be 11.09)
@_add("overflow_threshold", "hard-codes float32's 88.72 for every dtype",
      [r"dtype", r"float16", r"half", r"depend", r"each", r"fp16", r"bfloat16"],
      differs(_thr, torch.float16))
def overflow_threshold(dtype):
    return 88.72283935546875


# differs: float32: -ln(eps) = 15.9
@_add("overflow_threshold", "uses finfo.eps instead of finfo.max",
      [r"\bmax", r"largest", r"eps"],
      differs(_thr, torch.float32))
def overflow_threshold(dtype):
    return -math.log(torch.finfo(dtype).eps)


# differs: float32: log2(max) = 128
@_add("overflow_threshold", "uses log2 instead of the natural log",
      [r"natural", r"\bln\b", r"log2", r"base", r"\be\b"],
      differs(_thr, torch.float32))
def overflow_threshold(dtype):
    return math.log2(torch.finfo(dtype).max)


# differs: float16: ln(65504) rounded to fp16 is 11.09375, and exp(11.09375) = 65758 overflows fp16
@_add("overflow_threshold", "computes the log in the dtype itself, so the threshold is rounded "
      "(fp16: 11.094, where exp already overflows)",
      [r"round", r"precision", r"python float", r"float64", r"exact", r"overflow", r"finite"],
      differs(_thr, torch.float16))
def overflow_threshold(dtype):
    return torch.log(torch.tensor(torch.finfo(dtype).max, dtype=dtype)).item()


# differs: float32: 32 ln 2 = 22.2 (and fp16: 16 ln 2 = 11.0904 > ln 65504 = 11.0898)
@_add("overflow_threshold", "takes the largest value as 2**bits, so returns bits * ln 2",
      [r"\bmax", r"largest", r"finfo"],
      differs(_thr, torch.float32))
def overflow_threshold(dtype):
    return math.log(2 ** torch.finfo(dtype).bits)


@_right("overflow_threshold")
def overflow_threshold(dtype):
    return float(torch.tensor(torch.finfo(dtype).max, dtype=torch.float64).log())


@_right("overflow_threshold")
def overflow_threshold(dtype):
    return math.log2(torch.finfo(dtype).max) * math.log(2.0)


# ================================================================ safe_softmax (notebook 02)
# differs: rows where the min is far below the max: [1000, 0] -> exp(1000) = inf
@_add("safe_softmax", "subtracts the row minimum instead of the maximum",
      [r"\bmax", r"overflow"],
      differs(softmax.safe_softmax, torch.tensor([[1000.0, 0.0], [1.0, 2.0]])))
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amin(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: rows of different scale: [[1000, 999], [0, 1]] -> row 2 underflows to 0/0
@_add("safe_softmax", "subtracts the maximum of the whole tensor, not of each row",
      [r"\brow", r"\bdim\b", r"per", r"each", r"whole", r"global", r"along", r"underflow"],
      differs(softmax.safe_softmax, torch.tensor([[1000.0, 999.0], [0.0, 1.0]])))
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.max())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: (4, 7): the max without keepdim does not broadcast (size mismatch); (6, 6) silently wrong
@_add("safe_softmax", "takes the max without keepdim, so it broadcasts against the wrong axis",
      [r"keepdim", r"broadcast", r"axis", r"line[s]? up"],
      differs(softmax.safe_softmax, _XSQ * 5))
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=dim))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: every input: Tensor.max(dim, keepdim) returns (values, indices)
@_add("safe_softmax", "subtracts x.max(dim, keepdim=True), which is a (values, indices) pair",
      [r"values", r"indices", r"tuple", r"named ?tuple", r"amax", r"\.max\("],
      differs(softmax.safe_softmax, _X))
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.max(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: float64 input: computed in float32
@_add("safe_softmax", "computes in float32 with x.float(), losing float64 precision",
      [r"float64", r"double", r"precision", r"promote", r"x\.float", r"float32"],
      differs(softmax.safe_softmax, _randn(3, 50, seed=6, dtype=torch.float64, scale=5)))
def safe_softmax(x, dim=-1):
    xc = x.float()
    e = torch.exp(xc - xc.amax(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: [[1, 2]]: numerator shifted, denominator not: result scaled by e^-2
@_add("safe_softmax", "shifts the numerator by the max but sums the unshifted exponentials",
      [r"denominator", r"both", r"sum", r"shift", r"normali[sz]", r"numerator"],
      differs(softmax.safe_softmax, _X))
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=dim, keepdim=True))
    return (e / torch.exp(xc).sum(dim=dim, keepdim=True)).to(x.dtype)


# differs: modifies x (float32)
@_add("safe_softmax", "subtracts the max in place (sub_), overwriting the input",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(softmax.safe_softmax, _X))
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    xc.sub_(xc.amax(dim=dim, keepdim=True))
    e = torch.exp(xc)
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


@_right("safe_softmax")
def safe_softmax(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    z = torch.sub(xc, xc.max(dim=dim, keepdim=True).values)
    e = z.exp()
    return e.div(e.sum(dim=dim, keepdim=True)).to(x.dtype)


@_right("safe_softmax")
def safe_softmax(x, dim=-1):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).transpose(dim, -1)
    e = torch.exp(xt - xt.amax(-1, keepdim=True))
    return (e * e.sum(-1, keepdim=True).reciprocal()).transpose(dim, -1).to(x.dtype)


# ================================================================ logsumexp (notebook 02)
# differs: a row of all -inf: m = -inf, -inf - (-inf) = NaN (should be -inf)
@_add("logsumexp", "no guard for a row of all -inf: -inf - (-inf) gives NaN",
      [r"-\s?inf", r"−∞", r"nan", r"masked", r"all.*inf", r"empty"],
      differs(softmax.logsumexp, torch.tensor([[-math.inf, -math.inf], [1.0, 2.0]])))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


# differs: [[100, 0]] in float32: exp(100) = inf
@_add("logsumexp", "log(sum(exp(x))) without the max shift: overflows for x > 88.7",
      [r"overflow", r"\bmax", r"shift", r"subtract", r"\bm\b"],
      differs(softmax.logsumexp, torch.tensor([[100.0, 0.0], [1.0, 2.0]])))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    return torch.log(torch.exp(xc).sum(dim=dim)).to(x.dtype)


# differs: (4, 7) -> shape (4, 1) instead of (4,)
@_add("logsumexp", "keeps the reduced dimension: returns shape (..., 1)",
      [r"shape", r"keepdim", r"squeeze", r"remov", r"reduced dim"],
      differs(softmax.logsumexp, _X))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m + torch.log(torch.exp(xc - m).sum(dim=dim, keepdim=True))).to(x.dtype)


# differs: (4, 7): result lowered by the row max
@_add("logsumexp", "forgets to add the max back: returns log(sum(exp(x - m)))",
      [r"add", r"\+ ?m\b", r"max", r"shift", r"back"],
      differs(softmax.logsumexp, _X * 3))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return torch.log(torch.exp(xc - m).sum(dim=dim)).to(x.dtype)


# differs: [[0, 1], [1000, 999]]: row 1 underflows against the global max 1000 -> -inf
@_add("logsumexp", "shifts by the max of the whole tensor, not of each row",
      [r"\brow", r"\bdim\b", r"per", r"each", r"whole", r"global", r"along", r"underflow"],
      differs(softmax.logsumexp, torch.tensor([[0.0, 1.0], [1000.0, 999.0]])))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.max()
    return (m + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


# differs: a row holding +inf: m = inf, inf - inf = NaN (torch.logsumexp and labkit give +inf)
@_add("logsumexp", "guards only m = -inf, so a row holding +inf gives NaN instead of +inf",
      [r"\+\s?inf", r"\binf", r"nan", r"infinit", r"isinf"],
      differs(softmax.logsumexp, torch.tensor([[math.inf, 0.0], [1.0, 2.0]])))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(m == -math.inf, torch.zeros_like(m), m)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


# differs: (4, 7): log of the mean is log n lower
@_add("logsumexp", "takes the log of the mean instead of the sum",
      [r"mean", r"\bsum", r"log ?\(?n", r"average"],
      differs(softmax.logsumexp, _X))
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).mean(dim=dim))).to(x.dtype)


@_right("logsumexp")
def logsumexp(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = m.masked_fill(torch.isinf(m), 0.0)
    return (m + (xc - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim).to(x.dtype)


@_right("logsumexp")
def logsumexp(x, dim=-1):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m = xt.sort(dim=-1, descending=True).values[..., 0]
    base = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return (base + torch.log(torch.sum(torch.exp(xt - base[..., None]), dim=-1))).to(x.dtype)


# ================================================================ merge_states (notebook 03)
def _st(m, d, dtype=torch.float64):
    return softmax.OnlineState(torch.tensor(m, dtype=dtype), torch.tensor(d, dtype=dtype))


_SA = _st([1.0, -math.inf, 3.0, 6.0], [2.0, 0.0, 1.5, 1.0])
_SB = _st([2.0, -math.inf, -math.inf, 5.0], [1.0, 0.0, 0.0, 3.0])


# differs: two empty states (-inf, 0): NaN instead of (-inf, 0)
@_add("merge_states", "no guard when both maxima are -inf: -inf - (-inf) gives NaN",
      [r"-\s?inf", r"−∞", r"nan", r"empty", r"identity"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    m = torch.maximum(a.m, b.m)
    return softmax.OnlineState(m, a.d * torch.exp(a.m - m) + b.d * torch.exp(b.m - m))


# differs: row 0: b's sum is not rescaled to the common max
@_add("merge_states", "rescales a's sum but adds b's sum unscaled",
      [r"rescal", r"\bscal", r"exp\(", r"b\.d", r"\bb\b", r"both"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d * torch.exp(a.m - base) + b.d)


# differs: row 0: m = min
@_add("merge_states", "takes the minimum of the two maxima",
      [r"\bmax", r"minimum", r"\bmin\b"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    m = torch.minimum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d * torch.exp(a.m - base) + b.d * torch.exp(b.m - base))


# differs: row 0: sums added without rescaling
@_add("merge_states", "adds the two sums without rescaling either",
      [r"rescal", r"\bscal", r"exp\(", r"factor"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    return softmax.OnlineState(torch.maximum(a.m, b.m), a.d + b.d)


# differs: row 0: factor e^(m - m_a) instead of e^(m_a - m)
@_add("merge_states", "rescales with exp(m - m_a), the sign of the exponent flipped",
      [r"sign", r"negat", r"exp\(m_?a ?- ?m", r"flip", r"rescal", r"revers"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d * torch.exp(base - a.m) + b.d * torch.exp(base - b.m))


# differs: modifies a.d and b.d
@_add("merge_states", "rescales a.d and b.d in place (mul_), modifying the input states",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d.mul_(torch.exp(a.m - base)).add_(b.d.mul_(torch.exp(b.m - base))))


# differs: float64 states come back as float32
@_add("merge_states", "computes the merged sum in float32 (.float()), whatever the states' dtype",
      [r"dtype", r"float64", r"double", r"float32", r"precision"],
      differs(softmax.merge_states, _SA, _SB))
def merge_states(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d.float() * torch.exp(a.m - base).float()
                               + b.d.float() * torch.exp(b.m - base).float())


@_right("merge_states")
def merge_states(a, b):
    a_first = a.m >= b.m
    m = torch.where(a_first, a.m, b.m)
    lo = torch.where(a_first, b.m, a.m)
    d_hi, d_lo = torch.where(a_first, a.d, b.d), torch.where(a_first, b.d, a.d)
    gap = torch.where(torch.isinf(m), torch.zeros_like(m), lo - m)
    return softmax.OnlineState(m, d_hi + d_lo * torch.exp(gap))


@_right("merge_states")
def merge_states(a, b):
    m = torch.max(a.m, b.m)
    base = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    lse = torch.logaddexp(a.m + a.d.log(), b.m + b.d.log())
    return softmax.OnlineState(m, torch.exp(lse - base))


# ================================================================ merge_states_many (notebook 03)
def _many_ref(states):
    return functools.reduce(softmax.merge_states, states)


def _states(k, rows, seed=0, empty_row=True, dtype=torch.float64):
    g = _g(seed)
    out = []
    for i in range(k):
        m = torch.randn(rows, generator=g, dtype=torch.float64) * 3 - 2
        d = torch.rand(rows, generator=g, dtype=torch.float64) * 5 + 1
        if empty_row:
            m[0], d[0] = -math.inf, 0.0
        out.append(softmax.OnlineState(m.to(dtype), d.to(dtype)))
    return out


_MANY = _states(4, 5, seed=7)


# differs: 4 states of 5 rows: stacked along dim 1, reduced along dim 0 -> shape (4,)
@_add("merge_states_many", "stacks the states along dim=1 but reduces along dim 0",
      [r"\bdim\b", r"axis", r"stack", r"shape"],
      differs(_many_ref, _MANY))
def merge_states_many(states):
    ms = torch.stack([s.m for s in states], dim=1)
    ds = torch.stack([s.d for s in states], dim=1)
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(ms - base)).sum(dim=0))


# differs: row 0 is empty in every state: NaN instead of (-inf, 0)
@_add("merge_states_many", "no guard for rows where every m is -inf: NaN",
      [r"-\s?inf", r"−∞", r"nan", r"empty", r"identity"],
      differs(_many_ref, _MANY))
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    return softmax.OnlineState(m, (ds * torch.exp(ms - m)).sum(dim=0))


# differs: rows 1..4: sums not rescaled
@_add("merge_states_many", "sums the d_k without rescaling them to the common max",
      [r"rescal", r"\bscal", r"exp\(", r"factor"],
      differs(_many_ref, _MANY))
def merge_states_many(states):
    return softmax.OnlineState(torch.stack([s.m for s in states]).amax(dim=0),
                               torch.stack([s.d for s in states]).sum(dim=0))


# differs: starting from m = 0 instead of -inf: rows whose maxima are all negative get m = 0
@_add("merge_states_many", "folds from the state (0, 0) instead of the empty state (-inf, 0)",
      [r"-\s?inf", r"−∞", r"identity", r"initial", r"start", r"empty", r"\b0\b"],
      differs(_many_ref, _states(3, 4, seed=8, empty_row=False)))
def merge_states_many(states):
    m = torch.zeros_like(states[0].m)
    d = torch.zeros_like(states[0].d)
    for s in states:
        m_new = torch.maximum(m, s.m)
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        d = d * torch.exp(m - base) + s.d * torch.exp(s.m - base)
        m = m_new
    return softmax.OnlineState(m, d)


# differs: 4 states: the last one is never merged
@_add("merge_states_many", "loops over range(1, len(states) - 1), dropping the last state",
      [r"last", r"every", r"all (the )?states", r"missing", r"off.by.one", r"each state", r"\bK\b"],
      differs(_many_ref, _MANY))
def merge_states_many(states):
    m, d = states[0].m, states[0].d
    for k in range(1, len(states) - 1):
        s = states[k]
        m_new = torch.maximum(m, s.m)
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        d = d * torch.exp(m - base) + s.d * torch.exp(s.m - base)
        m = m_new
    return softmax.OnlineState(m, d)


# differs: 4 states of 5 rows: torch.cat flattens them into one row of 20 and reduces it all
@_add("merge_states_many", "uses torch.cat instead of torch.stack, mixing the rows together",
      [r"stack", r"\bcat\b", r"shape", r"\brow"],
      differs(_many_ref, _MANY))
def merge_states_many(states):
    ms = torch.cat([s.m for s in states])
    ds = torch.cat([s.d for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(ms - base)).sum(dim=0))


# differs: averaged instead of summed
@_add("merge_states_many", "averages the rescaled sums (mean over k) instead of adding them",
      [r"mean", r"\bsum", r"average", r"\badd"],
      differs(_many_ref, _MANY))
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(ms - base)).mean(dim=0))


@_right("merge_states_many")
def merge_states_many(states):
    def merge(a, b):
        m = torch.maximum(a.m, b.m)
        base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
        return softmax.OnlineState(m, a.d * torch.exp(a.m - base) + b.d * torch.exp(b.m - base))
    while len(states) > 1:  # a tree of pairwise merges
        states = [merge(*states[i:i + 2]) if i + 1 < len(states) else states[i]
                  for i in range(0, len(states), 2)]
    return softmax.OnlineState(states[0].m.clone(), states[0].d.clone())


@_right("merge_states_many")
def merge_states_many(states):
    ms = torch.stack([s.m for s in states], dim=-1)  # (..., K)
    ds = torch.stack([s.d for s in states], dim=-1)
    m = ms.max(dim=-1).values
    base = m.masked_fill(torch.isinf(m), 0.0)
    return softmax.OnlineState(m, torch.einsum("...k,...k->...", ds, torch.exp(ms - base[..., None])))


# ================================================================ online_softmax (notebook 03)
def _osm_ref(x, dim=-1, block_size=128):
    return softmax.online_softmax(x, dim=dim, block_size=block_size)


_XL = _randn(3, 300, seed=9, scale=4)


# differs: (3, 300), block 128: old sums are not rescaled when the max grows
@_add("online_softmax", "adds each block's sum to l_i without rescaling the old l_i",
      [r"rescal", r"alpha", r"exp\(m", r"correct", r"\bscal"],
      differs(_osm_ref, _XL, block_size=64))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# differs: (3, 300), block 64: the loop stops before the last block (256..299)
@_add("online_softmax", "loops over range(0, n - block_size, block_size), skipping the last block",
      [r"last", r"block", r"range", r"partial", r"shorter", r"every (column|element)", r"tail"],
      differs(_osm_ref, _XL, block_size=64))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1] - block_size, block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# differs: (3, 300), block 64: each block drops its last column
@_add("online_softmax", "slices blocks as [start:start + block_size - 1], dropping a column per block",
      [r"slice", r"block", r"off.by.one", r"column", r"element", r"missing"],
      differs(_osm_ref, _XL, block_size=64))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size - 1]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# differs: rows around -200 in float32: with m_i starting at 0 every exp(x - 0) underflows: 0/0
@_add("online_softmax", "starts the running max at 0 instead of -inf",
      [r"-\s?inf", r"−∞", r"initial", r"init", r"start", r"underflow", r"\b0\b"],
      differs(_osm_ref, _randn(2, 40, seed=10) - 200.0, block_size=16))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# differs: (6, 6) with dim=0
@_add("online_softmax", "always runs over the last axis, ignoring dim",
      [r"\bdim\b", r"axis", r"movedim", r"wrong (axis|dimension)"],
      differs(_osm_ref, _XSQ, dim=0, block_size=4))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32))
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).to(x.dtype)


# differs: [100]*4 then [-100]*4, block 4: m_i becomes -100, l_i = 4 e^200 + 4 overflows to inf
@_add("online_softmax", "overwrites m_i with the block's own max instead of the running maximum",
      [r"running", r"\bmax", r"maximum", r"overflow"],
      differs(_osm_ref, torch.tensor([[100.0] * 4 + [-100.0] * 4]), block_size=4))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = block.amax(dim=-1)
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# differs: a float16 input comes back float32
@_add("online_softmax", "returns the compute dtype: float16 in, float32 out",
      [r"dtype", r"cast", r"float16", r"half", r"fp16", r"\.to\("],
      differs(_osm_ref, _randn(3, 300, seed=11, dtype=torch.float16, scale=3), block_size=64))
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim)


@_right("online_softmax")
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype)
    l_i = torch.zeros_like(m_i)
    for block in xt.split(block_size, dim=-1):
        m_new = torch.max(m_i, block.max(dim=-1).values)
        shift = m_new.masked_fill(torch.isneginf(m_new), 0.0)  # nothing but -inf so far
        l_i = l_i * (m_i - shift).exp() + (block - shift.unsqueeze(-1)).exp().sum(-1)
        m_i = m_new
    return ((xt - m_i.unsqueeze(-1)).exp() / l_i.unsqueeze(-1)).movedim(-1, dim).to(x.dtype)


@_right("online_softmax")
def online_softmax(x, dim=-1, block_size=128):
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    ms, ds = [], []
    for start in range(0, xt.shape[-1], block_size):  # one state per block, merged at the end
        block = xt[..., start:start + block_size]
        mb = block.amax(dim=-1)
        ms.append(mb)
        base = torch.where(torch.isinf(mb), torch.zeros_like(mb), mb)  # a block of all -inf
        ds.append(torch.exp(block - base[..., None]).sum(dim=-1))
    ms, ds = torch.stack(ms), torch.stack(ds)
    m_i = ms.amax(dim=0)
    l_i = (ds * torch.exp(ms - m_i)).sum(dim=0)
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


# ================================================================ Triton helpers
def _guarded_empty_like(fn, x, *args, guard=64):
    """Run fn(x, *args) with torch.empty_like handing out views into a buffer with a NaN-free
    sentinel zone after it; report a write past the end of the output."""
    real = torch.empty_like
    buffers = []

    def empty_like(t, *a, **kw):
        out = real(t, *a, **kw)
        if t.dim() == 2 and not a and not kw:
            buf = torch.full((t.numel() + guard,), 12345.0, dtype=t.dtype)
            buffers.append((buf, t.numel()))
            return buf[:t.numel()].view(t.shape)
        return out

    torch.empty_like = empty_like
    try:
        out = fn(x, *args)
    finally:
        torch.empty_like = real
    for buf, n in buffers:
        if not bool((buf[n:] == 12345.0).all()):
            return out, "writes past the end of the output tensor"
    return out, None


def differs_guarded(ref, x, *args):
    def witness(fn):
        got, oob = _guarded_empty_like(fn, x.clone(), *args)
        return oob or _diff(got, ref(x.clone(), *args))
    return witness


def _sm_ref(x):
    from labkit import kernels
    return kernels.softmax_triton(x)


def _osm_triton_ref(x, block=64):
    from labkit import kernels
    return kernels.online_softmax_triton(x)


def _softmax_wrapper(kernel):
    def softmax_triton(x):
        """Row softmax of a 2-D tensor with softmax_kernel: one program per row."""
        x = x.contiguous()
        y = torch.empty_like(x)
        n_rows, n_cols = x.shape
        kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=triton.next_power_of_2(n_cols))
        return y
    return softmax_triton


def _online_wrapper(kernel):
    def online_softmax_triton(x, block=64):
        """Row softmax of a 2-D tensor with online_softmax_kernel, in blocks of `block` columns."""
        x = x.contiguous()
        y = torch.empty_like(x)
        n_rows, n_cols = x.shape
        kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
        return y
    return online_softmax_triton


# ================================================================ softmax_triton (notebook 02)
_XT = _randn(3, 5, seed=12) - 3.0  # 5 columns in a block of 8: three masked lanes


@triton.jit
def _sm_other_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=0.0).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


# differs: (3, 5): the 3 padded lanes load 0, win the max of a negative row and add e^0 to the sum
_add("softmax_triton", "masked lanes load other=0.0 instead of -inf, so they join the max and the sum",
     [r"other", r"-\s?inf", r"−∞", r"mask", r"padd", r"lanes?"],
     differs(_sm_ref, _XT))(_softmax_wrapper(_sm_other_zero))


@triton.jit
def _sm_store_row0(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


# differs: (3, 5): every program writes into row 0; rows 1, 2 are never written
_add("softmax_triton", "stores at y_ptr + offs, forgetting the row offset row * y_row_stride",
     [r"\brow", r"stride", r"offset", r"program"],
     differs(_sm_ref, _XT))(_softmax_wrapper(_sm_store_row0))


@triton.jit
def _sm_ok(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _sm_ok[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=n_cols)
    return y


# differs: (3, 5): tl.arange(0, 5) is refused (not a power of 2)
_add("softmax_triton", "launches with BLOCK = n_cols instead of the next power of two",
     [r"power of (2|two)", r"next_power_of_2", r"\bBLOCK\b"],
     differs(_sm_ref, _XT))(softmax_triton)


def softmax_triton(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    _sm_ok[(n_rows - 1,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=triton.next_power_of_2(n_cols))
    return y


# differs: (3, 5): the last row is never computed
_add("softmax_triton", "launches n_rows - 1 programs, so the last row is never written",
     [r"grid", r"program", r"last row", r"\brows?\b", r"launch"],
     differs(_sm_ref, _XT))(softmax_triton)


@triton.jit
def _sm_no_max(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x)
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


# differs: a row holding 100: exp(100) = inf in float32 -> NaN
_add("softmax_triton", "no max subtraction in the kernel: overflows for scores above 88.7",
     [r"\bmax", r"overflow", r"subtract", r"safe"],
     differs(_sm_ref, torch.tensor([[100.0, 1.0, 0.0], [1.0, 2.0, 3.0]])))(_softmax_wrapper(_sm_no_max))


@triton.jit
def _sm_pid1(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(1)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


# differs: (3, 5): the grid is 1-D, program_id(1) is 0 for every program: only row 0 is computed
_add("softmax_triton", "reads the row from tl.program_id(1) on a 1-D grid (always 0)",
     [r"program_id", r"program id", r"axis", r"\brow", r"grid"],
     differs(_sm_ref, _XT))(_softmax_wrapper(_sm_pid1))


@triton.jit
def _sm_mask_le(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs <= n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


# differs: (3, 5): lane 5 reads the next row's first value into the sum, and the last row stores
# one element past the end of y
_add("softmax_triton", "UNSAFE: masks with offs <= n_cols, one lane too many (reads and writes one "
     "element past each row)",
     [r"mask", r"<=", r"off.by.one", r"past", r"bound", r"n_cols", r"one (lane|element)"],
     differs_guarded(_sm_ref, _XT))(_softmax_wrapper(_sm_mask_le))


@triton.jit
def _sm_exp2(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=cols < n_cols, other=-float("inf"))
    z = (x.to(tl.float32) - tl.max(x.to(tl.float32), axis=0)) * 1.4426950408889634
    num = tl.exp2(z)
    y = num * (1.0 / tl.sum(num, axis=0))
    tl.store(y_ptr + row * y_row_stride + cols, y.to(y_ptr.dtype.element_ty), mask=cols < n_cols)


_right("softmax_triton")(_softmax_wrapper(_sm_exp2))


@triton.jit
def _sm_where(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=0.0).to(tl.float32)
    x = tl.where(offs < n_cols, x, -float("inf"))  # the padding made harmless after the load
    m = tl.max(x, axis=0)
    e = tl.where(offs < n_cols, tl.exp(x - m), 0.0)
    tl.store(y_ptr + row * y_row_stride + offs, (e / tl.sum(e, axis=0)).to(y_ptr.dtype.element_ty),
             mask=offs < n_cols)


_right("softmax_triton")(_softmax_wrapper(_sm_where))


# ================================================================ online_softmax_triton (notebook 03)
_XO = _randn(3, 200, seed=13, scale=5)  # 200 columns: blocks of 64, the last one partial


@triton.jit
def _osm_no_rescale(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


# differs: (3, 200): the old l_i is not rescaled when the max grows
_add("online_softmax_triton", "adds each block's sum to l_i without rescaling the old l_i",
     [r"rescal", r"alpha", r"exp\(m", r"correct", r"\bscal"],
     differs(_osm_triton_ref, _XO))(_online_wrapper(_osm_no_rescale))


@triton.jit
def _osm_other_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=0.0).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=0.0).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


# differs: (3, 200) of negative scores: the 56 padded lanes of the last block load 0, win the max
# and add e^(0 - m) each to l_i
_add("online_softmax_triton", "masked lanes load other=0.0 instead of -inf, so they join the max and the sum",
     [r"other", r"-\s?inf", r"−∞", r"mask", r"padd", r"lanes?"],
     differs(_osm_triton_ref, _XO - 20.0))(_online_wrapper(_osm_other_zero))


@triton.jit
def _osm_one_pass(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


# differs: (3, 200): blocks are written with the partial (m_i, l_i) of the row so far
_add("online_softmax_triton", "normalises inside the first loop with the running m_i, l_i (no second pass)",
     [r"second (pass|loop)", r"final", r"running", r"partial", r"normali[sz]", r"after the (first )?loop",
      r"two pass"],
     differs(_osm_triton_ref, _XO))(_online_wrapper(_osm_one_pass))


@triton.jit
def _osm_no_start(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


# differs: (3, 200): every iteration reads the first block again; columns 64.. never written
_add("online_softmax_triton", "forgets start + in the offsets: every iteration works on the first block",
     [r"start", r"offset", r"first block", r"same block", r"every block"],
     differs(_osm_triton_ref, _XO))(_online_wrapper(_osm_no_start))


@triton.jit
def _osm_m_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = 0.0
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


# differs: rows near -200: exp(x - 0) underflows to 0 everywhere: 0/0
_add("online_softmax_triton", "starts the running max at 0.0 instead of -inf",
     [r"-\s?inf", r"−∞", r"initial", r"init", r"start", r"underflow", r"\b0\b"],
     differs(_osm_triton_ref, _randn(2, 100, seed=14) - 200.0))(_online_wrapper(_osm_m_zero))


@triton.jit
def _osm_full_blocks(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols // BLOCK * BLOCK, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols // BLOCK * BLOCK, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty))


# differs: (3, 200): only the 3 full blocks (192 columns) are summed and written
_add("online_softmax_triton", "loops over full blocks only (n_cols // BLOCK), dropping the partial last block",
     [r"last block", r"partial", r"tail", r"remain", r"range", r"mask", r"every column", r"not a multiple"],
     differs(_osm_triton_ref, _XO))(_online_wrapper(_osm_full_blocks))


@triton.jit
def _osm_sign(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_new - m_i) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


# differs: (3, 200): exp(m_new - m_i) is inf on the first block (0 * inf = NaN), > 1 afterwards
_add("online_softmax_triton", "rescales l_i by exp(m_new - m_i), the sign of the exponent flipped",
     [r"sign", r"negat", r"flip", r"rescal", r"revers", r"exp\(m_i ?- ?m_new"],
     differs(_osm_triton_ref, _XO))(_online_wrapper(_osm_sign))


@triton.jit
def _osm_no_store_mask(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty))


# differs: (3, 200): the last block's 56 padded lanes are stored past each row, past the end of y
# for the last row (caught with a guard zone after the output)
_add("online_softmax_triton", "UNSAFE: stores without a mask, writing the padded lanes past the row end",
     [r"mask", r"store", r"past", r"bound", r"out of range", r"padd"],
     differs_guarded(_osm_triton_ref, _XO))(_online_wrapper(_osm_no_store_mask))


@triton.jit
def _osm_merge(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):  # each block's own state (m_b, d_b), merged in
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_b = tl.max(x, axis=0)
        c_b = tl.where(m_b == -float("inf"), 0.0, m_b)  # a block of all -inf: d_b = 0
        d_b = tl.sum(tl.exp(x - c_b), axis=0)
        m_new = tl.maximum(m_i, m_b)
        c_new = tl.where(m_new == -float("inf"), 0.0, m_new)
        l_i = l_i * tl.exp(m_i - c_new) + d_b * tl.exp(c_b - c_new)
        m_i = m_new
    inv = 1.0 / l_i
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        tl.store(y_ptr + row * y_row_stride + offs, (tl.exp(x - m_i) * inv).to(y_ptr.dtype.element_ty),
                 mask=offs < n_cols)


_right("online_softmax_triton")(_online_wrapper(_osm_merge))


@triton.jit
def _osm_exp2(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    m_i = -float("inf")  # in log2 units
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + cols, mask=cols < n_cols, other=-float("inf"))
        z = x.to(tl.float32) * 1.4426950408889634
        m_new = tl.maximum(m_i, tl.max(z, axis=0))
        shift = tl.where(m_new == -float("inf"), 0.0, m_new)
        l_i = l_i * tl.exp2(m_i - shift) + tl.sum(tl.exp2(z - shift), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + cols, mask=cols < n_cols, other=-float("inf"))
        y = tl.exp2(x.to(tl.float32) * 1.4426950408889634 - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + cols, y.to(y_ptr.dtype.element_ty), mask=cols < n_cols)


_right("online_softmax_triton")(_online_wrapper(_osm_exp2))


# ================================================================ attention inputs
def _qkv(n_q=10, n_kv=13, d=16, b=2, h=3, seed=20, dtype=torch.float32, scale=1.0):
    g = _g(seed)
    q = (torch.randn(b, h, n_q, d, generator=g, dtype=torch.float64) * scale).to(dtype)
    k = (torch.randn(b, h, n_kv, d, generator=g, dtype=torch.float64) * scale).to(dtype)
    v = torch.randn(b, h, n_kv, d, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v


_QKV = _qkv()  # cross-attention: N_q = 10, N_kv = 13, D = 16
_QKV_C = _qkv(12, 12, seed=21)  # self-attention, for causal


# ================================================================ naive_attention (notebook 04)
# differs: N_kv = 13 != D = 16: (10 x 16) @ (13 x 16) does not multiply
@_add("naive_attention", "multiplies q @ k without transposing k",
      [r"transpos", r"kᵀ", r"k\.T\b", r"k\^T", r"transpose\(-2, ?-1\)"],
      differs(attention.naive_attention, *_QKV))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# differs: any input: the scores are sqrt(D) = 4 times too large
@_add("naive_attention", "forgets the scale: softmax(q kᵀ) v",
      [r"scale", r"sqrt", r"√", r"1/sqrt"],
      differs(attention.naive_attention, *_QKV))
def naive_attention(q, k, v, causal=False, scale=None):
    s = q @ k.transpose(-2, -1)
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# differs: causal: triu(0) hides the diagonal too; query 0 sees nothing (NaN)
@_add("naive_attention", "causal mask triu(diagonal=0): hides the diagonal as well",
      [r"diagonal", r"off.by.one", r"j ?<= ?i", r"itself", r"triu", r"j ?> ?i", r"nan"],
      differs(attention.naive_attention, *_QKV_C, causal=True))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=0), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# differs: D = 16: scale 1/16 instead of 1/4
@_add("naive_attention", "default scale 1/D instead of 1/sqrt(D)",
      [r"sqrt", r"√", r"scale"],
      differs(attention.naive_attention, *_QKV))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / q.shape[-1] if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# differs: scale=0.0 (a valid finite scale: uniform weights) is replaced by 1/sqrt(D)
@_add("naive_attention", "`scale = scale or 1/sqrt(D)`: a given scale of 0.0 is ignored",
      [r"scale", r"None", r"given", r"\b0(\.0)?\b", r"falsy"],
      differs(attention.naive_attention, *_QKV, scale=0.0))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = scale or 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# differs: any input: softmax over the queries (dim=-2)
@_add("naive_attention", "takes the softmax over the queries (dim=-2) instead of the keys",
      [r"\bdim\b", r"axis", r"keys", r"\brows?\b", r"dim=-1", r"last"],
      differs(attention.naive_attention, *_QKV_C))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return torch.softmax(s, dim=-2) @ v


# differs: any input: the output, not the scores, is scaled
@_add("naive_attention", "applies the scale to the output after P V instead of to the scores",
      [r"scale", r"scores", r"before", r"sqrt"],
      differs(attention.naive_attention, *_QKV))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1)
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return (torch.softmax(s, dim=-1) @ v) * scale


# differs: causal with N = 12, D = 16: the mask is built D x D
@_add("naive_attention", "builds the causal mask from q.shape[-1] (D) instead of N",
      [r"\bN\b", r"shape", r"mask", r"size", r"sequence", r"length"],
      differs(attention.naive_attention, *_QKV_C, causal=True))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# differs: causal: hides the past (j < i) instead of the future
@_add("naive_attention", "masks with tril(-1): hides the past keys instead of the future ones",
      [r"future", r"triu", r"j ?> ?i", r"past", r"upper", r"lower", r"causal"],
      differs(attention.naive_attention, *_QKV_C, causal=True))
def naive_attention(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@_right("naive_attention")
def naive_attention(q, k, v, causal=False, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if causal:
        i = torch.arange(q.shape[2])
        s = torch.where(i[None, :] > i[:, None], torch.tensor(float("-inf"), dtype=s.dtype), s)
    return torch.einsum("bhqk,bhkd->bhqd", s.softmax(dim=-1), v)


@_right("naive_attention")
def naive_attention(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.matmul(q * scale, k.mT)
    if causal:
        n = q.shape[-2]
        s = s + torch.full((n, n), float("-inf"), dtype=s.dtype).triu(1)
    return torch.matmul(torch.softmax(s, -1), v)


# ================================================================ tiled_attention (notebook 05)
def _tiled_ref(q, k, v, block_q=64, block_k=64, scale=None):
    return attention.tiled_attention(q, k, v, block_q=block_q, block_k=block_k, scale=scale)


_QKV_T = _qkv(23, 37, 16, b=1, h=2, seed=22)  # tiles 8 x 16: ragged last tiles


# differs: block_q=8 != block_k=16: the column slice has the query tile's width
@_add("tiled_attention", "writes each score tile into columns [j0:j0 + block_q] (block_q for block_k)",
      [r"block_k", r"column", r"slice", r"tile"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_q] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


# differs: 37 keys in tiles of 16: each tile's softmax is normalised on its own and summed
@_add("tiled_attention", "takes the softmax of each score tile separately and adds up P_ij V_j",
      [r"whole row", r"row block", r"entire row", r"full row", r"normali[sz]", r"per tile",
       r"each tile", r"separately", r"softmax"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    n_q, n_kv = q.shape[2], k.shape[2]
    o = torch.zeros_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        for j0 in range(0, n_kv, block_k):
            s_ij = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
            o[:, :, i0:i0 + block_q] += torch.softmax(s_ij, dim=-1) @ v[:, :, j0:j0 + block_k]
    return o.to(dtype)


# differs: block_q=8, block_k=16: query tiles start every 16 rows, rows 8..15 are never computed
@_add("tiled_attention", "steps the query loop by block_k: range(0, n_q, block_k)",
      [r"block_q", r"range", r"step", r"\brows?\b", r"query tile"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.zeros_like(q)
    for i0 in range(0, n_q, block_k):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


# differs: float64 inputs computed in float32
@_add("tiled_attention", "computes in float32 (.float()) also for float64 inputs",
      [r"float64", r"double", r"precision", r"promote", r"float32"],
      differs(_tiled_ref, *_qkv(23, 37, 16, b=1, h=2, seed=23, dtype=torch.float64), block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


# differs: N_q = 23 != N_kv = 37: P_i (8 x 37) times the query tile's rows of v (8 x 16)
@_add("tiled_attention", "multiplies P_i by the tile's own rows of V instead of all of V",
      [r"\bV\b", r"all of v", r"value", r"whole v", r"shape"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v[:, :, i0:i0 + block_q]
    return o.to(dtype)


# differs: any input: the scores miss 1/sqrt(D)
@_add("tiled_attention", "forgets the scale on the score tiles",
      [r"scale", r"sqrt", r"√"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


# differs: N_q = 23, N_kv = 37: the row block is sized by N_q (columns 23.. get no score)
@_add("tiled_attention", "sizes the score row block with N_q instead of N_kv",
      [r"n_kv", r"N_kv", r"cross", r"keys", r"shape", r"size", r"row block"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_q, dtype=q.dtype)
        for j0 in range(0, n_q, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v[:, :, :n_q]
    return o.to(dtype)


# differs: N_q = 23, block_q = 8: the partial query tile (rows 16..22) is skipped
@_add("tiled_attention", "loops over full query tiles only (n_q // block_q), skipping the partial last tile",
      [r"last", r"partial", r"tile", r"shorter", r"remain", r"rows?\b", r"multiple"],
      differs(_tiled_ref, *_QKV_T, block_q=8, block_k=16))
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.zeros_like(q)
    for t in range(n_q // block_q):
        i0 = t * block_q
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, block_q, n_kv, dtype=q.dtype)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


@_right("tiled_attention")
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    ct = torch.promote_types(q.dtype, torch.float32)
    qc, kc, vc = q.to(ct), k.to(ct), v.to(ct)
    rows = []
    for i0 in range(0, q.shape[2], block_q):
        tiles = [torch.einsum("bhqd,bhkd->bhqk", qc[:, :, i0:i0 + block_q], kc[:, :, j0:j0 + block_k])
                 for j0 in range(0, k.shape[2], block_k)]
        s_i = torch.cat(tiles, dim=-1) * scale  # the row block, assembled from its tiles
        rows.append(torch.einsum("bhqk,bhkd->bhqd", torch.softmax(s_i, dim=-1), vc))
    return torch.cat(rows, dim=2).to(q.dtype)


@_right("tiled_attention")
def tiled_attention(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, dtype = q.to(ct), k.to(ct), v.to(ct), q.dtype
    n_q, n_kv = q.shape[2], k.shape[2]
    o = torch.zeros_like(q)
    for i0 in range(0, n_q, block_q):
        i1 = min(i0 + block_q, n_q)
        s_i = torch.empty(*q.shape[:2], i1 - i0, n_kv, dtype=ct)
        for j0 in range(0, n_kv, block_k):
            j1 = min(j0 + block_k, n_kv)
            s_i[..., j0:j1] = torch.matmul(q[:, :, i0:i1] * scale, k[:, :, j0:j1].mT)
        p_i = torch.exp(s_i - s_i.amax(-1, keepdim=True))
        o[:, :, i0:i1] = (p_i / p_i.sum(-1, keepdim=True)) @ v
    return o.to(dtype)


# ================================================================ flash_attention_forward (notebook 05)
def _ffwd_ref(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    return attention.flash_attention_forward(q, k, v, causal, scale, block_q, block_k)


def _flash_forward(update, finish):
    """The notebook's scaffold (loops, state, causal tile skipping) with a student's inner-loop
    update(s_args) and epilogue finish(acc, l_i, m_i) -> (o_tile, lse_tile)."""
    def flash_attention_forward(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        dtype = q.dtype
        q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        o = torch.empty_like(q)
        lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)
        for i0 in range(0, n_q, block_q):
            q_i = q[:, :, i0:i0 + block_q]
            rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)
            m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)
            l_i = torch.zeros_like(m_i)
            acc = torch.zeros_like(q_i)
            j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv
            for j0 in range(0, j_end, block_k):
                k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
                m_i, l_i, acc = update(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale)
            o[:, :, i0:i0 + block_q], lse[:, :, i0:i0 + block_q] = finish(acc, l_i, m_i)
        return o.to(dtype), lse
    return flash_attention_forward


def _upd_ok(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i * alpha + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


def _fin_ok(acc, l_i, m_i):
    return acc / l_i[..., None], m_i + torch.log(l_i)


_QKV_F = _qkv(40, 50, 16, b=1, h=2, seed=24, scale=1.5)  # tiles 16 x 16: several key tiles
_QKV_FC = _qkv(40, 40, 16, b=1, h=2, seed=25, scale=1.5)


def _upd_no_acc_rescale(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i * alpha + p.sum(dim=-1), acc + p @ v_j


# differs: 50 keys in tiles of 16: acc keeps terms measured against an old max
_add("flash_attention_forward", "rescales l_i but not acc when the max grows",
     [r"rescal", r"alpha", r"\bacc", r"accumulat", r"exp\(m"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_no_acc_rescale, _fin_ok))


def _upd_no_l_rescale(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


# differs: 50 keys in tiles of 16: l_i keeps terms measured against an old max
_add("flash_attention_forward", "rescales acc but not l_i when the max grows",
     [r"rescal", r"alpha", r"l_i", r"ℓ", r"running sum", r"exp\(m"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_no_l_rescale, _fin_ok))


def _fin_no_log(acc, l_i, m_i):
    return acc / l_i[..., None], m_i + l_i


# differs: any input: lse = m + l instead of m + log l
_add("flash_attention_forward", "returns lse = m_i + l_i, forgetting the log",
     [r"\blog\b", r"lse", r"logsumexp"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_ok, _fin_no_log))


def _fin_no_div(acc, l_i, m_i):
    return acc, m_i + torch.log(l_i)


# differs: any input: o = acc, not acc / l_i
_add("flash_attention_forward", "returns o = acc without dividing by l_i",
     [r"divid", r"l_i", r"ℓ", r"normali[sz]", r"acc ?/"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_ok, _fin_no_div))


def _upd_mask_ge(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = s.masked_fill(cols[None, :] >= rows[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i * alpha + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


# differs: causal (tiles 16 x 8): the diagonal is hidden, query 0 sees nothing
_add("flash_attention_forward", "causal mask cols >= rows: hides the diagonal as well",
     [r"diagonal", r"off.by.one", r"j ?<= ?i", r"itself", r">=", r"nan"],
     differs(_ffwd_ref, *_QKV_FC, causal=True, block_q=16, block_k=8))(_flash_forward(_upd_mask_ge, _fin_ok))


def _upd_local_mask(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        r = torch.arange(q_i.shape[2])
        c = torch.arange(k_j.shape[2])
        s = s.masked_fill(c[None, :] > r[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i * alpha + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


# differs: causal, 40 rows in tiles of 16: tiles below the diagonal are masked with tile-local indices
_add("flash_attention_forward", "causal mask with tile-local indices (arange(T_q), arange(T_k)) instead "
     "of global ones",
     [r"global", r"offset", r"j0", r"i0", r"local", r"index", r"indices", r"tile"],
     differs(_ffwd_ref, *_QKV_FC, causal=True, block_q=16, block_k=16))(_flash_forward(_upd_local_mask, _fin_ok))


def _upd_alpha_sign(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_new - m_i)
    return m_new, l_i * alpha + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


# differs: any input: alpha = exp(m_new - m_i) is inf on the first tile: 0 * inf = NaN
_add("flash_attention_forward", "alpha = exp(m_new - m_i), the sign of the exponent flipped",
     [r"sign", r"alpha", r"flip", r"revers", r"negat", r"exp\(m_i ?- ?m_new", r"nan"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_alpha_sign, _fin_ok))


def _fin_no_m(acc, l_i, m_i):
    return acc / l_i[..., None], torch.log(l_i)


# differs: any input: lse = log l_i, without the max
_add("flash_attention_forward", "returns lse = log(l_i), forgetting to add m_i",
     [r"m_i", r"\bmax", r"lse", r"add", r"\+ ?m"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_ok, _fin_no_m))


def _upd_old_max(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_i[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i * alpha + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


# differs: any input: p = exp(s - m_i) with m_i = -inf on the first tile is inf
_add("flash_attention_forward", "computes P̃ = exp(s - m_i) with the old max instead of m_new",
     [r"m_new", r"new max", r"old max", r"nan", r"overflow", r"inf"],
     differs(_ffwd_ref, *_QKV_F, block_q=16, block_k=16))(_flash_forward(_upd_old_max, _fin_ok))


def _upd_fa1(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    # FlashAttention-1's order: acc kept normalised, i.e. acc = O_i so far
    s = torch.einsum("bhqd,bhkd->bhqk", q_i, k_j) * scale
    if causal:
        s = s.masked_fill(attention.causal_mask(rows, torch.arange(j0, j0 + k_j.shape[2])), -math.inf)
    m_tile = s.amax(dim=-1)  # -inf for a query row whose keys in this tile are all in its future
    p = torch.exp(s - torch.where(torch.isinf(m_tile), torch.zeros_like(m_tile), m_tile)[..., None])
    l_tile = p.sum(dim=-1)
    m_new = torch.maximum(m_i, m_tile)
    l_new = torch.exp(m_i - m_new) * l_i + torch.exp(m_tile - m_new) * l_tile
    o_new = (l_i * torch.exp(m_i - m_new))[..., None] * acc + torch.exp(m_tile - m_new)[..., None] * (p @ v_j)
    return m_new, l_new, o_new / l_new[..., None]


def _fin_fa1(acc, l_i, m_i):
    return acc, m_i + l_i.log()


_right("flash_attention_forward")(_flash_forward(_upd_fa1, _fin_fa1))


def _upd_where(q_i, k_j, v_j, m_i, l_i, acc, rows, j0, causal, scale):
    s = torch.matmul(q_i, k_j.mT).mul(scale)
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2])
        s = torch.where(cols[None, :] <= rows[:, None], s, torch.full_like(s, -math.inf))
    m_new = torch.max(m_i, s.max(dim=-1).values)
    alpha = (m_i - m_new).exp()
    p = (s - m_new.unsqueeze(-1)).exp()
    return m_new, torch.addcmul(p.sum(-1), l_i, alpha), torch.baddbmm(
        (acc * alpha.unsqueeze(-1)).flatten(0, 1), p.flatten(0, 1), v_j.flatten(0, 1)).view_as(acc)


def _fin_recip(acc, l_i, m_i):
    return acc * l_i.reciprocal()[..., None], torch.log(l_i).add(m_i)


_right("flash_attention_forward")(_flash_forward(_upd_where, _fin_recip))


# ================================================================ flash_hbm_accesses (notebook 05)
def _hbm_ref(N, d, M):
    return hbm.flash_hbm_accesses(N, d, M)


# differs: N=1000, d=64, M=1000: B_c = floor(1000/256) = 3 instead of 4
@_add("flash_hbm_accesses", "B_c = M // (4d): floor instead of ceil",
      [r"ceil", r"round", r"B_c", r"floor", r"tile size"],
      differs(_hbm_ref, 1000, 64, 1000))
def flash_hbm_accesses(N, d, M):
    B_c = M // (4 * d)
    T_c = math.ceil(N / B_c)
    return N * d + 2 * N + 2 * N * d + T_c * (3 * N * d + 4 * N)


# differs: N=1000, d=64, M=51200: B_c = 200, 5 tiles exactly; N=1001 needs 6
@_add("flash_hbm_accesses", "T_c = N // B_c: floor, so a partial last key tile is not counted",
      [r"ceil", r"partial", r"T_c", r"last (key )?tile", r"floor", r"round"],
      differs(_hbm_ref, 1001, 64, 51200))
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = N // B_c
    return N * d + 2 * N + 2 * N * d + T_c * (3 * N * d + 4 * N)


# differs: any N: line 2 (O, l, m initialised: Nd + 2N) is not counted
@_add("flash_hbm_accesses", "forgets line 2: initialising O, l, m in HBM (Nd + 2N)",
      [r"line 2", r"initiali[sz]", r"O ?= ?0", r"\binit"],
      differs(_hbm_ref, 1000, 64, 51200))
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return 2 * N * d + T_c * (3 * N * d + 4 * N)


# differs: any N: O_i is never written back (lines 12-13 count only l and m)
@_add("flash_hbm_accesses", "forgets the write of O_i back to HBM (line 12): 2Nd + 4N per key tile",
      [r"write", r"O_i", r"line 12", r"store"],
      differs(_hbm_ref, 1000, 64, 51200))
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return N * d + 2 * N + 2 * N * d + T_c * (2 * N * d + 4 * N)


# differs: any N: the statistics l and m counted as one number per row
@_add("flash_hbm_accesses", "counts l_i and m_i as one number per row (N instead of 2N)",
      [r"ℓ", r"l_i", r"m_i", r"statistic", r"\bl\b", r"\bm\b"],
      differs(_hbm_ref, 1000, 64, 51200))
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return N * d + N + 2 * N * d + T_c * (3 * N * d + 2 * N)


# differs: any input: the leading term only, not the exact count
@_add("flash_hbm_accesses", "returns the asymptotic 12 N^2 d^2 / M instead of the exact count",
      [r"exact", r"asymptot", r"leading", r"approx", r"\bint\b", r"lower.order"],
      differs(_hbm_ref, 1000, 64, 51200))
def flash_hbm_accesses(N, d, M):
    return round(12 * N ** 2 * d ** 2 / M)


# differs: N=1000, d=64, M=51200: B_r = min(200, 64) = 64 key rows per tile instead of 200
@_add("flash_hbm_accesses", "counts key tiles of B_r = min(B_c, d) rows (swaps the roles of B_c and B_r)",
      [r"B_c", r"B_r", r"key tile", r"outer", r"swap"],
      differs(_hbm_ref, 1000, 64, 51200))
def flash_hbm_accesses(N, d, M):
    B_r = min(math.ceil(M / (4 * d)), d)
    T_c = math.ceil(N / B_r)
    return N * d + 2 * N + 2 * N * d + T_c * (3 * N * d + 4 * N)


# differs: N=1000, d=64, M=1000: B_c = 3.906 (no ceil), T_c = ceil(256.0) = 256 instead of 250
@_add("flash_hbm_accesses", "B_c = M / (4d) without ceil (a fractional tile size)",
      [r"ceil", r"B_c", r"integer", r"round", r"whole"],
      differs(_hbm_ref, 1000, 64, 1000))
def flash_hbm_accesses(N, d, M):
    B_c = M / (4 * d)
    T_c = math.ceil(N / B_c)
    return N * d + 2 * N + 2 * N * d + T_c * (3 * N * d + 4 * N)


@_right("flash_hbm_accesses")
def flash_hbm_accesses(N, d, M):
    B_c = -(-M // (4 * d))
    T_c = -(-N // B_c)
    return N * (3 * d + 2) + T_c * N * (3 * d + 4)


@_right("flash_hbm_accesses")
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    total = N * d + 2 * N  # line 2
    for j0 in range(0, N, B_c):  # key tiles, each loaded once
        total += 2 * d * min(B_c, N - j0)
        for i0 in range(0, N, B_r):  # query tiles: read Q, O, l, m; write O, l, m
            rows = min(B_r, N - i0)
            total += rows * (3 * d + 4)
    return total


# ================================================================ flash_attention_forward_triton (notebook 06)
def _fwd_triton_ref(q, k, v, causal=False, scale=None):
    o, lse = attention.flash_attention_forward(q, k, v, causal, scale)
    return o, lse.float()


def _fwd_wrapper(kernel):
    def flash_attention_forward_triton(q, k, v, causal=False, scale=None):
        """(o, lse) for q, k, v (B, H, N, D); lse is float32 (B, H, N_q)."""
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        scale = 1.0 / math.sqrt(D) if scale is None else scale
        o = torch.empty_like(q)
        lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
        BLOCK_M, BLOCK_N = 32, 16
        grid = (triton.cdiv(n_q, BLOCK_M), B * H)
        kernel[grid](
            q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            H, n_q, n_kv, scale * LOG2E,
            HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
            PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
        return o, lse
    return flash_attention_forward_triton


_QKV_6 = _qkv(40, 50, 16, b=1, h=2, seed=30)  # 50 keys: the last key tile of 16 is ragged
_QKV_6C = _qkv(40, 40, 16, b=1, h=2, seed=31)


@triton.jit
def _fwd_exp(Q, K, V, O, LSE,
             stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
             stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
             H, n_q, n_kv, qk_scale,
             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: any input: the scores carry log2(e), so tl.exp computes a softmax of s * 1.44
_add("flash_attention_forward_triton", "uses tl.exp on the log2(e)-scaled scores instead of tl.exp2",
     [r"exp2", r"log2", r"base", r"LOG2E", r"1\.44", r"ln ?2"],
     differs(_fwd_triton_ref, *_QKV_6))(_fwd_wrapper(_fwd_exp))


@triton.jit
def _fwd_no_kv_mask(Q, K, V, O, LSE,
                    stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                    H, n_q, n_kv, qk_scale,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if CAUSAL:
            s = tl.where(offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: 50 keys, tiles of 16: the 14 padded keys score 0 (k = 0) and add 2^(0 - m) to l_i
_add("flash_attention_forward_triton", "does not set the scores of keys past n_kv to -inf (only the causal mask)",
     [r"n_kv", r"padd", r"past", r"-\s?inf", r"−∞", r"mask", r"ragged", r"out.of.range"],
     differs(_fwd_triton_ref, *_QKV_6))(_fwd_wrapper(_fwd_no_kv_mask))


@triton.jit
def _fwd_diag(Q, K, V, O, LSE,
              stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
              H, n_q, n_kv, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] < offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: causal: offs_n < offs_m hides the diagonal; query 0 sees no key (NaN)
_add("flash_attention_forward_triton", "causal mask offs_n < offs_m: hides the diagonal as well",
     [r"diagonal", r"off.by.one", r"<=", r"itself", r"j ?<= ?i", r"nan"],
     differs(_fwd_triton_ref, *_QKV_6C, causal=True))(_fwd_wrapper(_fwd_diag))


@triton.jit
def _fwd_no_acc_rescale(Q, K, V, O, LSE,
                        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                        H, n_q, n_kv, qk_scale,
                        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: 50 keys in 4 tiles: acc mixes terms measured against different maxima
_add("flash_attention_forward_triton", "rescales l_i but not acc by alpha",
     [r"rescal", r"alpha", r"\bacc", r"accumulat"],
     differs(_fwd_triton_ref, *_QKV_6))(_fwd_wrapper(_fwd_no_acc_rescale))


@triton.jit
def _fwd_no_start(Q, K, V, O, LSE,
                  stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                  stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                  H, n_q, n_kv, qk_scale,
                  HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: 50 keys: every iteration loads keys 0..15 again
_add("flash_attention_forward_triton", "offs_n = tl.arange(0, BLOCK_N) without start_n: the first key tile "
     "every time",
     [r"start_n", r"offset", r"first (key )?tile", r"same tile", r"offs_n"],
     differs(_fwd_triton_ref, *_QKV_6))(_fwd_wrapper(_fwd_no_start))


@triton.jit
def _fwd_q_strides(Q, K, V, O, LSE,
                   stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                   stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                   H, n_q, n_kv, qk_scale,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_qm + offs_d[:, None] * stride_qd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def _strided_kv():
    q = _randn(1, 2, 40, 16, seed=32)
    kv = _randn(2, 1, 50, 2, 16, seed=33)  # (2, B, N, H, D): k, v as (B, H, N, D) views
    return q, kv[0].transpose(1, 2), kv[1].transpose(1, 2)


# differs: q contiguous, k and v strided views (B, N, H, D).transpose(1, 2): stride_kn = H*D != stride_qm = D
_add("flash_attention_forward_triton", "addresses the K and V tiles with q's strides (stride_qm, stride_qd)",
     [r"stride", r"layout", r"contiguous", r"view", r"transpos"],
     differs(_fwd_triton_ref, *_strided_kv()))(_fwd_wrapper(_fwd_q_strides))


@triton.jit
def _fwd_sum_axis(Q, K, V, O, LSE,
                  stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                  stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                  H, n_q, n_kv, qk_scale,
                  HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: any input: tl.sum(p, 0) sums over the queries, (BLOCK_N,) against l_i's (BLOCK_M,)
_add("flash_attention_forward_triton", "sums p over axis 0 (the queries) instead of axis 1 (the keys)",
     [r"axis", r"\bsum", r"shape", r"keys", r"rows?\b"],
     differs(_fwd_triton_ref, *_QKV_6))(_fwd_wrapper(_fwd_sum_axis))


@triton.jit
def _fwd_alpha_late(Q, K, V, O, LSE,
                    stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                    H, n_q, n_kv, qk_scale,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        m_i = m_new
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


# differs: 50 keys in 4 tiles: m_i is updated before alpha, so alpha = 2^0 = 1 and nothing is rescaled
_add("flash_attention_forward_triton", "updates m_i before computing alpha, so alpha is always 1 (no rescaling)",
     [r"rescal", r"alpha", r"order", r"before", r"m_i"],
     differs(_fwd_triton_ref, *_QKV_6))(_fwd_wrapper(_fwd_alpha_late))


@triton.jit
def _fwd_where_bias(Q, K, V, O, LSE,
                    stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                    H, n_q, n_kv, qk_scale,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        in_kv = offs_n < n_kv
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=in_kv[None, :], other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=in_kv[:, None], other=0.0)
        bias = tl.where(in_kv, 0.0, float("-inf"))[None, :]  # padded keys: -inf added
        if CAUSAL:
            bias = bias + tl.where(offs_n[None, :] > offs_m[:, None], float("-inf"), 0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale + bias
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


_right("flash_attention_forward_triton")(_fwd_wrapper(_fwd_where_bias))


@triton.jit
def _fwd_two_wheres(Q, K, V, O, LSE,
                    stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
                    stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
                    H, n_q, n_kv, qk_scale,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), transposed for the dot
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = tl.where(offs_n[None, :] < n_kv, s, float("-inf"))
        if CAUSAL:
            s = tl.where(offs_m[:, None] >= offs_n[None, :], s, float("-inf"))
        m_tile = tl.max(s, 1)
        m_new = tl.where(m_tile > m_i, m_tile, m_i)
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = alpha * l_i + tl.sum(p, 1)
        acc = alpha[:, None] * acc + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


_right("flash_attention_forward_triton")(_fwd_wrapper(_fwd_two_wheres))


# ================================================================ softmax_jacobian (notebook 07)
_P1 = torch.softmax(_randn(5, seed=40, dtype=torch.float64), -1)
_PB = torch.softmax(_randn(3, 4, 5, seed=41, dtype=torch.float64), -1)


# differs: a batch (3, 4, 5): torch.diag and torch.outer take 1-D vectors only
@_add("softmax_jacobian", "uses torch.diag and torch.outer, which only handle a single vector",
      [r"batch", r"leading", r"shape", r"diag_embed", r"\.\.\.", r"\(\.\.\., ?N"],
      differs(derivatives.softmax_jacobian, _PB))
def softmax_jacobian(p):
    return torch.diag(p) - torch.outer(p, p)


# differs: any p: the diag(p) term is missing
@_add("softmax_jacobian", "returns -p pᵀ, forgetting the diag(p) term",
      [r"diag", r"δ", r"delta", r"kronecker"],
      differs(derivatives.softmax_jacobian, _P1))
def softmax_jacobian(p):
    return -p.unsqueeze(-1) * p.unsqueeze(-2)


# differs: any p: the sign is flipped
@_add("softmax_jacobian", "returns p pᵀ - diag(p): the sign flipped",
      [r"sign", r"negat", r"minus", r"flip"],
      differs(derivatives.softmax_jacobian, _P1))
def softmax_jacobian(p):
    return p.unsqueeze(-1) * p.unsqueeze(-2) - torch.diag_embed(p)


# differs: any p: (N, 1) * (N, 1) is p_j², broadcast along the rows, not the outer product
@_add("softmax_jacobian", "multiplies p.unsqueeze(-1) by p.unsqueeze(-1): p_j^2, not the outer product p_j p_l",
      [r"outer", r"p_l", r"unsqueeze", r"broadcast", r"p pᵀ", r"p p\^T", r"\bp_j"],
      differs(derivatives.softmax_jacobian, _P1))
def softmax_jacobian(p):
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-1)


# differs: any p: the identity instead of diag(p)
@_add("softmax_jacobian", "writes I - p pᵀ: the identity instead of diag(p)",
      [r"diag", r"identity", r"\beye\b", r"p_j ?δ", r"δ"],
      differs(derivatives.softmax_jacobian, _P1))
def softmax_jacobian(p):
    n = p.shape[-1]
    return torch.eye(n, dtype=p.dtype) - p.unsqueeze(-1) * p.unsqueeze(-2)


# differs: a float64 p comes back float32
@_add("softmax_jacobian", "converts p to float32 (.float()) and returns float32 for float64 p",
      [r"dtype", r"float64", r"double", r"float32", r"precision"],
      differs(derivatives.softmax_jacobian, _P1))
def softmax_jacobian(p):
    p = p.float()
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


# differs: a batch (3, 4, 5): p[:, None] * p[None, :] pairs vectors with each other
@_add("softmax_jacobian", "outer product as p[:, None] * p[None, :], which is right for one vector only",
      [r"batch", r"leading", r"shape", r"unsqueeze\(-1\)", r"last (two )?dim", r"outer"],
      differs(derivatives.softmax_jacobian, _PB))
def softmax_jacobian(p):
    return torch.diag_embed(p) - p[:, None] * p[None, :]


@_right("softmax_jacobian")
def softmax_jacobian(p):
    return torch.diag_embed(p) - torch.einsum("...j,...l->...jl", p, p)


@_right("softmax_jacobian")
def softmax_jacobian(p):
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    return p.unsqueeze(-1) * (eye - p.unsqueeze(-2))  # p_j (δ_jl - p_l)


# ================================================================ flash_attention_backward (notebook 07)
def _fbwd_ref(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return attention_backward.flash_attention_backward(do, q, k, v, o, lse, causal, scale, block_q, block_k)


def _flash_backward(tile):
    """The notebook's scaffold with a student's three lines tile(s, lse_i, do_i, v_j, d_i) -> (p, dp, ds)."""
    def flash_attention_backward(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
        dtype, n_q, n_kv = q.dtype, q.shape[2], k.shape[2]
        scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        ct = torch.float64 if dtype == torch.float64 else torch.float32
        do, q, k, v, o, lse = (t.to(ct) for t in (do, q, k, v, o, lse))
        d = (do * o).sum(-1)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for j0 in range(0, n_kv, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
            for i0 in range(0, n_q, block_q):
                if causal and j0 > i0 + block_q - 1:
                    continue
                q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]
                lse_i, d_i = lse[:, :, i0:i0 + block_q], d[:, :, i0:i0 + block_q]
                s = q_i @ k_j.transpose(-2, -1) * scale
                if causal:
                    rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                    cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                    s = s.masked_fill(cols > rows, float("-inf"))
                p, dp, ds = tile(s, lse_i, do_i, v_j, d_i)
                dv[:, :, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
                dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
                dq[:, :, i0:i0 + block_q] += ds @ k_j * scale
        return dq.to(dtype), dk.to(dtype), dv.to(dtype)
    return flash_attention_backward


def _bwd_inputs(n_q=40, n_kv=50, d=16, causal=False, seed=42, dtype=torch.float64, scale=1.0):
    q, k, v = _qkv(n_q, n_kv, d, b=1, h=2, seed=seed, dtype=dtype, scale=scale)
    do = _randn(1, 2, n_q, d, seed=seed + 100, dtype=dtype)
    o, lse = attention.flash_attention_forward(q, k, v, causal)
    return do, q, k, v, o, lse


_BWD = _bwd_inputs()  # float64, N_q = 40, N_kv = 50, D = 16; run with tiles of 16


# differs: 50 keys in tiles of 16: each tile's softmax sums to 1 on its own
_add("flash_attention_backward", "rebuilds P with torch.softmax of the tile instead of exp(s - lse)",
     [r"lse", r"logsumexp", r"softmax", r"tile", r"whole row", r"exp\(s ?- ?lse"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(
         lambda s, lse_i, do_i, v_j, d_i: (lambda p: (p, do_i @ v_j.transpose(-2, -1),
                                                      p * (do_i @ v_j.transpose(-2, -1) - d_i[..., None])))(
             torch.softmax(s, dim=-1))))


def _tile_dp_no_t(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s - lse_i[..., None])
    dp = do_i @ v_j
    ds = p * (dp - d_i[..., None])
    return p, dp, ds


# differs: D = 16, tiles of 16 keys: (16 x 16) @ (16 x 16) runs silently wrong; the ragged last tile
# of 2 keys raises a shape error
_add("flash_attention_backward", "dp = do_i @ v_j without transposing v_j",
     [r"transpos", r"Vᵀ", r"V\^T", r"v_j\.T", r"transpose\(-2, ?-1\)"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(_tile_dp_no_t))


def _tile_no_d(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s - lse_i[..., None])
    dp = do_i @ v_j.transpose(-2, -1)
    return p, dp, p * dp


# differs: any input: dS = P ∘ dP, the D_i term is missing
_add("flash_attention_backward", "ds = p * dp, forgetting to subtract D_i",
     [r"\bD_?i?\b", r"delta", r"rowsum", r"d_i", r"subtract", r"dO ?∘ ?O"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(_tile_no_d))


def _tile_d_broadcast(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s - lse_i[..., None])
    dp = do_i @ v_j.transpose(-2, -1)
    return p, dp, p * (dp - d_i)


# differs: square 16 x 16 tiles: d_i broadcasts along the keys (silently wrong); the ragged tile raises
_add("flash_attention_backward", "subtracts d_i without [..., None], so it broadcasts along the wrong axis",
     [r"broadcast", r"axis", r"None", r"keepdim", r"unsqueeze", r"row"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(_tile_d_broadcast))


def _tile_no_p(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s - lse_i[..., None])
    dp = do_i @ v_j.transpose(-2, -1)
    return p, dp, dp - d_i[..., None]


# differs: any input: dS = dP - D, not multiplied by P
_add("flash_attention_backward", "ds = dp - d_i, forgetting to multiply by p",
     [r"\bP\b", r"p ?[∘*]", r"multipl", r"elementwise", r"∘"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(_tile_no_p))


def _tile_exp_ratio(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s) / torch.exp(lse_i)[..., None]
    dp = do_i @ v_j.transpose(-2, -1)
    return p, dp, p * (dp - d_i[..., None])


# differs: float32 inputs with large scores (q, k times 30): exp(s) and exp(lse) overflow: inf/inf
_add("flash_attention_backward", "p = exp(s) / exp(lse): overflows where exp(s - lse) would not",
     [r"overflow", r"exp\(s ?- ?lse", r"stab", r"inf", r"nan", r"subtract"],
     differs(_fbwd_ref, *_bwd_inputs(seed=43, dtype=torch.float32, scale=6.0), block_q=16, block_k=16))(
         _flash_backward(_tile_exp_ratio))


def _tile_local_d(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s - lse_i[..., None])
    dp = do_i @ v_j.transpose(-2, -1)
    return p, dp, p * (dp - (p * dp).sum(-1, keepdim=True))


# differs: 50 keys in tiles of 16: rowsum(P ∘ dP) of one tile is not D_i
_add("flash_attention_backward", "computes D as rowsum(p * dp) of the tile instead of using d_i = rowsum(dO ∘ O)",
     [r"\bD_?i?\b", r"delta", r"rowsum", r"dO ?∘ ?O", r"tile", r"whole row", r"d_i"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(_tile_local_d))


def _tile_ds_scaled(s, lse_i, do_i, v_j, d_i):
    p = torch.exp(s - lse_i[..., None])
    dp = do_i @ v_j.transpose(-2, -1)
    return p, dp, p * (dp - d_i[..., None]) / math.sqrt(do_i.shape[-1])


# differs: D = 16: dq and dk come out 4 times too small (the scale applied twice)
_add("flash_attention_backward", "multiplies ds by the scale as well, so dq and dk are scaled twice",
     [r"scale", r"twice", r"sqrt", r"double"],
     differs(_fbwd_ref, *_BWD, block_q=16, block_k=16))(_flash_backward(_tile_ds_scaled))


def _tile_einsum(s, lse_i, do_i, v_j, d_i):
    p = (s - lse_i.unsqueeze(-1)).exp()
    dp = torch.einsum("bhqd,bhkd->bhqk", do_i, v_j)
    return p, dp, p * dp - p * d_i.unsqueeze(-1)


_right("flash_attention_backward")(_flash_backward(_tile_einsum))


def _tile_where(s, lse_i, do_i, v_j, d_i):
    p = torch.where(torch.isneginf(s), torch.zeros_like(s), torch.exp(s - lse_i[..., None]))
    dp = torch.matmul(do_i, v_j.mT)
    return p, dp, torch.mul(p, dp.sub(d_i[..., None]))


_right("flash_attention_backward")(_flash_backward(_tile_where))


# ================================================================ flash_attention_backward_triton (notebook 07)
@triton.jit
def _bwd_dq_kernel(
        Q, K, V, DO, LSE, DELTA, DQ, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """The notebook's given dQ kernel."""
    start_m, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
    q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
    do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
    lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
        k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
        v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    tl.store(DQ + q_offs, (dq * scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < n_q)


def _bwd_wrapper(dkdv_kernel):
    def flash_attention_backward_triton(do, q, k, v, o, lse, causal=False, scale=None):
        """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels."""
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        scale = 1.0 / math.sqrt(D) if scale is None else scale
        q, k, v, do = (t.contiguous() for t in (q, k, v, do))
        lse = lse.float().contiguous()
        delta = (do.float() * o.float()).sum(-1).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        BLOCK_M, BLOCK_N = 32, 32
        precision = "ieee" if q.dtype == torch.float32 else "tf32"
        args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
        meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
        dkdv_kernel[(triton.cdiv(n_kv, BLOCK_N), B * H)](q, k, v, do, lse, delta, dk, dv, *args, **meta)
        _bwd_dq_kernel[(triton.cdiv(n_q, BLOCK_M), B * H)](q, k, v, do, lse, delta, dq, *args, **meta)
        return dq, dk, dv
    return flash_attention_backward_triton


def _bwd_triton_ref(do, q, k, v, o, lse, causal=False, scale=None):
    return attention_backward.flash_attention_backward(do, q, k, v, o, lse, causal, scale)


def _bwd_inputs32(n_q=40, n_kv=50, d=16, causal=False, seed=50):
    q, k, v = _qkv(n_q, n_kv, d, b=1, h=2, seed=seed)
    do = _randn(1, 2, n_q, d, seed=seed + 100)
    o, lse = attention.flash_attention_forward(q, k, v, causal)
    return do, q, k, v, o, lse


_BWD32 = _bwd_inputs32()  # float32, N_q = 40, N_kv = 50, D = 16
_BWD32C = _bwd_inputs32(70, 70, 16, causal=True, seed=51)


@triton.jit
def _dkdv_p_not_t(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(p.to(q.dtype), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: BLOCK_M = BLOCK_N = 32: P @ dO has the right shape, but is not Pᵀ dO
_add("flash_attention_backward_triton", "dv += tl.dot(p, do) without transposing p",
     [r"transpos", r"Pᵀ", r"P\^T", r"tl\.trans", r"\bdv\b", r"dV"],
     differs(_bwd_triton_ref, *_BWD32))(_bwd_wrapper(_dkdv_p_not_t))


@triton.jit
def _dkdv_no_delta(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * dp
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: any input: dK from dS = P ∘ dP, without D
_add("flash_attention_backward_triton", "ds = p * dp, forgetting to subtract delta (D_i)",
     [r"delta", r"\bD_?i?\b", r"rowsum", r"subtract", r"dO ?∘ ?O"],
     differs(_bwd_triton_ref, *_BWD32))(_bwd_wrapper(_dkdv_no_delta))


@triton.jit
def _dkdv_no_causal(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: causal: the diagonal tiles let queries see later keys (P > 0 above the diagonal)
_add("flash_attention_backward_triton", "leaves out the causal condition in keep",
     [r"causal", r"diagonal", r"mask", r"j ?<= ?i", r"offs_n.*<=.*offs_m", r"later keys", r"future"],
     differs(_bwd_triton_ref, *_BWD32C, causal=True))(_bwd_wrapper(_dkdv_no_causal))


@triton.jit
def _dkdv_lse_nkv(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_kv + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_kv + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: N_q = 40 != N_kv = 50 with B*H = 2: head 1's lse and delta are read at offset 50, not 40
# (wrong rows, and a masked-in read of 10 elements past the 80-element buffers: a read, no write)
_add("flash_attention_backward_triton", "indexes lse and delta with off_bh * n_kv instead of off_bh * n_q",
     [r"n_q", r"lse", r"delta", r"offset", r"index", r"cross", r"head"],
     differs(_bwd_triton_ref, *_bwd_inputs32(40, 50, 16, seed=52)))(_bwd_wrapper(_dkdv_lse_nkv))


@triton.jit
def _dkdv_no_start(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: N_q = 40 (two query blocks of 32): the first block is counted twice, queries 32..39 never
_add("flash_attention_backward_triton", "offs_m = tl.arange(0, BLOCK_M) without start_m: the first query "
     "block every time",
     [r"start_m", r"offset", r"first (query )?(block|tile)", r"same (block|tile)", r"offs_m"],
     differs(_bwd_triton_ref, *_BWD32))(_bwd_wrapper(_dkdv_no_start))


@triton.jit
def _dkdv_dk_do(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), do, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: any input: dK = dSᵀ dO instead of dSᵀ Q
_add("flash_attention_backward_triton", "dk += dsᵀ @ do instead of dsᵀ @ q",
     [r"\bq\b", r"Q_i", r"dk", r"dK", r"query"],
     differs(_bwd_triton_ref, *_BWD32))(_bwd_wrapper(_dkdv_dk_do))


@triton.jit
def _dkdv_no_scale(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: any input: P rebuilt from unscaled scores, exp(q kᵀ - lse)
_add("flash_attention_backward_triton", "rebuilds s = q kᵀ without the scale before exp(s - lse)",
     [r"scale", r"sqrt", r"√"],
     differs(_bwd_triton_ref, *_BWD32))(_bwd_wrapper(_dkdv_no_scale))


@triton.jit
def _dkdv_dp_not_t(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, v, input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


# differs: D = 32 = BLOCK_N: (32 x 32) @ (32 x 32) runs, but is dO V, not dO Vᵀ (D = 16 fails to compile)
_add("flash_attention_backward_triton", "dp = tl.dot(do, v) without transposing v",
     [r"transpos", r"Vᵀ", r"V\^T", r"tl\.trans", r"\bdp\b", r"dP"],
     differs(_bwd_triton_ref, *_bwd_inputs32(40, 50, 32, seed=53)))(_bwd_wrapper(_dkdv_dp_not_t))


@triton.jit
def _dkdv_mask_s(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        in_q = offs_m < n_q
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=in_q[:, None], other=0.0)
        do = tl.load(DO + q_offs, mask=in_q[:, None], other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=in_q, other=float("inf"))  # padded rows: P = 0
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=in_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        s = tl.where(offs_n[None, :] < n_kv, s, float("-inf"))
        if CAUSAL:
            s = tl.where(offs_m[:, None] >= offs_n[None, :], s, float("-inf"))
        p = tl.exp(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * dp - p * delta[:, None]
        dv = tl.dot(tl.trans(p.to(q.dtype)), do, dv, input_precision=PRECISION)
        dk = tl.dot(tl.trans(ds.to(q.dtype)), q, dk, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


_right("flash_attention_backward_triton")(_bwd_wrapper(_dkdv_mask_s))


@triton.jit
def _dkdv_exp2(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s2 = tl.dot(q, tl.trans(k), input_precision=PRECISION) * (scale * 1.4426950408889634)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_m[:, None] >= offs_n[None, :])
        p = tl.where(keep, tl.exp2(s2 - lse[:, None] * 1.4426950408889634), 0.0)  # base 2
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dk += tl.dot(tl.trans((p * (dp - delta[:, None])).to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


_right("flash_attention_backward_triton")(_bwd_wrapper(_dkdv_exp2))


# ================================================================ linear systems: inputs
_rng = np.random.default_rng(60)
_U = np.triu(_rng.standard_normal((6, 6))) + 4 * np.eye(6)
_U_LOWER_JUNK = _U + np.tril(_rng.standard_normal((6, 6)), -1)  # only the upper triangle counts
_Y = _rng.standard_normal(6)
_A = _rng.standard_normal((6, 6))  # a general matrix: partial pivoting swaps rows
_B = _rng.standard_normal(6)
_A10 = _rng.standard_normal((10, 10))


def _dd(n=8, seed=61):
    r = np.random.default_rng(seed)
    A = r.uniform(-1, 1, (n, n))
    A += np.diag(np.abs(A).sum(axis=1) + 1.0)  # strictly diagonally dominant
    return A, r.uniform(-1, 1, n), r.uniform(-1, 1, n)


_ADD, _BDD, _XDD = _dd()
_ACSR = sp.csr_array(np.where(np.abs(_ADD) > 0.5, _ADD, 0.0))


# ================================================================ back_substitution (notebook 08)
# differs: (6, 6): rows solved top-down use x values not yet computed
@_add("back_substitution", "loops top-down (range(n)) instead of from the last row",
      [r"order", r"bottom", r"last row", r"revers", r"backward", r"top", r"range\(n ?- ?1"],
      differs(elimination.back_substitution, _U, _Y))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    for i in range(len(x)):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# differs: (6, 6): x[0] is left as y[0]
@_add("back_substitution", "range(n - 1, 0, -1) stops before row 0, which is never solved",
      [r"row 0", r"first row", r"off.by.one", r"range", r"x\[0\]", r"x_1\b", r"last"],
      differs(elimination.back_substitution, _U, _Y))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    for i in range(len(x) - 1, 0, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# differs: U with junk below the diagonal: the whole row is used
@_add("back_substitution", "subtracts the whole row U[i] @ x (plus the diagonal back), reading below the diagonal",
      [r"upper", r"triangle", r"below", r"lower", r"triu"],
      differs(elimination.back_substitution, _U_LOWER_JUNK, _Y))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i] @ x + U[i, i] * x[i]) / U[i, i]
    return x


# differs: y (float64) is overwritten with the solution
@_add("back_substitution", "works in y itself (np.asarray, no copy), overwriting the caller's y",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(elimination.back_substitution, _U, _Y))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.asarray(y)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# differs: an integer y ([1, 2, 3, 4, 5, 6]): x keeps int dtype, every x_i truncated
@_add("back_substitution", "copies y with np.array(y), keeping an integer y's dtype (results truncated)",
      [r"int", r"dtype", r"float", r"truncat"],
      differs(elimination.back_substitution, _U, np.arange(1, 7)))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


# differs: (6, 6): the division applies to y_i alone
@_add("back_substitution", "divides y_i by u_ii before subtracting the sum (operator precedence)",
      [r"divid", r"diagonal", r"parenthes", r"bracket", r"precedence", r"u_ii"],
      differs(elimination.back_substitution, _U, _Y))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    for i in range(len(x) - 1, -1, -1):
        x[i] = x[i] / U[i, i] - U[i, i + 1:] @ x[i + 1:]
    return x


# differs: (6, 6): a column of U (below the diagonal) instead of the row
@_add("back_substitution", "uses the column U[i + 1:, i] instead of the row U[i, i + 1:]",
      [r"transpos", r"column", r"\brow\b", r"upper", r"lower"],
      differs(elimination.back_substitution, _U_LOWER_JUNK, _Y))
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i + 1:, i] @ x[i + 1:]) / U[i, i]
    return x


@_right("back_substitution")
def back_substitution(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    for j in range(len(x) - 1, -1, -1):  # column-oriented: solve x_j, then remove column j
        x[j] /= U[j, j]
        x[:j] -= np.multiply.outer(U[:j, j], x[j])
    return x


@_right("back_substitution")
def back_substitution(U, y):
    return scipy.linalg.solve_triangular(np.asarray(U, dtype=float), np.array(y, dtype=float), lower=False)


# ================================================================ gaussian_elimination (notebook 08)
def _ge_ref(A, b, pivoting="partial"):
    return elimination.gaussian_elimination(A, b, pivoting)


_A_TINY = np.array([[1e-20, 1.0], [1.0, 1.0]])
_A_NEG = np.array([[1e-20, 1.0], [-1.0, 1.0]])
_B2 = np.array([1.0, 2.0])


# differs: [[1e-20, 1], [1, 1]]: x_1 = 0 instead of 1
@_add("gaussian_elimination", "never swaps rows: no pivoting at all",
      [r"pivot", r"swap", r"tiny", r"multiplier"],
      differs(_ge_ref, _A_TINY, _B2))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# differs: [[1e-20, 1], [-1, 1]]: argmax of the signed column keeps the pivot 1e-20
@_add("gaussian_elimination", "chooses the pivot by the largest signed value, not the largest |a_ik|",
      [r"abs", r"magnitude", r"\|a", r"largest"],
      differs(_ge_ref, _A_NEG, _B2))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(A[k:, k]))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# differs: a 6 x 6 normal matrix: rows of A swapped, b's not
@_add("gaussian_elimination", "swaps the rows of A but not the entries of b",
      [r"\bb\b", r"right.hand", r"swap", r"rhs"],
      differs(_ge_ref, _A, _B))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# differs: 10 x 10 normal matrix: the pivot search looks at rows above k too
@_add("gaussian_elimination", "searches the whole column (rows 0..n-1) for the pivot, not rows k..n-1",
      [r"below", r"row k", r"k:", r"already", r"search", r"rows? (above|before)"],
      differs(_ge_ref, _A10, _rng.standard_normal(10)))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = int(np.argmax(np.abs(A[:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# differs: A and b are overwritten
@_add("gaussian_elimination", "eliminates in the caller's arrays (np.asarray, no copy)",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(_ge_ref, _A, _B))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# differs: a 6 x 6 normal matrix: `A[k], A[p] = A[p], A[k]` copies row p over row k (numpy views)
@_add("gaussian_elimination", "swaps rows with A[k], A[p] = A[p], A[k], which duplicates a row (views)",
      [r"swap", r"view", r"copy", r"duplicat", r"fancy", r"A\[\[k, ?p\]\]"],
      differs(_ge_ref, _A, _B))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[k], A[p] = A[p], A[k]
        b[k], b[p] = b[p], b[k]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return elimination.back_substitution(A, b)


# differs: any system: b is swapped but never eliminated
@_add("gaussian_elimination", "forgets to apply the row operations to b",
      [r"\bb\b", r"right.hand", r"rhs", r"b_i"],
      differs(_ge_ref, _A, _B))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
    return elimination.back_substitution(A, b)


# differs: an integer matrix (det 4): np.array(A) keeps int, every float update is truncated to int
@_add("gaussian_elimination", "copies A with np.array(A), keeping an integer matrix's dtype",
      [r"int", r"dtype", r"float", r"truncat", r"cast"],
      differs(_ge_ref, np.array([[2, 1, 1], [4, 3, 3], [8, 7, 9]]), np.array([1, 2, 3])))
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A)
    b = np.array(b)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] = A[k + 1:, k:] - np.outer(m, A[k, k:])
        b[k + 1:] = b[k + 1:] - m * b[k]
    return elimination.back_substitution(A, b)


@_right("gaussian_elimination")
def gaussian_elimination(A, b, pivoting="partial"):
    Ab = np.column_stack([np.array(A, dtype=float), np.array(b, dtype=float)])  # [A | b]
    n = Ab.shape[0]
    for k in range(n):
        col = np.abs(Ab[k:, k])
        p = k + len(col) - 1 - int(np.argmax(col[::-1]))  # ties: the lowest row
        Ab[[k, p]] = Ab[[p, k]]
        Ab[k + 1:] -= np.outer(Ab[k + 1:, k] / Ab[k, k], Ab[k])
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        x[i] = (Ab[i, n] - Ab[i, i + 1:n] @ x[i + 1:]) / Ab[i, i]
    return x


@_right("gaussian_elimination")
def gaussian_elimination(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n - 1):
        p = max(range(k, n), key=lambda i: abs(A[i, k]))
        if p != k:
            A[[k, p], :] = A[[p, k], :]
            b[[k, p]] = b[[p, k]]
        for i in range(k + 1, n):
            m = A[i, k] / A[k, k]
            A[i, k:] -= m * A[k, k:]
            b[i] -= m * b[k]
    return scipy.linalg.solve_triangular(A, b, lower=False)


# ================================================================ lu_factor (notebook 08)
def _lu_ref(A):
    return scipy.linalg.lu_factor(np.array(A, dtype=float))


# differs: any matrix: piv holds p + 1
@_add("lu_factor", "stores 1-based pivots (p + 1) in piv",
      [r"0.based", r"1.based", r"zero.based", r"one.based", r"index", r"piv"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p + 1
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# differs: a 6 x 6 matrix with swaps after step 0: the multipliers left of column k are not swapped
@_add("lu_factor", "swaps only columns k: of the two rows, leaving the stored multipliers unswapped",
      [r"whole row", r"multiplier", r"left", r"\bL\b", r"entire row", r"swap"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p], k:] = lu[[p, k], k:]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# differs: a 6 x 6 matrix: piv returned as the final row order, not the swap at each step
@_add("lu_factor", "returns piv as the final permutation of the rows instead of the swap made at each step",
      [r"swap", r"permutation", r"convention", r"scipy", r"piv\[k\]", r"row k was swapped"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    perm = np.arange(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        perm[[k, p]] = perm[[p, k]]
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, perm.astype(np.int32)


# differs: any matrix: the entries below the diagonal are a_ik, not l_ik = a_ik / a_kk
@_add("lu_factor", "never divides column k by the pivot: stores a_ik instead of the multipliers l_ik",
      [r"multiplier", r"divid", r"l_ik", r"pivot", r"\bL\b", r"unit"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k] / lu[k, k], lu[k, k + 1:])
    return lu, piv


# differs: any matrix: piv is a float array
@_add("lu_factor", "makes piv with np.zeros(n), a float array",
      [r"int", r"dtype", r"float", r"integer"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# differs: a matrix whose largest |a_i0| is negative: [[1, 2, 0], [-5, 1, 1], [2, 0, 3]]
@_add("lu_factor", "pivots on the largest signed value, not the largest |a_ik|",
      [r"abs", r"magnitude", r"\|a", r"largest", r"pivot"],
      differs(_lu_ref, np.array([[1.0, 2, 0], [-5, 1, 1], [2, 0, 3]])))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(lu[k:, k]))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# differs: A (float64) is overwritten with the factors
@_add("lu_factor", "factors in place (np.asarray), overwriting the caller's A",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.asarray(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# differs: a 6 x 6 matrix with a swap: `lu[k], lu[p] = lu[p], lu[k]` leaves two copies of row p
@_add("lu_factor", "swaps rows with lu[k], lu[p] = lu[p], lu[k], which duplicates a row (views)",
      [r"swap", r"view", r"copy", r"duplicat", r"fancy"],
      differs(_lu_ref, _A))
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[k], lu[p] = lu[p], lu[k]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


@_right("lu_factor")
def lu_factor(A):
    lu = np.array(A, dtype=float)
    n = lu.shape[0]
    piv = np.arange(n, dtype=np.intp)
    for k in range(n):
        col = np.abs(lu[k:, k])
        p = k + int(np.flatnonzero(col == col.max())[-1])  # ties: the last row with the largest |a|
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        for i in range(k + 1, n):  # row by row
            lu[i, k] /= lu[k, k]
            lu[i, k + 1:] -= lu[i, k] * lu[k, k + 1:]
    return lu, piv


@_right("lu_factor")
def lu_factor(A):
    lu = np.array(A, dtype=float, order="F")
    n = lu.shape[0]
    piv = []
    for k in range(n):  # left-looking: update column k from the columns already factored
        if k:
            lu[:k, k] = scipy.linalg.solve_triangular(lu[:k, :k], lu[:k, k], lower=True, unit_diagonal=True)
            lu[k:, k] -= lu[k:, :k] @ lu[:k, k]
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv.append(p)
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
    return np.ascontiguousarray(lu), np.array(piv, dtype=np.int32)


# ================================================================ elimination_flops (notebook 08)
def _flops_ref(n):
    return elimination.elimination_flops(n)


# differs: n = 10: 666 instead of 705
@_add("elimination_flops", "returns the leading term 2n^3/3 only",
      [r"exact", r"leading", r"lower.order", r"n\^2", r"n²", r"asymptot"],
      differs(_flops_ref, 10))
def elimination_flops(n):
    return 2 * n ** 3 // 3


# differs: n = 10: LU alone (585) instead of [A | b] (705)
@_add("elimination_flops", "counts the elimination of A only, not the updates of b",
      [r"\bb\b", r"right.hand", r"rhs", r"augmented", r"\[A ?\| ?b\]", r"n\(n ?- ?1\)"],
      differs(_flops_ref, 10))
def elimination_flops(n):
    return (4 * n ** 3 - 3 * n ** 2 - n) // 6


# differs: n = 10: multiply-add counted as one flop
@_add("elimination_flops", "counts a multiply-add as one flop",
      [r"multiply.add", r"2 flops", r"two flops", r"fma", r"convention"],
      differs(_flops_ref, 10))
def elimination_flops(n):
    return sum(m * m + 2 * m for m in range(1, n))


# differs: n = 10: the n(n-1)/2 divisions for the multipliers are not counted
@_add("elimination_flops", "forgets the divisions that form the multipliers",
      [r"division", r"divid", r"multiplier", r"l_ik"],
      differs(_flops_ref, 10))
def elimination_flops(n):
    return sum(2 * m * m + 2 * m for m in range(1, n))


# differs: n = 10: the sum runs to m = n instead of n - 1
@_add("elimination_flops", "sums over m = 1 .. n instead of 1 .. n - 1",
      [r"off.by.one", r"bound", r"range", r"n ?- ?1", r"\bsum"],
      differs(_flops_ref, 10))
def elimination_flops(n):
    return sum(2 * m * m + 3 * m for m in range(1, n + 1))


# differs: n = 10**6: the float division rounds (4e18 is past 2**53) and the type is float
@_add("elimination_flops", "divides with / and returns a float (inexact for large n)",
      [r"\bint\b", r"integer", r"float", r"//", r"exact", r"type"],
      differs(_flops_ref, 10 ** 6))
def elimination_flops(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) / 6


# differs: n = 10: n^2 for back substitution added
@_add("elimination_flops", "includes back substitution (n^2 more)",
      [r"back substitution", r"n\^2", r"n²", r"not included", r"exclud"],
      differs(_flops_ref, 10))
def elimination_flops(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) // 6 + n * n


@_right("elimination_flops")
def elimination_flops(n):
    return n * (n - 1) * (4 * n + 7) // 6


@_right("elimination_flops")
def elimination_flops(n):
    flops = 0
    for k in range(n):  # step k: rows below the pivot, each: 1 division, 2 per column right of k, 2 for b
        rows = n - k - 1
        flops += rows * (1 + 2 * rows + 2)
    return flops


# ================================================================ blocked_lu (notebook 08)
def _blu_ref(A, block):
    return scipy.linalg.lu_factor(np.array(A, dtype=float))


# differs: 10 x 10, block 3: swaps inside a panel do not reach the multipliers of earlier panels
@_add("blocked_lu", "applies each swap to the panel and the columns right of it, not to the whole row",
      [r"whole row", r"multiplier", r"left", r"earlier panel", r"entire row", r"swap"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p], k:] = lu[[p, j], k:]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


# differs: 10 x 10, block 3: U_12 solved with L_11's diagonal taken as U_11's
@_add("blocked_lu", "solve_triangular without unit_diagonal=True for U_12 = L_11^-1 A_12",
      [r"unit", r"diagonal", r"L_11", r"U_12"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


# differs: 10 x 10, block 3: A_22 updated with A_12 before it is turned into U_12
@_add("blocked_lu", "updates A_22 with the old A_12 before solving for U_12 (steps 2 and 3 swapped)",
      [r"order", r"U_12", r"before", r"A_12", r"step"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=True)
    return lu, piv


# differs: 10 x 10, block 3: the panel's rank-1 steps update every column to the right, then
# the trailing update subtracts L_21 U_12 a second time
@_add("blocked_lu", "rank-1 steps inside the panel update all columns to the right (j + 1:), so the "
      "trailing block is updated twice",
      [r"twice", r"double", r"panel", r"j ?\+ ?1:e", r"columns? (of|in) the panel", r"right of"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:] -= np.outer(lu[j + 1:, j], lu[j, j + 1:])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


# differs: 10 x 10, block 3: the pivot is searched in the panel's rows j..e-1 only
@_add("blocked_lu", "searches the pivot among the panel's rows (j:e) instead of down to the bottom",
      [r"bottom", r"pivot", r"search", r"all rows", r"whole column", r"below"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:e, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


# differs: 10 x 10, block 3: e = k + block runs past n in the last panel (index error)
@_add("blocked_lu", "e = k + block without min(., n): the last, narrower panel runs past the matrix",
      [r"min", r"last panel", r"partial", r"narrow", r"multiple", r"\bn\b", r"index"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = k + block
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


# differs: 10 x 10, block 3: piv[j] is stored relative to the panel (p - k)
@_add("blocked_lu", "stores piv relative to the panel start (p - k) instead of the global row",
      [r"global", r"0.based", r"index", r"offset", r"piv", r"relative"],
      differs(_blu_ref, _A10, 3))
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p - k
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True, unit_diagonal=True)
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


@_right("blocked_lu")
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = lu.shape[0]
    piv = np.empty(n, dtype=np.int64)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            col = np.abs(lu[j:, j])
            p = j + int(np.flatnonzero(col == col.max())[-1])  # ties: the last candidate
            piv[j] = p
            lu[[j, p], :] = lu[[p, j], :]
            lu[j + 1:, j] /= lu[j, j]
            for c in range(j + 1, e):  # column by column inside the panel
                lu[j + 1:, c] -= lu[j + 1:, j] * lu[j, c]
        for r in range(k + 1, e):  # U_12 by forward substitution with the unit L_11
            lu[r, e:] -= lu[r, k:r] @ lu[k:r, e:]
        lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


@_right("blocked_lu")
def blocked_lu(A, block):
    lu = np.array(A, dtype=float)
    n = lu.shape[0]
    piv = np.zeros(n, dtype=np.int32)
    for k in range(0, n, block):
        e = min(k + block, n)
        for j in range(k, e):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        L11 = np.tril(lu[k:e, k:e], -1) + np.eye(e - k)
        lu[k:e, e:] = np.linalg.solve(L11, lu[k:e, e:])
        lu[e:, e:] -= np.einsum("ik,kj->ij", lu[e:, k:e], lu[k:e, e:])
    return lu, piv


# ================================================================ gauss_seidel_sweep (notebook 09)
def _gss_ref(A, b, x):
    return iterative.gauss_seidel_sweep(A, b, x)


# differs: any dd system: every row uses the old x (a Jacobi sweep)
@_add("gauss_seidel_sweep", "computes every row from the old x: a Jacobi sweep",
      [r"jacobi", r"new values?", r"old", r"as soon as", r"above it", r"updated"],
      differs(_gss_ref, _ADD, _BDD, _XDD))
def gauss_seidel_sweep(A, b, x):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x_old = np.array(x, dtype=float)
    x_new = x_old.copy()
    for i in range(len(b)):
        x_new[i] = (b[i] - A[i] @ x_old + A[i, i] * x_old[i]) / A[i, i]
    return x_new


# differs: the caller's x (float64) is overwritten
@_add("gauss_seidel_sweep", "updates the caller's x in place (np.asarray, no copy)",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(_gss_ref, _ADD, _BDD, _XDD))
def gauss_seidel_sweep(A, b, x):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.asarray(x, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# differs: any system: the diagonal term a_ii x_i is subtracted with the rest
@_add("gauss_seidel_sweep", "subtracts the whole row A[i] @ x without adding a_ii x_i back",
      [r"diagonal", r"a_ii", r"j ?!= ?i", r"j ?≠ ?i", r"itself", r"a_ii x_i"],
      differs(_gss_ref, _ADD, _BDD, _XDD))
def gauss_seidel_sweep(A, b, x):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x) / A[i, i]
    return x


# differs: a CSR matrix: vals[i] is the i-th stored entry of row i, not its diagonal
@_add("gauss_seidel_sweep", "for CSR, takes the diagonal as vals[i] (position i in the row's data) "
      "instead of the entry whose column is i",
      [r"diagonal", r"column", r"indices", r"CSR", r"sparse", r"cols? ?== ?i"],
      differs(_gss_ref, _ACSR, _BDD, _XDD))
def gauss_seidel_sweep(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[min(i, len(vals) - 1)]
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
        return x
    A = np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# differs: any system: rows swept from the last to the first
@_add("gauss_seidel_sweep", "sweeps the rows in reverse order (n - 1 down to 0)",
      [r"order", r"revers", r"backward", r"in order", r"first row"],
      differs(_gss_ref, _ADD, _BDD, _XDD))
def gauss_seidel_sweep(A, b, x):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x, dtype=float)
    for i in reversed(range(len(b))):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# differs: an integer start vector: np.array(x) keeps int, every new x_i is truncated
@_add("gauss_seidel_sweep", "copies x with np.array(x), keeping an integer x's dtype (values truncated)",
      [r"int", r"dtype", r"float", r"truncat"],
      differs(_gss_ref, _ADD, _BDD, np.arange(8)))
def gauss_seidel_sweep(A, b, x):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


@_right("gauss_seidel_sweep")
def gauss_seidel_sweep(A, b, x):
    # the splitting form: x + (D + L)^{-1} (b - A x), one triangular solve
    x = np.asarray(x, dtype=float)
    r = np.asarray(b, dtype=float) - A @ x
    if sp.issparse(A):
        M = sp.csr_array(sp.tril(A, format="csr"))
        return x + sp.linalg.spsolve_triangular(M, r, lower=True)
    return x + scipy.linalg.solve_triangular(np.tril(A), r, lower=True)


@_right("gauss_seidel_sweep")
def gauss_seidel_sweep(A, b, x):
    A = sp.csr_array(A)  # dense input too: one code path, row slices of CSR
    x = np.array(x, dtype=float)
    for i in range(A.shape[0]):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        cols, vals = A.indices[lo:hi], A.data[lo:hi]
        off = cols != i
        x[i] = (b[i] - vals[off] @ x[cols[off]]) / vals[~off].sum()
    return x


# ================================================================ gauss_seidel (notebook 09)
def _gs_ref(A, b, x0=None, **kw):
    return iterative.gauss_seidel(A, b, x0, **kw)


def differs_cb(ref, *args, **kwargs):
    """witness for solvers: (x, info), the number of callbacks and the iterates passed to them."""
    def run(fn):
        seen = []
        ins = [_clone(a) for a in args]
        out = fn(*ins, callback=lambda xk: seen.append(np.array(xk, dtype=float)), **kwargs)
        return out, seen, ins

    def witness(fn):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (x_r, i_r), seen_r, _ = run(ref)
            try:
                (x_f, i_f), seen_f, ins = run(fn)
            except Exception as err:  # noqa: BLE001
                return f"raises {type(err).__name__}: {str(err)[:80]}"
        for a, b in zip(ins, args):
            if not _equal_inputs(a, b):
                return "modifies its input"
        if (i_f == 0) != (i_r == 0):
            return f"info {i_f} instead of {i_r}"
        if i_r:  # not converged: where it stops after a blow-up is the method's choice, but
            # it must stop (labkit stops at a residual 1e12 times the first, the statement at inf)
            limit = kwargs.get("maxiter")
            if limit is not None and i_r < limit <= i_f:
                return f"info {i_f} (= maxiter) instead of stopping at the blow-up ({i_r})"
            return None
        if len(seen_f) != len(seen_r):
            return f"{len(seen_f)} callbacks instead of {len(seen_r)}"
        for a, b in zip(seen_f, seen_r):
            if not np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True):
                return "callback sees other iterates"
        return _diff(np.asarray(x_f, dtype=float), x_r)
    return witness


_XSTAR = np.linalg.solve(_ADD, _BDD)


# differs: x0 already within tolerance (x* + 1e-12): the reference returns it with no sweep, this one sweeps once
@_add("gauss_seidel", "tests the residual after each sweep only, so it always sweeps at least once",
      [r"before", r"x0", r"already", r"first sweep", r"callback", r"zero sweeps", r"no sweep"],
      differs_cb(_gs_ref, _ADD, _BDD, _XSTAR + 1e-12))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    for k in range(1, maxiter + 1):
        x = iterative.gauss_seidel_sweep(A, b, x)
        if callback is not None:
            callback(x)
        r = np.linalg.norm(b - A @ x)
        if r <= tol:
            return x, 0
        if not np.isfinite(r):
            return x, k
    return x, maxiter


# differs: b = 0, x0 = ones, atol = 1e-6, maxiter = 200: tol = rtol * 0 = 0 is never reached
@_add("gauss_seidel", "stops on rtol * ||b|| only, ignoring atol",
      [r"atol", r"max\(", r"absolute"],
      differs_cb(_gs_ref, _ADD, np.zeros(8), np.ones(8), atol=1e-6, maxiter=200))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = rtol * np.linalg.norm(b)
    for k in range(maxiter):
        r = np.linalg.norm(b - A @ x)
        if r <= tol:
            return x, 0
        if not np.isfinite(r):
            return x, max(k, 1)
        x = iterative.gauss_seidel_sweep(A, b, x)
        if callback is not None:
            callback(x)
    return x, 0 if np.linalg.norm(b - A @ x) <= tol else maxiter


# differs: any run with sweeps: the callback receives the iterate before the sweep
@_add("gauss_seidel", "calls callback(x) before each sweep instead of after it",
      [r"callback", r"after", r"before"],
      differs_cb(_gs_ref, _ADD, _BDD))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    for k in range(maxiter):
        r = np.linalg.norm(b - A @ x)
        if r <= tol:
            return x, 0
        if not np.isfinite(r):
            return x, max(k, 1)
        if callback is not None:
            callback(x)
        x = iterative.gauss_seidel_sweep(A, b, x)
    return x, 0 if np.linalg.norm(b - A @ x) <= tol else maxiter


# differs: Gauss-Seidel diverging (the 3 x 3 matrix where only Jacobi converges), maxiter = 3000:
# the residual overflows after about 1000 sweeps, this keeps going and returns info = 3000 and NaNs
@_add("gauss_seidel", "never checks for blow-up: sweeps on through inf/NaN to maxiter",
      [r"blow", r"diverg", r"finite", r"\bnan\b", r"\binf", r"overflow", r"stop"],
      differs_cb(_gs_ref, np.array([[1.0, 2, -2], [1, 1, 1], [2, 2, 1]]), np.array([1.0, 3, 5]), maxiter=3000))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    Ad = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    with np.errstate(all="ignore"):
        for k in range(maxiter):
            if np.linalg.norm(b - Ad @ x) <= tol:
                return x, 0
            x = x.copy()
            for i in range(len(b)):  # the sweep, written out
                x[i] = (b[i] - Ad[i] @ x + Ad[i, i] * x[i]) / Ad[i, i]
            if callback is not None:
                callback(x)
        return x, 0 if np.linalg.norm(b - Ad @ x) <= tol else maxiter


# differs: b scaled by 1e-6: |r| <= 1e-8 is a relative residual of about 1e-2, it stops far too early
@_add("gauss_seidel", "compares the residual with rtol itself, not rtol * ||b||",
      [r"relative", r"\|\|b\|\|", r"norm\(b\)", r"rtol ?\* ?", r"scale", r"\|b\|"],
      differs_cb(_gs_ref, _ADD, _BDD * 1e-6))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol, atol)
    for k in range(maxiter):
        r = np.linalg.norm(b - A @ x)
        if r <= tol:
            return x, 0
        if not np.isfinite(r):
            return x, max(k, 1)
        x = iterative.gauss_seidel_sweep(A, b, x)
        if callback is not None:
            callback(x)
    return x, 0 if np.linalg.norm(b - A @ x) <= tol else maxiter


# differs: a float x0: the sweeps are done in x0 itself
@_add("gauss_seidel", "sweeps in place in the caller's x0 (x = x0, no copy)",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang", r"x0"],
      differs_cb(_gs_ref, _ADD, _BDD, np.full(8, 0.5)))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    A = np.asarray(A.toarray() if sp.issparse(A) else A, dtype=float)
    x = np.zeros(len(b)) if x0 is None else x0
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    for k in range(maxiter):
        r = np.linalg.norm(b - A @ x)
        if r <= tol:
            return x, 0
        if not np.isfinite(r):
            return x, max(k, 1)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        if callback is not None:
            callback(x)
    return x, 0 if np.linalg.norm(b - A @ x) <= tol else maxiter


# differs: any converging run with sweeps: info is the number of sweeps, not 0
@_add("gauss_seidel", "returns info = number of sweeps also when it converged",
      [r"info", r"\b0\b", r"converged", r"success"],
      differs_cb(_gs_ref, _ADD, _BDD))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * len(b)) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    for k in range(maxiter):
        r = np.linalg.norm(b - A @ x)
        if r <= tol or not np.isfinite(r):
            return x, k
        x = iterative.gauss_seidel_sweep(A, b, x)
        if callback is not None:
            callback(x)
    return x, maxiter


# ================================================================ sor_sweep (notebook 09)
def _sor_ref(A, b, x, omega):
    return iterative.sor_sweep(A, b, x, omega)


# differs: omega = 1.5: (1 - omega) weights the Gauss-Seidel value instead of the old x_i
@_add("sor_sweep", "swaps the weights: omega * x_i + (1 - omega) * (Gauss-Seidel value)",
      [r"omega", r"ω", r"weight", r"1 ?- ?omega", r"swap"],
      differs(_sor_ref, _ADD, _BDD, _XDD, 1.5))
def sor_sweep(A, b, x, omega):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = omega * x[i] + (1 - omega) * gs
    return x


# differs: omega = 1.5: every Gauss-Seidel value from the old x (Jacobi over-relaxation)
@_add("sor_sweep", "computes the Gauss-Seidel values from the old x (a weighted Jacobi sweep)",
      [r"jacobi", r"new values?", r"old", r"current", r"partly new", r"as soon as"],
      differs(_sor_ref, _ADD, _BDD, _XDD, 1.5))
def sor_sweep(A, b, x, omega):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x_old = np.array(x, dtype=float)
    x_new = x_old.copy()
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x_old + A[i, i] * x_old[i]) / A[i, i]
        x_new[i] = (1 - omega) * x_old[i] + omega * gs
    return x_new


# differs: omega = 1.5: the (1 - omega) x_i term is dropped
@_add("sor_sweep", "sets x_i = omega * (Gauss-Seidel value), dropping (1 - omega) x_i",
      [r"1 ?- ?omega", r"1 ?- ?ω", r"old value", r"x_i", r"relax"],
      differs(_sor_ref, _ADD, _BDD, _XDD, 1.5))
def sor_sweep(A, b, x, omega):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x, dtype=float)
    for i in range(len(b)):
        x[i] = omega * (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# differs: the caller's x (float64) is overwritten
@_add("sor_sweep", "updates the caller's x in place (np.asarray, no copy)",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang"],
      differs(_sor_ref, _ADD, _BDD, _XDD, 1.5))
def sor_sweep(A, b, x, omega):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.asarray(x, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


# differs: omega = 1.5: adds omega times the Gauss-Seidel value to x_i instead of relaxing towards it
@_add("sor_sweep", "x_i += omega * (Gauss-Seidel value): adds the value instead of the correction",
      [r"1 ?- ?omega", r"correction", r"relax", r"x_i", r"omega"],
      differs(_sor_ref, _ADD, _BDD, _XDD, 1.5))
def sor_sweep(A, b, x, omega):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x, dtype=float)
    for i in range(len(b)):
        x[i] += omega * (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# differs: omega = 1.5: a plain Gauss-Seidel sweep
@_add("sor_sweep", "ignores omega: a plain Gauss-Seidel sweep",
      [r"omega", r"ω", r"relax"],
      differs(_sor_ref, _ADD, _BDD, _XDD, 1.5))
def sor_sweep(A, b, x, omega):
    return iterative.gauss_seidel_sweep(A, b, x)


@_right("sor_sweep")
def sor_sweep(A, b, x, omega):
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    x = np.array(x, dtype=float)
    for i in range(len(b)):  # the correction form: x_i + omega * r_i / a_ii
        x[i] += omega * (b[i] - A[i] @ x) / A[i, i]
    return x


@_right("sor_sweep")
def sor_sweep(A, b, x, omega):
    Ad = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    M = np.diag(np.diag(Ad)) / omega + np.tril(Ad, -1)  # the splitting M = D/omega + L
    x = np.asarray(x, dtype=float)
    return x + scipy.linalg.solve_triangular(M, np.asarray(b, dtype=float) - Ad @ x, lower=True)


# ================================================================ red_black_sweep (notebook 09)
def _rb_ref(u, f, omega=1.0):
    return poisson.red_black_sweep(np.array(u, dtype=float), f, omega)


_rng_rb = np.random.default_rng(70)
_URB = _rng_rb.uniform(-1, 1, (7, 7))  # m = 5, with a nonzero boundary
_FRB = _rng_rb.uniform(-1, 1, (5, 5))


# differs: u is updated in place and returned
@_add("red_black_sweep", "updates u in place and returns it (no copy)",
      [r"in.place", r"modif", r"overwr", r"input", r"copy", r"mutat", r"chang", r"new"],
      differs(_rb_ref, _URB, _FRB, 1.3))
def red_black_sweep(u, f, omega=1.0):
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(f.shape[0]):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


# differs: any grid: black points updated from the old red values
@_add("red_black_sweep", "computes the black update from the old grid, not from the new red values",
      [r"new red", r"red first", r"old", r"black", r"gauss.seidel", r"jacobi"],
      differs(_rb_ref, _URB, _FRB, 1.0))
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(f.shape[0]):
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


# differs: any grid: black points first, then red
@_add("red_black_sweep", "updates the black points first, then the red ones",
      [r"red first", r"order", r"colou?r", r"black", r"\(i ?\+ ?j\) even"],
      differs(_rb_ref, _URB, _FRB, 1.0))
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    red, black = poisson.red_black_masks(f.shape[0])
    for mask in (black, red):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


# differs: any grid: only the neighbours are divided by 4
@_add("red_black_sweep", "divides only the neighbour sum by 4: f + (sum of neighbours) / 4",
      [r"\bf\b", r"1/4", r"¼", r"quarter", r"divid", r"h\^?2", r"parenthes", r"bracket"],
      differs(_rb_ref, _URB, _FRB, 1.0))
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(f.shape[0]):
        gs = f + (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


# differs: any nonzero f: the sign of f flipped
@_add("red_black_sweep", "subtracts f instead of adding it: (neighbours - f) / 4",
      [r"sign", r"\bf\b", r"minus", r"negat", r"right.hand"],
      differs(_rb_ref, _URB, _FRB, 1.0))
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(f.shape[0]):
        gs = (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - f) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


# differs: a grid with a nonzero boundary: np.roll over the padded grid also rewrites the boundary
@_add("red_black_sweep", "updates the whole padded grid with np.roll, overwriting the boundary",
      [r"boundary", r"border", r"edge", r"padd", r"interior"],
      differs(_rb_ref, _URB, _FRB, 1.0))
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    fp = np.pad(f, 1)
    i, j = np.indices(u.shape)
    for colour in (0, 1):  # (i + j) even: red (the padding shifts both indices by 1)
        mask = (i + j) % 2 == colour
        gs = (fp + np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1)) / 4
        u[mask] = (1 - omega) * u[mask] + omega * gs[mask]
    return u


# differs: omega = 1.3: a plain Gauss-Seidel red-black sweep
@_add("red_black_sweep", "ignores omega: plain red-black Gauss-Seidel",
      [r"omega", r"ω", r"relax", r"sor"],
      differs(_rb_ref, _URB, _FRB, 1.3))
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in poisson.red_black_masks(f.shape[0]):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = gs[mask]
    return u


@_right("red_black_sweep")
def red_black_sweep(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    m = f.shape[0]
    for parity in (0, 1):  # red: (i + j) even, by strided slices of the interior
        for i0 in (0, 1):
            j0 = (parity + i0) % 2
            I, J = slice(1 + i0, m + 1, 2), slice(1 + j0, m + 1, 2)
            Im, Ip = slice(i0, m, 2), slice(2 + i0, m + 2, 2)
            Jm, Jp = slice(j0, m, 2), slice(2 + j0, m + 2, 2)
            nb = u[Im, J] + u[Ip, J] + u[I, Jm] + u[I, Jp]
            u[I, J] = (1 - omega) * u[I, J] + omega * (f[i0::2, j0::2] + nb) / 4
    return u


@_right("red_black_sweep")
def red_black_sweep(u, f, omega=1.0):
    new = u.copy().astype(float)
    i, j = np.indices(f.shape)
    for colour in ((i + j) % 2 == 0, (i + j) % 2 == 1):
        nb = new[:-2, 1:-1] + new[2:, 1:-1] + new[1:-1, :-2] + new[1:-1, 2:]
        relaxed = new[1:-1, 1:-1] + omega * ((f + nb) / 4 - new[1:-1, 1:-1])
        new[1:-1, 1:-1] = np.where(colour, relaxed, new[1:-1, 1:-1])
    return new


# ================================================ moved from RIGHT when exercise 9.2's spec was settled
# Written as right answers to 9.2's first spec ("stop when the residual is no longer finite"). Issue 21
# settled the spec on labkit's rule (stop once ||b - A x|| > 1e12 ||r_0||), so they are wrong answers now.
# Appended last, so that the first-contact results (tests/fresh_results.json, by index) keep their order.
@_add("gauss_seidel", "follows 9.2's first spec: stops a blow-up only once the residual is no longer finite "
      "(the spec now says: past 1e12 ||r_0||, as labkit)", [r"1e12", r"blow"],
      differs_cb(_gs_ref, np.array([[1.0, 3.0], [3.0, 1.0]]), np.ones(2), maxiter=500))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    n = len(b)
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=float)
    maxiter = max(5000, 10 * n) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    M = sp.csr_array(sp.tril(A, format="csr")) if sp.issparse(A) else np.tril(np.asarray(A, dtype=float))
    sweeps = 0
    with np.errstate(all="ignore"):
        while True:
            r = b - A @ x
            rnorm = np.linalg.norm(r)
            if rnorm <= tol:
                return x, 0
            if not np.isfinite(rnorm) or sweeps == maxiter:
                return x, max(sweeps, 1)
            step = (sp.linalg.spsolve_triangular(M, r, lower=True) if sp.issparse(M)
                    else scipy.linalg.solve_triangular(M, r, lower=True, check_finite=False))
            x = x + step  # one Gauss-Seidel sweep in splitting form
            sweeps += 1
            if callback is not None:
                callback(x)


@_add("gauss_seidel", "follows 9.2's first spec: stops a blow-up only once the residual is no longer finite "
      "(the spec now says: past 1e12 ||r_0||, as labkit)", [r"1e12", r"blow"],
      differs_cb(_gs_ref, np.array([[1.0, 3.0], [3.0, 1.0]]), np.ones(2), maxiter=500))
def gauss_seidel(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    b = np.asarray(b, dtype=float)
    x = np.zeros(b.shape) if x0 is None else np.array(x0, dtype=float)
    limit = max(5000, 10 * b.size) if maxiter is None else maxiter
    tol = max(rtol * np.linalg.norm(b), atol)
    k = 0
    with np.errstate(all="ignore"):
        r = np.linalg.norm(b - A @ x)
        while r > tol and np.isfinite(r) and k < limit:
            x = iterative.gauss_seidel_sweep(A, b, x)
            k += 1
            if callback is not None:
                callback(x)
            r = np.linalg.norm(b - A @ x)
    return (x, 0) if r <= tol else (x, max(k, 1))
