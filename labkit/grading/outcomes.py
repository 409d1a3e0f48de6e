"""Outcomes as safe data: what a student's functions did, carried from their kernel to the grader.

The grader never runs student code and never reads a verdict from printed text. In the
student's kernel, ``labkit.grading.harvest`` evaluates each exercise's function on its checker's
inputs and saves the :class:`~labkit.check.core.Outcome` s with :func:`save_outcomes`: nested
dicts and lists of plain tensors and values (:func:`encode`). The grader reads the file's bytes
under a size cap and decodes them with ``torch.load(weights_only=True)`` (no arbitrary pickle:
:func:`load_outcomes`), then checks every tensor before any arithmetic touches it: contiguous,
its own storage exactly, a numeric dtype, at most ``MAX_ELEMENTS`` elements. A stride-0 or
oversized tensor is refused with the reason, never expanded.
"""
from __future__ import annotations

import collections
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "labkit-outcomes/1"
MAX_DEPTH = 16  # deeper structures are not a course answer
MAX_TEXT = 20_000  # characters kept of a string
MAX_FILE = 8 << 20  # bytes: a larger outcomes file is refused (the course's largest: 0.16 MB)
MAX_PICKLE_OPS = 200_000  # pickled operations in one file (a course answer: a few thousand)
MAX_TENSORS = 4096  # tensors in one file
MAX_ELEMENTS = 1 << 24  # elements of one tensor or array (a course answer has far fewer)
DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64, torch.complex64, torch.complex128}
_NUMPY_KINDS = "biufc"  # bool, ints, floats, complex: every byte layout torch can carry as uint8


class Unsupported:
    """Stands for a returned value of a type the format does not carry (judged as a wrong answer)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<unsupported type {self.type_name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unsupported) and other.type_name == self.type_name


TIMED_OUT = "TimeoutError: no result within"  # the error of an input the time limit cut off


class MalformedOutcomes(ValueError):
    """An outcomes file that is not what :func:`harvest` writes (tampered with, or truncated)."""


# ------------------------------------------------------------------------------ encoding

def type_name(x: Any) -> str:
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
        return {"namedtuple": type_name(x), "fields": fields,
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
    return {"unsupported": type_name(x)}


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
        return checked_tensor(x["tensor"])
    if tag == "ndarray" and set(x) == {"ndarray", "dtype", "shape", "scalar"}:
        try:
            dtype = np.dtype(str(x["dtype"]))
        except TypeError:
            raise MalformedOutcomes(f"numpy dtype {str(x['dtype'])[:20]!r}") from None
        raw = checked_tensor(x["ndarray"])
        if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or raw.dtype != torch.uint8:
            raise MalformedOutcomes(f"numpy dtype {dtype}")
        if type(x["shape"]) is not list or not all(type(n) is int and 0 <= n <= MAX_ELEMENTS for n in x["shape"]):
            raise MalformedOutcomes("numpy shape")
        count = int(np.prod(x["shape"], dtype=np.int64))
        if count * dtype.itemsize != raw.numel():
            raise MalformedOutcomes(f"an array of shape {tuple(x['shape'])} does not fit its {raw.numel()} bytes")
        a = np.frombuffer(raw.numpy().tobytes(), dtype=dtype).reshape(x["shape"])
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


def checked_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` if it is what :func:`encode` writes (a plain, contiguous tensor that owns exactly its
    storage, of a numeric dtype and a bounded size); MalformedOutcomes naming what is wrong."""
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        raise MalformedOutcomes(f"a tensor with layout {t.layout} on {t.device.type}")
    if t.dtype not in DTYPES:
        raise MalformedOutcomes(f"a tensor of dtype {t.dtype}")
    if t.numel() > MAX_ELEMENTS:
        raise MalformedOutcomes(f"a tensor of {t.numel()} elements (more than {MAX_ELEMENTS})")
    if not t.is_contiguous() or t.storage_offset() != 0 or \
            t.untyped_storage().nbytes() != t.numel() * t.element_size():
        raise MalformedOutcomes(f"a tensor of shape {tuple(t.shape)} whose size does not match its storage "
                                f"({t.untyped_storage().nbytes()} bytes)")
    return t


_FIELDS = {"value", "error", "frames", "not_implemented", "modified", "calls", "timed_out"}


