"""Wrong answers to exercises 3.2 (merge_states_many), 5.2 (flash_hbm_accesses), 7.0 (softmax_jacobian)
and 8.4 (elimination_flops), written as a student would, from the notebooks' exercise text only
(without reading labkit.check or its tests)."""
from __future__ import annotations

import math

import torch

from labkit import softmax
from wrong_answer import WrongAnswer

WRONG: list[WrongAnswer] = []


def _add(exercise, mistake, names):
    def deco(fn):
        WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
        return fn
    return deco


# ------------------------------------------------------------------ 3.2 merge_states_many
MSM = "merge_states_many"


@_add(MSM, "adds the d_k up without rescaling them to the common max",
      [r"rescal", r"exp\s*\(\s*m_?k", r"e\^\{?\(?m_?k"])
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    return softmax.OnlineState(ms.amax(dim=0), ds.sum(dim=0))


@_add(MSM, "rescales with exp(m* - m_k) instead of exp(m_k - m*) (sign of the exponent reversed)",
      [r"sign", r"revers|swap|flip|backward|invert|other way", r"m_?k\s*-\s*m|m\*?\s*-\s*m_?k"])
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(base - ms)).sum(dim=0))


@_add(MSM, "no guard for rows whose max is -inf (all states empty): exp(-inf - -inf) gives NaN",
      [r"-\s*inf|−\s*inf|-∞|−∞|infinit", r"empty", r"nan"])
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    return softmax.OnlineState(m, (ds * torch.exp(ms - m)).sum(dim=0))


@_add(MSM, "takes one max over everything (all rows and states) instead of a max per row",
      [r"per[- ]row|each row|every row|row by row|row-wise", r"shape", r"\bdim\b|axis|global"])
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.max()
    return softmax.OnlineState(m, (ds * torch.exp(ms - m)).sum(dim=0))


@_add(MSM, "running fold that updates m before rescaling the accumulator, so the old d is never rescaled",
      [r"rescal", r"running|accumulat|old|previous|earlier"])
def merge_states_many(states):
    m, d = states[0].m.clone(), states[0].d.clone()
    for s in states[1:]:
        m = torch.maximum(m, s.m)
        base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
        d = d * torch.exp(m - base) + s.d * torch.exp(s.m - base)
    return softmax.OnlineState(m, d)


@_add(MSM, "divides exp(m_k) by exp(m*) instead of exp(m_k - m*): overflows for large m",
      [r"overflow", r"\binf|nan|finite", r"large|big"])
def merge_states_many(states):
    ms = torch.stack([s.m for s in states])
    ds = torch.stack([s.d for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(ms) / torch.exp(base)).sum(dim=0))


@_add(MSM, "computes in float64 for accuracy and returns float64 whatever the states' dtype",
      [r"dtype", r"float(32|64)|double|precision"])
def merge_states_many(states):
    ms = torch.stack([s.m.double() for s in states])
    ds = torch.stack([s.d.double() for s in states])
    m = ms.amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return softmax.OnlineState(m, (ds * torch.exp(ms - base)).sum(dim=0))


@_add(MSM, "rescales each state's d in place (mul_), changing the caller's states",
      [r"modif|in[- ]place|mutat|overwr|chang|input"])
def merge_states_many(states):
    m = torch.stack([s.m for s in states]).amax(dim=0)
    base = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    total = torch.zeros_like(states[0].d)
    for s in states:
        s.d.mul_(torch.exp(s.m - base))
        total = total + s.d
    return softmax.OnlineState(m, total)


# ------------------------------------------------------------------ 5.2 flash_hbm_accesses
FHA = "flash_hbm_accesses"


