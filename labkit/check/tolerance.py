"""The one tolerance table and ``assert_close``, read by tests, checkers and benchmarks.

A result in dtype d is close when |actual - expected| <= atol + rtol |expected| elementwise with
d's (atol, rtol); fp16/bf16 results may instead be judged against the plain same-dtype computation
(``baseline=``), as flash-attention's own tests do. Introduced in notebook 00.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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


def as_tensor(x: Any) -> torch.Tensor:
    """x as a detached tensor (numpy arrays and numbers are converted)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def assert_close(actual: Any, expected: Any, *, dtype: torch.dtype | np.dtype | None = None,
                 atol: float | None = None, rtol: float | None = None,
                 baseline: Any = None, what: str = "output") -> None:
    """|actual - expected| <= atol + rtol*|expected| elementwise (table tolerances by dtype).

    NaN must sit where the reference has NaN, and infinities must match. With
    ``baseline`` (the same computation done plainly in the low dtype), the rule is instead
    max|actual - expected| <= LOWP_FACTOR * max|baseline - expected| + atol.
    """
    a, e = as_tensor(actual), as_tensor(expected)
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
        b64 = as_tensor(baseline).to(torch.float64).cpu()
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
