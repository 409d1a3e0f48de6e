"""``python -m labkit book [OUT]`` (``make book``): the course website, built from the stored outputs.

Each page is a notebook as a student gets it (:func:`student_view`): exercise cells blank, check
cells without output, written-answer cells empty, every other cell with the output it stored when
the solved notebook ran (no re-execution). A first cell says how to run it and links to the
notebook. Sphinx with MyST-NB builds the site (configuration in ``book/``); MathJax ships with the
site. The site is a tool beside the course: no course module imports it. Introduced for instructors
(docs/teaching.md).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit import course
from labkit.grading.student import make_blank, notebook_number

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_OUTPUT = ("exercise", "check")  # cells whose output a student's page must not show


def student_view(solved: NotebookNode, number: int | None, name: str) -> NotebookNode:
    """The blank copy, with the stored outputs of every cell that is neither an exercise nor a check."""
    page = make_blank(solved, number, name=name)
    for mine, theirs in zip(page.cells, solved.cells):
        tags = theirs.get("metadata", {}).get("tags", [])
        if theirs.cell_type == "code" and not any(t in tags for t in HIDDEN_OUTPUT):
            mine.outputs, mine.execution_count = theirs.outputs, theirs.execution_count
    run = nbformat.v4.new_markdown_cell(
        f"> **Run this notebook.** In a clone of the course, `make lab` opens your own copy, "
        f"`exercises/{name}`, in JupyterLab (no GPU needed). Or download it: "
        f"{{download}}`{name} <{name}>`. The exercises below are blank; every other cell shows the "
        f"output it printed when the course was built.")
    head = 1 if page.cells and page.cells[0].cell_type == "markdown" and page.cells[0].source.startswith("#") else 0
    page.cells = page.cells[:head] + [run] + page.cells[head:]  # after the title
    for i, cell in enumerate(page.cells):
        cell["id"] = cell.get("id") or f"cell-{i}"
    return page


def prepare(src: Path, notebooks: Path | None = None) -> list[str]:
    """Write the site's sources in ``src``: Sphinx's configuration, the index and the student views."""
    notebooks = notebooks or course.solved_notebooks()
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "book", src)
    names = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        solved = nbformat.read(path, as_version=4)
        page = student_view(solved, notebook_number(path), path.name)
        nbformat.write(page, src / path.name)
        names.append(path.stem)
    index = src / "index.md"
    index.write_text(index.read_text().replace("NOTEBOOKS", "\n".join(names)))
    return names


def build(out: Path) -> Path:
    """The website in ``out/html`` (sources in ``out/src``); Sphinx's warnings are errors."""
    prepare(out / "src")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
                           str(out / "src"), str(out / "html")], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sphinx-build failed:\n{done.stderr[-3000:]}")
    return out / "html"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "build" / "book"
    try:
        html = build(out)
    except RuntimeError as err:
        print(f"labkit book: {err}", file=sys.stderr)
        return 1
    print(f"wrote the course website to {html} (open {html / 'index.html'})")
    return 0
