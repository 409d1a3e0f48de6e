"""Tests for labkit.student: blank copies (structure, no solution text, no overwrite), plus the real
course: every notebook's blank copy is well formed and its inverted run reports only "not implemented yet"."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import pytest

from labkit.grading import job, student
from labkit.check import NOT_IMPLEMENTED
from nbfactory import code, course, solved_with_extras

ROOT = Path(__file__).resolve().parent.parent
COURSE = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(".bak.ipynb"))

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
    # One line for all the copies kept (`make lab` runs this at every start), not a line each.
    assert capsys.readouterr().out.splitlines() == [
        f"kept your 2 existing copies in {dest} (use --force to replace them; a backup is kept)"]
    assert work.read_bytes() == mine
    (dest / "08_y.ipynb").unlink()  # a new notebook gets its own line, the kept one the summary
    assert student.cli_student([str(src), str(dest)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {dest / '08_y.ipynb'} (2 exercises)",
        f"kept your existing {work} (use --force to replace it; a backup is kept)"]
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



# ---------------------------------------------------------------- the real course

def test_course_has_the_first_notebooks():
    assert {p.name[:2] for p in COURSE} >= {"00", "01", "02", "03"}, \
        f"expected notebooks/00_*..03_*.ipynb, found {[p.name for p in COURSE]}"


@pytest.mark.parametrize("path", COURSE, ids=[p.stem for p in COURSE])
def test_course_notebooks_and_their_blank_copies_name_the_kernel_make_install_registers(path):
    """A kernelspec other than the installed one's is rewritten by JupyterLab on open, so every
    notebook would open already marked modified."""
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().get_kernel_spec("python3")  # `ipykernel install --name python3`
    wanted = {"name": "python3", "display_name": installed.display_name, "language": installed.language}
    solved = nbformat.read(path, as_version=4)
    assert dict(solved.metadata.kernelspec) == wanted
    blank = student.make_blank(solved, student.notebook_number(path), name=path.name)
    assert dict(blank.metadata.kernelspec) == wanted


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
    run = job.execute_notebook(blank, path.parent, timeout=300, errors_only=False)
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
