"""The one benchmark sweep: declared sizes × providers → measurements → a table.

A suite declares its sizes, its providers (``Provider``: a label and ``fn(*inputs)``) and how to
build the inputs at a size. ``sweep`` runs every provider at every size: one checked call (also
the warm-up, and the compilation on a GPU), its error against the reference, then the median
time of up to ``rep`` calls and, if asked, the peak memory of one call. What is not measured
(the provider skips that size, it raised one of ``catch``, it gave a wrong answer, a time budget
ran out) becomes a ``Measurement`` that says why, so ``notes`` can report it. ``wide_table``
(sizes × providers) and ``long_table`` (a row per measurement) print the results.
Used by every ``python -m labkit bench`` suite and by ``gpu-check`` (notebook 02 runs the first suite).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from labkit import device
from labkit.bench import format_value, peak_memory, print_table, progress, time_fn

BUDGET_SPENT = "time budget spent"  # why_not of what a sweep's deadline left unmeasured


@dataclass(frozen=True)
class Provider:
    """One implementation in a sweep: ``fn(*inputs)`` → its output.

    ``skip(size)`` says why it does not run at a size ('' when it does). ``interpreted``: it runs
    in Triton's interpreter, so it shares the sweep's interpreter budget and its memory is not
    measured (the interpreter's numpy arrays are not the kernel's memory).
    """

    label: str
    fn: Callable[..., Any]
    skip: Callable[[Any], str] | None = None
    interpreted: bool = False


@dataclass
class Measurement:
    """One provider at one size: median seconds, peak bytes, error, or why it was not measured."""

    size: Any
    provider: str
    seconds: float | None = None
    peak_bytes: int | None = None
    error: float | None = None
    why_not: str = ""

    @property
    def measured(self) -> bool:
        return self.seconds is not None


def max_abs_error(out: Any, ref: Any) -> float:
    """max |out − ref| in float64 over a tensor or array, or over matching tuples of them."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    if len(outs) != len(refs):
        raise ValueError(f"max_abs_error: {len(outs)} outputs but {len(refs)} references")
    worst = 0.0
    for o, r in zip(outs, refs):
        o64 = torch.as_tensor(np.asarray(o) if not isinstance(o, torch.Tensor) else o.detach()).double()
        r64 = torch.as_tensor(np.asarray(r) if not isinstance(r, torch.Tensor) else r.detach()).double()
        worst = max(worst, (o64.cpu() - r64.cpu()).abs().max().item() if o64.numel() else 0.0)
    return worst


def _synchronize() -> None:
    if device.HAS_CUDA:
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], Any]], rep: int, best: bool = False) -> dict[str, float]:
    """Median seconds of each function (the fastest with ``best``), timed in ``rep`` rounds that call each once in turn.

    The machine's load changes every function alike, so their ratios are fair on a busy machine.
    ``best`` takes each function's least disturbed round instead: for short CPU-bound calls a load only ever
    adds time, so the minimum is the steadier estimate. Each function is called once untimed first (the warm-up).
    """
    if rep < 1:
        raise ValueError(f"interleaved: need rep >= 1, got {rep}")
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rep):
        for name, fn in fns.items():
            times[name].append(time_fn(fn, warmup=0, rep=1))
    return {name: (min(t) if best else statistics.median(t)) for name, t in times.items()}


