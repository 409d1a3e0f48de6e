"""What readers said of the checkers' hints (tests/hint_judgements.json): "names" (the hint names the mistake, or
lists it among its candidates), "generic" (a true rule or observation that singles out no cause) or "misleading"
(it names another mistake). Each (exercise, mistake, hint) was read by a judge who had not read labkit/check or
the tests, given only the mistake in its author's words and the hint (issue 20)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

PATH = Path(__file__).with_name("hint_judgements.json")
JUDGEMENTS = {f"{j['exercise']} | {j['mistake']} | {j['hint']}": j for j in json.loads(PATH.read_text("utf-8"))}
UNREAD = ("this hint has not been read yet: have a reader who has not seen the checkers judge it, and add "
          "(exercise, mistake, hint, verdict, note) to tests/hint_judgements.json")


def verdict(exercise: str, mistake: str, hint: str) -> str | None:
    """The reader's verdict on this hint for this mistake, or None when nobody has read it."""
    judged = JUDGEMENTS.get(f"{exercise} | {mistake} | {hint}")
    return judged["verdict"] if judged else None


def hint_of(exercise: str, fn) -> str:
    """The hint check.<exercise> gives fn ('' when it passes), its pass line swallowed."""
    from labkit import check
    from labkit.check.core import CheckFailed
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            getattr(check, exercise)(fn)
    except CheckFailed as err:
        return err.hint or "(no hint)"
    return ""
