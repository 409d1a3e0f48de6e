"""Checkers for the attention exercises of notebooks 04-05: naive, tiled and FlashAttention forward."""
from __future__ import annotations

import math

import torch

from labkit import attention as ref
from labkit.check.core import (Case, Misconception, assert_close, compare_outputs, describe,
                               misconceptions, on_course_device, run_checker)

# ---------------------------------------------------------------------------- inputs


def _qkv(B: int, H: int, n_q: int, n_kv: int, D: int, *, seed: int, scale: float = 1.0,
         dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(B, H, n, D, generator=g, dtype=torch.float64) * scale).to(dtype)
                 for n in (n_q, n_kv, n_kv))


def _rising(n: int, D: int, seed: int):
    """q, k whose scores grow along the keys, so the running max changes in every key tile."""
    g = torch.Generator().manual_seed(seed)
    q = 1.0 + 0.3 * torch.randn(1, 2, n, D, generator=g, dtype=torch.float64)
    k = torch.linspace(0.0, 2.0, n, dtype=torch.float64)[:, None] + \
        0.3 * torch.randn(1, 2, n, D, generator=g, dtype=torch.float64)
    v = torch.randn(1, 2, n, D, generator=g, dtype=torch.float64)
    return q.float(), k.float(), v.float()


# ----------------------------------------------------------- misconceptions (mutants)


def _scores(q, k, scale, mistake):
    """scale · q kᵀ in float64, with one deliberate mistake."""
    D = q.shape[-1]
    if mistake == "no scale":
        scale = 1.0
    elif mistake == "scale 1/D":
        scale = 1.0 / D
    elif mistake == "scale ignored" or scale is None:
        scale = 1.0 / math.sqrt(D)
    kt = k if mistake == "k not transposed" else k.transpose(-2, -1)
    return (q.double() @ kt.double()) * scale


def _mask(s, rows, cols, mistake):
    """Causal mask on a (.., rows, cols) block of scores; `rows`, `cols` are the global indices."""
    i, j = rows[:, None], cols[None, :]
    hidden = {"diagonal masked": j >= i, "one key too many": j > i + 1,
              "mask flipped": j < i}.get(mistake, j > i)
    return s.masked_fill(hidden, float("-inf"))


def _naive_variant(q, k, v, causal=False, scale=None, *, mistake):
    s = _scores(q, k, scale, mistake)
    if causal:
        s = _mask(s, torch.arange(q.shape[2]), torch.arange(k.shape[2]), mistake)
    p = torch.softmax(s, dim=-2 if mistake == "softmax over queries" else -1)
    return (p @ v.double()).to(q.dtype)


def _tiled_variant(q, k, v, block_q=64, block_k=64, scale=None, *, mistake):
    n_q, n_kv = q.shape[2], k.shape[2]
    o = torch.zeros(q.shape, dtype=torch.float64)
    k_end = n_kv - block_k + 1 if mistake == "tail dropped" else n_kv
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(*q_i.shape[:3], n_kv, dtype=torch.float64)
        for j0 in range(0, max(k_end, 1), block_k):
            s_ij = _scores(q_i, k[:, :, j0:j0 + block_k], scale, mistake)
            s_i[..., j0:j0 + block_k] = torch.softmax(s_ij, -1) if mistake == "softmax per tile" else s_ij
        p_i = s_i if mistake == "softmax per tile" else torch.softmax(s_i, -1)
        o[:, :, i0:i0 + block_q] = p_i @ v.double()
    return o.to(q.dtype)


