"""The probes of the FlashAttention backward checkers (notebook 07): inputs that make the gradients readable.

With dO = one-hot rows (dO_i = e_i), dV = Pᵀ dO holds Pᵀ, so a probe sees which keys each query gives
weight to, whether those weights sum to 1 and which formula they follow; with one-hot keys (k_j = e_j)
dQ holds scale · dS, with one-hot queries dK holds scale · dSᵀ; with V the same for every key,
dP − D = 0 and so dQ = dK = 0. Used by ``attention_backward`` (PyTorch tiles, 7.1) and
``attention_backward_triton`` (the dK/dV kernel's loop, 7.2).
"""
from __future__ import annotations

import math

import torch

from labkit.check.attention import exact_attention, qkv
from labkit.check.evidence import reads
from labkit.check.core import Probe, rng_seed

# ------------------------------------------------------------------------------- inputs

def backward_args(q, k, v, causal=False, scale=None, *, seed: int, do=None):
    """(do, q, k, v, o, lse): an upstream gradient (random unless given), o (q's dtype) and lse (float32)."""
    if do is None:  # its own stream: drawn with q's seed, dO would equal q and dSᵀdO could pass for dSᵀQ
        g = torch.Generator().manual_seed(rng_seed(seed) + 104729)
        do = torch.randn(q.shape, generator=g, dtype=torch.float64).to(q.dtype)
    _, _, o, lse = exact_attention(q, k, v, causal, scale)
    return do, q, k, v, o.to(q.dtype), lse.float()


# ------------------------------------------------------------------------------- probes

D = 16  # head dim of every probe: one-hot rows of length 16 read P or dS of up to 16 queries/keys
FROM_DV = "through dV with dO_i = e_i"


def probe_args(n_q, n_kv, *, seed, causal=False, scale=None, q=None, k=None, v=None, do=None):
    """(do, q, k, v, o, lse) for a probe, B = H = 1, float32: random unless q, k, v, dO are given."""
    rq, rk, rv = qkv(1, 1, n_q, n_kv, D, seed=seed)
    q, k, v = (r if x is None else x.float()[None, None] for r, x in ((rq, q), (rk, k), (rv, v)))
    return backward_args(q, k, v, causal, scale, seed=seed, do=None if do is None else do.float()[None, None])


def _maths(probe):
    """Float64 S, P, lse, dP, D, dS, dq, dk, dv of a probe's inputs (2-D: B = H = 1)."""
    do, q, k, v = (x[0, 0].double() for x in probe.args[:4])
    causal, scale = probe.kwargs.get("causal", False), probe.kwargs.get("scale")
    s, p, o, lse = exact_attention(q, k, v, causal, scale)
    sc = 1 / math.sqrt(D) if scale is None else scale
    dp = do @ v.T
    d = (do * o).sum(-1, keepdim=True)
    ds = p * (dp - d)
    return dict(s=s, p=p, lse=lse[:, None], dp=dp, ds=ds, scale=sc, q=q, k=k,
                dq=sc * ds @ k, dk=sc * ds.T @ q, dv=p.T @ do)


def _grad(outcome, i):
    """Gradient i (0 dq, 1 dk, 2 dv) of an outcome as a float64 2-D tensor (B = H = 1)."""
    return outcome.value[i][0, 0].double()


def _close(a, b, rtol=2e-3) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= rtol * b.abs().max() + 1e-9)


def _span(idx) -> str:
    idx = [int(i) for i in idx]
    return str(idx[0]) if len(idx) == 1 else f"{idx[0]}-{idx[-1]}" if idx == list(range(idx[0], idx[-1] + 1)) \
        else ", ".join(map(str, idx[:6])) + (", ..." if len(idx) > 6 else "")


def _seen_p(outcome, probe):
    """The student's P (N_q x N_kv) as dV shows it: dV = Pᵀ dO with dO_i = e_i gives dV[:, i] = P[i, :]."""
    n_q = probe.args[1].shape[2]
    return _grad(outcome, 2)[:, :n_q].T


def _p_probe(label, hint, seen, *, n_q=14, n_kv=14, seed=81, **kw):
    """A probe on P as dV shows it; ``seen(P_student, maths)`` gives the observation."""
    args = probe_args(n_q, n_kv, seed=seed, causal=kw.get("causal", False), scale=kw.get("scale"),
                       do=torch.eye(n_q, D))
    return Probe(label, args, kw, hint, lambda out, pr: seen(_seen_p(out, pr), _maths(pr)))


