"""Checkers for the Triton softmax kernels of notebooks 02-03, judged through the scaffold's wrapper fn(x).

The scaffold launches one program per row: softmax_triton with one block of next_power_of_2(width)
columns, online_softmax_triton with blocks of 64. The probes are single rows (the interpreter is slow)
whose widths are not powers of two and cross a block boundary, so masked lanes and the loop over blocks
show in the row sums.
"""
from __future__ import annotations

import math

import torch

from labkit import softmax as ref
from labkit.check.evidence import property_only
from labkit.check.kernel_runs import on_course_device
from labkit.check.core import Case, Checker, Probe, checker
from labkit.check.softmax import DEFINITION, OVERFLOW, all_ones, base2_probe, nonfinite, output_of, randn, shown
from labkit.check.softmax_online import ROWS_ONLINE, blocked_twin

_MASK = ("masked lanes must load as -inf (tl.load(..., mask=offs < n_cols, other=-float('inf'))): a lane "
         "padded with 0 adds exp(0 - m) to the sum")
_MASK_OR_TWICE = ("more lanes were counted than the row has; two mistakes do this: masked lanes padded with 0 "
                  "(load them as -inf: tl.load(..., mask=offs < n_cols, other=-float('inf'))), or a block counted "
                  "twice while another is skipped (each block's offsets are start + tl.arange(0, BLOCK))")
_NOT_NORMALISED = "the rows do not sum to 1: divide exp(x - m) by the sum of exp(x - m) over the row"


def _equal_row(o, p):
    """A row of n equal values: every output must be 1/n; the sum says how many lanes were counted."""
    out, n = output_of(o)[0], p.args[0].shape[-1]
    total = out.sum().item()
    return total < 1 - 1e-3 and f"{n} equal values sum to {total:.3g} (~{n}/{round(n / total)} if " \
        f"{round(n / total)} lanes were counted)" if total > 0 else False


def _each_is_one(o, p):
    out = output_of(o)
    return all_ones(out, 1e-3) and f"{out.shape[-1]} equal values each came out 1, not 1/{out.shape[-1]}"


def not_normalised(o, p):
    """Finite rows that do not sum to 1 (an inf comes from elsewhere: no division leaves exp(x - m) <= 1)."""
    sums = output_of(o).sum(-1)
    return bool(torch.isfinite(sums).all()) and not all_ones(sums) and f"rows sum to {shown(sums)}"


def _triton_cases(widths: tuple[int, ...]) -> list[Case]:
    cases = [Case(f"width {w}", (randn(2, w, seed=30 + w),),
                  hint=DEFINITION.replace("over `dim`", "at any width")) for w in widths]
    return cases + [
        Case("large inputs (around ±1000)", (randn(2, 100, seed=41, scale=1000.0),),
             hint="exp(x) overflows for x > 88.7: the result must stay finite for large x"),
        Case("float16 input, width 100", (randn(2, 100, seed=42, dtype=torch.float16),),
             hint="float16 rows are computed in float32 and stored as float16"),
        Case("one row, width 1", (randn(1, 1, seed=43),), hint="softmax of one value is 1"),
    ]


@checker
def softmax_triton() -> Checker:
    """A fused row-softmax kernel, one block per row, through the wrapper fn(x) (notebook 02). Properties:
    each row sums to 1 at any width (masked lanes count 0); no overflow for large inputs;
    float16 rows give float16 results computed in float32."""
    probes = [
        base2_probe(),
        Probe("7 equal values (block of 8)", (torch.zeros(1, 7),), {}, _MASK, _equal_row),
        Probe("7 equal values (block of 8)", (torch.zeros(1, 7),), {}, _NOT_NORMALISED, not_normalised),
        Probe("values around ±1000", (randn(1, 8, seed=44, scale=1000.0),), {}, OVERFLOW.replace(
            "each row's max", "the row max (tl.max)"), nonfinite),
        Probe("8 random values", (randn(1, 8, seed=45),), {}, _NOT_NORMALISED, not_normalised),
    ]
    return Checker("softmax_triton", _triton_cases((7, 64, 100)), ref.safe_softmax, probes,
                   prepare=on_course_device)


