"""Blind test set A: wrong student answers to the softmax / attention exercises (notebooks 00-06).

Written from the notebooks' statements and solutions only, independently of the checkers. Each
entry of ``WRONG`` is one plausible student mistake; ``WITNESS[i]()`` returns ``(args, kwargs)``,
a valid input on which ``WRONG[i].fn`` differs from labkit's reference, and ``witness(i)`` says
in words what that input is. ``tests/verify_blind_a.py`` runs them all against labkit.

Every Triton answer is the notebook's exercise cell (kernel and host wrapper) with one mistake
edited in; none of them loads or stores outside its tensors.
"""
from __future__ import annotations

import labkit  # noqa: F401  (first: switches Triton to its CPU interpreter without CUDA)

import math

import torch
import triton
import triton.language as tl

from labkit.softmax import OnlineState
from wrong_answer import WrongAnswer

LOG2E = 1.4426950408889634  # log2(e), as the notebook 06 imports it

WRONG: list[WrongAnswer] = []
WITNESS: list = []  # WITNESS[i]() -> (args, kwargs) on which WRONG[i].fn differs from the reference
_WITNESS_TEXT: list[str] = []


def _add(exercise, mistake, names, fn, witness_fn, text):
    WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
    WITNESS.append(witness_fn)
    _WITNESS_TEXT.append(text)


def witness(i: int) -> str:
    """The witness input of WRONG[i], in words."""
    return _WITNESS_TEXT[i]