def reason(err: BaseException) -> str:
    """'TypeName: first line of the message' (at most 160 characters), for a note."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160] if lines else ''}"


def sweep(sizes: Iterable[Any], providers: Sequence[Provider], inputs: Callable[[Any], tuple], *,
          reference: Callable[..., Any] | None = None, error: Callable[[Any, Any], float] = max_abs_error,
          rep: int = 10, max_seconds: float = 5.0, memory: bool = False, interleave: bool = False,
          interpreter_budget_s: float = 20.0, deadline: float | None = None,
          catch: tuple[type[BaseException], ...] = (),
          report: Callable[[int, int, str], None] | None = progress,
          describe: Callable[[Any], str] = str) -> list[Measurement]:
    """Run every provider at every size; a ``Measurement`` for each pair, in order.

    At each size: ``args = inputs(size)`` and ``ref = reference(*args)`` (when given). Each provider
    then runs once, checked: ``error(out, ref)`` is its error, and an AssertionError raised by
    ``error`` marks it a wrong answer (not timed). Then it is timed: the median of ``rep`` calls,
    fewer (at least one) when ``rep`` calls would take more than ``max_seconds`` (judged by the
    checked call; on a GPU, where that call compiles, by a second one); with
    ``interleave`` the providers instead take turns in ``rep`` rounds (``interleaved``), for ratios
    on a busy machine. Interpreted providers stop when their time would exceed
    ``interpreter_budget_s`` in all; no size starts after ``deadline`` (a ``time.perf_counter()``
    value). An exception in ``catch`` (a missing kernel, out of memory) is noted, not raised.
    """
    if rep < 1 or max_seconds <= 0:
        raise ValueError(f"sweep: need rep >= 1 and max_seconds > 0, got rep={rep}, max_seconds={max_seconds}")
    sizes = list(sizes)
    results: list[Measurement] = []
    total, done, interpreting = len(sizes) * len(providers), 0, 0.0
    for size in sizes:
        if deadline is not None and time.perf_counter() > deadline:
            results += [Measurement(size, p.label, why_not=BUDGET_SPENT) for p in providers]
            done += len(providers)
            continue
        args = inputs(size)
        ref = reference(*args) if reference is not None else None
        calls: dict[str, Callable[[], Any]] = {}
        here: list[Measurement] = []
        for p in providers:
            done += 1
            if report is not None:
                report(done, total, f"{describe(size)}: {p.label}")
            m = Measurement(size, p.label)
            here.append(m)
            m.why_not = p.skip(size) if p.skip is not None else ""
            if m.why_not:
                continue
            call = lambda fn=p.fn: fn(*args)  # noqa: E731
            try:
                t0 = time.perf_counter()
                out = call()
                _synchronize()
                once = time.perf_counter() - t0
                if reference is not None:
                    try:
                        m.error = error(out, ref)
                    except AssertionError as wrong:
                        m.why_not = "wrong answer: " + (str(wrong).strip().splitlines() or [""])[0][:200]
                        continue
                del out
                if p.interpreted:
                    interpreting += once
                if interleave:
                    calls[p.label] = call
                    continue
                if device.HAS_CUDA and not p.interpreted:  # the first call compiled: a warm one estimates
                    t0 = time.perf_counter()
                    call()
                    _synchronize()
                    once = time.perf_counter() - t0
                reps = max(1, min(rep, int(max_seconds / max(once, 1e-9))))
                if p.interpreted:
                    if interpreting + reps * once > interpreter_budget_s:
                        m.why_not = (f"the interpreter would need about {reps * once:.0f} s more, over "
                                     f"its {interpreter_budget_s:.0f} s budget")
                        continue
                    interpreting += reps * once
                m.seconds = time_fn(call, warmup=0, rep=reps)
                if memory and not p.interpreted:
                    m.peak_bytes = peak_memory(call)
            except catch as err:  # reported in the notes, not raised
                m.why_not, m.seconds = reason(err), None
                if device.HAS_CUDA:
                    torch.cuda.empty_cache()
        if calls:
            medians = interleaved(calls, rep)
            for m in here:
                if m.provider in medians:
                    m.seconds = medians[m.provider]
                    if memory:
                        m.peak_bytes = peak_memory(calls[m.provider])
        results += here
    return results


def notes(results: Sequence[Measurement], describe: Callable[[Any], str] = str) -> list[str]:
    """One line per (provider, reason) for what was not measured, naming the sizes."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for m in results:
        if not m.measured and m.why_not:
            grouped.setdefault((m.provider, m.why_not), []).append(describe(m.size))
    return [f"{label} not measured at {', '.join(where)}: {why}." for (label, why), where in grouped.items()]


def pivot(results: Sequence[Measurement], value: Callable[[Measurement], Any], *, by: str = "size",
          baseline: str | None = None) -> tuple[list[str], list[Any], list[list[Any]]]:
    """(column providers or sizes, row keys, rows of cells): sizes × providers (``by='size'``) or
    providers × sizes (``by='provider'``). A cell is ``value(m)``, None where not measured; with
    ``baseline`` (a provider), other providers' cells read 'v (r×)', r = their value / the baseline's.
    """
    if by not in ("size", "provider"):
        raise ValueError(f"pivot: by must be 'size' or 'provider', got {by!r}")
    sizes = list(dict.fromkeys(m.size for m in results))
    labels = list(dict.fromkeys(m.provider for m in results))
    cell = {(m.size, m.provider): value(m) if m.measured else None for m in results}

    def shown(size, label):
        v, base = cell.get((size, label)), cell.get((size, baseline))
        if baseline is None or label == baseline or not isinstance(v, float) or not isinstance(base, float):
            return v
        return f"{format_value(v)} ({format_value(v / base)}×)"
    if by == "size":
        return labels, sizes, [[shown(s, p) for p in labels] for s in sizes]
    return sizes, labels, [[shown(s, p) for s in sizes] for p in labels]


def wide_table(title: str, results: Sequence[Measurement], value: Callable[[Measurement], Any], *,
               by: str = "size", corner: str = "size", baseline: str | None = None,
               column_label: Callable[[Any], str] = str) -> str:
    """Print and return ``pivot``'s table: the row keys first under ``corner``, one column each."""
    columns, keys, rows = pivot(results, value, by=by, baseline=baseline)
    header = [corner] + [column_label(c) for c in columns]
    return print_table(title, header, [[key] + row for key, row in zip(keys, rows)])


def long_table(title: str, results: Sequence[Measurement],
               columns: Sequence[tuple[str, Callable[[Measurement], Any]]]) -> str:
    """Print and return a table with a row per measured result and ``columns`` (header, value of it)."""
    rows = [[fn(m) for _, fn in columns] for m in results if m.measured]
    return print_table(title, [header for header, _ in columns], rows)
