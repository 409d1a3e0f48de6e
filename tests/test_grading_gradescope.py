"""labkit.grading.gradescope: the autograder zip holds what Gradescope runs and no solution, and its
run_autograder grades a submission into a results.json Gradescope reads (run here with this
checkout's venv in place of the one setup.sh installs, which needs the network)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from labkit.grading import gradescope
from labkit.grading.student import make_blank
from solutions import solution_lines

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    return gradescope.build(tmp_path_factory.mktemp("gs") / "autograder.zip")


def test_the_zip_has_setup_and_run_at_its_root_and_no_solution_anywhere(autograder):
    with zipfile.ZipFile(autograder) as z:
        names = z.namelist()
        assert {"setup.sh", "run_autograder"} <= set(names)
        assert all((z.getinfo(n).external_attr >> 16) & 0o111 for n in ("setup.sh", "run_autograder"))
        assert sorted(n for n in names if n.startswith("solutions/")) == \
            sorted(f"solutions/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb"))
        texts = {n: z.read(n) for n in names if not n.endswith(".whl")}
        wheel, = [n for n in names if n.endswith(".whl")]
        with zipfile.ZipFile(io.BytesIO(z.read(wheel))) as w:  # labkit's references are public: its notebooks are not
            texts.update({f"{wheel}:{n}": w.read(n) for n in w.namelist() if n.endswith(".ipynb")})
        assert any(n.endswith(".ipynb") for n in texts if ".whl:" in n)
    secret = solution_lines()
    assert len(secret) > 100  # the probe would see a leak
    for name, data in texts.items():
        text = data.decode(errors="replace")
        assert "BEGIN SOLUTION" not in text, name
        if name.endswith(".ipynb"):
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        leaked = secret & {line.strip() for line in text.split("\n")}
        assert not leaked, (name, sorted(leaked)[:3])


def test_only_the_wheels_sources_leave_the_clone(tmp_path):
    """A clone that grades its class holds submissions and grades beside the course: none goes into the zip."""
    root = tmp_path / "clone"
    for name in (*gradescope.WHEEL_SOURCES, "submissions/alice", "attack-submissions-1/c1", ".venv/lib"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith((".toml", ".md")):
            (root / name).write_text("x")
        else:
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / "07_x.ipynb").write_text("a student's work")
    gradescope.copy_wheel_sources(root, tmp_path / "course")
    copied = {p.relative_to(tmp_path / "course").as_posix() for p in (tmp_path / "course").rglob("*")}
    assert copied == {"pyproject.toml", "README.md", "labkit", "labkit/07_x.ipynb", "data", "data/07_x.ipynb",
                      "notebooks"}


@pytest.mark.needs("bubblewrap")
def test_run_autograder_grades_a_submission_into_results_json(autograder, tmp_path):
    home = tmp_path / "autograder"
    (home / "submission").mkdir(parents=True)
    with zipfile.ZipFile(autograder) as z:
        z.extractall(home / "source")
    (home / "venv").symlink_to(sys.prefix)  # what setup.sh installs
    nb = make_blank(nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4), 0)
    cell = next(c for c in nb.cells if 'NotImplementedError("Exercise 0.1' in c.source)
    cell.source = cell.source.replace(cell.source.split("\n")[-1], "    return e / e.sum(dim, keepdim=True)")
    nbformat.write(nb, home / "submission" / "00_start_here.ipynb")
    run = subprocess.run(["bash", str(home / "source" / "run_autograder")], env={**os.environ, "AUTOGRADER": str(home)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = json.loads((home / "results" / "results.json").read_text())
    assert results["score"] == 1.0, results["tests"][0]["output"]
    assert results["tests"][0]["name"] == "00_start_here: Exercise 0.1 (normalize)"
