"""Checkers for the online softmax exercises of notebook 03 (merge_states, online_softmax): cases and probes."""
from __future__ import annotations

import functools
import math

import torch

from labkit import softmax as ref
from labkit.check.evidence import overflow, property_only, reads
from labkit.check.core import Case, Checker, Probe, checker
from labkit.check.twins import twin
from labkit.check.softmax import (
    DEFINITION, OVERFLOW, ascending, base2_probe, float16_case, float64_case, float64_probe, nonfinite,
    not_normalised, output_of, randn, same_values, shape_probes, shown,
)

# ------------------------------------------------------------------------ merge_states


def _state(*shape, seed, scale=5.0):
    return ref.online_state(randn(*shape, seed=seed, scale=scale))


EMPTY = ref.OnlineState(torch.full((3,), -math.inf), torch.zeros(3))
# Row 0: a's max (0) is below b's (1); row 1: the other way round. The answer is m = 1, d = 1 + e^-1.
CROSSED = (ref.OnlineState(torch.tensor([0.0, 1.0]), torch.ones(2)),
           ref.OnlineState(torch.tensor([1.0, 0.0]), torch.ones(2)))


def _swapped_pair(o, p):
    """(d, m) returned for (m, d): the first value is the right d, the second the right m."""
    m, d = (t.detach().double() for t in o.value[:2])
    return bool(torch.allclose(m, torch.full_like(m, 1 + math.exp(-1))) and torch.allclose(d, torch.ones_like(d))) \
        and f"first value [{shown(m)}], second [{shown(d)}]: the merged d and m, in that order"


def _merged_m(o, p):
    m = o.value[0].detach().double()
    return not torch.equal(m, torch.ones(2, dtype=torch.float64)) and f"m = [{shown(m)}] for maxima [0, 1] and [1, 0]"


def _merged_d(o, p):
    d, right = o.value[1].detach().double(), 1 + math.exp(-1)
    if torch.allclose(d, torch.full_like(d, right), rtol=1e-5):
        return False
    seen = f"d = [{shown(d)}] where the answer is [{right:.3g}, {right:.3g}] (each d = 1 against its own max)"
    for row, side in ((0, "a"), (1, "b")):
        if abs(d[row] - 2) < 1e-5:
            seen += f"; {side}'s sum was added unscaled"
        elif d[row] > 2:
            seen += f"; {side}'s sum was scaled up"
    return seen


@reads("nan")
def _empty_nan(o, p):
    m, d = (t.detach().double() for t in o.value[:2])
    return bool(torch.isnan(m).any() or torch.isnan(d).any()) and f"m = [{shown(m)}], d = [{shown(d)}]"


