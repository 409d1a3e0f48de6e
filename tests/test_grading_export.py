"""Grades for the tools instructors use, end to end on a class of generated submissions:
Gradescope's results.json (checked against its published specification), a CSV for Canvas's
gradebook import, and written answers collected per question for a person to mark, then merged."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os

import jsonschema
import nbformat
import pytest
from nbformat.v4 import new_markdown_cell

from labkit.grading import cli, export
from labkit.grading.student import make_blank
from labkit.grading.verdict import ExerciseResult, Status
from labkit.grading.written import read_scores
from nbfactory import code, course

pytestmark = pytest.mark.needs("bubblewrap")
SETUP = "import tiny_checkers as check"

# https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output format"), as a schema
GRADESCOPE = {
    "type": "object", "required": ["tests"],
    "properties": {
        "score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "stdout_visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": {
            "type": "object", "required": ["max_score"], "additionalProperties": False,
            "properties": {
                "score": {"type": "number"}, "max_score": {"type": "number"}, "status": {"enum": ["passed", "failed"]},
                "name": {"type": "string"}, "name_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
                "number": {"type": "string"}, "output": {"type": "string"},
                "output_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
                "extra_data": {"type": "object"}}}},
        "leaderboard": {"type": "array"}},
}


def _solved():
    nb = course(setup=SETUP)
    nb.cells += [new_markdown_cell("### Question 7.1 (written, 2 points)\n\nWhy is doubling linear?"),
                 new_markdown_cell("### BEGIN SOLUTION\nBecause 2(x + y) = 2x + 2y.\n### END SOLUTION")]
    nb.cells[-1].metadata["tags"] = ["written"]
    return nb


def _grade(argv):
    out, err, env = io.StringIO(), io.StringIO(), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__), env]))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.cli_grade(argv + ["--checkers", "tiny_checkers", "--workers", "2", "--timeout", "20"])
    finally:
        os.environ.pop("PYTHONPATH") if env is None else os.environ.__setitem__("PYTHONPATH", env)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "solutions").mkdir()
    solved = _solved()
    nbformat.write(solved, root / "solutions" / "07_x.ipynb")
    answers = {"s001": "Because it distributes: 2(x+y) = 2x+2y.",
               "s002": "<script>alert('x')</script> =HYPERLINK(\"http://x\")",
               "s003": None}  # s003 leaves the blank copy's placeholder
    for student, answer in answers.items():
        nb = make_blank(solved, 7)
        nb.cells[3].source = nb.cells[3].source.replace('raise NotImplementedError("Exercise 7.1: double a number")',
                                                        "return 2 * x" if student != "s002" else "return x + 2")
        if answer:
            nb.cells[-1].source = answer
        (root / "class" / student).mkdir(parents=True)
        nbformat.write(nb, root / "class" / student / "07_x.ipynb")
    with open(root / "roster.csv", "w", newline="") as f:  # as Canvas's Gradebook export writes it
        w = csv.writer(f)
        w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Notebook 07 (101)"])
        w.writerow(["    Points Possible", "", "", "", "", "3"])
        w.writerow(["Lovelace, Ada", "9001", "U1", "s001", "Lab A", ""])
        w.writerow(["Hopper, Grace", "9002", "U2", "s002", "Lab B", ""])
    rc, out, err = _grade([str(root / "class"), "--solutions", str(root / "solutions"), "--csv", str(root / "g.csv"),
                           "--format", "canvas", "--out", str(root / "canvas.csv"), "--roster", str(root / "roster.csv"),
                           "--written", str(root / "written")])
    one = _grade([str(root / "class" / "s001" / "07_x.ipynb"), "--solutions", str(root / "solutions"),
                  "--format", "gradescope", "--out", str(root / "results.json")])
    return dict(root=root, rc=rc, out=out, err=err, one=one)


def test_gradescope_results_follow_the_specification(graded):
    results = json.loads((graded["root"] / "results.json").read_text())
    jsonschema.validate(results, GRADESCOPE)
    assert results["score"] == 1.0 and [t["status"] for t in results["tests"]] == ["passed", "failed"]
    square = results["tests"][1]
    assert square["name"] == "07_x: Exercise 7.2 (square)" and square["max_score"] == 1.0
    assert square["output"].startswith("not attempted") and square["number"] == "7.2"


def test_canvas_import_has_its_columns_a_points_row_and_the_roster_identities(graded):
    rows = list(csv.reader(open(graded["root"] / "canvas.csv", newline="")))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "07_x"]
    assert rows[1] == ["Points Possible", "", "", "", "", "2"]
    assert rows[2:] == [["Lovelace, Ada", "9001", "U1", "s001", "Lab A", "1"],
                        ["Hopper, Grace", "9002", "U2", "s002", "Lab B", "0"],
                        ["s003", "", "", "s003", "", "1"]]
    assert "not in the roster (kept under their folder name): s003" in graded["err"]


def test_written_answers_are_collected_per_question_escaped_with_a_sheet_to_fill(graded):
    root = graded["root"]
    page = (root / "written" / "07_x" / "question-7.1.html").read_text()
    assert "Because it distributes" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert page.count('class="answer"') == 3 and "no answer" in page and "Because 2(x + y)" in page  # the model
    assert "written: 1 of 1 answered, to mark by hand" in graded["out"]
    sheet = list(csv.reader(open(root / "written" / "written_scores.csv", newline="")))
    assert sheet[0] == ["notebook", "question", "student", "points", "max_points", "comment"]
    assert sorted(r[:5] for r in sheet[1:]) == [[f"{s}/07_x.ipynb", "7.1", s, "", "2"] for s in ("s001", "s002", "s003")]


def test_marks_filled_in_merge_into_the_grades_and_the_canvas_column(graded, tmp_path):
    root = graded["root"]
    sheet = list(csv.reader(open(root / "written" / "written_scores.csv", newline="")))
    for row in sheet[1:]:
        row[3] = {"s001": "2", "s002": "0.5", "s003": ""}[row[2]]
    sheet[2][5] = "=no formulas"
    with open(tmp_path / "marks.csv", "w", newline="") as f:
        csv.writer(f).writerows(sheet)
    assert cli.cli_merge([str(root / "g.csv"), "--written", str(tmp_path / "marks.csv"),
                          "--out", str(tmp_path / "all.csv")]) == 0
    rows = list(csv.reader(open(tmp_path / "all.csv", newline="")))
    marked = [r for r in rows if r[2] == "marked"]
    assert sorted(marked) == [["s001/07_x.ipynb", "Question 7.1", "marked", "2/2"],
                              ["s002/07_x.ipynb", "Question 7.1", "marked", "0.5/2: =no formulas"]]
    results = {}  # the grades as `grade --format canvas --written-scores marks.csv` has them
    for r in list(csv.reader(open(root / "g.csv", newline="")))[1:]:
        if r[2] not in ("score", "error"):
            results.setdefault(r[0], []).append(ExerciseResult(r[1], "", Status(r[2]), r[3]))
    extra, possible = export.written_points(read_scores(tmp_path / "marks.csv"))
    export.canvas(results, {}, tmp_path / "canvas.csv", None, extra, possible)
    rows = list(csv.reader(open(tmp_path / "canvas.csv", newline="")))
    assert rows[1][5] == "4" and [r[5] for r in rows[2:]] == ["3", "0.5", "1"]
    sheet[1][3] = "3"  # more than the question is worth
    with open(tmp_path / "bad.csv", "w", newline="") as f:
        csv.writer(f).writerows(sheet)
    assert cli.cli_merge([str(root / "g.csv"), "--written", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "x.csv")]) == 2
