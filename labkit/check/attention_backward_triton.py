"""Checker for notebook 07's Exercise 7.2: the loop of the Triton dK/dV kernel, judged through its host wrapper.

The student writes only the body of the dK/dV kernel's loop over query tiles; the preprocess (D), the
dQ kernel and the wrapper fn(do, q, k, v, o, lse, causal=False, scale=None) -> (dq, dk, dv) are given.
So dk and dv are the student's and dq is not: a wrong dq is reported as a change to the given code,
and every probe looks at dk and dv only, in the scaffold's conventions (natural exp, lse in natural
log, float32; the scale applied to dk once, after the loop).
"""
from __future__ import annotations

from functools import partial

import torch

from labkit.check.attention import qkv
from labkit.check.attention_backward import compare_grads, reference
from labkit.check.attention_backward_probes import backward_args, p_probes, probe_args
from labkit.check.kernel_runs import on_course_device
from labkit.check.core import Case, Checker, Probe, agrees, checker
from labkit.check.tolerance import assert_close


def _triton_args(B, H, n_q, n_kv, D, *, seed, causal=False, scale=None, dtype=torch.float32):
    """(do, q, k, v, o, lse): o in the input dtype, lse float32 natural log, as the Triton forward returns them."""
    return backward_args(*qkv(B, H, n_q, n_kv, D, seed=seed, dtype=dtype), causal, scale, seed=seed)


def _only_dq_wrong(out, probe) -> str:
    """dq wrong while dk and dv are right: the given dQ kernel or wrapper was changed."""
    expected = reference(*probe.args, **probe.kwargs)
    dq = out.value[0]
    right = [agrees(g, e, partial(assert_close, dtype=torch.float32)) for g, e in zip(out.value, expected.grads)]
    if right == [False, True, True]:
        return f"dk and dv are right, dq is off by up to {(dq.double() - expected.grads[0]).abs().max():.3g}"
    return ""


GIVEN_DQ = ("dk and dv are right but dq is not, and dq comes from the given code (the dQ kernel and the "
            "wrapper), not from your loop: re-run the exercise cell with the given parts as they were")


@checker
def flash_attention_backward_triton() -> Checker:
    """fn(do, q, k, v, o, lse, causal=False, scale=None) -> (dq, dk, dv) with the student's dK/dV loop (notebook 07, 7.2).

    dk and dv have k's and v's shape and dtype; dq (from the given kernel) is right too.
    dV = Pᵀ dO with P = exp(S − lse) rebuilt from the saved lse (natural log), S = scale · Q Kᵀ.
    dK = scale · dSᵀ Q with dS = P ∘ (dP − D), dP = dO Vᵀ, D = rowsum(dO ∘ O) per query.
    dK and dV accumulate over all query tiles, the last partial one included; padded rows masked.
    causal: P = 0 for the keys j > i in the tiles on the diagonal.
    N_q ≠ N_kv both ways; N = 1; a given scale; float16 inputs.
    """
    ragged = "N is not a multiple of the block: mask the loads past N (other=0) and keep P = 0 outside `keep`"
    causal = "causal: P = 0 for the keys j > i (keep = offs_n[None, :] <= offs_m[:, None])"
    cases = [
        Case("B=1, H=2, N=13, D=16 (one tile)", _triton_args(1, 2, 13, 13, 16, seed=71),
             hint="dV = Pᵀ dO and dK = scale · dSᵀ Q with P = exp(S − lse), dS = P ∘ (dP − D)"),
        Case("causal, B=1, H=2, N=13, D=16 (one tile, on the diagonal)",
             _triton_args(1, 2, 13, 13, 16, seed=72, causal=True), {"causal": True}, hint=causal),
        Case("one query and one key: N=1, D=16", _triton_args(1, 1, 1, 1, 16, seed=73),
             hint="with one key P = 1, so dS = 0: dK = 0 and dV = dO"),
        Case("B=2, H=1, N=40, D=32 (two query tiles, the last partial)", _triton_args(2, 1, 40, 40, 32, seed=74),
             hint=ragged + "; dk and dv add up (+=) every query tile"),
        Case("cross-attention: N_q=17, N_kv=40, D=16", _triton_args(1, 2, 17, 40, 16, seed=75), hint=ragged),
        Case("cross-attention: N_q=40, N_kv=17, D=16", _triton_args(1, 1, 40, 17, 16, seed=76), hint=ragged),
        Case("causal, B=2, H=1, N=40, D=16 (tiles on and below the diagonal)",
             _triton_args(2, 1, 40, 40, 16, seed=77, causal=True), {"causal": True}, hint=causal),
        Case("causal, N=17, D=16, scale=0.5", _triton_args(1, 2, 17, 17, 16, seed=78, causal=True, scale=0.5),
             {"causal": True, "scale": 0.5}, hint="S = scale · Q Kᵀ with the `scale` the wrapper passes"),
        Case("float16, causal, N=40, D=16", _triton_args(1, 2, 40, 40, 16, seed=79, causal=True,
                                                         dtype=torch.float16), {"causal": True},
             hint="float16 inputs: cast p and ds to q.dtype before tl.dot; accumulate in float32"),
    ]
    probes = [Probe("causal, N=20: dq from the given code", probe_args(20, 20, seed=90, causal=True),
                    {"causal": True}, GIVEN_DQ, _only_dq_wrong)]
    probes += p_probes({}, (16, 32, 64), n_kv=40, n_q_acc=40, student_dq=False)
    return Checker("flash_attention_backward_triton", cases, reference, probes,
                   compare=partial(compare_grads, order=(1, 2, 0), given=(0,)), prepare=on_course_device)