def _tiles(p, block):
    """p's columns in key tiles of ``block``: (N_q, tiles, block), -1 where the last tile is short."""
    pad = (-p.shape[1]) % block
    return torch.cat([p, torch.full((p.shape[0], pad), -1.0, dtype=p.dtype)], 1).view(p.shape[0], -1, block)


def _tile_sums_one(p, m, blocks):
    for b in blocks:
        if p.shape[1] > b and torch.allclose(_tiles(p, b).clamp(min=0).sum(-1), torch.ones(1, dtype=p.dtype), atol=1e-3):
            return f"every key tile of {b} keys sums to 1 in every row"
    return ""


def _tile_max_one(p, m, blocks):
    for b in blocks:
        if p.shape[1] > b and torch.allclose(_tiles(p, b).amax(-1), torch.ones(1, dtype=p.dtype), atol=1e-4):
            return f"P reaches 1 in every key tile of {b} keys of every row"
    return ""


def _zero_rows(p, rows):
    """Indices of ``rows`` whose entries in p are all 0."""
    return [i for i in rows if p[i].abs().max() <= 1e-7]


P_LSE = "rebuild P = exp(S − lse) with the saved lse of the whole row (lse_i = log Σ_j exp(S_ij))"
TILES = ("some queries or keys never reach the gradients; each tile must be visited once and use its own rows: "
         "the loop runs to N (range(0, N, block), the last, shorter tile included), each step takes its own "
         "tile ([i:i + block]; in a kernel offs = start + tl.arange(0, BLOCK)), and no mask drops a row inside N")


