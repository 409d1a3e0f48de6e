"""Blind set B: wrong student answers to the exercises of notebooks 07, 08 and 09, with witnesses.

Written from the notebooks' exercise statements and labkit's reference implementations only,
without reading the checkers. Each entry of ``WRONG`` is a plausible student mistake; the entry of
``WITNESS`` at the same index is a zero-argument function returning ``(args, kwargs)``: a valid
input on which the wrong answer differs from labkit's reference (in its result, its dtype, the
calls it makes to ``callback``, or by modifying an input it must not touch).
``tests/verify_blind_b.py`` runs every pair and reports.
"""
from __future__ import annotations

import labkit  # noqa: F401  (first: switches Triton to its CPU interpreter when there is no GPU)

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import triton
import triton.language as tl

from wrong_answer import WrongAnswer

WRONG: list[WrongAnswer] = []
WITNESS: list = []


def _wrong(exercise, mistake, names, witness):
    """Register the decorated function as a wrong answer to ``exercise`` with its witness input."""
    def deco(fn):
        WRONG.append(WrongAnswer(exercise, mistake, tuple(names), fn))
        WITNESS.append(witness)
        return fn
    return deco


class Recorder:
    """A callback that keeps a copy of every iterate it is given (the verify script compares them)."""

    def __init__(self):
        self.calls = []

    def __call__(self, xk):
        self.calls.append(np.array(xk, dtype=float, copy=True))


# =============================================================================== witness inputs
def _rng(seed):
    return np.random.default_rng(seed)


def _probs(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64) * 1.5, dim=-1).to(dtype)


