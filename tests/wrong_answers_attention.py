"""Wrong answers to the attention exercises (notebooks 04-07), written as a student would, without
reading labkit's checkers. Each is a full answer to one exercise with one realistic mistake; the
checker must reject it with a hint that names that mistake (``names``).

The Triton ones copy the notebook's scaffold and change only the student's part: the inner loop of
the forward kernel (notebook 06), and the loop of the dK/dV kernel (notebook 07; the dQ kernel and
the preprocess stay as given, so dq is right and only dk/dv are wrong).
"""
from __future__ import annotations

import math

import torch

from labkit import device
from wrong_answer import WrongAnswer

LOG2E = 1.4426950408889634  # the notebook imports it from labkit.kernels.flash_forward

WRONG: list[WrongAnswer] = []


def wrong(exercise: str, mistake: str, *names: str):
    """Decorator: register the decorated function as a wrong answer to ``exercise``."""
    def register(fn):
        WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
        return fn
    return register


# Regexes shared by several answers (case-insensitive).
TRANSPOSE = r"transpos|kᵀ|k\.T\b|K\^T|reshape"
SCALE = r"scale|sqrt|√"
AXIS = r"axis|\bdim\b|dim=|dimension|column"
DIAGONAL = r"diagonal|off[- ]by[- ]one|j\s*(<=|≤)\s*i|i\s*(>=|≥)\s*j"
FLIPPED = r"flip|revers|invert|opposite|wrong (side|direction|way)|upside"
PAST_FUTURE = r"future|past|earlier|later|above|below|upper|lower|tril|triu"
DTYPE = r"dtype|data ?type"
IN_PLACE = r"in[- ]place|modif|mutat|overwr|chang\w* (the |your |its )?input"
LOCAL_INDEX = r"offset|global|absolute|tile[- ](local|relative)|local ind|\bi0\b|\bj0\b"
IGNORED = r"ignor|scale argument|scale parameter|given scale|`scale`|passed scale|scale (you )?passed"


# --------------------------------------------------------------------------------------------
# naive_attention (notebook 04): fn(q, k, v, causal=False, scale=None), q, k, v (B, H, N, D)
# --------------------------------------------------------------------------------------------

def _causal_future(n, device_):
    return torch.ones(n, n, dtype=torch.bool, device=device_).triu(diagonal=1)


@wrong("naive_attention", "K reshaped to (B, H, D, N) instead of transposed", TRANSPOSE)
def naive_k_reshaped(q, k, v, causal=False, scale=None):
    B, H, N, D = k.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    s = (q @ k.reshape(B, H, D, N)) * scale
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "no 1/sqrt(D) scaling of the scores", SCALE)
def naive_no_scale(q, k, v, causal=False, scale=None):
    s = q @ k.transpose(-2, -1)
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "scores scaled by 1/D instead of 1/sqrt(D)", r"sqrt|√|1/D\b|scale")
def naive_scale_one_over_d(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / q.shape[-1]
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "the scale argument is ignored: always 1/sqrt(D)", IGNORED)
def naive_scale_ignored(q, k, v, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "softmax over the query axis (dim=-2) instead of the keys", AXIS)
def naive_softmax_wrong_axis(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-2) @ v


@wrong("naive_attention", "causal mask also hides the diagonal (triu(0): j >= i masked)", DIAGONAL)
def naive_mask_hides_diagonal(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu()
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "causal mask flipped: hides the past (tril) instead of the future",
       FLIPPED, PAST_FUTURE)
def naive_mask_flipped(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        n = q.shape[2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(diagonal=-1)
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "causal=True is ignored: no mask at all", r"mask|ignor")
def naive_causal_ignored(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "masked scores set to 0 instead of -inf, so future keys still count",
       r"-inf|−inf|-∞|−∞|infinit", r"still (count|contribut|attend)|leak")
def naive_mask_with_zero(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), 0.0)
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "causal mask applied to P after the softmax, rows not renormalised",
       r"after (the )?softmax|before (the )?softmax|renormali|sum to (1|one)")
