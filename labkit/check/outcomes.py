"""Outcomes as safe data: what a student's functions did, carried from their kernel to the grader.

The grader never runs student code and never reads a verdict from printed text. In the
student's kernel, :func:`harvest` evaluates each exercise's function on its checker's inputs
(``core.evaluate`` after ``prepare``) and saves the :class:`~labkit.check.core.Outcome` s with
``torch.save`` as nested dicts and lists of tensors and plain values (:func:`encode`). The grader
loads them with ``torch.load(weights_only=True)`` (no arbitrary pickle: :func:`load_outcomes`)
and judges them with the same ``Checker.judge`` the notebook's own check uses.
"""
from __future__ import annotations

import collections
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "labkit-outcomes/1"
MAX_DEPTH = 16  # deeper structures are not a course answer
MAX_TEXT = 20_000  # characters kept of a string
MAX_FILE = 2 << 30  # bytes: a larger outcomes file is refused
_NUMPY_KINDS = "biufc"  # bool, ints, floats, complex: every byte layout torch can carry as uint8


class Unsupported:
    """Stands for a returned value of a type the format does not carry (judged as a wrong answer)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<unsupported type {self.type_name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unsupported) and other.type_name == self.type_name


class MalformedOutcomes(ValueError):
    """An outcomes file that is not what :func:`harvest` writes (tampered with, or truncated)."""


# ------------------------------------------------------------------------------ encoding

def _type_name(x: Any) -> str:
    name = getattr(type(x), "__qualname__", None)
    return name[:80] if isinstance(name, str) else "object"


def _plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy of ``t`` as a plain torch.Tensor (no subclass, no grad)."""
    t = t.detach()
    if type(t) is not torch.Tensor:
        t = t.as_subclass(torch.Tensor)
    return t.cpu().resolve_conj().resolve_neg().contiguous().clone()


def encode(x: Any, depth: int = 0) -> Any:
    """``x`` as nested dicts/lists of plain tensors, str, int, float, bool and None.

    Tuples, namedtuples (with their field names), numpy arrays and scalars (with their dtype)
    and complex numbers are tagged dicts; anything else becomes an "unsupported type" marker.
    """
    if depth > MAX_DEPTH:
        return {"unsupported": "a structure nested too deep"}
    if x is None or type(x) in (bool, int, float):
        return x
    if type(x) is str:
        return x[:MAX_TEXT]
    if type(x) is complex:
        return {"complex": [x.real, x.imag]}
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided or x.is_quantized or x.device.type == "meta":
            return {"unsupported": f"tensor with layout {x.layout} on {x.device.type}"}
        return {"tensor": _plain_tensor(x)}
    if isinstance(x, (np.ndarray, np.generic)):
        a = np.asarray(x)
        if a.dtype.kind not in _NUMPY_KINDS or a.dtype.fields is not None:
            return {"unsupported": f"numpy {a.dtype}"}
        raw = torch.from_numpy(np.ascontiguousarray(a).reshape(-1).view(np.uint8).copy())
        return {"ndarray": raw, "dtype": a.dtype.str, "shape": list(a.shape),
                "scalar": isinstance(x, np.generic)}
    if isinstance(x, tuple) and isinstance(getattr(type(x), "_fields", None), tuple):
        fields = [str(f) for f in type(x)._fields]
        return {"namedtuple": _type_name(x), "fields": fields,
                "items": [encode(v, depth + 1) for v in tuple.__iter__(x)]}
    if type(x) is tuple:
        return {"tuple": [encode(v, depth + 1) for v in x]}
    if type(x) is list:
        return [encode(v, depth + 1) for v in x]
    if type(x) is dict and all(type(k) is str for k in x):
        return {"dict": {k[:200]: encode(v, depth + 1) for k, v in x.items()}}
    for plain in (int, float, str):  # subclasses (np.float64 is caught above)
        if isinstance(x, plain):
            return encode(plain(x), depth)
    return {"unsupported": _type_name(x)}


