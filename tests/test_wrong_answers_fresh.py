"""A second independent set of wrong answers (tests/wrong_answers_fresh.py), written by a helper who
had not read the checkers, 199 wrong and 54 unusual right answers over the 27 exercises. Its
first-contact measurement is tests/fresh_first_contact.md (tests/measure_fresh.py runs each in a
fresh process: rejected 187/199, named 155/199, misleading 25/199, one interpreter crash).

Here: every right variant is accepted, and every wrong answer is rejected, except those the checkers accepted on
first contact and that issue 20 has not fixed yet: those are strict xfails, so a fix turns them
into failures until the mark is removed. Each hint must have been read (tests/hint_judgements.json) and not
found misleading. The two answers whose unmasked Triton store can crash the
interpreter run only in tests/measure_fresh.py (a process each). tests/verify_fresh.py shows each
wrong answer wrong, and each right one right, against labkit's reference without the checkers."""
from __future__ import annotations

import pytest

import labkit  # noqa: F401  (the Triton interpreter without CUDA)
from labkit import check
from labkit.check.core import CheckFailed
from hint_verdicts import UNREAD, verdict
from wrong_answers_fresh import RIGHT, WRONG

# accepted on first contact and not caught yet (the last of the ten, gauss_seidel's blow-up, is caught since
# exercise 9.2's spec states labkit's rule and the checker holds info to it: issue 21)
OPEN: dict[str, str] = {}
SAFE = [(i, w) for i, w in enumerate(WRONG) if not w.mistake.startswith("UNSAFE")]


def _accepted_on_first_contact(i: int) -> bool:
    import json
    from pathlib import Path
    results = json.loads((Path(__file__).parent / "fresh_results.json").read_text())
    entry = next(r for r in results["wrong"] if r["index"] == i)
    return entry["outcome"] == "accepted"


def _rejected(fn, exercise) -> str:
    try:
        getattr(check, exercise)(fn)
    except CheckFailed as err:
        return err.hint or "(no hint)"
    return ""


@pytest.mark.parametrize("i, wrong", [
    pytest.param(i, w, marks=pytest.mark.xfail(strict=True, reason=f"open (issue 20): {OPEN[w.exercise]}"))
    if w.exercise in OPEN and _accepted_on_first_contact(i) else (i, w) for i, w in SAFE], ids=lambda x: str(x)[:60])
def test_a_fresh_wrong_answer_is_rejected(i, wrong, capsys, record_property):
    hint = _rejected(wrong.fn, wrong.exercise)
    assert hint, f"accepted: {wrong.exercise}: {wrong.mistake}"
    said = verdict(wrong.exercise, wrong.mistake, hint)  # read by a judge who had not read the checkers
    record_property("hint_verdict", ("fresh set", said or "unread"))
    assert said is not None, f"{UNREAD}\n  {wrong.exercise}: {wrong.mistake}\n  hint: {hint}"
    assert said != "misleading", f"the hint names another mistake: {hint}\n  the mistake: {wrong.mistake}"


@pytest.mark.parametrize("exercise, fn", RIGHT, ids=lambda x: x if isinstance(x, str) else "")
def test_a_fresh_right_variant_is_accepted(exercise, fn, capsys):
    assert not _rejected(fn, exercise), f"a right {exercise} was rejected"

