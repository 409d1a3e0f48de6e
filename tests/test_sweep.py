"""labkit.bench.sweep: every (size, provider) measured or said why not, in order; timing, checks, budgets, tables."""

import time

import numpy as np
import pytest
import torch

from labkit import bench
from labkit.bench.sweep import (BUDGET_SPENT, Measurement, Provider, interleaved, long_table, max_abs_error,
                                notes, pivot, sweep, wide_table)


def counted(fn):
    """fn with a list of the arguments of every call in .calls."""
    def wrapper(*args):
        wrapper.calls.append(args)
        return fn(*args)
    wrapper.calls = []
    return wrapper


def fake_clock(monkeypatch):
    """time.perf_counter replaced by a clock that only ``advance(seconds)`` moves."""
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    return lambda seconds: clock.__setitem__(0, clock[0] + seconds)


def test_every_size_and_provider_in_order_with_the_median_time_of_its_calls(monkeypatch):
    advance = fake_clock(monkeypatch)  # a call takes exactly what the provider says, whatever the load
    durations = iter([9.0, 1.0, 3.0, 2.0, 7.0, 5.0, 6.0, 4.0] * 2)  # per provider: a checked call, 3 timed

    def work(n):
        advance(next(durations) * n * 1e-3)
    fast = Provider("fast", work)
    slow = Provider("slow", lambda n: work(10 * n))
    results = sweep([1, 2], [fast, slow], lambda n: (n,), rep=3, report=None)
    assert [(m.size, m.provider) for m in results] == [(1, "fast"), (1, "slow"), (2, "fast"), (2, "slow")]
    assert all(m.measured and m.why_not == "" and m.error is None and m.peak_bytes is None for m in results)
    assert [round(m.seconds * 1e3, 9) for m in results] == [2.0, 50.0, 4.0, 100.0]  # medians; the checked call untimed


def test_the_error_is_against_the_reference_and_a_failed_check_is_a_wrong_answer_never_timed():
    ref = torch.linspace(0, 1, 7, dtype=torch.float64)
    good = counted(lambda x: x.float() + 1e-3)
    bad = counted(lambda x: x.flip(0))

    def check(out, ref):
        err = max_abs_error(out, ref)
        assert err < 1e-2, f"max error {err:.3g}\nsecond line"
        return err
    results = sweep(["s"], [Provider("good", good), Provider("bad", bad)], lambda s: (ref,),
                    reference=lambda x: x.clone(), error=check, rep=4, report=None)
    assert results[0].error == pytest.approx(1e-3, rel=1e-3) and results[0].measured
    assert not results[1].measured and results[1].why_not == "wrong answer: max error 1"
    assert len(bad.calls) == 1 and len(good.calls) == 1 + 4  # checked call + rep timed calls


def test_skip_reasons_become_grouped_notes_and_the_provider_never_runs_there():
    fn = counted(lambda n: n)
    p = Provider("loops", fn, skip=lambda n: "too slow above n = 2" if n > 2 else "")
    results = sweep([1, 2, 3, 4], [p, Provider("other", lambda n: n)], lambda n: (n,), rep=1, report=None)
    assert [m.measured for m in results if m.provider == "loops"] == [True, True, False, False]
    assert [args for args in fn.calls] == [(1,), (1,), (2,), (2,)]  # checked + one timed, at n <= 2 only
    assert notes(results, describe=lambda n: f"n={n}") == ["loops not measured at n=3, n=4: too slow above n = 2."]


def test_fewer_timed_calls_when_rep_would_exceed_max_seconds(monkeypatch):
    advance = fake_clock(monkeypatch)
    fn = counted(lambda: advance(0.05))
    (m,) = sweep([0], [Provider("slow", fn)], lambda n: (), rep=50, max_seconds=0.12, report=None)
    assert len(fn.calls) == 1 + 2 and m.seconds == pytest.approx(0.05)  # 0.12 s / 0.05 s: two timed calls
    (m,) = sweep([0], [Provider("slow", fn)], lambda n: (), rep=50, max_seconds=10, report=None)
    assert len(fn.calls) == 3 + 1 + 50  # rep bounds it too


def test_interpreted_providers_share_one_budget_and_stop_before_exceeding_it(monkeypatch):
    advance = fake_clock(monkeypatch)
    fn = counted(lambda: advance(0.02))
    p = Provider("interp", fn, interpreted=True)
    results = sweep([1, 2, 3], [p], lambda n: (), rep=2, interpreter_budget_s=0.15, memory=True, report=None)
    measured = [m.measured for m in results]
    assert measured == [True, True, False]  # each size spends 3 x 0.02 s of the 0.15 s
    assert len(fn.calls) == 3 + 3 + 1  # the third size: its checked call, then out of budget
    assert measured == sorted(measured, reverse=True)  # once out of budget, out for good
    assert all(m.peak_bytes is None for m in results)  # the interpreter's memory is not the kernel's
    assert "budget" in next(m.why_not for m in results if not m.measured)


