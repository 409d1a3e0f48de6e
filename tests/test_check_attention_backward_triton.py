"""check.flash_attention_backward_triton (Exercise 7.2): the notebook's scaffold with bugs in the dK/dV loop only.

The student writes only the loop body of the dK/dV kernel; the dQ kernel and the wrapper are the
notebook's, copied here unchanged, so every mutant's dq is right (interpreter on a CPU).
"""
import math

import pytest
import torch

import labkit  # noqa: F401  (device switch first)
from labkit import check, device
from labkit.check.attention_backward_triton import GIVEN_DQ, flash_attention_backward_triton as checker
from labkit.check.core import evaluate
from labkit.check.kernel_runs import on_course_device
from hints import assert_rejected_with_hint

triton_only = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, stride_qb, stride_qh, stride_kb, stride_kh, stride_n,
                    stride_d, H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr, BUG: tl.constexpr):
        # the notebook's scaffold; only the loop body (the student's part) holds the BUG switches
        start_n, off_bh = tl.program_id(0), tl.program_id(1)
        q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
        k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
        offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
        k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
        v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        lo = 0
        if CAUSAL:
            lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
        for start_m in range(lo, n_q, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
            q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
            do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
            lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
            if BUG == "delta of the key rows":
                delta = tl.load(DELTA + off_bh * n_q + offs_n, mask=offs_n < n_q, other=0.0)
            else:
                delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
            if BUG != "scores not scaled":
                s = s * scale
            keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
            if CAUSAL:
                if BUG == "mask hides the diagonal":
                    keep = keep & (offs_n[None, :] < offs_m[:, None])
                elif BUG != "no causal mask":
                    keep = keep & (offs_n[None, :] <= offs_m[:, None])
            if BUG == "exp2 on natural-log units":
                x = tl.exp2(s - lse[:, None])
            elif BUG == "P without lse":
                x = tl.exp(s)
            elif BUG == "P with the tile's row max":
                x = tl.exp(s - tl.max(tl.where(keep, s, float("-inf")), 1)[:, None])
            else:
                x = tl.exp(s - lse[:, None])
            p = tl.where(keep, x, 0.0)
            if BUG == "P not transposed":
                dv_tile = tl.dot(p.to(q.dtype), do, input_precision=PRECISION)
            else:
                dv_tile = tl.dot(tl.trans(p.to(q.dtype)), do, input_precision=PRECISION)
            if BUG == "dv overwritten":
                dv = dv_tile
            else:
                dv += dv_tile
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            if BUG == "no D term":
                ds = p * dp
            elif BUG == "sign of dS flipped":
                ds = p * (delta[:, None] - dp)
            else:
                ds = p * (dp - delta[:, None])
            if BUG == "dS not transposed":
                dk_tile = tl.dot(ds.to(q.dtype), q, input_precision=PRECISION)
            else:
                dk_tile = tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
            if BUG == "dk scaled in the loop too":
                dk_tile = dk_tile * scale
            if BUG == "dk overwritten":
                dk = dk_tile
            else:
                dk += dk_tile
        tl.store(DK + kv_offs, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
        tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)

    @triton.jit
    def dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, stride_qb, stride_qh, stride_kb, stride_kh, stride_n, stride_d,
                  H, n_q, n_kv, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  CAUSAL: tl.constexpr, PRECISION: tl.constexpr, BUG: tl.constexpr):
        # the notebook's dQ kernel (given); BUG == "given dq kernel changed" drops its scale
        start_m, off_bh = tl.program_id(0), tl.program_id(1)
        q_base = (off_bh // H) * stride_qb + (off_bh % H) * stride_qh
        k_base = (off_bh // H) * stride_kb + (off_bh % H) * stride_kh
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        q_offs = q_base + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d
        q = tl.load(Q + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_offs, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + off_bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        hi = n_kv
        if CAUSAL:
            hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kv_offs = k_base + offs_n[:, None] * stride_n + offs_d[None, :] * stride_d
            k = tl.load(K + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
            v = tl.load(V + kv_offs, mask=offs_n[:, None] < n_kv, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            keep = (offs_m[:, None] < n_q) & (offs_n[None, :] < n_kv)
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None])
            p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        if BUG != "given dq kernel changed":
            dq = dq * scale
        tl.store(DQ + q_offs, dq.to(DQ.dtype.element_ty), mask=offs_m[:, None] < n_q)


def scaffold(bug="none", block_m=32, block_n=32):
    """The notebook's wrapper flash_attention_backward_triton around the two kernels above."""
    def flash_attention_backward_triton(do, q, k, v, o, lse, causal=False, scale=None):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        scale = 1.0 / math.sqrt(D) if scale is None else scale
        q, k, v, do = (t.contiguous() for t in (q, k, v, do))
        lse = lse.float().contiguous()
        delta = (do.float() * o.float()).sum(-1).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        precision = "ieee" if q.dtype == torch.float32 else "tf32"
        args = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), D, 1, H, n_q, n_kv, scale)
        meta = dict(HEAD_DIM=D, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, PRECISION=precision, BUG=bug)
        dkdv_kernel[(triton.cdiv(n_kv, block_n), B * H)](q, k, v, do, lse, delta, dk, dv, *args, **meta)
        dq_kernel[(triton.cdiv(n_q, block_m), B * H)](q, k, v, do, lse, delta, dq, *args, **meta)
        return dq, dk, dv
    return flash_attention_backward_triton


BUGS = [  # a mistake in the dK/dV loop, and words the hint must use
    ("no D term", "the D term is missing"),
    ("sign of dS flipped", "wrong sign"),
    ("delta of the key rows", "D_i = rowsum(dO_i ∘ O_i): one number per query"),
    ("P without lse", "P = exp(S) is not normalised"),
    ("P with the tile's row max", "key tile's own max"),
    ("exp2 on natural-log units", "natural-log units"),
    ("scores not scaled", "S = scale · Q Kᵀ"),
    ("no causal mask", "causal mask missing"),
    ("mask hides the diagonal", "off by one"),
    ("P not transposed", "dV = Pᵀ dO"),
    ("dS not transposed", "dK = scale · dSᵀ Q: dS is (queries × keys)"),
    ("dk scaled in the loop too", "the scale applied exactly once"),
    ("dv overwritten", "dK_j and dV_j accumulate over all query tiles"),
    ("dk overwritten", "dK_j and dV_j accumulate over all query tiles"),
]


@triton_only
def test_checker_passes_labkit_and_the_scaffold(capsys):
    from labkit import kernels
    check.flash_attention_backward_triton(kernels.flash_attention_backward_triton)
    check.flash_attention_backward_triton(scaffold())
    check.flash_attention_backward_triton(scaffold(block_m=16, block_n=32))
    assert capsys.readouterr().out.strip().splitlines() == \
        ["✔ flash_attention_backward_triton: 9/9 cases passed"] * 3


@triton_only
@pytest.mark.parametrize("bug, hint", BUGS, ids=[b[0] for b in BUGS])
def test_checker_names_the_bug_in_the_dkdv_loop(bug, hint):
    assert_rejected_with_hint(check.flash_attention_backward_triton, scaffold(bug), hint)


@triton_only
def test_row_max_is_named_for_other_tiles_too():
    assert_rejected_with_hint(check.flash_attention_backward_triton,
                              scaffold("P with the tile's row max", block_m=16, block_n=16), "key tile's own max")


@triton_only
def test_a_changed_dq_kernel_is_not_blamed_on_the_loop():
    assert_rejected_with_hint(check.flash_attention_backward_triton, scaffold("given dq kernel changed"),
                              GIVEN_DQ)


@triton_only
@pytest.mark.parametrize("fn", ["labkit", "scaffold"])
def test_no_probe_fires_on_a_right_answer(fn):
    from labkit import kernels
    run = on_course_device(kernels.flash_attention_backward_triton if fn == "labkit" else scaffold())
    built = checker.build()
    fired = [(p.label, p.violated(evaluate(run, p.args, p.kwargs), p)) for p in built.probes]
    assert not [f for f in fired if f[1]], fired


def test_blank_exercise_reports_not_implemented(capsys):
    def blank(do, q, k, v, o, lse, causal=False, scale=None):
        raise NotImplementedError("Exercise 7.2: the backward kernels")
    check.flash_attention_backward_triton(blank)
    assert "not implemented yet" in capsys.readouterr().out


@triton_only
def test_wrong_dtype_is_reported():
    from labkit import kernels

    def fp32_out(do, q, k, v, o, lse, causal=False, scale=None):
        return tuple(g.float() for g in kernels.flash_attention_backward_triton(do, q, k, v, o, lse, causal, scale))
    assert_rejected_with_hint(check.flash_attention_backward_triton, fp32_out, "dtype")


def test_the_upstream_gradient_is_never_q_so_do_cannot_stand_in_for_q():
    """With dO drawn from q's own stream, dO == q in every case, and a dK loop that used dSᵀdO
    instead of dSᵀQ passed (found by an independent set of wrong answers)."""
    from labkit.check.core import CHECKERS
    for name in ("flash_attention_backward_triton", "flash_attention_backward"):
        for args, _ in CHECKERS[name]().inputs():
            do, q = args[0], args[1]
            assert do.shape != q.shape or not torch.allclose(do.double(), q.double()), name
