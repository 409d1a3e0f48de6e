"""Triton kernels and their host wrappers (notebooks 02, 03, 06, 07).

``labkit.device`` is imported first so that, without CUDA, TRITON_INTERPRET=1 is set
before any kernel is defined. Without Triton (macOS, Windows) these modules still
import; calling a wrapper raises the one-line error of ``device.require_triton()``.
"""
from labkit import device  # noqa: F401  (first: switches on the interpreter on CPU)

from labkit.kernels.softmax import online_softmax_triton, softmax_triton  # noqa: F401
from labkit.kernels.flash_forward import flash_attention_forward_triton  # noqa: F401
from labkit.kernels.flash_backward import flash_attention_backward_triton, flash_attention_triton  # noqa: F401
