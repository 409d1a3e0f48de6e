"""Tests for labkit.grade: verdicts (passed / failed with hint / not attempted), timeouts, dead
kernels, CSV, untouched files, and the solved notebook's check cells replacing the submitted ones."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil

import nbformat
import pytest

from labkit import batch, grade, sandbox
from labkit.check import NOT_IMPLEMENTED, PASS
from labkit.device import TRITON_MISSING
from labkit.student import make_blank
from nbformat.v4 import new_notebook
from nbfactory import code, course



# ---------------------------------------------------------------- reading verdicts (no kernel)

def _executed(check_outputs, **problems):
    """A notebook as execute_notebook would return it, with the given check-cell outputs."""
    nb = course()
    nb.cells[4].outputs, nb.cells[7].outputs = check_outputs
    return grade.Execution(nb, timeout=5, **problems)


def _stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text + "\n")


def _error(ename, evalue):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def test_verdicts_are_read_from_the_check_cells_outputs():
    run = _executed(([_stream(PASS.format(name="double", n=2))], [_stream(NOT_IMPLEMENTED.format(name="square"))]))
    assert [(r.label, r.name, r.status, r.detail, r.cell) for r in grade.results_of(run)] == [
        ("7.1", "double", "passed", "", 5), ("7.2", "square", "not attempted", "", 8)]
    run = _executed(([_error("AssertionError", "double: case 1/2 (small) failed\n  inputs: 3.0\n"
                                                "  output: worst error 1\n  hint: you added 2")],
                     [_stream(PASS.format(name="double", n=1))]))  # another checker's line is no pass
    (a, b) = grade.results_of(run)
    assert (a.status, a.detail) == ("failed", "you added 2 [double: case 1/2 (small) failed]")
    assert b.status == "failed" and "printed no verdict" in b.detail
    run = _executed(([_error("NameError", "name 'check' is not defined")], []), timed_out={7})
    assert [(r.status, r.detail) for r in grade.results_of(run)] == [
        ("failed", "NameError: name 'check' is not defined"), ("failed", "timed out after 5 s")]
    run = _executed(([_stream(TRITON_MISSING)], [_error("NameError", "name 'square' is not defined")]))
    run.nb.cells[6].source = "def square(x):\n    return x x"
    run.nb.cells[6].outputs = [_error("SyntaxError", "invalid syntax (423274432.py, line 2)")]
    assert [(r.status, r.detail) for r in grade.results_of(run)] == [
        ("not attempted", "skipped: Triton is not installed here"),
        ("failed", "SyntaxError: invalid syntax (line 2: `return x x`)")]  # not the check's NameError
    run = _executed(([_stream(PASS.format(name="double", n=2))], [_error("NameError", "name 'np' is not defined")]))
    run.nb.cells[6].outputs = [_error("NameError", "name 'np' is not defined")]
    assert grade.results_of(run)[1].detail == ("NameError: name 'np' is not defined "
                                               "(the exercise cell above failed: NameError: name 'np' is not defined)")


def test_a_failed_check_blames_only_the_exercise_cell_that_defines_the_checked_name():
    """The solved notebook's check cells run at the end, after every exercise: a check whose
    function is missing must not be blamed on some other broken exercise."""
    submission = course(square_cell=code("def square(x):\n    return x x", "exercise"))
    submission.cells[3].source = "def doubled(x):\n    return 2 * x"  # misnamed: double is not defined
    nb = grade.with_canonical_checks(submission, course())
    assert [c.source for c in nb.cells[-2:]] == ["check.double(double)", "check.square(square)"]
    nb.cells[5].outputs = [_error("SyntaxError", "invalid syntax (4086266472.py, line 2)")]
    nb.cells[-2].outputs = [_error("NameError", "name 'double' is not defined")]
    nb.cells[-1].outputs = [_error("NameError", "name 'square' is not defined")]
    assert [(r.name, r.status, r.detail) for r in grade.results_of(grade.Execution(nb, timeout=5))] == [
        ("double", "failed", "NameError: name 'double' is not defined"),
        ("square", "failed", "SyntaxError: invalid syntax (line 2: `return x x`)")]
    # A timed-out exercise is blamed by its own check only, wherever the check cells are.
    nb.cells[5].source, nb.cells[5].outputs = "def square(x):\n    while True: pass", []
    nb.cells[3].source = "def double(x):\n    return 2 * x"
    nb.cells[-2].outputs = [_stream(PASS.format(name="double", n=2))]
    run = grade.Execution(nb, timeout=5, timed_out={5})
    assert [r.detail for r in grade.results_of(run)] == [
        "", "NameError: name 'square' is not defined (the exercise cell above failed: timed out after 5 s)"]


def test_every_course_check_is_judged_against_the_exercise_cell_just_above_it():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            if "check" in cell.metadata.get("tags", []):
                above = max(j for j in range(i) if cells[j].cell_type == "code")
                name = grade._CHECK_CALL.search(cell.source).group(1)
                assert grade._exercise_of(cells, i, name) == above, f"{path.name}, cell {i + 1}"


@pytest.mark.parametrize("source, defines", [
    ("def square(x):\n    return x x", True), ("async def square(x): ...", True), ("class square:\n    pass", True),
    ("square = lambda x: x * x", True), ("square: object = None", True), ("def squared(x): ...", False),
    ("square == 1", False), ("def f():\n    square = 1", False), ("# def square", False)])
def test_which_cell_defines_the_checked_name(source, defines):
    assert grade.defines(source, "square") is defines


def test_verdicts_after_a_dead_or_stuck_kernel():
    run = _executed(([], []), died_at=4)
    assert [r.detail for r in grade.results_of(run)] == [
        "kernel died while running this check (os._exit, a crash or out of memory?)",
        "kernel died in cell 5 (check.double(double)) before this check ran"]
    run = _executed(([_stream(PASS.format(name="double", n=2))], []), timed_out={6}, stuck_at=6)
    assert [(r.status, r.detail) for r in grade.results_of(run)] == [
        ("passed", ""), ("failed", "not run: the kernel did not stop after cell 7 timed out")]


# ---------------------------------------------------------------- grading (real kernels)

def _grade_cli(argv, solutions=None):
    """`python -m labkit grade` (sandboxed, tests/tiny_checkers.py registered in both processes)."""
    out, env = io.StringIO(), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__), env]))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = batch.cli_grade(argv + ["--checkers", "tiny_checkers", "--workers", "2"] +
                                 (["--solutions", str(solutions)] if solutions else []))
    finally:
        os.environ.pop("PYTHONPATH") if env is None else os.environ.__setitem__("PYTHONPATH", env)
    return rc, out.getvalue()


def _stamp(path):
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """Three submissions (alice: right; bob: a known mistake and a missing function; carol: a blank
    copy) plus a checkpoint and a backup that grading must skip; graded once with --csv."""
    root = tmp_path_factory.mktemp("class")
    (root / "solutions").mkdir()
    nbformat.write(course(setup=TINY), root / "solutions" / "07_x.ipynb")
    cls = root / "class"
    for name in ("alice", "carol"):
        (cls / name).mkdir(parents=True)
    (cls / "bob" / ".ipynb_checkpoints").mkdir(parents=True)
    nbformat.write(course(setup=TINY), cls / "alice" / "07_x.ipynb")
    nbformat.write(course("    return x + 2", code("def squared(x):\n    return x * x", "exercise"), setup=TINY),
                   cls / "bob" / "07_x.ipynb")
    nbformat.write(make_blank(course(setup=TINY), 7), cls / "carol" / "07_x.ipynb")
    shutil.copy(cls / "alice" / "07_x.ipynb", cls / "bob" / ".ipynb_checkpoints" / "07_x-checkpoint.ipynb")
    shutil.copy(cls / "alice" / "07_x.ipynb", cls / "bob" / "07_x.20250101-000000.bak.ipynb")
    files = [cls / n / "07_x.ipynb" for n in ("alice", "bob", "carol")]
    before = [_stamp(p) for p in files]
    rc, out = _grade_cli([str(cls), "--csv", str(root / "grades.csv")], root / "solutions")
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rc_one, out_one = _grade_cli([str(cls / "alice" / "07_x.ipynb")], root / "solutions")
    return dict(rc=rc, out=out, rows=rows, before=before, after=[_stamp(p) for p in files],
                rc_one=rc_one, out_one=out_one)


def test_grading_a_class_folder_writes_one_csv_row_per_exercise_and_a_score(graded_class):
    assert graded_class["rc"] == 1
    rows = graded_class["rows"]
    assert rows[0] == ["notebook", "exercise", "status", "detail"]
    assert sorted(rows[1:]) == sorted([  # in the order the notebooks finish
        ["alice/07_x.ipynb", "double", "passed", ""],
        ["alice/07_x.ipynb", "square", "passed", ""],
        ["alice/07_x.ipynb", "", "score", "2/2"],
        ["bob/07_x.ipynb", "double", "failed", "you added 2 instead of doubling "
                                               "[✘ double: case 1/2 (small) failed]"],
        ["bob/07_x.ipynb", "square", "not attempted", "no function named square in the notebook"],
        ["bob/07_x.ipynb", "", "score", "0/2"],
        ["carol/07_x.ipynb", "double", "not attempted", ""],
        ["carol/07_x.ipynb", "square", "not attempted", ""],
        ["carol/07_x.ipynb", "", "score", "0/2"],
    ])


def test_grading_prints_each_exercise_and_a_score(graded_class):
    out = graded_class["out"]
    assert "alice/07_x.ipynb\n  Exercise 7.1 (double): passed\n  Exercise 7.2 (square): passed\n  2/2 passed\n" in out
    assert ("  Exercise 7.1 (double): failed: you added 2 instead of doubling [✘ double: case 1/2 (small) "
            "failed]\n  Exercise 7.2 (square): not attempted: no function named square in the notebook\n"
            "  0/2 passed\n") in out
    assert "3 notebooks: 2/6 exercises passed" in out


def test_grading_never_modifies_the_students_files(graded_class):
    assert graded_class["after"] == graded_class["before"]


def test_grading_a_solved_notebook_passes_with_exit_0(graded_class):
    assert graded_class["rc_one"] == 0 and graded_class["out_one"].endswith(
        "  Exercise 7.1 (double): passed\n  Exercise 7.2 (square): passed\n  2/2 passed\n")


def test_grading_blames_a_syntax_error_on_its_own_exercise_not_on_a_later_check(tmp_path):
    """Graded against the solved notebook (its check cells run at the end): exercise 7.1's function
    is misnamed, 7.2 has a SyntaxError. Each check reports its own exercise's problem."""
    (tmp_path / "solutions").mkdir()
    nbformat.write(course(setup=QUICK_SETUP), tmp_path / "solutions" / "07_x.ipynb")
    submission = course(setup=QUICK_SETUP, square_cell=code("def square(x):\n    return x x", "exercise"))
    submission.cells[3].source = "def doubled(x):\n    return 2 * x"
    nbformat.write(submission, tmp_path / "07_x.ipynb")
    results = grade.grade_notebook(tmp_path / "07_x.ipynb", timeout=30, solutions=tmp_path / "solutions")
    assert [(r.label, r.name, r.status, r.detail) for r in results] == [
        ("7.1", "double", "failed", "NameError: name 'double' is not defined"),
        ("7.2", "square", "failed", "SyntaxError: invalid syntax (line 2: `return x x`)")]


