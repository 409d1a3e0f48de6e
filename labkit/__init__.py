"""labkit: the implementations, checkers and tools behind the FlashAttention and linear-systems course.

Import order matters only once: `labkit.device` runs first so that, without CUDA,
Triton's interpreter is switched on before any kernel is defined.
"""
from labkit import device  # noqa: F401  (side effect: TRITON_INTERPRET on CPU)

__version__ = "0.1.0"