@checker
def merge_states() -> Checker:
    """m = max(m_a, m_b), d = d_a e^(m_a - m) + d_b e^(m_b - m) (notebook 03). Properties:
    m is the larger max; both sums are rescaled to it by a factor <= 1, whichever block holds the larger max;
    an empty block (m = -inf, d = 0) is the identity, also merged with another empty one; a and b are not modified."""
    a, b = _state(3, 8, seed=61), _state(3, 8, seed=62, scale=20.0)
    mixed = ref.OnlineState(torch.tensor([-math.inf, 2.0, -math.inf]), torch.tensor([0.0, 1.5, 0.0]))
    cases = [
        Case("two blocks of a row", (a, b), hint="d is the sum of exp(x - m) over both blocks, m their max"),
        Case("the same blocks swapped", (b, a), hint="the merge is symmetric: either block may hold the larger max"),
        Case("first block empty (m = -inf, d = 0)", (EMPTY, a), hint="an empty block leaves the other unchanged"),
        Case("both blocks empty", (EMPTY, EMPTY), hint="the merge of two empty blocks is empty: m = -inf, d = 0"),
        Case("some rows empty in both blocks", (mixed, EMPTY), hint="rows merge independently; empty rows stay empty"),
        Case("float64 states (judged at float64 tolerance)",
             (ref.OnlineState(a.m.double(), a.d.double()), ref.OnlineState(b.m.double(), b.d.double())),
             hint="keep the states' dtype: float64 states merge in float64"),
    ]
    probes = [
        Probe("maxima [0, 1] and [1, 0], d = 1", CROSSED, {}, "return the pair in the order (m, d), the max "
              "first (an OnlineState(m, d) keeps the names)", _swapped_pair),
        Probe("maxima [0, 1] and [1, 0]", CROSSED, {}, "the merged max is the larger of the two: "
              "m = max(m_a, m_b) (torch.maximum)", _merged_m),
        Probe("maxima [0, 1] and [1, 0], d = 1", CROSSED, {}, "each d is a sum against its own max: rescale "
              "both to the new max by exp(m_own - m) (<= 1) before adding: d = d_a exp(m_a - m) + d_b exp(m_b - m)",
              _merged_d),
        Probe("two empty blocks", (EMPTY, EMPTY), {}, "an empty block (m = -inf, d = 0) must merge to m = -inf, "
              "d = 0: -inf - (-inf) is NaN, so subtract 0 instead of an infinite max", _empty_nan),
    ]
    return Checker("merge_states", cases, ref.merge_states, probes)


# ---------------------------------------------------------------------- online_softmax


def _equal_values_counted(o, p):
    """A row of n equal values must give 1/n each; 1/k says k values were counted in the sum."""
    out, n = output_of(o)[0], p.args[0].shape[-1]
    if not torch.isfinite(out).all() or (out - out[0]).abs().max() > 1e-6 or out[0] <= 0:
        return False
    k = 1 / out[0].item()
    return abs(k - round(k)) < 1e-3 and round(k) != n and \
        f"each of {n} equal values came out 1/{round(k)}: {round(k)} values were counted in the sum"


def blocked_softmax(x: torch.Tensor, block: int, mistake: str = "") -> torch.Tensor:
    """Two-pass online softmax of each row of x over blocks of ``block`` columns, in float32 (float64 for float64
    x), with one ``mistake``: "l not rescaled" (l_i += sum exp(x - m_new), the old sum kept as it was), "l inverted"
    (rescaled by exp(m_new - m_i)), "l own max" (each block's sum against its own max), "block max" (m_i is each
    block's own max, not the running one), "stale" (the second pass normalises each block with the m_i, l_i current
    after it), "stale max" (with that m_i and the final l_i), "own max" (the second pass uses each block's own max
    with the final l_i); "" is right. The twins of the running-max, running-sum and
    second-pass mistakes, for the online softmax checkers and the Triton kernel's (block 64)."""
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    m = torch.full(x.shape[:-1], -math.inf, dtype=x.dtype)
    l = torch.zeros_like(m)
    after = []
    for start in range(0, x.shape[-1], block):
        xb = x[..., start:start + block]
        m_new = xb.amax(-1) if mistake == "block max" else torch.maximum(m, xb.amax(-1))
        if mistake == "l not rescaled":
            l = l + torch.exp(xb - m_new[..., None]).sum(-1)
        elif mistake == "l inverted":  # exp(m_new - m_i), 0 while m_i is still -inf
            l = l * torch.where(torch.isinf(m), 0.0, torch.exp(m_new - m)) + torch.exp(xb - m_new[..., None]).sum(-1)
        elif mistake == "l own max":
            l = l + torch.exp(xb - xb.amax(-1, keepdim=True)).sum(-1)
        else:
            l = l * torch.exp(m - m_new) + torch.exp(xb - m_new[..., None]).sum(-1)
        m = m_new
        after.append((m.clone(), l.clone()))
    out = []
    for i, start in enumerate(range(0, x.shape[-1], block)):
        xb = x[..., start:start + block]
        mb, lb = after[i] if mistake == "stale" else (after[i][0], l) if mistake == "stale max" else (m, l)
        if mistake == "own max":
            mb = xb.amax(-1)
        out.append(torch.exp(xb - mb[..., None]) / lb[..., None])
    return torch.cat(out, -1)


