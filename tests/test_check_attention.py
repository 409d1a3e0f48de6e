"""labkit.check's attention checkers: labkit passes, every wrong implementation is named by its hint.

The wrong implementations here are written the way a student would, independently of the
checker's own mutants.
"""
import math

import pytest
import torch

import labkit  # noqa: F401
from labkit import attention, check
from hints import assert_rejected_with_hint

# ---------------------------------------------------------------- naive attention mutants


def student_naive(transpose=True, scale_rule="sqrt", mask="right", softmax_dim=-1, cast=True):
    def fn(q, k, v, causal=False, scale=None):
        D = q.shape[-1]
        if scale_rule == "sqrt":
            s_ = 1 / math.sqrt(D) if scale is None else scale
        else:
            s_ = {"none": 1.0, "D": 1 / D, "ignored": 1 / math.sqrt(D)}[scale_rule]
        kt = k.transpose(-2, -1) if transpose else k
        s = torch.matmul(q.float(), kt.float()) * s_
        if causal:
            n = q.shape[-2]
            ones = torch.ones(n, n, dtype=torch.bool)
            hidden = {"right": torch.triu(ones, 1), "diag": torch.triu(ones, 0),
                      "late": torch.triu(ones, 2), "flipped": torch.tril(ones, -1)}[mask]
            s = s.masked_fill(hidden, -float("inf"))
        out = torch.softmax(s, dim=softmax_dim) @ v.float()
        return out.to(q.dtype) if cast else out
    return fn


NAIVE_MUTANTS = [
    ("K not transposed", student_naive(transpose=False), "transpose the last two dims of k"),
    ("no scale", student_naive(scale_rule="none"), "scaled by 1/sqrt(D)"),
    ("scale 1/D", student_naive(scale_rule="D"), "1/sqrt(D), not 1/D"),
    ("scale argument ignored", student_naive(scale_rule="ignored"), "use the `scale` argument"),
    ("causal mask hides the diagonal", student_naive(mask="diag"), "query i must see key i itself"),
    ("causal mask one late", student_naive(mask="late"), "must not see key i + 1"),
    ("causal mask flipped", student_naive(mask="flipped"), "causal mask flipped"),
    ("softmax over queries", student_naive(softmax_dim=-2), "softmax over the keys"),
    ("float32 output for float16 input", student_naive(cast=False), "input's dtype"),
]


def test_naive_checker_passes_labkit(capsys):
    check.naive_attention(attention.naive_attention)
    assert capsys.readouterr().out.strip() == "✔ naive_attention: 7/7 cases passed"
    check.naive_attention(student_naive())  # a correct float32-compute answer passes too


@pytest.mark.parametrize("label, fn, hint", NAIVE_MUTANTS, ids=[m[0] for m in NAIVE_MUTANTS])
def test_naive_checker_names_the_mistake(label, fn, hint):
    assert_rejected_with_hint(check.naive_attention, fn, hint)


# ---------------------------------------------------------------- tiled attention mutants


def student_tiled(per_tile_softmax=False, drop_tail=False, transpose=True, scale_rule="sqrt"):
    def fn(q, k, v, block_q=64, block_k=64, scale=None):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        s_ = (1 / math.sqrt(D) if scale is None else scale) if scale_rule == "sqrt" else 1.0
        o = torch.zeros(B, H, n_q, D)
        stop = n_kv - block_k + 1 if drop_tail else n_kv
        for i in range(0, n_q, block_q):
            qi = q[:, :, i:i + block_q].float()
            S = torch.zeros(B, H, qi.shape[2], n_kv)
            for j in range(0, stop, block_k):
                kj = k[:, :, j:j + block_k].float()
                sij = qi @ (kj.transpose(-1, -2) if transpose else kj) * s_
                S[..., j:j + block_k] = torch.softmax(sij, -1) if per_tile_softmax else sij
            P = S if per_tile_softmax else torch.softmax(S, -1)
            o[:, :, i:i + block_q] = P @ v.float()
        return o.to(q.dtype)
    return fn


