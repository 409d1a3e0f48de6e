"""Checkers for the attention forward exercises of notebooks 04-05: naive, tiled and FlashAttention forward.

The probes read the student's attention weights directly: with one-hot values (v = identity),
row i of o is query i's weights over the keys, so a probe sees which keys a query attends to,
whether they sum to 1, and of which scores they are the softmax.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from labkit import attention as ref
from labkit.check.evidence import overflow, property_only, raises_like, reads
from labkit.check.core import Case, Checker, Probe, checker, rng_seed

# ------------------------------------------------------------ inputs (public: the backward checkers use them)


def qkv(B: int, H: int, n_q: int, n_kv: int, D: int, *, seed: int, scale: float = 1.0,
        dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q (B, H, n_q, D), k, v (B, H, n_kv, D), entries N(0, scale²), in ``dtype``."""
    g = torch.Generator().manual_seed(rng_seed(seed))
    return tuple((torch.randn(B, H, n, D, generator=g, dtype=torch.float64) * scale).to(dtype)
                 for n in (n_q, n_kv, n_kv))


def rising(n: int, D: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (1, 2, n, D) float32 whose scores grow along the keys, so the running max changes in every key tile."""
    g = torch.Generator().manual_seed(rng_seed(seed))
    q = 1.0 + 0.3 * torch.randn(1, 2, n, D, generator=g, dtype=torch.float64)
    k = torch.linspace(0.0, 2.0, n, dtype=torch.float64)[:, None] + \
        0.3 * torch.randn(1, 2, n, D, generator=g, dtype=torch.float64)
    v = torch.randn(1, 2, n, D, generator=g, dtype=torch.float64)
    return q.float(), k.float(), v.float()


def one_hot_values(n_kv: int, D: int) -> torch.Tensor:
    """v (1, 1, n_kv, D) with v[j] = e_j (needs D >= n_kv): row i of o is then query i's weights."""
    return torch.eye(n_kv, D, dtype=torch.float32)[None, None]


def tiers(n_q: int, n_kv: int, D: int, block: int, levels: list[float], *, seed: int,
          scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q (1, 1, n_q, D), k (1, 1, n_kv, D): scaled scores ≈ levels[t] (± 0.3) for the keys of key tile t.

    With levels rising then falling, the running max grows in some tiles and not in others.
    """
    g = torch.Generator().manual_seed(rng_seed(seed))
    scale = 1 / math.sqrt(D) if scale is None else scale
    q = 0.5 * torch.randn(1, 1, n_q, D, generator=g, dtype=torch.float64)
    k = 0.5 * torch.randn(1, 1, n_kv, D, generator=g, dtype=torch.float64)
    q[..., 0] = 1.0
    k[..., 0] = torch.tensor([levels[j // block] for j in range(n_kv)], dtype=torch.float64) / scale
    return q.float(), k.float()


def spread(n_q: int, n_kv: int, D: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k (1, 1, N, D) whose scaled scores have a standard deviation 0.8: every weight is visible."""
    q, k, _ = qkv(1, 1, n_q, n_kv, D, seed=seed, scale=0.9)
    return q, k


def without_mask(probe: Probe) -> Probe:
    """A causal probe whose control is the same input with causal=False: it speaks only when the function is right
    without the mask, so that what it sees is the mask's doing (not a wrong load or a wrong softmax)."""
    return dataclasses.replace(probe, control=probe.args, control_kwargs={**probe.kwargs, "causal": False})


def weights_probe(label: str, n_q: int, n_kv: int, D: int, hint: str, violated, *, seed: int,
                  q=None, k=None, **kwargs) -> Probe:
    """A probe with one-hot values, so that the output's first n_kv columns are the attention weights."""
    if q is None:
        q, k = spread(n_q, n_kv, D, seed=seed)
    return Probe(label, (q, k, one_hot_values(n_kv, D)), kwargs, hint, violated)


# ------------------------------------------------------ observations on a probe's output


def output_of(outcome) -> torch.Tensor:
    """o from the student's value (a tensor, or the first of (o, lse)) as float64, batch and head dropped."""
    value = outcome.value[0] if isinstance(outcome.value, (tuple, list)) else outcome.value
    return value.detach().double()[0, 0]


def weights(outcome, probe) -> torch.Tensor:
    """The student's attention weights (N_q, N_kv) on a one-hot-values probe."""
    return output_of(outcome)[:, :probe.args[1].shape[2]]


def exact_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None, causal: bool = False,
                    scale: float | None = None, dtype: torch.dtype = torch.float64) -> tuple:
    """(S, P, O, lse) in ``dtype``: S = scale · Q Kᵀ (keys j > i hidden if causal), P = softmax(S), O = P V.

    The attention checkers' one oracle (float64 unless told); O is None without v, and autograd
    flows through it (the backward checkers' reference)."""
    q, k = q.to(dtype), k.to(dtype)
    s = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        rows, cols = (torch.arange(n, device=s.device) for n in s.shape[-2:])
        s = s.masked_fill(ref.causal_mask(rows, cols), -math.inf)
    p = torch.softmax(s, -1)
    return s, p, None if v is None else p @ v.to(dtype), torch.logsumexp(s, -1)


def reference_weights(probe, scale: float | None = None, causal: bool | None = None) -> torch.Tensor:
    """softmax(scale · q kᵀ, causal mask) in float64, for the probe's inputs and keyword arguments."""
    q, k = (x[0, 0] for x in probe.args[:2])
    causal = probe.kwargs.get("causal", False) if causal is None else causal
    return exact_attention(q, k, causal=causal, scale=probe.kwargs.get("scale") if scale is None else scale)[1]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and (a - b).abs().max().item() <= tol


def shown(t: torch.Tensor, n: int = 4) -> str:
    return ", ".join(f"{v:.3g}" for v in t.flatten()[:n].tolist()) + (", ..." if t.numel() > n else "")


def rows_not_one(P: torch.Tensor) -> str:
    sums = P.sum(-1)
    bad = torch.nonzero(~((sums - 1).abs() < 1e-3)).flatten()
    return ", ".join(f"row {i} sums to {sums[i].item():.3g}" for i in bad[:3].tolist())


def fit_scale(P: torch.Tensor, G: torch.Tensor) -> float | None:
    """c with P = softmax(c · G) row by row, or None when P is no softmax of a multiple of G."""
    if not (torch.isfinite(P).all() and (P > 0).all()) or rows_not_one(P):  # a softmax's rows sum to 1
        return None
    y = P.log() - P.log().mean(-1, keepdim=True)
    x = G - G.mean(-1, keepdim=True)
    c = ((x * y).sum() / (x * x).sum()).item()
    return c if (y - c * x).abs().max().item() <= 1e-3 * max(1.0, y.abs().max().item()) else None


def raw_scores(probe) -> torch.Tensor:
    q, k = (x.double()[0, 0] for x in probe.args[:2])
    return q @ k.T


def default_scale(probe) -> float:
    given = probe.kwargs.get("scale")
    return 1 / math.sqrt(probe.args[0].shape[-1]) if given is None else given


# -------------------------------------------------------------- what each probe judges


def _softmax_over_size_one_dim(o, p):
    P = weights(o, p)
    B, H = p.args[0].shape[:2]
    return (B == 1 or H == 1) and bool(((P - 1).abs() < 1e-6).all()) and \
        f"every weight is 1 (batch {B}, heads {H})"


def _softmax_over_queries(o, p):
    P = weights(o, p)
    return rows_not_one(P) and bool(((P.sum(0) - 1).abs() < 1e-3).all()) and \
        f"{rows_not_one(P)}; each key's weights over the queries sum to 1"


@property_only
def _rows_do_not_sum_to_one(o, p):
    return rows_not_one(weights(o, p))


def not_q_kt(o, p):
    """The weights are a softmax of c · q k' for k' = k reshaped to (D, N) (or k itself when N = D), not kᵀ."""
    P = weights(o, p)
    if rows_not_one(P) or fit_scale(P, raw_scores(p)) is not None:
        return False
    q, k = (x.double()[0, 0] for x in p.args[:2])
    n, D = k.shape
    twins = {"k reshaped to (D, N)": q @ k.reshape(D, n)}
    if n == D:
        twins["k itself"] = q @ k
    bk = p.kwargs.get("block_k")
    if bk:  # each key tile reshaped, (block_k, D) to (D, block_k)
        twins["each key tile reshaped to (D, block_k)"] = torch.cat(
            [q @ k[j:j + bk].reshape(D, -1) for j in range(0, n, bk)], -1)
    fits = [name for name, G in twins.items() if fit_scale(P, G) is not None]
    return bool(fits) and f"the weights are a softmax of c · q k' with k' = {fits[0]}"


def scale_ratio(ratio: float, label: str):
    """Violated when the weights are softmax(c · q kᵀ) with c = ratio × the right scale."""
    def violated(o, p):
        c = fit_scale(weights(o, p), raw_scores(p))
        right = default_scale(p)
        return c is not None and abs(c / right - ratio) < 1e-3 * ratio and \
            f"your weights are softmax({c:.4g} · q kᵀ), {label} {right:.4g}"
    return violated


def _scale_unused(o, p):
    c = fit_scale(weights(o, p), raw_scores(p))
    D = p.args[0].shape[-1]
    return c is not None and abs(c - 1 / math.sqrt(D)) < 1e-4 and \
        f"with scale={p.kwargs['scale']} your weights are softmax({c:.4g} · q kᵀ), 1/sqrt(D) = {1 / math.sqrt(D):.4g}"


def scale_wrong(o, p):
    """The weights are softmax(c · q kᵀ) for a c other than the scale; c ≈ 0 (every key weighs the same) is no
    evidence of a scale: scores lost or all equal do that too."""
    c = fit_scale(weights(o, p), raw_scores(p))
    right = default_scale(p)
    return c is not None and abs(c - right) > 1e-4 * right and abs(c) > 0.05 * right and \
        f"your weights are softmax({c:.4g} · q kᵀ), the scale is {right:.4g}"


def _k_untransposed(q, k, v, causal=False, scale=None, block_q=None, block_k=None):
    """The twin of a k not transposed: the product q k (of the first tiles, when tiled) raises on N_kv != D."""
    if block_q:
        return q[:, :, :block_q] @ k[:, :, :block_k]
    return q @ k


def attends(o, p) -> torch.Tensor:
    """Which keys each query of a causal probe attends to (weight > 1e-7; a NaN row attends to none)."""
    P = weights(o, p)
    return torch.nan_to_num(P, nan=0.0) > 1e-7


def first_difference(seen: torch.Tensor, right: torch.Tensor, P: torch.Tensor | None = None) -> str:
    """'query 3 attends to key 3? no (it must)' for the first query whose keys differ."""
    diff = torch.nonzero(seen != right)
    if not len(diff):
        return ""
    i, j = diff[0].tolist()
    must = "it must" if right[i, j] else "it must not"
    text = f"query {i} attends to key {j}? {'yes' if seen[i, j] else 'no'} ({must})"
    if P is not None and torch.isnan(P[i]).any():
        text += f"; query {i}'s output is NaN"
    return text


def causal_pattern(n: int, rule: str) -> torch.Tensor:
    """Keys (columns) each query (row) attends to under a causal mask rule."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    return {"j <= i": j <= i, "j < i": j < i, "j <= i + 1": j <= i + 1, "j >= i": j >= i,
            "all": (i >= 0) & (j >= 0)}[rule]


def reached(n: int, bq: int, bk: int) -> torch.Tensor:
    """The keys whose tile a causal tile loop visits for each query: key tiles starting before min(i0 + bq, n)."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    return j // bk * bk < torch.clamp(i // bq * bq + bq, max=n)


def probe_blocks(p) -> tuple[int, int] | None:
    """(block_q, block_k) of a tiled probe, None for an untiled one."""
    return (p.kwargs["block_q"], p.kwargs["block_k"]) if "block_k" in p.kwargs else None


def _support_is(rule: str, blocks=probe_blocks):
    """Violated when the keys attended to follow ``rule`` (within the key tiles a causal loop visits, if tiled)."""
    @reads("nan")
    def violated(o, p):
        seen, P = attends(o, p), weights(o, p)
        n = seen.shape[0]
        rows = ~torch.isnan(P).any(-1)  # a NaN row (all its keys masked in a first tile) says nothing
        pattern, tiles = causal_pattern(n, rule), blocks(p)
        hit = bool(rows.any()) and (bool((seen == pattern)[rows].all()) or (
            tiles is not None and bool((seen == pattern & reached(n, *tiles))[rows].all())))
        return hit and first_difference(seen, causal_pattern(n, "j <= i"), P)
    return violated


@reads("nan")
def _future_keys_kept(o, p):
    """Every key counts, but not as without a mask: the masked scores were set to a finite value."""
    seen, P = attends(o, p), weights(o, p)
    return bool(seen.all()) and not close(P, reference_weights(p, causal=False)) and \
        first_difference(seen, causal_pattern(seen.shape[0], "j <= i"))


@reads("nan")
def _mask_ignored(o, p):
    P = weights(o, p)
    return close(P, reference_weights(p, causal=False)) and \
        f"{first_difference(attends(o, p), causal_pattern(P.shape[0], 'j <= i'))}; the weights are those without a mask"


def _wrong_keys(o, p):
    seen = attends(o, p)
    return first_difference(seen, causal_pattern(seen.shape[0], "j <= i"), weights(o, p))


def _masked_after_softmax(o, p):
    """The weights are the unmasked softmax (over the keys a tiled loop reaches, if tiled) with the future keys'
    weights then set to 0, not renormalised."""
    P = weights(o, p)
    n = P.shape[0]
    keep = causal_pattern(n, "j <= i")
    twins = [reference_weights(p, causal=False) * keep]
    if probe_blocks(p):
        s = raw_scores(p) * default_scale(p)
        twins.append(torch.softmax(s.masked_fill(~reached(n, *probe_blocks(p)), -math.inf), -1) * keep)
    return any(close(P, t) for t in twins) and rows_not_one(P)


@overflow
def nonfinite(o, p):
    out = output_of(o)
    return not torch.isfinite(out).all() and f"o holds {shown(out[~torch.isfinite(out)])}"


# ------------------------------------------------------------------------- hints

K_T = ("the scores are q kᵀ: transpose k's last two dims (k.transpose(-2, -1)); a reshape or view of "
       "k to (D, N) has the right shape but reorders the entries")
NO_SCALE = "the scores must be scaled by 1/sqrt(D) (D = q.shape[-1]) before the softmax; yours are not scaled"
SCALE_D = ("the scores were scaled by 1/D where the default is 1/sqrt(D): either the default was written 1/D, "
           "or 1/sqrt(D) was applied twice (to q or k and again to the scores)")
SCALE_IGNORED = "use the `scale` argument when it is given; 1/sqrt(D) is only the default (scale=None)"
SCALE = "scale the scores by `scale` (1/sqrt(D) when scale=None) before the softmax"
AXIS = "softmax over the keys (the last dim, dim=-1), so that each query's weights sum to 1, not over the queries"
AXIS_SIZE_ONE = ("softmax over the keys (the last dim, dim=-1): every weight is 1, the softmax of a dim of size 1 "
                 "here (dim=0 or dim=1, the batch or the head dim)")
ROWS = "each query's weights over the keys must sum to 1"
DIAG = "causal mask off by one: query i must see key i itself (mask only j > i, e.g. triu(diagonal=1))"
LATE = "causal mask off by one: query i must not see key i + 1 (mask every j > i)"
FLIPPED = "causal mask flipped: hide the future keys j > i (upper triangle), not the past ones"
IGNORED_MASK = "causal=True is ignored: no mask is applied; hide the keys j > i"
MINUS_INF = ("masked scores must be -inf so that exp gives exactly 0: a 0 or any finite fill value "
             "still counts the future keys j > i")
CAUSAL = "causal: query i attends to keys 0..i only (set the scores of keys j > i to -inf)"
MASK_BEFORE = ("mask the scores before the softmax (set them to -inf): zeroing weights after it leaves rows "
               "that no longer sum to 1")
OVERFLOW = "exp overflows on large scores: subtract each row's max before exp (torch.softmax does this)"


def input_probes(n_q: int, n_kv: int, D: int, seed: int, **tiles) -> list[Probe]:
    """Axis, transposition and scale probes with one-hot values: N_q, N_kv and D all differ."""
    def probe(hint, violated, **kw):
        return weights_probe("one-hot values", n_q, n_kv, D, hint, violated, seed=seed, **tiles, **kw)
    return [
        probe(AXIS, _softmax_over_queries),
        probe(AXIS_SIZE_ONE, _softmax_over_size_one_dim),
        probe(ROWS, _rows_do_not_sum_to_one),
        probe(K_T, not_q_kt),
        weights_probe("one-hot values, N = D (a k not transposed still multiplies)", D, D, D, K_T, not_q_kt,
                      seed=seed, **tiles),
        probe(NO_SCALE, scale_ratio(math.sqrt(D), "the scale is")),
        probe(SCALE_D, scale_ratio(1 / math.sqrt(D), "1/sqrt(D) is")),
        probe(SCALE_IGNORED, _scale_unused, scale=0.9),
        probe(SCALE, scale_wrong),
        probe(SCALE, scale_wrong, scale=0.9),
        probe(K_T, raises_like(_k_untransposed, "your function raised what q k (k not transposed) raises here")),
    ]


def causal_probes(n: int, D: int, seed: int, blocks=probe_blocks, **tiles) -> list[Probe]:
    def probe(hint, violated):  # each speaks only when the function is right without the mask
        return without_mask(weights_probe("causal, one-hot values", n, n, D, hint, violated, seed=seed, causal=True,
                                          **tiles))
    return [probe(IGNORED_MASK, _mask_ignored), probe(MINUS_INF, _future_keys_kept),
            probe(DIAG, _support_is("j < i", blocks)), probe(LATE, _support_is("j <= i + 1", blocks)),
            probe(FLIPPED, _support_is("j >= i", blocks)), probe(MASK_BEFORE, _masked_after_softmax)]


def large_scores_probe(**kwargs) -> Probe:
    q, k, v = qkv(1, 1, 6, 9, 8, seed=49, scale=8.0)
    return Probe("large scores (inputs x 8)", (q, k, v), kwargs, OVERFLOW, nonfinite)


# ------------------------------------------------------------------------- checkers


@checker
def naive_attention() -> Checker:
    """O = softmax(scale · q kᵀ, causal mask) v for fn(q, k, v, causal=False, scale=None) (notebook 04).

    o has shape (B, H, N_q, D) and the input's dtype
    the scores are q kᵀ (k transposed, not reshaped), also when N_q, N_kv and D all differ
    the scores are scaled by 1/sqrt(D) by default, and by `scale` when it is given
    the softmax runs over the keys: each query's weights sum to 1
    causal=True hides exactly the keys j > i (query i sees key i); causal=False hides none
    large scores give finite results
    """
    return Checker(
        "naive_attention",
        cases=[
            Case("B=2, H=2, N_q=5, N_kv=7, D=8", qkv(2, 2, 5, 7, 8, seed=1),
                 hint="the scores are q kᵀ, (N_q, N_kv) = (5, 7), scaled by 1/sqrt(D), softmax over the keys"),
            Case("N_q = N_kv = D = 8", qkv(1, 2, 8, 8, 8, seed=2)),
            Case("scale=0.9 given", qkv(1, 2, 6, 6, 8, seed=5), {"scale": 0.9},
                 hint="the scores are scaled by the given `scale`"),
            Case("causal, N=7", qkv(1, 2, 7, 7, 4, seed=4), {"causal": True},
                 hint="causal: query i attends to keys 0..i, and its weights sum to 1"),
            Case("causal, N = D = 8, scale=0.3", qkv(2, 2, 8, 8, 8, seed=6), {"causal": True, "scale": 0.3}),
            Case("large scores (inputs x 8)", qkv(1, 2, 6, 9, 8, seed=8, scale=8.0),
                 hint="scores of several hundred must still give finite weights"),
            Case("float16 inputs", qkv(1, 2, 6, 6, 8, seed=7, dtype=torch.float16)),
            Case("scale=0.0 given: every key weighs the same", qkv(1, 2, 5, 6, 8, seed=9), {"scale": 0.0},
                 hint="use the given scale, 0.0 too: test `scale is None`, not `scale or ...` (0.0 is falsy)"),
        ],
        reference=ref.naive_attention,
        probes=[*input_probes(5, 7, 8, seed=40), *causal_probes(7, 8, seed=41),
                without_mask(Probe("causal", (*spread(7, 7, 8, seed=41), one_hot_values(7, 8)), {"causal": True},
                                   CAUSAL, _wrong_keys)),
                large_scores_probe()],
    )