def p_probes(tiles: dict, key_blocks: tuple, *, n_kv: int, n_q_acc: int, student_dq: bool) -> list[Probe]:
    """The probes of P (seen through dV), the causal mask, D, the sign and dK (shared with Triton).

    ``tiles``: the tile sizes passed to tiled probes; ``key_blocks``: the key-tile sizes a
    per-tile mistake may use; ``n_kv``: keys of the P probe (more than a key tile);
    ``n_q_acc``: queries of the accumulation probe (more than a query tile); ``student_dq``:
    whether dq is the student's (else the probes look at dk and dv only).
    """
    judged = ((0, "dq"),) * student_dq + ((1, "dk"), (2, "dv"))
    eye = torch.eye(12, D)
    groups = torch.arange(n_q_acc) * min(D, n_q_acc) // n_q_acc  # query i is in group groups[i]

    def zero(out, pr):
        seen = [f"max |{n}| = {out.value[i].abs().max():.3g}" for i, n in judged if out.value[i].abs().max() > 0]
        return seen and seen[0]

    def transposed_dv(out, pr):
        dv, m = _grad(out, 2)[:, :12], _maths(pr)
        return _close(dv, m["p"]) and not _close(dv, m["p"].T) and "dV holds P · dO where Pᵀ · dO belongs"

    def transposed_dk(out, pr):
        dk, m = _grad(out, 1)[:, :12], _maths(pr)
        return _close(dk, m["dk"][:, :12].T) and "dK holds scale · dS · Q where scale · dSᵀ · Q belongs"

    def lost_queries(out, pr, *, first: bool):
        # dO_i = e_(group of i): dV[:, c] sums P over the queries of group c; a group of 0 got lost
        got = _grad(out, 2)[:, :int(groups[-1]) + 1].sum(0)
        lost = [int(c) for c in range(len(got)) if abs(got[c]) <= 1e-6]
        lost_q = [i for i in range(n_q_acc) if int(groups[i]) in lost]
        if lost_q and (0 in lost_q) == first:
            return f"dV gets nothing from queries {_span(lost_q)}"
        return ""

    def lost_keys(p, m):
        keys = _zero_rows(p.T, range(p.shape[1]))
        return keys and f"keys {_span(keys)} get no gradient"

    @reads("shape")
    def cross(out, pr):
        shapes = [(n, tuple(g.shape), tuple(x.shape)) for n, g, x in zip(("dq", "dk", "dv"), out.value, pr.args[1:4])]
        wrong = [f"{n} has shape {g}, not {x}" for n, g, x in shapes if g != x]
        return wrong[0] if wrong else lost_keys(_seen_p(out, pr), None)

    def not_softmax(p, m):
        rows = [i for i in range(p.shape[0]) if abs(p[i].sum() - 1) > 1e-3]
        return (rows and f"row {rows[0]} of P sums to {p[rows[0]].sum():.4g}") or \
            (not _close(p, m["p"]) and f"P differs from softmax(S) by up to {(p - m['p']).abs().max():.3g}")

    def causal(test):
        return _p_probe("causal: the weights each query gives the keys, seen " + FROM_DV, test[1],
                        lambda p, m: test[0](p), causal=True, **tiles)

    def after(p):
        seen = [(i, j) for i in range(p.shape[0]) for j in range(i + 1, p.shape[1]) if abs(p[i, j]) > 1e-6]
        return seen and f"query {seen[0][0]} gives weight {p[seen[0]]:.3g} to key {seen[0][1]}"

    def diagonal(p):
        i = [i for i in range(p.shape[0]) if abs(p[i, i]) <= 1e-7]
        return i and f"query {i[0]} gives no weight to key {i[0]}, itself"

    def before(p):
        seen = [(i, j) for i in range(p.shape[0]) for j in range(i) if abs(p[i, j]) <= 1e-7]
        return seen and f"query {seen[0][0]} gives no weight to key {seen[0][1]}"

    same_v = torch.randn(D, generator=torch.Generator().manual_seed(rng_seed(5)),
                         dtype=torch.float64).expand(14, D).clone()
    d_args = probe_args(n_q_acc, 14, seed=85, v=same_v)  # several query tiles: D_i of each query's own row

    def d_missing(out, pr):
        m = _maths(pr)
        no_d = m["scale"] * (m["p"] * m["dp"]).T @ m["q"]
        return _close(_grad(out, 1), no_d) and "dK = scale · (P ∘ dP)ᵀ Q although V is the same for every key"

    def d_wrong(out, pr):
        m = _maths(pr)
        tol = 1e-4 * (m["scale"] * (m["p"] * m["dp"]).T @ m["q"]).abs().max()
        for i, name in ((1, "dK"), (0, "dQ"))[:1 + student_dq]:
            if _grad(out, i).abs().max() > tol:
                return f"V is the same for every key, so dP − D = 0, yet max |{name}| = {_grad(out, i).abs().max():.3g}"
        return ""

    def sign(out, pr):
        m = _maths(pr)
        return _close(-_grad(out, 1), m["dk"]) and "dK = −(the right dK)"

    one_hot_q = probe_args(12, 12, seed=87, q=torch.eye(12, D), k=2 * torch.randn(
        12, D, generator=torch.Generator().manual_seed(rng_seed(7))), scale=0.5)
    scaled_q = probe_args(n_q_acc, 14, seed=88, q=torch.eye(D)[groups], scale=0.5)

    def dk_scale(out, pr):
        dk, right = _grad(out, 1), _maths(pr)["dk"]
        return (_close(dk, right / 0.5) and "dK = dSᵀ Q, without the scale") or \
            (_close(dk, right * 0.5) and "dK = scale² · dSᵀ Q")

    def lost_dk_queries(out, pr):  # q_i = e_(group of i): dK[:, c] = scale · Σ_(i in group c) dS[i, :]
        n = int(groups[-1]) + 1
        got, right = _grad(out, 1)[:, :n].abs().amax(0), _maths(pr)["dk"][:, :n].abs().amax(0)
        lost = [i for i in range(n_q_acc) if got[groups[i]] <= 1e-7 < right[groups[i]] * 1e-3]
        return lost and "dK gets nothing from queries " + _span(lost)

    return [
        Probe("dO = 0: every gradient is 0", probe_args(14, 14, seed=79, do=torch.zeros(14, D)), tiles,
              HINTS["dO = 0"], zero),
        Probe("one tile, dO_i = e_i: dV = Pᵀ dO", probe_args(12, 12, seed=80, do=eye), {}, HINTS["dV = P dO"],
              transposed_dv),
        Probe("one tile, q_i = e_i: dK = scale · dSᵀ Q", one_hot_q, {"scale": 0.5}, HINTS["dK = dS Q"],
              transposed_dk),
        Probe("several query tiles: which queries reach dV", probe_args(
            n_q_acc, 14, seed=82, do=torch.eye(D)[groups]),
            tiles, HINTS["dK, dV overwritten"], lambda o, p: lost_queries(o, p, first=True)),
        Probe("several query tiles, the last partial: which queries reach dV", probe_args(
            n_q_acc, 14, seed=82, do=torch.eye(D)[groups]),
            tiles, TILES, lambda o, p: lost_queries(o, p, first=False)),
        _p_probe("several key tiles, the last partial: which keys reach dV", TILES, lost_keys, n_kv=n_kv, **tiles),
        Probe("N_q=6 < N_kv: which keys reach dV", probe_args(6, n_kv, seed=83, do=torch.eye(6, D)), tiles,
              HINTS["N_q != N_kv"], cross),
        _p_probe("P seen " + FROM_DV, HINTS["P without lse"],
                 lambda p, m: _close(p, m["s"].exp()) and "P = exp(S)", n_kv=n_kv, **tiles),
        _p_probe("P seen " + FROM_DV, HINTS["exp2"], lambda p, m: (_close(p, torch.exp2(m["s"] - m["lse"])) or
                 _close(p, torch.exp2(m["s"] * math.log2(math.e) - m["lse"]))) and "P = 2^(…), not e^(S − lse)",
                 n_kv=n_kv, **tiles),
        _p_probe("P seen " + FROM_DV, HINTS["S unscaled"],
                 lambda p, m: _close(p, (m["s"] / m["scale"] - m["lse"]).exp()) and "P = exp(Q Kᵀ − lse)",
                 n_kv=n_kv, **tiles),
        _p_probe("P seen " + FROM_DV + ", scale=0.5", HINTS["scale ignored"],
                 lambda p, m: _close(p, (m["s"] / 0.5 / math.sqrt(D) - m["lse"]).exp()) and "P = exp(Q Kᵀ/√D − lse)",
                 n_kv=n_kv, scale=0.5, **tiles),
        _p_probe("P seen " + FROM_DV, HINTS["tile softmax"], lambda p, m: _tile_sums_one(p, m, key_blocks),
                 n_kv=n_kv, **tiles),
        _p_probe("P seen " + FROM_DV, HINTS["tile max"], lambda p, m: _tile_max_one(p, m, key_blocks),
                 n_kv=n_kv, **tiles),
        _p_probe("P seen " + FROM_DV, HINTS["row max"], lambda p, m: torch.allclose(
            p.amax(-1), torch.ones(1, dtype=p.dtype), atol=1e-4) and "every row of P has max 1",
            n_kv=n_kv, **tiles),
        _p_probe("P seen " + FROM_DV, HINTS["P != exp(S - lse)"], not_softmax, n_kv=n_kv, **tiles),
        causal((after, HINTS["no mask"])),
        causal((diagonal, HINTS["diagonal masked"])),
        causal((before, HINTS["mask hides the past"])),
        Probe("V the same for every key: dQ = dK = 0", d_args, tiles, HINTS["no D"], d_missing),
        Probe("V the same for every key: dQ = dK = 0", d_args, tiles, HINTS["D wrong"], d_wrong),
        Probe("random inputs: the sign of dK", probe_args(14, 14, seed=86), tiles, HINTS["sign"], sign),
        Probe("q_i = e_i, scale=0.5: dK holds scale · dSᵀ", scaled_q, {"scale": 0.5, **tiles},
              HINTS["dK, dV overwritten"], lost_dk_queries),
        Probe("q_i = e_i, scale=0.5: dK holds scale · dSᵀ", scaled_q, {"scale": 0.5, **tiles},
              HINTS["dk scale"], dk_scale),
    ]