def blocked_twin(*mistakes: str, block: int | None = None):
    """A twin of ``blocked_softmax``'s mistakes, on the probe's x with its block_size (or ``block``)."""
    def written_out(mistake):
        def fn(x, dim=-1, block_size=128):
            return blocked_softmax(x.movedim(dim, -1), block or block_size, mistake).movedim(-1, dim).to(x.dtype)
        return fn
    return twin(*(written_out(m) for m in mistakes), compare=same_values)


RISING = torch.arange(8.0).unsqueeze(0) * 2  # the max arrives in the last block, whatever the block size
FALLING = torch.tensor([[80.0, 0.0, -80.0]])  # the max is in the first block, later ones far below it
UPHILL = FALLING.flip(-1)  # FALLING's control: the same values rising, where each block's max is the running max

_RESCALE = ("the running sum l_i must stay a sum of exp(x - m_i) against the running max m_i: when m_i grows, "
            "rescale the old sum by exp(m_old - m_new) before adding the block's exp(x - m_new) (not a sum "
            "against each block's own max)")
_STALE = ("the second pass must normalise every element with the final max m_i and sum l_i: blocks "
          "normalised with the max current when they were first seen come out too large")


ROWS_ONLINE = ("the rows do not sum to 1: o = exp(x - m_i) / l_i with the final m_i and l_i; any of its three parts "
               "may be off: the numerator exp(x - m_i) (minus the final max), l_i (l_i = l_i * exp(m_old - m_new) + "
               "sum(exp(x - m_new)) per block, every column counted once), or the division by l_i")
FIRST_MASKED = torch.cat([torch.full((2, 4), -math.inf), randn(2, 3, seed=17)], 1)  # a causal row's masked keys


