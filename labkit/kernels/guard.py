"""Bounds for Triton's interpreter: every load, store and atomic a kernel makes lands inside a tensor it was given.

On a CPU, Triton's interpreter dereferences a kernel's pointers as they are. An unmasked store
past a tensor's end writes into the Python process's own heap: the Jupyter kernel dies
("free(): invalid next size") or computes on with corrupted memory, and an unmasked load reads
whatever lies there, a different value each run. With the guard installed, each access's active
lanes are checked first against the storages of the launch's tensor arguments, and a lane outside
all of them raises ``KernelMemoryError`` before any byte moves: it names the kernel, the program,
the line, how many lanes, and the nearest argument. ``labkit.device`` installs it whenever kernels
are interpreted (notebook 02).

On a GPU the compiled kernel cannot be watched like this; there the checkers run a kernel twice
on memory filled with NaN (``fresh_memory_is_nan``) and name results that change between runs.
"""
from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys

import numpy as np
import torch

# What was seen, in the words the message uses, and what it singles out. A stray lane is evidence of
# where the pointer went, not of why: the hint names what that evidence allows (labkit.check.core and
# the grader pick it by the message's opening words).
_BEFORE = "an offset is negative: the lane points before the tensor's first element, which no mask can fix; " \
          "check the strides and the block start (pid * BLOCK, start_n)"
HINTS = {
    ("store", "no lane masked off"): "mask the store: tl.store(ptrs, value, mask=offs < n) must leave out every "
        "lane past the tensor's end; if every lane should be inside, an offset is wrong instead (a stride or a "
        "block start)",
    ("load", "no lane masked off"): "mask the load: tl.load(ptrs, mask=offs < n, other=...) must leave out every "
        "lane past the tensor's end, with an `other` neutral for what follows (-inf before a max, 0 before a "
        "sum); if every lane should be inside, an offset is wrong instead (a stride or a block start)",
    ("atomic", "no lane masked off"): "mask the atomic operation: every lane past the tensor's end must be masked "
        "off; if every lane should be inside, an offset is wrong instead",
    ("store", "past its mask"): "the store's mask lets lanes past the tensor's end through: compare the offsets "
        "with the length they index (n_cols or N, not BLOCK, and < not <=), or an offset is wrong (a stride or a "
        "block start)",
    ("load", "past its mask"): "the load's mask lets lanes past the tensor's end through: compare the offsets "
        "with the length they index (n_cols or N, not BLOCK, and < not <=), or an offset is wrong (a stride or a "
        "block start)",
    ("atomic", "past its mask"): "the atomic operation's mask lets lanes past the tensor's end through, or an "
        "offset is wrong",
    ("store", "before the start"): _BEFORE, ("load", "before the start"): _BEFORE, ("atomic", "before the start"): _BEFORE,
    ("varies", ""): "your kernel's results change from run to run on the same input, so it reads memory it never "
        "wrote: an unmasked load past a tensor's end, or an output read before it is stored",
}
_FAULT = re.compile(r"(store|load|atomic) outside the kernel's tensors \((no lane masked off|past its mask|"
                    r"before the start)\)|(varies)\b")


class KernelMemoryError(IndexError):
    """A kernel touched memory outside every tensor it was given (or gave results that vary run to run).

    The message opens with the access and what was seen ("store outside the kernel's tensors (past its
    mask)", or "varies"), which select the hint in ``HINTS``.
    """


_launch: dict = {"kernel": "", "ranges": np.zeros((0, 2), np.uint64), "names": []}
_installed: list[str] = []  # "" once installed; why not, when this Triton's interpreter lacks the hooks


def _tensors(value, name: str):
    """(name, tensor) for every tensor in one launch argument (tensors inside tuples and descriptors too)."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{name}[{i}]")
    elif hasattr(value, "base") and isinstance(getattr(value, "base"), torch.Tensor):  # a TensorDescriptor
        yield name, value.base
    elif hasattr(value, "base") and hasattr(value.base, "data_ptr"):  # a TensorWrapper (reinterpreted dtype)
        yield name, value.base


def _record_launch(kernel: str, arg_names: list[str], args: list, kwargs: dict) -> None:
    """Remember the storages of this launch's tensor arguments: the only memory its kernel may touch."""
    spans: dict[int, tuple[int, str]] = {}
    named = list(zip(arg_names, args)) + list(kwargs.items())
    for name, value in named:
        for label, t in _tensors(value, name):
            storage = t.untyped_storage()
            start, size = storage.data_ptr(), storage.nbytes()
            if size and start not in spans:
                spans[start] = (size, label)
    order = sorted(spans)
    _launch["kernel"] = kernel
    _launch["ranges"] = np.array([[s, s + spans[s][0]] for s in order], dtype=np.uint64).reshape(-1, 2)
    _launch["names"] = [(spans[s][1], spans[s][0]) for s in order]