def _randn(*shape, seed=0, dtype=torch.float32, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


def _rand(*shape, seed=0, dtype=torch.float32, lo=0.1, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


def _qkv(n_q, n_kv, d=8, b=1, h=2, seed=0, dtype=torch.float32):
    return (_randn(b, h, n_q, d, seed=seed, dtype=dtype), _randn(b, h, n_kv, d, seed=seed + 1, dtype=dtype),
            _randn(b, h, n_kv, d, seed=seed + 2, dtype=dtype))


def _states(k, rows, seed=0, m_shift=0.0):
    return [OnlineState(_randn(rows, seed=seed + 2 * i, scale=2.0, shift=m_shift),
                        _rand(rows, seed=seed + 2 * i + 1, lo=0.5, hi=3.0)) for i in range(k)]


def _neg_inf_prefix(x, row, n):
    """x with its first n entries of row ``row`` set to -inf (a whole block masked)."""
    x[row, :n] = float("-inf")
    return x


# ============================================================== 00 normalize(e, dim=-1)

def normalize_a1(e, dim=-1):
    return e / e.sum(dim=dim)


_add("normalize", "sums without keepdim=True, so the (rows,) sum broadcasts along the last axis: "
     "e[i, j] is divided by the sum of row j, not of row i (silent on a square input)",
     (r"keepdim", r"broadcast"), normalize_a1,
     lambda: ((_rand(5, 5, seed=1),), {}), "a positive float32 (5, 5) tensor, dim=-1")


def normalize_a2(e, dim=-1):
    return e / e.sum(dim=0, keepdim=True)


_add("normalize", "ignores the dim argument and always sums along dim 0 (down the columns)",
     (r"wrong dim", r"ignor\w* (the )?dim|dim=0|dim argument"), normalize_a2,
     lambda: ((_rand(4, 6, seed=2),), {"dim": -1}), "a positive float32 (4, 6) tensor, dim=-1")


def normalize_a3(e, dim=-1):
    return e / e.amax(dim=dim, keepdim=True)


_add("normalize", "divides by the maximum along dim instead of the sum, so the largest entry becomes 1 "
     "and the slice does not sum to 1",
     (r"\bmax\b|amax|maximum",), normalize_a3,
     lambda: ((_rand(4, 6, seed=3),), {}), "a positive float32 (4, 6) tensor")


def normalize_a4(e, dim=-1):
    ef = e.float()
    return ef / ef.sum(dim=dim, keepdim=True)


_add("normalize", "upcasts to float32 for the division and forgets to cast back: a float16 input "
     "returns a float32 tensor",
     (r"dtype", r"float16|half", r"\bcast"), normalize_a4,
     lambda: ((_rand(4, 6, seed=4, dtype=torch.float16),), {}), "a positive float16 (4, 6) tensor")


def normalize_a5(e, dim=-1):
    return e.div_(e.sum(dim=dim, keepdim=True))


_add("normalize", "divides in place with e.div_(...): the returned values are right but the caller's "
     "input tensor is overwritten",
     (r"in[- ]place", r"modif|mutat|overwr"), normalize_a5,
     lambda: ((_rand(4, 6, seed=5),), {}), "a positive float32 (4, 6) tensor (the input is modified)")


def normalize_a6(e, dim=-1):
    return e / e.mean(dim=dim, keepdim=True)


_add("normalize", "divides by the mean instead of the sum, so each slice sums to its length N, not 1",
     (r"\bmean\b|average",), normalize_a6,
     lambda: ((_rand(4, 6, seed=6),), {}), "a positive float32 (4, 6) tensor")


def normalize_a7(e, dim=-1):
    return e / e.sum()


_add("normalize", "divides by the sum of the whole tensor (e.sum() with no dim), so only the grand total "
     "is 1, not each slice",
     (r"whole tensor|all elements|entire tensor|grand total", r"e\.sum\(\)|no dim|without dim"),
     normalize_a7,
     lambda: ((_rand(4, 6, seed=7),), {}), "a positive float32 (4, 6) tensor")


# ============================================================== 01 naive_softmax(x, dim=-1)

def naive_softmax_a1(x, dim=-1):
    e = torch.exp(-x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("naive_softmax", "exponentiates -x instead of x (sign of the exponent flipped): the smallest entry "
     "gets the largest probability",
     (r"sign", r"exp\(-x\)|negat|minus"), naive_softmax_a1,
     lambda: ((_randn(4, 6, seed=11),), {}), "a float32 (4, 6) standard normal tensor")


def naive_softmax_a2(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    return (torch.exp(xc) / xc.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("naive_softmax", "divides exp(x) by the sum of x itself, not by the sum of exp(x)",
     (r"sum of (the )?exp|exp\(x\)\.sum|sum\(exp", r"sum of x\b|x\.sum"), naive_softmax_a2,
     lambda: ((_randn(4, 6, seed=12, shift=1.0),), {}), "a float32 (4, 6) normal tensor with mean 1")


def naive_softmax_a3(x, dim=-1):
    e = torch.exp(x.float())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("naive_softmax", "computes with x.float(), rounding a float64 input to float32, so a float64 "
     "answer is only float32-accurate",
     (r"float64|double", r"float32 precision|precision|promote_types"), naive_softmax_a3,
     lambda: ((_randn(4, 6, seed=13, dtype=torch.float64, scale=3.0),), {}),
     "a float64 (4, 6) normal tensor (std 3)")


def naive_softmax_a4(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum(dim=-1, keepdim=True)).to(x.dtype)


_add("naive_softmax", "always normalises along the last dimension (dim=-1 hard-coded) whatever dim is passed",
     (r"wrong dim|other dim", r"ignor\w* (the )?dim|hard-?coded|dim argument"), naive_softmax_a4,
     lambda: ((_randn(3, 5, seed=14),), {"dim": 0}), "a float32 (3, 5) normal tensor, dim=0")


def naive_softmax_a5(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum(dim=dim)).to(x.dtype)


_add("naive_softmax", "sums without keepdim=True: on a square input the row sums broadcast along the "
     "wrong axis and every column is divided by another row's sum",
     (r"keepdim", r"broadcast"), naive_softmax_a5,
     lambda: ((_randn(5, 5, seed=15),), {}), "a float32 (5, 5) normal tensor")


def naive_softmax_a6(x, dim=-1):
    e = torch.exp(x.to(torch.promote_types(x.dtype, torch.float32)))
    return e / e.sum(dim=dim, keepdim=True)


_add("naive_softmax", "computes in float32 but never casts back with .to(x.dtype): a float16 input "
     "returns float32",
     (r"dtype", r"float16|half", r"\bcast"), naive_softmax_a6,
     lambda: ((_randn(4, 6, seed=16, dtype=torch.float16),), {}), "a float16 (4, 6) normal tensor")


def naive_softmax_a7(x, dim=-1):
    e = torch.exp2(x.to(torch.promote_types(x.dtype, torch.float32)))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("naive_softmax", "uses torch.exp2 (2**x) instead of torch.exp: a softmax of x·ln 2, too flat",
     (r"exp2|2\s*\*\*\s*x|base[- ]?2|base e",), naive_softmax_a7,
     lambda: ((_randn(4, 6, seed=17, scale=2.0),), {}), "a float32 (4, 6) normal tensor (std 2)")


# ============================================================== 01 overflow_threshold(dtype)

def overflow_threshold_a1(dtype):
    return float(torch.finfo(dtype).max)


_add("overflow_threshold", "returns finfo(dtype).max itself, forgetting to take its (natural) logarithm",
     (r"forg\w* (the )?log|without (the )?log|no log", r"ln ?\(|log\(finfo|log of (the )?max|logarithm"), overflow_threshold_a1,
     lambda: ((torch.float32,), {}), "torch.float32")


def overflow_threshold_a2(dtype):
    return math.log10(torch.finfo(dtype).max)


_add("overflow_threshold", "takes log10 of finfo.max instead of the natural log (exp is base e)",
     (r"log10|base[- ]?10|decimal", r"natural log"), overflow_threshold_a2,
     lambda: ((torch.float32,), {}), "torch.float32")


def overflow_threshold_a3(dtype):
    return math.log2(torch.finfo(dtype).max)


_add("overflow_threshold", "takes log2 of finfo.max (the exponent range in bits) instead of the natural log",
     (r"log2|base[- ]?2|bits", r"natural log"), overflow_threshold_a3,
     lambda: ((torch.float16,), {}), "torch.float16")


def overflow_threshold_a4(dtype):
    return torch.log(torch.tensor(torch.finfo(dtype).max))


_add("overflow_threshold", "returns a tensor built with torch.tensor (default float32) and torch.log: not a "
     "Python number, and for float64 the max overflows to inf",
     (r"python (float|number)|\.item\(\)|float\(", r"not a tensor|a tensor"), overflow_threshold_a4,
     lambda: ((torch.float64,), {}), "torch.float64")


def overflow_threshold_a5(dtype):
    return math.log(torch.finfo(dtype).tiny)


_add("overflow_threshold", "uses finfo.tiny (the smallest normal number), i.e. the underflow end, instead "
     "of finfo.max",
     (r"tiny|underflow|smallest",), overflow_threshold_a5,
     lambda: ((torch.float32,), {}), "torch.float32")


def overflow_threshold_a6(dtype):
    return math.log(torch.finfo(torch.float32).max)


_add("overflow_threshold", "ignores its dtype argument and always returns the float32 threshold 88.72",
     (r"ignor\w* (the )?dtype|dtype argument|float16|half",), overflow_threshold_a6,
     lambda: ((torch.float16,), {}), "torch.float16")


def overflow_threshold_a7(dtype):
    return math.floor(math.log(torch.finfo(dtype).max))


_add("overflow_threshold", "rounds ln(max) down to an integer (math.floor), e.g. 88 instead of 88.72 "
     "for float32",
     (r"floor|integer|round|\bint\b",), overflow_threshold_a7,
     lambda: ((torch.float32,), {}), "torch.float32")


# ============================================================== 02 logsumexp(x, dim=-1)

def logsumexp_a1(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return torch.log(torch.exp(xc - m).sum(dim=dim)).to(x.dtype)


_add("logsumexp", "shifts by the max inside the exp but forgets to add m back outside the log",
     (r"add (m|the max)\w* back|\+ ?m\b|m \+ log|forg\w* .*\bm\b",), logsumexp_a1,
     lambda: ((_randn(4, 6, seed=21, scale=3.0, shift=2.0),), {}), "a float32 (4, 6) normal tensor (mean 2, std 3)")


def logsumexp_a2(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


def _lse_all_neg_inf_row():
    x = _randn(3, 5, seed=22)
    x[1] = float("-inf")
    return (x,), {}


_add("logsumexp", "no guard for an all -inf row: m = -inf gives -inf - (-inf) = NaN instead of -inf",
     (r"nan", r"isinf|-inf row|all[- ]-?inf|masked row", r"-inf - \(?-inf"), logsumexp_a2,
     _lse_all_neg_inf_row, "a float32 (3, 5) tensor whose row 1 is all -inf")


def logsumexp_a3(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m + torch.log(torch.exp(xc - m).sum(dim=dim, keepdim=True))).to(x.dtype)


_add("logsumexp", "keeps the reduced dimension (keepdim=True, no squeeze): returns shape (rows, 1) "
     "instead of (rows,)",
     (r"keepdim|squeeze", r"reduced dim|dim\w* removed"), logsumexp_a3,
     lambda: ((_randn(4, 6, seed=23),), {}), "a float32 (4, 6) normal tensor")


def logsumexp_a4(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(dim) - torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


_add("logsumexp", "subtracts the log of the sum from m instead of adding it (m - log sum)",
     (r"sign", r"m - log|minus (the )?log|\+ log"), logsumexp_a4,
     lambda: ((_randn(4, 6, seed=24),), {}), "a float32 (4, 6) normal tensor")


def logsumexp_a5(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amin(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


_add("logsumexp", "shifts by the minimum (amin) instead of the maximum, so exp(x - min) overflows for a "
     "wide row",
     (r"amin|\bmin\b|minimum", r"overflow"), logsumexp_a5,
     lambda: ((torch.tensor([[0.0, 100.0, 3.0], [1.0, 2.0, 3.0]]),), {}),
     "float32 [[0, 100, 3], [1, 2, 3]]")


def logsumexp_a6(x, dim=-1):
    xc = x.float()
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).sum(dim=dim))).to(x.dtype)


_add("logsumexp", "computes in x.float(): a float64 input is rounded to float32, so the result has "
     "float32 accuracy only",
     (r"float64|double", r"precision|promote_types"), logsumexp_a6,
     lambda: ((_randn(4, 6, seed=26, dtype=torch.float64, scale=3.0),), {}), "a float64 (4, 6) normal tensor (std 3)")


def logsumexp_a7(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    m = xc.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(dim) + torch.log(torch.exp(xc - m).mean(dim=dim))).to(x.dtype)


_add("logsumexp", "takes the mean of the shifted exponentials instead of their sum (off by log N)",
     (r"\bmean\b|average", r"log ?\(?n\)?"), logsumexp_a7,
     lambda: ((_randn(4, 6, seed=27),), {}), "a float32 (4, 6) normal tensor")


# ============================================================== 02 safe_softmax(x, dim=-1)

def safe_softmax_a1(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.max())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "subtracts the global maximum of the whole tensor (x.max()) instead of each slice's "
     "max along dim: a row far below the global max underflows to 0/0",
     (r"global|whole tensor|entire tensor|x\.max\(\)",), safe_softmax_a1,
     lambda: ((torch.tensor([[0.0, 1.0, 2.0], [1000.0, 1001.0, 1002.0]]),), {}),
     "float32 [[0, 1, 2], [1000, 1001, 1002]]")


def safe_softmax_a2(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=dim))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "takes the max without keepdim=True: on a square input x - m subtracts the max of "
     "row j from column j, which is not a constant per row",
     (r"keepdim", r"broadcast"), safe_softmax_a2,
     lambda: ((_randn(4, 4, seed=32, scale=3.0),), {}), "a float32 (4, 4) normal tensor (std 3)")


def safe_softmax_a3(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=dim, keepdim=True))
    return (e / torch.exp(xc).sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "subtracts the max in the numerator only; the denominator sums exp(x) unshifted",
     (r"denominator", r"numerator"), safe_softmax_a3,
     lambda: ((_randn(4, 6, seed=33, shift=2.0),), {}), "a float32 (4, 6) normal tensor with mean 2")


def safe_softmax_a4(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amin(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "subtracts the minimum (amin) instead of the maximum, so exponents are >= 0 and "
     "overflow for a wide row",
     (r"amin|\bmin\b|minimum",), safe_softmax_a4,
     lambda: ((torch.tensor([[0.0, 100.0, 50.0], [1.0, 2.0, 3.0]]),), {}), "float32 [[0, 100, 50], [1, 2, 3]]")


def safe_softmax_a5(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc + xc.amax(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "adds the max instead of subtracting it (exp(x + m)), which makes overflow worse",
     (r"sign", r"\+ ?m\b|x \+ m|add\w* the max"), safe_softmax_a5,
     lambda: ((torch.tensor([[50.0, 60.0, 55.0], [1.0, 2.0, 3.0]]),), {}), "float32 [[50, 60, 55], [1, 2, 3]]")


def safe_softmax_a6(x, dim=-1):
    xc = x.float()
    e = torch.exp(xc - xc.amax(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "computes with x.float(): float64 inputs are rounded to float32 and lose precision",
     (r"float64|double", r"precision|promote_types"), safe_softmax_a6,
     lambda: ((_randn(4, 6, seed=36, dtype=torch.float64, scale=3.0),), {}), "a float64 (4, 6) normal tensor (std 3)")


def safe_softmax_a7(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


_add("safe_softmax", "returns the float32 compute tensor without .to(x.dtype): a float16 input gives float32",
     (r"dtype", r"float16|half", r"\bcast"), safe_softmax_a7,
     lambda: ((_randn(4, 6, seed=37, dtype=torch.float16),), {}), "a float16 (4, 6) normal tensor")


def safe_softmax_a8(x, dim=-1):
    xc = x.to(torch.promote_types(x.dtype, torch.float32))
    e = torch.exp(xc - xc.amax(dim=-1, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


_add("safe_softmax", "takes the max along the last dim (amax(dim=-1)) but sums along dim: for dim=0 the "
     "shift is not constant along the softmax axis",
     (r"\baxis\b", r"amax\(dim=-1|wrong dim"), safe_softmax_a8,
     lambda: ((_randn(3, 5, seed=38, scale=3.0),), {"dim": 0}), "a float32 (3, 5) normal tensor (std 3), dim=0")


# ============================================================== 03 merge_states(a, b)

def _merge_witness_empty():
    a = OnlineState(torch.tensor([float("-inf"), 1.0, 2.0, -0.5]), torch.tensor([0.0, 1.5, 2.0, 1.0]))
    b = OnlineState(torch.tensor([float("-inf"), 3.0, 0.0, -0.5]), torch.tensor([0.0, 2.0, 1.0, 4.0]))
    return (a, b), {}


def _merge_witness():
    a, b = _states(2, 5, seed=40)
    return (a, b), {}


def merge_states_a1(a, b):
    m = torch.maximum(a.m, b.m)
    return OnlineState(m, a.d * torch.exp(a.m - m) + b.d * torch.exp(b.m - m))


_add("merge_states", "no guard for two empty states: with m_a = m_b = -inf, exp(-inf - (-inf)) is NaN, "
     "so the merged d is NaN instead of 0",
     (r"nan", r"isinf|empty|both -?inf|-inf - \(?-inf|use 0 in place"), merge_states_a1,
     _merge_witness_empty, "4-row states, row 0 empty in both: m = -inf, d = 0")


def merge_states_a2(a, b):
    m = torch.maximum(a.m, b.m)
    return OnlineState(m, a.d + b.d)


_add("merge_states", "adds d_a + d_b without rescaling each to the new max (the e^(m_a - m), e^(m_b - m) "
     "factors are missing)",
     (r"rescal", r"e\^\(?m|exp\(m|factor"), merge_states_a2, _merge_witness, "two random 5-row states")


def merge_states_a3(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return OnlineState(m, a.d * torch.exp(base - a.m) + b.d * torch.exp(base - b.m))


_add("merge_states", "exponents flipped: multiplies by e^(m - m_a) and e^(m - m_b) instead of "
     "e^(m_a - m) and e^(m_b - m)",
     (r"sign|flip|invert", r"m - m_a|e\^\(m - m_a\)"), merge_states_a3, _merge_witness, "two random 5-row states")


def merge_states_a4(a, b):
    m = torch.minimum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return OnlineState(m, a.d * torch.exp(a.m - base) + b.d * torch.exp(b.m - base))


_add("merge_states", "takes torch.minimum of the two maxima instead of torch.maximum",
     (r"minimum|\bmin\b",), merge_states_a4, _merge_witness, "two random 5-row states")


def merge_states_a5(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return OnlineState(m, a.d + b.d * torch.exp(b.m - base))


_add("merge_states", "rescales only b's sum; d_a is added unscaled, as if m_a were always the new max",
     (r"both (terms|states|sums)", r"only (b|one)", r"unscaled|not rescaled"), merge_states_a5,
     lambda: ((OnlineState(torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 2.0, 3.0])),
               OnlineState(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.5, 1.0, 2.0]))), {}),
     "a = (m [0, 1, -2], d [1, 2, 3]), b = (m [2, 0, 1], d [1.5, 1, 2])")


def merge_states_a6(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return a.d * torch.exp(a.m - base) + b.d * torch.exp(b.m - base), m


_add("merge_states", "returns the pair in the wrong order, (d, m) instead of (m, d)",
     (r"order", r"swap|\(d, ?m\)"), merge_states_a6, _merge_witness, "two random 5-row states")


# ============================================================== 03 merge_states_many(states)

def merge_states_many_a1(states):
    ms = torch.stack([s.m for s in states], dim=1)
    ds = torch.stack([s.d for s in states], dim=1)
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return OnlineState(m, (ds * torch.exp(ms - base)).sum(dim=0))


_add("merge_states_many", "stacks along dim=1, giving (rows, K), but still reduces over dim 0: it merges "
     "across rows instead of across states (silent when K equals the number of rows)",
     (r"dim=1|stack\w* along", r"\baxis\b|\(rows, ?K\)"), merge_states_many_a1,
     lambda: ((_states(3, 3, seed=50),), {}), "3 random states of 3 rows")


def merge_states_many_a2(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    return OnlineState(m, (ds * torch.exp(ms - m)).sum(dim=0))


def _many_empty_row():
    states = _states(3, 4, seed=52)
    for s in states:
        s.m[2] = float("-inf")
        s.d[2] = 0.0
    return (states,), {}


_add("merge_states_many", "no guard where m* = -inf: a row empty in every state gives "
     "exp(-inf - (-inf)) = NaN instead of d = 0",
     (r"nan", r"isinf|empty|-inf - \(?-inf|use 0 in place"), merge_states_many_a2,
     _many_empty_row, "3 random states of 4 rows, row 2 empty (m = -inf, d = 0) in all of them")


def merge_states_many_a3(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    return OnlineState(ms.amax(dim=0), ds.sum(dim=0))


_add("merge_states_many", "sums the d_k without the factors e^(m_k - m*): the states are not rescaled "
     "to the common max",
     (r"rescal", r"e\^\(?m_k|exp\(m_k|factor"), merge_states_many_a3,
     lambda: ((_states(4, 5, seed=53),), {}), "4 random states of 5 rows")


def merge_states_many_a4(states):
    m = torch.zeros_like(states[0].m)
    d = torch.zeros_like(states[0].d)
    for s in states:
        m_new = torch.maximum(m, s.m)
        d = d * torch.exp(m - m_new) + s.d * torch.exp(s.m - m_new)
        m = m_new
    return OnlineState(m, d)


_add("merge_states_many", "folds the states starting from (0, 0) instead of the empty state (-inf, 0): "
     "when every m_k < 0 the merged max comes out as 0",
     (r"initial|identity|start\w* (state|value)", r"\(-inf, ?0\)|\(0, ?0\)"), merge_states_many_a4,
     lambda: ((_states(3, 4, seed=54, m_shift=-6.0),), {}), "3 random states of 4 rows, all m about -6")


def merge_states_many_a5(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return OnlineState(m, (ds * torch.exp(ms - base)).mean(dim=0))


_add("merge_states_many", "averages the rescaled d_k (mean over K) instead of summing them",
     (r"\bmean\b|average",), merge_states_many_a5,
     lambda: ((_states(3, 4, seed=55),), {}), "3 random states of 4 rows")


def merge_states_many_a6(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms[0]
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return OnlineState(m, (ds * torch.exp(ms - base)).sum(dim=0))


_add("merge_states_many", "uses the first state's m (ms[0]) as the merged max instead of the max over all "
     "states (amax over K)",
     (r"ms\[0\]|first state", r"max over (all|the) states|largest"), merge_states_many_a6,
     lambda: ((_states(3, 4, seed=56),), {}), "3 random states of 4 rows")


# ============================================================== 04 naive_attention(q, k, v, causal=False, scale=None)

def naive_attention_a1(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-2) @ v


_add("naive_attention", "softmax over dim=-2 (over the queries, down each column) instead of over the keys",
     (r"dim=-2|over (the )?queries|column", r"\baxis\b|over (the )?keys|dim=-1"), naive_attention_a1,
     lambda: (_qkv(5, 7, seed=60), {}), "q (1, 2, 5, 8), k and v (1, 2, 7, 8), float32, not causal")


def naive_attention_a2(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / q.shape[-1]
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "default scale 1/D instead of 1/sqrt(D)",
     (r"1 ?/ ?D\b", r"square root|not sqrt|instead of 1 ?/ ?sqrt"), naive_attention_a2,
     lambda: (_qkv(5, 7, seed=61, d=16), {}), "q (1, 2, 5, 16), k and v (1, 2, 7, 16), float32, scale None")


def naive_attention_a3(q, k, v, causal=False, scale=None):
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if scale is not None:
        s = s * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "always divides by sqrt(D) and then also multiplies by a given scale: the "
     "scale is applied on top of 1/sqrt(D) instead of replacing it",
     (r"twice|on top|double", r"given scale|scale (argument|parameter)"), naive_attention_a3,
     lambda: (_qkv(5, 7, seed=62), {"scale": 0.5}), "q (1, 2, 5, 8), k and v (1, 2, 7, 8), scale=0.5")


def naive_attention_a4(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "ignores the scale argument: always uses 1/sqrt(D) even when a scale is given",
     (r"ignor\w* (the )?scale|given scale|scale (argument|parameter)|scale=",), naive_attention_a4,
     lambda: (_qkv(6, 6, seed=63), {"causal": True, "scale": 0.9}), "q, k, v (1, 2, 6, 8), causal, scale=0.9")


def naive_attention_a5(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        past = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(diagonal=-1)
        s = s.masked_fill(past, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "causal mask on the wrong side: tril(diagonal=-1) hides the past keys j < i and "
     "lets every query see the future",
     (r"tril", r"wrong side|past keys|j ?< ?i|anti-?causal"), naive_attention_a5,
     lambda: (_qkv(6, 6, seed=64), {"causal": True}), "q, k, v (1, 2, 6, 8), causal")


def naive_attention_a6(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=2)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "causal mask off by one the other way: triu(diagonal=2) lets query i also see key i + 1",
     (r"diagonal", r"off[- ]by[- ]one|i ?\+ ?1"), naive_attention_a6,
     lambda: (_qkv(6, 6, seed=65), {"causal": True}), "q, k, v (1, 2, 6, 8), causal")


def naive_attention_a7(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, 0.0)
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "fills the masked scores with 0 instead of -inf, so future keys still get weight e^0",
     (r"-inf|minus infinity", r"fill\w* (them )?with (0|zero)|zero"), naive_attention_a7,
     lambda: (_qkv(6, 6, seed=66), {"causal": True}), "q, k, v (1, 2, 6, 8), causal")


def naive_attention_a8(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[2])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(diagonal=1)
        s = s.masked_fill(future, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


_add("naive_attention", "default scale from the sequence length, 1/sqrt(q.shape[2]) = 1/sqrt(N_q), "
     "instead of the head dim D = q.shape[-1]",
     (r"head dim", r"shape\[-1\]|shape\[2\]", r"sequence length"), naive_attention_a8,
     lambda: (_qkv(5, 7, seed=67, d=16), {}), "q (1, 2, 5, 16), k and v (1, 2, 7, 16), float32, scale None")


# ============================================================== 05 flash_hbm_accesses(N, d, M)

def flash_hbm_accesses_a1(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    once = 2 * N * d  # every K_j, V_j loaded once
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


_add("flash_hbm_accesses", "leaves out line 2, the initialisation of O, l and m in HBM (N d + 2N writes)",
     (r"line 2", r"initiali[sz]"), flash_hbm_accesses_a1,
     lambda: ((1024, 64, 51200), {}), "N=1024, d=64, M=51200")


def flash_hbm_accesses_a2(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    T_c = math.ceil(N / B_r)
    once = N * d + 2 * N
    once += 2 * N * d
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


_add("flash_hbm_accesses", "counts the outer passes with the query tile size B_r = min(B_c, d) instead of "
     "the key tile size B_c (T_c = ceil(N / B_c))",
     (r"B_r", r"query tile size"), flash_hbm_accesses_a2,
     lambda: ((1024, 64, 51200), {}), "N=1024, d=64, M=51200 (B_c = 200 > d = 64)")


def flash_hbm_accesses_a3(N, d, M):
    B_c = M // (4 * d)
    T_c = N // B_c
    once = N * d + 2 * N
    once += 2 * N * d
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


_add("flash_hbm_accesses", "uses floor division (//) for B_c and T_c instead of math.ceil: the partial last "
     "key tile is not counted",
     (r"ceil|floor|//", r"partial|last tile|round"), flash_hbm_accesses_a3,
     lambda: ((1030, 64, 51300), {}), "N=1030, d=64, M=51300 (neither division exact)")


def flash_hbm_accesses_a4(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    once = N * d + 2 * N
    once += 2 * N * d
    per_key_tile = N * d + (N * d + 2 * N)  # read Q_i; write O_i, l_i, m_i
    return once + T_c * per_key_tile


_add("flash_hbm_accesses", "in line 8 counts only the load of Q_i, not the loads of O_i, l_i, m_i "
     "(2 N d + 2 N per key tile instead of 3 N d + 4 N)",
     (r"line 8", r"(read|load)\w* (of )?O_i|O_i, ?l_i, ?m_i"), flash_hbm_accesses_a4,
     lambda: ((1024, 64, 51200), {}), "N=1024, d=64, M=51200")


def flash_hbm_accesses_a5(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    T_c = math.ceil(N / B_c)
    T_r = math.ceil(N / B_r)
    once = N * d + 2 * N
    per_pair = 2 * B_c * d  # K_j, V_j reloaded for every query tile
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * (per_key_tile + T_r * per_pair)


_add("flash_hbm_accesses", "reloads K_j and V_j for every query tile (inside the inner loop) instead of "
     "once per key tile (line 6 is in the outer loop)",
     (r"line 6", r"K_j|V_j", r"once per key tile|outer loop"), flash_hbm_accesses_a5,
     lambda: ((1024, 64, 51200), {}), "N=1024, d=64, M=51200")


def flash_hbm_accesses_a6(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    once = N * d  # O initialised
    once += 2 * N * d
    per_key_tile = 3 * N * d  # Q_i, O_i in, O_i out
    return once + T_c * per_key_tile


_add("flash_hbm_accesses", "forgets the row statistics l and m altogether (their init, loads and writes): "
     "only O, Q, K, V are counted",
     (r"statistic|\bl_i\b|\bm_i\b|ℓ", r"\bl and m\b"), flash_hbm_accesses_a6,
     lambda: ((1024, 64, 51200), {}), "N=1024, d=64, M=51200")


def flash_hbm_accesses_a7(N, d, M):
    B_c = math.ceil(M / 4 * d)
    T_c = math.ceil(N / B_c)
    once = N * d + 2 * N
    once += 2 * N * d
    per_key_tile = 3 * N * d + 4 * N
    return once + T_c * per_key_tile


_add("flash_hbm_accesses", "operator precedence: writes M / 4 * d (= M d / 4) for B_c instead of M / (4 d), "
     "so the key tile is huge and T_c is 1",
     (r"precedence|parenthes", r"M ?/ ?4 ?\* ?d|M ?d ?/ ?4"), flash_hbm_accesses_a7,
     lambda: ((1024, 64, 51200), {}), "N=1024, d=64, M=51200")


# ============================================================== 03 online_softmax(x, dim=-1, block_size=128)

def online_softmax_a1(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


_add('online_softmax',
     'l_i is not rescaled when the running max grows: l_i + sum(exp(block - m_new)) without the factor'
     ' exp(m_i - m_new)',
     ('rescal', 'alpha|exp\\(m_i ?- ?m_new\\)|correction'), online_softmax_a1,
     lambda: ((_randn(3, 10, seed=70, scale=3.0),), {'block_size': 4}),
     'a float32 (3, 10) normal tensor (std 3), block_size=4')

def online_softmax_a2(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], 0.0, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


_add('online_softmax',
     'm_i starts at 0 instead of -inf, so for a row far below 0 every exp underflows and the result is'
     ' 0/0',
     ('initial|start\\w* (at|from|value)|m_i ?= ?0',), online_softmax_a2,
     lambda: ((_randn(3, 10, seed=71, shift=-200.0),), {'block_size': 4}),
     'a float32 (3, 10) normal tensor with mean -200, block_size=4')

def online_softmax_a3(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size - 1]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


_add('online_softmax',
     'block slice off by one: xt[..., start:start + block_size - 1] skips the last column of every '
     'block in the first pass',
     ('off[- ]by[- ]one|block_size ?- ?1', 'slice|skip\\w* (a|the last) column'), online_softmax_a3,
     lambda: ((_randn(3, 10, seed=70, scale=3.0),), {'block_size': 4}),
     'a float32 (3, 10) normal tensor (std 3), block_size=4')

def online_softmax_a4(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = m_new  # a block of all -inf
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


_add('online_softmax',
     'no guard for a block that is all -inf so far: base = m_new = -inf gives -inf - (-inf) = NaN, and'
     ' the NaN poisons the row',
     ('nan', 'isinf|all[- ]-?inf|-inf - \\(?-inf|masked block'), online_softmax_a4,
     lambda: ((_neg_inf_prefix(_randn(3, 10, seed=73), row=1, n=4),), {'block_size': 4}),
     'a float32 (3, 10) normal tensor whose row 1 starts with 4 -inf (one whole block), block_size=4')

def online_softmax_a5(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32))
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).to(x.dtype)


_add('online_softmax',
     'never moves dim to the end (no movedim): it always runs over the last dimension whatever dim is',
     ('movedim', '\\baxis\\b|wrong dim|ignor\\w* (the )?dim'), online_softmax_a5,
     lambda: ((_randn(5, 3, seed=74, scale=2.0),), {'dim': 0, 'block_size': 2}),
     'a float32 (5, 3) normal tensor (std 2), dim=0, block_size=2')

def online_softmax_a6(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


_add('online_softmax',
     'second pass forgets to subtract the running max: exp(x) / l_i with l_i computed relative to m_i',
     ('subtract\\w* (the )?(running )?max|exp\\(x ?- ?m_i\\)|x - m_i',), online_softmax_a6,
     lambda: ((_randn(3, 10, seed=75, shift=3.0),), {'block_size': 4}),
     'a float32 (3, 10) normal tensor with mean 3, block_size=4')

def online_softmax_a7(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i * torch.exp(m_i - base) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim)


_add('online_softmax',
     'never casts back: returns the float32 compute tensor for a float16 input',
     ('dtype', 'float16|half', '\\bcast'), online_softmax_a7,
     lambda: ((_randn(3, 10, seed=76, dtype=torch.float16),), {'block_size': 4}),
     'a float16 (3, 10) normal tensor, block_size=4')

def online_softmax_a8(x, dim=-1, block_size=128):
    """Softmax along dim with one pass over blocks for (m_i, l_i) and one to normalise."""
    xt = x.to(torch.promote_types(x.dtype, torch.float32)).movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf, dtype=xt.dtype, device=xt.device)
    l_i = torch.zeros(xt.shape[:-1], dtype=xt.dtype, device=xt.device)
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        base = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a block of all -inf
        l_i = l_i * torch.exp(base - m_i) + torch.exp(block - base[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


_add('online_softmax',
     'rescaling factor inverted: l_i * exp(m_new - m_i) instead of exp(m_i - m_new) (inf * 0 = NaN on '
     'the first block)',
     ('sign|invert|flip', 'm_new ?- ?m_i|exp\\(m_i ?- ?m_new\\)'), online_softmax_a8,
     lambda: ((_randn(3, 10, seed=70, scale=3.0),), {'block_size': 4}),
     'a float32 (3, 10) normal tensor (std 3), block_size=4')


# ============================================================== 05 tiled_attention(q, k, v, block_q=64, block_k=64, scale=None)

def tiled_attention_a1(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k - 1]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k - 1] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


_add('tiled_attention',
     'key tile slice off by one: k[:, :, j0:j0 + block_k - 1] and the matching score columns, so the '
     'last key of every tile keeps score 0',
     ('off[- ]by[- ]one|block_k ?- ?1', 'slice|tile end'), tiled_attention_a1,
     lambda: (_qkv(10, 13, seed=80), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, block_q=4, block_k=4')

def tiled_attention_a2(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_kv, block_q):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


_add('tiled_attention',
     'steps the key loop by block_q instead of block_k: when block_q > block_k some key columns are '
     'never computed and stay 0',
     ('step', 'block_q instead|instead of block_k'), tiled_attention_a2,
     lambda: (_qkv(10, 13, seed=81), {'block_q': 8, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, block_q=8, block_k=4')

def tiled_attention_a3(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = torch.softmax((q_i @ k_j.transpose(-2, -1)) * scale, dim=-1)
        o[:, :, i0:i0 + block_q] = s_i @ v
    return o.to(dtype)


_add('tiled_attention',
     'applies the softmax to each key tile separately instead of to the whole row block, so every row '
     'sums to the number of key tiles',
     ('whole row|full row|each (key )?tile|per[- ]tile|separately',), tiled_attention_a3,
     lambda: (_qkv(10, 13, seed=80), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, block_q=4, block_k=4')

def tiled_attention_a4(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = q_i @ k_j.transpose(-2, -1)
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


_add('tiled_attention',
     'forgets the scale: the scores are q k^T without the factor 1/sqrt(D)',
     ('scale|sqrt',), tiled_attention_a4,
     lambda: (_qkv(10, 13, seed=80), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, block_q=4, block_k=4')

def tiled_attention_a5(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.float() for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


_add('tiled_attention',
     'computes in x.float(): a float64 input is rounded to float32 and returns with float32 accuracy '
     'only',
     ('float64|double', 'precision|promote_types|float32'), tiled_attention_a5,
     lambda: (_qkv(10, 13, seed=82, dtype=torch.float64), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float64, block_q=4, block_k=4')

def tiled_attention_a6(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_q, block_k):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


_add('tiled_attention',
     'the key loop runs up to n_q instead of n_kv (range(0, n_q, block_k)): with N_q < N_kv the last '
     'keys keep score 0',
     ('n_kv instead|instead of n_kv|key loop (bound|range|end)|loop over (all )?(the )?keys', 'N_q ?(<|!=|≠) ?N_kv|cross'), tiled_attention_a6,
     lambda: (_qkv(10, 13, seed=80), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, block_q=4, block_k=4')

def tiled_attention_a7(q, k, v, block_q=64, block_k=64, scale=None):
    """The lab's pseudo-code: scores tile by tile into a full (block_q × N_kv) row block, then softmax and P V."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)  # (B, H, T_q, N_kv)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-2) @ v
    return o.to(dtype)


_add('tiled_attention',
     'softmax over dim=-2 (over the queries of the tile) instead of over the keys',
     ('dim=-2|over (the )?queries', 'over (the )?keys|dim=-1'), tiled_attention_a7,
     lambda: (_qkv(10, 13, seed=80), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, block_q=4, block_k=4')


# ============================================================== 05 flash_attention_forward(q, k, v, causal=False, scale=None, block_q=64, block_k=64)

def flash_attention_forward_a1(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'acc is not rescaled by alpha = exp(m_old - m_new) when the max grows: acc + P V instead of alpha'
     ' * acc + P V',
     ('\\bacc\\b', 'rescal|alpha'), flash_attention_forward_a1,
     lambda: (_qkv(10, 13, seed=90), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, not causal, block_q=4, block_k=4')

def flash_attention_forward_a2(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'l_i is not rescaled by alpha: l_i + rowsum(P) instead of alpha * l_i + rowsum(P)',
     ('\\bl_i\\b|running sum|ℓ', 'rescal|alpha'), flash_attention_forward_a2,
     lambda: (_qkv(10, 13, seed=90), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, not causal, block_q=4, block_k=4')

def flash_attention_forward_a3(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] >= rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'causal mask with >= instead of >: a query cannot see its own key, and query 0 sees nothing (NaN)',
     ('diagonal|>=|off[- ]by[- ]one', 'own key|itself'), flash_attention_forward_a3,
     lambda: (_qkv(12, 12, seed=91), {'causal': True, 'block_q': 4, 'block_k': 4}),
     'q, k, v (1, 2, 12, 8), float32, causal, block_q=4, block_k=4')

def flash_attention_forward_a4(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'lse = log(l_i), forgetting to add the running max m_i',
     ('\\blse\\b|logsumexp', 'm_i ?\\+|\\+ ?m_i|add\\w* (the )?(running )?max'), flash_attention_forward_a4,
     lambda: (_qkv(10, 13, seed=90), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, not causal, block_q=4, block_k=4')

def flash_attention_forward_a5(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'causal mask built from tile-local key indices arange(T_k) instead of the global ones arange(j0, '
     'j0 + T_k): later tiles see future keys',
     ('global|local', 'j0'), flash_attention_forward_a5,
     lambda: (_qkv(12, 12, seed=91), {'causal': True, 'block_q': 4, 'block_k': 4}),
     'q, k, v (1, 2, 12, 8), float32, causal, block_q=4, block_k=4')

def flash_attention_forward_a6(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = ((q_i * scale) @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'applies the scale twice: (q_i * scale) @ k^T * scale',
     ('twice|double|scale\\^?2|squared|scale \\* scale',), flash_attention_forward_a6,
     lambda: (_qkv(10, 13, seed=90), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, not causal, block_q=4, block_k=4')

def flash_attention_forward_a7(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'never divides acc by l_i at the end: O = acc, unnormalised',
     ('normali[sz]|divid\\w* (acc )?by (l_i|the (running )?sum)|acc ?/ ?l_i',), flash_attention_forward_a7,
     lambda: (_qkv(10, 13, seed=90), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, not causal, block_q=4, block_k=4')

def flash_attention_forward_a8(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    """FlashAttention forward: online softmax over K/V tiles; returns (o, lse), lse = logsumexp of each score row."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, D)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]  # (B, H, T_q, D)
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)  # query indices of this tile
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T_q)
        l_i = torch.zeros_like(m_i)  # (B, H, T_q)
        acc = torch.zeros_like(q_i)  # (B, H, T_q, D)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv  # causal: skip tiles above the diagonal
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]  # (B, H, T_k, D)
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
            if causal:
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)  # key indices
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)  # key j > query i
            m_new = torch.maximum(m_i, s.amax(dim=-1))
            p = torch.exp(s - m_i[..., None])  # P̃_ij
            alpha = torch.exp(m_i - m_new)  # e^(m_old - m_new): 0 on the first tile
            l_i = l_i * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v_j
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


_add('flash_attention_forward',
     'P~ is exponentiated with the old max m_i instead of m_new: exp(s - m_i), which is exp(+inf) on '
     'the first tile',
     ('m_new|new max', 'old max'), flash_attention_forward_a8,
     lambda: (_qkv(10, 13, seed=90), {'block_q': 4, 'block_k': 4}),
     'q (1, 2, 10, 8), k and v (1, 2, 13, 8), float32, not causal, block_q=4, block_k=4')


# ============================================================== 02 softmax_triton(x): the notebook's softmax_kernel + host wrapper, one mistake each

@triton.jit
def softmax_kernel_a1(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=0.0).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_a1(x):
    """Row softmax of a 2-D tensor with softmax_kernel_a1: one program per row."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    softmax_kernel_a1[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=triton.next_power_of_2(n_cols))
    return y


_add('softmax_triton',
     'masked lanes load other=0.0 instead of -inf, so the padding lanes add exp(0 - max) to the sum',
     ('other', '-inf|padd|masked lanes'), softmax_triton_a1,
     lambda: ((_randn(3, 5, seed=100),), {}),
     'a float32 (3, 5) normal tensor (BLOCK = 8)')

@triton.jit
def softmax_kernel_a2(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_a2(x):
    """Row softmax of a 2-D tensor with softmax_kernel_a2: one program per row."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    softmax_kernel_a2[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=triton.next_power_of_2(n_cols))
    return y


_add('softmax_triton',
     'the load forgets the row offset row * x_row_stride, so every program reads row 0',
     ('row_stride|stride', 'row offset|program_id|row \\* '), softmax_triton_a2,
     lambda: ((_randn(3, 8, seed=101),), {}),
     'a float32 (3, 8) normal tensor')

@triton.jit
def softmax_kernel_a3(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x)
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_a3(x):
    """Row softmax of a 2-D tensor with softmax_kernel_a3: one program per row."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    softmax_kernel_a3[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=triton.next_power_of_2(n_cols))
    return y


_add('softmax_triton',
     'no max subtraction in the kernel: exp(x) overflows to inf for large scores and gives NaN',
     ('subtract\\w* (the )?(row )?max|x - (tl\\.)?max', 'overflow'), softmax_triton_a3,
     lambda: ((_randn(3, 8, seed=102, shift=100.0),), {}),
     'a float32 (3, 8) normal tensor with mean 100')

@triton.jit
def softmax_kernel_a4(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.max(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_a4(x):
    """Row softmax of a 2-D tensor with softmax_kernel_a4: one program per row."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    softmax_kernel_a4[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=triton.next_power_of_2(n_cols))
    return y


_add('softmax_triton',
     'divides by tl.max(e) instead of tl.sum(e): the largest entry becomes 1',
     ('tl\\.sum|sum of (the )?e\\b|divid\\w* by (the )?max',), softmax_triton_a4,
     lambda: ((_randn(3, 5, seed=100),), {}),
     'a float32 (3, 5) normal tensor (BLOCK = 8)')

@triton.jit
def softmax_kernel_a5(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols - 1
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_a5(x):
    """Row softmax of a 2-D tensor with softmax_kernel_a5: one program per row."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    softmax_kernel_a5[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=triton.next_power_of_2(n_cols))
    return y


_add('softmax_triton',
     'mask offs < n_cols - 1 (off by one): the last column is neither read nor stored',
     ('n_cols ?- ?1|off[- ]by[- ]one', 'last column'), softmax_triton_a5,
     lambda: ((_randn(3, 5, seed=100),), {}),
     'a float32 (3, 5) normal tensor (BLOCK = 8)')

@triton.jit
def softmax_kernel_a6(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp2(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def softmax_triton_a6(x):
    """Row softmax of a 2-D tensor with softmax_kernel_a6: one program per row."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    softmax_kernel_a6[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                              BLOCK=triton.next_power_of_2(n_cols))
    return y


_add('softmax_triton',
     'uses tl.exp2 instead of tl.exp: a softmax of x·ln 2',
     ('exp2|base[- ]?2|log2',), softmax_triton_a6,
     lambda: ((_randn(3, 5, seed=105, scale=3.0),), {}),
     'a float32 (3, 5) normal tensor (std 3)')


# ============================================================== 03 online_softmax_triton(x, block=64): online_softmax_kernel + wrapper, one mistake each

@triton.jit
def online_softmax_kernel_a1(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a1(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a1, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a1[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     "the first loop's offsets forget the block start: offs = tl.arange(0, BLOCK), so it reads the "
     'first block again and again',
     ('\\bstart\\b|block start', 'start \\+ tl\\.arange'), online_softmax_triton_a1,
     lambda: ((_randn(3, 40, seed=110, scale=3.0),), {'block': 16}),
     'a float32 (3, 40) normal tensor (std 3), block=16 (three blocks, the last partial)')

@triton.jit
def online_softmax_kernel_a2(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a2(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a2, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a2[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     'l_i is not rescaled by exp(m_i - m_new) when the running max grows',
     ('rescal', 'alpha|exp\\(m_i ?- ?(m_new|base)\\)|correction'), online_softmax_triton_a2,
     lambda: ((torch.arange(40, dtype=torch.float32).repeat(3, 1) / 4 + _randn(3, 40, seed=111),), {'block': 16}),
     'a float32 (3, 40) ramp 0..10 plus noise (the max grows block by block), block=16')

@triton.jit
def online_softmax_kernel_a3(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=0.0).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=0.0).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a3(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a3, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a3[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     'masked lanes load other=0.0 instead of -inf: the padding of the last block adds exp(0 - m) to '
     'l_i',
     ('\\bother\\b', 'padd|masked lanes'), online_softmax_triton_a3,
     lambda: ((_randn(3, 40, seed=110, scale=3.0),), {'block': 16}),
     'a float32 (3, 40) normal tensor (std 3), block=16 (three blocks, the last partial)')

@triton.jit
def online_softmax_kernel_a4(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = 0.0
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a4(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a4, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a4[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     'm_i starts at 0.0 instead of -inf: for a row far below 0 every exp underflows and the output is '
     '0/0',
     ('initial|start\\w* (at|from|value)|m_i ?= ?0',), online_softmax_triton_a4,
     lambda: ((_randn(3, 40, seed=113, shift=-200.0),), {'block': 16}),
     'a float32 (3, 40) normal tensor with mean -200, block=16')

@triton.jit
def online_softmax_kernel_a5(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = m_new  # a block of all -inf
        l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a5(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a5, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a5[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     'no tl.where guard for a block that is all -inf: base = m_new = -inf gives NaN in l_i',
     ('tl\\.where|guard|isinf', 'nan|all[- ]-?inf|-inf - \\(?-inf'), online_softmax_triton_a5,
     lambda: ((_neg_inf_prefix(_randn(3, 40, seed=114), row=1, n=16),), {'block': 16}),
     'a float32 (3, 40) normal tensor whose row 1 starts with 16 -inf (one whole block), block=16')

@triton.jit
def online_softmax_kernel_a6(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i + tl.sum(tl.exp(x - base), axis=0) * tl.exp(m_i - base)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a6(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a6, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a6[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     "multiplies the new block's sum by exp(m_i - m_new) instead of the old l_i: rescales the wrong "
     'term',
     ('rescal\\w* the (wrong|old|new)|wrong term|old (sum|l_i)', 'alpha|l_i \\*'), online_softmax_triton_a6,
     lambda: ((_randn(3, 40, seed=110, scale=3.0),), {'block': 16}),
     'a float32 (3, 40) normal tensor (std 3), block=16 (three blocks, the last partial)')

@triton.jit
def online_softmax_kernel_a7(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
    row = tl.program_id(0)
    m_i = -float("inf")
    l_i = 0.0
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # a block of all -inf
        l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=0)
        m_i = m_new
    for start in range(0, n_cols, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n_cols,
                    other=-float("inf")).to(tl.float32)
        y = tl.exp(x - m_i) / l_i
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def online_softmax_triton_a7(x, block=64):
    """Row softmax of a 2-D tensor with online_softmax_kernel_a7, in blocks of `block` columns."""
    x = x.contiguous()
    y = torch.empty_like(x)
    n_rows, n_cols = x.shape
    online_softmax_kernel_a7[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
    return y


_add('online_softmax_triton',
     "the second loop's load forgets the row offset row * x_row_stride: every row is normalised with "
     "row 0's values",
     ('row_stride|stride', 'row offset|second (loop|pass)'), online_softmax_triton_a7,
     lambda: ((_randn(3, 40, seed=110, scale=3.0),), {'block': 16}),
     'a float32 (3, 40) normal tensor (std 3), block=16 (three blocks, the last partial)')


# ============================================================== 06 flash_attention_forward_triton(q, k, v, causal=False, scale=None): the loop body, one mistake each

@triton.jit
def flash_attention_forward_kernel_a1(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a1(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a1; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a1[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'offs_n = tl.arange(0, BLOCK_N) without start_n: every iteration loads the first K/V tile again',
     ('start_n', 'offs_n'), flash_attention_forward_triton_a1,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')

@triton.jit
def flash_attention_forward_kernel_a2(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        if CAUSAL:
            s = tl.where(offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a2(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a2; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a2[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'masks only the causal part: scores of the padding keys past n_kv are not set to -inf, so they '
     'load as 0 and add 2^(0 - m) to l_i',
     ('n_kv', 'past the end|padd'), flash_attention_forward_triton_a2,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')

@triton.jit
def flash_attention_forward_kernel_a3(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] < offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a3(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a3; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a3[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'causal keep uses < instead of <=: the diagonal is masked, so query 0 sees no key (NaN)',
     ('diagonal|<=|off[- ]by[- ]one', 'own key|itself'), flash_attention_forward_triton_a3,
     lambda: (_qkv(40, 40, d=16, seed=121), {'causal': True}),
     'q, k, v (1, 2, 40, 16), float32, causal')

@triton.jit
def flash_attention_forward_kernel_a4(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a4(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a4; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a4[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'acc is not rescaled by alpha before adding P V',
     ('\\bacc\\b', 'rescal|alpha'), flash_attention_forward_triton_a4,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')

@triton.jit
def flash_attention_forward_kernel_a5(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a5(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a5; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a5[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'uses tl.exp instead of tl.exp2 while the scores are in log2 units (qk_scale includes log2 e): '
     'the softmax is of scores times log2 e',
     ('exp2|base[- ]?2', 'tl\\.exp\\b|log2 units'), flash_attention_forward_triton_a5,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')

@triton.jit
def flash_attention_forward_kernel_a6(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_new - m_i)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a6(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a6; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a6[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'alpha inverted: exp2(m_new - m_i) instead of exp2(m_i - m_new) (inf * 0 on the first tile)',
     ('alpha', 'sign|invert|flip|m_new ?- ?m_i'), flash_attention_forward_triton_a6,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')

@triton.jit
def flash_attention_forward_kernel_a7(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a7(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a7; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a7[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'never updates m_i = m_new at the end of the loop body: the running max stays -inf, every tile '
     'wipes the previous ones, and lse is -inf',
     ('m_i ?= ?m_new|running max', 'update'), flash_attention_forward_triton_a7,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')

@triton.jit
def flash_attention_forward_kernel_a8(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, 0.0)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a8(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a8; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a8[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'tl.where fills the masked scores with 0.0 instead of -inf: masked keys still get weight 2^(0 - '
     'm)',
     ('-inf|minus infinity', 'fill\\w* .*(0|zero)|0\\.0 instead|zero instead|instead of -inf'), flash_attention_forward_triton_a8,
     lambda: (_qkv(40, 40, d=16, seed=121), {'causal': True}),
     'q, k, v (1, 2, 40, 16), float32, causal')

@triton.jit
def flash_attention_forward_kernel_a9(
        Q, K, V, O, LSE,
        stride_qb, stride_qh, stride_qm, stride_qd, stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd, stride_ob, stride_oh, stride_om, stride_od,
        H, n_q, n_kv, qk_scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block, b·H + h): o and lse of BLOCK_M query rows, online softmax over K/V tiles."""
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b, off_h = off_bh // H, off_bh % H
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running P V
    hi = n_kv
    if CAUSAL:  # keys after the query tile's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=offs_n[None, :] < n_kv, other=0.0)  # (D, BLOCK_N)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        s = tl.dot(q, kt, input_precision=PRECISION)  # (BLOCK_M, BLOCK_N)
        keep = offs_n[None, :] < n_kv
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # 0 on the first tile
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
             + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
    lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural units: · ln 2
    tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def flash_attention_forward_triton_a9(q, k, v, causal=False, scale=None):
    """(o, lse) for q, k, v (B, H, N, D) with flash_attention_forward_kernel_a9; lse is float32 (B, H, N_q)."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    o = torch.empty_like(q)
    lse = torch.empty((B, H, n_q), dtype=torch.float32, device=q.device)
    BLOCK_M, BLOCK_N = 32, 16
    grid = (triton.cdiv(n_q, BLOCK_M), B * H)
    flash_attention_forward_kernel_a9[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        H, n_q, n_kv, scale * LOG2E,
        HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return o, lse


_add('flash_attention_forward_triton',
     'forgets to multiply the scores by qk_scale (scale · log2 e)',
     ('qk_scale', 'forg\\w* .*scale|unscaled|no scale'), flash_attention_forward_triton_a9,
     lambda: (_qkv(40, 40, d=16, seed=120), {}),
     'q, k, v (1, 2, 40, 16), float32, not causal (BLOCK_N = 16: three key tiles, the last partial)')
