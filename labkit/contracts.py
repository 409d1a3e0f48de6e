"""Argument contracts shared by every public labkit function: one place that checks inputs.

Each ``check_*`` returns the value to use (a normalised dim, a float64 copy, ...) or raises an
error whose message starts with the offending argument's name. A wrong Python type or dtype
raises ``ArgumentTypeError`` (a TypeError that is also a ValueError, so code written against
labkit's earlier ValueErrors keeps working); a wrong shape, range or device raises ValueError.
The per-function contract is written out in docs/contracts.md.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["ArgumentTypeError", "check_tensor", "check_dim", "check_int", "check_positive_int",
           "check_real", "check_tolerance", "check_attention_inputs", "check_saved_tensors",
           "check_matrix", "check_vector", "warn_no_grad"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong Python type or dtype (also a ValueError, like io.UnsupportedOperation)."""


def _where(fn: str | None) -> str:
    return f"{fn}: " if fn else ""


# ---------------------------------------------------------------- scalars
def check_int(v, name: str, minimum: int | None = None, *, fn: str | None = None) -> int:
    """v as an int (Python or numpy integer, never bool or float), at least ``minimum``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ArgumentTypeError(f"{_where(fn)}{name} must be an int, got {v!r} "
                                f"({type(v).__name__})")
    if minimum is not None and v < minimum:
        raise ValueError(f"{_where(fn)}{name} must be an int >= {minimum}, got {v!r}")
    return int(v)


def check_positive_int(v, name: str, *, fn: str | None = None) -> int:
    """v as an int >= 1; bool and float are rejected (ArgumentTypeError)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ArgumentTypeError(f"{_where(fn)}{name} must be a positive integer, got {v!r} "
                                f"({type(v).__name__})")
    if v < 1:
        raise ValueError(f"{_where(fn)}{name} must be a positive integer, got {v!r}")
    return int(v)


def check_real(v, name: str, *, low: float | None = None, high: float | None = None,
               why: str = "", fn: str | None = None) -> float:
    """v as a finite float (not bool), strictly between ``low`` and ``high`` where given."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ArgumentTypeError(f"{_where(fn)}{name} must be a real number, got {v!r} "
                                f"({type(v).__name__})")
    v = float(v)
    if not math.isfinite(v) or (low is not None and not v > low) or (high is not None and not v < high):
        bounds = (f"{low:g} < {name} < {high:g}" if low is not None and high is not None
                  else f"{name} > {low:g}" if low is not None
                  else f"{name} < {high:g}" if high is not None else "finite")
        raise ValueError(f"{_where(fn)}{name} must be {bounds}{why}, got {name}={v!r}")
    return v


def check_tolerance(v, name: str, *, fn: str | None = None) -> float:
    """A stopping tolerance (rtol, atol): a real number >= 0 (inf allowed), not NaN or bool."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ArgumentTypeError(f"{_where(fn)}{name} must be a real number >= 0, got {v!r} "
                                f"({type(v).__name__})")
    v = float(v)
    if not v >= 0.0:  # also NaN
        raise ValueError(f"{_where(fn)}{name} must be a number >= 0 (not NaN), got {name}={v!r}")
    return v


