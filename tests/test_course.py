"""labkit.course: the solved notebooks and the data are package data, so an installed wheel works.

The wheel test builds labkit's wheel, installs it outside the repository, and from there makes the
blank copies, reads the data and runs a solved notebook, with the clone nowhere on the path.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labkit import course, systems
from labkit.grading import sandbox

ROOT = Path(__file__).resolve().parents[1]


def test_a_clone_finds_its_own_notebooks_and_data():
    assert course.solved_notebooks().resolve() == ROOT / "notebooks"
    assert course.data_dir().resolve() == ROOT / "data"
    assert systems.DATA_DIR.resolve() == ROOT / "data"


def test_the_grading_sandbox_does_not_see_the_solved_notebooks():
    solved = course.solved_notebooks().resolve()
    seen = sandbox.readable_paths(("labkit.check",))
    assert ROOT / "labkit" in seen and not any(solved == p or p in solved.parents for p in seen), seen


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """labkit's wheel, built from this checkout and installed with --target into a folder outside it."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so no build/ folder is left in (or stale files taken from) the checkout.
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "exercises", "*.egg-info", "__pycache__", "screenshots", ".pytest_cache"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(pip + ["wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel, = (tmp / "dist").glob("labkit-*.whl")
    install = subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp / "site")}
    return tmp / "site", work, env


def _python(code: str, work: Path, env: dict) -> str:
    run = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_the_wheel_carries_the_notebooks_and_the_data(installed_wheel):
    site, work, env = installed_wheel
    out = json.loads(_python(
        "import json, labkit; from labkit import course, systems\n"
        "print(json.dumps([labkit.__file__, str(course.solved_notebooks()),"
        " sorted(p.name for p in course.solved_notebooks().glob('*.ipynb')),"
        " list(systems.load_matrix('bcsstk01').shape)]))", work, env))
    assert Path(out[0]).is_relative_to(site), "labkit was imported from the clone, not the wheel"
    assert Path(out[1]).is_relative_to(site)
    assert out[2] == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert out[3] == [48, 48]


def test_the_grading_sandbox_hides_the_notebooks_a_wheel_ships(installed_wheel):
    site, work, env = installed_wheel
    out = json.loads(_python(
        "import json; from labkit.grading import sandbox\n"
        "argv = sandbox.bwrap_argv(['true'], __import__('pathlib').Path('/nonexistent'))\n"
        "print(json.dumps([[str(p) for p in sandbox.course_secrets()], argv]))", work, env))
    notebooks = str((site / "labkit" / "course" / "notebooks").resolve())
    assert out[0] == [notebooks]
    assert any(out[1][i:i + 2] == ["--tmpfs", notebooks] for i in range(len(out[1])))


def test_blank_copies_and_a_solved_notebook_run_from_the_wheel(installed_wheel):
    site, work, env = installed_wheel
    made = subprocess.run([sys.executable, "-m", "labkit", "student"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert len(list((work / "exercises").glob("*.ipynb"))) == len(list((ROOT / "notebooks").glob("*.ipynb")))
    # The solved notebook 00, taken from the installed package, run top to bottom in a kernel that
    # sees only the wheel's labkit.
    _python(
        "import nbformat, shutil; from labkit import course\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read(course.solved_notebooks() / '00_start_here.ipynb', as_version=4)\n"
        "nb.cells.append(nbformat.v4.new_code_cell('import labkit; print(labkit.__file__)'))\n"
        "NotebookClient(nb, timeout=300, kernel_name='python3').execute()\n"
        "nbformat.write(nb, 'ran.ipynb')", work, env)
    ran = nbformat.read(work / "ran.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in ran.cells if c.cell_type == "code" for o in c.outputs)
    assert "✔ normalize:" in text and "cases passed" in text
    assert str(site) in text.splitlines()[-1]
