"""Every checker rejects wrong answers written independently of it, with a hint that names the mistake.

The wrong answers (tests/wrong_answers_*.py) were written by people who had not read the checkers:
the mistakes students make, not the ones the checkers were built around.
"""
import pytest

import labkit  # noqa: F401  (turns on the Triton interpreter without CUDA)
from labkit import check
from labkit.check.core import SEED_ENV, CheckFailed

from wrong_answers_attention import WRONG as ATTENTION
from wrong_answers_linsys import WRONG as LINSYS
from wrong_answers_softmax import WRONG as SOFTMAX
from wrong_answers_new import WRONG as NEW
from wrong_answers_structure import WRONG as STRUCTURE
from wrong_answers_decoding import WRONG as DECODING  # notebook 10, written by a helper who had not read its checkers

WRONG = SOFTMAX + ATTENTION + LINSYS + NEW + STRUCTURE + DECODING


def verdict(wrong) -> str:
    """The hint the checker gives for ``wrong`` ('' if it passed it)."""
    try:
        getattr(check, wrong.exercise)(wrong.fn)
    except CheckFailed as err:
        return err.hint
    return ""


def test_every_exercise_has_at_least_four_independent_wrong_answers():
    from labkit.check.core import CHECKERS
    counts = {name: sum(w.exercise == name for w in WRONG) for name in CHECKERS}
    assert all(n >= 4 for n in counts.values()), counts
    assert all(counts[name] >= 5 for name in ("kv_cache_bytes", "combine_partials", "paged_attention",
                                                "flash_decode_triton")), counts  # issue 23: five or more each


@pytest.mark.parametrize("wrong", WRONG, ids=repr)
def test_wrong_answer_is_rejected_with_a_hint_that_names_it(wrong, capsys):
    hint = verdict(wrong)
    printed = capsys.readouterr().out
    assert hint, f"passed as right ({printed.strip()!r}): {wrong.mistake}"
    assert wrong.named_by(hint), f"the hint {hint!r} does not name the mistake: {wrong.mistake}"


@pytest.mark.parametrize("wrong", WRONG, ids=repr)
def test_wrong_answer_is_rejected_and_named_on_the_inputs_of_another_seed(wrong, capsys, monkeypatch):
    """`labkit grade --seed 7` draws other random inputs (a table of answers to the usual ones fails):
    the checkers judge and name the same mistakes on them."""
    monkeypatch.setenv(SEED_ENV, "7")
    hint = verdict(wrong)
    assert hint, f"passed as right under --seed 7: {wrong.mistake}"
    assert wrong.named_by(hint), f"under --seed 7 the hint {hint!r} does not name the mistake: {wrong.mistake}"


def test_every_notebook_10_wrong_answer_differs_from_labkit_on_its_witness(capsys):
    import verify_decoding
    assert verify_decoding.main() == 0, capsys.readouterr().out[-3000:]