TILED_MUTANTS = [
    ("softmax per key tile", student_tiled(per_tile_softmax=True), "not over each key tile"),
    ("last key tile dropped", student_tiled(drop_tail=True), "last, partial key tile"),
    ("K not transposed", student_tiled(transpose=False), "transpose the last two dims of k"),
    ("no scale", student_tiled(scale_rule="none"), "scaled by 1/sqrt(D)"),
]


def test_tiled_checker_passes_labkit(capsys):
    check.tiled_attention(attention.tiled_attention)
    assert capsys.readouterr().out.strip() == "✔ tiled_attention: 6/6 cases passed"
    check.tiled_attention(student_tiled())


@pytest.mark.parametrize("label, fn, hint", TILED_MUTANTS, ids=[m[0] for m in TILED_MUTANTS])
def test_tiled_checker_names_the_mistake(label, fn, hint):
    assert_rejected_with_hint(check.tiled_attention, fn, hint)


# ---------------------------------------------------------------- flash forward mutants


def student_flash(rescale_acc=True, rescale_l=True, divide=True, lse_max=True, mask="right",
                  transpose=True, scale_rule="sqrt", skip_diagonal=False):
    def fn(q, k, v, causal=False, scale=None, block_q=64, block_k=64):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        s_ = (1 / math.sqrt(D) if scale is None else scale) if scale_rule == "sqrt" else 1.0
        o = torch.empty(B, H, n_q, D)
        lse = torch.empty(B, H, n_q)
        for i in range(0, n_q, block_q):
            qi = q[:, :, i:i + block_q].float()
            tq = qi.shape[2]
            m = torch.full((B, H, tq), -float("inf"))
            l = torch.zeros(B, H, tq)
            acc = torch.zeros(B, H, tq, D)
            last = (i if skip_diagonal else min(i + tq, n_kv)) if causal else n_kv
            for j in range(0, last, block_k):
                kj, vj = k[:, :, j:j + block_k].float(), v[:, :, j:j + block_k].float()
                s = qi @ (kj.transpose(-1, -2) if transpose else kj) * s_
                if causal:
                    r = torch.arange(i, i + tq)[:, None]
                    c = torch.arange(j, j + kj.shape[2])[None, :]
                    hidden = {"right": c > r, "diag": c >= r, "late": c > r + 1}[mask]
                    s = s.masked_fill(hidden, -float("inf"))
                m_new = torch.maximum(m, s.max(-1).values)
                p = torch.exp(s - m_new.unsqueeze(-1))
                corr = torch.exp(m - m_new)
                l = (l * corr if rescale_l else l) + p.sum(-1)
                acc = (acc * corr.unsqueeze(-1) if rescale_acc else acc) + p @ vj
                m = m_new
            o[:, :, i:i + tq] = acc / l.unsqueeze(-1) if divide else acc
            lse[:, :, i:i + tq] = m + torch.log(l) if lse_max else torch.log(l)
        return o.to(q.dtype), lse
    return fn


FLASH_MUTANTS = [
    ("acc not rescaled", student_flash(rescale_acc=False), "acc not rescaled"),
    ("l not rescaled", student_flash(rescale_l=False), "l_i not rescaled"),
    ("nothing rescaled", student_flash(rescale_acc=False, rescale_l=False),
     "neither acc nor l_i"),
    ("output not divided by l", student_flash(divide=False), "o = acc / l_i"),
    ("lse without the max", student_flash(lse_max=False), "add m_i back"),
    ("causal mask hides the diagonal", student_flash(mask="diag"), "query i must see key i itself"),
    ("causal mask one late", student_flash(mask="late"), "must not see key i + 1"),
    ("causal loop skips the diagonal tile", student_flash(skip_diagonal=True),
     "the key tile on the diagonal"),
    ("K not transposed", student_flash(transpose=False), "transpose the last two dims of k"),
    ("no scale", student_flash(scale_rule="none"), "scaled by 1/sqrt(D)"),
]


def test_flash_checker_passes_labkit(capsys):
    check.flash_attention_forward(attention.flash_attention_forward)
    assert capsys.readouterr().out.strip() == "✔ flash_attention_forward: 8/8 cases passed"
    check.flash_attention_forward(student_flash())