def encode_outcome(o: Any) -> dict:
    """A core.Outcome as a dict of encoded fields."""
    return {"value": encode(o.value), "error": str(o.error)[:MAX_TEXT], "frames": str(o.frames)[:MAX_TEXT],
            "not_implemented": bool(o.not_implemented), "modified": bool(o.modified),
            "calls": encode(list(o.calls)), "timed_out": bool(o.timed_out)}


def decode_outcome(d: Any) -> Any:
    from labkit.check.core import Outcome
    if type(d) is not dict or set(d) != _FIELDS:
        raise MalformedOutcomes("not an outcome")
    calls = decode(d["calls"])
    if type(calls) is not list or type(d["error"]) is not str or type(d["frames"]) is not str:
        raise MalformedOutcomes("not an outcome")
    return Outcome(value=decode(d["value"]), error=d["error"], frames=d["frames"],
                   not_implemented=d["not_implemented"] is True, modified=d["modified"] is True, calls=calls,
                   timed_out=d["timed_out"] is True)


# ----------------------------------------------------------------------------- files

def outcomes_name(name: str) -> str:
    """The file name of an exercise's outcomes ('safe_softmax.pt')."""
    if not re.fullmatch(r"\w+", name):
        raise ValueError(f"not an exercise name: {name!r}")
    return f"{name}.pt"


def save_outcomes(folder: str | Path, name: str, outcomes: list | None, note: str = "") -> Path:
    """Write one exercise's outcomes (None: the function is missing; ``note`` says why).

    Whatever stands at the path (a link, a FIFO a cell left there) is removed first."""
    path = Path(folder) / outcomes_name(name)
    data = {"format": FORMAT, "name": name, "note": note[:MAX_TEXT],
            "outcomes": None if outcomes is None else [encode_outcome(o) for o in outcomes]}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    write_fresh(path, buffer.getvalue())
    return path


def write_fresh(path: str | Path, data: bytes) -> None:
    """Write a new file at ``path``; whatever stood there (a link, a FIFO) is removed, never followed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_outcomes(data: bytes, name: str) -> tuple[list | None, str]:
    """(outcomes or None when the function was missing, note) of one exercise, from the bytes of
    its file; MalformedOutcomes when they are not what :func:`save_outcomes` writes."""
    if len(data) > MAX_FILE:
        raise MalformedOutcomes(f"{outcomes_name(name)} is larger than {MAX_FILE >> 20} MiB")
    _count_objects(data, name)
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - anything the safe unpickler refuses
        raise MalformedOutcomes(f"{outcomes_name(name)} is not a safe outcomes file ({type(err).__name__})") from None
    if type(loaded) is not dict or loaded.get("format") != FORMAT or loaded.get("name") != name:
        raise MalformedOutcomes(f"{outcomes_name(name)} is not a {FORMAT} file for {name}")
    note = loaded.get("note") if type(loaded.get("note")) is str else ""
    if loaded.get("outcomes") is None:
        return None, note
    if type(loaded["outcomes"]) is not list:
        raise MalformedOutcomes("outcomes is not a list")
    return [decode_outcome(d) for d in loaded["outcomes"]], note


def _count_objects(data: bytes, name: str) -> None:
    """Refuse, before unpickling, a file with more pickled operations or tensors than any course
    answer has (600,000 tiny outcomes would keep the safe unpickler busy for minutes)."""
    import pickletools
    import zipfile
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            entries = z.namelist()
            if len(entries) > MAX_TENSORS + 8:
                raise MalformedOutcomes(f"{outcomes_name(name)} holds {len(entries)} tensors (more than {MAX_TENSORS})")
            pickled = next((n for n in entries if n.endswith("/data.pkl")), None)
            if pickled is None:
                raise MalformedOutcomes(f"{outcomes_name(name)} is not a torch.save file")
            ops = 0
            for _ in pickletools.genops(z.open(pickled)):  # streamed: no second copy of the file
                ops += 1
                if ops > MAX_PICKLE_OPS:
                    raise MalformedOutcomes(f"{outcomes_name(name)} holds more than {MAX_PICKLE_OPS} pickled objects")
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        if isinstance(err, MalformedOutcomes):
            raise
        raise MalformedOutcomes(f"{outcomes_name(name)} is not a safe outcomes file ({type(err).__name__})") from None


def judge_outcomes(checker: Any, outcomes: list) -> Any:
    """``checker.judge`` on loaded outcomes (an input without an outcome is a malformed file)."""
    n = len(checker.inputs())
    if len(outcomes) != n:
        raise MalformedOutcomes(f"{len(outcomes)} outcomes for {n} inputs")
    return checker.judge(lambda i: outcomes[i])
