"""A student's kernel run the way every Triton checker runs it: on the course device, on fresh NaN memory,
bounds-checked when interpreted and run twice when compiled. Introduced in notebook 02."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from labkit.check.core import causes


def on_course_device(fn: Callable) -> Callable:
    """fn with tensor arguments moved to labkit's device and tensor results moved back to the CPU.

    Triton checkers build their cases on the CPU; a compiled kernel on a GPU needs CUDA tensors.
    Fresh memory is NaN while fn runs, so an output element the kernel never stores shows the same way
    on every run. Interpreted, every access is bounds-checked (labkit.kernels.guard) and a stray one
    comes back as KernelMemoryError; compiled, fn runs twice and results that differ are named.
    numpy's floating-point warnings (exp overflowing on a probe's large inputs) are switched off:
    the checker judges the results.
    """
    from labkit.device import DEVICE, INTERPRET
    from labkit.kernels.guard import KernelMemoryError, fresh_memory_is_nan

    def once(args, kwargs):
        to = lambda t: t.to(DEVICE) if isinstance(t, torch.Tensor) else t  # noqa: E731
        with np.errstate(all="ignore"), fresh_memory_is_nan():
            try:
                out = fn(*map(to, args), **{k: to(v) for k, v in kwargs.items()})
            except Exception as err:  # the interpreter wraps the guard's error in its own
                fault = next((e for e in causes(err) if isinstance(e, KernelMemoryError)), None)
                if fault is not None:
                    raise KernelMemoryError(str(fault)) from None
                raise
        back = lambda t: t.cpu() if isinstance(t, torch.Tensor) else t  # noqa: E731
        return type(out)(map(back, out)) if isinstance(out, tuple) else back(out)

    def moved(*args, **kwargs):
        out = once(args, kwargs)
        if not INTERPRET and not _same_bits(out, once(args, kwargs)):
            raise KernelMemoryError("varies: two runs on the same input gave different results")
        return out
    return moved


def _same_bits(x: Any, y: Any) -> bool:
    """Bitwise equality of two results (NaN equal to NaN), tuple by tuple."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype and \
            torch.equal(x.view(-1).view(torch.uint8), y.view(-1).view(torch.uint8))
    if isinstance(x, (tuple, list)):
        return isinstance(y, (tuple, list)) and len(x) == len(y) and all(map(_same_bits, x, y))
    return True
