"""The tolerance table, ``assert_close`` and the machinery every exercise checker shares.

A checker runs the student's function on a fixed list of cases, compares each result
with labkit's reference and, on a mismatch, names the misconception: it re-runs known
wrong implementations on the failing case and reports the hint of the one the student's
output agrees with. Introduced in notebook 00.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

PASS = "✔ {name}: {n}/{n} cases passed"
NOT_IMPLEMENTED = "✘ {name}: not implemented yet (fill in the exercise above, then re-run this cell)"


@dataclass(frozen=True)
class Tol:
    atol: float
    rtol: float


# The one tolerance table (tests, checkers and benchmarks all read it).
# fp16/bf16 results are also judged against the plain PyTorch computation in the same
# dtype (``baseline=``): at most LOWP_FACTOR x its error plus the table's atol.
TOLERANCES: dict[torch.dtype, Tol] = {
    torch.float64: Tol(atol=1e-10, rtol=1e-8),
    torch.float32: Tol(atol=1e-5, rtol=1e-4),
    torch.float16: Tol(atol=1e-3, rtol=1e-2),
    torch.bfloat16: Tol(atol=8e-3, rtol=4e-2),
}
LOWP_FACTOR = 2.0


def tolerance(dtype: torch.dtype | np.dtype) -> Tol:
    """The table's (atol, rtol) for a torch or numpy dtype."""
    if not isinstance(dtype, torch.dtype):
        dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    if dtype not in TOLERANCES:
        raise ValueError(f"no tolerance for dtype {dtype}; the table has {list(TOLERANCES)}")
    return TOLERANCES[dtype]


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


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
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def assert_close(actual: Any, expected: Any, *, dtype: torch.dtype | None = None,
                 atol: float | None = None, rtol: float | None = None,
                 baseline: Any = None, what: str = "output") -> None:
    """|actual - expected| <= atol + rtol*|expected| elementwise (table tolerances by dtype).

    NaN must sit where the reference has NaN, and infinities must match. With
    ``baseline`` (the same computation done plainly in the low dtype), the rule is instead
    max|actual - expected| <= LOWP_FACTOR * max|baseline - expected| + atol.
    """
    a, e = _as_tensor(actual), _as_tensor(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {tuple(a.shape)}, expected {tuple(e.shape)}")
    tol = tolerance(dtype if dtype is not None else a.dtype)
    atol = tol.atol if atol is None else atol
    rtol = tol.rtol if rtol is None else rtol
    if a.numel() == 0:
        return
    a64, e64 = a.to(torch.float64).cpu(), e.to(torch.float64).cpu()
    nan_a, nan_e = torch.isnan(a64), torch.isnan(e64)
    if not torch.equal(nan_a, nan_e):
        idx = tuple(int(i) for i in torch.nonzero(nan_a != nan_e)[0])
        raise AssertionError(f"{what}: NaN mismatch at index {idx} "
                             f"(got {a64[idx].item():.6g}, expected {e64[idx].item():.6g})")
    inf_a, inf_e = torch.isinf(a64) & ~nan_a, torch.isinf(e64) & ~nan_e
    if not torch.equal(inf_a, inf_e) or not torch.equal(a64[inf_a], e64[inf_e]):
        idx = tuple(int(i) for i in torch.nonzero((inf_a != inf_e) | (inf_a & (a64 != e64)))[0])
        raise AssertionError(f"{what}: infinity mismatch at index {idx} "
                             f"(got {a64[idx].item():.6g}, expected {e64[idx].item():.6g})")
    finite = ~(nan_a | inf_a)
    err = torch.zeros_like(a64)
    err[finite] = (a64[finite] - e64[finite]).abs()
    if baseline is not None:
        b64 = _as_tensor(baseline).to(torch.float64).cpu()
        base_err = (b64 - e64)[finite].abs().max().item() if finite.any() else 0.0
        bound = LOWP_FACTOR * base_err + atol
        worst = err.max().item()
        if not worst <= bound:
            idx = tuple(int(i) for i in torch.nonzero(err == worst)[0])
            raise AssertionError(
                f"{what}: worst error {worst:.3g} at index {idx} exceeds {LOWP_FACTOR:g} x the "
                f"plain {str(a.dtype).replace('torch.', '')} error {base_err:.3g} + {atol:g}")
        return
    excess = torch.where(finite, err - (atol + rtol * e64.abs()), torch.zeros_like(err))
    if excess.max().item() > 0:
        idx = tuple(int(i) for i in torch.nonzero(excess == excess.max())[0])
        raise AssertionError(
            f"{what}: worst error {err[idx].item():.3g} at index {idx} (got {a64[idx].item():.6g}, "
            f"expected {e64[idx].item():.6g}); tolerance atol={atol:g}, rtol={rtol:g}")


@dataclass
class Case:
    """One input to a checker: a label a student can read, and the arguments."""

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    hint: str = ""  # said when this case fails and no known misconception matches


@dataclass
class Misconception:
    """A known wrong implementation and the hint that names its mistake."""

    hint: str
    fn: Callable


def misconceptions(variant: Callable, hints: dict[str, str]) -> list[Misconception]:
    """One Misconception per named mistake: ``variant(..., mistake=name)`` with that mistake's hint."""
    return [Misconception(hint, lambda *a, m=m, **kw: variant(*a, mistake=m, **kw))
            for m, hint in hints.items()]


def compare_outputs(out: Any, expected: Any) -> None:
    """Default comparison: same type and structure, then ``assert_close`` leaf by leaf."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(out, (tuple, list)) or len(out) != len(expected):
            raise AssertionError(f"returned {describe(out)}, expected a tuple of "
                                 f"{len(expected)}: {describe(expected)}")
        for i, (o, e) in enumerate(zip(out, expected)):
            compare_outputs_leaf(o, e, what=f"output[{i}]")
        return
    compare_outputs_leaf(out, expected, what="output")


def compare_outputs_leaf(out: Any, expected: Any, what: str) -> None:
    if isinstance(expected, torch.Tensor):
        if not isinstance(out, torch.Tensor):
            raise AssertionError(f"{what}: returned {type(out).__name__}, expected a torch.Tensor")
        if out.dtype != expected.dtype:
            raise AssertionError(f"{what}: dtype {out.dtype}, expected {expected.dtype}")
    elif isinstance(expected, np.ndarray):
        if isinstance(out, torch.Tensor) or not hasattr(out, "shape"):
            raise AssertionError(f"{what}: returned {type(out).__name__}, expected a numpy array")
    assert_close(out, expected, what=what)


def _clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    if hasattr(x, "copy") and hasattr(x, "format"):  # scipy.sparse
        return x.copy()
    if isinstance(x, tuple):
        values = [_clone(v) for v in x]
        return type(x)(*values) if hasattr(x, "_fields") else tuple(values)  # keep namedtuples
    return x


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return torch.equal(x, y) or bool(torch.isnan(x).any() and torch.equal(x.nan_to_num(), y.nan_to_num()))
    if isinstance(x, np.ndarray):
        return np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
    if hasattr(x, "format") and hasattr(x, "toarray"):
        return (x != y).nnz == 0
    return True


def _is_not_implemented(err: BaseException) -> bool:
    """True for NotImplementedError, also when a kernel compiler wrapped it."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, NotImplementedError) or "NotImplementedError" in str(err):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def run_checker(name: str, fn: Callable, cases: Sequence[Case], reference: Callable,
                misconceptions: Sequence[Misconception] = (),
                compare: Callable[[Any, Any], None] = compare_outputs) -> None:
    """Check ``fn`` against ``reference`` on every case; print the pass line or raise.

    A blank exercise (NotImplementedError) prints the 'not implemented yet' line and
    returns, so the rest of the notebook still runs. A wrong answer raises AssertionError
    naming the case, the input shapes, the worst error and a hint.
    """
    if not callable(fn):
        raise TypeError(f"check.{name} takes your function itself, e.g. check.{name}({name}), "
                        f"not {type(fn).__name__}")
    for i, case in enumerate(cases, 1):
        header = f"{name}: case {i}/{len(cases)} ({case.label}) failed\n  inputs: " + \
            ", ".join(describe(a) for a in case.args)
        if case.kwargs:
            header += ", " + ", ".join(f"{k}={describe(v)}" for k, v in case.kwargs.items())
        args = tuple(_clone(a) for a in case.args)
        try:
            out = fn(*args, **case.kwargs)
        except Exception as err:  # noqa: BLE001 - a student's code may raise anything
            if _is_not_implemented(err):
                print(NOT_IMPLEMENTED.format(name=name))
                return
            where = traceback.format_exception_only(type(err), err)[-1].strip()
            hint = _diagnose_error(err, case, misconceptions) or case.hint or \
                "run it on the inputs above to see where it breaks"
            raise AssertionError(f"{header}\n  your function raised {where}\n  hint: {hint}") from err
        if not all(_same(a, b) for a, b in zip(args, case.args)):
            raise AssertionError(f"{header}\n  your function modified its input in place\n"
                                 f"  hint: work on a copy; the caller's arrays must stay as they were")
        expected = reference(*case.args, **case.kwargs)
        try:
            compare(out, expected)
        except AssertionError as err:
            hint = _diagnose(fn, out, case, cases, misconceptions, compare, expected) or case.hint
            if not hint and "dtype" in str(err):
                hint = DTYPE_HINT
            hint = hint or "compare your code with the definition in the text above, line by line"
            raise AssertionError(f"{header}\n  {err}\n  hint: {hint}") from None
    print(PASS.format(name=name, n=len(cases)))