def dq_probes(tiles: dict) -> list[Probe]:
    """The probes of dQ (one-hot keys: dQ holds scale · dS), for the PyTorch exercise where the student writes dQ."""
    args = probe_args(14, 14, seed=89, k=torch.eye(14, D), scale=0.5)
    kwargs = {"scale": 0.5, **tiles}

    def lost_keys(out, pr):
        keys = _zero_rows(_grad(out, 0)[:, :14].T, range(14))
        return keys and "dQ gets nothing from keys " + _span(keys)

    def scaled(out, pr):
        dq, right = _grad(out, 0), _maths(pr)["dq"]
        return (_close(dq, right / 0.5) and "dQ = dS K, without the scale") or \
            (_close(dq, right * 0.5) and "dQ = scale² · dS K")
    return [Probe("k_j = e_j, scale=0.5: dQ holds scale · dS", args, kwargs, HINTS["dq overwritten"], lost_keys),
            Probe("k_j = e_j, scale=0.5: dQ holds scale · dS", args, kwargs, HINTS["dq scale"], scaled)]


HINTS = {
    "dO = 0": "the gradients are linear in dO: every term carries a factor dO (dV = Pᵀ dO, dP = dO Vᵀ, "
              "D = rowsum(dO ∘ O)), so dO = 0 must give dq = dk = dv = 0",
    "dV = P dO": "dV = Pᵀ dO: P is (queries × keys) and dV_j belongs to the keys, so transpose P "
                 "(p.transpose(-2, -1), tl.trans(p) in a kernel)",
    "dK = dS Q": "dK = scale · dSᵀ Q: dS is (queries × keys) and dK_j belongs to the keys, so transpose dS "
                 "(ds.transpose(-2, -1), tl.trans(ds) in a kernel)",
    "dK, dV overwritten": "dK_j and dV_j accumulate over all query tiles (dk += …, dv += …): assigning keeps "
                          "only the last query tile's contribution",
    "N_q != N_kv": "N_q ≠ N_kv (cross-attention): the keys run up to N_kv = k.shape[2], the queries up to "
                   "N_q = q.shape[2]; dk and dv have k's shape",
    "P without lse": f"P = exp(S) is not normalised: {P_LSE}",
    "exp2": "P = exp(S − lse) with the natural exp: S and the saved lse are in natural-log units, so "
            "2^(S − lse) (tl.exp2, torch.exp2) is wrong; use tl.exp / torch.exp, or multiply both by log2(e) first",
    "S unscaled": "S = scale · Q Kᵀ: multiply the scores by `scale` before P = exp(S − lse) (the lse is "
                  "of the scaled scores)",
    "scale ignored": "use the `scale` argument when it is given: S = scale · Q Kᵀ; 1/√D is only the default "
                     "(scale=None)",
    "tile softmax": f"a softmax over one key tile normalises over that tile only: {P_LSE}",
    "tile max": f"P is built from each key tile's own max: {P_LSE}, which already holds the max and the log-sum",
    "row max": f"the row max alone leaves P unnormalised: {P_LSE} (lse = max + log of the row sum)",
    "P != exp(S - lse)": "P is not softmax(S) (its rows must sum to 1 over the keys): either S is off (S = "
                         f"scale · Q Kᵀ, scaled once, by multiplying) or P is not rebuilt from it: {P_LSE}; with "
                         "causal=True, the mask of the forward pass (global indices: key j hidden from query i when "
                         "j > i, not tile-local ones)",
    "no mask": "causal mask missing in the backward: P must be 0 for keys j > i, so mask S with -inf "
               "before the exp in every tile that touches the diagonal (the forward saved lse of the masked row)",
    "diagonal masked": "causal mask off by one: query i sees key i itself; hide only the keys j > i",
    "mask hides the past": "the causal mask hides keys j ≤ i that query i sees: compare global positions "
                           "(i0 + row, j0 + column), not positions inside the tile",
    "no D": "the D term is missing: dS = P ∘ (dP − D) with D_i = rowsum(dO_i ∘ O_i), not P ∘ dP",
    "D wrong": "dS = P ∘ (dP − D) with D_i = rowsum(dO_i ∘ O_i): one number per query, over the whole row "
               "(here dP − D = 0 in every tile, since V is the same for every key)",
    "sign": "dQ and dK have the wrong sign: dS = P ∘ (dP − D), not P ∘ (D − dP)",
    "dk scale": "dK = scale · dSᵀ Q (S = scale · Q Kᵀ), the scale applied exactly once (the Triton scaffold "
                "multiplies dk by scale after the loop)",
    "dq overwritten": "dQ_i accumulates over all key tiles (dq += dS K_j · scale): assigning keeps only the "
                      "last key tile's contribution",
    "dq scale": "dQ = scale · dS K (S = scale · Q Kᵀ), the scale applied exactly once",
}
