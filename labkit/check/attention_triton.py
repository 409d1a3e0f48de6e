"""Checker for Exercise 6.1 (notebook 06): the K/V loop of the Triton FlashAttention forward, probed in the scaffold's conventions.

The student writes only the loop body; the scaffold gives the host wrapper (BLOCK_M = 32,
BLOCK_N = 16, qk_scale = scale · log2 e) and the epilogue (o = acc / l_i,
lse = (m_i + log2 l_i) · ln 2). So the scores s are in log2 units, m_i is their running max and
l_i the sum of exp2(s - m_i); the probes name mistakes of the loop only.
"""
from __future__ import annotations

import hashlib
import math

import torch

from labkit import attention as ref
from labkit.check.attention import (attends, causal_pattern, causal_probes, exact_attention, first_difference,
                                    nonfinite, not_q_kt, qkv, rising, rows_not_one, scale_ratio, scale_wrong, tiers,
                                    weights, weights_probe, without_mask)
from labkit.check.attention_tiles import factor_rule, lse_rule, tile_pattern
from labkit.check.evidence import property_only
from labkit.check.kernel_runs import on_course_device
from labkit.check.core import Case, Checker, DtypeMismatch, Probe, checker, clone, describe, rng_seed
from labkit.check.tolerance import assert_close
from labkit.kernels.flash_forward import LOG2E

SCAFFOLD_BLOCKS = (32, 16)  # the wrapper's (BLOCK_M, BLOCK_N)


def _scaffold_blocks(p) -> tuple[int, int]:
    return SCAFFOLD_BLOCKS


class _Expected:
    """The float64 reference (o, lse) of a case, with the plain same-dtype PyTorch output for fp16."""

    def __init__(self, q, k, v, causal=False, scale=None):
        self.dtype = q.dtype
        _, _, self.o, self.lse = exact_attention(q, k, v, causal, scale)
        self.baseline = ref.naive_attention(q, k, v, causal, scale) if q.dtype != torch.float32 else None