# ---------------------------------------------------------------- tensors
def check_tensor(x, name: str, *, fn: str | None = None, floating: bool = False,
                 dtypes: tuple[torch.dtype, ...] | None = None, ndim: int | None = None,
                 nonempty: bool = False, device: torch.device | str | None = None) -> torch.Tensor:
    """x unchanged if it is a torch.Tensor with a floating dtype / one of ``dtypes``, ``ndim`` dims, on ``device``."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{_where(fn)}{name} must be a torch.Tensor, got "
                                f"{type(x).__name__}")
    if floating and not x.is_floating_point():
        raise ArgumentTypeError(f"{_where(fn)}{name} must be a floating-point tensor, got "
                                f"{x.dtype} (convert first, e.g. {name}.float())")
    if dtypes is not None and x.dtype not in dtypes:
        raise ArgumentTypeError(f"{_where(fn)}{name} has dtype {x.dtype}; supported dtypes: "
                                f"{', '.join(str(d).replace('torch.', '') for d in dtypes)}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{_where(fn)}{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{_where(fn)}{name} has an empty dimension: shape {tuple(x.shape)}")
    if device is not None and x.device != torch.device(device):
        raise ValueError(f"{_where(fn)}{name} must be on {device}, got {x.device}")
    return x


def check_dim(dim, ndim: int, name: str = "dim", *, fn: str | None = None,
              shape: tuple[int, ...] | None = None) -> int:
    """dim (an int, not bool) normalised to [0, max(ndim, 1)): a 0-d tensor has dims -1 and 0, like torch."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise ArgumentTypeError(f"{_where(fn)}{name} must be an int, got {dim!r} "
                                f"({type(dim).__name__})")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ValueError(f"{_where(fn)}{name}={dim} is out of range for a tensor with {ndim} "
                         f"dimension(s)" + (f" (shape {tuple(shape)})" if shape is not None else ""))
    return int(dim) % n


def check_attention_inputs(q, k, v, causal: bool = False, scale=None, *,
                           head_dims: tuple[int, ...] | None = None,
                           dtypes: tuple[torch.dtype, ...] | None = None) -> float:
    """Check q, k, v (B, H, N, D) for attention and return the softmax scale (1/sqrt(D) by default).

    Raises naming the problem: not a tensor, not 4-D, not floating point, mismatched shapes,
    dtypes or devices, an empty dimension, causal not a bool, causal with N_q != N_kv, a scale
    that is not a finite real, and (for kernels that pass them) a head dim or dtype outside the
    supported set. Introduced in notebook 04.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor of shape (B, H, N, D), "
                                    f"got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, H, N, D), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ArgumentTypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.numel() == 0:
            raise ValueError(f"{name} has an empty dimension: shape {tuple(x.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise ArgumentTypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, H, N_kv, D), "
                         f"got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q (B, H, N_q, D) and k, v (B, H, N_kv, D) must agree on B, H and D, "
                         f"got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if not isinstance(causal, (bool, np.bool_)):
        raise ArgumentTypeError(f"causal must be a bool, got {causal!r} ({type(causal).__name__})")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal attention needs N_q == N_kv, got N_q={q.shape[2]} and "
                         f"N_kv={k.shape[2]}")
    D = q.shape[3]
    if head_dims is not None and D not in head_dims:
        raise ValueError(f"head dim D={D} is not supported; supported head dims: "
                         f"{', '.join(map(str, head_dims))}")
    if dtypes is not None and q.dtype not in dtypes:
        raise ArgumentTypeError(f"dtype {q.dtype} is not supported here; supported dtypes: "
                                f"{', '.join(str(d).replace('torch.', '') for d in dtypes)}")
    if scale is None:
        return 1.0 / math.sqrt(D)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ArgumentTypeError(f"scale must be a finite real number, got {scale!r}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be a finite real number, got {scale!r}")
    return float(scale)


def check_saved_tensors(q: torch.Tensor, *, lse_dtype: torch.dtype | None = None, **tensors) -> None:
    """Raise unless do, o are (B, H, N_q, D) in q's dtype and lse is a float (B, H, N_q), on q's device.

    lse_dtype: the one dtype lse must have (the Triton backward wants float32); any float if None.
    """
    for name, x in tensors.items():
        want = tuple(q.shape[:3]) if name == "lse" else tuple(q.shape)
        layout = "(B, H, N_q)" if name == "lse" else "(B, H, N_q, D)"
        if not isinstance(x, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor of shape {layout}, "
                                    f"got {type(x).__name__}")
        if tuple(x.shape) != want:
            raise ValueError(f"{name} must have shape {layout} = {want} to match q "
                             f"{tuple(q.shape)}, got {tuple(x.shape)}")
        if name != "lse" and x.dtype != q.dtype:
            raise ArgumentTypeError(f"{name} must have dtype {q.dtype} like q, got {x.dtype}")
        if name == "lse" and lse_dtype is not None and x.dtype != lse_dtype:
            raise ArgumentTypeError(f"lse must have dtype {lse_dtype}, got {x.dtype}")
        if not x.is_floating_point():
            raise ArgumentTypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.device != q.device:
            raise ValueError(f"{name} must be on q's device {q.device}, got {x.device}")


def warn_no_grad(fn: str, alternative: str, **tensors) -> None:
    """UserWarning when autograd is on and a tensor argument requires grad: ``fn`` is forward-only."""
    if not torch.is_grad_enabled():
        return
    needing = [n for n, t in tensors.items() if isinstance(t, torch.Tensor) and t.requires_grad]
    if needing:
        warnings.warn(f"{fn} is forward-only: {', '.join(needing)} require(s) grad but no gradient "
                      f"flows through its output (no grad_fn); use {alternative} for a "
                      f"differentiable version", UserWarning, stacklevel=3)


# ---------------------------------------------------------------- matrices and vectors (numpy)
def _real_array(a, name: str, fn: str | None) -> np.ndarray:
    """np.asarray(a) if it holds real numbers (bool, int, float), else ArgumentTypeError."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:  # ragged nested lists and the like
        raise ArgumentTypeError(f"{_where(fn)}{name} must be an array of real numbers, got "
                                f"{type(a).__name__} ({err})") from None
    if arr.dtype.kind == "c":
        raise ArgumentTypeError(f"{_where(fn)}{name} is complex ({arr.dtype}); labkit's solvers "
                                f"work in real float64 (pass {name}.real if the imaginary part "
                                f"is zero)")
    if arr.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"{_where(fn)}{name} must be an array of real numbers, got "
                                f"dtype {arr.dtype} ({type(a).__name__})")
    return arr


