"""Twins: a mistake written out as a function, run on a probe's input; the probe names the mistake only when the
student's result agrees with the twin's there (issue 20).

A probe that reads one observation ("x_1 equals y_1") is fooled by every other mistake that happens to give
the same observation. A twin compares the whole result with what the mistake itself returns on the same input,
so a wrong answer is named only by the mistake that reproduces it. Introduced in notebook 00.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from labkit.check.core import agrees, clone, compare_outputs
from labkit.check.evidence import reads


def twin(*mistakes: Callable, first_only: bool = False, compare: Callable[[Any, Any], None] = compare_outputs,
         seen: str = ""):
    """violated(): the result agrees (by ``compare``) with one of ``mistakes(*args, **kwargs)`` on the probe's input
    (only their first outputs when ``first_only``); ``seen`` says what that shows, if anything. A twin that raises,
    or whose result holds no finite number, is no evidence there: every mistake that breaks down agrees with it."""
    @reads("nan", "shape")
    def violated(o, p):
        got = o.value[0] if first_only and isinstance(o.value, (tuple, list)) else o.value
        for mistake in mistakes:
            try:
                want = mistake(*clone(p.args), **clone(p.kwargs))
            except Exception:  # noqa: BLE001 - a twin that raises on this input says nothing here
                continue
            if first_only and isinstance(want, (tuple, list)):
                want = want[0]
            if finite_somewhere(want) and agrees(got, want, compare):
                return seen or True
        return False
    violated.mistakes = mistakes  # the twins themselves, for the tests: each is a real mistake, named by its hint
    return violated


def finite_somewhere(x: Any) -> bool:
    """True when a result holds at least one finite number (a tensor, an array, a number, or a tuple of them)."""
    if isinstance(x, (tuple, list)):
        return any(finite_somewhere(v) for v in x)
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() or bool(torch.isfinite(x).any())
    if isinstance(x, (np.ndarray, float, np.floating)):
        a = np.asarray(x)
        return a.dtype.kind not in "fc" or bool(np.isfinite(a).any())
    return True
