"""Mutants of every exercise's solution (tests/mutation.py) are rejected by its checker, with a hint a reader did not
find misleading.

The full run (``python tests/mutation.py --all``: 751 mutants of the 27 exercises, Triton kernels included, about
2 min) and its rates are in tests/mutation_first_contact.md and tests/mutation_hints.md. ``make test`` runs every
fifth of them, in source order, and prints the rates. An accepted mutant must be listed below with the reason it
is not a wrong answer: equivalent to the solution, or allowed by the exercise's spec. A rejected mutant's hint must
have been read (tests/mutant_judgements.json, by judges who had not read the checkers) and not found misleading.
"""
import json
from pathlib import Path

import pytest

import mutation
from hint_verdicts import UNREAD

READ = {(j["exercise"], j["changed"], j["hint"]): j["verdict"]
        for j in json.loads(Path(__file__).with_name("mutant_judgements.json").read_text("utf-8"))}

# (checker, the mutated line): why the checker is right to accept it.
EQUIVALENT = {
    ("combine_partials", "return (o, M[..., -1] + torch.log(total))"): "M keeps its reduced axis of size 1: index -1 is 0",
    ("paged_attention", "pages = block_table[:, pos // P].long().clamp(min=-1)"):
        "-1 marks pages past a sequence's length, whose positions are masked: the page read there never counts",
    ("naive_softmax", "e = torch.exp(x.to(torch.promote_types(torch.float32, x.dtype)))"): "promote_types is symmetric",
    ("safe_softmax", "xc = x.to(torch.promote_types(torch.float32, x.dtype))"): "promote_types is symmetric",
    ("logsumexp", "xc = x.to(torch.promote_types(torch.float32, x.dtype))"): "promote_types is symmetric",
    ("online_softmax", "xt = x.to(torch.promote_types(torch.float32, x.dtype)).movedim(dim, -1)"):
        "promote_types is symmetric",
    ("tiled_attention", "q, k, v = (x.to(torch.promote_types(torch.float32, x.dtype)) for x in (q, k, v))"):
        "promote_types is symmetric",
    ("merge_states", "m = torch.maximum(b.m, a.m)"): "maximum is symmetric",
    ("online_softmax", "m_new = torch.maximum(block.amax(dim=-1), m_i)"): "maximum is symmetric",
    ("flash_attention_forward", "m_new = torch.maximum(s.amax(dim=-1), m_i)"): "maximum is symmetric",
    ("naive_attention", "s = q @ k.transpose(-1, -2) * scale"): "transpose(-1, -2) is transpose(-2, -1)",
    ("tiled_attention", "s_i[..., j0:j0 + block_k] = q_i @ k_j.transpose(-1, -2) * scale"):
        "transpose(-1, -2) is transpose(-2, -1)",
    ("flash_attention_forward", "s = q_i @ k_j.transpose(-1, -2) * scale"): "transpose(-1, -2) is transpose(-2, -1)",
    ("flash_attention_backward", "dp = do_i @ v_j.transpose(-1, -2)"): "transpose(-1, -2) is transpose(-2, -1)",
    ("online_softmax", "m_i = torch.full(xt.shape[:-1 + 1], -math.inf, dtype=xt.dtype, device=xt.device)"):
        "a 0-d running state broadcasts to the rows at the first update",
    ("online_softmax", "m_i = torch.full(xt.shape[:-0], -math.inf, dtype=xt.dtype, device=xt.device)"):
        "a 0-d running state broadcasts to the rows at the first update",
    ("online_softmax", "l_i = torch.zeros(xt.shape[:-1 + 1], dtype=xt.dtype, device=xt.device)"):
        "a 0-d running state broadcasts to the rows at the first update",
    ("online_softmax", "l_i = torch.zeros(xt.shape[:-0], dtype=xt.dtype, device=xt.device)"):
        "a 0-d running state broadcasts to the rows at the first update",
    ("red_black_sweep", "for mask in poisson.red_black_masks(f.shape[1]):"): "the grid is square (m x m) by the spec",
    ("red_black_sweep", "for mask in poisson.red_black_masks(f.shape[-1]):"): "the grid is square (m x m) by the spec",
    ("gauss_seidel", "for k in range(maxiter + 2):"): "the loop leaves at k == maxiter either way",
    ("gauss_seidel", "if not r < 1000000000000.0 * r0:"): "differs only when ||r|| is exactly 1e12 ||r_0||",
    ("gauss_seidel", "return (x, max(k, 0))"): "k = 0 cannot blow up: r_0 is the first residual itself",
    ("gauss_seidel", "maxiter = max(5000, 10 / len(b)) if maxiter is None else maxiter"):
        "the same 5000 for n <= 500; telling them apart needs n > 500 and over 5000 sweeps (minutes)",
    # the Triton kernels
    ("softmax_triton", "y = e / tl.sum(e, axis=-1)"): "a row is a 1-D block: axis -1 is axis 0",
    ("softmax_triton", "e = tl.exp(x - tl.max(x, axis=-1))"): "a row is a 1-D block: axis -1 is axis 0",
    ("online_softmax_triton", "m_new = tl.maximum(m_i, tl.max(x, axis=-1))"): "a row is a 1-D block: axis -1 is axis 0",
    ("online_softmax_triton", "l_i = l_i * tl.exp(m_i - base) + tl.sum(tl.exp(x - base), axis=-1)"):
        "a row is a 1-D block: axis -1 is axis 0",
    ("online_softmax_triton", "m_new = tl.maximum(tl.max(x, axis=0), m_i)"): "maximum is symmetric",
    ("online_softmax_triton",
     "x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=0.0).to(tl.float32)"):
        "the second loop's padded lanes are never stored (the store is masked), whatever they hold",
    ("flash_attention_forward_triton", "m_new = tl.maximum(tl.max(s, 1), m_i)"): "maximum is symmetric",
    ("flash_attention_backward_triton", "keep = (offs_m[:, None] <= n_q) & (offs_n[None, :] < n_kv)"):
        "the extra query row n_q is loaded as zeros (q = dO = 0, masked loads): it adds 0 to dK and dV",
    ("flash_attention_backward_triton", "keep = (offs_m[:, None] < n_q) & (offs_n[None, :] <= n_kv)"):
        "the extra key n_kv is loaded as zeros (k = v = 0): it adds 0 to dQ, and its dK, dV rows are not stored",
    ("flash_decode_triton", "m_new = tl.maximum(tl.max(s, 0), m_i)"): "maximum is symmetric",
    ("flash_decode_triton", "m_new = tl.maximum(m_i, tl.max(s, -1))"): "the scores of one query are 1-D: axis -1 is 0",
    ("flash_decode_triton", "l_i = l_i * alpha + tl.sum(p, -1)"): "the scores of one query are 1-D: axis -1 is 0",
}
# Accepted because the spec allows it: float16 inputs may be computed in float16 or float32 (issue 20, item 6, settled).
ALLOWED_BY_SPEC = {
    (name, line): "the spec says 'compute in float32 if you like': float16 arithmetic is allowed"
    for name, line in [
        ("safe_softmax", "xc = x.to(torch.promote_types(x.dtype, torch.float16))"),
        ("logsumexp", "xc = x.to(torch.promote_types(x.dtype, torch.float16))"),
        ("online_softmax", "xt = x.to(torch.promote_types(x.dtype, torch.float16)).movedim(dim, -1)"),
        ("tiled_attention", "q, k, v = (x.to(torch.promote_types(x.dtype, torch.float16)) for x in (q, k, v))"),
    ]
}
EXCUSED = {**EQUIVALENT, **ALLOWED_BY_SPEC}

