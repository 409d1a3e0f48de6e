"""Wrong student answers to the softmax exercises (notebooks 00-03), written without reading the checkers.

Each entry is a mistake a student could plausibly make, in a student's own style, with the
exercise's exact signature. For the Triton exercises the kernel is the notebook's scaffold with
only the student's part (between the markers) changed, and the host wrapper is the scaffold's.
"""
from __future__ import annotations

import math

import labkit  # noqa: F401  (first: sets TRITON_INTERPRET=1 without CUDA)
import torch
from labkit import device, softmax

from wrong_answer import WrongAnswer

if device.HAS_TRITON:
    import triton
    import triton.language as tl

WRONG: list[WrongAnswer] = []


def _add(exercise: str, mistake: str, names: tuple[str, ...]):
    def deco(fn):
        WRONG.append(WrongAnswer(exercise, mistake, names, fn))
        return fn
    return deco


# Words a hint would use for some recurring mistakes.
DIM = (r"\bdim\b|axis|dimension",)
KEEPDIM = (r"keepdim|broadcast",)
DTYPE = (r"dtype|float32|float16|fp16|fp32|half|precision",)
INPLACE = (r"in[- ]?place|modif|mutat|overwr|changed (the|your) input",)


# ----------------------------------------------------------------------------------------------
# 0.1 normalize(e, dim=-1)
# ----------------------------------------------------------------------------------------------

@_add("normalize", "I divided by e.sum(dim=dim) without keepdim", KEEPDIM)
def _normalize_no_keepdim(e, dim=-1):
    total = e.sum(dim=dim)
    return e / total


@_add("normalize", "I divided by the sum of the whole tensor", (r"\bdim\b|axis|whole|entire|all elements|global",))
def _normalize_whole_sum(e, dim=-1):
    return e / e.sum()


@_add("normalize", "I always summed over the last dimension and ignored dim", DIM)
def _normalize_last_dim(e, dim=-1):
    s = torch.sum(e, -1, keepdim=True)
    return e / s


@_add("normalize", "I divided by the max instead of the sum", (r"\bmax|\bsum\b",))
def _normalize_by_max(e, dim=-1):
    biggest = e.amax(dim=dim, keepdim=True)
    return e / biggest


@_add("normalize", "I divided by the mean instead of the sum", (r"\bmean\b|average|\bsum\b",))
def _normalize_by_mean(e, dim=-1):
    return e / e.mean(dim=dim, keepdim=True)


@_add("normalize", "I divided e in place with /=", INPLACE)
def _normalize_in_place(e, dim=-1):
    e /= e.sum(dim=dim, keepdim=True)
    return e


@_add("normalize", "I convert to float to be safe and forgot to convert back", DTYPE)
def _normalize_float32(e, dim=-1):
    e = e.float()
    return e / e.sum(dim=dim, keepdim=True)


@_add("normalize", "I looped over the rows, so it only works along the last dim of a 2-D tensor", DIM)
def _normalize_row_loop(e, dim=-1):
    out = torch.empty_like(e)
    for i in range(e.shape[0]):
        out[i] = e[i] / e[i].sum()
    return out


# ----------------------------------------------------------------------------------------------
# 1.1 naive_softmax(x, dim=-1)
# ----------------------------------------------------------------------------------------------

@_add("naive_softmax", "I forgot keepdim on the sum", KEEPDIM)
def _naive_no_keepdim(x, dim=-1):
    ex = torch.exp(x.float())
    return (ex / ex.sum(dim)).to(x.dtype)


@_add("naive_softmax", "I summed exp over the whole tensor instead of along dim",
      (r"\bdim\b|axis|whole|entire|all elements|global",))
def _naive_global_sum(x, dim=-1):
    ex = torch.exp(x.float())
    return (ex / ex.sum()).to(x.dtype)


@_add("naive_softmax", "I hard-coded dim=-1 and never used the dim argument", DIM)
def _naive_ignores_dim(x, dim=-1):
    ex = x.float().exp()
    return (ex / ex.sum(-1, keepdim=True)).to(x.dtype)


@_add("naive_softmax", "I return float32 for half inputs (forgot .to(x.dtype))", DTYPE)
def _naive_float32_out(x, dim=-1):
    ex = torch.exp(x.float())
    return ex / ex.sum(dim=dim, keepdim=True)