DTYPE_HINT = ("the output must have the input's dtype: compute in float32 if you like, then "
              "cast back with .to(x.dtype)")


def _call(fn: Callable, case: Case) -> Any:
    return fn(*(_clone(a) for a in case.args), **case.kwargs)


def _agrees(compare: Callable, out: Any, other: Any) -> bool:
    try:
        compare(out, other)
        return True
    except AssertionError:
        return False


def _diagnose(fn: Callable, out: Any, failing: Case, cases: Sequence[Case],
              misconceptions: Sequence[Misconception], compare: Callable, expected: Any) -> str:
    """The hint of the misconception that explains the student's output best.

    Candidates must reproduce the failing output (and differ from the reference there);
    among them, the one that agrees with the student on the most cases wins.
    """
    candidates = []
    for m in misconceptions:
        try:
            wrong = _call(m.fn, failing)
        except Exception:  # noqa: BLE001 - a mutant may legitimately crash on some cases
            continue
        if not _agrees(compare, wrong, expected) and _agrees(compare, out, wrong):
            candidates.append(m)
    if len(candidates) <= 1:
        return candidates[0].hint if candidates else ""
    student = {}
    for case in cases:
        try:
            student[id(case)] = out if case is failing else _call(fn, case)
        except Exception:  # noqa: BLE001
            student[id(case)] = None

    def score(m: Misconception) -> int:
        total = 0
        for case in cases:
            try:
                total += student[id(case)] is not None and _agrees(compare, student[id(case)], _call(m.fn, case))
            except Exception:  # noqa: BLE001
                pass
        return total
    return max(candidates, key=score).hint  # max keeps the first of equal scores


def on_course_device(fn: Callable) -> Callable:
    """fn with tensor arguments moved to labkit's device and tensor results moved back to the CPU.

    Triton checkers build their cases on the CPU; a compiled kernel on a GPU needs CUDA tensors.
    """
    from labkit.device import DEVICE

    if not callable(fn):
        return fn  # run_checker explains what it wants

    def moved(*args, **kwargs):
        to = lambda t: t.to(DEVICE) if isinstance(t, torch.Tensor) else t  # noqa: E731
        out = fn(*map(to, args), **{k: to(v) for k, v in kwargs.items()})
        back = lambda t: t.cpu() if isinstance(t, torch.Tensor) else t  # noqa: E731
        return type(out)(map(back, out)) if isinstance(out, tuple) else back(out)
    return moved


def _diagnose_error(err: BaseException, case: Case, misconceptions: Sequence[Misconception]) -> str:
    """The hint of the first misconception that raises the same error on this case."""
    for m in misconceptions:
        try:
            m.fn(*(_clone(a) for a in case.args), **case.kwargs)
        except Exception as wrong:  # noqa: BLE001
            if type(wrong) is type(err) and str(wrong) == str(err):
                return m.hint
    return ""
