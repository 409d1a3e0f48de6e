"""Launch configurations (block sizes, warps, pipeline stages) of every labkit kernel, per GPU architecture.

A GPU is described by an ``Arch``: compute capability and shared memory per block. Each
kernel has one function ``*_config(arch, dtype, head_dim, causal)`` returning a ``Config``;
``arch=None`` means Triton's interpreter (CPU), where small blocks keep numpy fast and the
tests exercise several tiles per row. ``candidates(kernel, arch, dtype, head_dim, causal)``
lists every configuration the launch logic can pick, which ``python -m labkit compile-check``
compiles for each architecture. Used by the wrappers of notebooks 02, 03, 06 and 07.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np
import torch

from labkit import device

KIB = 1024


@dataclass(frozen=True)
class Arch:
    """A CUDA GPU as the launch logic sees it: compute capability and opt-in shared memory per block."""

    cc: int  # compute capability as major * 10 + minor: 75, 80, 86, 89, 90, 120
    shared_limit: int  # bytes of shared memory one block may use (opt-in maximum)
    name: str = ""
    sms: int = 0  # streaming multiprocessors of the GPU at hand (0 for a table entry: not known)

    @property
    def has_bf16(self) -> bool:
        return self.cc >= 80

    @property
    def small_shared(self) -> bool:
        """Turing (sm_75, T4): 64 KiB per block, no cp.async, so no deep software pipelines."""
        return self.shared_limit < 96 * KIB

    def __str__(self) -> str:
        return f"{self.name} (sm_{self.cc})" if self.name else f"sm_{self.cc}"


# Opt-in shared memory per block, from the CUDA C Programming Guide's table of compute capabilities.
ARCHS = {
    75: Arch(75, 64 * KIB, "Turing, e.g. T4"),
    80: Arch(80, 163 * KIB, "Ampere A100"),
    86: Arch(86, 99 * KIB, "Ampere, e.g. RTX 30xx, A10"),
    89: Arch(89, 99 * KIB, "Ada, e.g. RTX 40xx, L4"),
    90: Arch(90, 227 * KIB, "Hopper H100/H200"),
    120: Arch(120, 99 * KIB, "Blackwell, e.g. RTX 50xx"),
}


@dataclass(frozen=True)
class Config:
    """Block sizes (the kernel's BLOCK constexprs) and launch options of one kernel launch."""

    block_m: int  # BLOCK_M (attention), BLOCK (softmax)
    block_n: int = 0  # BLOCK_N (attention); 0 where the kernel has none
    num_warps: int = 4
    num_stages: int = 1


def interpreter_quiet():
    """A context for a kernel launch: under Triton's interpreter, numpy's floating-point warnings off.

    The interpreter emulates the kernel with numpy, which warns on what a GPU computes silently
    (-inf - (-inf) in a fully masked row, a NaN input); compiled, it changes nothing.
    """
    return np.errstate(all="ignore") if device.INTERPRET else contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def current_arch() -> Arch | None:
    """The Arch of CUDA device 0, or None in Triton's interpreter."""
    if device.INTERPRET or not device.HAS_CUDA:
        return None
    major, minor = torch.cuda.get_device_capability(0)
    props = torch.cuda.get_device_properties(0)
    cc = 10 * major + minor
    known = ARCHS.get(cc, Arch(cc, 99 * KIB))
    limit = getattr(props, "shared_memory_per_block_optin", 0) or known.shared_limit
    return Arch(cc, int(limit), props.name, props.multi_processor_count)


def check_dtype(arch: Arch | None, dtype: torch.dtype, name: str) -> None:
    """ValueError naming the dtype and the GPU when the GPU cannot compute in dtype (bf16 before sm_80)."""
    if arch is not None and dtype == torch.bfloat16 and not arch.has_bf16:
        raise ValueError(f"{name}: torch.bfloat16 needs a GPU of compute capability 8.0 or newer "
                         f"(Ampere); this GPU is {arch}. Use torch.float16 or torch.float32")


def _softmax_warps(block: int) -> int:
    """Warps per program, as in Triton's fused-softmax tutorial: more threads for longer blocks."""
    return 16 if block >= 4096 else 8 if block >= 2048 else 4


def softmax_config(arch: Arch | None, dtype: torch.dtype, block: int) -> Config:
    """Fused or online softmax with ``block`` columns per program (the row, or one tile of it)."""
    check_dtype(arch, dtype, "softmax")
    return Config(block, num_warps=_softmax_warps(block))


def forward_config(arch: Arch | None, dtype: torch.dtype, head_dim: int, causal: bool) -> Config:
    """flash_attention_forward_kernel: BLOCK_M query rows per program, BLOCK_N-key tiles."""
    check_dtype(arch, dtype, "flash_attention_forward")
    if arch is None:  # interpreter: 64 x 32 keeps padding small for short sequences
        return Config(64, 32, 4, 1)
    if dtype == torch.float32:  # "ieee" fp32 dots run on CUDA cores: smaller tiles
        if arch.small_shared:
            return Config(32 if head_dim == 128 else 64, 32, 4, 1)
        return Config(64, 32 if head_dim == 128 else 64, 4, 2)
    if arch.small_shared:  # Q tile + one K/V tile must fit in 64 KiB without pipelining
        return Config(64, 32 if head_dim == 128 else 64, 4, 1)
    return Config(128, 64, 8 if head_dim >= 64 else 4, 3)


def dkdv_config(arch: Arch | None, dtype: torch.dtype, head_dim: int, causal: bool) -> Config:
    """flash_attention_backward_dkdv_kernel: BLOCK_N keys per program, BLOCK_M-query tiles."""
    check_dtype(arch, dtype, "flash_attention_backward")
    if arch is None:  # interpreter: several tiles per diagonal, little padding
        return Config(32, 64, 4, 1)
    if dtype == torch.float32:
        if arch.small_shared:
            return Config(16, 16 if head_dim == 128 else 32, 4, 1)
        return Config(16, 32 if head_dim == 128 else 64, 8, 2)
    if arch.small_shared:
        return Config(16, 32 if head_dim == 128 else 64, 4, 1)
    if head_dim == 128:
        return Config(16, 64, 8, 3)
    return Config(32, 128, 8 if head_dim == 64 else 4, 3)


def dq_config(arch: Arch | None, dtype: torch.dtype, head_dim: int, causal: bool) -> Config:
    """flash_attention_backward_dq_kernel: BLOCK_M queries per program, BLOCK_N-key tiles."""
    c = dkdv_config(arch, dtype, head_dim, causal)  # the mirror image: the kept block is the larger
    return Config(c.block_n, c.block_m, c.num_warps, c.num_stages)


def preprocess_config(arch: Arch | None, dtype: torch.dtype, head_dim: int, causal: bool) -> Config:
    """flash_attention_backward_preprocess_kernel: Δ for BLOCK_M query rows per program."""
    c = dq_config(arch, dtype, head_dim, causal)
    return Config(c.block_m, num_warps=c.num_warps)


def decode_config(arch: Arch | None, dtype: torch.dtype, head_dim: int, causal: bool = False) -> Config:
    """decode_partials_kernel: BLOCK_N cache positions per tile (one query: a row of dot products, no tl.dot)."""
    check_dtype(arch, dtype, "flash_decode")
    if arch is None:  # interpreter: small tiles, several per chunk in the tests
        return Config(1, 16, 4, 1)
    return Config(1, 32 if head_dim == 128 else 64, 4, 1 if arch.small_shared else 2)


def decode_splits(arch: Arch | None, programs: int, tiles: int) -> int:
    """Chunks per head: on a GPU enough for about four programs per SM (flash-decoding's point at small
    batch), never more chunks than tiles; in the interpreter, or where the SM count is not known, 4."""
    if arch is None or not arch.sms:
        return min(4, tiles)
    return max(1, min(tiles, -(-4 * arch.sms // programs)))


def combine_config(arch: Arch | None, dtype: torch.dtype, head_dim: int, causal: bool = False) -> Config:
    """decode_combine_kernel: BLOCK_S chunk states per head (the widest the wrapper launches)."""
    check_dtype(arch, dtype, "flash_decode")
    return Config(64, 0, 4, 1)


# Softmax blocks the wrappers can launch: the largest of each num_warps class (the most
# registers), up to the fused kernel's widest row and the online kernel's widest block.
SOFTMAX_BLOCKS = (1024, 2048, 32768)
ONLINE_BLOCKS = (1024, 2048, 4096, 32768)

ATTENTION_CONFIGS = {
    "forward": forward_config,
    "preprocess": preprocess_config,
    "dkdv": dkdv_config,
    "dq": dq_config,
    "decode": decode_config,
    "decode_paged": decode_config,
    "decode_combine": combine_config,
}


def candidates(kernel: str, arch: Arch, dtype: torch.dtype, head_dim: int | None,
               causal: bool | None) -> list[Config]:
    """Every configuration the launch logic can pick for kernel on arch (what compile-check compiles)."""
    if kernel == "softmax":
        return [softmax_config(arch, dtype, b) for b in SOFTMAX_BLOCKS]
    if kernel == "online_softmax":
        return [softmax_config(arch, dtype, b) for b in ONLINE_BLOCKS]
    return [ATTENTION_CONFIGS[kernel](arch, dtype, head_dim, causal)]
