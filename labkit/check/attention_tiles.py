"""Checkers for the tiled attention exercises of notebook 05: the lab's tiled pseudo-code and the FlashAttention forward."""
from __future__ import annotations

import math

import torch

from labkit import attention as ref
from labkit.check.attention import (AXIS, CAUSAL, attends, causal_pattern, causal_probes, close, exact_attention,
                                    first_difference, input_probes, large_scores_probe, nonfinite, one_hot_values,
                                    output_of, qkv, reached, reference_weights, rising, rows_not_one, shown, spread,
                                    tiers, weights, weights_probe, without_mask)
from labkit.check.evidence import property_only, reads
from labkit.check.core import Case, Checker, Probe, checker

# ------------------------------------------------ observations on tiles (one-hot values)


def _blocks(p) -> tuple[int, int]:
    n_q, n_kv = p.args[0].shape[2], p.args[1].shape[2]
    return p.kwargs.get("block_q", n_q), p.kwargs.get("block_k", n_kv)


def _last_query_tile_missing(o, p):
    """The rows of the last partial query tile are wrong (not weights summing to 1) while all the others are right."""
    P = weights(o, p)
    n_q, (bq, _) = P.shape[0], _blocks(p)
    start = n_q // bq * bq
    ok = (P.sum(-1) - 1).abs() < 1e-3
    return 0 < start < n_q and close(P[:start], reference_weights(p)[:start]) and not ok[start:].any() and \
        f"rows {start}..{n_q - 1} of o (the last, partial query tile) are {shown(output_of(o)[start:, 0])}"


def _last_key_tile_missing(o, p):
    """The weights are those of the keys before the last partial key tile alone (the tile skipped), or of scores
    left at 0 for its keys (the tile never scored): each compared with the whole weight matrix."""
    P = weights(o, p)
    n_kv, (_, bk) = P.shape[1], _blocks(p)
    start = n_kv // bk * bk
    if not 0 < start < n_kv:
        return False
    s = _scores(p)
    skipped = torch.cat([torch.softmax(s[:, :start], -1), torch.zeros_like(s[:, start:])], -1)
    if close(P, skipped):
        return f"keys {start}..{n_kv - 1} (the last, partial key tile) get weight 0"
    unscored = torch.softmax(torch.cat([s[:, :start], torch.zeros_like(s[:, start:])], -1), -1)
    return close(P, unscored) and \
        f"keys {start}..{n_kv - 1} (the last, partial key tile) weigh as if their scores were 0, never computed"


def _softmax_per_key_tile(o, p):
    P = weights(o, p)
    _, bk = _blocks(p)
    tiles = torch.stack([P[:, j:j + bk].sum(-1) for j in range(0, P.shape[1], bk)], -1)
    return rows_not_one(P) and bool(((tiles - 1).abs() < 1e-3).all()) and \
        f"{rows_not_one(P)}; within each key tile the weights sum to 1"


def _softmax_over_query_tile(o, p):
    P = weights(o, p)
    bq, _ = _blocks(p)
    cols = torch.stack([P[i:i + bq].sum(0) for i in range(0, P.shape[0], bq)])
    return rows_not_one(P) and bool(((cols - 1).abs() < 1e-3).all()) and \
        f"{rows_not_one(P)}; each key's weights over a query tile sum to 1"


def _scores(p) -> torch.Tensor:
    """The probe's float64 scores S = scale · q kᵀ (N_q, N_kv), unmasked."""
    return exact_attention(p.args[0][0, 0], p.args[1][0, 0], scale=p.kwargs.get("scale"))[0]