RISING = torch.linspace(0.0, 20.0, 100).unsqueeze(0)  # the max arrives in the second block of 64
FIRST_MASKED = torch.cat([torch.full((1, 64), -math.inf), torch.linspace(-3.0, 3.0, 36).unsqueeze(0)], 1)
FALLING = torch.cat([torch.full((1, 64), 80.0), torch.full((1, 36), -80.0)], 1)  # max in the first block
UPHILL = torch.cat([torch.full((1, 64), -80.0), torch.full((1, 36), 80.0)], 1)  # its control: each block's max runs


def _only_last_block(o, p):
    """100 equal values: 1/36 each says the sum kept only the last block (36 columns after a block of 64)."""
    out = output_of(o)[0]
    k = 1 / out[0].item() if out[0] > 0 else 0
    last = out.numel() - (out.numel() - 1) // 64 * 64  # the last block's width
    return bool((out - out[0]).abs().max() < 1e-6) and round(k) == last and abs(k - round(k)) < 1e-2 and \
        f"100 equal values came out 1/{round(k)} each: l_i counted only {round(k)} of them"


@checker
def online_softmax_triton() -> Checker:
    """An online-softmax kernel looping over column blocks, through the wrapper fn(x) (notebook 03). Properties:
    each row sums to 1 at any width (masked lanes count 0, every block counted);
    l_i is rescaled whenever m_i grows (max in a later block); m_i is the running max (max in the first block);
    the second loop uses the final m_i and l_i; no overflow for large inputs; float16 rows give float16."""
    cases = _triton_cases((7, 100, 300))
    cases.insert(3, Case("values rising along a row of 300", (torch.linspace(-20.0, 20.0, 300).unsqueeze(0),),
                         hint="l_i follows the running max m_i as it grows, block by block"))
    cases.insert(4, Case("values falling: the max is in the first block", (FALLING,),
                         hint="the running max never decreases: later, smaller blocks leave it as it is"))
    cases.append(Case("rows around -1000", (randn(2, 100, seed=46, shift=-1000.0),),
                      hint="start m_i at -inf, not 0: against 0 every exp(x) of a row around -1000 underflows, and "
                           "the row comes out 0/0"))
    cases.append(Case("the first block of 64 all -inf (masked)", (FIRST_MASKED,),
                      hint="while m_i is still -inf, exp(m_i - m_new) is exp(-inf + inf) = NaN: rescale with a max "
                           "of 0 where it is infinite (tl.where)"))
    zeros = torch.zeros(1, 100)
    probes = [
        base2_probe(),
        Probe("100 equal values (blocks of 64)", (zeros,), {}, _MASK_OR_TWICE, _equal_row),
        Probe("100 equal values (blocks of 64)", (zeros,), {}, "not normalised: divide exp(x - m_i) by l_i in "
              "the second loop", _each_is_one),
        Probe("100 equal values (blocks of 64)", (zeros,), {}, "the first loop's l_i kept only the last block: "
              "the old sum must be multiplied by exp(m_i - m_new) and then m_i updated (m_i = m_new); with m_i "
              "never updated the factor is exp(-inf) = 0", _only_last_block),
        Probe("100 rising values", (RISING,), {}, "l_i not rescaled: when the running max grows from m_i to "
              "m_new, l_i = l_i * exp(m_i - m_new) + sum(exp(x - m_new))",
              blocked_twin("l not rescaled", "l inverted", "l own max", block=64)),
        Probe("100 rising values", (RISING,), {}, "the second loop must normalise every block with the final "
              "m_i and l_i of the first loop, not a max of its own or the block's",
              blocked_twin("stale", "stale max", "own max", block=64)),
        Probe("64 values of 80, then 36 of -80", (FALLING,), {}, "m_i must be the running max, "
              "tl.maximum(m_i, tl.max(x)): the largest value seen so far, not the current block's",
              blocked_twin("block max", block=64),
              control=(UPHILL,)),
        Probe("values around ±1000", (randn(1, 8, seed=44, scale=1000.0),), {}, OVERFLOW.replace(
            "each row's max", "the running max m_i"), nonfinite),
        Probe("8 random values", (randn(1, 8, seed=45),), {}, ROWS_ONLINE, property_only(not_normalised)),
    ]
    return Checker("online_softmax_triton", cases, ref.safe_softmax, probes, prepare=on_course_device)
