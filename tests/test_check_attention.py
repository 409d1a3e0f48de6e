"""labkit.check's attention checkers: labkit passes, every wrong implementation is named by its hint.

The wrong implementations here are written the way a student would, independently of the
checker's own mutants.
"""
import math

import pytest
import torch

import labkit  # noqa: F401
from labkit import attention, check

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
    with pytest.raises(AssertionError) as err:
        check.naive_attention(fn)
    assert hint in str(err.value).split("hint:")[-1], str(err.value)


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
    with pytest.raises(AssertionError) as err:
        check.tiled_attention(fn)
    assert hint in str(err.value).split("hint:")[-1], str(err.value)


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
    with pytest.raises(AssertionError) as err:
        check.flash_attention_forward(fn)
    assert hint in str(err.value).split("hint:")[-1], str(err.value)


@pytest.mark.parametrize("name", ["naive_attention", "tiled_attention", "flash_attention_forward"])
def test_blank_exercise_reports_not_implemented(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise: fill me in")
    getattr(check, name)(blank)
    assert capsys.readouterr().out.strip() == f"✘ {name}: not implemented yet " \
        "(fill in the exercise above, then re-run this cell)"
