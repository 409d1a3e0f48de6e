"""Checkers for the online softmax exercises of notebook 03 (merge_states, online_softmax): cases and probes."""
from __future__ import annotations

import math

import torch

from labkit import softmax as ref
from labkit.check.core import Case, Checker, Probe, checker
from labkit.check.softmax import (
    _OVERFLOW, _ascending, _float16_case, _nonfinite, _not_normalised, _out, _randn, _shape_probes,
    _shown,
)

# ------------------------------------------------------------------------ merge_states


def _state(*shape, seed, scale=5.0):
    return ref.online_state(_randn(*shape, seed=seed, scale=scale))


EMPTY = ref.OnlineState(torch.full((3,), -math.inf), torch.zeros(3))
# Row 0: a's max (0) is below b's (1); row 1: the other way round. The answer is m = 1, d = 1 + e^-1.
CROSSED = (ref.OnlineState(torch.tensor([0.0, 1.0]), torch.ones(2)),
           ref.OnlineState(torch.tensor([1.0, 0.0]), torch.ones(2)))


def _merged_m(o, p):
    m = o.value[0].detach().double()
    return not torch.equal(m, torch.ones(2, dtype=torch.float64)) and f"m = [{_shown(m)}] for maxima [0, 1] and [1, 0]"


def _merged_d(o, p):
    d, right = o.value[1].detach().double(), 1 + math.exp(-1)
    if torch.allclose(d, torch.full_like(d, right), rtol=1e-5):
        return False
    seen = f"d = [{_shown(d)}] where the answer is [{right:.3g}, {right:.3g}] (each d = 1 against its own max)"
    for row, side in ((0, "a"), (1, "b")):
        if abs(d[row] - 2) < 1e-5:
            seen += f"; {side}'s sum was added unscaled"
        elif d[row] > 2:
            seen += f"; {side}'s sum was scaled up"
    return seen


def _empty_nan(o, p):
    m, d = (t.detach().double() for t in o.value[:2])
    return bool(torch.isnan(m).any() or torch.isnan(d).any()) and f"m = [{_shown(m)}], d = [{_shown(d)}]"


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
    ]
    probes = [
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
    out, n = _out(o)[0], p.args[0].shape[-1]
    if not torch.isfinite(out).all() or (out - out[0]).abs().max() > 1e-6 or out[0] <= 0:
        return False
    k = 1 / out[0].item()
    return abs(k - round(k)) < 1e-3 and round(k) != n and \
        f"each of {n} equal values came out 1/{round(k)}: {round(k)} values were counted in the sum"


def _sums_below_one(o, p):
    sums = _out(o).sum(-1)
    return bool(torch.isfinite(sums).all() and (sums < 1 - 1e-3).any()) and \
        f"values rising along the row, blocks of {p.kwargs['block_size']}: the row sums to {_shown(sums)}"


def _sums_above_one(o, p):
    sums = _out(o).sum(-1)
    return bool(torch.isfinite(sums).all() and (sums > 1 + 1e-3).any()) and \
        f"values rising along the row, blocks of {p.kwargs['block_size']}: the row sums to {_shown(sums)}"


def _not_softmax(o, p):
    out, want = _out(o), ref.safe_softmax(*p.args).double()
    return not torch.allclose(out, want, rtol=1e-3, atol=1e-6) and f"got [{_shown(out)}]"


RISING = torch.arange(8.0).unsqueeze(0) * 2  # the max arrives in the last block, whatever the block size
FALLING = torch.tensor([[80.0, 0.0, -80.0]])  # the max is in the first block, later ones far below it

_RESCALE = ("the running sum l_i must stay a sum of exp(x - m_i) against the running max m_i: when m_i grows, "
            "rescale the old sum by exp(m_old - m_new) before adding the block's exp(x - m_new) (not a sum "
            "against each block's own max)")
_STALE = ("the second pass must normalise every element with the final max m_i and sum l_i: blocks "
          "normalised with the max current when they were first seen come out too large")


@checker
def online_softmax() -> Checker:
    """The online normaliser over blocks of ``block_size`` along ``dim`` (notebook 03). Properties:
    each slice along ``dim`` sums to 1, every value counted once (the last block may be partial);
    the running sum is rescaled whenever the running max grows (max in the last block, blocks of 1 and more);
    m_i is the running max (max in the first block); the second pass uses the final max and sum;
    no overflow for large inputs; ``dim`` honoured; output has x's shape and dtype; x is not modified."""
    falling = torch.linspace(80.0, -80.0, 12).unsqueeze(0) + 0.1 * _randn(1, 12, seed=19)
    cases = [
        Case("one block (block_size larger than the row)", (_randn(3, 10, seed=11),), {"block_size": 16},
             hint="each row sums to 1"),
        Case("blocks of 4, width 10 (last block partial)", (_randn(3, 10, seed=12),), {"block_size": 4},
             hint="every value is counted once, those of the partial last block too"),
        Case("blocks of 1, values rising", (_ascending(2, 9, seed=10),), {"block_size": 1},
             hint="the running sum follows the running max as it grows, element by element"),
        Case("values rising along the row: the max changes in every block", (_ascending(2, 37, seed=13),),
             {"block_size": 5}, hint="the running sum follows the running max as it grows, block by block"),
        Case("values falling along the row: the max is in the first block", (falling,), {"block_size": 3},
             hint="the running max never decreases: later, smaller blocks leave it as it is"),
        Case("large inputs, blocks of 7", (_randn(3, 30, seed=14, scale=1000.0),), {"block_size": 7},
             hint="exp(x) overflows for x > 88.7: the result must stay finite for large x"),
        Case("dim=0, blocks of 3", (_randn(8, 3, seed=15),), {"dim": 0, "block_size": 3},
             hint="blocks run along `dim`, not the last axis"),
        _float16_case("float16 input, blocks of 8", block_size=8),
    ]
    probes = _shape_probes(block_size=2) + [
        Probe("5 equal values, blocks of 4", (torch.zeros(1, 5),), {"block_size": 4},
              "every value must be counted once, the last, partial block too (width 5, block_size 4): loop "
              "start over range(0, n, block_size) and slice x[..., start:start + block_size]", _equal_values_counted),
        *[Probe(f"values rising, blocks of {b}", (RISING,), {"block_size": b}, _RESCALE, _sums_below_one)
          for b in (1, 4)],
        *[Probe(f"values rising, blocks of {b}", (RISING,), {"block_size": b}, _STALE, _sums_above_one)
          for b in (1, 4)],
        Probe("values 80, 0, -80, blocks of 1", (FALLING,), {"block_size": 1}, "m_i must be the running max, "
              "max(m_i, block max): the largest value seen so far, not the current block's max", _not_softmax),
        Probe("values around ±1000, blocks of 4", (_randn(2, 8, seed=97, scale=1000.0),), {"block_size": 4},
              _OVERFLOW.replace("each row's max", "the running max m_i"), _nonfinite),
        Probe("moderate rows, blocks of 2", (_randn(3, 5, seed=98),), {"block_size": 2},
              "the rows do not sum to 1: divide exp(x - m_i) by the final running sum l_i", _not_normalised),
    ]
    return Checker("online_softmax", cases, ref.online_softmax, probes)

