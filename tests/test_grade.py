"""Tests for grading (labkit.grade, labkit.judge, labkit.batch): verdicts (passed / failed with hint /
not attempted), timeouts, dead kernels, CSV, untouched files, and the solved notebook's exercises
graded whatever the submitted check cells say."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil

import nbformat
import pytest

from labkit import device
from labkit.check import PASS
from labkit.grading import cli as batch
from labkit.grading import judge, sandbox
from labkit.grading import notebook as grade
from labkit.grading.student import make_blank
from nbformat.v4 import new_notebook
from nbfactory import code, course

needs_bwrap = pytest.mark.needs("bubblewrap")


# ---------------------------------------------------------------- reading cells (no kernel)

@pytest.mark.parametrize("source, defines", [
    ("def square(x):\n    return x x", True), ("async def square(x): ...", True), ("class square:\n    pass", True),
    ("square = lambda x: x * x", True), ("square: object = None", True), ("def squared(x): ...", False),
    ("square == 1", False), ("def f():\n    square = 1", False), ("# def square", False)])
def test_which_cell_defines_the_checked_name(source, defines):
    assert grade.defines(source, "square") is defines


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


def _csv_rows(path) -> list[list[str]]:
    """The rows of a grades CSV, header first."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


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
    rows = _csv_rows(root / "grades.csv")
    rc_one, out_one = _grade_cli([str(cls / "alice" / "07_x.ipynb")], root / "solutions")
    return dict(rc=rc, out=out, rows=rows, before=before, after=[_stamp(p) for p in files],
                rc_one=rc_one, out_one=out_one)


@needs_bwrap
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


@needs_bwrap
def test_grading_prints_each_exercise_and_a_score(graded_class):
    out = graded_class["out"]
    assert "alice/07_x.ipynb\n  Exercise 7.1 (double): passed\n  Exercise 7.2 (square): passed\n  2/2 passed\n" in out
    assert ("  Exercise 7.1 (double): failed: you added 2 instead of doubling [✘ double: case 1/2 (small) "
            "failed]\n  Exercise 7.2 (square): not attempted: no function named square in the notebook\n"
            "  0/2 passed\n") in out
    assert "3 notebooks: 2/6 exercises passed" in out


@needs_bwrap
def test_grading_never_modifies_the_students_files(graded_class):
    assert graded_class["after"] == graded_class["before"]


@needs_bwrap
def test_grading_a_solved_notebook_passes_with_exit_0(graded_class):
    assert graded_class["rc_one"] == 0 and graded_class["out_one"].endswith(
        "  Exercise 7.1 (double): passed\n  Exercise 7.2 (square): passed\n  2/2 passed\n")


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


# ------------------------------------------------- trouble: hangs, crashes, typos, tampering

def test_unsandboxed_grading_runs_the_same_job_and_judges_the_same(tmp_path):
    """--unsandboxed (a machine without bubblewrap): the job runs in the scratch folder, verdicts as sandboxed
    (exit code 1: not everything passed)."""
    (tmp_path / "solutions").mkdir()
    (tmp_path / "class" / "ann").mkdir(parents=True)
    nbformat.write(_trouble_notebook(), tmp_path / "solutions" / "05_trouble.ipynb")
    nbformat.write(_trouble_notebook(square="    return x + x"), tmp_path / "class" / "ann" / "05_trouble.ipynb")
    rc, out = _grade_cli([str(tmp_path / "class"), "--unsandboxed", "--csv", str(tmp_path / "grades.csv")],
                         tmp_path / "solutions")
    rows = {r[1]: r[2] for r in _csv_rows(tmp_path / "grades.csv")[1:]}
    assert (rc, rows) == (1, {"hang": "passed", "square": "failed", "crash": "passed", "after": "passed",
                              "": "score"}), out



def _trouble_notebook(hang="    return x", crash="    return x", square="    return x * x", after="    return x"):
    """Four exercises graded by tests/tiny_checkers.py: hang, square, crash, after.

    The setup cell imports nothing slow (the grader strips the check cells and imports the checkers
    itself), so no cell is near the short time limit these tests grade with except on purpose."""
    return new_notebook(cells=[
        code("import math"),
        code(f"def hang(x):\n{hang}", "exercise"), code("check.hang(hang)", "check"),
        code(f"def square(x):\n{square}", "exercise"), code("check.square(square)", "check"),
        code(f"def crash(x):\n{crash}", "exercise"), code("check.crash(crash)", "check"),
        code(f"def after(x):\n{after}", "exercise"), code("check.after(after)", "check"),
    ])