EXERCISES = mutation.exercises()
MUTANTS = {e.name: mutation.mutants(e) for e in EXERCISES}


def test_the_mutator_reaches_every_exercise_and_the_excused_mutants_still_exist():
    assert len(EXERCISES) == 31 and sum(map(len, MUTANTS.values())) >= 700  # 27, and notebook 10's four
    lines = {(m.exercise.name, m.changed) for ms in MUTANTS.values() for m in ms}
    assert set(EXCUSED) <= lines, sorted(set(EXCUSED) - lines)  # a changed solution: triage again


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_a_sample_of_each_exercises_mutants_is_rejected_and_not_misled(exercise, record_property):
    if exercise.triton:
        from labkit import device
        if not device.HAS_TRITON:
            pytest.skip(device.TRITON_MISSING)
    verdicts = [mutation.run(m, f"{exercise.name}_{i}", seeds=()) for i, m in enumerate(MUTANTS[exercise.name][::5])]
    read = [READ.get((v.mutant.exercise.name, v.mutant.changed, v.hint)) if v.status == "rejected" else None
            for v in verdicts]
    record_property("mutation", [(v.status, (v.mutant.exercise.name, v.mutant.changed) in EXCUSED, said)
                                 for v, said in zip(verdicts, read)])
    let_through = [f"{v.mutant.operator}: `{v.mutant.changed}`" for v in verdicts
                   if v.status == "accepted" and (exercise.name, v.mutant.changed) not in EXCUSED]
    assert not let_through, f"{exercise.name} accepted mutants that change what it computes: {let_through}"
    misled = [f"`{v.mutant.changed}`: {v.hint}" for v, said in zip(verdicts, read) if said == "misleading"]
    assert not misled, f"{exercise.name}: hints judged misleading: {misled}"
    unread = [f"`{v.mutant.changed}`: {v.hint}" for v, said in zip(verdicts, read)
              if v.status == "rejected" and said is None]
    assert not unread, f"{exercise.name}: {UNREAD} (here tests/mutant_judgements.json, keyed by the changed line): {unread}"
