"""Running a notebook headless and reading its cells, for the grader.

``execute_notebook`` runs a notebook in a fresh ``python3`` kernel (a time limit per cell, a dead
kernel reported); ``check_labels`` names the exercises, ``defines`` finds the cell that defines a
function, ``compile_error`` says where a cell's SyntaxError is, ``find_submissions`` lists a class.
``python -m labkit grade`` grades with them: sandboxed, with verdicts computed outside the
student's process (``labkit.judge``, ``labkit.batch``); no printed line is ever a verdict.
Introduced in notebook 00."""
from __future__ import annotations

import copy
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from labkit.student import HEADING, RAISE, cell_source

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
KERNEL = "python3"
COMPILE_ERRORS = {"SyntaxError", "IndentationError", "TabError"}  # the cell never ran


@dataclass
class ExerciseResult:
    """One exercise's verdict. ``name`` is the checker (``check.<name>(...)``)."""
    name: str
    label: str  # "1.2" ("" when the notebook does not say)
    status: str  # PASSED, FAILED or NOT_ATTEMPTED
    detail: str = ""  # the hint or the error, one line


@dataclass
class Execution:
    """A notebook executed in memory: the cells with fresh outputs and what went wrong."""
    nb: NotebookNode
    timed_out: set[int] = field(default_factory=set)  # indices of cells that hit the timeout
    died_at: int | None = None  # index of the cell during which the kernel died
    stuck_at: int | None = None  # index of a timed-out cell the kernel did not stop


_TIMEOUT_ENAME = "LabkitCellTimeout"
_QUIET = logging.getLogger("labkit.grade")  # nbclient logs every timeout as an ERROR: the report says it
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def execute_notebook(nb: NotebookNode, cwd: str | Path, timeout: int = 120,
                     last_timeout: int | None = None) -> Execution:
    """Run a copy of ``nb`` in a fresh ``python3`` kernel started in ``cwd``; cells keep going after
    errors and after a timeout (the kernel is interrupted); a dead kernel stops the run.

    Each cell has ``timeout`` seconds; the last has ``last_timeout`` when given (the grader's
    harvest cell, which evaluates every exercise)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    run = Execution(copy.deepcopy(nb))
    for cell in run.nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    def on_cell_executed(cell, cell_index, execute_reply):
        if (execute_reply or {}).get("content", {}).get("ename") == _TIMEOUT_ENAME:
            run.timed_out.add(cell_index)

    last = run.nb.cells[-1] if run.nb.cells else None
    client = NotebookClient(
        run.nb, timeout=timeout, kernel_name=KERNEL,
        timeout_func=None if last_timeout is None else lambda cell: last_timeout if cell is last else timeout, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": f"timed out after {timeout} s", "traceback": []},
        resources={"metadata": {"path": str(cwd)}}, on_cell_executed=on_cell_executed, log=_QUIET,
        iopub_timeout=10)  # also how long an interrupted cell has to stop
    # The kernel's own stdout/stderr (not the cells' output) would only clutter the report.
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        for index, cell in enumerate(run.nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                run.died_at = index
                break
            # An interrupted cell ends with an error output; none means the kernel is still busy.
            if index in run.timed_out and not any(o.output_type == "error" for o in cell.outputs):
                run.stuck_at = index
                break
    return run


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