def _attention_inputs(n_q=40, n_kv=40, d=8, causal=False, dtype=torch.float64, seed=0, B=1, H=2):
    """(do, q, k, v, o, lse) with o and lse of the exact forward (lse the natural-log logsumexp)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, n_q, d, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, n_kv, d, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, n_kv, d, generator=g, dtype=torch.float64)
    do = torch.randn(B, H, n_q, d, generator=g, dtype=torch.float64)
    s = q @ k.transpose(-2, -1) / math.sqrt(d)
    if causal:
        s = s.masked_fill(torch.ones(n_q, n_kv, dtype=torch.bool).triu(1), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    o = torch.softmax(s, dim=-1) @ v
    lse_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return tuple(t.to(dtype) for t in (do, q, k, v, o)) + (lse.to(lse_dtype),)


def _fa_witness(causal=False, n_q=40, n_kv=40, d=8, block_q=16, block_k=16, scale=None):
    def make():
        args = _attention_inputs(n_q, n_kv, d, causal)
        return args, dict(causal=causal, scale=scale, block_q=block_q, block_k=block_k)
    return make


def _triton_witness(causal=False, n=40, d=16, B=1, H=2):
    def make():
        return _attention_inputs(n, n, d, causal, dtype=torch.float32, B=B, H=H), dict(causal=causal)
    return make


def _upper(n=5, seed=1, garbage_below=False):
    r = _rng(seed)
    U = np.triu(r.uniform(-1, 1, (n, n))) + np.diag(r.uniform(2, 3, n))
    if garbage_below:
        U = U + np.tril(r.uniform(5, 9, (n, n)), -1)
    return U


def _square(n=5, seed=2):
    return _rng(seed).uniform(-1, 1, (n, n))


def _dd(n=6, seed=3):
    """A strictly diagonally dominant, unsymmetric dense matrix."""
    r = _rng(seed)
    A = r.uniform(-1, 1, (n, n))
    A += np.diag(np.abs(A).sum(axis=1) + r.uniform(0.5, 1.0, n))
    return A


def _dd_csr(n=6, seed=4):
    """Sparse diagonally dominant CSR matrix whose rows store columns left of the diagonal first."""
    r = _rng(seed)
    A = r.uniform(-1, 1, (n, n)) * (r.uniform(0, 1, (n, n)) < 0.6)
    A[np.arange(1, n), np.arange(n - 1)] = r.uniform(0.5, 1, n - 1)  # a subdiagonal, so cols < i come first
    A += np.diag(np.abs(A).sum(axis=1) + 1.0)
    return sp.csr_array(A)


def _slow_spd():
    """A 3x3 SPD tridiagonal matrix on which Gauss-Seidel needs some 900 sweeps for rtol = 1e-8."""
    return np.array([[1.0, 0.7, 0.0], [0.7, 1.0, 0.7], [0.0, 0.7, 1.0]])


def _grid(m=5, seed=5, boundary=True):
    r = _rng(seed)
    u = r.uniform(-1, 1, (m + 2, m + 2))
    if not boundary:
        u[0, :] = u[-1, :] = u[:, 0] = u[:, -1] = 0.0
    return u, r.uniform(-1, 1, (m, m))


# =============================================================================== 07 softmax_jacobian
@_wrong("softmax_jacobian", "drops the diagonal term diag(p): returns only -p p^T (the Kronecker delta is missing)",
        (r"diagonal term|δ|delta|kronecker|missing.{0,30}diag|diag\(p\).{0,20}missing",), lambda: ((_probs(5),), {}))
def softmax_jacobian_b1(p):
    return -p.unsqueeze(-1) * p.unsqueeze(-2)


@_wrong("softmax_jacobian", "sign flipped: returns p p^T - diag(p) instead of diag(p) - p p^T",
        (r"sign|negat|opposite|minus|reversed",), lambda: ((_probs(5),), {}))
def softmax_jacobian_b2(p):
    return p.unsqueeze(-1) * p.unsqueeze(-2) - torch.diag_embed(p)


@_wrong("softmax_jacobian", "keeps only the diagonal p_j(1 - p_j); the off-diagonal entries -p_j p_l are missing",
        (r"off.?diagonal|cross term",), lambda: ((_probs(5),), {}))
def softmax_jacobian_b3(p):
    return torch.diag_embed(p * (1 - p))


@_wrong("softmax_jacobian", "outer product built as p.unsqueeze(-1) * p.unsqueeze(-1): the subtracted term is p_j^2 "
        "in every column instead of p_j p_l", (r"outer|p_j ?p_l|unsqueeze\(-2\)|p_j\^?2|p_j²",),
        lambda: ((_probs(5),), {}))
def softmax_jacobian_b4(p):
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-1)


@_wrong("softmax_jacobian", "for a batch, the outer product is broadcast across the batch dimension "
        "(p[..., None] * p[None, ...]) instead of per vector", (r"batch|leading|broadcast|per vector",),
        lambda: ((_probs(4, 4, seed=1),), {}))
def softmax_jacobian_b5(p):
    return torch.diag_embed(p) - p[..., None] * p[None, ...]


@_wrong("softmax_jacobian", "builds diag(p) with torch.eye(N), which is float32: a half-precision p gives a float32 "
        "Jacobian instead of one in p's dtype", (r"dtype|float32|half|precision",),
        lambda: ((_probs(5, dtype=torch.float16),), {}))
def softmax_jacobian_b6(p):
    n = p.shape[-1]
    return torch.eye(n) * p.unsqueeze(-1) - p.unsqueeze(-1) * p.unsqueeze(-2)


@_wrong("softmax_jacobian", "treats p as scores and applies softmax again before building the Jacobian",
        (r"softmax|already|probabilit",), lambda: ((_probs(5),), {}))
def softmax_jacobian_b7(p):
    q = torch.softmax(p, dim=-1)
    return torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)


# =============================================================================== 07 flash_attention_backward
def _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, variant):
    """The notebook's cell with the student's three lines chosen by ``variant`` (one mistake each)."""
    dtype, n_q, n_kv = q.dtype, q.shape[2], k.shape[2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    do, q, k, v, o, lse = (t.to(ct) for t in (do, q, k, v, o, lse))
    d = (do * o).sum(-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    outer_n = n_q if variant == "nq_outer" else n_kv
    for j0 in range(0, outer_n, block_k):
        k_j, v_j = k[:, :, j0:j0 + block_k], v[:, :, j0:j0 + block_k]
        for i0 in range(0, n_q, block_q):
            if causal and j0 > i0 + block_q - 1:
                continue
            q_i, do_i = q[:, :, i0:i0 + block_q], do[:, :, i0:i0 + block_q]
            lse_i, d_i = lse[:, :, i0:i0 + block_q], d[:, :, i0:i0 + block_q]
            s = q_i @ k_j.transpose(-2, -1) * scale
            if causal and variant != "tril_local":
                rows = torch.arange(i0, i0 + q_i.shape[2], device=q.device)[:, None]
                cols = torch.arange(j0, j0 + k_j.shape[2], device=q.device)[None, :]
                hidden = cols >= rows if variant == "causal_ge" else cols > rows
                s = s.masked_fill(hidden, float("-inf"))
            if variant == "tile_softmax":
                p = torch.softmax(s, dim=-1)
            elif variant == "no_lse":
                p = torch.exp(s)
            elif variant == "lse_cols":
                p = torch.exp(s - lse_i[..., None, :])
            elif variant == "tril_local":
                p = torch.exp(s - lse_i[..., None]).tril()
            else:
                p = torch.exp(s - lse_i[..., None])
            if variant == "dp_transposed":
                dp = v_j @ do_i.transpose(-2, -1)
            else:
                dp = do_i @ v_j.transpose(-2, -1)
            if variant == "ds_paren":
                ds = p * dp - d_i[..., None]
            elif variant == "d_tile":
                ds = p * (dp - (p * dp).sum(-1, keepdim=True))
            elif variant == "scale_twice":
                ds = p * (dp - d_i[..., None]) * scale
            else:
                ds = p * (dp - d_i[..., None])
            dv[:, :, j0:j0 + block_k] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j0 + block_k] += ds.transpose(-2, -1) @ q_i * scale
            dq[:, :, i0:i0 + block_q] += ds @ k_j * scale
    return dq.to(dtype), dk.to(dtype), dv.to(dtype)


@_wrong("flash_attention_backward", "P rebuilt with a softmax over the key tile (normalised per tile) instead of "
        "exp(S - lse) with the saved logsumexp", (r"softmax|per.?tile|tile.?wise",), _fa_witness())
def flash_attention_backward_b1(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "tile_softmax")


@_wrong("flash_attention_backward", "P = exp(S) without subtracting lse: P is not normalised",
        (r"lse|logsumexp|normali",), _fa_witness())
def flash_attention_backward_b2(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "no_lse")


@_wrong("flash_attention_backward", "dS = P * dP - D: the parenthesis is missing, D is subtracted outside the "
        "product with P instead of dS = P ∘ (dP - D)", (r"parenthes|bracket|P ?∘ ?\(|P ?\* ?\(|dP ?- ?D",),
        _fa_witness())
def flash_attention_backward_b3(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "ds_paren")


@_wrong("flash_attention_backward", "D recomputed per tile as rowsum(P ∘ dP) over the current key tile only, "
        "instead of the preprocessed d = rowsum(dO ∘ O) over the whole row",
        (r"\bD\b|D_i|d_i|delta|rowsum|preprocess",), _fa_witness())
def flash_attention_backward_b4(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "d_tile")


@_wrong("flash_attention_backward", "dP computed as V_j dO_iᵀ, the transpose of dO_i V_jᵀ (silent when the tiles "
        "are square)", (r"transpos|swapped|V_?j? ?dO|dO_?i? ?V_?j?(\^?T|ᵀ)",), _fa_witness(n_q=32, n_kv=32))
def flash_attention_backward_b5(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "dp_transposed")


@_wrong("flash_attention_backward", "multiplies dS by the scale although the accumulation of dQ and dK applies it "
        "again: the scale is applied twice", (r"scale|scaling|1/√|sqrt|twice",), _fa_witness())
def flash_attention_backward_b6(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "scale_twice")


@_wrong("flash_attention_backward", "causal mask off by one: cols >= rows also hides the diagonal (each query's own key)",
        (r"causal|off.by.one|diagonal|>=|own key",), _fa_witness(causal=True))
def flash_attention_backward_b7(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "causal_ge")


@_wrong("flash_attention_backward", "causal mask applied with .tril() in tile-local coordinates instead of the "
        "global row and column indices", (r"causal|global|tile.?local|tril|local (index|coordinates)",),
        _fa_witness(causal=True))
def flash_attention_backward_b8(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "tril_local")


@_wrong("flash_attention_backward", "the outer loop over key tiles runs to N_q instead of N_kv: with more keys than "
        "queries the last key tiles get no gradient", (r"N_kv|n_kv|N_q|n_q|key length|number of keys",),
        _fa_witness(n_q=20, n_kv=50))
def flash_attention_backward_b9(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "nq_outer")


@_wrong("flash_attention_backward", "lse broadcast along the wrong axis (lse_i[..., None, :]): each column gets a "
        "query row's lse", (r"broadcast|axis|\[\.\.\., ?None\]|lse_i\[|column",), _fa_witness(n_q=32, n_kv=32))
def flash_attention_backward_b10(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
    return _fab_student(do, q, k, v, o, lse, causal, scale, block_q, block_k, "lse_cols")


# =============================================================================== 08 back_substitution
@_wrong("back_substitution", "loop range(n - 1, 0, -1) stops before row 0: x[0] is left equal to y[0]",
        (r"range|row 0|first row|off.by.one|x\[0\]|x_0",), lambda: ((_upper(), _rng(7).uniform(-1, 1, 5)), {}))
def back_substitution_b1(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, 0, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


@_wrong("back_substitution", "the sum runs over U[i, i:] @ x[i:], so the diagonal term u_ii x_i (with x_i still y_i) "
        "is subtracted too", (r"i ?\+ ?1|U\[i, ?i:\]|includ.{0,20}diagonal|diagonal term",), lambda: ((_upper(), _rng(7).uniform(-1, 1, 5)), {}))
def back_substitution_b2(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i, i:] @ x[i:]) / U[i, i]
    return x


@_wrong("back_substitution", "goes top-down (range(n)) like forward substitution, using x_j for j > i before they "
        "are computed", (r"order|bottom|top|last row|revers|backward",),
        lambda: ((_upper(), _rng(7).uniform(-1, 1, 5)), {}))
def back_substitution_b3(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


@_wrong("back_substitution", "subtracts the whole row U[i] @ x (minus the diagonal), so entries below the diagonal "
        "of U are read", (r"upper|triangle|lower|below the diagonal",),
        lambda: ((_upper(garbage_below=True), _rng(7).uniform(-1, 1, 5)), {}))
def back_substitution_b4(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i] @ x + U[i, i] * x[i]) / U[i, i]
    return x


@_wrong("back_substitution", "x = np.array(y) keeps y's integer dtype, so every x_i is truncated to an integer",
        (r"float|dtype|integer|\bint\b|truncat",),
        lambda: ((np.array([[2, 1, 1], [0, 3, 1], [0, 0, 4]]), np.array([1, 2, 3])), {}))
def back_substitution_b5(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


@_wrong("back_substitution", "x = np.asarray(y, dtype=float) is y itself for a float y: the solve overwrites the "
        "caller's y", (r"copy|modif|in.?place|overwrit|input",),
        lambda: ((_upper(), _rng(7).uniform(-1, 1, 5)), {}))
def back_substitution_b6(U, y):
    U = np.asarray(U, dtype=float)
    x = np.asarray(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


@_wrong("back_substitution", "divides y_i by u_ii before subtracting the known terms: x_i = y_i/u_ii - sum u_ij x_j",
        (r"divi.{0,40}(before|first)|(before|first).{0,40}divi|order of (the )?operations|parenthes",), lambda: ((_upper(), _rng(7).uniform(-1, 1, 5)), {}))
def back_substitution_b7(U, y):
    U = np.asarray(U, dtype=float)
    x = np.array(y, dtype=float)
    n = len(x)
    for i in range(n - 1, -1, -1):
        x[i] = x[i] / U[i, i] - U[i, i + 1:] @ x[i + 1:]
    return x


# =============================================================================== 08 gaussian_elimination
def _backsub_b(U, y):
    x = np.array(y, dtype=float)
    for i in range(len(x) - 1, -1, -1):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


def _ge_witness(n=5, seed=2, int_b=False):
    def make():
        A = _square(n, seed)
        b = _rng(seed + 10).integers(-5, 6, n) if int_b else _rng(seed + 10).uniform(-1, 1, n)
        return (A, b), {}
    return make


@_wrong("gaussian_elimination", "pivot chosen by the largest signed value argmax(A[k:, k]) instead of the largest "
        "|a_ik|", (r"\|a|abs|absolute|magnitude",),
        lambda: ((np.array([[1e-20, 1.0, 0.5], [-1.0, 1.0, 0.0], [-0.5, 0.0, 2.0]]), np.array([1.0, 0.0, 1.0])), {}))
def gaussian_elimination_b1(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(A[k:, k]))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "pivot searched in the whole column np.abs(A[:, k]) (not from row k down), so an "
        "already eliminated row can be swapped back up", (r"search|from row k|below|range|already|whole column",),
        _ge_witness())
def gaussian_elimination_b2(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = int(np.argmax(np.abs(A[:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "swaps the rows of A but forgets to swap the same entries of b",
        (r"\bb\b|right.hand|rhs|b_k|b\[",), _ge_witness())
def gaussian_elimination_b3(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "row swap written A[k], A[p] = A[p], A[k]: numpy rows are views, so both rows end "
        "up equal to the pivot row", (r"view|alias|copy|fancy|A\[\[",), _ge_witness())
def gaussian_elimination_b4(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[k], A[p] = A[p], A[k]
        b[k], b[p] = b[p], b[k]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "b = np.array(b) keeps an integer b integer: its updates b_i - l_ik b_k are "
        "truncated", (r"float|dtype|integer|\bint\b|truncat",), _ge_witness(int_b=True))
def gaussian_elimination_b5(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] = b[k + 1:] - m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "np.asarray(A, dtype=float) does not copy a float A: the elimination overwrites the "
        "caller's A and b", (r"copy|copies|modif|in.?place|overwrit|caller",), _ge_witness())
def gaussian_elimination_b6(A, b, pivoting="partial"):
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "pivot searched in A[k + 1:, k] (offset k + 1), so row k itself is never a candidate "
        "and a row is always swapped in", (r"search|range|row k|k ?\+ ?1|includ|candidate",),
        lambda: ((np.array([[1.0, 1.0, 0.0], [1e-20, 1.0, 1.0], [1e-20, 0.0, 1.0]]), np.array([2.0, 1.0, 0.5])), {}))
def gaussian_elimination_b7(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n - 1):
        p = k + 1 + int(np.argmax(np.abs(A[k + 1:, k])))
        A[[k, p]] = A[[p, k]]
        b[[k, p]] = b[[p, k]]
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


@_wrong("gaussian_elimination", "no pivoting at all: eliminates with whatever a_kk is, which fails on a tiny pivot",
        (r"no pivot|without pivot|never (swap|pivot)|tiny pivot|small pivot|partial pivot",), lambda: ((np.array([[1e-20, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0])), {}))
def gaussian_elimination_b8(A, b, pivoting="partial"):
    A = np.array(A, dtype=float)
    b = np.array(b, dtype=float)
    n = len(b)
    for k in range(n):
        m = A[k + 1:, k] / A[k, k]
        A[k + 1:, k:] -= np.outer(m, A[k, k:])
        b[k + 1:] -= m * b[k]
    return _backsub_b(A, b)


# =============================================================================== 08 lu_factor
def _lu_witness(n=5, seed=2):
    return lambda: ((_square(n, seed),), {})


@_wrong("lu_factor", "piv stored 1-based (p + 1, as in LAPACK's Fortran ipiv) instead of 0-based",
        (r"0.based|1.based|zero.based|one.based|fortran",), _lu_witness())
def lu_factor_b1(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p + 1
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


@_wrong("lu_factor", "swaps only columns k: of the two rows, so the multipliers already stored to the left are not "
        "swapped with them (L not consistent with P A = L U)",
        (r"whole row|entire row|full row|left of|earlier columns|already stored",), _lu_witness())
def lu_factor_b2(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p], k:] = lu[[p, k], k:]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


@_wrong("lu_factor", "eliminates column k to zero like Gaussian elimination and never stores the multipliers, so "
        "the strict lower triangle (L) is zero", (r"not stored|store the multiplier|lower triangle|strictly below|unit.lower|\bL\b",), _lu_witness())
def lu_factor_b3(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        m = lu[k + 1:, k] / lu[k, k]
        lu[k + 1:, k:] -= np.outer(m, lu[k, k:])
    return lu, piv


@_wrong("lu_factor", "returns the final row permutation (perm, P A = A[perm]) instead of scipy's sequence of swaps",
        (r"permutation|convention|sequence of swaps|swap (list|sequence)|piv\[k\]|interchange",), _lu_witness())
def lu_factor_b4(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    perm = np.arange(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        lu[[k, p]] = lu[[p, k]]
        perm[[k, p]] = perm[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, perm


@_wrong("lu_factor", "pivots on the largest signed value instead of the largest |a_ik|",
        (r"\|a|abs|absolute|magnitude",), _lu_witness())
def lu_factor_b5(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(lu[k:, k]))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


@_wrong("lu_factor", "row swap by tuple assignment of numpy views (lu[k], lu[p] = lu[p], lu[k]): both rows become "
        "the pivot row", (r"view|alias|copy|fancy",), _lu_witness())
def lu_factor_b6(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[k], lu[p] = lu[p], lu[k]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


@_wrong("lu_factor", "lu = np.asarray(A, dtype=float) works in the caller's array: a float A is overwritten",
        (r"copy|modif|in.?place|overwrit|caller",), _lu_witness())
def lu_factor_b7(A):
    lu = np.asarray(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


@_wrong("lu_factor", "the rank-1 update runs over columns k: (not k + 1:), so it also hits the stored multipliers "
        "in column k", (r"k ?\+ ?1|column k\b|trailing (block|submatrix)|overwrit.{0,30}multiplier",), _lu_witness())
def lu_factor_b8(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k:] -= np.outer(lu[k + 1:, k], lu[k, k:])
    return lu, piv


@_wrong("lu_factor", "piv = np.zeros(n) is a float array: piv must hold integers",
        (r"integer|\bint|dtype",), _lu_witness())
def lu_factor_b9(A):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(lu[k:, k])))
        piv[k] = p
        lu[[k, p]] = lu[[p, k]]
        lu[k + 1:, k] /= lu[k, k]
        lu[k + 1:, k + 1:] -= np.outer(lu[k + 1:, k], lu[k, k + 1:])
    return lu, piv


# =============================================================================== 08 elimination_flops
@_wrong("elimination_flops", "counts LU of A alone, (4n^3 - 3n^2 - n)/6: the 2 flops per row for b_i -= l_ik b_k "
        "are missing", (r"\bb\b|right.hand|rhs|augmented|b_i",), lambda: ((5,), {}))
def elimination_flops_b1(n):
    return (4 * n ** 3 - 3 * n ** 2 - n) // 6


@_wrong("elimination_flops", "counts a multiply-add as one flop: sum of m^2 + 2m, leading term n^3/3 instead of "
        "2n^3/3", (r"multiply.?add|2 flops|two flops|as one flop|leading term",), lambda: ((5,), {}))
def elimination_flops_b2(n):
    return (n - 1) * n * (2 * n - 1) // 6 + (n - 1) * n


@_wrong("elimination_flops", "returns only the leading term round(2n^3/3), not the exact count",
        (r"exact|lower.order|closed form|only the leading|round",), lambda: ((5,), {}))
def elimination_flops_b3(n):
    return round(2 * n ** 3 / 3)


@_wrong("elimination_flops", "forgets the divisions for the multipliers l_ik = a_ik / a_kk: sum of 2m^2 + 2m",
        (r"divi|multiplier|l_ik",), lambda: ((5,), {}))
def elimination_flops_b4(n):
    return (n - 1) * n * (2 * n - 1) // 3 + (n - 1) * n


@_wrong("elimination_flops", "sums m from 1 to n instead of 1 to n - 1 (one step too many)",
        (r"off.by.one|one step too many|n ?- ?1|upper limit|summation range",), lambda: ((5,), {}))
def elimination_flops_b5(n):
    return (4 * (n + 1) ** 3 + 3 * (n + 1) ** 2 - 7 * (n + 1)) // 6


@_wrong("elimination_flops", "returns the right value as a float ((4n^3 + 3n^2 - 7n) / 6), not an int",
        (r"\bint|float|integer|type",), lambda: ((5,), {}))
def elimination_flops_b6(n):
    return (4 * n ** 3 + 3 * n ** 2 - 7 * n) / 6


@_wrong("elimination_flops", "counts the update of the pivot column too (j >= k: 2m(m + 1) per step), though the "
        "entries below the pivot become 0 without arithmetic", (r"column|j ?> ?k|pivot column|without arithmetic|below the pivot",),
        lambda: ((5,), {}))
def elimination_flops_b7(n):
    return sum(m + 2 * m * (m + 1) + 2 * m for m in range(1, n))


# =============================================================================== 08 blocked_lu
def _blu(A, block, variant):
    lu = np.array(A, dtype=float)
    n = len(lu)
    piv = np.zeros(n, dtype=np.int32)
    stop = n - block if variant == "skip_last" else n
    for k in range(0, stop, block):
        e = min(k + block - 1, n) if variant == "e_minus_one" else min(k + block, n)
        for j in range(k, e):
            if variant == "search_from_k":
                p = k + int(np.argmax(np.abs(lu[k:, j])))
            else:
                p = j + int(np.argmax(np.abs(lu[j:, j])))
            piv[j] = p
            if variant == "panel_swap_only":
                lu[[j, p], k:e] = lu[[p, j], k:e]
            else:
                lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            if variant == "update_whole_row":
                lu[j + 1:, j + 1:] -= np.outer(lu[j + 1:, j], lu[j, j + 1:])
            else:
                lu[j + 1:, j + 1:e] -= np.outer(lu[j + 1:, j], lu[j, j + 1:e])
        if variant == "update_before_solve":
            lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                        unit_diagonal=True)
            continue
        if variant == "not_unit":
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True)
        elif variant == "upper_solve":
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=False,
                                                        unit_diagonal=True)
        else:
            lu[k:e, e:] = scipy.linalg.solve_triangular(lu[k:e, k:e], lu[k:e, e:], lower=True,
                                                        unit_diagonal=True)
        if variant == "plus":
            lu[e:, e:] += lu[e:, k:e] @ lu[k:e, e:]
        else:
            lu[e:, e:] -= lu[e:, k:e] @ lu[k:e, e:]
    return lu, piv


def _blu_witness(n=8, block=3, seed=6):
    return lambda: ((_square(n, seed), block), {})


@_wrong("blocked_lu", "swaps rows only inside the panel columns k:e, not the whole row: the multipliers to the left "
        "and the columns to the right stay unswapped", (r"whole row|entire row|left|right|multiplier|rest of the row",),
        _blu_witness())
def blocked_lu_b1(A, block):
    return _blu(A, block, "panel_swap_only")


@_wrong("blocked_lu", "pivot for column j searched from the panel's first row k instead of from row j",
        (r"search|row j|from row|range|pivot row",), _blu_witness())
def blocked_lu_b2(A, block):
    return _blu(A, block, "search_from_k")


@_wrong("blocked_lu", "updates A_22 -= L_21 A_12 before solving U_12 = L_11^{-1} A_12: the product uses A_12, not U_12",
        (r"A_?12|before (the )?(triangular )?solv|order of|not U_?12",), _blu_witness())
def blocked_lu_b3(A, block):
    return _blu(A, block, "update_before_solve")


@_wrong("blocked_lu", "the rank-1 steps inside the panel update the whole trailing rows (j + 1:, not j + 1:e), and "
        "the blocked update then subtracts L_21 U_12 a second time", (r"j ?\+ ?1 ?: ?e|inside the panel|within the panel|beyond the panel|twice|double",),
        _blu_witness())
def blocked_lu_b4(A, block):
    return _blu(A, block, "update_whole_row")


@_wrong("blocked_lu", "panel end off by one, e = min(k + block - 1, n): the last column of each panel is never "
        "pivoted or factored", (r"off.by.one|panel end|\be ?=|min\(k ?\+ ?block|last column",), _blu_witness())
def blocked_lu_b5(A, block):
    return _blu(A, block, "e_minus_one")


@_wrong("blocked_lu", "U_12 solved without unit_diagonal=True: L_11's diagonal is taken to be U's diagonal instead "
        "of ones", (r"unit|diagonal",), _blu_witness())
def blocked_lu_b6(A, block):
    return _blu(A, block, "not_unit")


@_wrong("blocked_lu", "U_12 solved with the upper triangle of the panel block (lower=False) instead of L_11",
        (r"lower=|lower triangle|upper triangle|L_?11",), _blu_witness())
def blocked_lu_b7(A, block):
    return _blu(A, block, "upper_solve")


@_wrong("blocked_lu", "panels over range(0, n - block, block): the last panel is never factored",
        (r"last panel|final panel|range|off.by.one|n ?- ?block",), _blu_witness())
def blocked_lu_b8(A, block):
    return _blu(A, block, "skip_last")


@_wrong("blocked_lu", "trailing update with the wrong sign: A_22 += L_21 U_12",
        (r"sign|\+=|-=|subtract",), _blu_witness())
def blocked_lu_b9(A, block):
    return _blu(A, block, "plus")


# =============================================================================== 09 gauss_seidel_sweep
def _gss_witness(sparse=False, int_x=False, n=6):
    def make():
        A = _dd_csr(n) if sparse else _dd(n)
        b = _rng(11).uniform(-1, 1, n)
        x = _rng(12).integers(-3, 4, n) if int_x else _rng(12).uniform(-1, 1, n)
        return (A, b, x), {}
    return make


@_wrong("gauss_seidel_sweep", "Jacobi instead of Gauss-Seidel: every row uses the old x (a copy taken before the "
        "sweep), not the new values above it", (r"jacobi|old value|new value|previous|already updated",),
        _gss_witness())
def gauss_seidel_sweep_b1(A, b, x):
    x_old = np.array(x, dtype=float)
    x = x_old.copy()
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x_old[cols] + diag * x_old[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x_old + A[i, i] * x_old[i]) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "x = np.asarray(x, dtype=float) does not copy a float x: the sweep overwrites the "
        "caller's x", (r"copy|modif|in.?place|overwrit|caller",), _gss_witness())
def gauss_seidel_sweep_b2(A, b, x):
    x = np.asarray(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "x = np.array(x) keeps an integer x integer: every new x_i is truncated",
        (r"float|dtype|integer|\bint\b|truncat",), _gss_witness(int_x=True))
def gauss_seidel_sweep_b3(A, b, x):
    x = np.array(x)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "for CSR takes the first stored value of row i as the diagonal a_ii instead of the "
        "entry whose column is i", (r"diagonal|a_ii|first stored|vals\[0\]",), _gss_witness(sparse=True))
def gauss_seidel_sweep_b4(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[0]
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "for CSR multiplies the row's values with x[:len(vals)], ignoring A.indices (the "
        "columns the values belong to)", (r"indices|cols|column index",), _gss_witness(sparse=True))
def gauss_seidel_sweep_b5(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x[:len(vals)] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "sweeps the rows in reverse order (a backward sweep), from the last row to the first",
        (r"order|backward|revers|last row|first row",), _gss_witness())
def gauss_seidel_sweep_b6(A, b, x):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in reversed(range(len(b))):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "subtracts the whole row A[i] @ x and forgets to add back a_ii x_i (the sum must "
        "exclude j = i)", (r"j ?!= ?i|j ?≠ ?i|exclud|add(ed)? back|a_ii ?x_i",), _gss_witness())
def gauss_seidel_sweep_b7(A, b, x):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x) / A[i, i]
    return x


@_wrong("gauss_seidel_sweep", "CSR row slice off by one, indptr[i]:indptr[i + 1] + 1, so each row also takes the "
        "next row's first entry", (r"indptr|slice|off.by.one",), _gss_witness(sparse=True))
def gauss_seidel_sweep_b8(A, b, x):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1] + 1]
            vals = A.data[A.indptr[i]:A.indptr[i + 1] + 1]
            diag = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
    else:
        A = np.asarray(A, dtype=float)
        for i in range(len(b)):
            x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return x


# =============================================================================== 09 sor_sweep
def _sor_witness(omega=1.4, sparse=False, int_x=False, n=6):
    def make():
        (A, b, x), _ = _gss_witness(sparse, int_x, n)()
        return (A, b, x, omega), {}
    return make


@_wrong("sor_sweep", "relaxation weights swapped: omega * x_i + (1 - omega) * (Gauss-Seidel value)",
        (r"swap|revers|exchang|other way round|wrong weight",), _sor_witness())
def sor_sweep_b1(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = omega * x[i] + (1 - omega) * gs
    return x


@_wrong("sor_sweep", "does a whole Gauss-Seidel sweep first and relaxes afterwards, x = (1 - omega) x_old + omega "
        "x_GS, so later rows use unrelaxed values", (r"immediately|as soon|each row|after the sweep|afterwards|relaxed value",),
        _sor_witness())
def sor_sweep_b2(A, b, x, omega):
    x_old = np.array(x, dtype=float)
    x = x_old.copy()
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        x[i] = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
    return (1 - omega) * x_old + omega * x


@_wrong("sor_sweep", "relaxes toward the correction r_i / a_ii instead of the Gauss-Seidel value (the a_ii x_i term "
        "is not added back)", (r"diagonal|a_ii|correction|exclud|j ?!= ?i|j ?≠ ?i",), _sor_witness())
def sor_sweep_b3(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        corr = (b[i] - A[i] @ x) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * corr
    return x


@_wrong("sor_sweep", "computes every Gauss-Seidel value from the old x (Jacobi-style, a copy), then relaxes",
        (r"jacobi|old value|new value|previous|already updated",), _sor_witness())
def sor_sweep_b4(A, b, x, omega):
    x_old = np.array(x, dtype=float)
    x = x_old.copy()
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x_old + A[i, i] * x_old[i]) / A[i, i]
        x[i] = (1 - omega) * x_old[i] + omega * gs
    return x


@_wrong("sor_sweep", "extrapolates by omega instead of omega - 1: x_i <- gs + omega (gs - x_i)",
        (r"extrapol|ω ?- ?1|omega ?- ?1|relaxation formula|wrong relaxation",), _sor_witness())
def sor_sweep_b5(A, b, x, omega):
    x = np.array(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = gs + omega * (gs - x[i])
    return x


@_wrong("sor_sweep", "x = np.asarray(x, dtype=float) works on the caller's float x and overwrites it",
        (r"copy|modif|in.?place|overwrit|caller",), _sor_witness())
def sor_sweep_b6(A, b, x, omega):
    x = np.asarray(x, dtype=float)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


@_wrong("sor_sweep", "the CSR branch does a plain Gauss-Seidel update and forgets the relaxation by omega",
        (r"sparse|csr",), _sor_witness(sparse=True))
def sor_sweep_b7(A, b, x, omega):
    x = np.array(x, dtype=float)
    if sp.issparse(A):
        A = sp.csr_array(A)
        for i in range(len(b)):
            cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
            vals = A.data[A.indptr[i]:A.indptr[i + 1]]
            diag = vals[cols == i].sum()
            x[i] = (b[i] - vals @ x[cols] + diag * x[i]) / diag
        return x
    A = np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


@_wrong("sor_sweep", "x = np.array(x) keeps an integer x integer: the relaxed values are truncated",
        (r"float|dtype|integer|\bint\b|truncat",), _sor_witness(int_x=True))
def sor_sweep_b8(A, b, x, omega):
    x = np.array(x)
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    for i in range(len(b)):
        gs = (b[i] - A[i] @ x + A[i, i] * x[i]) / A[i, i]
        x[i] = (1 - omega) * x[i] + omega * gs
    return x


# =============================================================================== 09 red_black_sweep
def _rb_masks_b(m):
    i, j = np.indices((m, m))
    red = (i + j) % 2 == 0
    return red, ~red


def _rb_witness(omega=1.0, m=5, boundary=True):
    def make():
        u, f = _grid(m, boundary=boundary)
        return (u, f), dict(omega=omega)
    return make


@_wrong("red_black_sweep", "updates the black points first, then the red ones",
        (r"red first|first.{0,12}red|black first|order",), _rb_witness())
def red_black_sweep_b1(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    red, black = _rb_masks_b(f.shape[0])
    for mask in (black, red):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "colours by row parity (i even) instead of the chess board (i + j) even, so neighbours "
        "share a colour", (r"parity|colou?r|chess|checker|i ?\+ ?j",), _rb_witness())
def red_black_sweep_b2(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    i, j = np.indices(f.shape)
    red = i % 2 == 0
    for mask in (red, ~red):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "computes the neighbour average once before both colours, so the black points use the "
        "old red values (a Jacobi sweep)", (r"new red|updated red|old|jacobi|recomput",), _rb_witness())
def red_black_sweep_b3(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
    for mask in _rb_masks_b(f.shape[0]):
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "u = np.asarray(u, dtype=float) updates the caller's float grid in place instead of a copy",
        (r"copy|modif|in.?place|overwrit|caller",), _rb_witness())
def red_black_sweep_b4(u, f, omega=1.0):
    u = np.asarray(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _rb_masks_b(f.shape[0]):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "relaxation weights swapped: omega * u_ij + (1 - omega) * (Gauss-Seidel value)",
        (r"omega|ω|relax|weight",), _rb_witness(omega=1.5))
def red_black_sweep_b5(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _rb_masks_b(f.shape[0]):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = omega * inner[mask] + (1 - omega) * gs[mask]
    return u


@_wrong("red_black_sweep", "forgets the right-hand side: the new value is only the average of the four neighbours",
        (r"\bf\b|f_ij|right.hand|source|h\^?2",), _rb_witness())
def red_black_sweep_b6(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _rb_masks_b(f.shape[0]):
        gs = (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "divides only the neighbours by 4: f + (sum of neighbours) / 4 instead of "
        "(f + sum of neighbours) / 4", (r"/ ?4|1/4|¼|quarter|divid|parenthes",), _rb_witness())
def red_black_sweep_b7(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _rb_masks_b(f.shape[0]):
        gs = f + (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "starts from a zero grid with only u's interior copied in, so the boundary values are lost",
        (r"boundary|edge|border",), _rb_witness())
def red_black_sweep_b8(u, f, omega=1.0):
    u_in = np.asarray(u, dtype=float)
    u = np.zeros_like(u_in)
    u[1:-1, 1:-1] = u_in[1:-1, 1:-1]
    inner = u[1:-1, 1:-1]
    for mask in _rb_masks_b(f.shape[0]):
        gs = (f + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


@_wrong("red_black_sweep", "stencil shifted: uses the diagonal neighbour u[:-2, :-2] in place of the one above, "
        "u[:-2, 1:-1]", (r"stencil|shift|diagonal neighbo|wrong neighbo|offset",), _rb_witness())
def red_black_sweep_b9(u, f, omega=1.0):
    u = np.array(u, dtype=float)
    inner = u[1:-1, 1:-1]
    for mask in _rb_masks_b(f.shape[0]):
        gs = (f + u[:-2, :-2] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) / 4
        inner[mask] = (1 - omega) * inner[mask] + omega * gs[mask]
    return u


# =============================================================================== 09 gauss_seidel
def _gs_sweep_b(A, b, x):
    """One Gauss-Seidel sweep in splitting form, x + (D + L)^{-1} (b - A x): a new array."""
    r = b - A @ x
    if sp.issparse(A):
        return x + spla.spsolve_triangular(sp.csr_array(sp.tril(A)), r, lower=True)
    return x + scipy.linalg.solve_triangular(np.tril(A), r, lower=True, check_finite=False)


def _jacobi_sweep_b(A, b, x):
    d = A.diagonal() if sp.issparse(A) else np.diag(A)
    return x + (b - A @ x) / d


def _gs_student(A, b, x0, rtol, atol, maxiter, callback, variant):
    """The notebook's solution, with one mistake chosen by ``variant``."""
    b = np.asarray(b, dtype=float)
    if variant == "x0_inplace" and x0 is not None:
        x = np.asarray(x0, dtype=float)
    else:
        x = np.zeros(len(b)) if x0 is None else np.array(x0, dtype=float)
    if maxiter is None:
        maxiter = 10 * len(b) if variant == "default_10n" else max(5000, 10 * len(b))
    nb = np.linalg.norm(b)
    if variant == "absolute":
        tol = max(rtol, atol)
    elif variant == "min":
        tol = min(rtol * nb, atol)
    else:
        tol = max(rtol * nb, atol)
    sweep = _jacobi_sweep_b if variant == "jacobi" else _gs_sweep_b
    r0 = None
    x_prev = None
    with np.errstate(all="ignore"):
        for k in range(maxiter + 1):
            r = np.linalg.norm(b - A @ x)
            if variant == "step":
                done = x_prev is not None and np.linalg.norm(x - x_prev) <= tol
            elif variant == "strict":
                done = r < tol
            elif variant == "after_sweep":
                done = k > 0 and r <= tol
            else:
                done = r <= tol
            if done:
                return x, 0
            r0 = r if r0 is None else r0
            if variant != "no_divergence" and not r <= 1e12 * r0:
                return x, max(k, 1)
            if k == maxiter:
                break
            if variant == "callback_before" and callback is not None:
                callback(x)
            x_prev = x
            if variant == "x0_inplace":
                x += sweep(A, b, x) - x
            else:
                x = sweep(A, b, x)
            if variant != "callback_before" and callback is not None:
                callback(x)
    if variant == "info_maxiter":
        return x, maxiter
    return x, max(maxiter, 1)