def decode(x: Any, depth: int = 0) -> Any:
    """The value :func:`encode` encoded (numpy arrays with their dtype, namedtuples rebuilt by
    field names); raises MalformedOutcomes on anything :func:`encode` does not produce."""
    if depth > MAX_DEPTH + 1:
        raise MalformedOutcomes("nested too deep")
    if x is None or type(x) in (bool, int, float, str):
        return x
    if type(x) is list:
        return [decode(v, depth + 1) for v in x]
    if type(x) is not dict or len(x) == 0:
        raise MalformedOutcomes(f"unexpected {type(x).__name__}")
    tag = next(iter(x))
    if tag == "tensor" and type(x.get("tensor")) is torch.Tensor and len(x) == 1:
        return x["tensor"]
    if tag == "ndarray" and set(x) == {"ndarray", "dtype", "shape", "scalar"}:
        dtype = np.dtype(str(x["dtype"]))
        if dtype.kind not in _NUMPY_KINDS or x["ndarray"].dtype != torch.uint8:
            raise MalformedOutcomes(f"numpy dtype {dtype}")
        a = np.frombuffer(x["ndarray"].numpy().tobytes(), dtype=dtype).reshape([int(n) for n in x["shape"]])
        return a[()] if x["scalar"] else a.copy()
    if tag == "tuple" and len(x) == 1 and type(x["tuple"]) is list:
        return tuple(decode(v, depth + 1) for v in x["tuple"])
    if tag == "namedtuple" and set(x) == {"namedtuple", "fields", "items"}:
        fields = [str(f) for f in x["fields"]]
        name = re.sub(r"\W", "_", str(x["namedtuple"]).split(".")[-1]) or "Result"
        if not name[0].isalpha():
            name = "T" + name
        items = [decode(v, depth + 1) for v in x["items"]]
        try:
            return collections.namedtuple(name, fields)(*items)
        except (TypeError, ValueError) as err:
            raise MalformedOutcomes(f"namedtuple: {err}") from None
    if tag == "dict" and len(x) == 1 and type(x["dict"]) is dict:
        return {str(k): decode(v, depth + 1) for k, v in x["dict"].items()}
    if tag == "complex" and len(x) == 1 and len(x["complex"]) == 2:
        return complex(float(x["complex"][0]), float(x["complex"][1]))
    if tag == "unsupported" and len(x) == 1:
        return Unsupported(str(x["unsupported"])[:200])
    raise MalformedOutcomes(f"unknown tag {str(tag)[:40]!r}")


def encode_outcome(o: Any) -> dict:
    """A core.Outcome as a dict of encoded fields."""
    return {"value": encode(o.value), "error": str(o.error)[:MAX_TEXT], "frames": str(o.frames)[:MAX_TEXT],
            "not_implemented": bool(o.not_implemented), "modified": bool(o.modified),
            "calls": encode(list(o.calls))}


def decode_outcome(d: Any) -> Any:
    from labkit.check.core import Outcome
    if type(d) is not dict or set(d) != {"value", "error", "frames", "not_implemented", "modified", "calls"}:
        raise MalformedOutcomes("not an outcome")
    calls = decode(d["calls"])
    if type(calls) is not list or type(d["error"]) is not str or type(d["frames"]) is not str:
        raise MalformedOutcomes("not an outcome")
    return Outcome(value=decode(d["value"]), error=d["error"], frames=d["frames"],
                   not_implemented=d["not_implemented"] is True, modified=d["modified"] is True, calls=calls)


# ----------------------------------------------------------------------------- files

def outcomes_path(folder: str | Path, name: str) -> Path:
    if not re.fullmatch(r"\w+", name):
        raise ValueError(f"not an exercise name: {name!r}")
    return Path(folder) / f"{name}.pt"


def save_outcomes(folder: str | Path, name: str, outcomes: list | None, note: str = "") -> Path:
    """Write one exercise's outcomes (None: the function is missing; ``note`` says why)."""
    path = outcomes_path(folder, name)
    data = {"format": FORMAT, "name": name, "note": note[:MAX_TEXT],
            "outcomes": None if outcomes is None else [encode_outcome(o) for o in outcomes]}
    torch.save(data, path)
    return path


