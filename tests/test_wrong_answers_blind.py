"""Independent sets of wrong answers: tests/wrong_answers_blind_a.py and _b.py (210 over the 27 exercises of stop 26)
and _c.py and _d.py (124 over all 31, stop 27), each written by a helper who had read neither labkit/check nor
tests/, from the notebooks and labkit's reference code; each is shown to differ from labkit on an input of its
own (tests/verify_blind_*.py).

It was first run after the checkers learnt to name only what their evidence isolates (labkit.check.evidence),
and nothing was tuned on it before that measurement (tests/hints_first_contact.md). Here every wrong answer is
rejected, and its hint, as read by a judge who had not read the checkers (tests/hint_judgements.json), is not
misleading; a hint nobody has read fails too, so that a changed hint is read before it lands."""
from __future__ import annotations

import contextlib
import io

import pytest

import labkit  # noqa: F401  (the Triton interpreter without CUDA)
import verify_blind_a
import verify_blind_b
import verify_blind_c
import verify_blind_d
import wrong_answers_blind_a
import wrong_answers_blind_b
import wrong_answers_blind_c
import wrong_answers_blind_d
from hint_verdicts import UNREAD, hint_of, verdict

WRONG = [(f"{tag}{i}", w) for tag, module in (("a", wrong_answers_blind_a), ("b", wrong_answers_blind_b),
                                              ("c", wrong_answers_blind_c), ("d", wrong_answers_blind_d))
         for i, w in enumerate(module.WRONG)]


@pytest.mark.parametrize("i, wrong", WRONG, ids=[i for i, _ in WRONG])
def test_a_blind_wrong_answer_is_rejected_and_its_hint_is_not_misleading(i, wrong, record_property):
    hint = hint_of(wrong.exercise, wrong.fn)
    assert hint, f"accepted: {wrong.exercise}: {wrong.mistake}"
    said = verdict(wrong.exercise, wrong.mistake, hint)
    record_property("hint_verdict", ("blind set" if i[0] in "ab" else "blind set of stop 27", said or "unread"))
    assert said is not None, f"{UNREAD}\n  {wrong.exercise}: {wrong.mistake}\n  hint: {hint}"
    assert said != "misleading", f"the hint names another mistake: {hint}\n  the mistake: {wrong.mistake}"


@pytest.mark.parametrize("verify", [verify_blind_a.main, lambda: verify_blind_b.main([]), verify_blind_c.main,
                                    verify_blind_d.main], ids=["a", "b", "c", "d"])
def test_every_blind_wrong_answer_differs_from_labkit_on_its_witness(verify):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert verify() == 0, out.getvalue()[-3000:]
