"""Checkers for the softmax exercises of notebooks 01-03 (PyTorch and Triton)."""
from __future__ import annotations

import math

import torch

from labkit import softmax as ref
from labkit.check.core import (
    DTYPE_HINT, Case, Misconception, assert_close, on_course_device, run_checker,
)

# ---------------------------------------------------------------------------- inputs


def _randn(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


def _ascending(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Rows whose values grow along the row, so the running max changes in every block."""
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(-20.0, 20.0, cols, dtype=torch.float64)
    return (base + 0.5 * torch.randn(rows, cols, generator=g, dtype=torch.float64)).float()


def _mixed_scales(seed: int) -> torch.Tensor:
    """Rows centred at very different values: one global max underflows the low rows."""
    x = _randn(4, 9, seed=seed)
    return x + torch.tensor([[-300.0], [0.0], [150.0], [300.0]])


# ----------------------------------------------------------- misconceptions (mutants)


def _exp_only(x, dim=-1, *_, **__):
    return torch.exp(x.float()).to(x.dtype)


def _exp_shifted(x, dim=-1, *_, **__):
    return torch.exp(x.float() - x.float().amax(dim=dim, keepdim=True)).to(x.dtype)


def _last_dim_always(f):
    return lambda x, dim=-1, *a, **k: f(x, -1)


def _no_keepdim(x, dim=-1, *_, **__):
    e = torch.exp(x.float() - x.float().amax(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim)).to(x.dtype)  # broadcasts the sums along the wrong axis


def _float32_out(f):
    return lambda x, dim=-1, *a, **k: f(x.float(), dim)


def _global_max(x, dim=-1, *_, **__):
    e = torch.exp(x.float() - x.float().max())
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def _min_subtracted(x, dim=-1, *_, **__):
    e = torch.exp(x.float() - x.float().amin(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)


def _online_variant(x, dim=-1, block_size=ref.DEFAULT_BLOCK, *, rescale="right",
                    second_pass="final"):
    """Online softmax with one deliberate mistake: rescale in {'right', 'none', 'inverted', 'nomax'}."""
    xt = x.float().movedim(dim, -1)
    n = xt.shape[-1]
    m_i = torch.full(xt.shape[:-1], -math.inf)
    l_i = torch.zeros(xt.shape[:-1])
    parts = []
    for s in range(0, n, block_size):
        b = xt[..., s:s + block_size]
        if rescale == "nomax":
            l_i = l_i + torch.exp(b).sum(-1)
            m_i = torch.zeros_like(m_i)
            parts.append((b, m_i.clone()))
            continue
        m_new = torch.maximum(m_i, b.amax(-1))
        factor = {"right": torch.exp(m_i - m_new), "none": torch.ones_like(m_i),
                  "inverted": torch.exp(m_new - m_i).nan_to_num(posinf=0.0)}[rescale]
        l_i = l_i * factor + torch.exp(b - m_new.unsqueeze(-1)).sum(-1)
        m_i = m_new
        parts.append((b, m_i.clone()))
    if second_pass == "running":  # normalise each block with the max seen so far
        out = torch.cat([torch.exp(b - m.unsqueeze(-1)) for b, m in parts], -1) / l_i.unsqueeze(-1)
    else:
        out = torch.exp(xt - m_i.unsqueeze(-1)) / l_i.unsqueeze(-1)
    return out.movedim(-1, dim).to(x.dtype)


def _lse_no_max(x, dim=-1):
    return torch.log(torch.exp(x.float()).sum(dim)).to(x.dtype)


def _lse_max_not_added(x, dim=-1):
    m = x.float().amax(dim, keepdim=True)
    return torch.log(torch.exp(x.float() - m).sum(dim)).to(x.dtype)


def _lse_keepdim(x, dim=-1):
    return ref.logsumexp(x, dim).unsqueeze(dim)


def _lse_unguarded(x, dim=-1):
    m = x.float().amax(dim, keepdim=True)
    return (m.squeeze(dim) + torch.log(torch.exp(x.float() - m).sum(dim))).to(x.dtype)


_WRONG_DIM = "normalised along the wrong dimension: reduce over the `dim` argument, not always the last one"
_NOT_NORMALISED = "output not normalised: divide exp(x) by its sum over `dim`, so each row sums to 1"
_KEEPDIM = ("each row divided by the wrong sum: keep the reduced dimension (sum(dim=dim, keepdim=True)) "
            "so the sums broadcast along `dim`")
_DTYPE = DTYPE_HINT
_NO_MAX = "large inputs overflow: did you subtract the row max before exp?"


def _pytorch_cases(extra: list[Case]) -> list[Case]:
    return [
        Case("small random rows", (_randn(4, 10, seed=1),)),
        Case("square input (rows and columns both 5)", (_randn(5, 5, seed=2),)),
        Case("3-D input, dim=1", (_randn(2, 6, 3, seed=3),), {"dim": 1}),
        Case("dim=0", (_randn(6, 3, seed=4),), {"dim": 0}),
        Case("single column: softmax of one value is 1", (_randn(5, 1, seed=5),)),
        Case("float16 input", (_randn(3, 17, seed=6, dtype=torch.float16),)),
        *extra,
    ]


# ------------------------------------------------------------------------- checkers


def naive_softmax(fn) -> None:
    """Check exp(x) / sum exp(x) over ``dim`` (notebook 01)."""
    run_checker("naive_softmax", fn, _pytorch_cases([]), ref.naive_softmax, [
        Misconception(_NOT_NORMALISED, _exp_only),
        Misconception(_WRONG_DIM, _last_dim_always(ref.naive_softmax)),
        Misconception(_KEEPDIM, _no_keepdim),
        Misconception(_DTYPE, _float32_out(ref.naive_softmax)),
    ])


def safe_softmax(fn) -> None:
    """Check the max-subtracted softmax, including inputs that overflow the naive one (notebook 02)."""
    cases = _pytorch_cases([
        Case("large inputs (values around ±1000)", (_randn(3, 8, seed=7, scale=1000.0),),
             hint=_NO_MAX),
        Case("very negative inputs (around -1000)", (_randn(3, 8, seed=8, shift=-1000.0),),
             hint="all exp(x) underflow to 0: subtract the max so the largest term is exp(0) = 1"),
        Case("rows at very different scales", (_mixed_scales(seed=9),)),
    ])
    run_checker("safe_softmax", fn, cases, ref.safe_softmax, [
        Misconception(_NO_MAX, ref.naive_softmax),
        Misconception("subtract each row's own max (amax over `dim`, keepdim=True), not the max of "
                      "the whole tensor", _global_max),
        Misconception("subtract the max, not the min: exp(x - min) overflows", _min_subtracted),
        Misconception(_NOT_NORMALISED, _exp_only),
        Misconception(_NOT_NORMALISED, _exp_shifted),
        Misconception(_WRONG_DIM, _last_dim_always(ref.safe_softmax)),
        Misconception(_KEEPDIM, _no_keepdim),
        Misconception(_DTYPE, _float32_out(ref.safe_softmax)),
    ])


def online_softmax(fn) -> None:
    """Check the online normaliser for several block sizes and a max that changes every block (notebook 03)."""
    cases = [
        Case("one block (block_size larger than the row)", (_randn(3, 10, seed=11),),
             {"block_size": 16}),
        Case("blocks of 4, width 10 (last block partial)", (_randn(3, 10, seed=12),),
             {"block_size": 4}),
        Case("values rising along the row: the max changes in every block", (_ascending(2, 37, seed=13),),
             {"block_size": 5}),
        Case("large inputs, blocks of 7", (_randn(3, 30, seed=14, scale=1000.0),), {"block_size": 7},
             hint=_NO_MAX),
        Case("dim=0, blocks of 3", (_randn(8, 3, seed=15),), {"dim": 0, "block_size": 3}),
        Case("float16 input, blocks of 8", (_randn(2, 33, seed=16, dtype=torch.float16),),
             {"block_size": 8}),
    ]
    run_checker("online_softmax", fn, cases, ref.online_softmax, [
        Misconception("running sum not rescaled when the max changes: multiply l_i by "
                      "exp(m_old - m_new) before adding the new block",
                      lambda x, dim=-1, block_size=128: _online_variant(x, dim, block_size, rescale="none")),
        Misconception("rescale factor inverted: when the max grows from m_old to m_new, l_i shrinks by "
                      "exp(m_old - m_new) (<= 1)",
                      lambda x, dim=-1, block_size=128: _online_variant(x, dim, block_size, rescale="inverted")),
        Misconception("the second pass must use the final max and sum for every element, not the max "
                      "that was current when the block was first seen",
                      lambda x, dim=-1, block_size=128: _online_variant(x, dim, block_size, second_pass="running")),
        Misconception(_NO_MAX + " (keep a running max m_i)",
                      lambda x, dim=-1, block_size=128: _online_variant(x, dim, block_size, rescale="nomax")),
        Misconception(_WRONG_DIM, lambda x, dim=-1, block_size=128: ref.online_softmax(x, -1, block_size)),
        Misconception(_DTYPE, lambda x, dim=-1, block_size=128: ref.online_softmax(x.float(), dim, block_size)),
    ])


def logsumexp(fn) -> None:
    """Check log sum exp over ``dim``, including overflow, underflow and all -inf rows (notebook 02)."""
    all_neg_inf = _randn(3, 6, seed=21)
    all_neg_inf[1] = -math.inf
    cases = [
        Case("small random rows", (_randn(4, 10, seed=17),)),
        Case("dim=0", (_randn(6, 3, seed=18),), {"dim": 0}),
        Case("large inputs (around 1000)", (_randn(3, 8, seed=19, shift=1000.0),), hint=_NO_MAX),
        Case("very negative inputs (around -1000)", (_randn(3, 8, seed=20, shift=-1000.0),),
             hint="exp underflows to 0 and log 0 = -inf: factor the max out first"),
        Case("a row that is all -inf (the answer is -inf, as torch.logsumexp)", (all_neg_inf,)),
        Case("float16 input", (_randn(3, 17, seed=22, dtype=torch.float16),)),
    ]
    run_checker("logsumexp", fn, cases, ref.logsumexp, [
        Misconception(_NO_MAX + " lse = m + log sum exp(x - m)", _lse_no_max),
        Misconception("you subtracted the max but did not add it back: lse = m + log sum exp(x - m)",
                      _lse_max_not_added),
        Misconception("the result has one dimension fewer than x: reduce over `dim` without keepdim",
                      _lse_keepdim),
        Misconception("a row of all -inf must give -inf: when m = -inf, x - m is NaN, so use 0 in place "
                      "of an infinite max", _lse_unguarded),
        Misconception(_WRONG_DIM, lambda x, dim=-1: ref.logsumexp(x, -1)),
        Misconception(_DTYPE, lambda x, dim=-1: ref.logsumexp(x.float(), dim)),
    ])


def normalize(fn) -> None:
    """Check e / sum(e) along ``dim`` (notebook 00's warm-up)."""
    def positive(*shape, seed):
        return _randn(*shape, seed=seed).exp()
    cases = [
        Case("rows of 10", (positive(4, 10, seed=51),)),
        Case("square input (rows and columns both 5)", (positive(5, 5, seed=52),)),
        Case("dim=0", (positive(6, 3, seed=53),), {"dim": 0}),
        Case("3-D input, dim=1", (positive(2, 4, 3, seed=54),), {"dim": 1}),
        Case("float16 input", (positive(3, 17, seed=55).half(),)),
    ]
    run_checker("normalize", fn, cases, ref.normalize, [
        Misconception(_KEEPDIM, lambda e, dim=-1: e / e.sum(dim)),
        Misconception(_WRONG_DIM, lambda e, dim=-1: ref.normalize(e, -1)),
        Misconception("divide by the sum, not the largest value", lambda e, dim=-1:
                      e / e.amax(dim, keepdim=True)),
        Misconception(_DTYPE, lambda e, dim=-1: ref.normalize(e.float(), dim)),
    ])


def overflow_threshold(fn) -> None:
    """Check ln(finfo(dtype).max) for the course's dtypes, to 0.1% (notebook 01)."""
    cases = [Case(str(d).replace("torch.", ""), (d,)) for d in
             (torch.float32, torch.float16, torch.bfloat16, torch.float64)]

    def within_a_thousandth(out, expected):
        if not isinstance(out, (int, float)) and not (isinstance(out, torch.Tensor) and out.numel() == 1):
            raise AssertionError(f"returned {type(out).__name__}, expected a number")
        assert_close(float(out), expected, rtol=1e-3, atol=0.0, what="threshold")

    run_checker("overflow_threshold", fn, cases, ref.overflow_threshold, [
        Misconception("that is where exp underflows (ln of finfo.tiny); overflow is set by finfo.max",
                      lambda d: math.log(torch.finfo(d).tiny)),
        Misconception("exp is base e: take the natural log (math.log), not log2 or log10",
                      lambda d: math.log2(torch.finfo(d).max)),
        Misconception("exp is base e: take the natural log (math.log), not log2 or log10",
                      lambda d: math.log10(torch.finfo(d).max)),
        Misconception("finfo.max is the largest value; the threshold is the largest exponent: its log",
                      lambda d: torch.finfo(d).max),
    ], compare=within_a_thousandth)


def _state(*shape, seed, scale=5.0):
    return ref.online_state(_randn(*shape, seed=seed, scale=scale))


def _merge_variant(a, b, mistake):
    """merge_states with exactly one deliberate mistake."""
    m = torch.maximum(a.m, b.m)
    base = m if mistake == "unguarded" else ref._finite_or_zero(m)
    scale_a, scale_b = torch.exp(a.m - base), torch.exp(b.m - base)
    if mistake == "inverted":
        scale_a, scale_b = (torch.exp(base - a.m).nan_to_num(posinf=0.0),
                            torch.exp(base - b.m).nan_to_num(posinf=0.0))
    if mistake in ("no rescale", "only b rescaled"):
        scale_a = torch.ones_like(scale_a)
    if mistake in ("no rescale", "only a rescaled"):
        scale_b = torch.ones_like(scale_b)
    return ref.OnlineState(m, a.d * scale_a + b.d * scale_b)


def merge_states(fn) -> None:
    """Check the associative merge of online (m, d) states, including empty blocks (notebook 03)."""
    empty = ref.OnlineState(torch.full((3,), -math.inf), torch.zeros(3))
    a, b = _state(3, 8, seed=61), _state(3, 8, seed=62, scale=20.0)
    mixed = ref.OnlineState(torch.tensor([-math.inf, 2.0, -math.inf]), torch.tensor([0.0, 1.5, 0.0]))
    cases = [
        Case("two blocks of a row", (a, b)),
        Case("the same blocks swapped", (b, a)),
        Case("first block empty (m = -inf, d = 0)", (empty, a)),
        Case("both blocks empty", (empty, empty),
             hint="the merge of two empty blocks is empty: m = -inf, d = 0"),
        Case("some rows empty in both blocks", (mixed, empty)),
    ]
    hints = {
        "no rescale": "sums not rescaled: each d was computed against its own max; multiply it by "
                      "exp(m_own - m) before adding",
        "inverted": "rescale factor inverted: use exp(m_own - m), which is <= 1",
        "only a rescaled": "rescale both sums to the new max, not just one of them",
        "only b rescaled": "rescale both sums to the new max, not just one of them",
        "unguarded": "an empty block has m = -inf and -inf - (-inf) is NaN: subtract 0 instead of an "
                     "infinite max",
    }
    run_checker("merge_states", fn, cases, ref.merge_states, [
        Misconception(hint, lambda a, b, mistake=mistake: _merge_variant(a, b, mistake))
        for mistake, hint in hints.items()
    ])


# ------------------------------------------------------------------ Triton exercises


def _padded_with_zeros(x, block=None):
    """The row padded to a whole number of blocks with 0 instead of -inf (wrong `other=` on a masked load).

    ``block=None`` is the fused kernel's single block: the next power of two >= the width.
    """
    n = x.shape[-1]
    block = block or 1 << max(n - 1, 0).bit_length()
    pad = torch.zeros(*x.shape[:-1], -n % block)
    return ref.safe_softmax(torch.cat([x.float(), pad], -1))[..., :n].to(x.dtype)


def _triton_cases(widths: tuple[int, ...]) -> list[Case]:
    cases = [Case(f"width {w}", (_randn(3, w, seed=30 + w),)) for w in widths]
    cases += [
        Case("large inputs (around ±1000)", (_randn(2, 100, seed=41, scale=1000.0),), hint=_NO_MAX),
        Case("float16 input, width 100", (_randn(4, 100, seed=42, dtype=torch.float16),)),
        Case("one row, width 1", (_randn(1, 1, seed=43),)),
    ]
    return cases


_MASK_HINT = ("masked lanes must load as -inf (tl.load(..., mask=offs < n_cols, other=-float('inf'))): "
              "padding with 0 adds exp(0 - m) to the sum")


def softmax_triton(fn) -> None:
    """Check a fused row-softmax Triton kernel through its host wrapper fn(x) (notebook 02)."""
    run_checker("softmax_triton", on_course_device(fn), _triton_cases((7, 64, 100)), ref.safe_softmax, [
        Misconception(_MASK_HINT, lambda x: _padded_with_zeros(x)),
        Misconception(_NO_MAX, ref.naive_softmax),
        Misconception(_NOT_NORMALISED, _exp_only),
        Misconception(_NOT_NORMALISED, _exp_shifted),
    ])


def online_softmax_triton(fn) -> None:
    """Check an online-softmax Triton kernel (loop over column blocks) through fn(x) (notebook 03)."""
    cases = _triton_cases((7, 100, 300))
    cases.insert(3, Case("values rising along a row of 300", (_ascending(2, 300, seed=44),)))
    blocks = (16, 32, 64, 128, 256)
    run_checker("online_softmax_triton", on_course_device(fn), cases, ref.safe_softmax, [
        *[Misconception("running sum not rescaled when the max changes: l_i = l_i * exp(m_i - m_new) "
                        "+ sum(exp(x - m_new))",
                        lambda x, b=b: _online_variant(x, -1, b, rescale="none")) for b in blocks],
        *[Misconception("the second loop must normalise with the final m_i and l_i, not the max "
                        "current when the block was first seen",
                        lambda x, b=b: _online_variant(x, -1, b, second_pass="running")) for b in blocks],
        *[Misconception(_MASK_HINT, lambda x, b=b: _padded_with_zeros(x, b)) for b in blocks],
        Misconception(_NO_MAX, ref.naive_softmax),
        Misconception(_NOT_NORMALISED, _exp_only),
        Misconception(_NOT_NORMALISED, _exp_shifted),
    ])
