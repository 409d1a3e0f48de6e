"""The assertion every mutant test makes: the checker rejects a wrong answer and its hint names the mistake."""
import pytest


def assert_rejected_with_hint(checker, fn, hint: str) -> None:
    """checker(fn) must fail, and the text after its last "hint:" must contain ``hint``."""
    with pytest.raises(AssertionError, match="hint:") as err:
        checker(fn)
    assert hint in str(err.value).split("hint:")[-1], str(err.value)
