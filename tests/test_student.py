"""Tests for labkit.student: blank copies (structure, no solution text, no overwrite) and grading
(passed / failed with hint / not attempted, timeouts, dead kernels, CSV), plus the real course:
every notebook's blank copy is well formed and its inverted run reports only "not implemented yet"."""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit import student
from labkit.check import NOT_IMPLEMENTED, PASS
from labkit.device import TRITON_MISSING

ROOT = Path(__file__).resolve().parent.parent
COURSE = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(".bak.ipynb"))

# A tiny exercise checked by labkit's real checker machinery (run_checker with a known mistake).
# Importing it costs a kernel ~4 s (torch), so most grading tests use QUICK_SETUP below instead.
SETUP = '''import types
from labkit.check import Case, Misconception, run_checker
check = types.SimpleNamespace(
    double=lambda fn: run_checker("double", fn, [Case("small", (3.0,)), Case("negative", (-1.5,))],
                                  lambda x: 2 * x, [Misconception("you added 2 instead of doubling", lambda x: x + 2)]),
    square=lambda fn: run_checker("square", fn, [Case("small", (3.0,))], lambda x: x * x))'''


def code(source: str, *tags: str, outputs=(), count=None):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=count)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def course(double_body="    return 2 * x", square_cell=None, setup=SETUP):
    """A solved mini-notebook in the course's layout: setup, two exercises, each with its check."""
    square_cell = square_cell or code("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                                      "    ### END SOLUTION", "exercise")
    nb = new_notebook(cells=[
        new_markdown_cell("# Doubling\n\nYou will learn: nothing."),
        code(setup),
        new_markdown_cell("### Exercise 7.1: double a number\n\nReturn $2x$."),
        code(f'def double(x):\n    """2x."""\n    ### BEGIN SOLUTION\n{double_body}\n    ### END SOLUTION',
             "exercise"),
        code("check.double(double)", "check", "nbval-check-output"),
        new_markdown_cell("As in Exercise 7.1, return a number.\n\n**Exercise 7.2: square.**"),  # prose, then label
        square_cell,
        code("check.square(square)", "check", "nbval-check-output"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def solved_with_extras():
    """course() plus outputs, a markdown answer, a deeper indent and an unlabelled exercise."""
    nb = course()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ready\n")]
    nb.cells[1].execution_count = 1
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text=PASS.format(name="double", n=2))]
    nb.cells[4].execution_count = 3
    nb.cells[3].metadata["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00Z"}
    nb.cells += [
        new_markdown_cell("Why is it exact?\n<!--\n### BEGIN SOLUTION\nBecause the max cancels out.\n"
                          "### END SOLUTION\n-->\nThink first."),
        code("class Acc:\n    def total(self, xs):\n        out = 0.0\n        ### BEGIN SOLUTION\n"
             "        for x in xs:\n            out += x  # the secret sauce\n        ### END SOLUTION\n"
             "        return out", "exercise", outputs=[nbformat.v4.new_output(
                 "error", ename="NameError", evalue="nope", traceback=[])], count=9),
    ]
    return nb


# ---------------------------------------------------------------- blank copies

def test_blank_copy_replaces_each_answer_by_a_labelled_raise_with_its_indentation():
    blank = student.make_blank(solved_with_extras(), number=7, name="07_x.ipynb")
    nbformat.validate(blank)
    assert blank.cells[3].source == ('def double(x):\n    """2x."""\n'
                                     '    raise NotImplementedError("Exercise 7.1: double a number")')
    assert blank.cells[6].source == 'def square(x):\n    raise NotImplementedError("Exercise 7.2: square")'
    # No heading above: numbered from the file (N=7) and the count of exercises (k=3).
    assert blank.cells[9].source == ('class Acc:\n    def total(self, xs):\n        out = 0.0\n'
                                     '        raise NotImplementedError("Exercise 7.3: fill in total")\n'
                                     '        return out')
    assert blank.cells[8].source == "Why is it exact?\n<!--\n-->\nThink first."


def test_blank_copy_clears_outputs_and_keeps_everything_else():
    solved = solved_with_extras()
    before = copy.deepcopy(solved)
    blank = student.make_blank(solved, number=7)
    assert solved == before  # the input is not modified
    assert blank.metadata == solved.metadata
    for b, s in zip(blank.cells, solved.cells, strict=True):
        assert b.cell_type == s.cell_type and b.get("id") == s.get("id")
        assert b.metadata.get("tags") == s.metadata.get("tags")
        assert {k: v for k, v in b.metadata.items()} == {k: v for k, v in s.metadata.items() if k != "execution"}
        if b.cell_type == "code":
            assert b.outputs == [] and b.execution_count is None
        if "BEGIN SOLUTION" not in s.source:
            assert b.source == s.source
    student.verify_blank(solved, blank)


def test_verify_blank_rejects_a_surviving_answer_line_but_allows_lines_used_elsewhere():
    solved = solved_with_extras()
    solved.cells[1].source += "\nfor x in xs:"  # also outside the answers: may stay in a blank
    blank = student.make_blank(solved, number=7)
    blank.cells[9].source += "\n        for x in xs:"
    student.verify_blank(solved, blank)
    blank.cells[9].source += "\n            out += x  # the secret sauce"
    with pytest.raises(student.BlankCopyError, match="secret sauce"):
        student.verify_blank(solved, blank, name="07_x.ipynb")
    blank = student.make_blank(solved, number=7)
    blank.cells[2].source += "\n### END SOLUTION"
    with pytest.raises(student.BlankCopyError, match="marker"):
        student.verify_blank(solved, blank)


@pytest.mark.parametrize("source, problem", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", "line 2: '### BEGIN SOLUTION' has no matching"),
    ("def f():\n    return 1\n    ### END SOLUTION", "line 3: '### END SOLUTION' without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "line 2: '### BEGIN SOLUTION' again"),
])
def test_an_unpaired_marker_is_an_error_naming_notebook_and_cell(tmp_path, source, problem, capsys):
    nb = course()
    nb.cells[6] = code(source, "exercise")
    with pytest.raises(student.SolutionMarkerError, match=re.escape(f"07_x.ipynb, cell 7 (code), {problem}")):
        student.make_blank(nb, 7, name="07_x.ipynb")
    nbformat.write(nb, tmp_path / "07_x.ipynb")
    assert student.cli_student([str(tmp_path / "07_x.ipynb"), str(tmp_path / "out")]) == 1
    assert f"07_x.ipynb, cell 7 (code), {problem}" in capsys.readouterr().out
    assert not (tmp_path / "out" / "07_x.ipynb").exists()


def test_student_copies_a_folder_and_never_overwrites_work(tmp_path, capsys):
    src, dest = tmp_path / "notebooks", tmp_path / "exercises"
    src.mkdir()
    nbformat.write(course(), src / "07_x.ipynb")
    unlabelled = course()
    unlabelled.cells[2].source = "### Your turn: double a number"
    nbformat.write(unlabelled, src / "08_y.ipynb")
    nbformat.write(course(), src / "scratch.ipynb")  # not NN_*: not a course notebook
    nbformat.write(course(), src / "07_x.20250101-000000.bak.ipynb")
    assert student.cli_student([str(src), str(dest)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {dest / '07_x.ipynb'} (2 exercises)",
                                                     f"wrote {dest / '08_y.ipynb'} (2 exercises)"]
    assert sorted(p.name for p in dest.iterdir()) == ["07_x.ipynb", "08_y.ipynb"]
    student.verify_blank(course(), nbformat.read(dest / "07_x.ipynb", as_version=4))
    # No "Exercise N.k" heading: N from the file name, k counts the notebook's exercises.
    assert nbformat.read(dest / "08_y.ipynb", as_version=4).cells[3].source.endswith(
        'raise NotImplementedError("Exercise 8.1: fill in double")')

    work = dest / "07_x.ipynb"
    work.write_text(work.read_text().replace("raise NotImplementedError", "return 2 * x  # mine"))
    mine = work.read_bytes()
    assert student.cli_student([str(src), str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"kept your existing {work} (use --force to replace it; a backup is kept)" in out
    assert work.read_bytes() == mine

    assert student.cli_student([str(src / "07_x.ipynb"), str(dest), "--force"]) == 0
    backups = list(dest.glob("07_x.*.bak.ipynb"))
    assert len(backups) == 1 and re.fullmatch(r"07_x\.\d{8}-\d{6}\.bak\.ipynb", backups[0].name)
    assert backups[0].read_bytes() == mine
    assert f"saved as {backups[0]}" in capsys.readouterr().out
    assert "# mine" not in work.read_text() and "Exercise 7.1" in work.read_text()


def test_student_refuses_to_blank_a_notebook_in_place_and_reports_a_missing_source(tmp_path, capsys):
    nbformat.write(course(), tmp_path / "07_x.ipynb")
    solved = (tmp_path / "07_x.ipynb").read_bytes()
    assert student.cli_student([str(tmp_path), str(tmp_path), "--force"]) == 1
    assert (tmp_path / "07_x.ipynb").read_bytes() == solved
    assert "refusing" in capsys.readouterr().out
    assert student.cli_student([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "no such notebook or folder" in capsys.readouterr().err


# ---------------------------------------------------------------- reading verdicts (no kernel)

def _executed(check_outputs, **problems):
    """A notebook as execute_notebook would return it, with the given check-cell outputs."""
    nb = course()
    nb.cells[4].outputs, nb.cells[7].outputs = check_outputs
    return student.Execution(nb, timeout=5, **problems)


def _stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text + "\n")


def _error(ename, evalue):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def test_verdicts_are_read_from_the_check_cells_outputs():
    run = _executed(([_stream(PASS.format(name="double", n=2))], [_stream(NOT_IMPLEMENTED.format(name="square"))]))
    assert [(r.label, r.name, r.status, r.detail, r.cell) for r in student.results_of(run)] == [
        ("7.1", "double", "passed", "", 5), ("7.2", "square", "not attempted", "", 8)]
    run = _executed(([_error("AssertionError", "double: case 1/2 (small) failed\n  inputs: 3.0\n"
                                                "  output: worst error 1\n  hint: you added 2")],
                     [_stream(PASS.format(name="double", n=1))]))  # another checker's line is no pass
    (a, b) = student.results_of(run)
    assert (a.status, a.detail) == ("failed", "you added 2 [double: case 1/2 (small) failed]")
    assert b.status == "failed" and "printed no verdict" in b.detail
    run = _executed(([_error("NameError", "name 'check' is not defined")], []), timed_out={7})
    assert [(r.status, r.detail) for r in student.results_of(run)] == [
        ("failed", "NameError: name 'check' is not defined"), ("failed", "timed out after 5 s")]
    run = _executed(([_stream(TRITON_MISSING)], [_error("NameError", "name 'square' is not defined")]))
    run.nb.cells[6].outputs = [_error("SyntaxError", "invalid syntax (3 line 2)")]
    assert [(r.status, r.detail) for r in student.results_of(run)] == [
        ("not attempted", "skipped: Triton is not installed here"),
        ("failed", "NameError: name 'square' is not defined "
                   "(the exercise cell above failed: SyntaxError: invalid syntax (3 line 2))")]


def test_verdicts_after_a_dead_or_stuck_kernel():
    run = _executed(([], []), died_at=4)
    assert [r.detail for r in student.results_of(run)] == [
        "kernel died while running this check (os._exit, a crash or out of memory?)",
        "kernel died in cell 5 (check.double(double)) before this check ran"]
    run = _executed(([_stream(PASS.format(name="double", n=2))], []), timed_out={6}, stuck_at=6)
    assert [(r.status, r.detail) for r in student.results_of(run)] == [
        ("passed", ""), ("failed", "not run: the kernel did not stop after cell 7 timed out")]


# ---------------------------------------------------------------- grading (real kernels)

def _grade_cli(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = student.cli_grade(argv)
    return rc, out.getvalue()


def _stamp(path):
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """Two submissions (alice: right; bob, checked by labkit's run_checker: a known mistake and a
    missing function) plus a checkpoint and a backup that grading must skip; graded once with --csv."""
    root = tmp_path_factory.mktemp("class")
    (root / "alice").mkdir()
    (root / "bob" / ".ipynb_checkpoints").mkdir(parents=True)
    nbformat.write(course(setup=QUICK_SETUP), root / "alice" / "07_x.ipynb")
    nbformat.write(course("    return x + 2", code("def squared(x):\n    return x * x", "exercise")),
                   root / "bob" / "07_x.ipynb")
    shutil.copy(root / "alice" / "07_x.ipynb", root / "bob" / ".ipynb_checkpoints" / "07_x-checkpoint.ipynb")
    shutil.copy(root / "alice" / "07_x.ipynb", root / "bob" / "07_x.20250101-000000.bak.ipynb")
    files = [root / "alice" / "07_x.ipynb", root / "bob" / "07_x.ipynb"]
    before = [_stamp(p) for p in files]
    rc, out = _grade_cli([str(root), "--csv", str(root / "grades.csv")])
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return dict(rc=rc, out=out, rows=rows, before=before, after=[_stamp(p) for p in files])


def test_grading_a_class_folder_writes_one_csv_row_per_exercise_and_a_score(graded_class):
    assert graded_class["rc"] == 1
    assert graded_class["rows"] == [
        ["notebook", "exercise", "status", "detail"],
        ["alice/07_x.ipynb", "double", "passed", ""],
        ["alice/07_x.ipynb", "square", "passed", ""],
        ["alice/07_x.ipynb", "", "score", "2/2"],
        ["bob/07_x.ipynb", "double", "failed", "you added 2 instead of doubling "
                                               "[double: case 1/2 (small) failed]"],
        ["bob/07_x.ipynb", "square", "failed", "NameError: name 'square' is not defined"],
        ["bob/07_x.ipynb", "", "score", "0/2"],
    ]


def test_grading_prints_each_exercise_and_a_score(graded_class):
    out = graded_class["out"]
    assert "  Exercise 7.1 (double): passed\n  Exercise 7.2 (square): passed\n  2/2 passed\n" in out
    assert ("  Exercise 7.1 (double): failed: you added 2 instead of doubling [double: case 1/2 (small) "
            "failed]\n  Exercise 7.2 (square): failed: NameError: name 'square' is not defined\n"
            "  0/2 passed\n") in out
    assert "2 notebooks: 2/4 exercises passed" in out


def test_grading_never_modifies_the_students_files(graded_class):
    assert graded_class["after"] == graded_class["before"]


def test_grading_a_solved_notebook_passes_with_exit_0(tmp_path):
    nbformat.write(course(setup=QUICK_SETUP), tmp_path / "07_x.ipynb")
    rc, out = _grade_cli([str(tmp_path / "07_x.ipynb")])
    assert (rc, out) == (0, f"{tmp_path / '07_x.ipynb'}\n  Exercise 7.1 (double): passed\n"
                            "  Exercise 7.2 (square): passed\n  2/2 passed\n")


def test_grading_a_blank_copy_reports_not_attempted_with_exit_1(tmp_path):
    nbformat.write(student.make_blank(course(setup=QUICK_SETUP), 7), tmp_path / "07_x.ipynb")
    rc, out = _grade_cli([str(tmp_path / "07_x.ipynb")])
    assert (rc, out.splitlines()[1:]) == (1, ["  Exercise 7.1 (double): not attempted",
                                              "  Exercise 7.2 (square): not attempted", "  0/2 passed"])


# A checker stand-in without torch (same fixed lines as labkit.check): quick, and fine for a 3 s timeout.
QUICK_SETUP = f'''import types
def _check(name, fn, x, expected):
    try:
        out = fn(x)
    except NotImplementedError:
        print({NOT_IMPLEMENTED!r}.format(name=name))
        return
    assert out == expected, f"{{name}}: case 1/1 failed\\n  hint: look again"
    print({PASS!r}.format(name=name, n=1))
check = types.SimpleNamespace(**{{n: (lambda n, e: lambda fn: _check(n, fn, 3, e))(n, e)
                                 for n, e in [("double", 6), ("square", 9), ("hang", 3), ("crash", 3),
                                              ("after", 3)]}})'''


@pytest.fixture(scope="module")
def graded_trouble(tmp_path_factory):
    """Exercise 1 never returns, 2 is right, 3 kills the kernel, 4 comes after: graded with a 3 s timeout."""
    path = tmp_path_factory.mktemp("trouble") / "05_trouble.ipynb"
    nbformat.write(new_notebook(cells=[
        code(QUICK_SETUP),
        code("def hang(x):\n    while True:\n        pass", "exercise"), code("check.hang(hang)", "check"),
        code("def square(x):\n    return x * x", "exercise"), code("check.square(square)", "check"),
        code("def crash(x):\n    import os; os._exit(1)", "exercise"), code("check.crash(crash)", "check"),
        code("def after(x):\n    return x", "exercise"), code("check.after(after)", "check"),
    ]), path)
    before = _stamp(path)
    results = student.grade_notebook(path, timeout=3)
    return results, before, _stamp(path)


def test_a_cell_that_hangs_times_out_and_later_cells_are_still_graded(graded_trouble):
    hang, square = graded_trouble[0][:2]
    assert (hang.name, hang.status, hang.detail) == ("hang", "failed", "timed out after 3 s")
    assert (square.name, square.status, square.label) == ("square", "passed", "5.2")


def test_a_dead_kernel_fails_its_cell_and_every_later_exercise(graded_trouble):
    crash, after = graded_trouble[0][2:]
    assert (crash.status, crash.detail) == ("failed", "kernel died while running this check "
                                                      "(os._exit, a crash or out of memory?)")
    assert (after.status, after.detail) == ("failed", "kernel died in cell 7 (check.crash(crash)) "
                                                      "before this check ran")
    assert graded_trouble[2] == graded_trouble[1]


def test_grading_a_missing_path_or_a_broken_notebook_is_a_clear_error(tmp_path, capsys):
    assert student.cli_grade([str(tmp_path / "nope.ipynb")]) == 2
    assert capsys.readouterr().err == f"labkit grade: no such notebook or folder: {tmp_path / 'nope.ipynb'}\n"
    assert student.cli_grade([str(tmp_path)]) == 2  # a folder without notebooks
    assert "no notebooks" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert student.cli_grade([str(tmp_path)]) == 1
    assert "  could not grade it: NotJSONError" in capsys.readouterr().out


# ---------------------------------------------------------------- the real course

def test_course_has_the_first_notebooks():
    assert {p.name[:2] for p in COURSE} >= {"00", "01", "02", "03"}, \
        f"expected notebooks/00_*..03_*.ipynb, found {[p.name for p in COURSE]}"


@pytest.mark.parametrize("path", COURSE, ids=[p.stem for p in COURSE])
def test_course_blank_copy_structure(path):
    solved = nbformat.read(path, as_version=4)
    number = student.notebook_number(path)
    blank = student.make_blank(solved, number, name=path.name)
    nbformat.validate(blank)
    student.verify_blank(solved, blank, name=path.name)
    checks = [i for i, c in enumerate(blank.cells) if "check" in c.metadata.get("tags", [])]
    assert checks, "every notebook has at least one exercise with a check cell"
    for i in checks:
        # `check.<name>(<name>)`, after cell magics such as %%needs_triton
        assert re.fullmatch(r"(%%.*\n)*check\.(\w+)\(\2\)", blank.cells[i].source.strip()), blank.cells[i].source
        above = [c for c in blank.cells[:i] if c.cell_type == "code"][-1]
        assert "exercise" in above.metadata.get("tags", []), f"cell {i + 1}: the check follows its exercise"
    for c in blank.cells:
        if "exercise" in c.metadata.get("tags", []):
            assert re.search(rf'raise NotImplementedError\("Exercise {number}\.\d+: .+"\)', c.source), c.source


@pytest.mark.parametrize("path", COURSE, ids=[p.stem for p in COURSE])
def test_course_blank_copy_inverted_run(path):
    solved = nbformat.read(path, as_version=4)
    blank = student.make_blank(solved, student.notebook_number(path), name=path.name)
    run = student.execute_notebook(blank, path.parent, timeout=300)
    assert (run.died_at, run.stuck_at, run.timed_out) == (None, None, set())
    for i, cell in enumerate(run.nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {i + 1} raised in the blank copy: {errors}"
        if "check" in cell.metadata.get("tags", []):
            name = re.search(r"check\.(\w+)", cell.source).group(1)
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert NOT_IMPLEMENTED.format(name=name) in text, f"cell {i + 1} printed {text!r}"
    assert {r.status for r in student.results_of(run)} == {"not attempted"}