def _gs_witness(A, b, x0=None, callback=True, **kw):
    def make():
        kwargs = dict(kw)
        if callback:
            kwargs["callback"] = Recorder()
        AA = A() if callable(A) else A
        bb = b(AA) if callable(b) else b
        x = x0(AA) if callable(x0) else x0
        return (AA, bb, x), kwargs
    return make


def _ones_rhs(A):
    return A @ np.ones(A.shape[0])


@_wrong("gauss_seidel", "stops on the step ||x_new - x_old|| <= tol instead of the residual ||b - A x||",
        (r"\bstep|successive|x_new ?- ?x|change in x|between iterates",), _gs_witness(lambda: 1000 * _dd(), _ones_rhs, rtol=1e-6))
def gauss_seidel_b1(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "step")


@_wrong("gauss_seidel", "absolute test ||r|| <= max(rtol, atol): rtol is not multiplied by ||b||",
        (r"rtol ?\*|rtol ?·|\|\|b\|\||\|b\||norm of b|absolute|scaled by",),
        _gs_witness(_dd, lambda A: 1e6 * (A @ np.ones(A.shape[0])), maxiter=200))
def gauss_seidel_b2(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "absolute")


@_wrong("gauss_seidel", "strict test ||r|| < tol: an x0 with residual exactly equal to the tolerance (0 with "
        "rtol = atol = 0) is never accepted", (r"strict|<= not <|≤ not <|not <|exactly equal|equal to the tol",),
        _gs_witness(lambda: np.array([[4.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 4.0]]), _ones_rhs,
                    lambda A: np.ones(3), rtol=0.0, atol=0.0, maxiter=5))