def naive_mask_after_softmax(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    p = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    if causal:
        p = p.masked_fill(_causal_future(q.shape[2], q.device), 0.0)
    return p @ v


@wrong("naive_attention", "computes in float32 and returns float32 for float16 inputs", DTYPE)
def naive_wrong_dtype(q, k, v, causal=False, scale=None):
    q, k, v = q.float(), k.float(), v.float()  # more accurate!
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


@wrong("naive_attention", "scales q in place (q *= scale), changing the caller's tensor", IN_PLACE)
def naive_scales_q_in_place(q, k, v, causal=False, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    q *= scale  # saves a multiply on the big score matrix
    s = q @ k.transpose(-2, -1)
    if causal:
        s = s.masked_fill(_causal_future(q.shape[2], q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# --------------------------------------------------------------------------------------------
# tiled_attention (notebook 05): fn(q, k, v, block_q=64, block_k=64, scale=None)
# --------------------------------------------------------------------------------------------

@wrong("tiled_attention", "each K tile reshaped to (B, H, D, T_k) instead of transposed", TRANSPOSE)
def tiled_k_reshaped(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.reshape(B, H, D, k_j.shape[2])) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


@wrong("tiled_attention", "softmax taken per key tile instead of over the whole score row",
       r"per[- ]tile|each tile|every tile|across (the )?tiles|all (the )?keys",
       r"whole row|full row|entire row|row block")
def tiled_softmax_per_tile(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = torch.softmax((q_i @ k_j.transpose(-2, -1)) * scale, dim=-1)
        o[:, :, i0:i0 + block_q] = s_i @ v
    return o.to(dtype)


@wrong("tiled_attention", "last partial key tile dropped when N_kv is not a multiple of block_k",
       r"partial|last (key )?tile|remainder|leftover|not (a )?multiple|divisib|ragged|tail")
def tiled_drops_last_key_tile(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    n_tiles = max(n_kv // block_k, 1)
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.full((B, H, q_i.shape[2], n_kv), -math.inf, dtype=q.dtype, device=q.device)
        for t in range(n_tiles):
            j0 = t * block_k
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


@wrong("tiled_attention", "last partial query tile dropped when N_q is not a multiple of block_q",
       r"partial|last (query )?tile|remainder|leftover|not (a )?multiple|divisib|ragged|tail")
def tiled_drops_last_query_tile(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.zeros_like(q)
    for i0 in range(0, n_q - block_q + 1, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            k_j = k[:, :, j0:j0 + block_k]
            s_i[..., j0:j0 + block_k] = (q_i @ k_j.transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


@wrong("tiled_attention", "no 1/sqrt(D) scaling of the scores", SCALE)
def tiled_no_scale(q, k, v, block_q=64, block_k=64, scale=None):
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


@wrong("tiled_attention", "the scale argument is ignored: always 1/sqrt(D)", IGNORED)
def tiled_scale_ignored(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


@wrong("tiled_attention", "softmax over the query axis of the row block (dim=-2)", AXIS)
def tiled_softmax_wrong_axis(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-2) @ v
    return o.to(dtype)


@wrong("tiled_attention", "returns the float32 accumulator for float16 inputs (no .to(dtype))", DTYPE)
def tiled_wrong_dtype(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = (q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)) * scale
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o


@wrong("tiled_attention", "q *= scale after .to(float32), which for float32 input is the caller's q",
       IN_PLACE)
def tiled_scales_q_in_place(q, k, v, block_q=64, block_k=64, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    q *= scale  # scale once, not per tile
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(B, H, q_i.shape[2], n_kv, dtype=q.dtype, device=q.device)
        for j0 in range(0, n_kv, block_k):
            s_i[..., j0:j0 + block_k] = q_i @ k[:, :, j0:j0 + block_k].transpose(-2, -1)
        o[:, :, i0:i0 + block_q] = torch.softmax(s_i, dim=-1) @ v
    return o.to(dtype)


# --------------------------------------------------------------------------------------------
# flash_attention_forward (notebook 05): fn(q, k, v, causal=False, scale=None, block_q=64,
# block_k=64) -> (o, lse). The scaffold around the tile update is the notebook's; ``_flash``
# runs it with the student's tile update ``step`` and final step ``finish``.
# --------------------------------------------------------------------------------------------

def _flash(q, k, v, causal, scale, block_q, block_k, step, finish, out_dtype=True):
    """The notebook's scaffold; step(...) -> (m_i, l_i, acc) is the student's loop body and
    finish(acc, l_i, m_i) -> (o_tile, lse_tile) the student's lines after the loop."""
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
            m_i, l_i, acc = step(q_i, k_j, v_j, rows, j0, m_i, l_i, acc, scale, causal)
        o[:, :, i0:i0 + block_q], lse[:, :, i0:i0 + block_q] = finish(acc, l_i, m_i)
    return (o.to(dtype) if out_dtype else o), lse


def _scores(q_i, k_j, rows, j0, scale, causal):
    s = (q_i @ k_j.transpose(-2, -1)) * scale
    if causal:
        cols = torch.arange(j0, j0 + k_j.shape[2], device=q_i.device)
        s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
    return s


def _good_step(s, v_j, m_i, l_i, acc):
    m_new = torch.maximum(m_i, s.amax(dim=-1))
    p = torch.exp(s - m_new[..., None])
    alpha = torch.exp(m_i - m_new)
    return m_new, l_i * alpha + p.sum(dim=-1), acc * alpha[..., None] + p @ v_j


def _good_finish(acc, l_i, m_i):
    return acc / l_i[..., None], m_i + torch.log(l_i)


def _flash_with_scores(score_fn):
    """A forward whose only mistake is in how the score tile s is built."""
    def step(q_i, k_j, v_j, rows, j0, m_i, l_i, acc, scale, causal):
        return _good_step(score_fn(q_i, k_j, rows, j0, scale, causal), v_j, m_i, l_i, acc)
    return step


@wrong("flash_attention_forward", "accumulator acc not rescaled by exp(m_old - m_new)",
       r"\bacc\b|accumulat")
def flash_acc_not_rescaled(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def step(q_i, k_j, v_j, rows, j0, m_i, l_i, acc, scale, causal):
        s = _scores(q_i, k_j, rows, j0, scale, causal)
        m_new = torch.maximum(m_i, s.amax(dim=-1))
        p = torch.exp(s - m_new[..., None])
        alpha = torch.exp(m_i - m_new)
        l_i = l_i * alpha + p.sum(dim=-1)
        acc = acc + p @ v_j
        return m_new, l_i, acc
    return _flash(q, k, v, causal, scale, block_q, block_k, step, _good_finish)


@wrong("flash_attention_forward", "running sum l not rescaled by exp(m_old - m_new)",
       r"\bl_i\b|\bl\b|ℓ|running sum|denominator|normali[sz]\w* (sum|constant)|row sum")
def flash_l_not_rescaled(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def step(q_i, k_j, v_j, rows, j0, m_i, l_i, acc, scale, causal):
        s = _scores(q_i, k_j, rows, j0, scale, causal)
        m_new = torch.maximum(m_i, s.amax(dim=-1))
        p = torch.exp(s - m_new[..., None])
        alpha = torch.exp(m_i - m_new)
        l_i = l_i + p.sum(dim=-1)
        acc = acc * alpha[..., None] + p @ v_j
        return m_new, l_i, acc
    return _flash(q, k, v, causal, scale, block_q, block_k, step, _good_finish)


@wrong("flash_attention_forward", "P of a tile taken relative to the tile's own max, not the running max",
       r"running max|tile'?s? (own )?max|max of (this|the|each) tile|m_new|new max|global max")
def flash_tile_max(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def step(q_i, k_j, v_j, rows, j0, m_i, l_i, acc, scale, causal):
        s = _scores(q_i, k_j, rows, j0, scale, causal)
        m_tile = s.amax(dim=-1)
        p = torch.exp(s - m_tile[..., None])  # stable within the tile
        m_new = torch.maximum(m_i, m_tile)
        alpha = torch.exp(m_i - m_new)
        l_i = l_i * alpha + p.sum(dim=-1)
        acc = acc * alpha[..., None] + p @ v_j
        return m_new, l_i, acc
    return _flash(q, k, v, causal, scale, block_q, block_k, step, _good_finish)


@wrong("flash_attention_forward", "lse = log(l) without adding the running max m",
       r"running max|row max|\bm_i\b|\bm \+|m_i \+|(add|plus|without|missing)\w* (the )?(row |running )?max")
def flash_lse_without_max(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def finish(acc, l_i, m_i):
        return acc / l_i[..., None], torch.log(l_i)
    return _flash(q, k, v, causal, scale, block_q, block_k,
                  _flash_with_scores(_scores), finish)


@wrong("flash_attention_forward", "o = acc, not divided by the running sum l",
       r"divid|normali[sz]|/ ?ℓ|/ ?l_i|/ ?l\b|\bl_i\b")
def flash_o_not_divided(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def finish(acc, l_i, m_i):
        return acc, m_i + torch.log(l_i)
    return _flash(q, k, v, causal, scale, block_q, block_k,
                  _flash_with_scores(_scores), finish)


@wrong("flash_attention_forward", "K tile reshaped to (B, H, D, T_k) instead of transposed",
       TRANSPOSE)
def flash_k_reshaped(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def scores(q_i, k_j, rows, j0, scale, causal):
        B, H, T_k, D = k_j.shape
        s = (q_i @ k_j.reshape(B, H, D, T_k)) * scale
        if causal:
            cols = torch.arange(j0, j0 + T_k, device=q_i.device)
            s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
        return s
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(scores), _good_finish)


@wrong("flash_attention_forward", "no scaling of the scores", SCALE)
def flash_no_scale(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def scores(q_i, k_j, rows, j0, scale, causal):
        return _scores(q_i, k_j, rows, j0, 1.0, causal)
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(scores), _good_finish)


@wrong("flash_attention_forward", "the scale argument is ignored: always 1/sqrt(D)", IGNORED)
def flash_scale_ignored(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def scores(q_i, k_j, rows, j0, scale, causal):
        return _scores(q_i, k_j, rows, j0, 1.0 / math.sqrt(q_i.shape[-1]), causal)
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(scores), _good_finish)


@wrong("flash_attention_forward", "causal mask built per tile with triu(1) and no tile offsets",
       LOCAL_INDEX)
def flash_mask_tile_local(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def scores(q_i, k_j, rows, j0, scale, causal):
        s = (q_i @ k_j.transpose(-2, -1)) * scale
        if causal:
            t_q, t_k = q_i.shape[2], k_j.shape[2]
            future = torch.ones(t_q, t_k, dtype=torch.bool, device=q_i.device).triu(1)
            s = s.masked_fill(future, -math.inf)
        return s
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(scores), _good_finish)


@wrong("flash_attention_forward", "causal mask hides the diagonal (cols >= rows)", DIAGONAL)
def flash_mask_hides_diagonal(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def scores(q_i, k_j, rows, j0, scale, causal):
        s = (q_i @ k_j.transpose(-2, -1)) * scale
        if causal:
            cols = torch.arange(j0, j0 + k_j.shape[2], device=q_i.device)
            s = s.masked_fill(cols[None, :] >= rows[:, None], -math.inf)
        return s
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(scores), _good_finish)


@wrong("flash_attention_forward", "causal mask flipped: masks keys before the query (cols < rows)",
       FLIPPED, PAST_FUTURE)
def flash_mask_flipped(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    def scores(q_i, k_j, rows, j0, scale, causal):
        s = (q_i @ k_j.transpose(-2, -1)) * scale
        if causal:
            cols = torch.arange(j0, j0 + k_j.shape[2], device=q_i.device)
            s = s.masked_fill(cols[None, :] < rows[:, None], -math.inf)
        return s
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(scores), _good_finish)


@wrong("flash_attention_forward", "returns o in float32 for float16 inputs (dropped .to(dtype))",
       DTYPE)
def flash_wrong_dtype(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    return _flash(q, k, v, causal, scale, block_q, block_k, _flash_with_scores(_scores),
                  _good_finish, out_dtype=False)


@wrong("flash_attention_forward", "q_i *= scale on a view of the (float32) input q", IN_PLACE)
def flash_scales_q_in_place(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    dtype = q.dtype
    q, k, v = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in (q, k, v))
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        q_i *= scale  # scale the query tile once instead of every score tile
        rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=q.dtype, device=q.device)
        l_i = torch.zeros_like(m_i)
        acc = torch.zeros_like(q_i)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv
        for j0 in range(0, j_end, block_k):
            k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
            s = _scores(q_i, k_j, rows, j0, 1.0, causal)
            m_i, l_i, acc = _good_step(s, v_j, m_i, l_i, acc)
        o[:, :, i0:i0 + block_q] = acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = m_i + torch.log(l_i)
    return o.to(dtype), lse


# --------------------------------------------------------------------------------------------
# flash_attention_backward (notebook 07): fn(do, q, k, v, o, lse, causal=False, scale=None,
# block_q=64, block_k=64) -> (dq, dk, dv). Written out in full: some mistakes touch the
# scaffold's accumulation lines.
# --------------------------------------------------------------------------------------------

def _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, *, p_fn=None, ds_fn=None,
              dv_fn=None, dk_scale=True, dq_scale=True, dq_accumulate=True, remask=True,
              out_dtype=True):
    """The notebook's scaffold, with hooks for the student's lines."""
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
            if causal and remask:
                rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            p = p_fn(s, lse_i) if p_fn else torch.exp(s - lse_i[..., None])
            dp = do_i @ v_j.transpose(-2, -1)
            ds = ds_fn(p, dp, d_i) if ds_fn else p * (dp - d_i[..., None])
            dv[:, :, j0:j0 + block_k] += dv_fn(p, do_i) if dv_fn else p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * (scale if dk_scale else 1)
            dq_tile = ds @ k_j * (scale if dq_scale else 1)
            if dq_accumulate:
                dq[:, :, i0:i0 + block_q] += dq_tile
            else:
                dq[:, :, i0:i0 + block_q] = dq_tile
    if out_dtype:
        return dq.to(dtype), dk.to(dtype), dv.to(dtype)
    return dq, dk, dv


NAMES_D = r"delta|\bD_i\b|rowsum|row[- ]sum|dO ?∘ ?O|do ?\* ?o|dP ?[-−] ?D\b|\bD term|\bD = "


@wrong("flash_attention_backward", "no D term: dS = P ∘ dP instead of P ∘ (dP − D)", NAMES_D)
def bwd_no_d_term(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k,
                     ds_fn=lambda p, dp, d_i: p * dp)


@wrong("flash_attention_backward", "D recomputed per tile as rowsum(P ∘ dP) over this key tile only",
       r"per[- ]tile|each tile|one tile|single tile|this tile|whole row|full row|entire row|all (the )?keys",
       r"rowsum\(dO|dO ?∘ ?O|do ?\* ?o")
def bwd_d_per_tile(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    def ds_fn(p, dp, d_i):
        d_tile = (p * dp).sum(-1)  # D = rowsum(P ∘ dP)
        return p * (dp - d_tile[..., None])
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, ds_fn=ds_fn)


@wrong("flash_attention_backward", "dq missing the softmax scale factor", SCALE)
def bwd_dq_no_scale(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, dq_scale=False)


@wrong("flash_attention_backward", "dk missing the softmax scale factor", SCALE)
def bwd_dk_no_scale(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, dk_scale=False)


@wrong("flash_attention_backward", "P rebuilt as exp(S) without subtracting the saved lse",
       r"\blse\b|logsumexp|log-sum-exp")
def bwd_p_without_lse(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k,
                     p_fn=lambda s, lse_i: torch.exp(s))


@wrong("flash_attention_backward", "P rebuilt with a softmax over the tile instead of from lse",
       r"\blse\b|logsumexp|log-sum-exp|per[- ]tile|softmax over (the|one|this|a) tile")
def bwd_p_tile_softmax(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k,
                     p_fn=lambda s, lse_i: torch.softmax(s, dim=-1))


@wrong("flash_attention_backward", "dV = P dO instead of Pᵀ dO", r"transpos|Pᵀ|P\.T\b|P\^T")
def bwd_dv_not_transposed(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k,
                     dv_fn=lambda p, do_i: p @ do_i)


@wrong("flash_attention_backward", "causal mask dropped in the backward: S recomputed unmasked",
       r"mask", r"future|above the diagonal")
def bwd_no_causal_mask(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, remask=False)


@wrong("flash_attention_backward", "dq[i] overwritten by each key tile instead of accumulated",
       r"accumul|overwr|\+=|sum (over|across)|add up|summed")
def bwd_dq_overwritten(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, dq_accumulate=False)


@wrong("flash_attention_backward", "sign of dS flipped: P ∘ (D − dP)", r"sign|negat|opposite|minus")
def bwd_ds_sign_flipped(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k,
                     ds_fn=lambda p, dp, d_i: p * (d_i[..., None] - dp))


@wrong("flash_attention_backward", "returns float32 gradients for float16 inputs", DTYPE)
def bwd_wrong_dtype(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _backward(do, q, k, v, o, lse, causal, scale, block_q, block_k, out_dtype=False)


# --------------------------------------------------------------------------------------------
# Triton (notebooks 06 and 07): each wrong kernel is the notebook's scaffold with only the
# student's part changed.
# --------------------------------------------------------------------------------------------

NAMES_EXP2 = r"exp2|log2|log₂|LOG2E|base[- ]?2|natural|\bunits\b|\bln\b"

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    # ---- forward (notebook 06): the scaffold's head and tail around the student's loop ------

    @triton.jit
    def _fwd_natural_exp_kernel(
            Q, K, V, O, LSE,
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
            # student: tl.exp, as in the PyTorch version, on the log2(e)-scaled scores
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

    @triton.jit
    def _fwd_mixed_exp_kernel(
            Q, K, V, O, LSE,
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
            # student: exp2 for P but the rescale factor still with tl.exp
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
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        o = acc / l_i[:, None]
        tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
                 + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
        lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
        tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)

    @triton.jit
    def _fwd_unscaled_exp2_kernel(
            Q, K, V, O, LSE,
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
            # student: "qk_scale is the 1/sqrt(D) scale", so divides log2(e) back out, then exp2
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                         mask=offs_n[None, :] < n_kv, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                        mask=offs_n[:, None] < n_kv, other=0.0)
            s = tl.dot(q, kt, input_precision=PRECISION) * (qk_scale * 0.6931471805599453)
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

    @triton.jit
    def _fwd_no_key_bounds_kernel(
            Q, K, V, O, LSE,
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
            # student: loads are masked (other=0), so padded keys "don't matter"; only causal masked
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

    @triton.jit
    def _fwd_strict_causal_kernel(
            Q, K, V, O, LSE,
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
            # student: causal keeps keys strictly before the query (<), not the diagonal
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

    @triton.jit
    def _fwd_acc_not_rescaled_kernel(
            Q, K, V, O, LSE,
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
            # student: rescales l_i but adds the new P V to acc without the correction factor
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
            acc += tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        o = acc / l_i[:, None]
        tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
                 + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
        lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
        tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)

    @triton.jit
    def _fwd_m_not_updated_kernel(
            Q, K, V, O, LSE,
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
            # student: forgot m_i = m_new at the end of the loop body
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
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        o = acc / l_i[:, None]
        tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om
                 + offs_d[None, :] * stride_od, o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
        lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
        tl.store(LSE + off_bh * n_q + offs_m, lse, mask=offs_m < n_q)


def _forward_wrapper(kernel_name: str):
    """The notebook's flash_attention_forward_triton, launching the named (wrong) kernel."""
    def flash_attention_forward_triton(q, k, v, causal=False, scale=None):
        kernel = globals()[kernel_name]
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


for _kernel, _mistake, _names in [
        ("_fwd_natural_exp_kernel",
         "tl.exp on the log2(e)-scaled scores (natural exp mixed with the exp2 convention)",
         (NAMES_EXP2,)),
        ("_fwd_mixed_exp_kernel",
         "P with exp2 but the rescale factor alpha with tl.exp (mixed bases)",
         (NAMES_EXP2, r"alpha|rescal|correction")),
        ("_fwd_unscaled_exp2_kernel",
         "exp2 on scores with log2(e) divided back out of qk_scale",
         (NAMES_EXP2,)),
        ("_fwd_no_key_bounds_kernel",
         "padded keys past n_kv not set to -inf (score 0 still counts in l)",
         (r"pad|n_kv|out[- ]of[- ](range|bounds)|beyond|bound|past the end|not (a )?multiple",
          r"-inf|−inf|-∞")),
        ("_fwd_strict_causal_kernel",
         "causal diagonal off by one: keeps offs_n < offs_m, hiding the diagonal",
         (DIAGONAL,)),
        ("_fwd_acc_not_rescaled_kernel",
         "acc not rescaled by alpha when the max grows",
         (r"\bacc\b|accumulat",)),
        ("_fwd_m_not_updated_kernel",
         "running max m_i never updated (m_i = m_new missing)",
         (r"\bm_i\b|running max|m_new",)),
]:
    WRONG.append(WrongAnswer("flash_attention_forward_triton", _mistake, _names,
                             _forward_wrapper(_kernel)))


if device.HAS_TRITON:
    # ---- backward (notebook 07): the given dQ kernel, unchanged ------------------------------

    @triton.jit
    def _given_dq_kernel(
            Q, K, V, DO, LSE, DELTA, DQ, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
            H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
            CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
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

    # ---- the student's dK/dV kernels: scaffold head and tail, wrong loop ---------------------

    @triton.jit
    def _dkdv_no_delta_kernel(
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
            # student: dS = P ∘ dP, DELTA never loaded
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

    @triton.jit
    def _dkdv_no_causal_mask_kernel(
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
            # student: "lo already skips the blocks above the diagonal", so no causal mask here
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

    @triton.jit
    def _dkdv_exp2_kernel(
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
            # student: exp2 "as in notebook 06", but scale and lse here are natural units
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
            p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
        tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
        tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)

    @triton.jit
    def _dkdv_p_not_transposed_kernel(
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
            # student: dV += P dO (BLOCK_M == BLOCK_N, so the shapes fit)
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

    @triton.jit
    def _dkdv_ds_not_transposed_kernel(
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
            # student: dK += dS Q (copied from the dQ kernel's dS K, no transpose)
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
            dk += tl.dot(ds.to(q.dtype), q, input_precision=PRECISION)
        tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
        tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)

    @triton.jit
    def _dkdv_p_without_lse_kernel(
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
            # student: P = exp(S), LSE never loaded
            offs_m = start_m + tl.arange(0, BLOCK_M)
            q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
            q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
            do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
            delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None])
            p = tl.where(keep, tl.exp(s), 0.0)
            dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
        tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
        tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


def _backward_wrapper(dkdv_kernel_name: str):
    """The notebook's flash_attention_backward_triton, with the named (wrong) dK/dV kernel."""
    def flash_attention_backward_triton(do, q, k, v, o, lse, causal=False, scale=None):
        dkdv_kernel = globals()[dkdv_kernel_name]
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
        dkdv_kernel[(triton.cdiv(n_kv, BLOCK_N), B * H)](
            q, k, v, do, lse, delta, dk, dv, *args, **meta)
        _given_dq_kernel[(triton.cdiv(n_q, BLOCK_M), B * H)](
            q, k, v, do, lse, delta, dq, *args, **meta)
        return dq, dk, dv
    return flash_attention_backward_triton


for _kernel, _mistake, _names in [
        ("_dkdv_no_delta_kernel", "no delta term in dK: dS = P ∘ dP", (NAMES_D,)),
        ("_dkdv_no_causal_mask_kernel",
         "causal mask missing in the dK/dV loop (only the lo block skip)",
         (r"mask", r"future|above the diagonal")),
        ("_dkdv_exp2_kernel",
         "P rebuilt with exp2 although scale and lse are in natural units",
         (NAMES_EXP2,)),
        ("_dkdv_p_not_transposed_kernel", "dV += P dO instead of Pᵀ dO",
         (r"transpos|Pᵀ|P\.T\b|P\^T|tl\.trans",)),
        ("_dkdv_ds_not_transposed_kernel", "dK += dS Q instead of dSᵀ Q",
         (r"transpos|dSᵀ|dS\.T\b|dS\^T|tl\.trans",)),
        ("_dkdv_p_without_lse_kernel", "P = exp(S) without subtracting lse",
         (r"\blse\b|logsumexp|log-sum-exp",)),
]:
    WRONG.append(WrongAnswer("flash_attention_backward_triton", _mistake, _names,
                             _backward_wrapper(_kernel)))