def _flash_variant(q, k, v, causal=False, scale=None, block_q=64, block_k=64, *, mistake):
    """The online-softmax forward with one deliberate mistake; returns (o, lse)."""
    n_q, n_kv = q.shape[2], k.shape[2]
    o = torch.zeros(q.shape, dtype=torch.float64)
    lse = torch.zeros(q.shape[:3], dtype=torch.float64)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        rows = torch.arange(i0, i0 + q_i.shape[2])
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=torch.float64)
        l_i = torch.zeros(q_i.shape[:3], dtype=torch.float64)
        acc = torch.zeros(q_i.shape, dtype=torch.float64)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv
        if causal and mistake == "diagonal tile skipped":
            j_end = i0
        for j0 in range(0, j_end, block_k):
            s = _scores(q_i, k[:, :, j0:j0 + block_k], scale, mistake)
            if causal:
                s = _mask(s, rows, torch.arange(j0, j0 + s.shape[-1]), mistake)
            m_new = torch.maximum(m_i, s.amax(-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m_i - m_new)
            l_i = (1.0 if mistake in ("l not rescaled", "nothing rescaled") else alpha) * l_i + p.sum(-1)
            a = 1.0 if mistake in ("acc not rescaled", "nothing rescaled") else alpha[..., None]
            acc = a * acc + p @ v[:, :, j0:j0 + block_k].double()
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc if mistake == "not divided" else acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = torch.log(l_i) if mistake == "lse without max" else \
            m_i + torch.log(l_i)
    return o.to(q.dtype), lse.to(torch.float64 if q.dtype == torch.float64 else torch.float32)


_K_T = ("scores are q @ kᵀ: transpose the last two dims of k (k.transpose(-2, -1)), shape "
        "(B, H, N_q, N_kv)")
_NO_SCALE = "scores must be scaled by 1/sqrt(D) (D = q.shape[-1]) before the softmax"
_SCALE_D = "the scale is 1/sqrt(D), not 1/D"
_SCALE_IGNORED = "use the `scale` argument when it is given; 1/sqrt(D) is only the default (scale=None)"
_DIAG = "causal mask off by one: query i must see key i itself (mask only j > i, e.g. triu(diagonal=1))"
_LATE = "causal mask off by one: query i must not see key i + 1 (mask every j > i)"
_FLIPPED = "causal mask flipped: hide the future keys j > i (upper triangle), not the past ones"
_SOFTMAX_DIM = "softmax over the keys (last dim, dim=-1), so each query's weights sum to 1"
_COMMON = {"k not transposed": _K_T, "no scale": _NO_SCALE, "scale 1/D": _SCALE_D,
           "scale ignored": _SCALE_IGNORED}
_CAUSAL = {"diagonal masked": _DIAG, "one key too many": _LATE, "mask flipped": _FLIPPED}


# ------------------------------------------------------------------------- checkers


def naive_attention(fn) -> None:
    """Check O = softmax(scale · q kᵀ, causal mask) v for fn(q, k, v, causal=False, scale=None) (notebook 04)."""
    cases = [
        Case("B=1, H=2, N=6, D=8", _qkv(1, 2, 6, 6, 8, seed=1)),
        Case("N = D = 8 (square scores)", _qkv(1, 2, 8, 8, 8, seed=2)),
        Case("cross-attention: N_q=5, N_kv=9", _qkv(2, 1, 5, 9, 8, seed=3), hint=_K_T),
        Case("causal, N=7", _qkv(1, 2, 7, 7, 4, seed=4), {"causal": True}),
        Case("scale=0.5 given", _qkv(1, 2, 6, 6, 8, seed=5), {"scale": 0.5}),
        Case("causal, N = D = 8, scale=0.3", _qkv(2, 2, 8, 8, 8, seed=6),
             {"causal": True, "scale": 0.3}),
        Case("float16 inputs", _qkv(1, 2, 6, 6, 8, seed=7, dtype=torch.float16)),
    ]
    run_checker("naive_attention", fn, cases, ref.naive_attention, misconceptions(_naive_variant, {
        **_COMMON, **_CAUSAL, "softmax over queries": _SOFTMAX_DIM}))


def tiled_attention(fn) -> None:
    """Check the lab's tiled pseudo-code fn(q, k, v, block_q=64, block_k=64, scale=None) (notebook 05)."""
    cases = [
        Case("N=16, tiles 4 x 4", _qkv(1, 2, 16, 16, 8, seed=11), {"block_q": 4, "block_k": 4}),
        Case("N_q=13, N_kv=10, tiles 4 x 3 (last tiles partial)", _qkv(1, 2, 13, 10, 8, seed=12),
             {"block_q": 4, "block_k": 3},
             hint="the last tile is shorter: slice [j:j + block] and loop with range(0, N, block)"),
        Case("N=16, D=8, tiles 4 x 8", _qkv(1, 2, 16, 16, 8, seed=13), {"block_q": 4, "block_k": 8}),
        Case("default tiles (64), N=100", _qkv(1, 1, 100, 100, 8, seed=14)),
        Case("scale=0.5 given, tiles 5 x 7", _qkv(2, 1, 11, 15, 4, seed=15),
             {"block_q": 5, "block_k": 7, "scale": 0.5}),
        Case("float16 inputs, tiles 4 x 4", _qkv(1, 2, 10, 10, 8, seed=16, dtype=torch.float16),
             {"block_q": 4, "block_k": 4}),
    ]
    run_checker("tiled_attention", fn, cases, ref.tiled_attention, misconceptions(_tiled_variant, {
        **_COMMON,
        "softmax per tile": "the softmax runs over the whole score row block S_i (all key tiles), "
                            "not over each key tile on its own",
        "tail dropped": "the last, partial key tile is missing: loop with range(0, N_kv, block_k)",
    }))


def flash_attention_forward(fn) -> None:
    """Check the online-softmax forward fn(q, k, v, causal=False, scale=None, block_q=64, block_k=64) -> (o, lse) (notebook 05)."""
    tiles = {"block_q": 4, "block_k": 4}
    cases = [
        Case("N=16, tiles 4 x 4", _qkv(1, 2, 16, 16, 8, seed=21), tiles),
        Case("scores rising along the keys: the max changes in every tile", _rising(16, 8, seed=22),
             tiles),
        Case("N=13, tiles 4 x 3 (last tiles partial)", _qkv(1, 2, 13, 13, 8, seed=23),
             {"block_q": 4, "block_k": 3}),
        Case("cross-attention: N_q=5, N_kv=19, tiles 4 x 8", _qkv(2, 1, 5, 19, 8, seed=24),
             {"block_q": 4, "block_k": 8}),
        Case("causal, N=13, tiles 4 x 4", _qkv(1, 2, 13, 13, 8, seed=25), {"causal": True, **tiles}),
        Case("causal, N=16, D=8, tiles 8 x 8, scale=0.5", _qkv(1, 2, 16, 16, 8, seed=26),
             {"causal": True, "scale": 0.5, "block_q": 8, "block_k": 8}),
        Case("large scores (inputs x 10)", _qkv(1, 1, 12, 12, 8, seed=27, scale=10.0), tiles,
             hint="exp overflows: subtract the running max m_i inside the exp"),
        Case("float16 inputs", _qkv(1, 2, 10, 10, 8, seed=28, dtype=torch.float16), tiles),
    ]
    run_checker("flash_attention_forward", fn, cases, ref.flash_attention_forward,
                misconceptions(_flash_variant, {
                    "acc not rescaled": "acc not rescaled when the running max changes: multiply acc "
                                        "by exp(m_old - m_new) before adding p @ v",
                    "l not rescaled": "l_i not rescaled when the running max changes: "
                                      "l_i = exp(m_old - m_new) * l_i + rowsum(p)",
                    "nothing rescaled": "neither acc nor l_i is rescaled when the running max changes: "
                                        "multiply both by exp(m_old - m_new)",
                    "not divided": "o is the accumulator divided by the final l_i: o = acc / l_i",
                    "lse without max": "lse = m_i + log(l_i): l_i was summed relative to the max, "
                                       "so add m_i back",
                    "diagonal tile skipped": "causal: the key tile on the diagonal is needed too; stop "
                                             "after the tile that holds the query block's last row",
                    **_COMMON, **_CAUSAL,
                }))


# ------------------------------------------------- Triton forward kernel (notebook 06)

LN2 = 0.6931471805599453
_TRITON_BLOCKS = (16, 32, 64, 128)  # key (and query) block sizes a student's kernel may use


class _Expected:
    """The float64 reference (o, lse) of a case, with the plain same-dtype PyTorch output for fp16."""

    def __init__(self, q, k, v, causal=False, scale=None):
        o64, lse64 = ref.flash_attention_forward(q.double(), k.double(), v.double(), causal, scale)
        self.dtype = q.dtype
        self.o, self.lse = o64, lse64
        self.baseline = ref.naive_attention(q, k, v, causal, scale) if q.dtype != torch.float32 \
            else None


def _compare_triton(out, expected) -> None:
    """(o, lse) against the float64 reference (fp16: the low-precision rule), or against a mutant's output."""
    if not isinstance(expected, _Expected):
        compare_outputs(out, expected)
        return
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"returned {describe(out)}, expected a tuple (o, lse)")
    o, lse = out
    for what, x, dtype in (("o", o, expected.dtype), ("lse", lse, torch.float32)):
        if not isinstance(x, torch.Tensor):
            raise AssertionError(f"{what}: returned {type(x).__name__}, expected a torch.Tensor")
        if x.dtype != dtype:
            raise AssertionError(f"{what}: dtype {x.dtype}, expected {dtype}")
    assert_close(o, expected.o, dtype=expected.dtype, baseline=expected.baseline, what="o")
    assert_close(lse, expected.lse, dtype=expected.dtype, what="lse")