def gauss_seidel_b3(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "strict")


@_wrong("gauss_seidel", "tolerance min(rtol ||b||, atol) instead of max: with the default atol = 0 it can never "
        "converge", (r"\bmin\b|minimum|max not min|instead of max",), _gs_witness(_dd, _ones_rhs, maxiter=300))
def gauss_seidel_b4(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "min")


@_wrong("gauss_seidel", "tests the residual only after a sweep: an x0 that already passes still gets one sweep and "
        "one callback", (r"before (each|the|every|any) sweep|already|initial|first sweep|before sweeping",),
        _gs_witness(lambda: np.array([[4.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 4.0]]), _ones_rhs,
                    lambda A: np.ones(3) + 1e-12))
def gauss_seidel_b5(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "after_sweep")


@_wrong("gauss_seidel", "returns info = maxiter when the sweeps run out, so maxiter = 0 with a failing x0 reports "
        "info = 0 (converged)", (r"at least 1|maxiter ?= ?0|info ?= ?0|never 0|max\(maxiter",),
        _gs_witness(_dd, _ones_rhs, maxiter=0))
def gauss_seidel_b6(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "info_maxiter")


@_wrong("gauss_seidel", "no divergence test: a blowing-up iteration runs on to maxiter (overflowing) instead of "
        "stopping when ||r|| > 1e12 ||r0||", (r"diverg|blow|1e12|10\^?12|finite|overflow",),
        _gs_witness(lambda: np.array([[1.0, 2.0, -2.0], [1.0, 1.0, 1.0], [2.0, 2.0, 1.0]]), _ones_rhs,
                    maxiter=200))