def tile_factors(o, p, blocks=_blocks) -> torch.Tensor | None:
    """log(P / P_ref) per (query, key tile) where constant within each tile; -inf for a tile with no weight.

    None when the ratio varies inside a tile (then the mistake is not a factor per tile).
    """
    P, S = weights(o, p), _scores(p)
    P_ref = torch.softmax(S, -1)
    _, bk = blocks(p)
    out = torch.empty(P.shape[0], -(-P.shape[1] // bk), dtype=torch.float64)
    for t, j in enumerate(range(0, P.shape[1], bk)):
        r = P[:, j:j + bk] / P_ref[:, j:j + bk]
        if not torch.isfinite(r).all():
            return None
        for i in range(P.shape[0]):
            if (r[i] == 0).all():
                out[i, t] = -math.inf
            elif (r[i] <= 0).any() or (r[i].log().amax() - r[i].log().amin()) > 1e-3:
                return None
            else:
                out[i, t] = r[i].log().mean()
    return out


def _maxima(p, blocks=_blocks) -> tuple[torch.Tensor, torch.Tensor]:
    """Each key tile's own max and the running max after it, per query (natural units)."""
    S = _scores(p)
    _, bk = blocks(p)
    own = torch.stack([S[:, j:j + bk].amax(-1) for j in range(0, S.shape[1], bk)], -1)
    return own, own.cummax(-1).values


def factor_rule(rule: str, blocks=_blocks):
    """Violated when the per-tile log-factors follow ``rule``: a formula in the tile maxima."""
    def violated(o, p):
        L = tile_factors(o, p, blocks)
        if L is None or (L.abs() < 1e-3).all():
            return False
        own, run = _maxima(p, blocks)
        M = run[:, -1:]
        finite = bool(torch.isfinite(L).all())
        rel = L - L[:, -1:]
        seen = "key tiles' weights off by factors " + "; ".join(
            f"query {i}: " + ", ".join(f"{math.exp(x):.3g}" for x in L[i].tolist()) for i in range(min(2, len(L))))
        rowsum = weights(o, p).sum(-1)
        hit = {
            "only the last tile": not finite and bool(torch.isinf(L[:, :-1]).all()) and
            bool(torch.isfinite(L[:, -1]).all()),
            "not divided": finite and bool((rel.abs() < 1e-3).all()) and
            bool(((weights(o, p).amax(-1) - 1).abs() < 1e-3).all()),
            "per-row factor": finite and bool((rel.abs() < 1e-3).all()),
            "acc": finite and bool(((L - (M - run)).abs() < 1e-3).all()),
            "tile max": finite and bool((((rel - ((run - own) - (run - own)[:, -1:])).abs()) < 1e-3).all()),
            "both": finite and bool(((rel - (M - run)).abs() < 1e-3).all()),
            "first tile only": not finite and bool(torch.isfinite(L[:, 0]).all()) and
            bool(torch.isinf(L[:, 1:]).all()),
            "any": finite,
        }[rule]
        if not hit:
            return False
        if rule in ("not divided", "per-row factor"):
            return f"rows sum to {shown(rowsum)}, with the right proportions"
        if rule == "first tile only":
            return f"keys {blocks(p)[1]}.. get weight 0; within the first key tile the weights are a softmax"
        return seen
    return violated


def lse_rule(rule: str):
    """Violated when o is right and lse is not (``rule`` "without max": lse = logsumexp - row max)."""
    def violated(o, p):
        if not close(weights(o, p), torch.softmax(_scores(p), -1)):
            return False
        lse = o.value[1].detach().double()[0, 0]
        S = _scores(p)
        right = torch.logsumexp(S, -1)
        if rule == "without max":
            return close(lse, right - S.amax(-1), 1e-3) and f"lse = {shown(lse)}, expected {shown(right)}"
        return not close(lse, right, 1e-3) and f"lse = {shown(lse)}, expected {shown(right)}"
    return violated


def tile_patterns(n: int, bq: int, bk: int) -> dict[str, torch.Tensor]:
    """Keys each query attends to when a causal loop masks with tile-local indices, or skips the diagonal tile."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    i0, j0 = i // bq * bq, j // bk * bk
    visited = reached(n, bq, bk)
    local = {"local": (j - j0) <= (i - i0), "local keys": (j - j0) <= i, "local queries": j <= (i - i0)}
    out = {f"{name}, {tiles}": rule & where for name, rule in local.items()
           for tiles, where in (("all tiles", torch.ones_like(visited)), ("causal tiles", visited))}
    out["diagonal tile skipped"] = (j <= i) & (j0 < i0)
    return out


def tile_pattern(kind: str, blocks=_blocks):
    @reads("nan")  # a query that attends to no key comes out NaN
    def violated(o, p):
        seen = attends(o, p)
        bq, bk = blocks(p)
        right = causal_pattern(seen.shape[0], "j <= i")
        hit = any(bool((seen == pattern).all()) for name, pattern in tile_patterns(seen.shape[0], bq, bk).items()
                  if name.startswith(kind))
        return hit and first_difference(seen, right, weights(o, p))
    return violated


# ------------------------------------------------------------------------- hints

LAST_Q_TILE = ("the last, partial query tile is missing: loop with range(0, N_q, block_q) and slice "
               "[i:i + block_q] (the slice is shorter at the end)")
LAST_K_TILE = ("the last, partial key tile is missing: loop with range(0, N_kv, block_k) and slice "
               "[j:j + block_k] (the slice is shorter at the end)")
PER_TILE = ("the softmax runs over the whole score row block S_i (all key tiles at once), not over each "
            "key tile on its own")
ONLY_LAST = ("only the last key tile counts: the earlier tiles' state is lost; carry m_i, l_i and acc from "
             "tile to tile (m_i = m_new at the end of each step, acc and l_i rescaled, not reset)")
NOT_DIVIDED = "o is the accumulator divided by the final running sum: o = acc / l_i"
L_NOT_RESCALED = ("l_i not rescaled when the running max changes: l_i = alpha * l_i + rowsum(p) with "
                  "alpha = exp(m_old - m_new), like acc")
ACC_NOT_RESCALED = ("acc not rescaled when the running max changes: multiply acc by alpha = exp(m_old - m_new) "
                    "before adding p @ v_j")
TILE_MAX = ("p = exp(s - m_new) with the running max m_new = max(m_i, rowmax(s)), not the tile's own max "
            "(acc and l_i are kept relative to the running max)")
NOTHING_RESCALED = ("neither acc nor l_i is rescaled when the running max changes: multiply both by "
                    "alpha = exp(m_old - m_new)")
FIRST_ONLY = ("only the first key tile gets any weight: every step must use its own tile, k[..., j:j + block_k, :] "
              "from the tile's start j (not from 0), and the loop must run over all the tiles")
RESCALE = ("the key tiles' weights are off by a factor per tile, so the running-max bookkeeping is off: whenever "
           "the running max grows, acc and l_i must both be multiplied by alpha = exp(m_old - m_new), and "
           "p = exp(s - m_new) against the new max")
LSE_MAX = "lse = m_i + log(l_i): l_i was summed relative to the running max, so add m_i back"
LSE = "lse is the logsumexp of each query's scaled scores: lse = m_i + log(l_i) after the last key tile"
LOCAL = ("the causal mask uses tile-local indices: compare global ones, query i0 + r with key j0 + c "
         "(add the tiles' offsets), and hide key j from query i exactly when j > i")
DIAG_TILE = ("causal: the key tile on the query tile's diagonal is needed too; loop over the key tiles up to "
             "the query tile's last row, range(0, min(i0 + block_q, N), block_k)")
OVERFLOW = "exp overflows on large scores: subtract the running max inside the exp, p = exp(s - m_new)"
RUNNING_MAX = ("the running max must never decrease: m_new = max(m_i, rowmax(s)); with a tile's own max, "
               "alpha = exp(m_old - m_new) overflows when a later tile's scores are far lower")


def _tile_probes(**tiles) -> list[Probe]:
    """Ragged query and key tiles, one-hot values (N_q = 7, N_kv = 10, D = 16)."""
    def probe(hint, violated):
        return weights_probe("one-hot values, ragged tiles", 7, 10, 16, hint, violated, seed=50, **tiles)
    return [probe(LAST_Q_TILE, _last_query_tile_missing), probe(LAST_K_TILE, _last_key_tile_missing),
            probe(PER_TILE, _softmax_per_key_tile), probe(AXIS, _softmax_over_query_tile)]


@checker
def tiled_attention() -> Checker:
    """The lab's tiled pseudo-code fn(q, k, v, block_q=64, block_k=64, scale=None) = softmax(scale · q kᵀ) v (notebook 05).

    o has shape (B, H, N_q, D) and the input's dtype
    every query tile is computed, the last partial one too; every key tile counts, the last partial one too
    the softmax runs over each whole score row (all key tiles), over the keys
    the scores are q kᵀ (each k tile transposed, not reshaped)
    the scores are scaled by 1/sqrt(D) by default, and by `scale` when it is given
    the default tiles (64) work, also when N is smaller or not a multiple
    """
    tiles = {"block_q": 4, "block_k": 4}
    return Checker(
        "tiled_attention",
        cases=[
            Case("N=16, tiles 4 x 4", qkv(1, 2, 16, 16, 8, seed=11), tiles),
            Case("N_q=13, N_kv=10, tiles 4 x 3 (last tiles partial)", qkv(1, 2, 13, 10, 8, seed=12),
                 {"block_q": 4, "block_k": 3},
                 hint="the last tiles are shorter: every query row and every key must count"),
            Case("N=16, D=8, tiles 4 x 8", qkv(1, 2, 16, 16, 8, seed=13), {"block_q": 4, "block_k": 8}),
            Case("default tiles (64), N=100", qkv(1, 1, 100, 100, 8, seed=14)),
            Case("scale=0.3 given, tiles 5 x 7", qkv(2, 1, 11, 15, 4, seed=15),
                 {"block_q": 5, "block_k": 7, "scale": 0.3}, hint="the scores are scaled by the given `scale`"),
            Case("float16 inputs, tiles 4 x 4", qkv(1, 2, 10, 10, 8, seed=16, dtype=torch.float16), tiles),
            Case("float64 inputs, tiles 4 x 4 (judged at float64 tolerance)",
                 qkv(1, 2, 9, 9, 8, seed=17, dtype=torch.float64), tiles,
                 hint="float64 inputs are computed in float64: promote to at least float32, never below the input"),
        ],
        reference=ref.tiled_attention,
        probes=[*_tile_probes(block_q=3, block_k=4),
                *input_probes(7, 10, 16, seed=50, block_q=3, block_k=4),
                large_scores_probe(block_q=4, block_k=4)],
    )


def _flash_probes() -> list[Probe]:
    n_q, n_kv, D, bk = 5, 9, 16, 3
    q, k = tiers(n_q, n_kv, D, bk, [1.0, 0.0, 2.0], seed=51)
    tiles = {"block_q": 4, "block_k": bk}

    def probe(hint, violated):  # the running max grows in key tiles 0 and 2, not in tile 1
        return weights_probe("one-hot values, tile maxima 1, 0, 2", n_q, n_kv, D, hint, violated, seed=0,
                             q=q, k=k, **tiles)

    def causal(hint, violated):
        return weights_probe("causal, one-hot values", 11, 11, D, hint, violated, seed=52, causal=True,
                             block_q=4, block_k=3)

    def falling(label, levels, hint):
        fq, fk = tiers(4, 9, D, bk, levels, seed=53)
        return Probe(label, (fq, fk, qkv(1, 1, 4, 9, D, seed=54)[2]), tiles, hint, nonfinite)
    return [
        *_tile_probes(**tiles),
        probe(ONLY_LAST, factor_rule("only the last tile")),
        probe(NOT_DIVIDED, factor_rule("not divided")),
        probe(L_NOT_RESCALED, factor_rule("per-row factor")),
        probe(ACC_NOT_RESCALED, factor_rule("acc")),
        probe(TILE_MAX, factor_rule("tile max")),
        probe(NOTHING_RESCALED, factor_rule("both")),
        probe(FIRST_ONLY, factor_rule("first tile only")),
        probe(RESCALE, factor_rule("any")),
        *input_probes(5, 7, 8, seed=55, block_q=4, block_k=8),
        *causal_probes(11, D, seed=52, block_q=4, block_k=3)[:5],
        causal(LOCAL, tile_pattern("local")),
        causal(DIAG_TILE, tile_pattern("diagonal tile skipped")),
        *causal_probes(11, D, seed=52, block_q=4, block_k=3)[5:],
        falling("large scores, rising by key tile", [60.0, 0.0, 120.0], OVERFLOW),
        falling("the max in the first key tile, the rest 100 lower", [0.0, -100.0, -100.0], RUNNING_MAX),
        without_mask(Probe("causal", (*spread(11, 11, D, seed=52), one_hot_values(11, D)),
                           {"causal": True, "block_q": 4, "block_k": 3}, CAUSAL, property_only(
                               lambda o, p: first_difference(attends(o, p), causal_pattern(11, "j <= i"),
                                                             weights(o, p))))),
        probe(LSE_MAX, lse_rule("without max")),
        probe(LSE, lse_rule("any")),
    ]


@checker
def flash_attention_forward() -> Checker:
    """The online-softmax forward fn(q, k, v, causal=False, scale=None, block_q=64, block_k=64) -> (o, lse) (notebook 05).

    o = softmax(scale · q kᵀ, causal mask) v with the input's dtype; lse = logsumexp of each query's scores
    every query tile and every key tile counts, the last partial ones too
    when the running max grows, acc and l_i are rescaled by exp(m_old - m_new); p uses the running max
    o = acc / l_i, and lse = m_i + log(l_i)
    the scores are q kᵀ (k transposed), scaled by 1/sqrt(D) by default and by `scale` when given
    causal=True hides exactly the keys j > i, with global indices, the diagonal tile included,
    also when a key tile is wholly masked for some rows
    large scores and scores that fall far below an earlier tile's max give finite results
    """
    tiles = {"block_q": 4, "block_k": 4}
    fq, fk = tiers(6, 12, 16, 4, [0.0, -100.0, -100.0], seed=29)
    return Checker(
        "flash_attention_forward",
        cases=[
            Case("N=16, tiles 4 x 4", qkv(1, 2, 16, 16, 8, seed=21), tiles),
            Case("scores rising along the keys: the max changes in every tile", rising(16, 8, seed=22), tiles,
                 hint="the running max changes in every key tile"),
            Case("N=13, tiles 4 x 3 (last tiles partial)", qkv(1, 2, 13, 13, 8, seed=23),
                 {"block_q": 4, "block_k": 3}, hint="the last tiles are shorter: every query row and key counts"),
            Case("cross-attention: N_q=5, N_kv=19, D=8, tiles 4 x 8", qkv(2, 1, 5, 19, 8, seed=24),
                 {"block_q": 4, "block_k": 8}),
            Case("causal, N=13, tiles 4 x 4", qkv(1, 2, 13, 13, 8, seed=25), {"causal": True, **tiles},
                 hint="causal: query i attends to keys 0..i"),
            Case("causal, N=16, tiles 8 x 4, scale=0.5 (a key tile wholly masked for some rows)",
                 qkv(1, 2, 16, 16, 8, seed=26), {"causal": True, "scale": 0.5, "block_q": 8, "block_k": 4}),
            Case("large scores (inputs x 10)", qkv(1, 1, 12, 12, 8, seed=27, scale=10.0), tiles,
                 hint="scores of several hundred must still give finite results"),
            Case("the max in the first key tile, later scores 100 lower", (fq, fk, qkv(1, 1, 6, 12, 16, seed=30)[2]),
                 tiles, hint="a later tile far below the running max must still give finite results"),
            Case("float16 inputs", qkv(1, 2, 10, 10, 8, seed=28, dtype=torch.float16), tiles),
        ],
        reference=ref.flash_attention_forward,
        probes=_flash_probes(),
    )
