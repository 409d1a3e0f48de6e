"""Bounds for Triton's interpreter: every load, store and atomic a kernel makes lands inside a tensor it was given.

On a CPU, Triton's interpreter dereferences a kernel's pointers as they are. An unmasked store
past a tensor's end writes into the Python process's own heap: the Jupyter kernel dies
("free(): invalid next size") or computes on with corrupted memory, and an unmasked load reads
whatever lies there, a different value each run. With the guard installed, each access's active
lanes are checked first: all must lie inside one of the launch's tensor arguments (its own extent,
not its storage; a block of pointers derives from one base). Otherwise ``KernelMemoryError`` is
raised before any byte moves: it names the kernel, the program, the line, how many lanes, the
element and the argument meant, and what was seen, which selects the hint. ``labkit.device``
installs it whenever kernels are interpreted (notebook 02).

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

# What was seen, in the words the message uses, and what it allows. A stray lane is evidence of where
# a pointer went, not of why: each hint names every mistake that puts a lane there, and only those
# (labkit.check.core and the grader pick it by the message's opening words).
_PAST = ("or an offset is wrong (a stride, or a block start such as pid * BLOCK or start_n), or the tensor is "
         "smaller than the kernel assumes (its allocation in the wrapper)")
HINTS = {
    ("store", "every lane active"): "every lane of the store was active and some point past the tensor's end: "
        "mask the store (tl.store(ptrs, value, mask=offs < n), n the length the offsets run along: n_cols or N, "
        "not BLOCK; < not <=), " + _PAST,
    ("load", "every lane active"): "every lane of the load was active and some point past the tensor's end: "
        "mask the load (tl.load(ptrs, mask=offs < n, other=...), n the length the offsets run along: n_cols or "
        "N, not BLOCK; < not <=; `other` neutral for what follows: -inf before a max, 0 before a sum), " + _PAST,
    ("atomic", "every lane active"): "every lane of the atomic operation was active and some point past the "
        "tensor's end: mask it, " + _PAST,
    **{(op, "past its mask"): f"the {op}'s mask lets lanes past the tensor's end through: compare the offsets "
       "with the length they run along (n_cols or N, not BLOCK; < not <=), " + _PAST for op in ("store", "load")},
    ("atomic", "past its mask"): "the atomic operation's mask lets lanes past the tensor's end through, " + _PAST,
    **{(op, "no lane in any tensor"): "no lane of this block lies inside any of the kernel's tensors, so a mask is "
       "not the fix: the base offset is wrong (the batch and head offsets, off_b * stride_b + off_h * stride_h, a "
       "stride, or a term subtracted: a negative offset), or the tensor is smaller than the kernel assumes (its "
       "allocation in the wrapper)" for op in ("store", "load", "atomic")},
    **{(op, "before the start"): "an offset is negative: lanes point before the tensor's first element, which no "
       "mask can fix; check the strides and the block start (pid * BLOCK, start_n)" for op in ("store", "load", "atomic")},
    ("varies", ""): "your kernel's results change from run to run on the same input, so it reads memory it never "
        "wrote: an unmasked load past a tensor's end, or an output read before it is stored",
}
_FAULT = re.compile(r"(store|load|atomic) outside the kernel's tensors \((every lane active|past its mask|"
                    r"no lane in any tensor|before the start)\)|(varies)\b")


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
    elif hasattr(getattr(value, "base", None), "data_ptr"):  # a TensorDescriptor, or a TensorWrapper (a dtype view)
        yield name, value.base


def _record_launch(kernel: str, arg_names: list[str], args: list, kwargs: dict) -> None:
    """Remember the extent of each of this launch's tensor arguments (first to last byte of the view):
    the only memory its kernel may touch, one tensor per access."""
    spans = []
    for name, value in list(zip(arg_names, args)) + list(kwargs.items()):
        for label, t in _tensors(value, name):
            if t.numel():
                last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
                spans.append((t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size(), label))
    _launch["kernel"] = kernel
    _launch["ranges"] = np.array([sp[:2] for sp in spans], dtype=np.uint64).reshape(-1, 2)
    _launch["names"] = [sp[2] for sp in spans]


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


def _element(address: int, width: int, home: int) -> str:
    """'element 14 of y_ptr, which has 14' (and which other argument the address lies in, if any)."""
    (start, end), name = _launch["ranges"][home].tolist(), _launch["names"][home]
    text = f"element {(address - start) // width} of {name}, which has {(end - start) // width}"
    others = [_launch["names"][r] for r, (s0, e0) in enumerate(_launch["ranges"].tolist())
              if r != home and s0 <= address < e0]
    return text + (f" (that address lies inside {others[0]})" if others else "")


def _check(kind: str, ptrs, mask, width: int) -> None:
    """Raise KernelMemoryError unless the active lanes of ``ptrs`` (bytes [p, p + width)) all lie inside one
    tensor argument: a block of pointers derives from one base, so lanes in two tensors are a stray access too."""
    addresses = np.asarray(ptrs.data, dtype=np.uint64).ravel()
    masked = False
    if mask is not None:
        active = np.broadcast_to(np.asarray(mask.data, dtype=bool), np.shape(ptrs.data)).ravel()
        addresses, masked = addresses[active], not active.all()
    if not addresses.size:
        return
    ranges = _launch["ranges"]
    inside = (addresses[None, :] >= ranges[:, :1]) & (addresses[None, :] + np.uint64(width) <= ranges[:, 1:])
    if inside.all(axis=1).any():
        return
    if len(ranges) and inside[:, 0].any():  # the tensor holding the block's first lane is the one meant
        home = int(inside[:, 0].argmax())
    elif len(ranges) and inside.any():  # else the one holding most lanes
        home = int(inside.sum(axis=1).argmax())
    elif len(ranges):  # none inside any: the tensor nearest the lowest lane
        low = int(addresses.min())
        home = int(np.argmin([abs(low - int(s0)) if low < int(s0) else max(0, low - int(e0)) for s0, e0 in ranges]))
    else:
        raise KernelMemoryError(f"{kind} outside the kernel's tensors (every lane active) in {_launch['kernel']}: "
                                "it was given no tensor")
    stray = addresses[~inside[home]]
    before = int(stray.min()) < int(ranges[home, 0])
    first = int(stray.min()) if before else int(stray.max())
    nowhere = not inside.any()  # which tensor is nearest is the allocator's doing: say no more than "none"
    from triton.runtime.interpreter import interpreter_builder
    program = tuple(int(i) for i in (interpreter_builder.grid_idx or ()))
    line = _kernel_line()
    seen = "no lane in any tensor" if nowhere else "before the start" if before else \
        "past its mask" if masked else "every lane active"
    raise KernelMemoryError(
        f"{kind} outside the kernel's tensors ({seen}) in {_launch['kernel']}, program {program}"
        + (f", {line}" if line else "") + f". {stray.size} of {addresses.size} active lanes fall outside "
        f"{_launch['names'][home]}; {'the lowest' if before else 'the highest'} at {_element(first, width, home)}")


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
    _deterministic(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = was[2]
        _deterministic(was[0], warn_only=was[1])


# torch's switch for deterministic algorithms, which the NaN fill needs. torch.use_deterministic_algorithms also
# sets inductor's flag and so imports torch._inductor (about 2 s the first time, in every process: it made the
# first check of a grading kernel time out); nothing here compiles, so the switch alone does.
_deterministic = getattr(torch._C, "_set_deterministic_algorithms", torch.use_deterministic_algorithms)
