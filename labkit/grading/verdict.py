"""Verdicts as types, and the one place where text a student controls is made safe to show.

Every report line and CSV cell passes through :func:`clean` (no control characters, no ANSI
escape sequences, no line breaks: a student's exception message cannot forge a "passed" line)
and every CSV cell through :func:`csv_cell` (a cell that a spreadsheet would read as a formula is
quoted as text). Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from enum import Enum


class Status(str, Enum):
    """What an exercise's grade is; the value is what the CSV and the report say."""
    PASSED = "passed"
    FAILED = "failed"
    NOT_ATTEMPTED = "not attempted"

    def __str__(self) -> str:
        return self.value


@dataclass
class ExerciseResult:
    """One exercise's verdict. ``name`` is the checker (``check.<name>(...)``).

    The structured fields say why, so nothing downstream reads it from the message:
    ``raised`` is what the student's function raised, ``timed_out`` that it ran past its limit,
    ``limit`` the submission's budget it hit ("memory (2 GiB)"), ``reused`` the function it
    calls but must re-implement, ``graded`` False when it could not be evaluated at all.
    """
    name: str
    label: str  # "1.2" ("" when the notebook does not say)
    status: Status
    detail: str = ""  # the hint or the reason, one line
    raised: str = ""
    timed_out: bool = False
    limit: str = ""
    reused: str = ""
    graded: bool = True

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_dict(cls, d: dict) -> "ExerciseResult":
        return cls(**{**d, "status": Status(d["status"])})


# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and any other two-character ESC sequence
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")
_FORMULA = ("=", "+", "-", "@")


_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def clean(text: object, width: int = 1000) -> str:
    """``text`` on one line: ANSI sequences removed, each line break shown as ' ↵ ' (so a student's
    message cannot start a line of its own, nor pass for one), every other control or format
    character (bidirectional overrides included) removed, runs of spaces collapsed."""
    text = _ANSI.sub("", str(text))
    text = "".join(" ↵ " if ch in _BREAKS else "" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
                   and ch != "\t" else ch for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def first_line(text: object) -> str:
    """What comes before the first line break of any kind (a carriage return too): all a report
    shows of a message a student wrote, so that what follows a break cannot pose as a line."""
    return re.split(f"[{_BREAKS}]", str(text), maxsplit=1)[0]


def clean_name(text: object, width: int = 300) -> str:
    """A file name on one line, with every control or format character shown as an escape (``\\n``,
    ``\\x1b``, ``\\u202e``) rather than made a space: a name cannot pass for a report line."""
    escapes = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for ch in str(text):
        if ch in escapes:
            out.append(escapes[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    text = "".join(out)
    return text if len(text) <= width else text[:width - 3] + "..."


def csv_cell(text: object) -> str:
    """A cleaned CSV cell; one a spreadsheet would run as a formula (= + - @) is quoted as text."""
    text = clean(text)
    return "'" + text if text.startswith(_FORMULA) else text