@pytest.mark.parametrize("label, fn, hint", FLASH_MUTANTS, ids=[m[0] for m in FLASH_MUTANTS])
def test_flash_checker_names_the_mistake(label, fn, hint):
    assert_rejected_with_hint(check.flash_attention_forward, fn, hint)


@pytest.mark.parametrize("name", ["naive_attention", "tiled_attention", "flash_attention_forward"])
def test_blank_exercise_reports_not_implemented(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise: fill me in")
    getattr(check, name)(blank)
    assert capsys.readouterr().out.strip() == f"✘ {name}: not implemented yet " \
        "(fill in the exercise above, then re-run this cell)"


# ------------------------------------- Triton forward kernel mutants (interpreter on CPU)

from labkit import device  # noqa: E402

LOG2E = 1.4426950408889634

if device.HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _student_flash_kernel(Q, K, V, O, LSE, stride_qb, stride_qh, stride_qm, stride_kb, stride_kh,
                              stride_kn, stride_ob, stride_oh, stride_om, H, n_q, n_kv, qk_scale,
                              D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                              CAUSAL: tl.constexpr, BUG: tl.constexpr):
        # A student's kernel for contiguous (B, H, N, D) tensors, with one switchable mistake.
        start_m = tl.program_id(0)
        bh = tl.program_id(1)
        q_base = Q + (bh // H) * stride_qb + (bh % H) * stride_qh
        k_base = K + (bh // H) * stride_kb + (bh % H) * stride_kh
        v_base = V + (bh // H) * stride_kb + (bh % H) * stride_kh
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, D)
        q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :], mask=offs_m[:, None] < n_q,
                    other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
        hi = n_kv
        if CAUSAL:
            hi = tl.minimum((start_m + 1) * BLOCK_M, n_kv)
        for start_n in range(0, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None],
                         mask=offs_n[None, :] < n_kv, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * stride_kn + offs_d[None, :],
                        mask=offs_n[:, None] < n_kv, other=0.0)
            s = tl.dot(q, kt, input_precision="ieee") * qk_scale
            if BUG != "ragged keys kept":
                s = tl.where(offs_n[None, :] < n_kv, s, float("-inf"))
            if CAUSAL:
                if BUG == "mask hides the diagonal":
                    s = tl.where(offs_n[None, :] < offs_m[:, None], s, float("-inf"))
                else:
                    s = tl.where(offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.exp2(s - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            if BUG != "acc not rescaled":
                acc = acc * alpha[:, None]
            acc += tl.dot(p.to(v.dtype), v, input_precision="ieee")
            m_i = m_new
        o = acc
        if BUG != "o not divided":
            o = acc / l_i[:, None]
        tl.store(O + (bh // H) * stride_ob + (bh % H) * stride_oh + offs_m[:, None] * stride_om
                 + offs_d[None, :], o.to(O.dtype.element_ty), mask=offs_m[:, None] < n_q)
        if BUG == "lse without the max":
            lse = tl.log2(l_i) * 0.6931471805599453
        elif BUG == "lse in log2 units":
            lse = m_i + tl.log2(l_i)
        else:
            lse = (m_i + tl.log2(l_i)) * 0.6931471805599453
        tl.store(LSE + bh * n_q + offs_m, lse, mask=offs_m < n_q)


def student_flash_triton(bug="none", block_m=32, block_n=16):
    def fn(q, k, v, causal=False, scale=None):
        B, H, n_q, D = q.shape
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        scale = 1 / math.sqrt(D) if scale is None else scale
        qk_scale = {"no scale": LOG2E, "exp2 without log2(e)": scale,
                    "scale argument ignored": LOG2E / math.sqrt(D)}.get(bug, scale * LOG2E)
        o = torch.empty_like(q)
        lse = torch.empty(B, H, n_q)
        grid = (triton.cdiv(n_q, block_m), B * H)
        _student_flash_kernel[grid](q, k, v, o, lse, q.stride(0), q.stride(1), q.stride(2),
                                    k.stride(0), k.stride(1), k.stride(2), o.stride(0), o.stride(1),
                                    o.stride(2), H, n_q, k.shape[2], qk_scale, D=D, BLOCK_M=block_m,
                                    BLOCK_N=block_n, CAUSAL=causal, BUG=bug)
        return o, lse
    return fn


TRITON_MUTANTS = [
    ("acc not rescaled", "acc not rescaled"),
    ("o not divided", "o = acc / l_i"),
    ("lse without the max", "add m_i back"),
    ("lse in log2 units", "log2 units"),
    ("mask hides the diagonal", "query i must see key i itself"),
    ("no scale", "scaled by `scale`"),
    ("scale argument ignored", "use the `scale` argument"),
    ("exp2 without log2(e)", "multiply the scores by log2(e)"),
    ("ragged keys kept", "keys past N_kv must score -inf"),
]
triton_only = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)


@triton_only
def test_flash_triton_checker_passes_labkit_kernel_and_a_correct_student_kernel(capsys):
    from labkit import kernels
    check.flash_attention_forward_triton(kernels.flash_attention_forward)
    check.flash_attention_forward_triton(student_flash_triton())
    check.flash_attention_forward_triton(student_flash_triton(block_m=64, block_n=64))
    assert capsys.readouterr().out.strip().splitlines() == \
        ["✔ flash_attention_forward_triton: 8/8 cases passed"] * 3


@triton_only
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the masked-diagonal bug makes NaN
@pytest.mark.parametrize("bug, hint", TRITON_MUTANTS, ids=[m[0] for m in TRITON_MUTANTS])
def test_flash_triton_checker_names_the_kernel_bug(bug, hint):
    assert_rejected_with_hint(check.flash_attention_forward_triton, student_flash_triton(bug), hint)


@triton_only
@pytest.mark.parametrize("block_n", [32, 64])
def test_flash_triton_checker_finds_unrescaled_acc_for_other_key_tiles(block_n):
    with pytest.raises(AssertionError, match="acc not rescaled"):
        check.flash_attention_forward_triton(student_flash_triton("acc not rescaled", 64, block_n))


def test_flash_triton_blank_reports_not_implemented(capsys):
    def blank(q, k, v, causal=False, scale=None):
        raise NotImplementedError("Exercise 6.1: the loop over K/V tiles")
    check.flash_attention_forward_triton(blank)
    assert "not implemented yet" in capsys.readouterr().out


# ------------------------------------------- flash backward mutants (PyTorch, notebook 07)


def student_backward(d_term="dO*O", scale_dq=True, scale_dk=True, p_from="lse", mask="right",
                     transpose_p=True, overwrite=None):
    """A student's backward: query tiles outer, key tiles inner, float32, one switchable mistake."""
    def fn(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2]
        sc = 1 / math.sqrt(D) if scale is None else scale
        do32, q32, k32, v32 = do.float(), q.float(), k.float(), v.float()
        Di = (do32 * o.float()).sum(-1)
        dq = torch.zeros(B, H, n_q, D)
        dk = torch.zeros(B, H, n_kv, D)
        dv = torch.zeros(B, H, n_kv, D)

        def scores(i, tq, j, tk):
            s = q32[:, :, i:i + tq] @ k32[:, :, j:j + tk].transpose(-1, -2) * sc
            if causal and mask == "right":
                r, c = torch.arange(i, i + tq)[:, None], torch.arange(j, j + tk)[None, :]
                s = s.masked_fill(c > r, -float("inf"))
            return s

        for i in range(0, n_q, block_q):
            tq = min(block_q, n_q - i)
            doi = do32[:, :, i:i + tq]
            last = i + tq if causal and mask != "none" else n_kv
            if p_from == "row max":  # a pass over the key tiles for the max, as in the forward
                m = torch.full((B, H, tq, 1), -float("inf"))
                for j in range(0, last, block_k):
                    m = torch.maximum(m, scores(i, tq, j, min(block_k, n_kv - j)).amax(-1, keepdim=True))
            for j in range(0, last, block_k):
                tk = min(block_k, n_kv - j)
                s = scores(i, tq, j, tk)
                if p_from == "lse":
                    p = torch.exp(s - lse[:, :, i:i + tq].float().unsqueeze(-1))
                elif p_from == "tile max":
                    p = torch.exp(s - s.max(dim=-1, keepdim=True).values)
                elif p_from == "tile softmax":
                    p = torch.softmax(s, dim=-1)
                elif p_from == "row max":
                    p = torch.exp(s - m)
                else:
                    p = torch.exp(s)
                dvj = p @ doi if not transpose_p else p.transpose(-1, -2) @ doi
                dp = doi @ v32[:, :, j:j + tk].transpose(-1, -2)
                if d_term == "dO*O":
                    ds = p * (dp - Di[:, :, i:i + tq, None])
                elif d_term == "tile":
                    ds = p * (dp - (p * dp).sum(-1, keepdim=True))
                else:
                    ds = p * dp
                dqij = ds @ k32[:, :, j:j + tk] * (sc if scale_dq else 1)
                dkj = ds.transpose(-1, -2) @ q32[:, :, i:i + tq] * (sc if scale_dk else 1)
                if overwrite == "dq":
                    dq[:, :, i:i + tq] = dqij
                else:
                    dq[:, :, i:i + tq] += dqij
                if overwrite == "dk dv":
                    dk[:, :, j:j + tk], dv[:, :, j:j + tk] = dkj, dvj
                else:
                    dk[:, :, j:j + tk] += dkj
                    dv[:, :, j:j + tk] += dvj
        return dq.to(q.dtype), dk.to(q.dtype), dv.to(q.dtype)
    return fn


BACKWARD_MUTANTS = [
    ("D term missing: dS = P*dP", student_backward(d_term="none"), "the D term is missing"),
    ("D from one key tile's rowsum(dP*P)", student_backward(d_term="tile"), "sums over the whole row"),
    ("scale missing on dQ", student_backward(scale_dq=False), "scale is missing on dQ"),
    ("scale missing on dK", student_backward(scale_dk=False), "scale is missing on dK"),
    ("P from each tile's own max", student_backward(p_from="tile max"), "each tile's own max"),
    ("P from a softmax per key tile", student_backward(p_from="tile softmax"),
     "softmax over one key tile"),
    ("P from the row max without the log-sum", student_backward(p_from="row max"), "row max alone"),
    ("P = exp(S), lse ignored", student_backward(p_from="none"), "exp(S) overflows"),
    ("causal mask not applied, all tiles visited", student_backward(mask="none"),
     "causal mask missing in the backward"),
    ("causal tiles skipped but the diagonal not masked", student_backward(mask="skip only"),
     "causal mask missing in the backward"),
    ("dV = P dO", student_backward(transpose_p=False), "dV = Pᵀ dO"),
    ("dQ overwritten per key tile", student_backward(overwrite="dq"), "dQ_i accumulates"),
    ("dK, dV overwritten per query tile", student_backward(overwrite="dk dv"),
     "dK_j and dV_j accumulate"),
]


def test_backward_checker_passes_labkit(capsys):
    check.flash_attention_backward(attention.flash_attention_backward)
    check.flash_attention_backward(student_backward())
    assert capsys.readouterr().out.strip().splitlines() == \
        ["✔ flash_attention_backward: 7/7 cases passed"] * 2


@pytest.mark.parametrize("label, fn, hint", BACKWARD_MUTANTS, ids=[m[0] for m in BACKWARD_MUTANTS])
def test_backward_checker_names_the_mistake(label, fn, hint):
    assert_rejected_with_hint(check.flash_attention_backward, fn, hint)


def test_backward_checker_rejects_wrong_dtype_and_structure():
    def float32_out(*args, **kwargs):
        return tuple(g.float() for g in attention.flash_attention_backward(*args, **kwargs))
    with pytest.raises(AssertionError, match="dtype"):
        check.flash_attention_backward(float32_out)
    with pytest.raises(AssertionError, match=r"expected a tuple \(dq, dk, dv\)"):
        check.flash_attention_backward(lambda *a, **kw: attention.flash_attention_backward(*a, **kw)[0])


def test_backward_blank_reports_not_implemented(capsys):
    def blank(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
        raise NotImplementedError("Exercise 7.2: the backward loops")
    check.flash_attention_backward(blank)
    assert capsys.readouterr().out.strip() == "✘ flash_attention_backward: not implemented yet " \
        "(fill in the exercise above, then re-run this cell)"