@checker
def online_softmax() -> Checker:
    """The online normaliser over blocks of ``block_size`` along ``dim`` (notebook 03). Properties:
    each slice along ``dim`` sums to 1, every value counted once (the last block may be partial);
    the running sum is rescaled whenever the running max grows (max in the last block, blocks of 1 and more);
    m_i is the running max (max in the first block); the second pass uses the final max and sum;
    no overflow for large inputs; ``dim`` honoured; output has x's shape and dtype, float64 computed in float64;
    x is not modified."""
    falling = torch.linspace(80.0, -80.0, 12).unsqueeze(0) + 0.1 * randn(1, 12, seed=19)
    cases = [
        Case("one block (block_size larger than the row)", (randn(3, 10, seed=11),), {"block_size": 16},
             hint=DEFINITION),
        Case("blocks of 4, width 10 (last block partial)", (randn(3, 10, seed=12),), {"block_size": 4},
             hint="several blocks, the last one partial: carry m_i and l_i from block to block, l_i = l_i * "
                  "exp(m_old - m_new) + sum(exp(x - m_new)), every value counted once, the partial last block's too"),
        Case("blocks of 1, values rising", (ascending(2, 9, seed=10),), {"block_size": 1},
             hint="the running sum follows the running max as it grows, element by element"),
        Case("values rising along the row: the max changes in every block", (ascending(2, 37, seed=13),),
             {"block_size": 5}, hint="the running sum follows the running max as it grows, block by block"),
        Case("values falling along the row: the max is in the first block", (falling,), {"block_size": 3},
             hint="the running max never decreases: later, smaller blocks leave it as it is"),
        Case("large inputs, blocks of 7", (randn(3, 30, seed=14, scale=1000.0),), {"block_size": 7},
             hint="exp(x) overflows for x > 88.7: the result must stay finite for large x"),
        Case("dim=0, blocks of 3", (randn(8, 3, seed=15),), {"dim": 0, "block_size": 3},
             hint="blocks run along `dim`, not the last axis"),
        Case("3-D input, dim=0, blocks of 3", (randn(7, 2, 4, seed=17),), {"dim": 0, "block_size": 3},
             hint="blocks run along `dim`, and the result has the input's layout: move `dim` last and back "
                  "with movedim(dim, -1) and movedim(-1, dim)"),
        float16_case("float16 input, blocks of 8", block_size=8),
        float64_case("float64 input, blocks of 4 (judged at float64 tolerance)", block_size=4),
        Case("rows around -1000, blocks of 2", (randn(2, 5, seed=16, shift=-1000.0),), {"block_size": 2},
             hint="start the running max at -inf, not 0: against 0 every exp(x) of a row around -1000 underflows, "
                  "and the row comes out 0/0"),
        Case("the first block all -inf (masked), blocks of 4", (FIRST_MASKED,), {"block_size": 4},
             hint="while the running max is still -inf, exp(m_i - m_new) is exp(-inf + inf) = NaN: rescale by "
                  "exp(m_i - m) with m = 0 where the max is infinite"),
    ]
    probes = shape_probes(block_size=2) + [
        base2_probe(block_size=2),
        Probe("5 equal values, blocks of 4", (torch.zeros(1, 5),), {"block_size": 4},
              "every value must be counted once, the last, partial block too (width 5, block_size 4): loop "
              "start over range(0, n, block_size) and slice x[..., start:start + block_size]", _equal_values_counted),
        *[Probe(f"values rising, blocks of {b}", (RISING,), {"block_size": b}, _RESCALE,
                blocked_twin("l not rescaled", "l inverted", "l own max")) for b in (1, 4)],
        *[Probe(f"values rising, blocks of {b}", (RISING,), {"block_size": b}, _STALE,
                blocked_twin("stale", "stale max"))
          for b in (1, 4)],
        Probe("values 80, 0, -80, blocks of 1", (FALLING,), {"block_size": 1}, "m_i must be the running max, "
              "max(m_i, block max): the largest value seen so far, not the current block's max",
              blocked_twin("block max"), control=(UPHILL,)),
        Probe("values around ±1000, blocks of 4", (randn(2, 8, seed=97, scale=1000.0),), {"block_size": 4},
              OVERFLOW.replace("each row's max", "the running max m_i"), nonfinite),
        Probe("moderate rows, blocks of 2", (randn(3, 5, seed=98),), {"block_size": 2},
              ROWS_ONLINE, property_only(not_normalised)),
        float64_probe(ref.online_softmax, block_size=4),
    ]
    return Checker("online_softmax", cases, ref.online_softmax, probes)



# ------------------------------------------------------------------- merge_states_many


def merge_states_fold(states) -> ref.OnlineState:
    """The reference for merge_states_many: labkit's pairwise merge_states folded left to right.

    By associativity every grouping gives the same state (up to rounding), so the closed form a
    student derives is judged against the pairwise merges themselves.
    """
    return functools.reduce(ref.merge_states, states)


def _states(maxima, sums, dtype=torch.float32):
    """One-row states (m_k, d_k), one per entry of maxima and sums."""
    return [ref.OnlineState(torch.tensor([m], dtype=dtype), torch.tensor([d], dtype=dtype))
            for m, d in zip(maxima, sums)]


# Maxima 2, 0, 1 with d = 1 each: the answer is m = 2, d = 1 + e^-2 + e^-1 (the largest max comes first).
SPREAD = _states([2.0, 0.0, 1.0], [1.0, 1.0, 1.0])
SPREAD_D = 1 + math.exp(-2) + math.exp(-1)


def _many_m(o, p):
    m = o.value[0].detach().double()
    return not torch.equal(m, torch.full_like(m, 2.0)) and \
        f"m = [{shown(m)}] for maxima 2, 0, 1 (the first is the largest)"