TINY = "import tiny_checkers as check"


def test_grading_a_missing_path_is_a_clear_error(tmp_path, capsys):
    assert batch.cli_grade([str(tmp_path / "nope.ipynb")]) == 2
    assert capsys.readouterr().err == f"labkit grade: no such notebook or folder: {tmp_path / 'nope.ipynb'}\n"
    assert batch.cli_grade([str(tmp_path)]) == 2  # a folder without notebooks
    assert "no notebooks" in capsys.readouterr().err


def test_grading_refuses_without_a_sandbox_unless_told(tmp_path, capsys, monkeypatch):
    nbformat.write(course(setup=TINY), tmp_path / "07_x.ipynb")
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    assert batch.cli_grade([str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("labkit grade: no sandbox: bubblewrap (bwrap) is not installed; refusing to "
                                       "run untrusted notebooks (--unsandboxed runs them anyway, with your rights)\n")


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
    results = grade.grade_notebook(path, timeout=3)
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


@pytest.fixture(scope="module")
def tampered(tmp_path_factory):
    """A wrong `double` whose check cell was edited to print the pass line, and a copy with no check cells."""
    root = tmp_path_factory.mktemp("tampered")
    (root / "solutions").mkdir()
    (root / "class").mkdir()
    nbformat.write(course(setup=QUICK_SETUP), root / "solutions" / "07_x.ipynb")
    faked = course(double_body="    return x + 2", setup=QUICK_SETUP)
    faked.cells[4].source = f"print({PASS.format(name='double', n=2)!r})"
    nbformat.write(faked, root / "class" / "07_x.ipynb")
    stripped = course(setup=QUICK_SETUP)
    stripped.cells = [c for c in stripped.cells if "check" not in c.metadata.get("tags", [])]
    nbformat.write(stripped, root / "07_x.ipynb")
    return root


def test_the_solved_notebooks_check_cells_replace_edited_ones(tampered):
    results = grade.grade_notebook(tampered / "class" / "07_x.ipynb", timeout=30,
                                   solutions=tampered / "solutions")
    assert [(r.label, r.name, r.status) for r in results] == [("7.1", "double", "failed"),
                                                             ("7.2", "square", "passed")]


def test_deleted_check_cells_are_still_graded_from_the_solved_notebook(tampered):
    results = grade.grade_notebook(tampered / "07_x.ipynb", timeout=30, solutions=tampered / "solutions")
    assert [(r.label, r.name, r.status) for r in results] == [("7.1", "double", "passed"),
                                                             ("7.2", "square", "passed")]
