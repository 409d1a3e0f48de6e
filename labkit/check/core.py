"""The checker engine every exercise shares (the tolerance table is labkit.check.tolerance).

A checker has two halves. Its **cases and probes** are inputs, given as data. Its
**judgement** compares what the student's function returned on them with labkit's
reference and, on a mismatch, names the mistake by *what the function does*: probes that each
isolate one property are examined in a fixed order, and the first violated property gives the
hint. In a notebook both halves run in the student's kernel (``check.<name>(fn)``); a grader
evaluates the inputs in the student's process and judges the returned data in its own.
Introduced in notebook 00.
"""
from __future__ import annotations

import numbers
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from labkit.check import evidence
from labkit.check.evidence import RAISED, can_read, nan_seen
from labkit.check.tolerance import assert_close
from labkit.kernels.guard import fresh_memory_is_nan, memory_fault

PASS = "✔ {name}: {n}/{n} cases passed"
SEED_ENV = "LABKIT_CHECK_SEED"  # set by `labkit grade --seed N`: other random inputs, the same properties
NOT_IMPLEMENTED = "✘ {name}: not implemented yet (fill in the exercise above, then re-run this cell)"
FAIL_HEAD = "✘ {name}: case {i}/{n} ({label}) failed"


def describe(x: Any) -> str:
    """Short description of an argument for failure messages: 'tensor(4, 33) float32'."""
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, np.ndarray):
        return f"array{x.shape} {x.dtype}"
    if hasattr(x, "shape") and hasattr(x, "format"):  # scipy.sparse
        return f"sparse {x.format}{x.shape}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in x) + ")"
    if callable(x):
        return "a function"
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


DTYPE_HINT = ("the output must have the input's dtype: compute in "
              "torch.promote_types(x.dtype, torch.float32) if you like, then cast back with .to(x.dtype)")
NUMPY_DTYPE_HINT = "return float64 results (the dtype of the inputs): use np.float64 arrays throughout"


def compare_outputs(out: Any, expected: Any) -> None:
    """Default comparison: same type, structure and dtype, then ``assert_close`` leaf by leaf.

    A numpy result must have the reference's dtype and is judged at that dtype's tolerance.
    """
    if isinstance(expected, (tuple, list)):
        if not isinstance(out, (tuple, list)) or len(out) != len(expected):
            raise AssertionError(f"returned {describe(out)}, expected a tuple of "
                                 f"{len(expected)}: {describe(expected)}")
        for i, (o, e) in enumerate(zip(out, expected)):
            compare_leaf(o, e, what=f"output[{i}]")
        return
    compare_leaf(out, expected, what="output")


def compare_leaf(out: Any, expected: Any, what: str) -> None:
    """One output against one expected tensor, array or number."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(out, torch.Tensor):
            raise AssertionError(f"{what}: returned {type(out).__name__}, expected a torch.Tensor")
        if out.dtype != expected.dtype:
            raise DtypeMismatch(f"{what}: dtype {out.dtype}, expected {expected.dtype}")
        assert_close(out, expected, what=what)
    elif isinstance(expected, np.ndarray):
        if isinstance(out, torch.Tensor) or not isinstance(out, np.ndarray):
            raise AssertionError(f"{what}: returned {type(out).__name__}, expected a numpy array")
        if out.dtype != expected.dtype:
            raise DtypeMismatch(f"{what}: dtype {out.dtype}, expected {expected.dtype}")
        assert_close(out, expected, dtype=expected.dtype, what=what)
    else:
        assert_close(out, expected, what=what)


class DtypeMismatch(AssertionError):
    """The result has the wrong dtype (judged before its values)."""


# ------------------------------------------------------------------------ inputs as data

def rng_seed(n: int) -> int:
    """The seed a checker's random input ``n`` is drawn with: ``n`` itself, or, under
    ``labkit grade --seed S`` (the environment variable LABKIT_CHECK_SEED), ``n`` moved by S, so
    that a table of answers keyed by the usual inputs fails. Inputs built by construction (one-hot
    rows, fixed matrices) do not move; random ones, in cases and probes alike, do."""
    shift = os.environ.get(SEED_ENV, "").strip()
    return n + 1_000_003 * int(shift) if shift else n


class Record:
    """Placeholder argument: the evaluator passes a function that records every call's arguments."""

    def __repr__(self) -> str:
        return "a callback"


RECORD = Record()


@dataclass
class Case:
    """One input to a checker: a label a student can read, the arguments, and the property it tests.

    ``hint`` states the property this case isolates; it is said when the case fails and no
    probe names a more specific mistake, so it must be true whatever the mistake is.
    """

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    hint: str = ""


