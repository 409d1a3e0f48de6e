"""check.flash_attention_backward_triton: a student's Triton backward with switchable bugs (interpreter on CPU)."""

import math

import pytest
import torch

import labkit  # noqa: F401  (device switch first)
from labkit import check, device
from labkit.check import attention_backward_triton as checker
from hints import assert_rejected_with_hint

LOG2E = 1.4426950408889634

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _student_p(s, lse, keep, qk_scale, ROW_AXIS: tl.constexpr, BUG: tl.constexpr):
        """P (or Pᵀ) from raw scores s; ROW_AXIS is the axis that runs over the keys."""
        if BUG == "exp2 without log2(e)" or BUG == "lse not converted":
            x = s * qk_scale - lse  # lse still in natural-log units (qk_scale may lack log2(e) too)
        elif BUG == "P without lse":
            x = s * qk_scale
        elif BUG == "P with the tile's row max":
            m = tl.max(tl.where(keep, s * qk_scale, float("-inf")), ROW_AXIS)
            m = tl.where(m == float("-inf"), 0.0, m)
            x = s * qk_scale - tl.expand_dims(m, ROW_AXIS)
        else:
            x = s * qk_scale - lse * LOG2E
        return tl.exp2(tl.where(keep, x, float("-inf")))

    @triton.jit
    def _student_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, n_q, n_kv, scale, qk_scale,
                             D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             CAUSAL: tl.constexpr, BUG: tl.constexpr):
        # A student's kernel for contiguous (B, H, N, D) tensors: one key block, all query blocks.
        start_n = tl.program_id(0) * BLOCK_N
        bh = tl.program_id(1)
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, D)
        kv_off = bh * n_kv * D + offs_n[:, None] * D + offs_d[None, :]
        k = tl.load(K + kv_off, mask=offs_n[:, None] < n_kv, other=0.0)
        v = tl.load(V + kv_off, mask=offs_n[:, None] < n_kv, other=0.0)
        dk = tl.zeros([BLOCK_N, D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, D], dtype=tl.float32)
        lo = 0
        if CAUSAL:
            lo = start_n // BLOCK_M * BLOCK_M  # earlier query blocks see none of these keys
        for start_m in range(lo, n_q, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            q_off = bh * n_q * D + offs_m[:, None] * D + offs_d[None, :]
            q = tl.load(Q + q_off, mask=offs_m[:, None] < n_q, other=0.0)
            do = tl.load(DO + q_off, mask=offs_m[:, None] < n_q, other=0.0)
            lse = tl.load(LSE + bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
            delta = tl.load(DELTA + bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
            keep = offs_m[None, :] < n_q
            if CAUSAL:
                if BUG == "mask hides the diagonal":
                    keep = keep & (offs_m[None, :] > offs_n[:, None])
                elif BUG != "no causal mask":
                    keep = keep & (offs_m[None, :] >= offs_n[:, None])
            s_t = tl.dot(k, tl.trans(q), input_precision="ieee")  # (BLOCK_N, BLOCK_M)
            p_t = _student_p(s_t, lse[None, :], keep, qk_scale, 0, BUG)
            dv += tl.dot(p_t.to(do.dtype), do, input_precision="ieee")
            dp_t = tl.dot(v, tl.trans(do), input_precision="ieee")
            ds_t = p_t * (dp_t - delta[None, :])
            dk += tl.dot(ds_t.to(q.dtype), q, input_precision="ieee")
        if BUG == "log2(e) in the gradient scale":
            dk *= qk_scale
        elif BUG != "dk not scaled" and BUG != "dq and dk not scaled":
            dk *= scale
        tl.store(DK + kv_off, dk.to(DK.dtype.element_ty), mask=offs_n[:, None] < n_kv)
        tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_kv)

    @triton.jit
    def _student_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, n_q, n_kv, scale, qk_scale,
                           D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           CAUSAL: tl.constexpr, BUG: tl.constexpr):
        # One query block, all key blocks up to its diagonal.
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, D)
        q_off = bh * n_q * D + offs_m[:, None] * D + offs_d[None, :]
        q = tl.load(Q + q_off, mask=offs_m[:, None] < n_q, other=0.0)
        do = tl.load(DO + q_off, mask=offs_m[:, None] < n_q, other=0.0)
        lse = tl.load(LSE + bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        delta = tl.load(DELTA + bh * n_q + offs_m, mask=offs_m < n_q, other=0.0)
        dq = tl.zeros([BLOCK_M, D], dtype=tl.float32)
        hi = n_kv
        if CAUSAL:
            hi = tl.minimum(start_m + BLOCK_M, n_kv)
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kv_off = bh * n_kv * D + offs_n[:, None] * D + offs_d[None, :]
            k = tl.load(K + kv_off, mask=offs_n[:, None] < n_kv, other=0.0)
            v = tl.load(V + kv_off, mask=offs_n[:, None] < n_kv, other=0.0)
            keep = offs_n[None, :] < n_kv
            if CAUSAL:
                if BUG == "mask hides the diagonal":
                    keep = keep & (offs_m[:, None] > offs_n[None, :])
                elif BUG != "no causal mask":
                    keep = keep & (offs_m[:, None] >= offs_n[None, :])
            s = tl.dot(q, tl.trans(k), input_precision="ieee")  # (BLOCK_M, BLOCK_N)
            p = _student_p(s, lse[:, None], keep, qk_scale, 1, BUG)
            dp = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision="ieee")
        if BUG == "log2(e) in the gradient scale":
            dq *= qk_scale
        elif BUG != "dq not scaled" and BUG != "dq and dk not scaled":
            dq *= scale
        tl.store(DQ + q_off, dq.to(DQ.dtype.element_ty), mask=offs_m[:, None] < n_q)


