"""Running a notebook headless, and the in-process check a student can run on their own work.

``execute_notebook`` runs a notebook in a fresh ``python3`` kernel (a time limit per cell, a dead
kernel reported); ``check_labels`` names the exercises. ``grade_notebook`` runs a notebook with the
solved notebook's check cells and reads their printed verdicts: that trusts the notebook, so it is
only for one's own work. ``python -m labkit grade`` grades untrusted submissions: sandboxed, with
verdicts computed outside the student's process (``labkit.judge``, ``labkit.batch``). Introduced in
notebook 00."""
from __future__ import annotations

import copy
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit import course
from labkit.check.core import NOT_IMPLEMENTED, PASS
from labkit.device import TRITON_MISSING
from labkit.student import HEADING, RAISE, cell_source, notebook_number

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
KERNEL = "python3"
_CHECK_CALL = re.compile(r"\bcheck\.(\w+)\s*\(")
COMPILE_ERRORS = {"SyntaxError", "IndentationError", "TabError"}  # the cell never ran
_CHECK_FAILURES = {"AssertionError", "CheckFailed"}  # a checker's verdict (CheckFailed: labkit.check's short form)


@dataclass
class ExerciseResult:
    """One check cell's verdict. ``name`` is the checker (``check.<name>(...)``)."""
    name: str
    label: str  # "1.2" ("" when the notebook does not say)
    status: str  # PASSED, FAILED or NOT_ATTEMPTED
    detail: str = ""  # the hint or the error, one line
    cell: int = 0  # 1-based position of the check cell


@dataclass
class Execution:
    """A notebook executed in memory: the cells with fresh outputs and what went wrong."""
    nb: NotebookNode
    timeout: int
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

    run = Execution(copy.deepcopy(nb), timeout)
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


def _line_pattern(template: str, name: str | None) -> re.Pattern:
    """A regex for one of core's fixed lines (PASS, NOT_IMPLEMENTED) printed by checker ``name``."""
    body, seen_n = "", False
    for piece in re.split(r"(\{name\}|\{n\})", template):
        if piece == "{name}":
            body += re.escape(name) if name else r"\w+"
        elif piece == "{n}":
            body += "(?P=n)" if seen_n else r"(?P<n>\d+)"
            seen_n = True
        else:
            body += re.escape(piece)
    return re.compile("^" + body + "$", re.M)


def _error_summary(output: NotebookNode) -> str:
    first = _first_line(output.evalue)
    if output.ename in _CHECK_FAILURES:
        hint = next((line.strip()[5:].strip() for line in str(output.evalue).split("\n")
                     if line.strip().startswith("hint:")), "")
        return f"{hint} [{first}]" if hint and first else hint or first or "AssertionError"
    return f"{output.ename}: {first}" if first else output.ename


def defines(source: str, name: str) -> bool:
    """Whether a cell's top level defines ``name`` (def, class or assignment), read as text so
    that a cell with a SyntaxError still counts."""
    n = re.escape(name)
    return bool(re.search(rf"^(?:async[ \t]+def|def|class)[ \t]+{n}\b|^{n}[ \t]*(?::[^=\n]*)?=(?!=)",
                          source, re.M))


def _exercise_of(cells: list[NotebookNode], index: int, name: str | None) -> int | None:
    """The exercise cell the check at ``index`` judges: the nearest one above it that defines
    ``name`` (not merely the nearest exercise: the solved notebook's check cells run at the end)."""
    if name is None:
        return None
    return next((i for i in range(index - 1, -1, -1) if cells[i].cell_type == "code"
                 and "exercise" in tags(cells[i]) and defines(cell_source(cells[i]), name)), None)


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