@dataclass
class Probe:
    """An input that isolates one property, and the test that says the student's function violates it.

    ``violated(outcome, probe)`` returns a non-empty observation (or True) when the property fails
    on this input; ``hint`` then names the mistake. Isolating probes are examined in order, then the
    property probes (``evidence.property_only``), whose hint states a property and no cause. A probe sees an
    exception or a NaN output only when its ``violated`` is marked to (labkit.check.evidence). A probe
    with a ``control`` speaks only when the function is right on the control (the same input without the
    feature the probe tests: small values for an overflow probe, causal=False for a mask probe, given as
    ``control_kwargs``), so its mistake is the feature's.
    """

    label: str
    args: tuple
    kwargs: dict
    hint: str
    violated: Callable[["Outcome", "Probe"], Any]
    control: tuple | None = None  # arguments on which the function must be right for this probe to speak
    control_kwargs: dict | None = None  # the control's keyword arguments, when not the probe's own

    @property
    def control_input(self) -> tuple[tuple, dict]:
        return self.control, self.kwargs if self.control_kwargs is None else self.control_kwargs

    def __post_init__(self) -> None:
        if self.control is None and hasattr(self.violated, "control"):  # evidence.overflow
            self.control = self.violated.control(self.args)


@dataclass
class Outcome:
    """What the student's function did on one input, as plain data (tensors, arrays, numbers, text)."""

    value: Any = None
    error: str = ""  # "ZeroDivisionError: division by zero" when the function raised
    frames: str = ""  # the student's own traceback frames
    not_implemented: bool = False
    modified: bool = False  # changed one of its inputs in place
    calls: list = field(default_factory=list)  # arguments of each call of a RECORD callback
    timed_out: bool = False  # cut off by the grader's time limit before it returned

    @property
    def ok(self) -> bool:
        return not (self.error or self.not_implemented)


def clone(x: Any) -> Any:
    """A deep copy of an argument (tensors, arrays, sparse matrices, tuples)."""
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    if hasattr(x, "copy") and hasattr(x, "format"):  # scipy.sparse
        return x.copy()
    if isinstance(x, tuple):
        values = [clone(v) for v in x]
        return type(x)(*values) if hasattr(x, "_fields") else tuple(values)  # keep namedtuples
    if isinstance(x, list):
        return [clone(v) for v in x]
    return x


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.shape == y.shape and (torch.equal(x, y) or torch.equal(x.nan_to_num(), y.nan_to_num()))
    if isinstance(x, np.ndarray):
        return x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
    if hasattr(x, "format") and hasattr(x, "toarray"):
        return x.shape == y.shape and (x != y).nnz == 0
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return True


def causes(err: BaseException | None, depth: int = 10):
    """``err`` and the exceptions it was raised from or during, innermost last (at most ``depth``): what a
    kernel compiler or Triton's interpreter wrapped."""
    while err is not None and depth > 0:
        yield err
        err, depth = err.__cause__ or err.__context__, depth - 1


def is_not_implemented(err: BaseException) -> bool:
    """True for NotImplementedError, also when a kernel compiler wrapped it."""
    return any(isinstance(e, NotImplementedError) or "NotImplementedError" in str(e) for e in causes(err))


def is_number(value: Any, integer: bool = False) -> bool:
    """A real number (an int when ``integer``): Python's or a numpy scalar; not a bool, a tensor or an array."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral if integer else numbers.Real)


_LIBRARY_DIRS = tuple({os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # labkit/
                       sys.prefix, sys.base_prefix, sys.exec_prefix})


def student_frames(err: BaseException) -> str:
    """The traceback lines of ``err`` that lie in the student's own code (none of labkit's or a library's)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not os.path.abspath(f.filename).startswith(_LIBRARY_DIRS)]
    return "".join(traceback.format_list(frames)).rstrip()


def evaluate(fn: Callable, args: tuple, kwargs: dict) -> Outcome:
    """Run ``fn`` on copies of the arguments and describe what it did, as data; torch's fresh memory is NaN meanwhile."""
    calls: list = []
    recorder = lambda *a, **k: calls.append(clone(a[0] if len(a) == 1 and not k else a))  # noqa: E731
    call_args = tuple(recorder if a is RECORD else clone(a) for a in args)
    call_kwargs = {k: recorder if v is RECORD else clone(v) for k, v in kwargs.items()}
    try:
        with fresh_memory_is_nan():  # an element never written reads NaN, the same on every run
            value = fn(*call_args, **call_kwargs)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - a student's code may raise anything, sys.exit() too
        if is_not_implemented(err):
            return Outcome(not_implemented=True)
        error = traceback.format_exception_only(type(err), err)[-1].strip()
        return Outcome(error=error, frames=student_frames(err), calls=calls)
    modified = not all(_same(a, b) for a, b in zip(call_args, args) if b is not RECORD) or \
        not all(_same(call_kwargs[k], v) for k, v in kwargs.items() if v is not RECORD)
    return Outcome(value=value, modified=modified, calls=calls)