def gauss_seidel_b7(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "no_divergence")


@_wrong("gauss_seidel", "calls callback(x) before each sweep (on x0 and never on the last iterate) instead of after it",
        (r"callback",), _gs_witness(_dd, _ones_rhs))
def gauss_seidel_b8(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "callback_before")


@_wrong("gauss_seidel", "default maxiter 10 n instead of max(5000, 10 n): a small, slowly converging system stops "
        "early", (r"default|5000|10 ?n\b|10n",), _gs_witness(_slow_spd, _ones_rhs))
def gauss_seidel_b9(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "default_10n")


@_wrong("gauss_seidel", "x = np.asarray(x0, dtype=float) and in-place updates: the caller's float x0 is overwritten",
        (r"copy|modif|in.?place|overwrit|caller",),
        _gs_witness(_dd, _ones_rhs, lambda A: np.zeros(A.shape[0])))
def gauss_seidel_b10(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "x0_inplace")


@_wrong("gauss_seidel", "iterates with Jacobi sweeps (old values, M = D) instead of Gauss-Seidel sweeps",
        (r"jacobi|old value|new value|D ?\+ ?L|lower",),
        _gs_witness(lambda: np.array([[2.0, -1.0, 1.0], [2.0, 2.0, 2.0], [-1.0, -1.0, 2.0]]), _ones_rhs,
                    maxiter=500))
