"""What must never reach a student: the lines of the solved notebooks' solution regions."""
from __future__ import annotations

from pathlib import Path

import nbformat

from labkit.grading.student import solution_regions

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def solution_lines(notebooks: Path = NOTEBOOKS, shortest: int = 13) -> set[str]:
    """Every line (stripped, at least ``shortest`` characters) that appears only inside a solution
    region of a solved notebook, never outside one."""
    inside, outside = set(), set()
    for path in notebooks.glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            lines = cell.source.split("\n")
            hidden = {i for a, b in solution_regions(cell.source, path.name) for i in range(a, b + 1)}
            for i, line in enumerate(lines):
                (inside if i in hidden else outside).add(line.strip())
    return {line for line in inside - outside if len(line) >= shortest}