# ---------------------------------------------------------------------------- judgement

class CheckFailed(AssertionError):
    """A failed check, shown short: the case, its inputs, what went wrong and the hint.

    IPython shows ``_render_traceback_()`` instead of a traceback, so no labkit frame and no
    checker source reaches the student; the student's own frames are shown when their code raised.
    """

    def __init__(self, name: str, lines: list[str], hint: str):
        self.name, self.lines, self.hint = name, lines, hint
        super().__init__("\n".join(lines + [f"  hint: {hint}"]))

    def _render_traceback_(self) -> list[str]:
        return str(self).split("\n")


@dataclass
class Verdict:
    """A checker's judgement: passed, not implemented, or failed with its message and hint."""

    status: str  # "passed", "not implemented" or "failed"
    message: str
    hint: str = ""
    raised: str = ""  # what the student's function raised on the failed case ("ZeroDivisionError: ...")


@dataclass
class Checker:
    """Cases, probes and the judgement of one exercise: ``Checker(...).check(fn)`` in a notebook.

    ``reference(*args, **kwargs)`` gives what ``compare(out, expected)`` judges against;
    ``prepare(fn)`` adapts the student's function before it runs (e.g. to the course device).
    """

    name: str
    cases: Sequence[Case]
    reference: Callable
    probes: Sequence[Probe] = ()
    compare: Callable[[Any, Any], None] = compare_outputs
    prepare: Callable[[Callable], Callable] | None = None
    dtype_hint: str = DTYPE_HINT

    def inputs(self) -> list[tuple[tuple, dict]]:
        """Every input the student's function is run on: the cases, the probes, then the probes' controls."""
        return [(c.args, c.kwargs) for c in self.cases] + [(p.args, p.kwargs) for p in self.probes] + \
            [p.control_input for p in self.probes if p.control is not None]

    def _control_index(self, j: int) -> int:
        """The index in inputs() of probe j's control."""
        return len(self.cases) + len(self.probes) + sum(p.control is not None for p in self.probes[:j])

    def first_of_each(self) -> list[int]:
        """For input i, the first input with the very same argument objects: each is evaluated once."""
        seen: dict[tuple, int] = {}
        return [seen.setdefault((tuple(map(id, args)), tuple((k, id(v)) for k, v in sorted(kwargs.items()))), i)
                for i, (args, kwargs) in enumerate(self.inputs())]

    def check(self, fn: Callable) -> None:
        """Print the pass line or the 'not implemented yet' line, or raise CheckFailed."""
        if not callable(fn):
            raise TypeError(f"check.{self.name} takes your function itself, e.g. "
                            f"check.{self.name}({self.name}), not {type(fn).__name__}")
        used = reused_in_notebook(self.name, fn)
        if used:
            from labkit.grading.reuse import reuse_message
            raise CheckFailed(self.name, [f"✘ {self.name}: {reuse_message(used, where='')}"],
                              "write it with your own code: labkit grade fails such an exercise "
                              "(a static check of your notebook's cells)")
        run = self.prepare(fn) if self.prepare else fn
        inputs, first = self.inputs(), self.first_of_each()
        cache: dict[int, Outcome] = {}

        def outcome(i: int) -> Outcome:
            i = first[i]
            if i not in cache:
                cache[i] = evaluate(run, *inputs[i])
            return cache[i]
        verdict = self.judge(outcome)
        if verdict.status == "failed":
            raise CheckFailed(self.name, verdict.message.split("\n"), verdict.hint)
        print(verdict.message)

    def judge(self, outcome: Callable[[int], Outcome]) -> Verdict:
        """The verdict from ``outcome(i)``, what the function did on ``inputs()[i]``."""
        n = len(self.cases)
        for i, case in enumerate(self.cases):
            got = outcome(i)
            if got.not_implemented:
                return Verdict("not implemented", NOT_IMPLEMENTED.format(name=self.name))
            head = [FAIL_HEAD.format(name=self.name, i=i + 1, n=n, label=case.label),
                    "  inputs: " + ", ".join([describe(a) for a in case.args] +
                                             [f"{k}={describe(v)}" for k, v in case.kwargs.items()])]
            fault = memory_fault(got.error) if got.error else None
            if fault:  # a kernel's stray access, refused before it happened (labkit.kernels.guard)
                return Verdict("failed", "\n".join(head + [f"  {fault[0]}"]), fault[1],
                               raised=got.error)
            if got.error:  # names no mistake by itself: only a probe's own evidence does
                raised = [f"  your function raised {got.error}"]
                if got.frames:
                    raised += ["  " + line for line in got.frames.split("\n")]
                return Verdict("failed", "\n".join(head + raised), self.diagnose(outcome) or RAISED,
                               raised=got.error)
            if got.modified:
                return Verdict("failed", "\n".join(head + ["  your function modified its input in place"]),
                               "work on a copy (x.clone(), A.copy()): the caller's arrays must not change in place")
            try:
                self.compare(got.value, self.reference(*case.args, **case.kwargs))
            except DtypeMismatch as err:  # the dtype is judged first, and names itself
                return Verdict("failed", "\n".join(head + [f"  {err}"]), self.dtype_hint)
            except AssertionError as err:
                # a later case's hint is evidence (the cases before it passed); the first case's only states the rule
                hint = self.diagnose(outcome, nan_seen(got.value, str(err)), case.hint if i else "") or \
                    case.hint or "no single mistake identified; compare your code with the definition above"
                return Verdict("failed", "\n".join(head + [f"  {err}"]), hint)
        return Verdict("passed", PASS.format(name=self.name, n=n))

    def diagnose(self, outcome: Callable[[int], Outcome], nan: str = "", case_hint: str = "") -> str:
        """The hint of the first isolating probe whose property the student's function violates; else the failed
        case's own ``case_hint``; else its NaN observation ``nan``; else the first violated property probe."""
        return self._first_violated(outcome, isolates=True) or case_hint or nan or \
            self._first_violated(outcome, isolates=False)

    def _right_on(self, got: Outcome, probe: Probe) -> bool:
        """Whether the function was right on the probe's control."""
        try:
            args, kwargs = probe.control_input
            expected = self.reference(*clone(args), **clone(kwargs))
        except Exception:  # noqa: BLE001
            return False
        return got.ok and agrees(got.value, expected, self.compare)

    def _reference(self, probe: Probe) -> Any:
        """labkit's result on a probe's input (None when the reference raises there)."""
        try:
            return self.reference(*clone(probe.args), **clone(probe.kwargs))
        except Exception:  # noqa: BLE001 - a probe may be an input the reference refuses
            return None

    def _first_violated(self, outcome: Callable[[int], Outcome], isolates: bool) -> str:
        first = len(self.cases)
        for j, probe in enumerate(self.probes):
            if evidence.isolates(probe) != isolates:
                continue
            got = outcome(first + j)
            if got.not_implemented or not can_read(probe.violated, got, lambda: self._reference(probe)):
                continue
            if probe.control is not None and not self._right_on(outcome(self._control_index(j)), probe):
                continue
            try:
                seen = probe.violated(got, probe)
            except Exception:  # noqa: BLE001 - a malformed output cannot be probed
                seen = False
            if seen:
                return probe.hint + (f" (seen: {seen})" if isinstance(seen, str) else "")
        return ""


