"""What a probe may read as evidence of a mistake, and what is said when nothing isolates one (issue 20).

A probe names a mistake only from an outcome that can show it. Two outcomes show almost nothing:

- **an exception**: many mistakes raise on the same input (a shape error comes from any wrong slice),
  so a probe reads an error only when it says so (``reads("error")``), and the usual way to say so
  is ``raises_like(twin)``: the student's function raised exactly what the mistake's own twin raises;
- **a result shaped unlike labkit's**: its values sit in the wrong places, so a probe reads one only when
  it says so (``reads("shape")``);
- **NaN where the result is a number**: in these checks a new tensor starts as NaN, so an element never
  stored and one computed as 0/0 look alike; a probe reads NaN only when it says so (``reads("nan")``),
  as the overflow probes do.

A probe whose ``violated`` is marked ``property_only`` states a property, not a cause: it is heard only after every
isolating probe and the NaN observation. Introduced in notebook 00.
"""
from __future__ import annotations

import copy
import traceback
from typing import Any, Callable

import numpy as np
import torch

RAISED = ("an exception names no single mistake: read the error and the line of your code it points at "
          "(shown above), then run your function on these inputs and print the shapes and values there")
NAN = ("your output holds NaN where the result is a number{where}: either those elements were never "
       "written (in these checks a new tensor starts as NaN, so an element no store or assignment reaches "
       "stays NaN) or they were computed as inf - inf, 0 · inf or 0/0")


def reads(*what: str) -> Callable[[Callable], Callable]:
    """Mark a probe's ``violated(outcome, probe)`` as reading "error" outcomes, "nan" or wrongly "shape"d outputs."""
    def mark(violated: Callable) -> Callable:
        violated.reads = frozenset(what) | getattr(violated, "reads", frozenset())
        return violated
    return mark


def overflow(violated: Callable) -> Callable:
    """Mark a probe's ``violated`` as reading a NaN or an inf that large values cause: its probe gets the control
    ``calm(args)``, the same input scaled to |x| <= 1, on which the function must be right for the probe to speak."""
    violated.control = calm
    return reads("nan")(violated)


def calm(args: tuple) -> tuple:
    """The arguments with every floating tensor scaled down to |x| <= 1 (lists and tuples of them too)."""
    def scaled(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            top = x.detach().abs().nan_to_num(posinf=0.0, neginf=0.0).max() if x.numel() else 1.0
            return x / max(1.0, float(top))
        if isinstance(x, (tuple, list)):
            return type(x)(scaled(v) for v in x) if not hasattr(x, "_fields") else type(x)(*map(scaled, x))
        return x
    return tuple(scaled(a) for a in args)


def property_only(violated: Callable) -> Callable:
    """Mark a probe's ``violated`` as stating a property, not isolating a mistake: its probe speaks last."""
    violated.property_only = True
    return violated


def isolates(probe: Any) -> bool:
    """Whether a probe's hint may name a mistake (heard before the NaN observation and the property probes)."""
    return not getattr(probe.violated, "property_only", False)


def can_read(violated: Callable, outcome: Any, reference: Callable[[], Any]) -> bool:
    """Whether ``violated`` may judge ``outcome``: an error, a NaN, or a result shaped unlike labkit's
    (``reference()``), only when it is marked to read one."""
    marks = getattr(violated, "reads", frozenset())
    if outcome.error:
        return "error" in marks
    if "nan" not in marks and holds_nan(outcome.value):
        return False
    if "shape" in marks:
        return True
    got = shape_of(outcome.value)
    if got is None:  # a result whose shape is not known (text, None, an object) is never refused
        return True
    want = shape_of(reference())
    return want is None or got == want


def shape_of(x: Any) -> Any:
    """The shapes of a result: a tensor's or an array's shape, () for a number, a tuple of these for a tuple
    or list; None for anything else (an object whose shape is not known is never refused)."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return tuple(x.shape)
    if isinstance(x, (bool, int, float, np.number)):
        return ()
    if isinstance(x, (tuple, list)):
        inner = tuple(shape_of(v) for v in x)
        return None if None in inner else inner
    return None


def raises_like(twin: Callable, seen: str = "") -> Callable:
    """violated(): the student's function raised what ``twin`` (the mistake, written out) raises on this input:
    the same exception type and message, shapes and all."""
    @reads("error")
    def violated(outcome, probe) -> Any:
        if not outcome.error:
            return False
        expected = error_of(twin, probe.args, probe.kwargs)
        return bool(expected) and outcome.error == expected and (seen or f"your function raised {outcome.error}")
    return violated


def error_of(fn: Callable, args: tuple, kwargs: dict) -> str:
    """What ``fn`` raises on copies of the arguments, written as the engine writes a student's error ('' if none)."""
    try:
        fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
    except Exception as err:  # noqa: BLE001 - a twin raises what its mistake raises
        return traceback.format_exception_only(type(err), err)[-1].strip()
    return ""


def holds_nan(x: Any) -> bool:
    """True when a result (a tensor, an array, a number, or a tuple or list of them) holds a NaN."""
    if isinstance(x, torch.Tensor):
        return (x.is_floating_point() or x.is_complex()) and bool(torch.isnan(x.detach()).any())
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "fc" and bool(np.isnan(x).any())
    if isinstance(x, float):
        return x != x
    if isinstance(x, (tuple, list)):
        return any(holds_nan(v) for v in x)
    return False


def nan_seen(value: Any, failure: str) -> str:
    """The NaN observation for a case whose comparison failed with ``failure``: '' unless the output holds a
    NaN that the reference does not (tolerance.assert_close says 'NaN mismatch ... expected <number>')."""
    if "NaN mismatch" not in failure or "(got nan" not in failure or not holds_nan(value):
        return ""
    where = failure.split("NaN mismatch", 1)[1].split("(got", 1)[0].strip()
    return NAN.format(where=f" ({where})" if where else "")