def _verdict(run: Execution, cells: list[NotebookNode], index: int, name: str | None) -> tuple[str, str]:
    cell = cells[index]
    stop = run.died_at if run.died_at is not None else run.stuck_at
    if stop is not None and index >= stop:
        if run.died_at is None:
            return FAILED, f"not run: the kernel did not stop after cell {stop + 1} timed out"
        if index == stop:
            return FAILED, "kernel died while running this check (os._exit, a crash or out of memory?)"
        return FAILED, f"kernel died in cell {stop + 1} ({_first_line(cell_source(cells[stop]), 40)}) before this check ran"
    if index in run.timed_out:
        return FAILED, f"timed out after {run.timeout} s"
    if not cell_source(cell).strip():
        return FAILED, "the check cell is empty"
    errors = [o for o in cell.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    owner = _exercise_of(cells, index, name)
    owner_errors = [o for o in cells[owner].get("outputs", []) if o.output_type == "error"] if owner is not None else []
    if owner_errors and owner_errors[0].ename in COMPILE_ERRORS:  # the student's code never ran
        return FAILED, compile_error(cells[owner], owner_errors[0])
    if errors:
        detail = _error_summary(errors[0])
        if errors[0].ename not in _CHECK_FAILURES and owner is not None:
            if owner in run.timed_out:
                detail += f" (the exercise cell above failed: timed out after {run.timeout} s)"
            elif owner_errors:
                detail += f" (the exercise cell above failed: {_error_summary(owner_errors[0])})"
        return FAILED, detail
    if _line_pattern(PASS, name).search(text):
        return PASSED, ""
    if _line_pattern(NOT_IMPLEMENTED, name).search(text):
        return NOT_ATTEMPTED, ""
    if TRITON_MISSING in text:  # printed by %%needs_triton where Triton cannot be installed
        return NOT_ATTEMPTED, "skipped: Triton is not installed here"
    call = f"check.{name}({name})" if name else "check.<name>(<name>)"
    return FAILED, f"the check printed no verdict (is the cell still `{call}`?)"


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


def results_of(run: Execution, number: int | None = None,
               labels: list[str] | None = None) -> list[ExerciseResult]:
    """The verdict of every check cell (tag ``check``) of an executed notebook."""
    cells, results = run.nb.cells, []
    labels = labels or check_labels(cells, number)
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or "check" not in tags(cell):
            continue
        call = _CHECK_CALL.search(cell_source(cell))
        name = call.group(1) if call else None
        status, detail = _verdict(run, cells, index, name)
        results.append(ExerciseResult(name or f"cell {index + 1}", labels[len(results)], status,
                                      detail, index + 1))
    return results


def with_canonical_checks(nb: NotebookNode, solved: NotebookNode) -> NotebookNode:
    """The submission without its check cells, followed by the solved notebook's check cells."""
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if "check" not in tags(c)]
    out.cells += [copy.deepcopy(c) for c in solved.cells if c.cell_type == "code" and "check" in tags(c)]
    return out


def grade_notebook(path: str | Path, timeout: int = 120,
                   solutions: str | Path | None = None) -> list[ExerciseResult]:
    """Execute the notebook at ``path`` (in memory; the file is never written) and judge its checks.

    With the solved notebook of the same name in ``solutions``, its check cells are the ones
    that run (at the end), and its exercise list is the one graded. By default, the course's own.
    """
    path = Path(path)
    solutions = course.solved_notebooks() if solutions is None else solutions
    nb = nbformat.read(path, as_version=4)
    number = notebook_number(path)
    solved_path = Path(solutions) / path.name if solutions is not None else None
    if solved_path is None or not solved_path.is_file() or solved_path.resolve() == path.resolve():
        return results_of(execute_notebook(nb, path.parent.resolve(), timeout), number)
    solved = nbformat.read(solved_path, as_version=4)
    labels = check_labels(solved.cells, number)
    run = execute_notebook(with_canonical_checks(nb, solved), path.parent.resolve(), timeout)
    return results_of(run, number, labels)


def find_submissions(path: str | Path) -> list[Path]:
    """``path`` itself, or every *.ipynb under it (no checkpoints, no *.bak.ipynb backups)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                  and not p.name.endswith(".bak.ipynb"))
