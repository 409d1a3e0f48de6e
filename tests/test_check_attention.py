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
        kt = {True: k.transpose(-2, -1), False: k, "reshape": k.reshape(*k.shape[:2], k.shape[3], k.shape[2])}[transpose]
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
    ("K not transposed", student_naive(transpose=False), "transpose k's last two dims"),
    ("no scale", student_naive(scale_rule="none"), "scaled by 1/sqrt(D)"),
    ("scale 1/D", student_naive(scale_rule="D"), "scaled by 1/D where the default is 1/sqrt(D)"),
    ("scale argument ignored", student_naive(scale_rule="ignored"), "use the `scale` argument"),
    ("causal mask hides the diagonal", student_naive(mask="diag"), "query i must see key i itself"),
    ("causal mask one late", student_naive(mask="late"), "must not see key i + 1"),
    ("causal mask flipped", student_naive(mask="flipped"), "causal mask flipped"),
    ("softmax over queries", student_naive(softmax_dim=-2), "softmax over the keys"),
    ("K reshaped", student_naive(transpose="reshape"), "transpose k's last two dims"),
    ("float32 output for float16 input", student_naive(cast=False), "input's dtype"),
]


def test_naive_checker_passes_labkit(capsys):
    check.naive_attention(attention.naive_attention)
    assert capsys.readouterr().out.strip() == "✔ naive_attention: 8/8 cases passed"
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
        ct = torch.promote_types(q.dtype, torch.float32)  # float32 at least, float64 kept
        o = torch.zeros(B, H, n_q, D, dtype=ct)
        stop = n_kv - block_k + 1 if drop_tail else n_kv
        for i in range(0, n_q, block_q):
            qi = q[:, :, i:i + block_q].to(ct)
            S = torch.zeros(B, H, qi.shape[2], n_kv, dtype=ct)
            for j in range(0, stop, block_k):
                kj = k[:, :, j:j + block_k].to(ct)
                sij = qi @ (kj.transpose(-1, -2) if transpose else kj) * s_
                S[..., j:j + block_k] = torch.softmax(sij, -1) if per_tile_softmax else sij
            P = S if per_tile_softmax else torch.softmax(S, -1)
            o[:, :, i:i + block_q] = P @ v.to(ct)
        return o.to(q.dtype)
    return fn


TILED_MUTANTS = [
    ("softmax per key tile", student_tiled(per_tile_softmax=True), "not over each key tile"),
    ("last key tile dropped", student_tiled(drop_tail=True), "last, partial key tile"),
    ("K not transposed", student_tiled(transpose=False), "transpose k's last two dims"),
    ("no scale", student_tiled(scale_rule="none"), "scaled by 1/sqrt(D)"),
]


def test_tiled_checker_passes_labkit(capsys):
    check.tiled_attention(attention.tiled_attention)
    assert capsys.readouterr().out.strip() == "✔ tiled_attention: 7/7 cases passed"
    check.tiled_attention(student_tiled())


@pytest.mark.parametrize("label, fn, hint", TILED_MUTANTS, ids=[m[0] for m in TILED_MUTANTS])
def test_tiled_checker_names_the_mistake(label, fn, hint):
    assert_rejected_with_hint(check.tiled_attention, fn, hint)


# ---------------------------------------------------------------- flash forward mutants


def student_flash(rescale_acc=True, rescale_l=True, divide=True, lse_max=True, mask="right",
                  transpose=True, scale_rule="sqrt", skip_diagonal=False, tile_max=False):
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
                    hidden = {"right": c > r, "diag": c >= r, "late": c > r + 1, "flipped": c < r,
                              "local": (c - j) > (r - i)}[mask]
                    s = s.masked_fill(hidden, -float("inf"))
                m_new = s.max(-1).values if tile_max else torch.maximum(m, s.max(-1).values)
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
     "the key tile on the query tile's diagonal"),
    ("causal mask flipped", student_flash(mask="flipped"), "causal mask flipped"),
    ("causal mask with tile-local indices", student_flash(mask="local"), "tile-local indices"),
    ("tile max instead of running max (consistent)", student_flash(tile_max=True), "running max must never decrease"),
    ("K not transposed", student_flash(transpose=False), "transpose k's last two dims"),
    ("no scale", student_flash(scale_rule="none"), "scaled by 1/sqrt(D)"),
]


def test_flash_checker_passes_labkit(capsys):
    check.flash_attention_forward(attention.flash_attention_forward)
    assert capsys.readouterr().out.strip() == "✔ flash_attention_forward: 9/9 cases passed"
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
    ("lse without the max", "lse is not"),
    ("lse in log2 units", "lse is not"),
    ("mask hides the diagonal", "query i must see key i itself"),
    ("no scale", "multiply the scores by qk_scale"),
    ("scale argument ignored", "multiply the scores by qk_scale"),
    ("exp2 without log2(e)", "lack the factor log2 e"),
    ("ragged keys kept", "keys past n_kv must score -inf"),
]
triton_only = pytest.mark.skipif(not device.HAS_TRITON, reason=device.TRITON_MISSING)