def _triton_variant(q, k, v, causal=False, scale=None, *, mistake, block_m=None, block_n=None):
    """What a Triton forward kernel with one deliberate mistake returns, in float64: (o, lse).

    ``block_n`` is the kernel's key tile (it matters when the state is not rescaled, or padded
    keys are not masked), ``block_m`` its query block (a causal kernel never visits the key
    tile after a query block's diagonal).
    """
    D = q.shape[-1]
    s_ = 1.0 / math.sqrt(D) if scale is None else scale
    s_ = {"no scale": 1.0, "scale ignored": 1.0 / math.sqrt(D), "exp2 without log2e": s_ * LN2}.get(
        mistake, s_)
    dtype = q.dtype
    q, k, v = q.double(), k.double(), v.double()
    n_q, n_kv = q.shape[2], k.shape[2]
    if mistake == "keys padded with 0":  # masked loads give k = v = 0, their scores 0 are kept
        pad = -n_kv % block_n
        k, v = (torch.cat([x, x.new_zeros(*x.shape[:2], pad, D)], 2) for x in (k, v))
        n_kv += pad
    s = (q @ k.transpose(-2, -1)) * s_  # (B, H, N_q, N_kv)
    if causal:
        i, j = torch.arange(n_q)[:, None], torch.arange(n_kv)[None, :]
        block_end = (i // (block_m or n_q) + 1) * (block_m or n_q)  # keys a causal program reaches
        hidden = {"diagonal masked": j >= i, "one key too many": (j > i + 1) | (j >= block_end),
                  }.get(mistake, j > i)
        s = s.masked_fill(hidden, float("-inf"))
    m_i = torch.full(s.shape[:3], float("-inf"), dtype=torch.float64)
    l_i = torch.zeros(s.shape[:3], dtype=torch.float64)
    acc = torch.zeros(*s.shape[:3], D, dtype=torch.float64)
    step = block_n or n_kv
    for j0 in range(0, n_kv, step):
        s_j = s[..., j0:j0 + step]
        m_new = torch.maximum(m_i, s_j.amax(-1))
        p = torch.exp(s_j - m_new[..., None])
        alpha = torch.exp(m_i - m_new)
        l_i = (l_i if mistake == "l not rescaled" else l_i * alpha) + p.sum(-1)
        acc = (acc if mistake == "acc not rescaled" else acc * alpha[..., None]) + p @ v[:, :, j0:j0 + step]
        m_i = m_new
    o = acc if mistake == "not divided" else acc / l_i[..., None]
    lse = torch.log(l_i) if mistake == "lse without max" else m_i + torch.log(l_i)
    if mistake == "lse in log2 units":
        lse = lse / LN2
    return o.to(dtype), lse.float()


def _triton_mutants() -> list[Misconception]:
    def m(mistake, hint, **blocks):
        return Misconception(hint, lambda *a, **kw: _triton_variant(*a, mistake=mistake, **blocks, **kw))

    def tiled(mistake, hint, key):  # the mistake's output depends on the block size `key`
        return [m(mistake, hint, **{key: b}) for b in _TRITON_BLOCKS]
    return [
        *tiled("acc not rescaled", "acc not rescaled when the running max changes: multiply acc by "
               "alpha = exp2(m_i - m_new) before adding tl.dot(p, v)", "block_n"),
        *tiled("l not rescaled", "l_i not rescaled when the running max changes: "
               "l_i = l_i * alpha + tl.sum(p, 1) with alpha = exp2(m_i - m_new)", "block_n"),
        m("not divided", "o is the accumulator divided by the final l_i: o = acc / l_i[:, None]"),
        m("lse without max", "lse = m_i + log(l_i): l_i was summed relative to the running max, so "
          "add m_i back (with exp2: lse = (m_i + tl.log2(l_i)) * ln(2))"),
        m("lse in log2 units", "lse is still in log2 units: with exp2, m_i and tl.log2(l_i) are base-2 "
          "logarithms; return (m_i + tl.log2(l_i)) * ln(2), ln(2) = 0.6931..."),
        m("diagonal masked", "causal mask off by one: query i must see key i itself (keep the "
          "scores where offs_m[:, None] >= offs_n[None, :])"),
        m("one key too many", "causal mask off by one: query i must not see key i + 1 (keep only "
          "offs_n[None, :] <= offs_m[:, None])"),
        *tiled("one key too many", "causal mask off by one: query i must not see key i + 1 (keep "
               "only offs_n[None, :] <= offs_m[:, None])", "block_m"),
        m("no scale", "scores must be scaled by `scale` (1/sqrt(D) by default) before the softmax: "
          "with exp2, multiply q kᵀ by scale * log2(e)"),
        m("scale ignored", _SCALE_IGNORED),
        m("exp2 without log2e", "tl.exp2(x) is 2**x, not e**x: multiply the scores by log2(e) = "
          "1.4427 as well (qk_scale = scale * log2(e)) before tl.exp2, or use tl.exp"),
        *tiled("keys padded with 0", "keys past N_kv must score -inf: mask the K/V loads "
               "(offs_n < n_kv) and set those scores to -inf with tl.where; a padded key with "
               "score 0 adds exp(0 - m_i) to l_i", "block_n"),
    ]


def flash_attention_forward_triton(fn) -> None:
    """Check a Triton FlashAttention forward via its host wrapper fn(q, k, v, causal=False, scale=None) -> (o, lse).

    Small cases for the interpreter: N = 1, 17, 40 (not multiples of any block), one longer
    sequence whose scores rise along the keys so the running max changes in every key tile
    (N = 130 > 128, the largest block), cross-attention, causal, a given scale, fp16.
    Introduced in notebook 06.
    """
    cases = [
        Case("B=1, H=2, N=17, D=16", _qkv(1, 2, 17, 17, 16, seed=61)),
        Case("one query and one key: N=1, D=16", _qkv(1, 1, 1, 1, 16, seed=62)),
        Case("B=2, H=1, N=40, D=32", _qkv(2, 1, 40, 40, 32, seed=63)),
        Case("scores rising along the keys: N=130, D=16 (the max changes in every key tile)",
             tuple(x[:, :1] for x in _rising(130, 16, seed=64))),
        Case("cross-attention: N_q=17, N_kv=40, D=16", _qkv(1, 2, 17, 40, 16, seed=65)),
        Case("causal, B=2, H=1, N=40, D=32", _qkv(2, 1, 40, 40, 32, seed=66), {"causal": True}),
        Case("causal, N=17, D=16, scale=0.5", _qkv(1, 2, 17, 17, 16, seed=67),
             {"causal": True, "scale": 0.5}),
        Case("float16, causal, N=40, D=16", _qkv(1, 2, 40, 40, 16, seed=68, dtype=torch.float16),
             {"causal": True}),
    ]
    run_checker("flash_attention_forward_triton", on_course_device(fn), cases, _Expected, _triton_mutants(),
                compare=_compare_triton)