@pytest.fixture(scope="module")
def graded_trouble(tmp_path_factory):
    """Seven submissions graded in one call: an endless loop, a function that kills its kernel, a
    notebook cell that kills it, a thread that kills it later, the ways a function can raise or be
    missing, edited and deleted check cells, and a cell whose timeout breaks the grading cell. 4 s per
    cell and exercise: the longest a right answer here takes is the 2 s sleep of the "thread" case."""
    root = tmp_path_factory.mktemp("trouble")
    (root / "solutions").mkdir()
    nbformat.write(_trouble_notebook(), root / "solutions" / "05_trouble.ipynb")
    # one exercise wrong in each way a function can go wrong without hanging or crashing
    errors = _trouble_notebook(hang="    raise KeyboardInterrupt", square="    import sys; sys.exit(3)",
                               crash="    return x", after="    return x x")
    errors.cells[5].source = "def crashed(x):\n    return x"  # misnamed
    # a wrong square whose check cell prints the pass line; a generator; every other check cell deleted
    edited = _trouble_notebook(square="    return x + x", crash="    return (y for y in [x])")
    edited.cells[4].source = f"print({PASS.format(name='square', n=1)!r})"
    edited.cells = [c for i, c in enumerate(edited.cells) if i == 4 or "check" not in c.metadata.get("tags", [])]
    thread = _trouble_notebook(crash="    import os, threading, time\n    threading.Thread(target=lambda: "
                                     "(time.sleep(0.5), os._exit(7)), daemon=True).start()\n    return x")
    thread.cells[7].source = "def after(x):\n    import time; time.sleep(2)\n    return x"
    toplevel = _trouble_notebook()
    toplevel.cells.insert(5, code("import os; os._exit(1)"))  # after square, before crash and after
    cutoff = _trouble_notebook()  # a cell stopped at the limit breaks labkit's import, as a cut-off `import torch` does
    cutoff.cells.insert(1, code("import sys, time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                                "    sys.modules['torch'] = None\n    raise"))
    for student, nb in [("loops", _trouble_notebook(hang="    while True:\n        pass")), ("cutoff", cutoff),
                        ("toplevel", toplevel),
                        ("exits", _trouble_notebook(crash="    import os; os._exit(1)")),
                        ("errors", errors), ("thread", thread), ("edited", edited)]:
        (root / "class" / student).mkdir(parents=True)
        nbformat.write(nb, root / "class" / student / "05_trouble.ipynb")
    files = sorted((root / "class").rglob("*.ipynb"))
    before = [_stamp(p) for p in files]
    rc, out = _grade_cli([str(root / "class"), "--timeout", "4", "--csv", str(root / "grades.csv")],
                         root / "solutions")
    rows = {(r[0].split("/")[0], r[1]): (r[2], r[3]) for r in _csv_rows(root / "grades.csv")[1:]}
    return dict(rc=rc, out=out, rows=rows, untouched=[_stamp(p) for p in files] == before)


@needs_bwrap
def test_an_endless_loop_fails_its_own_exercise_only(graded_trouble):
    rows = graded_trouble["rows"]
    assert rows["loops", "hang"] == ("failed", "timed out: no result within 4 s (an endless loop?)")
    assert [rows["loops", name][0] for name in ("square", "crash", "after")] == ["passed"] * 3


@needs_bwrap
def test_a_timeout_that_breaks_the_grading_cell_is_named_with_what_to_do(graded_trouble):
    rows = graded_trouble["rows"]
    for name in ("hang", "square", "crash", "after"):
        assert rows["cutoff", name] == ("failed", (
            "not graded: the grading cell failed (ModuleNotFoundError: import of torch halted; None in "
            "sys.modules) after cell 2 was stopped at its time limit of 4 s (an import cut off halfway?): "
            "grade again with a longer --timeout"))


@needs_bwrap
def test_a_function_that_kills_its_kernel_fails_its_own_exercise_only(graded_trouble):
    rows = graded_trouble["rows"]
    assert rows["exits", "crash"] == ("failed", "the kernel died while this exercise ran "
                                                "(os._exit, a crash or out of memory?)")
    assert [rows["exits", name][0] for name in ("hang", "square", "after")] == ["passed"] * 3


@needs_bwrap
def test_each_error_is_reported_for_its_own_exercise(graded_trouble):
    rows = graded_trouble["rows"]
    assert rows["errors", "hang"] == ("failed", "your function raised KeyboardInterrupt [✘ hang: case 1/1 (small) failed]")
    assert rows["errors", "square"] == ("failed", "your function raised SystemExit: 3 [✘ square: case 1/1 (small) failed]")
    assert rows["errors", "crash"] == ("not attempted", "no function named crash in the notebook")
    assert rows["errors", "after"] == ("failed", "SyntaxError: invalid syntax (line 2: `return x x`) "
                                                 "(in the exercise cell)")
    status, detail = rows["edited", "crash"]
    assert status == "failed" and detail.startswith("could not judge what it returned (generator): "), detail


@needs_bwrap
def test_a_kernel_killed_by_an_earlier_exercises_thread_is_retried_before_blaming(graded_trouble):
    """crash starts a thread that kills the kernel while the (right, slow) after runs: after is run
    again and passes; crash is blamed only if the kernel dies again while it runs."""
    rows = graded_trouble["rows"]
    assert rows["thread", "after"] == ("passed", "") and rows["thread", "square"] == ("passed", "")
    assert rows["thread", "crash"] in (("passed", ""), ("failed", judge.KILLED))


@needs_bwrap
def test_a_cell_that_kills_the_kernel_leaves_the_exercises_above_it_graded(graded_trouble):
    rows = graded_trouble["rows"]
    assert rows["toplevel", "hang"] == rows["toplevel", "square"] == ("passed", "")
    assert rows["toplevel", "crash"] == ("failed", "not graded: cell 6 killed the kernel (os._exit or a crash?), "
                                                   "before crash was defined")
    assert rows["toplevel", "after"][0] == "failed"


@needs_bwrap
def test_edited_or_deleted_check_cells_change_nothing(graded_trouble):
    rows = graded_trouble["rows"]
    assert rows["edited", "square"][0] == "failed"  # its printed pass line is not a verdict
    assert rows["edited", "hang"] == rows["edited", "after"] == ("passed", "")  # their check cells are gone
    assert rows["edited", ""] == ("score", "2/4") and graded_trouble["rc"] == 1
    assert graded_trouble["untouched"]


def test_the_solved_notebook_must_not_check_one_function_twice(tmp_path):
    solved = _trouble_notebook()
    solved.cells[8].source = "check.hang(after)"
    with pytest.raises(judge.NotGradable, match="calls check.hang twice: one checker per exercise"):
        judge.exercises_of(solved, 5)


@needs_bwrap
def test_a_table_of_answers_to_the_usual_inputs_fails_under_another_seed(tmp_path):
    """--seed reaches the checkers inside the sandbox and in the judge: the inputs move together."""
    import numpy as np
    x = float(np.random.default_rng(0).uniform(1, 2))
    solved = new_notebook(cells=[code("import math"), code("def lookup(x):\n    return 2 * x", "exercise"),
                                 code("check.lookup(lookup)", "check")])
    table = new_notebook(cells=[code(f"def lookup(x):\n    return {{{x!r}: {2 * x!r}}}.get(x, 0.0)", "exercise")])
    (tmp_path / "solutions").mkdir()
    (tmp_path / "class" / "ann").mkdir(parents=True)
    nbformat.write(solved, tmp_path / "solutions" / "05_lookup.ipynb")
    nbformat.write(table, tmp_path / "class" / "ann" / "05_lookup.ipynb")
    shutil.copy(tmp_path / "solutions" / "05_lookup.ipynb", tmp_path / "class" / "ann" / "05_right.ipynb")
    shutil.copy(tmp_path / "solutions" / "05_lookup.ipynb", tmp_path / "solutions" / "05_right.ipynb")
    for seed, table_status in ((None, "passed"), ("3", "failed")):
        csv_path = tmp_path / f"grades{seed}.csv"
        _grade_cli([str(tmp_path / "class"), "--csv", str(csv_path), "--timeout", "20"]
                   + (["--seed", seed] if seed else []), tmp_path / "solutions")
        rows = {(r[0], r[1]): r[2] for r in _csv_rows(csv_path)[1:]}
        assert rows["ann/05_lookup.ipynb", "lookup"] == table_status, seed
        assert rows["ann/05_right.ipynb", "lookup"] == "passed", seed


@needs_bwrap
def test_a_submission_over_its_memory_budget_is_told_which_limit_it_hit(tmp_path):
    solved = _trouble_notebook()
    hog = _trouble_notebook()
    hog.cells.insert(5, code("blocks = [bytearray(64 << 20) for _ in range(40)]  # 2.5 GiB"))  # after square
    (tmp_path / "solutions").mkdir()
    (tmp_path / "class" / "hog").mkdir(parents=True)
    nbformat.write(solved, tmp_path / "solutions" / "05_trouble.ipynb")
    nbformat.write(hog, tmp_path / "class" / "hog" / "05_trouble.ipynb")
    _grade_cli([str(tmp_path / "class"), "--csv", str(tmp_path / "g.csv"), "--memory", "1.5", "--timeout", "30"],
               tmp_path / "solutions")
    rows = {r[1]: (r[2], r[3]) for r in _csv_rows(tmp_path / "g.csv")[1:]}
    assert rows["square"][0] == "passed" and rows["hang"][0] == "passed"  # defined before the hog's cell
    assert rows["crash"] == ("failed", "not graded: cell 6 reached the submission's limit of memory (1.5 GiB), "
                                       "before crash was defined")
    assert "the submission reached its limit of memory (1.5 GiB)" in rows["square"][1]


_SOFTMAX_KERNEL = '''import triton
import triton.language as tl


@triton.jit
def softmax_kernel(y_ptr, x_ptr, x_row_stride, y_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    ### BEGIN SOLUTION
    x = tl.load(x_ptr + row * x_row_stride + offs, mask=offs < n_cols, other=-float("inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(y_ptr + row * y_row_stride + offs, e / tl.sum(e, axis=0), mask=offs < n_cols)
    ### END SOLUTION


def softmax_triton(x):
    y = torch.empty_like(x)
    softmax_kernel[(x.shape[0],)](y, x, x.stride(0), y.stride(0), x.shape[1], BLOCK=triton.next_power_of_2(x.shape[1]))
    return y'''


@needs_bwrap
@pytest.mark.skipif(not (device.HAS_TRITON and device.INTERPRET), reason="the interpreter's memory guard")
def test_a_kernel_that_stores_past_its_output_is_named_by_the_grader_and_the_others_still_graded(tmp_path):
    """Unguarded, this kernel's store lands in the kernel process's heap and kills it (or worse)."""
    def notebook(kernel):
        return new_notebook(cells=[code("from labkit import check, device\nimport torch"),
                                   code(kernel, "exercise"), code("check.softmax_triton(softmax_triton)", "check"),
                                   code("def square(x):\n    return x * x", "exercise"),
                                   code("check.square(square)", "check")])
    (tmp_path / "solutions").mkdir()
    (tmp_path / "class" / "ann").mkdir(parents=True)
    nbformat.write(notebook(_SOFTMAX_KERNEL), tmp_path / "solutions" / "02_k.ipynb")
    unmasked = _SOFTMAX_KERNEL.replace(", e / tl.sum(e, axis=0), mask=offs < n_cols)", ", e / tl.sum(e, axis=0))")
    nbformat.write(notebook(unmasked), tmp_path / "class" / "ann" / "02_k.ipynb")
    _grade_cli([str(tmp_path / "class"), "--csv", str(tmp_path / "g.csv"), "--timeout", "60"], tmp_path / "solutions")
    rows = {r[1]: (r[2], r[3]) for r in _csv_rows(tmp_path / "g.csv")[1:]}
    assert rows["square"] == ("passed", "")
    status, detail = rows["softmax_triton"]
    assert status == "failed" and detail.startswith("store outside the kernel's tensors (every lane active) in softmax_kernel"), detail
    assert "tl.store(y_ptr + row * y_row_stride + offs, e / tl.sum(e, axis=0))" in detail
    assert "mask the store" in detail, detail