def _compare(out, expected: _Expected) -> None:
    """(o, lse) against the float64 reference: o in the input dtype (fp16: the low-precision rule), lse float32."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"returned {describe(out)}, expected a tuple (o, lse)")
    for what, x, dtype in (("o", out[0], expected.dtype), ("lse", out[1], torch.float32)):
        if not isinstance(x, torch.Tensor):
            raise AssertionError(f"{what}: returned {type(x).__name__}, expected a torch.Tensor")
        if x.dtype != dtype:
            raise DtypeMismatch(f"{what}: dtype {x.dtype}, expected {dtype}")
    assert_close(out[0], expected.o, dtype=expected.dtype, baseline=expected.baseline, what="o")
    assert_close(out[1], expected.lse, dtype=expected.dtype, what="lse")


def _key(x) -> tuple:
    if isinstance(x, torch.Tensor):
        data = x.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if x.numel() else b""
        return (tuple(x.shape), x.stride(), str(x.dtype), hashlib.sha1(data).hexdigest())
    return (repr(x),)


def _once_per_input(fn):
    """fn run once per distinct input: several probes judge the same input (the interpreter is slow)."""
    seen: dict = {}

    def run(*args, **kwargs):
        key = tuple(_key(a) for a in args) + tuple((k, _key(v)) for k, v in sorted(kwargs.items()))
        if key not in seen:
            seen[key] = fn(*args, **kwargs)
        return clone(seen[key])
    return run


def _padded_keys_count(o, p):
    P = weights(o, p)
    sums = P.sum(-1)
    return rows_not_one(P) and bool(((sums < 1 - 1e-3) & (sums > 0)).all()) and \
        f"{rows_not_one(P)} over the {P.shape[1]} keys"


def _strided(n: int, D: int, seed: int):
    """q, k, v (2, 2, n, D) views with three different layouts, none with stride_b = H * stride_h: each must
    be read with its own strides, batch and head apart (off_bh * stride_h agrees only when that holds)."""
    g = torch.Generator().manual_seed(rng_seed(seed))
    q = torch.randn(2, n, 2, D, generator=g).transpose(1, 2)  # (B, N, H, D) read as (B, H, N, D)
    k = torch.randn(n, 2, 2, D, generator=g).permute(1, 2, 0, 3)  # sequence outermost
    v = torch.randn(2, 2, n, D, generator=g).transpose(0, 1)  # heads outermost
    return q, k, v


# ------------------------------------------------------------------------- hints

PADDED = ("keys past n_kv must score -inf: the masked loads give the last tile's padding k = 0, so its "
          "scores 0 still count in l_i; set s to -inf where offs_n >= n_kv with tl.where")
K_T = ("kt is K's tile transposed, (HEAD_DIM, BLOCK_N): load it at k_base + offs_n[None, :] * stride_kn + "
       "offs_d[:, None] * stride_kd, so that tl.dot(q, kt) is q kᵀ")
NATURAL_EXP = ("the scores s are in log2 units (qk_scale = scale · log2 e), so exponentiate with tl.exp2: "
               "tl.exp on them sharpens the softmax by log2 e = 1.4427")
LOG2E_LOST = ("tl.exp2(x) is 2**x: the scores must be in log2 units, s = tl.dot(q, kt) * qk_scale with the "
              "wrapper's qk_scale = scale · log2 e; yours lack the factor log2 e")
SCALE = "multiply the scores by qk_scale (the wrapper's scale · log2 e) and exponentiate with tl.exp2"
DIAG = ("causal mask off by one: query i must see key i itself (keep the scores where "
        "offs_n[None, :] <= offs_m[:, None])")
LOCAL = ("the causal mask uses tile-local indices: compare the global offs_n = start_n + tl.arange(0, BLOCK_N) "
         "with offs_m, and hide key j from query i exactly when j > i")
ONLY_LAST = ("only the last key tile counts: the state of earlier tiles is lost; set m_i = m_new at the end of "
             "each step (alpha = exp2(m_i - m_new) is 0 while m_i stays -inf) and carry l_i and acc")
NOT_DIVIDED = "o is the accumulator divided by the final running sum: o = acc / l_i[:, None]"
L_NOT_RESCALED = ("l_i not rescaled when the running max changes: l_i = l_i * alpha + tl.sum(p, 1) with "
                  "alpha = tl.exp2(m_i - m_new)")
ACC_NOT_RESCALED = ("acc not rescaled when the running max changes: acc = acc * alpha[:, None] + tl.dot(p, v) "
                    "with alpha = tl.exp2(m_i - m_new)")
TILE_MAX = ("p = tl.exp2(s - m_new[:, None]) with the running max m_new = tl.maximum(m_i, tl.max(s, 1)), not "
            "the tile's own max")
NOTHING_RESCALED = ("neither acc nor l_i is rescaled when the running max changes: multiply both by "
                    "alpha = tl.exp2(m_i - m_new)")
FIRST_ONLY = ("only the first key tile gets any weight: each step must load its own tile, offs_n = start_n + "
              "tl.arange(0, BLOCK_N), and the loop must run over all the tiles up to n_kv")
RESCALE = ("the key tiles' weights are off by a factor per tile, so the running-max bookkeeping is off: when "
           "the running max grows, acc and l_i must both be multiplied by alpha = tl.exp2(m_i - m_new), base 2 "
           "like p (the scores are in log2 units), and p = tl.exp2(s - m_new[:, None]) against the new max")
OVERFLOW = "exp2 overflows on large scores: subtract the running max in the exponent, p = tl.exp2(s - m_new[:, None])"
RUNNING_MAX = ("the running max must never decrease: m_new = tl.maximum(m_i, tl.max(s, 1)); with a tile's own "
               "max, alpha = exp2(m_i - m_new) overflows when a later tile's scores are far lower")
LSE = ("o is right but lse is not: the epilogue computes lse = (m_i + log2(l_i)) · ln 2, so m_i must be the "
       "running max of the log2-unit scores s and l_i the sum of exp2(s - m_i)")
ROWS_SEEN = ("with one-hot values (v = I) row i of o is query i's weights over the keys, and these rows do not sum "
             "to 1: either the weights are off (p, acc, l_i or the division by l_i) or V's tile is not loaded as it is, "
             "v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd")
CAUSAL = "causal: query i attends to keys 0..i only (keep offs_n[None, :] <= offs_m[:, None], the rest -inf)"


def _probes() -> list[Probe]:
    def padded(hint, violated, **kw):  # one key tile of 16 holding 7 keys: 9 padded keys
        return weights_probe("one-hot values, N_kv=7 (one padded key tile)", 5, 7, 16, hint, violated,
                             seed=60, **kw)

    q, k = tiers(8, 40, 64, 16, [1.0, 0.0, 2.0], seed=61)

    def tiled(hint, rule):  # the running max grows in key tiles 0 and 2 (of 16 keys), not in tile 1
        return weights_probe("one-hot values, tile maxima 1, 0, 2", 8, 40, 64, hint,
                             factor_rule(rule, _scaffold_blocks), seed=0, q=q, k=k)

    def causal(hint, violated):
        return weights_probe("causal, one-hot values", 40, 40, 64, hint, violated, seed=62, causal=True)

    def falling(label, levels, hint):
        fq, fk = tiers(8, 40, 16, 16, levels, seed=63)
        return Probe(label, (fq, fk, qkv(1, 1, 8, 40, 16, seed=64)[2]), {}, hint, nonfinite)
    return [
        padded(PADDED, _padded_keys_count),
        tiled(NOT_DIVIDED, "not divided"),
        padded(ROWS_SEEN, property_only(lambda o, p: rows_not_one(weights(o, p)))),
        padded(K_T, not_q_kt),
        padded(NATURAL_EXP, scale_ratio(LOG2E, "the scale is")),
        padded(LOG2E_LOST, scale_ratio(math.log(2), "the scale is")),
        padded(SCALE, scale_wrong),
        padded(SCALE, scale_wrong, scale=0.5),
        *causal_probes(40, 64, seed=62, blocks=_scaffold_blocks)[:5],
        causal(LOCAL, tile_pattern("local", _scaffold_blocks)),
        tiled(ONLY_LAST, "only the last tile"),
        tiled(L_NOT_RESCALED, "per-row factor"),
        tiled(ACC_NOT_RESCALED, "acc"),
        tiled(TILE_MAX, "tile max"),
        tiled(NOTHING_RESCALED, "both"),
        tiled(FIRST_ONLY, "first tile only"),
        tiled(RESCALE, "any"),
        without_mask(causal(CAUSAL, property_only(
            lambda o, p: first_difference(attends(o, p), causal_pattern(40, "j <= i"), weights(o, p))))),
        falling("large scores, rising by key tile", [60.0, 0.0, 120.0], OVERFLOW),
        falling("the max in the first key tile, the rest 100 lower", [0.0, -100.0, -100.0], RUNNING_MAX),
        padded(LSE, lse_rule("any")),
    ]


@checker
def flash_attention_forward_triton() -> Checker:
    """A Triton FlashAttention forward via its host wrapper fn(q, k, v, causal=False, scale=None) -> (o, lse) (notebook 06).

    o = softmax(scale · q kᵀ, causal mask) v in the input's dtype, lse (float32) = logsumexp of each query's scores
    any N: keys past N_kv in the last, padded key tile get no weight; N = 1 works
    the scores are q kᵀ (K loaded transposed), in log2 units (· qk_scale), exponentiated with exp2
    when the running max grows, acc and l_i are rescaled by alpha = exp2(m_i - m_new); p uses the running max
    causal=True hides exactly the keys j > i (global indices), also where a key tile is wholly masked for some rows
    large scores, and scores far below an earlier tile's max, give finite results
    each of q, k, v is read with its own strides
    """
    fq, fk = tiers(20, 40, 16, 16, [0.0, -100.0, -100.0], seed=69)
    return Checker(
        "flash_attention_forward_triton",
        cases=[
            Case("B=1, H=2, N=17, D=16", qkv(1, 2, 17, 17, 16, seed=61),
                 hint="o = softmax(scale · q kᵀ) v over the N_kv = 17 keys, in the input's dtype, and lse = the "
                      "logsumexp of each query's scaled scores"),
            Case("one query and one key: N=1, D=16", qkv(1, 1, 1, 1, 16, seed=62)),
            Case("B=2, H=1, N=40, D=32", qkv(2, 1, 40, 40, 32, seed=63)),
            Case("scores rising along the keys: N=40, D=16 (the max changes in every key tile)",
                 tuple(x[:, :1] for x in rising(40, 16, seed=64)), hint="the running max changes in every key tile"),
            Case("cross-attention: N_q=17, N_kv=40, D=16", qkv(1, 2, 17, 40, 16, seed=65)),
            Case("causal, B=2, H=1, N=40, D=32 (key tile 16..31 wholly masked for rows 0..15)",
                 qkv(2, 1, 40, 40, 32, seed=66), {"causal": True},
                 hint="causal: query i attends to keys 0..i; a wholly masked tile must leave a row unchanged"),
            Case("causal, N=17, D=16, scale=0.5", qkv(1, 2, 17, 17, 16, seed=67), {"causal": True, "scale": 0.5}),
            Case("the max in the first key tile, later scores 100 lower: N=40, D=16",
                 (fq, fk, qkv(1, 1, 20, 40, 16, seed=70)[2]),
                 hint="a later tile far below the running max must still give finite results"),
            Case("q, k, v strided views with three different layouts, B=2, H=2, N=17, D=16",
                 _strided(17, 16, seed=71),
                 hint="q, k and v have different strides here: read each with its own, batch and head apart "
                      "(off_b * stride_b + off_h * stride_h)"),
            Case("float16, causal, N=40, D=16", qkv(1, 2, 40, 40, 16, seed=68, dtype=torch.float16), {"causal": True}),
        ],
        reference=_Expected,
        probes=_probes(),
        compare=_compare,
        prepare=lambda fn: _once_per_input(on_course_device(fn)),
    )