def gauss_seidel_b11(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, callback=None):
    return _gs_student(A, b, x0, rtol, atol, maxiter, callback, "jacobi")


# =============================================================================== 07 flash_attention_backward_triton
# The notebook's cell (Exercise 7.2), the dQ kernel unchanged; each wrong answer below has its own copy of
# the dK/dV kernel with one mistake in the student's loop body, and the host wrapper the cell defines.

@triton.jit
def flash_attention_backward_dq_kernel_b0(
        Q, K, V, DO, LSE, DELTA, DQ, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (query block i, b·H + h): dQ_i = scale · Σ_j dS_ij K_j over the key blocks."""
    start_m, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do, dq (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v (B, H, N_kv, D)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
    q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D), loaded once
    do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
    lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = n_kv
    if CAUSAL:  # keys after the query block's last row are never needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
        k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D)
        v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    tl.store(DQ + q_offs, (dq * scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < n_q)


@triton.jit
def flash_attention_backward_dkdv_kernel_b1(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.exp(s - lse[:, None])
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: P is not masked with tl.where(keep, ...): with causal=True the keys after each query keep their exp(S - lse)',
        ('tl\\.where|where|keep|causal',), _triton_witness(causal=True))
def flash_attention_backward_triton_b1(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b1[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b2(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] < offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", "dK/dV kernel: causal test offs_n < offs_m hides the diagonal (a query's own key) as well",
        ('causal|diagonal|<=|off.by.one',), _triton_witness(causal=True))
def flash_attention_backward_triton_b2(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b2[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b3(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(p.to(q.dtype), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: dV accumulates P dO instead of Pᵀ dO (tl.trans missing; silent because BLOCK_M == BLOCK_N)',
        ('trans|Pᵀ|P\\^?T|transpos',), _triton_witness(n=64))
def flash_attention_backward_triton_b3(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b3[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b4(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * dp
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: dS = P ∘ dP, the delta (D_i = rowsum(dO ∘ O)) term is left out',
        ('delta|\\bD_?i?\\b|rowsum',), _triton_witness())
def flash_attention_backward_triton_b4(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b4[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b5(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: offs_m = tl.arange(0, BLOCK_M) without the tile start start_m, so every iteration loads the first query tile',
        ('start_m|tile start|block start|offs_m',), _triton_witness(n=64))
def flash_attention_backward_triton_b5(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b5[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b6(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: S = Q Kᵀ without the softmax scale, so P = exp(S - lse) uses unscaled scores',
        ('scale|1/√|sqrt',), _triton_witness())
def flash_attention_backward_triton_b6(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b6[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b7(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[None, :]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", "dK/dV kernel: lse broadcast along the wrong axis, lse[None, :] instead of lse[:, None] (each key column gets a query row's lse)",
        ('broadcast|axis|\\[:, ?None\\]|lse\\[None',), _triton_witness())
def flash_attention_backward_triton_b7(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b7[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b8(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(p.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: dK accumulates Pᵀ Q instead of dSᵀ Q',
        ('\\bdS\\b|dSᵀ|dS\\^?T|\\bds\\b',), _triton_witness())
def flash_attention_backward_triton_b8(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b8[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv


@triton.jit
def flash_attention_backward_dkdv_kernel_b9(
        Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
        H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Program (key block j, b·H + h): dK_j and dV_j, accumulated over the query blocks."""
    start_n, off_bh = tl.program_id(0), tl.program_id(1)
    q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh  # q, do (B, H, N_q, D)
    k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh  # k, v, dk, dv (B, H, N_kv, D)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
    k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)  # (BLOCK_N, D), loaded once
    v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # query blocks that end before key start_n·BLOCK_N see none of K_j
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, n_q, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, D)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)  # (BLOCK_M,)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        dv = tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)