def _kernel_line() -> str:
    """'line 12: tl.store(y_ptr + offs, y)': the innermost frame of the kernel (or a jit helper it calls)."""
    import triton
    skip = (os.path.dirname(triton.__file__), os.path.dirname(np.__file__), __file__)
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame = frame.f_back
    if frame is None:
        return ""
    text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f"line {frame.f_lineno}: {text}" if text else f"line {frame.f_lineno}"


def _where(address: int, width: int) -> tuple[str, bool]:
    """Where one stray address lies against the nearest argument ('element 14 of y_ptr, which has 14'),
    and whether it lies before that argument's start."""
    if not len(_launch["ranges"]):
        return "no tensor (the kernel was given none)", False
    best = None
    for (start, end), (name, size) in zip(_launch["ranges"].tolist(), _launch["names"]):
        gap = address + width - end if address >= end else start - address
        if best is None or gap < best[0]:
            best = (gap, f"element {(address - start) // width} of {name}, which has {size // width}",
                    address < start)
    return best[1], best[2]


def _check(kind: str, ptrs, mask, width: int) -> None:
    """Raise KernelMemoryError if an active lane of ``ptrs`` (bytes [p, p + width)) lies outside every argument."""
    addresses = np.asarray(ptrs.data, dtype=np.uint64).ravel()
    masked = False
    if mask is not None:
        active = np.broadcast_to(np.asarray(mask.data, dtype=bool), np.shape(ptrs.data)).ravel()
        addresses, masked = addresses[active], not active.all()
    if not addresses.size:
        return
    ranges = _launch["ranges"]
    slot = np.searchsorted(ranges[:, 0], addresses, side="right").astype(np.int64) - 1
    inside = (slot >= 0) & (addresses + np.uint64(width) <= ranges[np.maximum(slot, 0), 1]) if len(ranges) else \
        np.zeros(addresses.shape, bool)
    if inside.all():
        return
    stray = addresses[~inside]
    from triton.runtime.interpreter import interpreter_builder
    program = tuple(int(i) for i in (interpreter_builder.grid_idx or ()))
    line = _kernel_line()
    where, before = _where(int(stray.min()), width)
    if not before:
        where, before = _where(int(stray.max()), width)
    seen = "before the start" if before else "past its mask" if masked else "no lane masked off"
    raise KernelMemoryError(
        f"{kind} outside the kernel's tensors ({seen}) in {_launch['kernel']}, program {program}"
        + (f", {line}" if line else "") + f". {stray.size} of {addresses.size} active lanes point outside; "
        f"{'the lowest' if before else 'the highest'} at {where}")


def _width(element_ty) -> int:
    return max(1, element_ty.primitive_bitwidth // 8)


def install() -> str:
    """Install the guard in Triton's interpreter (once); '' when installed, else why not (older Triton)."""
    if _installed:
        return _installed[0]
    try:
        from triton.runtime import interpreter as ti
        builder, executor = ti.interpreter_builder, ti.GridExecutor
        load, store = builder.create_masked_load, builder.create_masked_store
        rmw, cas = builder.create_atomic_rmw, builder.create_atomic_cas
        init_args = executor._init_args_hst
    except (ImportError, AttributeError) as err:
        _installed.append(f"this Triton's interpreter has no hook for the memory guard ({err})")
        return _installed[0]

    def create_masked_load(ptrs, mask, other, *rest):
        _check("load", ptrs, mask, _width(ptrs.get_element_ty()))
        return load(ptrs, mask, other, *rest)

    def create_masked_store(ptrs, value, mask, *rest):
        _check("store", ptrs, mask, value.data.dtype.itemsize)
        return store(ptrs, value, mask, *rest)

    def create_atomic_rmw(op, ptr, val, mask, *rest):
        _check("atomic", ptr, mask, val.data.dtype.itemsize)
        return rmw(op, ptr, val, mask, *rest)

    def create_atomic_cas(ptr, cmp, val, *rest):
        _check("atomic", ptr, None, val.data.dtype.itemsize)
        return cas(ptr, cmp, val, *rest)

    def _init_args_hst(self, args_dev, kwargs):
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        _record_launch(getattr(self.fn, "__name__", "kernel"), list(self.arg_names), args_hst, kwargs_hst)
        return args_hst, kwargs_hst

    builder.create_masked_load, builder.create_masked_store = create_masked_load, create_masked_store
    builder.create_atomic_rmw, builder.create_atomic_cas = create_atomic_rmw, create_atomic_cas
    executor._init_args_hst = _init_args_hst
    _installed.append("")
    return ""


def memory_fault(error: str) -> tuple[str, str] | None:
    """(what was seen, hint) when an outcome's error text is a KernelMemoryError, else None."""
    head = "KernelMemoryError: "
    at = error.find(head)
    if at < 0:
        return None
    seen = error[at + len(head):].strip()
    found = _FAULT.match(seen)
    if not found:
        return None
    return seen, HINTS[("varies", "") if found.group(3) else (found.group(1), found.group(2))]


@contextlib.contextmanager
def fresh_memory_is_nan():
    """Within the block, torch.empty and friends return NaN (floats) or the largest value (integers),
    so an output element a kernel never stores, or reads before storing, shows up the same way every run."""
    was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.utils.deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = was[2]
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