def student_backward_triton(bug="none", block_m=16, block_n=32):
    def fn(do, q, k, v, o, lse, causal=False, scale=None):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        do, q, k, v, o, lse = (x.contiguous() for x in (do, q, k, v, o, lse))
        if scale is None or bug == "scale argument ignored":
            scale = 1 / math.sqrt(D)
        qk_scale = scale if bug == "exp2 without log2(e)" else scale * LOG2E
        delta = torch.zeros(B, H, n_q, device=q.device) if bug == "no D term" else \
            (do.float() * o.float()).sum(-1)  # Δ = rowsum(dO ∘ O)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        options = dict(D=D, CAUSAL=causal, BUG=bug)
        _student_dkdv_kernel[(triton.cdiv(n_kv, block_n), B * H)](
            q, k, v, do, lse, delta, dk, dv, n_q, n_kv, scale, qk_scale, BLOCK_M=block_m,
            BLOCK_N=block_n, **options)
        _student_dq_kernel[(triton.cdiv(n_q, block_n), B * H)](
            q, k, v, do, lse, delta, dq, n_q, n_kv, scale, qk_scale, BLOCK_M=block_n,
            BLOCK_N=block_m, **options)
        return dq, dk, dv
    return fn


BUGS = [
    ("no D term", "FlashAttention-2's D term"),
    ("dk not scaled", "multiply the dK accumulator by `scale`"),
    ("dq not scaled", "multiply the dQ accumulator by `scale`"),
    ("dq and dk not scaled", "multiply both accumulators by `scale`"),
    ("log2(e) in the gradient scale", "not scale · log2(e)"),
    ("P without lse", "rebuild P from the saved logsumexp"),
    ("P with the tile's row max", "not exp(scale · S − row max)"),
    ("no causal mask", "rebuild P with the forward's mask"),
    ("mask hides the diagonal", "query i sees key i itself"),
    ("exp2 without log2(e)", "tl.exp2(x) is 2**x"),
    ("lse not converted", "lse is saved in natural-log units"),
    ("scale argument ignored", "use the `scale` argument"),
]
triton_only = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)


@triton_only
def test_checker_passes_labkit_and_a_correct_student_kernel(capsys):
    from labkit import kernels
    check.flash_attention_backward_triton(kernels.flash_attention_backward)
    check.flash_attention_backward_triton(student_backward_triton())
    check.flash_attention_backward_triton(student_backward_triton(block_m=32, block_n=64))
    assert capsys.readouterr().out.strip().splitlines() == \
        ["✔ flash_attention_backward_triton: 9/9 cases passed"] * 3


@triton_only
@pytest.mark.parametrize("bug, hint", BUGS, ids=[b[0] for b in BUGS])
def test_checker_names_the_kernel_bug(bug, hint):
    assert_rejected_with_hint(check.flash_attention_backward_triton, student_backward_triton(bug), hint)


@triton_only
def test_row_max_bug_is_named_for_larger_tiles_too():
    with pytest.raises(AssertionError, match="not exp\\(scale · S − row max\\)"):
        check.flash_attention_backward_triton(
            student_backward_triton("P with the tile's row max", block_m=32, block_n=64))


def test_every_mutant_differs_from_the_reference_and_the_correct_formula_matches():
    do, q, k, v, o, lse = checker._inputs(1, 2, 13, 13, 16, seed=1, causal=True)
    expected = checker._Expected(do, q, k, v, o, lse, causal=True)
    checker.compare_grads(checker._backward_variant(do, q, k, v, o, lse, True, mistake="none"), expected)
    for mistake in checker._HINTS:
        kwargs = {"scale": 0.5} if mistake == "scale ignored" else {}
        args = checker._inputs(1, 2, 13, 13, 16, seed=1, causal=True, **kwargs)
        with pytest.raises(AssertionError):
            checker.compare_grads(checker._backward_variant(*args, True, mistake=mistake, **kwargs),
                             checker._Expected(*args, causal=True, **kwargs))


def test_blank_exercise_reports_not_implemented(capsys):
    def blank(do, q, k, v, o, lse, causal=False, scale=None):
        raise NotImplementedError("Exercise 7.2: the backward kernels")
    check.flash_attention_backward_triton(blank)
    assert "not implemented yet" in capsys.readouterr().out


def test_wrong_dtype_is_reported():
    def fp32_out(do, q, k, v, o, lse, causal=False, scale=None):
        from labkit import kernels
        return tuple(g.float() for g in kernels.flash_attention_backward(do, q, k, v, o, lse, causal, scale))
    with pytest.raises(AssertionError, match="dtype torch.float32, expected torch.float16"):
        check.flash_attention_backward_triton(fp32_out)
