"""Grades in a gradebook's format: Gradescope's autograder ``results.json`` and a CSV that Canvas's
gradebook import accepts.

Gradescope (https://gradescope-autograders.readthedocs.io/en/latest/specs/): one object with the
submission's ``score``, and one test per exercise (``name``, ``number``, ``score``, ``max_score``,
``status`` passed/failed, ``output``: the hint, ``visibility``). Canvas (Gradebook, Import): a
header ``Student, ID, SIS User ID, SIS Login ID, Section`` then one column per notebook, a
"Points Possible" row, then one row per student; the student is the first folder of a
submission's path, matched against a roster exported from the course's Gradebook when one is
given. Everything a student controls goes through ``verdict.clean``/``csv_cell``. Introduced for
``python -m labkit grade``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from labkit.grading.verdict import ExerciseResult, Status, clean, csv_cell

CANVAS_ID_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
VISIBILITY = "visible"  # Gradescope: shown to the student as soon as the autograder finishes


def test_name(r: ExerciseResult) -> str:
    return f"Exercise {clean(r.label)} ({clean(r.name)})" if r.label else clean(r.name)


def gradescope(graded: dict[str, list[ExerciseResult]], errors: dict[str, str]) -> dict:
    """results.json for one Gradescope submission (one or more notebooks): a point per exercise."""
    tests = []
    for shown in sorted(graded):
        for r in graded[shown]:
            passed = r.status is Status.PASSED
            output = "passed" if passed else f"{r.status.value}" + (f": {clean(r.detail)}" if r.detail else "")
            tests.append({"name": f"{clean(Path(shown).stem)}: {test_name(r)}", "number": clean(r.label) or None,
                          "score": 1.0 if passed else 0.0, "max_score": 1.0,
                          "status": "passed" if passed else "failed", "output": output, "visibility": VISIBILITY})
    for t in tests:
        if t["number"] is None:
            del t["number"]
    lines = [f"{clean(shown)}: could not grade it: {clean(why)}" for shown, why in sorted(errors.items())]
    score = sum(t["score"] for t in tests)
    lines.append(f"{score:g}/{len(tests)} exercises passed")
    return {"score": score, "output": "\n".join(lines), "visibility": VISIBILITY, "stdout_visibility": "hidden",
            "tests": tests}


def student_of(shown: str) -> str:
    """The student a submission belongs to: its first folder ('alice' for 'alice/02_x.ipynb')."""
    parts = Path(shown).parts
    return parts[0] if len(parts) > 1 else Path(shown).stem


def read_roster(path: str | Path) -> dict[str, dict[str, str]]:
    """A Canvas Gradebook export (or any CSV with its identity columns): each student keyed by
    SIS Login ID, ID and SIS User ID (the folder names the class's submissions may use)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in CANVAS_ID_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: not a Canvas roster (missing columns: {', '.join(missing) or 'every row'})")
    roster = {}
    for row in rows:
        if row.get("Student", "").strip() in ("Points Possible", "Test Student") or not row.get("ID"):
            continue
        for key in ("SIS Login ID", "ID", "SIS User ID"):
            if row.get(key):
                roster.setdefault(row[key].strip(), {c: row.get(c, "") for c in CANVAS_ID_COLUMNS})
    return roster


def written_points(marks: list[dict]) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """From a filled-in written_scores.csv (``written.read_scores``): points per (student,
    notebook) and what the questions of each notebook are worth."""
    extra: dict[tuple[str, str], float] = {}
    for m in marks:
        key = (student_of(m["notebook"]), Path(m["notebook"]).stem)
        extra[key] = extra.get(key, 0) + m["points"]
    possible: dict[str, float] = {}
    for (nb, _), most in {(Path(m["notebook"]).stem, m["question"]): m["max"] for m in marks}.items():
        possible[nb] = possible.get(nb, 0) + most
    return extra, possible


def canvas(graded: dict[str, list[ExerciseResult]], errors: dict[str, str], path: str | Path,
           roster: dict[str, dict[str, str]] | None = None, extra: dict[tuple[str, str], float] | None = None,
           extra_possible: dict[str, float] | None = None) -> list[str]:
    """Write the Canvas gradebook import CSV at ``path``: a column per notebook, worth a point per
    exercise (plus written answers' points in ``extra``, keyed by (student, notebook)). Returns the
    students the roster does not know."""
    possible = {Path(s).stem: len(rs) for s, rs in graded.items()}
    for shown in errors:
        possible.setdefault(Path(shown).stem, 0)
    for nb, pts in (extra_possible or {}).items():
        possible[nb] = possible.get(nb, 0) + pts
    scores: dict[str, dict[str, float]] = {}
    for shown, results in graded.items():
        scores.setdefault(student_of(shown), {})[Path(shown).stem] = sum(r.status is Status.PASSED for r in results)
    for shown in errors:
        scores.setdefault(student_of(shown), {}).setdefault(Path(shown).stem, 0)
    for (student, nb), pts in (extra or {}).items():
        scores.setdefault(student, {})
        scores[student][nb] = scores[student].get(nb, 0) + pts
    columns = sorted(possible)
    unknown = []
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CANVAS_ID_COLUMNS + columns)
        w.writerow(["Points Possible", "", "", "", ""] + [f"{possible[c]:g}" for c in columns])
        for student in sorted(scores):
            who = (roster or {}).get(student)
            if roster is not None and who is None:
                unknown.append(student)
            who = who or {"Student": student, "ID": "", "SIS User ID": "", "SIS Login ID": student, "Section": ""}
            w.writerow([csv_cell(who[c]) for c in CANVAS_ID_COLUMNS]
                       + [f"{scores[student][c]:g}" if c in scores[student] else "" for c in columns])
    return unknown