@_add(FHA, "forgets line 2 (writing O = 0, l = 0, m = -inf to HBM at the start)",
      [r"line 2", r"initiali[sz]", r"O\s*=\s*0"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return 2 * N * d + T_c * (3 * N * d + 4 * N)


@_add(FHA, "counts only the matrices Q, K, V, O and leaves out the l and m vectors",
      [r"ℓ|\\ell|statistic|\bl_i\b|\bm_i\b", r"\bm\b.*\bl\b|\bl\b.*\bm\b|max.*sum|sum.*max", r"\b[24]N\b"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return N * d + 2 * N * d + T_c * 3 * N * d


@_add(FHA, "uses floor division (//) for B_c and T_c instead of math.ceil",
      [r"ceil|⌈", r"floor|round", r"partial|last tile"])
def flash_hbm_accesses(N, d, M):
    B_c = M // (4 * d)
    T_c = N // B_c
    return 3 * N * d + 2 * N + T_c * (3 * N * d + 4 * N)


@_add(FHA, "loads K_j, V_j again for every query tile (line 6 counted inside the inner loop)",
      [r"line 6", r"K_j|V_j|\bK\b.*\bV\b", r"once per key tile|inner loop"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    total = N * d + 2 * N
    for j0 in range(0, N, B_c):
        b_c = min(B_c, N - j0)
        for i0 in range(0, N, B_r):
            b_r = min(B_r, N - i0)
            total += 2 * b_c * d
            total += 2 * b_r * d + 2 * b_r + b_r * d + 2 * b_r
    return total


@_add(FHA, "line 8: reads Q_i, l_i, m_i but forgets that O_i is read too (only written)",
      [r"O_i|\bO\b", r"line 8"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return 3 * N * d + 2 * N + T_c * (2 * N * d + 4 * N)


@_add(FHA, "counting loop that charges every tile its full size, even the partial last one",
      [r"partial", r"last", r"actual rows|fewer rows"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    total = N * d + 2 * N
    for _ in range(0, N, B_c):
        total += 2 * B_c * d
        for _ in range(0, N, B_r):
            total += 2 * B_r * d + 2 * B_r + B_r * d + 2 * B_r
    return total


@_add(FHA, "counts the outer loop over query tiles, T = ceil(N / B_r), instead of key tiles T_c = ceil(N / B_c)",
      [r"B_r|B_c|T_c", r"key tile|outer loop|tile size"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    B_r = min(B_c, d)
    T = math.ceil(N / B_r)
    return 3 * N * d + 2 * N + T * (3 * N * d + 4 * N)


@_add(FHA, "uses plain / for T_c (no ceil), so the answer is a float and too small when N % B_c != 0",
      [r"\bint\b|integer|float|type", r"ceil|⌈"])
def flash_hbm_accesses(N, d, M):
    B_c = M / (4 * d)
    T_c = N / B_c
    return 3 * N * d + 2 * N + T_c * (3 * N * d + 4 * N)


@_add(FHA, "counts bytes of fp16 (2 per element) instead of elements",
      [r"byte", r"element", r"twice|2x|×\s*2|double|factor (of )?2"])
def flash_hbm_accesses(N, d, M):
    B_c = math.ceil(M / (4 * d))
    T_c = math.ceil(N / B_c)
    return 2 * (3 * N * d + 2 * N + T_c * (3 * N * d + 4 * N))


# ------------------------------------------------------------------ 7.0 softmax_jacobian
SJ = "softmax_jacobian"


@_add(SJ, "returns only diag(p), forgetting the - p p^T term",
      [r"p\s*p\s*[ᵀT⊤]|p\s*p\^?\s*T|pp\^?T", r"outer", r"off[- ]diag|p_j\s*p_l|-\s*p_l|δ|delta"])
def softmax_jacobian(p):
    return torch.diag_embed(p)


@_add(SJ, "subtracts diag(p*p) (elementwise square) instead of the outer product p p^T",
      [r"outer", r"off[- ]diag", r"p\s*p\s*[ᵀT⊤]|p\s*p\^?\s*T|pp\^?T|p_j\s*p_l"])
def softmax_jacobian(p):
    return torch.diag_embed(p) - torch.diag_embed(p * p)


@_add(SJ, "sign flipped: p p^T - diag(p)",
      [r"sign", r"negat|minus|opposite|flipped"])
def softmax_jacobian(p):
    return p.unsqueeze(-1) * p.unsqueeze(-2) - torch.diag_embed(p)


@_add(SJ, "forgets the diag(p) term: returns -p p^T",
      [r"diag", r"δ|delta|kronecker|identity"])
def softmax_jacobian(p):
    return -(p.unsqueeze(-1) * p.unsqueeze(-2))


@_add(SJ, "uses torch.diag and torch.outer, which only work for one vector (a batch gives the wrong shape or raises)",
      [r"batch", r"shape", r"\(\s*\.\.\.|diag_embed|leading"])
def softmax_jacobian(p):
    if p.dim() == 1:
        return torch.diag(p) - torch.outer(p, p)
    return torch.diag(p) - p.T @ p  # a student's attempt at "batched"


@_add(SJ, "treats p as scores and applies softmax to it again before building diag(p) - p p^T",
      [r"softmax", r"already|probabilit|scores"])
def softmax_jacobian(p):
    q = torch.softmax(p, dim=-1)
    return torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)


@_add(SJ, "computes in float64 and returns float64 whatever p's dtype",
      [r"dtype", r"float(16|32|64)|double|precision"])
def softmax_jacobian(p):
    q = p.double()
    return torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)


# ------------------------------------------------------------------ 8.4 elimination_flops
EF = "elimination_flops"


@_add(EF, "counts a multiply-add as 1 flop instead of 2",
      [r"multiply[- ]add|fused|fma", r"2 flops|two flops|1 flop|one flop"])
def elimination_flops(n):
    # m divisions + m^2 multiply-adds + m for b, m = 1..n-1
    return sum(m + m * m + m for m in range(1, n))


@_add(EF, "forgets the right-hand side b (counts only the matrix: that is LU)",
      [r"\bb\b|b_i|b_k", r"right[- ]hand|rhs|augment", r"\bLU\b|lu_flops"])
def elimination_flops(n):
    return (4 * n ** 3 - 3 * n ** 2 - n) // 6


@_add(EF, "forgets the divisions that compute the multipliers l_ik = a_ik / a_kk",
      [r"multiplier", r"divi", r"l_ik|ℓ"])
def elimination_flops(n):
    return sum(2 * m * m + 2 * m for m in range(1, n))


@_add(EF, "updates the pivot column too (j >= k), counting the entries that become 0",
      [r"pivot column|column k\b|j\s*(>=|≥)\s*k|j\s*>\s*k", r"zero|become 0|without arithmetic", r"below the pivot"])
def elimination_flops(n):
    return sum(m + 2 * m * (m + 1) + 2 * m for m in range(1, n))


@_add(EF, "off by one: sums m = 1..n instead of m = 1..n-1",
      [r"off[- ]by[- ]one", r"n\s*-\s*1|n−1", r"range|bound|index|last step|steps"])
def elimination_flops(n):
    return sum(2 * m * m + 3 * m for m in range(1, n + 1))


@_add(EF, "returns only the leading term 2n^3/3, rounded",
      [r"leading", r"exact", r"lower[- ]order|n\^?2|n²"])
def elimination_flops(n):
    return round(2 * n ** 3 / 3)


@_add(EF, "right formula with / instead of //: returns a float",
      [r"\bint\b|integer", r"float|type"])
def elimination_flops(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) / 6


@_add(EF, "divides each term by 6 separately with //, so the rounding is off",
      [r"round|floor|//|divi|integer", r"off by|small|by \d"])
def elimination_flops(n):
    return 4 * n ** 3 // 6 + 3 * n ** 2 // 6 - 7 * n // 6


@_add(EF, "includes back substitution (n^2 more flops)",
      [r"back[- ]substitution", r"n\^?2|n²|n \* n"])
def elimination_flops(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) // 6 + n * n