@_add("naive_softmax", "I computed exp directly in fp16, so fp16 overflows above 11",
      (r"float32|fp32|upcast|precision|float16|fp16|half|overflow",))
def _naive_fp16_arithmetic(x, dim=-1):
    ex = torch.exp(x)
    return ex / ex.sum(dim=dim, keepdim=True)


@_add("naive_softmax", "I divided exp(x) by the sum of x, not the sum of exp(x)",
      (r"\bexp|denominator|\bsum\b",))
def _naive_sum_of_x(x, dim=-1):
    xf = x.float()
    return (torch.exp(xf) / xf.sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("naive_softmax", "I used x.exp_() and overwrote the input", INPLACE)
def _naive_exp_in_place(x, dim=-1):
    ex = x.exp_()
    return ex / ex.sum(dim=dim, keepdim=True)


@_add("naive_softmax", "I looped over x[i] rows, which only handles the last dim of 2-D input", DIM)
def _naive_row_loop(x, dim=-1):
    rows = []
    for row in x:
        num = torch.exp(row.float())
        rows.append((num / num.sum()).to(x.dtype))
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------------
# 1.2 overflow_threshold(dtype)
# ----------------------------------------------------------------------------------------------

LN = r"natural|\bln\b|math\.log\b|log base e|base e|base\b"


@_add("overflow_threshold", "I used math.log2 instead of the natural log", (r"log2|" + LN,))
def _thr_log2(dtype):
    return math.log2(torch.finfo(dtype).max)


@_add("overflow_threshold", "I used math.log10 instead of the natural log", (r"log10|" + LN,))
def _thr_log10(dtype):
    return math.log10(torch.finfo(dtype).max)


@_add("overflow_threshold", "I took the log of finfo.tiny (the smallest number) instead of max",
      (r"tiny|smallest|underflow|\bmin\b|\bmax\b",))
def _thr_log_tiny(dtype):
    return math.log(torch.finfo(dtype).tiny)


@_add("overflow_threshold", "I used -log(tiny), which is close to log(max) but not equal",
      (r"tiny|smallest|underflow|\bmin\b|\bmax\b",))
def _thr_minus_log_tiny(dtype):
    return -math.log(torch.finfo(dtype).tiny)


@_add("overflow_threshold", "I returned finfo(dtype).max itself, forgot to take the log",
      (r"\blog|\bln\b",))
def _thr_max_itself(dtype):
    return float(torch.finfo(dtype).max)


@_add("overflow_threshold", "I always used float32's max and ignored the dtype argument",
      (r"dtype|float16|fp16|float64|fp64|bfloat16|each type",))
def _thr_always_float32(dtype):
    return math.log(torch.finfo(torch.float32).max)


@_add("overflow_threshold", "I hard-coded 88.7 from the notes for every dtype",
      (r"dtype|float16|fp16|float64|fp64|hard[- ]?cod|constant",))
def _thr_hardcoded(dtype):
    return 88.7


# ----------------------------------------------------------------------------------------------
# 2.1 safe_softmax(x, dim=-1)
# ----------------------------------------------------------------------------------------------

@_add("safe_softmax", "I forgot to subtract the max, so it overflows",
      (r"\bmax|overflow|subtract",))
def _safe_no_max(x, dim=-1):
    xf = x.float()
    num = torch.exp(xf)
    return (num / num.sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "I subtracted the max of the whole tensor, not each row's max",
      (r"global|whole|entire|per[- ]?(row|slice)|each (row|slice)|along dim|\bdim\b",))
def _safe_global_max(x, dim=-1):
    xf = x.float()
    num = torch.exp(xf - xf.max())
    return (num / num.sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "I subtracted the min instead of the max", (r"\bmin|\bmax",))
def _safe_min(x, dim=-1):
    xf = x.float()
    shifted = xf - xf.amin(dim=dim, keepdim=True)
    num = shifted.exp()
    return (num / num.sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "my max has no keepdim so it broadcasts wrongly", KEEPDIM)
def _safe_max_no_keepdim(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim)
    num = torch.exp(xf - m)
    return (num / num.sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "I hard-coded the last dim for the max and the sum", DIM)
def _safe_ignores_dim(x, dim=-1):
    xf = x.float()
    num = torch.exp(xf - xf.amax(-1, keepdim=True))
    return (num / num.sum(-1, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "I subtracted the max in the numerator but summed exp(x) without it",
      (r"denominator|numerator|\bboth\b|\bsum\b",))
def _safe_unshifted_sum(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim, keepdim=True)
    return (torch.exp(xf - m) / torch.exp(xf).sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "I always cast the result to float16", DTYPE)
def _safe_always_half(x, dim=-1):
    xf = x.float()
    num = torch.exp(xf - xf.amax(dim=dim, keepdim=True))
    return (num / num.sum(dim=dim, keepdim=True)).half()


@_add("safe_softmax", "I did x -= max to save memory and changed the input", INPLACE)
def _safe_sub_in_place(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)
    num = torch.exp(x.float())
    return (num / num.sum(dim=dim, keepdim=True)).to(x.dtype)


@_add("safe_softmax", "I wrote x.max(dim=dim, keepdim=True), which returns (values, indices)",
      (r"values|tuple|indices|TypeError|amax|raised|exception|error",))
def _safe_max_tuple(x, dim=-1):
    xf = x.float()
    num = torch.exp(xf - xf.max(dim=dim, keepdim=True))
    return (num / num.sum(dim=dim, keepdim=True)).to(x.dtype)


# ----------------------------------------------------------------------------------------------
# 2.2 logsumexp(x, dim=-1)
# ----------------------------------------------------------------------------------------------

@_add("logsumexp", "I forgot to add the max back after the log",
      (r"add|\bmax\b|\bm\b|shift|back",))
def _lse_no_add_back(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return torch.log(torch.exp(xf - m).sum(dim=dim)).to(x.dtype)


@_add("logsumexp", "I kept the reduced dimension (keepdim=True all the way)",
      (r"keepdim|shape|squeeze|remov|dimension",))
def _lse_keeps_dim(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m + torch.log(torch.exp(xf - m).sum(dim=dim, keepdim=True))).to(x.dtype)


@_add("logsumexp", "all -inf rows give NaN because I compute -inf - (-inf)",
      (r"-\s*inf|\binf|nan|masked|all[- ]",))
def _lse_nan_for_neg_inf(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim, keepdim=True)
    s = torch.exp(xf - m).sum(dim=dim)
    return (m.squeeze(dim) + torch.log(s)).to(x.dtype)


@_add("logsumexp", "I just wrote log(sum(exp(x))) without the max trick",
      (r"overflow|\bmax|\binf",))
def _lse_plain(x, dim=-1):
    return torch.log(torch.sum(torch.exp(x.float()), dim=dim)).to(x.dtype)


@_add("logsumexp", "I subtracted the max after the log instead of adding it",
      (r"add|sign|minus|subtract|\bmax\b|\bm\b",))
def _lse_minus_max(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (torch.log(torch.exp(xf - m).sum(dim=dim)) - m.squeeze(dim)).to(x.dtype)


@_add("logsumexp", "I used one max for the whole tensor instead of per row",
      (r"global|whole|entire|per[- ]?(row|slice)|each (row|slice)|along dim|\bdim\b|underflow",))
def _lse_global_max(x, dim=-1):
    xf = x.float()
    big = xf.max()
    return (big + torch.log(torch.exp(xf - big).sum(dim=dim))).to(x.dtype)


@_add("logsumexp", "I return float32 even for half input", DTYPE)
def _lse_float32(x, dim=-1):
    xf = x.float()
    m = xf.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return m.squeeze(dim) + torch.log(torch.exp(xf - m).sum(dim=dim))


@_add("logsumexp", "I always reduced the last dim and ignored dim", DIM)
def _lse_ignores_dim(x, dim=-1):
    xf = x.float()
    m = xf.amax(-1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (m.squeeze(-1) + torch.log(torch.exp(xf - m).sum(-1))).to(x.dtype)


# ----------------------------------------------------------------------------------------------
# 2.3 softmax_triton(x): softmax_kernel body
# ----------------------------------------------------------------------------------------------

if device.HAS_TRITON:

    @triton.jit
    def _softmax_kernel_other_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + pid * x_row_stride + offs, mask=mask, other=0.0).to(tl.float32)
        x = x - tl.max(x, axis=0)
        num = tl.exp(x)
        y = num / tl.sum(num, axis=0)
        tl.store(y_ptr + pid * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _softmax_kernel_no_max(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=-float("inf")).to(tl.float32)
        e = tl.exp(x)
        y = e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _softmax_kernel_not_normalised(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * x_row_stride + cols, mask=cols < n_cols, other=-float("inf"))
        x = x.to(tl.float32)
        y = tl.exp(x - tl.max(x, axis=0))
        tl.store(y_ptr + row * y_row_stride + cols, y.to(y_ptr.dtype.element_ty), mask=cols < n_cols)

    @triton.jit
    def _softmax_kernel_min(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        # masked lanes load +inf so they never win the min
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=float("inf")).to(tl.float32)
        e = tl.exp(x - tl.min(x, axis=0))
        e = tl.where(mask, e, 0.0)
        y = e / tl.sum(e, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _softmax_kernel_sum_of_x(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row: y[row] = softmax(x[row]), the whole row in one block."""
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + row * x_row_stride + offs, mask=mask, other=0.0).to(tl.float32)
        m = tl.max(tl.where(mask, x, -float("inf")), axis=0)
        y = tl.exp(x - m) / tl.sum(x - m, axis=0)
        tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def _fused_wrapper(kernel_name: str):
    """The notebook's host wrapper, launching one of the kernels above."""

    def softmax_triton(x):
        """Row softmax of a 2-D tensor with softmax_kernel: one program per row."""
        softmax_kernel = globals()[kernel_name]
        x = x.contiguous()
        y = torch.empty_like(x)
        n_rows, n_cols = x.shape
        softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols,
                                  BLOCK=triton.next_power_of_2(n_cols))
        return y

    return softmax_triton


MASK = (r"other|mask|-\s*inf|padd|lane|out[- ]of[- ]bounds",)
for _kernel, _mistake, _names in [
    ("_softmax_kernel_other_zero", "I loaded the masked lanes with other=0.0", MASK),
    ("_softmax_kernel_no_max", "I skipped subtracting the max in the kernel", (r"\bmax|overflow|subtract",)),
    ("_softmax_kernel_not_normalised", "I forgot to divide by the sum",
     (r"normali[sz]|divid|\bsum\b|sums? to",)),
    ("_softmax_kernel_min", "I subtracted tl.min instead of tl.max", (r"\bmin|\bmax",)),
    ("_softmax_kernel_sum_of_x", "I divided by the sum of x - m instead of the sum of exp(x - m)",
     (r"\bexp|\bsum\b|normali[sz]|denominator",)),
]:
    WRONG.append(WrongAnswer("softmax_triton", _mistake, _names, _fused_wrapper(_kernel)))


# ----------------------------------------------------------------------------------------------
# 3.1 merge_states(a, b)
# ----------------------------------------------------------------------------------------------

RESCALE = (r"rescal|scal(e|ing) factor|\bfactor|exp\(m|e\^",)


@_add("merge_states", "I just added the two d's without rescaling", RESCALE)
def _merge_no_rescale(a, b):
    return softmax.OnlineState(torch.maximum(a.m, b.m), a.d + b.d)


@_add("merge_states", "I wrote exp(m - m_a) instead of exp(m_a - m)",
      (r"invert|sign|revers|backwards|flipped|factor|rescal|exp\(m",))
def _merge_inverted_factor(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    d = a.d * torch.exp(base - a.m) + b.d * torch.exp(base - b.m)
    return softmax.OnlineState(m, d)


@_add("merge_states", "merging two empty (-inf, 0) states gives NaN",
      (r"-\s*inf|\binf|nan|empty|identity",))
def _merge_nan_on_empty(a, b):
    new_m = torch.max(a.m, b.m)
    new_d = a.d * torch.exp(a.m - new_m) + b.d * torch.exp(b.m - new_m)
    return softmax.OnlineState(new_m, new_d)


@_add("merge_states", "I only rescaled b, assuming a always has the bigger max",
      (r"rescal|both|\bfactor|larger|bigger|\ba\.m|m_a",))
def _merge_only_b(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d + b.d * torch.exp(b.m - base))


@_add("merge_states", "I took the minimum of the two maxima", (r"\bmin|\bmax",))
def _merge_min(a, b):
    m = torch.minimum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, a.d * torch.exp(a.m - base) + b.d * torch.exp(b.m - base))


@_add("merge_states", "I returned a.m as the new max (forgot to update m)",
      (r"\bmax|\bm\b|update",))
def _merge_keeps_a_m(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(a.m, a.d * torch.exp(a.m - base) + b.d * torch.exp(b.m - base))


@_add("merge_states", "I updated a.d in place with mul_ and add_", INPLACE)
def _merge_in_place(a, b):
    m = torch.maximum(a.m, b.m)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    d = a.d
    d.mul_(torch.exp(a.m - base)).add_(b.d * torch.exp(b.m - base))
    return softmax.OnlineState(m, d)


# ----------------------------------------------------------------------------------------------
# 3.2 online_softmax(x, dim=-1, block_size=128)
# ----------------------------------------------------------------------------------------------

@_add("online_softmax", "I never rescale l_i when the running max changes", RESCALE)
def _online_no_rescale(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    for start in range(0, xt.shape[-1], block_size):
        blk = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, blk.amax(dim=-1))
        l_i = l_i + torch.exp(blk - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


@_add("online_softmax", "element by element: m = max(m, x_j), d += exp(x_j - m), no rescaling", RESCALE)
def _online_elementwise_no_rescale(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m = torch.full(xt.shape[:-1], -math.inf)
    d = torch.zeros(xt.shape[:-1])
    for j in range(xt.shape[-1]):
        xj = xt[..., j]
        m = torch.maximum(m, xj)
        d = d + torch.exp(xj - m)
    return (torch.exp(xt - m.unsqueeze(-1)) / d.unsqueeze(-1)).movedim(-1, dim).to(x.dtype)


@_add("online_softmax", "I summed each block against its own max and added the sums up",
      (r"running max|\brunning\b|own max|block'?s? max|rescal",))
def _online_own_block_max(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    for s in range(0, xt.shape[-1], block_size):
        blk = xt[..., s:s + block_size]
        bmax = blk.amax(dim=-1)
        l_i = l_i + torch.exp(blk - bmax[..., None]).sum(dim=-1)
        m_i = torch.maximum(m_i, bmax)
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


@_add("online_softmax", "I set m_i to the current block's max instead of max(m_i, block max)",
      (r"running max|\brunning\b|own max|block'?s? max|overflow|\bmax\b",))
def _online_overwrites_max(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    for s in range(0, xt.shape[-1], block_size):
        blk = xt[..., s:s + block_size]
        m_new = blk.amax(dim=-1)  # this block's max
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(blk - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


@_add("online_softmax", "in the second pass each block uses the max it had when I first saw it",
      (r"stale|final|running max|\bm_i\b|second pass|last|old max",))
def _online_stale_max(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    maxes = []
    for s in range(0, xt.shape[-1], block_size):
        blk = xt[..., s:s + block_size]
        m_new = torch.maximum(m_i, blk.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(blk - m_new[..., None]).sum(dim=-1)
        m_i = m_new
        maxes.append(m_i)
    pieces = []
    for k, s in enumerate(range(0, xt.shape[-1], block_size)):
        blk = xt[..., s:s + block_size]
        pieces.append(torch.exp(blk - maxes[k][..., None]) / l_i[..., None])
    return torch.cat(pieces, dim=-1).movedim(-1, dim).to(x.dtype)


@_add("online_softmax", "my loop drops the last, shorter block (range stops at n - block_size)",
      (r"last block|tail|remainder|shorter|partial|block_size|not a multiple|leftover",))
def _online_drops_tail(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    n = xt.shape[-1]
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    nblocks = max(n // block_size, 1)
    for b in range(nblocks):
        blk = xt[..., b * block_size:(b + 1) * block_size]
        m_new = torch.maximum(m_i, blk.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(blk - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim).to(x.dtype)


@_add("online_softmax", "I always work along the last dim (no movedim)", DIM)
def _online_ignores_dim(x, dim=-1, block_size=128):
    xt = x.float()
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).to(x.dtype)


@_add("online_softmax", "I moved dim to the end but forgot to move it back",
      (r"movedim|\bdim\b|shape|axis|transpos",))
def _online_no_move_back(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).to(x.dtype)


@_add("online_softmax", "I return the float32 result without casting back", DTYPE)
def _online_float32(x, dim=-1, block_size=128):
    xt = x.float().movedim(dim, -1)
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    for start in range(0, xt.shape[-1], block_size):
        block = xt[..., start:start + block_size]
        m_new = torch.maximum(m_i, block.amax(dim=-1))
        l_i = l_i * torch.exp(m_i - m_new) + torch.exp(block - m_new[..., None]).sum(dim=-1)
        m_i = m_new
    return (torch.exp(xt - m_i[..., None]) / l_i[..., None]).movedim(-1, dim)


# ----------------------------------------------------------------------------------------------
# 3.3 online_softmax_triton(x, block=64): online_softmax_kernel body
# ----------------------------------------------------------------------------------------------

if device.HAS_TRITON:

    @triton.jit
    def _online_kernel_other_zero(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
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

    @triton.jit
    def _online_kernel_no_rescale(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_i = tl.maximum(m_i, tl.max(x, axis=0))
            l_i += tl.sum(tl.exp(x - m_i), axis=0)
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _online_kernel_block_max_second_loop(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols,
                                             BLOCK: tl.constexpr):
        """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_blk = tl.max(x, axis=0)
            y = tl.exp(x - m_blk) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _online_kernel_no_divide(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m_i = m_new
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i)
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)

    @triton.jit
    def _online_kernel_no_max(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
        """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
        row = tl.program_id(0)
        l_i = 0.0
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            l_i += tl.sum(tl.exp(x), axis=0)
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            tl.store(y_ptr + row * y_row_stride + offs, (tl.exp(x) / l_i).to(y_ptr.dtype.element_ty),
                     mask=offs < n_cols)

    @triton.jit
    def _online_kernel_forgets_m_update(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols,
                                        BLOCK: tl.constexpr):
        """One program per row, looping over column blocks: pass 1 for (m_i, l_i), pass 2 to normalise."""
        row = tl.program_id(0)
        m_i = -float("inf")
        l_i = 0.0
        m_new = -float("inf")
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_new, tl.max(x, axis=0))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols,
                        other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_new) / l_i
            tl.store(y_ptr + row * y_row_stride + offs, y.to(y_ptr.dtype.element_ty), mask=offs < n_cols)


def _online_wrapper(kernel_name: str):
    """The notebook's host wrapper, launching one of the kernels above."""

    def online_softmax_triton(x, block=64):
        """Row softmax of a 2-D tensor with online_softmax_kernel, in blocks of `block` columns."""
        online_softmax_kernel = globals()[kernel_name]
        x = x.contiguous()
        y = torch.empty_like(x)
        n_rows, n_cols = x.shape
        online_softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK=block)
        return y

    return online_softmax_triton


for _kernel, _mistake, _names in [
    ("_online_kernel_other_zero", "I loaded masked lanes with other=0.0", MASK),
    ("_online_kernel_no_rescale", "I never rescale l_i by exp(m_old - m_new) in the first loop", RESCALE),
    ("_online_kernel_block_max_second_loop", "in the second loop I subtract each block's own max, not m_i",
     (r"stale|final|running max|\bm_i\b|second (loop|pass)|own max|block'?s? max",)),
    ("_online_kernel_no_divide", "I forgot to divide by l_i in the second loop",
     (r"normali[sz]|divid|\bl_i\b|\bsum\b|sums? to",)),
    ("_online_kernel_no_max", "I left out the max entirely and summed exp(x)", (r"\bmax|overflow",)),
    ("_online_kernel_forgets_m_update", "I never assign m_i = m_new, so the rescale factor is always 0",
     (r"rescal|\bm_i\b|running max|update|stale|\bfactor",)),
]:
    WRONG.append(WrongAnswer("online_softmax_triton", _mistake, _names, _online_wrapper(_kernel)))