@triton_only
def test_flash_triton_checker_passes_labkit_kernel_and_a_correct_student_kernel(capsys):
    from labkit import kernels
    check.flash_attention_forward_triton(kernels.flash_attention_forward_triton)
    check.flash_attention_forward_triton(student_flash_triton())
    check.flash_attention_forward_triton(student_flash_triton(block_m=64, block_n=64))
    assert capsys.readouterr().out.strip().splitlines() == \
        ["✔ flash_attention_forward_triton: 10/10 cases passed"] * 3


@triton_only
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the masked-diagonal bug makes NaN
@pytest.mark.parametrize("bug, hint", TRITON_MUTANTS, ids=[m[0] for m in TRITON_MUTANTS])
def test_flash_triton_checker_names_the_kernel_bug(bug, hint):
    assert_rejected_with_hint(check.flash_attention_forward_triton, student_flash_triton(bug), hint)


@triton_only
@pytest.mark.parametrize("block_n", [32])  # 64: one key tile holds N <= 40, nothing to rescale (6.1 fixes 16)
def test_flash_triton_checker_finds_unrescaled_acc_for_other_key_tiles(block_n):
    # the probes assume the scaffold's 16-key tiles; with other tiles the per-tile rescaling is still named
    with pytest.raises(AssertionError, match="acc and l_i must both be multiplied by alpha|acc not rescaled"):
        check.flash_attention_forward_triton(student_flash_triton("acc not rescaled", 64, block_n))


def test_flash_triton_blank_reports_not_implemented(capsys):
    def blank(q, k, v, causal=False, scale=None):
        raise NotImplementedError("Exercise 6.1: the loop over K/V tiles")
    check.flash_attention_forward_triton(blank)
    assert "not implemented yet" in capsys.readouterr().out


# ------------------------------- the old checker's catalogue of wrong implementations, as test data
# (labkit.check once named a mistake only when the output equalled one of these; now probes do)

def _scores(q, k, scale, mistake):
    """scale · q kᵀ in float64, with one deliberate mistake."""
    D = q.shape[-1]
    if mistake == "no scale":
        scale = 1.0
    elif mistake == "scale 1/D":
        scale = 1.0 / D
    elif mistake == "scale ignored" or scale is None:
        scale = 1.0 / math.sqrt(D)
    kt = k if mistake == "k not transposed" else k.transpose(-2, -1)
    return (q.double() @ kt.double()) * scale


def _mask(s, rows, cols, mistake):
    """Causal mask on a (.., rows, cols) block of scores; `rows`, `cols` are the global indices."""
    i, j = rows[:, None], cols[None, :]
    hidden = {"diagonal masked": j >= i, "one key too many": j > i + 1,
              "mask flipped": j < i}.get(mistake, j > i)
    return s.masked_fill(hidden, float("-inf"))


def _naive_variant(q, k, v, causal=False, scale=None, *, mistake):
    s = _scores(q, k, scale, mistake)
    if causal:
        s = _mask(s, torch.arange(q.shape[2]), torch.arange(k.shape[2]), mistake)
    p = torch.softmax(s, dim=-2 if mistake == "softmax over queries" else -1)
    return (p @ v.double()).to(q.dtype)


def _tiled_variant(q, k, v, block_q=64, block_k=64, scale=None, *, mistake):
    n_q, n_kv = q.shape[2], k.shape[2]
    o = torch.zeros(q.shape, dtype=torch.float64)
    k_end = n_kv - block_k + 1 if mistake == "tail dropped" else n_kv
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        s_i = torch.zeros(*q_i.shape[:3], n_kv, dtype=torch.float64)
        for j0 in range(0, max(k_end, 1), block_k):
            s_ij = _scores(q_i, k[:, :, j0:j0 + block_k], scale, mistake)
            s_i[..., j0:j0 + block_k] = torch.softmax(s_ij, -1) if mistake == "softmax per tile" else s_ij
        p_i = s_i if mistake == "softmax per tile" else torch.softmax(s_i, -1)
        o[:, :, i0:i0 + block_q] = p_i @ v.double()
    return o.to(q.dtype)