def reused_in_notebook(name: str, fn: Callable) -> str:
    """What labkit grade's static check finds ``fn`` calling that exercise ``name`` re-implements,
    read from the cells this IPython session ran ('' outside IPython, or when nothing is found)."""
    try:
        shell = get_ipython()  # noqa: F821 - defined in IPython kernels only
    except NameError:
        return ""
    cells = [c for c in shell.user_ns.get("In", []) if isinstance(c, str) and c.strip()]
    fn_name = getattr(fn, "__name__", "")
    if not cells or not fn_name.isidentifier():
        return ""
    from labkit.grading.registry import exercise
    from labkit.grading.reuse import reused
    return reused(exercise(name), fn_name, cells, latest=True)[0] or ""


CHECKERS: dict[str, Callable[[], Checker]] = {}


def checker(build: Callable[[], Checker]) -> Callable[[Callable], None]:
    """Turn a builder of a Checker into ``check.<name>(fn)``; the builder is registered for grading."""
    CHECKERS[build.__name__] = build

    def check(fn: Callable) -> None:
        build().check(fn)
    check.__name__ = check.__qualname__ = build.__name__
    check.__doc__ = build.__doc__
    check.__module__ = build.__module__
    check.build = build
    return check


# ------------------------------------------------------------------ helpers for probes

def agrees(out: Any, expected: Any, compare: Callable[[Any, Any], None] = compare_outputs) -> bool:
    """True when ``compare`` accepts ``out`` against ``expected``."""
    try:
        compare(out, expected)
        return True
    except AssertionError:
        return False
