"""Row softmax as Triton kernels: fused (one block per row) and online (a loop over column blocks).

``softmax_triton(x)`` reads each row once and writes it once: the whole row sits in one
block, so max, sum and normalise happen in registers. ``online_softmax_triton(x)`` handles
rows longer than one block with the online normaliser of Milakov & Gimelshein (2018): one
loop keeps a running max m_i and a rescaled running sum l_i, a second loop writes
exp(x - m_i) / l_i. Both compute in float32 and store the input's dtype.
Introduced in notebooks 02 (fused) and 03 (online).

Host wrappers work over the last dim of a tensor of any shape. The kernels take a row
stride and need unit stride along a row: a tensor whose rows are not contiguous (for
example a transpose) is copied once with ``.contiguous()``; other views (a slice of rows,
an expanded batch) are read in place. The output is always a new contiguous tensor.
"""
from __future__ import annotations

import torch

from labkit import device
from labkit.kernels import launch
from labkit.contracts import ArgumentTypeError, warn_no_grad

if device.HAS_TRITON:
    import triton
    import triton.language as tl

# Widest row the fused kernel takes. Compiled for sm_90, a block of 32768 float32 over 16
# warps uses 128 registers per thread and no local memory; 65536 spills, so wider rows go to
# online_softmax_triton.
MAX_FUSED_WIDTH = 32768
# Default columns per block in the online kernel (rows no longer than this take one block).
ONLINE_BLOCK = 4096
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


if device.HAS_TRITON:

    @triton.jit
    def softmax_kernel(out_ptr, x_ptr, x_row_stride, out_row_stride, n_cols,
                       BLOCK: tl.constexpr):
        """One program per row, the whole row in one block: y = exp(x - max x) / sum exp(x - max x)."""
        row = tl.program_id(0).to(tl.int64)  # int64: rows * stride may pass 2**31 elements
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        # Masked lanes load -inf so that they add exp(-inf) = 0 to the sum.
        x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=-float("inf"))
        x = x.to(tl.float32)
        m = tl.max(x, axis=0)  # all -inf row: m = -inf, x - m = NaN, like torch.softmax
        num = tl.exp(x - m)
        y = num / tl.sum(num, axis=0)
        tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def online_softmax_kernel(out_ptr, x_ptr, x_row_stride, out_row_stride, n_cols,
                              BLOCK: tl.constexpr):
        """One program per row, looping over blocks: running max m_i and rescaled sum l_i, then exp(x - m_i) / l_i."""
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * x_row_stride
        out_row = out_ptr + row * out_row_stride
        m_i = -float("inf")  # running max of the row so far (a float32 scalar)
        l_i = 0.0  # running sum of exp(x - m_i) so far
        # Pass 1: one read of the row; (m_i, l_i) merged with each block's (max, sum).
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_row + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            # While every value seen is -inf, shift by 0 instead of m_new: -inf - (-inf) is NaN.
            shift = tl.where(m_new == -float("inf"), 0.0, m_new)
            l_i = l_i * tl.exp(m_i - shift) + tl.sum(tl.exp(x - shift), axis=0)
            m_i = m_new
        # Pass 2: a second read and the one write. An all -inf row keeps m_i = -inf: NaN, like torch.
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            x = tl.load(x_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m_i) / l_i
            tl.store(out_row + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def _next_power_of_2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _rows(x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate x; return it as (rows, width) with unit column stride, and an empty output like it."""
    device.require_triton()
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise ArgumentTypeError(f"{name}: x has dtype {x.dtype}; {name} supports float32, float16 "
                                f"and bfloat16 tensors"
                         + (" (convert first, e.g. x.float())" if not x.is_floating_point() else
                            " (use labkit.softmax.safe_softmax for float64)"))
    if device.INTERPRET:
        if x.device.type != "cpu":
            raise ValueError(f"{name}: Triton's interpreter is on (TRITON_INTERPRET=1), so x must be "
                             f"a CPU tensor, got a tensor on {x.device}")
        if x.dtype == torch.bfloat16:
            raise ValueError(f"{name}: x is bfloat16, and bfloat16 runs on the GPU only. Triton's interpreter rounds "
                             f"float32 -> bfloat16 by truncation, not to nearest as the GPU does, so "
                             f"its results would not match; use float16 or float32 on CPU")
    elif x.device.type != "cuda":
        raise ValueError(f"{name}: the kernels run compiled on the GPU, so x must be a CUDA tensor, "
                         f"got a tensor on {x.device} (move it with x.to('cuda'))")
    width = x.shape[-1] if x.dim() else 1
    x2 = x.detach().reshape(-1, width) if x.numel() else x.detach()  # (rows, width), a view if it can be
    if x2.numel() and x2.stride(-1) != 1:
        x2 = x2.contiguous()  # the kernels step along a row with unit stride
    return x2, torch.empty_like(x2, memory_format=torch.contiguous_format)


def _launch(kernel, out: torch.Tensor, x2: torch.Tensor, block: int) -> None:
    """Run ``kernel`` with one program per row of x2 (rows, width), writing out."""
    n_rows, n_cols = x2.shape
    config = launch.softmax_config(launch.current_arch(), x2.dtype, block)  # per GPU arch
    with launch.interpreter_quiet():  # an all -inf row does -inf - (-inf) on purpose
        kernel[(n_rows,)](out, x2, x2.stride(0), out.stride(0), n_cols,
                          BLOCK=config.block_m, num_warps=config.num_warps)


def softmax_triton(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim with the fused kernel: one read, one write per element (notebook 02).

    Rows up to MAX_FUSED_WIDTH wide; wider rows raise ValueError (use online_softmax_triton).
    Forward only: an x that requires grad gets a UserWarning (labkit.softmax.safe_softmax is differentiable).
    """
    warn_no_grad("softmax_triton", "labkit.softmax.safe_softmax (or torch.softmax)", x=x)
    x2, out = _rows(x, "softmax_triton")
    if x2.numel() == 0:
        return out.reshape(x.shape)
    n_cols = x2.shape[1]
    if n_cols > MAX_FUSED_WIDTH:
        raise ValueError(f"softmax_triton holds a whole row in one block, up to {MAX_FUSED_WIDTH} "
                         f"values; this row has {n_cols}. Use online_softmax_triton, which loops "
                         f"over blocks of the row")
    _launch(softmax_kernel, out, x2, _next_power_of_2(n_cols))
    return out.reshape(x.shape)


def online_softmax_triton(x: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """softmax over the last dim with the online kernel: rows of any width, two reads and one write (notebook 03).

    ``block_size`` (a power of two) is the number of columns per block; by default the row
    width rounded up to a power of two, at most ONLINE_BLOCK. Same answer for any block size
    up to rounding. Forward only: an x that requires grad gets a UserWarning
    (labkit.softmax.online_softmax is differentiable).
    """
    warn_no_grad("online_softmax_triton", "labkit.softmax.online_softmax (or torch.softmax)", x=x)
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)
                                   or block_size < 1
                                   or block_size & (block_size - 1) or block_size > MAX_FUSED_WIDTH):
        raise ValueError(f"online_softmax_triton: block_size must be a power of two from 1 to "
                         f"{MAX_FUSED_WIDTH} (16, 64, 1024, ...), got {block_size!r}")
    x2, out = _rows(x, "online_softmax_triton")
    if x2.numel() == 0:
        return out.reshape(x.shape)
    block = block_size or min(_next_power_of_2(x2.shape[1]), ONLINE_BLOCK)
    _launch(online_softmax_kernel, out, x2, block)
    return out.reshape(x.shape)