def test_a_spent_deadline_skips_whole_sizes_without_building_their_inputs():
    inputs = counted(lambda n: (n,))
    results = sweep([1, 2], [Provider("a", lambda n: n)], inputs, deadline=time.perf_counter() - 1, report=None)
    assert inputs.calls == [] and [m.why_not for m in results] == [BUDGET_SPENT, BUDGET_SPENT]


def test_caught_exceptions_are_noted_and_others_raise():
    def broken(n):
        raise RuntimeError("no kernel for this shape\ndetails")
    providers = [Provider("broken", broken), Provider("fine", lambda n: n)]
    results = sweep([1], providers, lambda n: (n,), rep=1, catch=(RuntimeError,), report=None)
    assert results[0].why_not == "RuntimeError: no kernel for this shape" and results[1].measured
    with pytest.raises(RuntimeError, match="no kernel"):
        sweep([1], providers, lambda n: (n,), rep=1, report=None)


def test_interleave_takes_turns_after_one_checked_and_one_warm_call_each():
    order = []
    providers = [Provider(name, lambda name=name: order.append(name)) for name in "ab"]
    results = sweep([0], providers, lambda n: (), rep=3, interleave=True, report=None)
    assert all(m.measured for m in results)
    assert "".join(order) == "ab" + "ab" + "ababab"  # checked calls, warm-up, three rounds


def test_interleaved_medians_and_bad_rep(monkeypatch):
    advance = fake_clock(monkeypatch)
    t = interleaved({"short": lambda: advance(0.002), "long": lambda: advance(0.03)}, 3)
    assert t == pytest.approx({"short": 0.002, "long": 0.03})
    with pytest.raises(ValueError, match="rep >= 1"):
        interleaved({"a": lambda: None}, 0)
    with pytest.raises(ValueError, match="rep >= 1"):
        sweep([1], [Provider("a", lambda n: n)], lambda n: (n,), rep=0)


def test_interleaved_best_takes_each_functions_fastest_round(monkeypatch):
    advance = fake_clock(monkeypatch)
    durations = iter([0.5, 0.01, 0.2, 0.01, 0.002, 0.01, 0.3, 0.01])  # warm-ups, then 3 rounds of (a, b)
    calls = {"a": lambda: advance(next(durations)), "b": lambda: advance(next(durations))}
    t = interleaved(calls, 3, best=True)
    assert t == pytest.approx({"a": 0.002, "b": 0.01})  # the median of a would be 0.2


@pytest.mark.skipif(bench.peak_memory(lambda: None) is None, reason="no peak-memory measurement here")
def test_memory_is_the_peak_of_one_call():
    results = sweep([16, 64], [Provider("alloc", lambda mib: torch.ones(mib * 2**18).sum())],
                    lambda mib: (mib,), rep=1, memory=True, report=None)
    mib = [m.peak_bytes / 2**20 for m in results]
    assert 12 < mib[0] < 40 and 56 < mib[1] < 100


def test_max_abs_error_over_tensors_arrays_and_tuples():
    assert max_abs_error(torch.tensor([1.0, 2.0]), np.array([1.0, 2.5])) == 0.5
    assert max_abs_error((np.zeros(3), torch.ones(2)), (np.zeros(3), torch.zeros(2))) == 1.0
    assert max_abs_error(torch.empty(0), torch.empty(0)) == 0.0
    with pytest.raises(ValueError, match="2 outputs but 1 references"):
        max_abs_error((1, 2), (1,))


def _results():
    return [Measurement(64, "torch", seconds=1.0), Measurement(64, "mine", seconds=2.0),
            Measurement(128, "torch", seconds=4.0), Measurement(128, "mine", why_not="skipped")]


def test_pivot_by_size_and_by_provider_with_a_baseline():
    cols, keys, rows = pivot(_results(), lambda m: m.seconds, by="size", baseline="torch")
    assert (cols, keys) == (["torch", "mine"], [64, 128])
    assert rows == [[1.0, "2 (2×)"], [4.0, None]]
    cols, keys, rows = pivot(_results(), lambda m: m.seconds, by="provider")
    assert (cols, keys, rows) == ([64, 128], ["torch", "mine"], [[1.0, 4.0], [2.0, None]])
    with pytest.raises(ValueError, match="by must be"):
        pivot(_results(), lambda m: m.seconds, by="width")


def test_tables_print_what_was_measured(capsys):
    text = wide_table("T", _results(), lambda m: m.seconds, corner="width", column_label=lambda c: f"<{c}>")
    assert "| width | <torch> | <mine> |" in text and "|   128 |       4 |      – |" in text
    text = long_table("L", _results(), [("N", lambda m: m.size), ("who", lambda m: m.provider)])
    rows = text.splitlines()[4:]  # after the title, a blank line, the header and the rule
    assert [row.split("|")[1:3] for row in rows] == [["  64 ", " torch "], ["  64 ", "  mine "], [" 128 ", " torch "]]
    assert capsys.readouterr().out.count("| width |") == 1