def _many_d(o, p):
    d = o.value[1].detach().double()
    if torch.allclose(d, torch.full_like(d, SPREAD_D), rtol=1e-5):
        return False
    seen = f"d = [{shown(d)}] where the answer is {SPREAD_D:.4g} (maxima 2, 0, 1, each d = 1)"
    if torch.allclose(d, torch.full_like(d, 3.0), rtol=1e-5):
        seen += "; the sums were added unscaled"
    elif bool((d > 3 + 1e-5).all()):
        seen += "; sums were scaled up"
    elif torch.allclose(d, torch.full_like(d, 1 + math.exp(-2)), rtol=1e-5):
        seen += "; only the first two states were merged"
    return seen


# Two rows at very different scales: row 0's maxima 0, 1, row 1's 100, 101 (each d = 1).
ROWS = [ref.OnlineState(torch.tensor([0.0, 100.0]), torch.ones(2)),
        ref.OnlineState(torch.tensor([1.0, 101.0]), torch.ones(2))]
# Maxima rising along the list, each d = 1: the answer is m = 2, d = e^-2 + e^-1 + 1.
RISING3 = _states([0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
# Maxima around 1000 in float32: exp(m_k) alone overflows (float32 holds up to e^88.7).
LARGE = _states([1000.0, 998.0, 999.0], [1.0, 2.0, 1.5])


@reads("nan", "shape")
def _one_max_per_row(o, p):
    m, d = (t.detach().double() for t in o.value[:2])
    if m.shape != (2,):
        return f"m has shape {tuple(m.shape)} for states of 2 rows"
    if not torch.equal(m, torch.tensor([1.0, 101.0], dtype=torch.float64)):
        return f"m = [{shown(m)}] where each row's max is [1, 101]"
    return bool(d[0] < 1e-3) and f"row 0's d = {d[0].item():.3g}: it was rescaled to row 1's max (101)"


def _not_overall_max(o, p):
    m = o.value[0].detach().double()
    return not torch.allclose(m, torch.full_like(m, 2.0)) and f"m = [{shown(m)}] for maxima 0, 1, 2"


def _rising_d(o, p):
    """d wrong where m is right: the sums were not brought to the overall max as it grew."""
    if not torch.allclose(o.value[0].detach().double(), torch.tensor(2.0, dtype=torch.float64)):
        return False
    d, right = o.value[1].detach().double(), sum(math.exp(-k) for k in range(3))
    if torch.allclose(d, torch.full_like(d, right), rtol=1e-5):
        return False
    seen = f"d = [{shown(d)}] where the answer is {right:.4g} (maxima 0, 1, 2, each d = 1)"
    if torch.allclose(d, torch.full_like(d, 3.0), rtol=1e-5):
        seen += "; the earlier sums were never rescaled as the max grew"
    return seen


@overflow
def _large_nonfinite(o, p):
    m, d = (t.detach().double() for t in o.value[:2])
    return not bool(torch.isfinite(d).all() and torch.isfinite(m).all()) and \
        f"m = [{shown(m)}], d = [{shown(d)}] for maxima 1000, 998, 999"


@checker
def merge_states_many() -> Checker:
    """The closed form of merging K states: m = max_k m_k, d = sum_k d_k e^(m_k - m) (notebook 03). Properties:
    the same state as merge_states folded in any grouping; m is the largest max wherever it sits in the list;
    every d_k is rescaled to m by a factor <= 1, computed as one exponent (no overflow for maxima around 1000);
    m is one max per row; every state counts (one state is returned as it is);
    empty states (m = -inf, d = 0) are the identity, also when every state is empty; the states' dtype is kept
    (float64 stays float64); the states are not modified."""
    big = [_state(4, 7, seed=70 + k, scale=3.0 * (k + 1)) for k in range(5)]
    rising = _states([-3.0, 0.0, 4.0, 9.0], [2.0, 1.0, 3.0, 1.5])
    empty = ref.OnlineState(torch.full((2,), -math.inf), torch.zeros(2))
    some = [ref.OnlineState(torch.tensor([-math.inf, 1.0]), torch.tensor([0.0, 2.0])), empty,
            ref.OnlineState(torch.tensor([-math.inf, 3.0]), torch.tensor([0.0, 1.0]))]
    f64 = [ref.online_state(randn(3, 6, seed=80 + k, scale=10.0, dtype=torch.float64)) for k in range(4)]
    cases = [
        Case("one state (returned as it is)", ([big[0]],), hint="the merge of one state is that state"),
        Case("two states (as merge_states)", (big[:2],), hint="for two states the answer is merge_states(a, b)"),
        Case("five states of 4 rows", (big,), hint="m is the largest m_k; d = sum_k d_k exp(m_k - m)"),
        Case("maxima rising along the list (the largest comes last)", (rising,),
             hint="every d_k is rescaled to the overall max, whichever state holds it"),
        Case("the largest max comes first", (SPREAD,), hint="every d_k is rescaled to the overall max"),
        Case("some rows empty in every state", (some,),
             hint="empty states (m = -inf, d = 0) leave the others unchanged; a row empty everywhere stays empty"),
        Case("every state empty", ([empty, empty, empty],), hint="the merge of empty states is empty: m = -inf, d = 0"),
        Case("float64 states (judged at float64 tolerance)", (f64,),
             hint="float64 states give a float64 state, computed in float64"),
        Case("float32 maxima around 1000", (LARGE,),
             hint="exp(x) overflows in float32 for x > 88.7: d must stay finite for large maxima"),
    ]
    probes = [
        Probe("maxima 2, 0, 1", (SPREAD,), {}, "return the pair in the order (m, d), the max first (an "
              "OnlineState(m, d) keeps the names): yours is the merged (d, m)",
              twin(lambda states: tuple(merge_states_fold(states))[::-1])),
        Probe("maxima 2, 0, 1", (SPREAD,), {}, "m is the largest of all the maxima, wherever it sits in the list: "
              "m = max_k m_k (stack the m_k and take amax over the states)", _many_m),
        Probe("maxima 2, 0, 1, d = 1", (SPREAD,), {}, "each d_k is a sum against its own max m_k: rescale every one "
              "to the overall max by exp(m_k - m) (<= 1) before adding: d = sum_k d_k exp(m_k - m)", _many_d),
        Probe("maxima 0, 1, 2, d = 1", (RISING3,), {}, "the merged m is the largest m_k over all the states, "
              "here the last one (not the first, nor the last merged)", _not_overall_max),
        Probe("maxima 0, 1, 2, d = 1", (RISING3,), {}, "when the max grows along the list, the d accumulated so "
              "far must be rescaled to it: a running merge multiplies the running d by exp(m_old - m_new) before "
              "adding d_k exp(m_k - m_new) (keep m_old until then)", _rising_d),
        Probe("maxima 1000, 998, 999 in float32", (LARGE,), {}, "exp(m_k) / exp(m) overflows (inf / inf is NaN) "
              "for large maxima: compute the factor as one exponent, exp(m_k - m) <= 1", _large_nonfinite),
        Probe("row 0: maxima 0, 1; row 1: maxima 100, 101", (ROWS,), {}, "m is one max per row: take the max "
              "over the states only (amax(dim=0) of the stacked m_k), not over all rows too; a row rescaled to "
              "another row's max underflows", _one_max_per_row),
        Probe("three empty states", ([empty, empty, empty],), {}, "empty states (m = -inf, d = 0) must merge to "
              "m = -inf, d = 0: -inf - (-inf) is NaN, so subtract 0 where the overall max is -inf", _empty_nan),
    ]
    return Checker("merge_states_many", cases, merge_states_fold, probes)
