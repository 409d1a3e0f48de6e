"""Check tests/wrong_answers_fresh.py against labkit's references, without the checkers.

Every wrong answer must differ from the reference on its witness input (WITNESS[i] returns a
description of the difference), and every right variant must agree with the reference on all
the witness inputs of its exercise.

    PYTHONPATH=.:tests python tests/verify_fresh.py
"""
from __future__ import annotations

import sys
import warnings


def main() -> int:
    warnings.simplefilter("ignore")
    import wrong_answers_fresh as fresh

    failures = 0
    by_exercise = {}
    for i, (wa, witness) in enumerate(zip(fresh.WRONG, fresh.WITNESS)):
        by_exercise.setdefault(wa.exercise, []).append((wa.mistake, witness))
        try:
            why = witness(wa.fn) if witness else None
        except Exception as err:  # noqa: BLE001
            why, failures = None, failures + 1
            print(f"WITNESS ERROR {i} {wa.exercise}: {wa.mistake}: {type(err).__name__}: {err}")
            continue
        if not why:
            failures += 1
        print(f"{'ok ' if why else 'NOT WRONG'} {i:3} {wa.exercise:32} {wa.mistake[:70]}\n      -> {why}")
    for j, (exercise, fn) in enumerate(fresh.RIGHT):
        bad = [(m, w(fn)) for m, w in by_exercise[exercise]]
        bad = [(m, why) for m, why in bad if why]
        failures += bool(bad)
        print(f"{'ok ' if not bad else 'RIGHT DIFFERS'} right {j:2} {exercise}"
              + "".join(f"\n      [{m[:50]}] -> {why}" for m, why in bad))
    print(f"\n{len(fresh.WRONG)} wrong answers, {len(fresh.RIGHT)} right variants, {failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
