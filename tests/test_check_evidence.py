"""labkit.check.evidence and the engine's order of hints: a hint names a mistake only from an outcome that can show it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkit.check.core import Case, Checker, CheckFailed, Probe
from labkit.check.evidence import (NAN, RAISED, calm, can_read, holds_nan, nan_seen, overflow, property_only, raises_like,
                                   reads, shape_of)
from labkit.check.core import Outcome


def _hint(checker: Checker, fn) -> str:
    with pytest.raises(CheckFailed) as err:
        checker.check(fn)
    return err.value.hint


def _double(x):
    return 2 * x


def _checker(probes, cases=None) -> Checker:
    """fn(x) = 2x, judged on x = [1, 2] then x = [3, 4] (the second case's hint: 'SECOND')."""
    cases = cases or [Case("first", (torch.tensor([1.0, 2.0]),), hint="FIRST"),
                      Case("second", (torch.tensor([3.0, 4.0]),), hint="SECOND")]
    return Checker("double", cases, _double, probes)


def _probe(hint, violated, x=(5.0, 6.0), **kw) -> Probe:
    return Probe("probe", (torch.tensor(x),), {}, hint, violated, **kw)


def test_a_raise_is_no_evidence_unless_the_probe_reads_one():
    says_anything = lambda o, p: "seen"  # noqa: E731 - a probe that would speak on any outcome
    checker = _checker([_probe("NAMED", says_anything)])

    def raises(x):
        raise ValueError("boom")
    assert _hint(checker, raises) == RAISED  # neither the probe nor the first case's hint speaks for an exception
    assert _hint(_checker([_probe("NAMED", reads("error")(says_anything))]), raises) == "NAMED (seen: seen)"


def test_raises_like_needs_the_twins_very_error():
    def twin(x):
        return x @ torch.ones(3)  # (2,) @ (3,): a size mismatch naming these shapes

    checker = _checker([_probe("THE TWIN'S MISTAKE", raises_like(twin), x=(5.0, 6.0))])
    assert _hint(checker, lambda x: x @ torch.ones(3)).startswith("THE TWIN'S MISTAKE")
    assert _hint(checker, lambda x: x @ torch.ones(4)) == RAISED  # a size error too, but not the twin's
    assert _hint(checker, lambda x: x.reshape(3)) == RAISED


def test_nan_and_wrong_shapes_are_read_only_by_probes_marked_to():
    seen_anything = lambda o, p: "seen"  # noqa: E731
    nan_out = Outcome(value=torch.tensor([float("nan"), 1.0]))
    assert not can_read(seen_anything, nan_out, lambda: torch.zeros(2))
    assert can_read(reads("nan")(lambda o, p: ""), nan_out, lambda: torch.zeros(2))
    wide = Outcome(value=torch.zeros(3))
    assert not can_read(seen_anything, wide, lambda: torch.zeros(2))
    assert can_read(reads("shape")(lambda o, p: ""), wide, lambda: torch.zeros(2))
    assert can_read(seen_anything, Outcome(value="text"), lambda: torch.zeros(2))  # no shape known: never refused
    assert not can_read(seen_anything, Outcome(error="ValueError: x"), lambda: torch.zeros(2))


def test_shape_of_and_holds_nan():
    assert shape_of((torch.zeros(2, 3), np.zeros(4), 1.5)) == ((2, 3), (4,), ())
    assert shape_of(object()) is None and shape_of([torch.zeros(1), "a"]) is None
    assert holds_nan((torch.zeros(2), [np.array([1.0, math.nan])]))
    assert not holds_nan((torch.zeros(2), np.arange(3), 1.0))


def test_nan_observation_only_for_a_nan_where_the_result_is_a_number():
    assert nan_seen(torch.tensor([math.nan]), "output: NaN mismatch at index (0,) (got nan, expected 0.5)") == \
        NAN.format(where=" (at index (0,))")
    assert nan_seen(torch.tensor([0.5]), "output: NaN mismatch at index (0,) (got 0.5, expected nan)") == ""
    assert nan_seen(torch.tensor([math.nan]), "output: worst error 1 at index (0,)") == ""


def test_calm_scales_floats_to_at_most_one_and_leaves_the_rest():
    x, n = calm((torch.tensor([1000.0, -2000.0]), 3))
    assert torch.equal(x, torch.tensor([0.5, -1.0])) and n == 3
    small, = calm((torch.tensor([0.25]),))
    assert torch.equal(small, torch.tensor([0.25]))


def test_an_overflow_probe_speaks_only_when_the_function_is_right_on_its_calm_control():
    def exp_overflow(x):  # right for small x, inf for large: the mistake an overflow probe names
        return torch.where(x.abs() > 100, torch.tensor(math.inf), 2 * x)

    nonfinite = overflow(lambda o, p: not torch.isfinite(o.value).all() and "inf")
    cases = [Case("first", (torch.tensor([1.0, 2.0]),), hint="FIRST"),
             Case("large", (torch.tensor([300.0, 400.0]),), hint="")]
    checker = _checker([_probe("OVERFLOW", nonfinite, x=(500.0, -600.0))], cases)
    assert checker.probes[0].control is not None
    assert _hint(checker, exp_overflow).startswith("OVERFLOW")

    def never_writes_the_last(x):  # inf in the last element whatever the values: no overflow
        out = 2 * x
        out[-1] = math.inf
        return out
    cases = [Case("first", (torch.tensor([1.0]),), hint="FIRST"), cases[1]]
    assert not _hint(_checker([_probe("OVERFLOW", nonfinite, x=(500.0, -600.0))], cases),
                     never_writes_the_last).startswith("OVERFLOW")


def test_order_isolating_probes_then_a_later_case_then_nan_then_property_probes_then_the_first_case():
    prop = _probe("PROPERTY", property_only(lambda o, p: "seen"))
    named = _probe("NAMED", lambda o, p: "seen")
    wrong = lambda x: 3 * x  # noqa: E731 - fails the first case
    assert _hint(_checker([prop, named]), wrong).startswith("NAMED")
    assert _hint(_checker([prop]), wrong).startswith("PROPERTY")
    assert _hint(_checker([]), wrong) == "FIRST"

    def wrong_later(x):  # right on the first case, wrong on the second
        return 2 * x if x[0] == 1 else 3 * x
    assert _hint(_checker([prop]), wrong_later) == "SECOND"

    def nan_first(x):
        return torch.full_like(x, math.nan)
    assert _hint(_checker([prop]), nan_first).startswith("your output holds NaN")