def check_matrix(A, name: str = "A", *, square: bool = True, allow_sparse: bool = False,
                 finite: bool = True, fn: str | None = None):
    """A float64 copy of a non-empty 2-D real matrix (CSR if sparse and ``allow_sparse``).

    Sparse input where it is not allowed, complex and non-numeric dtypes raise
    ArgumentTypeError; a wrong shape, an empty matrix, NaN or inf raise ValueError.
    """
    if sp.issparse(A):
        if not allow_sparse:
            raise ArgumentTypeError(f"{_where(fn)}{name} is a scipy.sparse matrix; this function "
                                    f"needs a dense array: pass {name}.toarray()")
        if A.dtype.kind == "c":
            raise ArgumentTypeError(f"{_where(fn)}{name} is complex ({A.dtype}); labkit's solvers "
                                    f"work in real float64")
        A = sp.csr_array(A, dtype=np.float64, copy=True)
        A.sum_duplicates()
        values = A.data
    else:
        A = np.array(_real_array(A, name, fn), dtype=np.float64, copy=True)
        values = A
    if A.ndim != 2 or (square and A.shape[0] != A.shape[1]):
        raise ValueError(f"{_where(fn)}{name} must be a {'square ' if square else ''}2-D matrix, "
                         f"got shape {A.shape}")
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"{_where(fn)}{name} is empty (shape {A.shape})")
    if finite and not np.isfinite(values).all():
        raise ValueError(f"{_where(fn)}{name} contains NaN or inf")
    return A


def check_vector(b, n: int, name: str = "b", *, allow_2d: bool = False, finite: bool = True,
                 against: str = "the matrix", fn: str | None = None) -> np.ndarray:
    """A float64 copy of a real vector of shape (n,) (or (n, k) with ``allow_2d``), finite."""
    if sp.issparse(b):
        raise ArgumentTypeError(f"{_where(fn)}{name} is a scipy.sparse matrix; pass a dense "
                                f"array ({name}.toarray())")
    b = np.array(_real_array(b, name, fn), dtype=np.float64, copy=True)
    if (b.ndim not in ((1, 2) if allow_2d else (1,))) or b.shape[0] != n:
        want = f"({n},) or ({n}, k)" if allow_2d else f"({n},)"
        raise ValueError(f"{_where(fn)}{name} must have shape {want} to match {against}, "
                         f"got {b.shape}")
    if finite and not np.isfinite(b).all():
        raise ValueError(f"{_where(fn)}{name} contains NaN or inf")
    return b