def load_outcomes(folder: str | Path, name: str) -> tuple[list | None, str]:
    """(outcomes or None when the function was missing, note) of one exercise, loaded safely.

    Raises FileNotFoundError when the kernel wrote nothing for it, MalformedOutcomes when the
    file is not one :func:`save_outcomes` writes.
    """
    path = outcomes_path(folder, name)
    if path.stat().st_size > MAX_FILE:
        raise MalformedOutcomes(f"{path.name} is larger than {MAX_FILE >> 20} MiB")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - anything the safe unpickler refuses
        raise MalformedOutcomes(f"{path.name} is not a safe outcomes file ({type(err).__name__})") from None
    if type(data) is not dict or data.get("format") != FORMAT or data.get("name") != name:
        raise MalformedOutcomes(f"{path.name} is not a {FORMAT} file for {name}")
    note = data.get("note") if type(data.get("note")) is str else ""
    if data.get("outcomes") is None:
        return None, note
    if type(data["outcomes"]) is not list:
        raise MalformedOutcomes("outcomes is not a list")
    return [decode_outcome(d) for d in data["outcomes"]], note


# ----------------------------------------------------------- in the student's kernel

class _Timeout(BaseException):
    pass


TIMED_OUT = "TimeoutError: no result within"  # the error of an input the time limit cut off


def harvest(exercises: dict[str, str], namespace: dict, folder: str | Path, seconds: int = 120,
            modules: tuple[str, ...] = ("labkit.check",)) -> None:
    """In the student's kernel: for each ``{checker name: function name}``, evaluate the student's
    function on the checker's inputs and save the outcomes (one file per exercise).

    A missing function is saved as None; each exercise gets ``seconds`` (SIGALRM), after which
    its remaining inputs are recorded as timed out.
    """
    import importlib

    from labkit.check import core
    for module in modules:
        importlib.import_module(module)
    os.makedirs(folder, exist_ok=True)

    def alarm(*_):
        raise _Timeout
    for name, fn_name in exercises.items():
        if name not in core.CHECKERS:  # the grader reports it
            continue
        fn = namespace.get(fn_name)
        if fn is None:
            save_outcomes(folder, name, None, f"no function named {fn_name} in the notebook")
            continue
        if not callable(fn):
            save_outcomes(folder, name, None, f"{fn_name} is a {_type_name(fn)}, not a function")
            continue
        checker = core.CHECKERS[name]()
        outcomes: list = []
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(max(1, int(seconds)))
        try:
            run = checker.prepare(fn) if checker.prepare else fn
            for i, (first, (args, kwargs)) in enumerate(zip(checker.first_of_each(), checker.inputs())):
                outcomes.append(outcomes[first] if first < i else core.evaluate(run, args, kwargs))
        except (_Timeout, KeyboardInterrupt) as stop:  # KeyboardInterrupt: raised by the function (no one presses stop here)
            error = f"{TIMED_OUT} {seconds} s" if isinstance(stop, _Timeout) else "KeyboardInterrupt"
            outcomes += [core.Outcome(error=error)] * (len(checker.inputs()) - len(outcomes))
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        save_outcomes(folder, name, outcomes)


def harvest_cell(exercises: dict[str, str], folder: str, seconds: int, modules: tuple[str, ...]) -> str:
    """The source of the one cell the grader appends after a submission's cells."""
    return (f"import labkit.check.outcomes as _labkit_outcomes\n"
            f"_labkit_outcomes.harvest({exercises!r}, globals(), {folder!r}, {int(seconds)}, {tuple(modules)!r})")


def judge_outcomes(checker: Any, outcomes: list) -> Any:
    """``checker.judge`` on loaded outcomes (an input without an outcome is a malformed file)."""
    n = len(checker.inputs())
    if len(outcomes) != n:
        raise MalformedOutcomes(f"{len(outcomes)} outcomes for {n} inputs")
    return checker.judge(lambda i: outcomes[i])