def _flash_variant(q, k, v, causal=False, scale=None, block_q=64, block_k=64, *, mistake):
    """The online-softmax forward with one deliberate mistake; returns (o, lse)."""
    n_q, n_kv = q.shape[2], k.shape[2]
    o = torch.zeros(q.shape, dtype=torch.float64)
    lse = torch.zeros(q.shape[:3], dtype=torch.float64)
    for i0 in range(0, n_q, block_q):
        q_i = q[:, :, i0:i0 + block_q]
        rows = torch.arange(i0, i0 + q_i.shape[2])
        m_i = torch.full(q_i.shape[:3], -math.inf, dtype=torch.float64)
        l_i = torch.zeros(q_i.shape[:3], dtype=torch.float64)
        acc = torch.zeros(q_i.shape, dtype=torch.float64)
        j_end = min(i0 + q_i.shape[2], n_kv) if causal else n_kv
        if causal and mistake == "diagonal tile skipped":
            j_end = i0
        for j0 in range(0, j_end, block_k):
            s = _scores(q_i, k[:, :, j0:j0 + block_k], scale, mistake)
            if causal:
                s = _mask(s, rows, torch.arange(j0, j0 + s.shape[-1]), mistake)
            m_new = torch.maximum(m_i, s.amax(-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m_i - m_new)
            l_i = (1.0 if mistake in ("l not rescaled", "nothing rescaled") else alpha) * l_i + p.sum(-1)
            a = 1.0 if mistake in ("acc not rescaled", "nothing rescaled") else alpha[..., None]
            acc = a * acc + p @ v[:, :, j0:j0 + block_k].double()
            m_i = m_new
        o[:, :, i0:i0 + block_q] = acc if mistake == "not divided" else acc / l_i[..., None]
        lse[:, :, i0:i0 + block_q] = torch.log(l_i) if mistake == "lse without max" else \
            m_i + torch.log(l_i)
    return o.to(q.dtype), lse.to(torch.float64 if q.dtype == torch.float64 else torch.float32)


CATALOGUE = [
    ("naive_attention", _naive_variant, "k not transposed", "transpose k's last two dims"),
    ("naive_attention", _naive_variant, "no scale", "scaled by 1/sqrt(D)"),
    ("naive_attention", _naive_variant, "scale 1/D", "scaled by 1/D where the default is 1/sqrt(D)"),
    ("naive_attention", _naive_variant, "scale ignored", "use the `scale` argument"),
    ("naive_attention", _naive_variant, "diagonal masked", "query i must see key i itself"),
    ("naive_attention", _naive_variant, "one key too many", "must not see key i + 1"),
    ("naive_attention", _naive_variant, "mask flipped", "causal mask flipped"),
    ("naive_attention", _naive_variant, "softmax over queries", "softmax over the keys"),
    ("tiled_attention", _tiled_variant, "k not transposed", "transpose k's last two dims"),
    ("tiled_attention", _tiled_variant, "no scale", "scaled by 1/sqrt(D)"),
    ("tiled_attention", _tiled_variant, "scale 1/D", "scaled by 1/D where the default is 1/sqrt(D)"),
    ("tiled_attention", _tiled_variant, "scale ignored", "use the `scale` argument"),
    ("tiled_attention", _tiled_variant, "softmax per tile", "not over each key tile"),
    ("tiled_attention", _tiled_variant, "tail dropped", "last, partial key tile"),
    ("flash_attention_forward", _flash_variant, "acc not rescaled", "acc not rescaled"),
    ("flash_attention_forward", _flash_variant, "l not rescaled", "l_i not rescaled"),
    ("flash_attention_forward", _flash_variant, "nothing rescaled", "neither acc nor l_i"),
    ("flash_attention_forward", _flash_variant, "not divided", "o = acc / l_i"),
    ("flash_attention_forward", _flash_variant, "lse without max", "add m_i back"),
    ("flash_attention_forward", _flash_variant, "diagonal tile skipped", "the key tile on the query tile's diagonal"),
    ("flash_attention_forward", _flash_variant, "k not transposed", "transpose k's last two dims"),
    ("flash_attention_forward", _flash_variant, "no scale", "scaled by 1/sqrt(D)"),
    ("flash_attention_forward", _flash_variant, "scale 1/D", "scaled by 1/D where the default is 1/sqrt(D)"),
    ("flash_attention_forward", _flash_variant, "scale ignored", "use the `scale` argument"),
    ("flash_attention_forward", _flash_variant, "diagonal masked", "query i must see key i itself"),
    ("flash_attention_forward", _flash_variant, "one key too many", "must not see key i + 1"),
    ("flash_attention_forward", _flash_variant, "mask flipped", "causal mask flipped"),
]


@pytest.mark.parametrize("name, variant, mistake, hint", CATALOGUE, ids=[f"{c[0]}: {c[2]}" for c in CATALOGUE])
def test_old_catalogue_is_named(name, variant, mistake, hint):
    assert_rejected_with_hint(getattr(check, name), lambda *a, **kw: variant(*a, mistake=mistake, **kw), hint)


def test_input_builders_for_the_backward_checkers_stay_public():
    from labkit.check.attention import qkv, rising
    q, k, v = qkv(2, 1, 5, 7, 8, seed=0)
    assert (q.shape, k.shape, v.shape) == ((2, 1, 5, 8), (2, 1, 7, 8), (2, 1, 7, 8)) and q.dtype == torch.float32
    q, k, v = rising(16, 8, seed=1)
    assert q.shape == k.shape == v.shape == (1, 2, 16, 8)
