"""Written answers: pen-and-paper and explain-why questions that a person marks.

In a solved notebook, a question is a markdown cell tagged ``written`` holding the model answer
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; the markdown above it asks the question,
under a heading "Question N.k" (and "(n points)" where it is worth more than one). The blank copy
keeps the cell, emptied, for the student's answer. ``labkit grade`` leaves written answers
ungraded; ``labkit grade --written OUT`` collects them question by question across the class, one
HTML page per question with every student's answer (escaped: a page shows text, never runs it),
and a score sheet ``OUT/written_scores.csv`` for the instructor to fill in. ``grade-merge
--written`` and ``grade --format canvas --written-scores`` add those marks to the grades.
Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import csv
import html
import re
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from labkit.grading.student import WRITTEN_PLACEHOLDER as PLACEHOLDER
from labkit.grading.student import cell_source, solution_regions
from labkit.grading.verdict import clean

TAG = "written"
QUESTION = re.compile(r"^[#>*_ \t]*Question[ \t]+(\d+\.\d+)([^\n]*)", re.M)
POINTS = re.compile(r"(\d+(?:\.\d+)?)[ \t]+points?\b")
SCORES = ["notebook", "question", "student", "points", "max_points", "comment"]


@dataclass
class Question:
    label: str  # "2.1"
    points: float
    prompt: str  # the markdown above the answer cell
    model: str  # the model answer
    cell_id: str
    order: int  # among the notebook's written cells


def tagged(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", []) if isinstance(cell.get("metadata"), dict) else []
    return cell.get("cell_type") == "markdown" and isinstance(tags, list) and TAG in tags


def questions(solved: NotebookNode) -> list[Question]:
    """The written questions of a solved notebook, in order."""
    found = []
    for index, cell in enumerate(solved.cells):
        if not tagged(cell):
            continue
        prompt = cell_source(solved.cells[index - 1]) if index and solved.cells[index - 1].cell_type == "markdown" else ""
        m = QUESTION.search(prompt)
        label = m.group(1) if m else f"W{len(found) + 1}"
        source = cell_source(cell)
        lines = source.split("\n")
        model = "\n".join(line for a, b in solution_regions(source, f"cell {index + 1}") for line in lines[a + 1:b])
        points = POINTS.search(m.group(2)) if m else None
        found.append(Question(label, float(points.group(1)) if points else 1.0, prompt, model.strip(),
                              str(cell.get("id", "")), len(found)))
    return found


def answers(cells: list[dict], asked: list[Question]) -> dict[str, str | None]:
    """{label: the student's answer (None: no answer cell)}: the written cell with the question's
    cell id, else the one in the same place among the notebook's written cells."""
    mine = [c for c in cells if tagged({"cell_type": c["cell_type"], "metadata": {"tags": c["tags"]}})]
    by_id = {c.get("id"): c for c in mine if c.get("id")}
    found = {}
    for q in asked:
        cell = by_id.get(q.cell_id) or (mine[q.order] if q.order < len(mine) else None)
        text = None if cell is None else cell["source"].replace(PLACEHOLDER, "").strip()
        found[q.label] = text
    return found


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
pre{{white-space:pre-wrap;background:#f6f6f6;padding:.75rem;border-radius:4px}}
.answer{{border-top:1px solid #ccc;padding:.5rem 0}} .none{{color:#a00}}</style></head>
<body><h1>{title}</h1><p>{count} answers, {points:g} point{s} each. Marks go in <code>written_scores.csv</code>.</p>
<h2>The question</h2><pre>{prompt}</pre>
<details><summary>Model answer</summary><pre>{model}</pre></details>
<h2>Answers</h2>
{answers}
</body></html>
"""


def write_pages(out: Path, notebook: str, asked: list[Question], collected: dict[str, dict[str, str | None]]) -> list[Path]:
    """One page per question of ``notebook`` with every student's answer; returns the pages."""
    folder = out / Path(notebook).stem
    folder.mkdir(parents=True, exist_ok=True)
    pages = []
    for q in asked:
        blocks = []
        for student in sorted(collected):
            text = collected[student].get(q.label)
            body = (f"<pre>{html.escape(text)}</pre>" if text else '<p class="none">no answer</p>')
            blocks.append(f'<div class="answer"><h3>{html.escape(clean(student))}</h3>{body}</div>')
        page = folder / f"question-{q.label}.html"
        page.write_text(_PAGE.format(title=html.escape(f"{Path(notebook).stem}: Question {q.label}"),
                                     count=len(collected), points=q.points, s="s" * (q.points != 1),
                                     prompt=html.escape(q.prompt), model=html.escape(q.model),
                                     answers="\n".join(blocks)), encoding="utf-8")
        pages.append(page)
    return pages


def write_score_sheet(path: Path, rows: list[tuple[str, str, str, float]]) -> None:
    """The sheet an instructor fills in: (notebook, question, student, max points), points empty."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SCORES)
        for notebook, label, student, most in sorted(rows):
            w.writerow([clean(notebook), label, clean(student), "", f"{most:g}", ""])


def read_scores(path: str | Path) -> list[dict]:
    """The filled-in sheet: one dict per marked answer (rows left empty are skipped); ValueError
    naming the line for points that are not a number between 0 and the maximum."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:5] != SCORES[:5]:
        raise ValueError(f"{path} is not a written-answer score sheet (its header is not {','.join(SCORES)})")
    marks = []
    for line, row in enumerate(rows[1:], 2):
        row = (row + [""] * len(SCORES))[:len(SCORES)]
        if not row[3].strip():
            continue
        try:
            points, most = float(row[3]), float(row[4])
        except ValueError:
            raise ValueError(f"{path}, line {line}: points {row[3][:20]!r} is not a number") from None
        if not 0 <= points <= most:
            raise ValueError(f"{path}, line {line}: {points:g} points, not between 0 and {most:g}")
        marks.append({"notebook": row[0], "question": row[1], "student": row[2], "points": points, "max": most,
                      "comment": row[5]})
    return marks


def answers_in(path: str, solved_path: str) -> dict:
    """{'questions': [[label, points]], 'answers': {label: text or None}} of one submission (run in a
    child: it parses an untrusted notebook)."""
    import nbformat

    from labkit.grading.notebook import NotGradable, cell_records, parse_submission, read_file
    asked = questions(nbformat.read(solved_path, as_version=4))
    if not asked:
        return {"questions": [], "answers": {}}
    try:
        nb = parse_submission(read_file(path))
    except NotGradable:
        return {"questions": [[q.label, q.points] for q in asked], "answers": {q.label: None for q in asked}}
    return {"questions": [[q.label, q.points] for q in asked], "answers": answers(cell_records(nb), asked)}