@_wrong("flash_attention_backward_triton", 'dK/dV kernel: dv = ... instead of dv += ...: the query tiles are not accumulated, only the last one counts',
        ('accumul|\\+=|sum over|overwrit|every query tile',), _triton_witness(n=64))
def flash_attention_backward_triton_b9(do, q, k, v, o, lse, causal=False, scale=None):
    """(dq, dk, dv) for q, k, v (B, H, N, D) from dO, O and lse with the two kernels above."""
    B, H, n_q, D = q.shape
    n_kv = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # (B, H, N, D) contiguous: strides (·, ·, D, 1)
    lse = lse.float().contiguous()
    delta = (do.float() * o.float()).sum(-1).contiguous()  # (B, H, N_q): the preprocess, D
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    BLOCK_M, BLOCK_N = 32, 32
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
    meta = dict(HEAD_DIM=D, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal, PRECISION=precision)
    flash_attention_backward_dkdv_kernel_b9[(triton.cdiv(n_kv, BLOCK_N), B * H)](
        q, k, v, do, lse, delta, dk, dv, *args, **meta)
    flash_attention_backward_dq_kernel_b0[(triton.cdiv(n_q, BLOCK_M), B * H)](
        q, k, v, do, lse, delta, dq, *args, **meta)
    return dq, dk, dv
