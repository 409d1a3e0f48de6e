"""Rates of the checkers' hints on the independent sets of wrong answers, as read (tests/hint_judgements.json).

    PYTHONPATH=.:tests .venv/bin/python tests/measure_hints.py [--show misleading,unread]

For each set (the fresh one, tests/wrong_answers_fresh.py, the blind ones, tests/wrong_answers_blind_*.py, and
notebook 10's, tests/wrong_answers_decoding.py)
every wrong answer goes through its notebook's check call, in this process, and its hint is looked up:
rejected, names, generic, misleading, unread (a hint nobody has judged yet). The memory-fault set runs a
process per case instead: tests/memory_faults/run.py. First-contact figures: tests/hints_first_contact.md.
"""
from __future__ import annotations

import argparse
import collections

import labkit  # noqa: F401
import wrong_answers_blind_a
import wrong_answers_blind_b
import wrong_answers_blind_c
import wrong_answers_blind_d
import wrong_answers_decoding
import wrong_answers_fresh
from hint_verdicts import hint_of, verdict

SETS = {"fresh": wrong_answers_fresh.WRONG, "blind": wrong_answers_blind_a.WRONG + wrong_answers_blind_b.WRONG,
        "blind, stop 27": wrong_answers_blind_c.WRONG + wrong_answers_blind_d.WRONG,
        "notebook 10": wrong_answers_decoding.WRONG}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", default="misleading,unread", help="verdicts to list one by one")
    show = set(ap.parse_args().show.split(","))
    for name, wrong in SETS.items():
        counts: collections.Counter = collections.Counter()
        for w in wrong:
            if w.mistake.startswith("UNSAFE"):  # may crash the interpreter: tests/measure_fresh.py, a process each
                continue
            hint = hint_of(w.exercise, w.fn)
            said = "accepted" if not hint else verdict(w.exercise, w.mistake, hint) or "unread"
            counts[said] += 1
            if said in show:
                print(f"  {said}: {w.exercise}: {w.mistake}\n      hint: {hint}")
        total = sum(counts.values())
        print(f"{name}: {total} wrong answers, {total - counts['accepted']} rejected; " +
              ", ".join(f"{counts[k]} {k}" for k in ("names", "generic", "misleading", "unread", "accepted")))


if __name__ == "__main__":
    main()
