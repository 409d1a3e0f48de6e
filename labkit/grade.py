"""Reading a notebook's cells, for the grader.

``check_labels`` names the exercises, ``defines`` finds the cell that defines a
function, ``compile_error`` says where a cell's SyntaxError is, ``find_submissions`` lists a class.
``python -m labkit grade`` grades with them: sandboxed, with verdicts computed outside the
student's process (``labkit.judge``, ``labkit.batch``, ``labkit.gradejob`` runs each notebook);
no printed line is ever a verdict.
Introduced in notebook 00."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from labkit.student import HEADING, RAISE, cell_source

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
COMPILE_ERRORS = {"SyntaxError", "IndentationError", "TabError"}  # the cell never ran


@dataclass
class ExerciseResult:
    """One exercise's verdict. ``name`` is the checker (``check.<name>(...)``)."""
    name: str
    label: str  # "1.2" ("" when the notebook does not say)
    status: str  # PASSED, FAILED or NOT_ATTEMPTED
    detail: str = ""  # the hint or the error, one line


def tags(cell: NotebookNode) -> list[str]:
    """A cell's tags ([] when it has none, or no metadata at all, as in a mangled submission)."""
    return cell.get("metadata", {}).get("tags", [])


def _first_line(text: str, width: int = 200) -> str:
    first = next((line.strip() for line in str(text).split("\n") if line.strip()), "")
    return first if len(first) <= width else first[:width - 3] + "..."


def defines(source: str, name: str) -> bool:
    """Whether a cell's top level defines ``name`` (def, class or assignment), read as text so
    that a cell with a SyntaxError still counts."""
    n = re.escape(name)
    return bool(re.search(rf"^(?:async[ \t]+def|def|class)[ \t]+{n}\b|^{n}[ \t]*(?::[^=\n]*)?=(?!=)",
                          source, re.M))


def compile_error(cell: NotebookNode, output: NotebookNode) -> str:
    """'SyntaxError: invalid syntax (line 2: `return x x`)' for the exercise cell that raised it."""
    first = _first_line(output.evalue)
    where = re.fullmatch(r"(.*?)\s*\([^()]*, line (\d+)\)", first)
    if not where:
        return f"{output.ename}: {first}" if first else output.ename
    message, line = where.group(1), int(where.group(2))
    lines = cell_source(cell).split("\n")
    code = f": `{_first_line(lines[line - 1], 80)}`" if 0 < line <= len(lines) and lines[line - 1].strip() else ""
    return f"{output.ename}: {message} (line {line}{code})"


def check_labels(cells: list[NotebookNode], number: int | None = None) -> list[str]:
    """The "N.k" label of each check cell, from the exercise heading or blank above it."""
    labels, start = [], 0
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or "check" not in tags(cell):
            continue
        found = [f"{m.group(1)}.{m.group(2)}" for c in reversed(cells[start:index])
                 for m in [(RAISE if c.cell_type == "code" else HEADING).search(cell_source(c))] if m]
        labels.append(found[0] if found else (f"{number}.{len(labels) + 1}" if number is not None else ""))
        start = index + 1
    return labels


def find_submissions(path: str | Path) -> list[Path]:
    """``path`` itself, or every *.ipynb under it (no checkpoints, no *.bak.ipynb backups)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                  and not p.name.endswith(".bak.ipynb"))
