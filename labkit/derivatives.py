"""The derivatives notebook 07 derives by hand: the softmax Jacobian and the D term of attention's backward.

For p = softmax(s), ∂p_j/∂s_l = p_j (δ_jl − p_l), i.e. J = diag(p) − p pᵀ; back-propagating a
row gradient dp through it gives ds = Jᵀ dp = p ∘ (dp − Σ_j p_j dp_j). Introduced in notebook 07.
"""
from __future__ import annotations

import torch

__all__ = ["softmax_jacobian"]


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """J = diag(p) − p pᵀ, J[..., j, l] = ∂p_j/∂s_l, for probability vectors p = softmax(s) of shape (..., N).

    Returns shape (..., N, N) in p's dtype; p is not modified.
    """
    if not isinstance(p, torch.Tensor) or p.dim() < 1:
        raise ValueError(f"p must be a tensor of shape (..., N), got {p!r}")
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., N, N)

