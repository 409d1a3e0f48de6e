"""A wrong answer to a course exercise, written independently of its checker, and the words its hint must use."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class WrongAnswer:
    """``fn`` is a student's wrong version of exercise ``exercise`` (the checker's name).

    ``mistake`` says what is wrong in a student's words; the checker's hint must match at least
    one of the regular expressions in ``names`` (case-insensitive): that is what "the hint names
    the mistake" means in the tests.
    """

    exercise: str
    mistake: str
    names: tuple[str, ...]
    fn: Callable

    def named_by(self, hint: str) -> bool:
        return any(re.search(p, hint, re.I) for p in self.names)

    def __repr__(self) -> str:  # pytest ids
        return f"{self.exercise}: {self.mistake}"
