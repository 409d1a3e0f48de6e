"""check.flash_attention_backward (Exercise 7.1, PyTorch tiles): labkit passes, every mistake is named by its hint.

The mutants are a student's backward (query tiles outer, key tiles inner) with one switchable
mistake; the checker's probes must name each by what the function does.
"""
import math
import pickle

import pytest
import torch

import labkit  # noqa: F401
from labkit import attention, attention_backward, check
from labkit.check.attention_backward import flash_attention_backward as checker
from labkit.check.core import evaluate
from hints import assert_rejected_with_hint


def student_backward(d_term="dO*O", scale_dq=1, scale_dk=1, p_from="lse", mask="right", transpose_p=True,
                     overwrite=None, tiles="all", sign=1, key_range="n_kv", given_scale=True):
    """A student's backward in float32 with one switchable mistake (scale_dq/dk: the power of scale)."""
    def fn(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
        B, H, n_q, D = q.shape
        n_kv = k.shape[2] if key_range == "n_kv" else n_q
        sc = 1 / math.sqrt(D) if scale is None or not given_scale else scale
        do32, q32, k32, v32 = do.float(), q.float(), k.float(), v.float()
        Di = (o.float() if d_term == "rowsum O" else do32 * o.float()).sum(-1)
        dq, dk, dv = torch.zeros(B, H, n_q, D), torch.zeros(k.shape), torch.zeros(v.shape)

        def scores(i, tq, j, tk):
            s = q32[:, :, i:i + tq] @ k32[:, :, j:j + tk].transpose(-1, -2) * sc
            r, c = torch.arange(i, i + tq)[:, None], torch.arange(j, j + tk)[None, :]
            hidden = {"right": c > r, "diagonal": c >= r, "local": c - j > r - i}.get(mask)
            return s.masked_fill(hidden, -float("inf")) if causal and hidden is not None else s

        def starts(n, block):
            return range(0, n - block + 1 if tiles == "full only" else n, block)

        for i in starts(n_q, block_q):
            tq = min(block_q, n_q - i)
            doi = do32[:, :, i:i + tq]
            last = i + tq if causal and mask != "none" else n_kv
            if p_from == "row max":  # a pass over the key tiles for the max, as in the forward
                m = torch.full((B, H, tq, 1), -float("inf"))
                for j in range(0, last, block_k):
                    m = torch.maximum(m, scores(i, tq, j, min(block_k, n_kv - j)).amax(-1, keepdim=True))
            for j in starts(min(last, n_kv), block_k):
                tk = min(block_k, n_kv - j)
                s = scores(i, tq, j, tk)
                p = {"lse": lambda: torch.exp(s - lse[:, :, i:i + tq].float().unsqueeze(-1)),
                     "exp2": lambda: torch.exp2(s - lse[:, :, i:i + tq].float().unsqueeze(-1)),
                     "tile max": lambda: torch.exp(s - s.max(dim=-1, keepdim=True).values),
                     "tile softmax": lambda: torch.softmax(s, dim=-1),
                     "row max": lambda: torch.exp(s - m),
                     "none": lambda: torch.exp(s)}[p_from]()
                dvj = p.transpose(-1, -2) @ doi if transpose_p else p @ doi
                dp = doi @ v32[:, :, j:j + tk].transpose(-1, -2)
                d_i = (p * dp).sum(-1, keepdim=True) if d_term == "tile" else \
                    0 if d_term == "none" else Di[:, :, i:i + tq, None]
                ds = sign * p * (dp - d_i)
                dqij = ds @ k32[:, :, j:j + tk] * sc ** scale_dq
                dkj = ds.transpose(-1, -2) @ q32[:, :, i:i + tq] * sc ** scale_dk
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


MUTANTS = [  # (label, the student's function, words its hint must use)
    ("D = rowsum(O), dO forgotten", student_backward(d_term="rowsum O"), "linear in dO"),
    ("D term missing: dS = P*dP", student_backward(d_term="none"), "the D term is missing"),
    ("D from one key tile's rowsum(dP*P)", student_backward(d_term="tile"), "over the whole row"),
    ("dS with the wrong sign", student_backward(sign=-1), "wrong sign"),
    ("scale missing on dQ", student_backward(scale_dq=0), "dQ = scale · dS K"),
    ("scale missing on dK", student_backward(scale_dk=0), "dK = scale · dSᵀ Q"),
    ("scale twice on dK", student_backward(scale_dk=2), "applied exactly once"),
    ("P from each tile's own max", student_backward(p_from="tile max"), "each key tile's own max"),
    ("P from a softmax per key tile", student_backward(p_from="tile softmax"), "softmax over one key tile"),
    ("P from the row max without the log-sum", student_backward(p_from="row max"), "the row max alone"),
    ("P = exp(S), lse ignored", student_backward(p_from="none"), "P = exp(S) is not normalised"),
    ("P = 2^(S - lse)", student_backward(p_from="exp2"), "natural-log units"),
    ("causal mask not applied, all tiles visited", student_backward(mask="none"), "causal mask missing"),
    ("causal tiles skipped but the diagonal not masked", student_backward(mask="skip only"), "causal mask missing"),
    ("causal mask hides the diagonal", student_backward(mask="diagonal"), "off by one"),
    ("causal mask from positions inside the tile", student_backward(mask="local"), "global positions"),
    ("dV = P dO", student_backward(transpose_p=False), "dV = Pᵀ dO"),
    ("dQ overwritten per key tile", student_backward(overwrite="dq"), "dQ_i accumulates"),
    ("dK, dV overwritten per query tile", student_backward(overwrite="dk dv"), "dK_j and dV_j accumulate"),
    ("last, partial tiles dropped", student_backward(tiles="full only"), "the last, shorter tile"),
    ("keys looped up to N_q", student_backward(key_range="n_q"), "N_q ≠ N_kv"),
    ("the given scale ignored", student_backward(given_scale=False), "use the `scale` argument"),
]

PROPERTY_CASES = [  # a mutant that violates one property only, and the case that must catch it
    ("tiles='full only'", student_backward(tiles="full only"), "case 3/8 (N=13, tiles 4 x 4 (last tiles partial))"),
    ("key_range='n_q'", student_backward(key_range="n_q"), "case 4/8 (cross-attention"),
    ("mask='diagonal'", student_backward(mask="diagonal"), "case 5/8 (causal, N=13"),
    ("given_scale=False", student_backward(given_scale=False), "case 6/8 (causal, N=16, tiles 8 x 4, scale=0.5)"),
]


def test_backward_checker_passes_labkit_and_a_right_student(capsys):
    check.flash_attention_backward(attention_backward.flash_attention_backward)
    check.flash_attention_backward(student_backward())
    assert capsys.readouterr().out.strip().splitlines() == ["✔ flash_attention_backward: 8/8 cases passed"] * 2


@pytest.mark.parametrize("label, fn, hint", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_backward_checker_names_the_mistake(label, fn, hint):
    assert_rejected_with_hint(check.flash_attention_backward, fn, hint)


@pytest.mark.parametrize("label, fn, case", PROPERTY_CASES, ids=[m[0] for m in PROPERTY_CASES])
def test_each_property_has_its_own_case(label, fn, case):
    with pytest.raises(AssertionError) as err:
        check.flash_attention_backward(fn)
    assert case in str(err.value).splitlines()[0], str(err.value)


@pytest.mark.parametrize("fn", [attention_backward.flash_attention_backward, student_backward()], ids=["labkit", "student"])
def test_no_probe_fires_on_a_right_answer(fn):
    built = checker.build()
    fired = [(p.label, p.violated(evaluate(fn, p.args, p.kwargs), p)) for p in built.probes]
    assert not [f for f in fired if f[1]], fired


def test_judgement_from_outcomes_as_data_names_the_mistake():
    built = checker.build()
    outcomes = [evaluate(student_backward(d_term="none"), args, kwargs) for args, kwargs in built.inputs()]
    verdict = checker.build().judge(lambda i: pickle.loads(pickle.dumps(outcomes[i])))
    assert verdict.status == "failed" and "the D term is missing" in verdict.hint


def test_backward_checker_rejects_wrong_dtype_and_structure():
    def float32_out(*args, **kwargs):
        return tuple(g.float() for g in attention_backward.flash_attention_backward(*args, **kwargs))
    assert_rejected_with_hint(check.flash_attention_backward, float32_out, "dtype")
    with pytest.raises(AssertionError, match=r"expected a tuple \(dq, dk, dv\)"):
        check.flash_attention_backward(lambda *a, **kw: attention_backward.flash_attention_backward(*a, **kw)[0])


def test_backward_blank_reports_not_implemented(capsys):
    def blank(do, q, k, v, o, lse, causal=False, scale=None, block_q=64, block_k=64):
        raise NotImplementedError("Exercise 7.1: P, dP and dS")
    check.flash_attention_backward(blank)
    assert capsys.readouterr().out.strip() == "✘ flash_attention_backward: not implemented yet " \
        "(fill in the exercise above, then re-run this cell)"
