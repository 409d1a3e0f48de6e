"""Blank copies of the solved notebooks, and headless grading of a student's notebooks.

``python -m labkit student SRC [DEST]`` replaces every answer between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` by ``raise NotImplementedError("Exercise N.k: ...")``, never overwriting a
student's work. ``python -m labkit grade PATH`` runs notebooks in fresh kernels, without touching
the files, and reports each check cell as passed / failed / not attempted. Introduced in notebook 00.
"""
from __future__ import annotations

import argparse
import copy
import csv
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit.check.core import NOT_IMPLEMENTED, PASS
from labkit.device import TRITON_MISSING

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
KERNEL = "python3"
# "Exercise N.k" where a markdown line starts with it (a heading, bold, plain), not a mention in prose
_HEADING = re.compile(r"^[#>*_ \t]*Exercise[ \t]+(\d+)\.(\d+)[ \t]*[:.)\-\u2013\u2014*_]*[ \t]*(.*)$", re.M)
_RAISE = re.compile(r'NotImplementedError\("Exercise (\d+)\.(\d+)')
_CHECK_CALL = re.compile(r"\bcheck\.(\w+)\s*\(")


class SolutionMarkerError(ValueError):
    """A ``### BEGIN SOLUTION`` without its ``### END SOLUTION`` (or the other way round)."""


class BlankCopyError(RuntimeError):
    """Solution text survived in a blank copy (a bug in make_blank: nothing is written)."""


# ---------------------------------------------------------------- blank copies

def _source(cell: NotebookNode) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def solution_regions(source: str, where: str) -> list[tuple[int, int]]:
    """(first, last) line numbers (0-based, inclusive) of each BEGIN..END region in ``source``."""
    regions, start = [], None
    for i, line in enumerate(source.split("\n"), 1):
        has_begin, has_end = BEGIN in line, END in line
        if has_begin and has_end:
            raise SolutionMarkerError(f"{where}, line {i}: put {BEGIN!r} and {END!r} on lines of their own")
        if has_begin:
            if start is not None:
                raise SolutionMarkerError(f"{where}, line {i}: {BEGIN!r} again before the {END!r} "
                                          f"of line {start + 1}")
            start = i - 1
        elif has_end:
            if start is None:
                raise SolutionMarkerError(f"{where}, line {i}: {END!r} without a {BEGIN!r} before it")
            regions.append((start, i - 1))
            start = None
    if start is not None:
        raise SolutionMarkerError(f"{where}, line {start + 1}: {BEGIN!r} has no matching {END!r}")
    return regions


def notebook_number(path: str | Path) -> int | None:
    """N of a notebook named ``NN_topic.ipynb`` (None for other names)."""
    match = re.match(r"(\d+)_", Path(path).name)
    return int(match.group(1)) if match else None


def _task_text(cells: list[NotebookNode], index: int, before: str) -> tuple[str | None, str]:
    """('N.k' from the nearest markdown heading above the cell, or None; the short task)."""
    label, task = None, ""
    for cell in reversed(cells[:index]):
        if cell.cell_type == "code":
            break
        m = _HEADING.search(_source(cell)) if cell.cell_type == "markdown" else None
        if m:
            label, task = f"{m.group(1)}.{m.group(2)}", m.group(3)
            break
    task = re.sub(r"[*_`#$\\\"]", "", task).strip(" .:-") if task else ""
    if not task:
        defs = re.findall(r"^\s*def\s+(\w+)", before, flags=re.M)
        task = f"fill in {defs[-1]}" if defs else "fill in the solution"
    return label, task[:70].rstrip()


def make_blank(nb: NotebookNode, number: int | None = None, name: str = "notebook") -> NotebookNode:
    """A blank copy: solution regions replaced (code) or removed (markdown), outputs cleared.

    ``number`` is the notebook's N for the labels "Exercise N.k" (k counts the code cells with
    a solution region, unless the markdown cell above names its exercise "Exercise N.k").
    ``name`` is used in error messages. The input notebook is not modified.
    """
    blank = copy.deepcopy(nb)
    k = 0
    for index, cell in enumerate(blank.cells):
        source = _source(cell)
        where = f"{name}, cell {index + 1} ({cell.cell_type})"
        regions = solution_regions(source, where)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)  # run timings, like outputs
        if not regions:
            cell.source = source
            continue
        lines = source.split("\n")
        new: list[str] = []
        if cell.cell_type == "code":
            k += 1
            heading, task = _task_text(blank.cells, index, "\n".join(lines[:regions[0][0]]))
            label = heading or (f"{number}.{k}" if number is not None else f"{k}")
        last = 0
        for first, end in regions:
            new += lines[last:first]
            if cell.cell_type == "code":
                indent = re.match(r"\s*", lines[first]).group(0)
                new.append(f'{indent}raise NotImplementedError("Exercise {label}: {task}")')
            last = end + 1
        cell.source = "\n".join(new + lines[last:])
    return blank


def verify_blank(solved: NotebookNode, blank: NotebookNode, name: str = "notebook") -> None:
    """Raise BlankCopyError if a marker, an output or a line of an answer survived in ``blank``."""
    inside, outside = set(), set()
    for index, cell in enumerate(solved.cells):
        lines = _source(cell).split("\n")
        regions = solution_regions(_source(cell), f"{name}, cell {index + 1}")
        hidden = {i for first, end in regions for i in range(first, end + 1)}
        for i, line in enumerate(lines):
            (inside if i in hidden else outside).add(line.strip())
    leaked = (inside - outside) - {""}
    if len(blank.cells) != len(solved.cells):
        raise BlankCopyError(f"{name}: {len(blank.cells)} cells in the blank copy, {len(solved.cells)} solved")
    for index, cell in enumerate(blank.cells):
        where = f"{name}, cell {index + 1}"
        source = _source(cell)
        if "BEGIN SOLUTION" in source or "END SOLUTION" in source:
            raise BlankCopyError(f"{where}: a solution marker survived")
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            raise BlankCopyError(f"{where}: outputs were not cleared")
        for line in source.split("\n"):
            if line.strip() in leaked:
                raise BlankCopyError(f"{where}: a line of the answer survived: {line.strip()!r}")


@dataclass
class CopyResult:
    source: Path
    target: Path
    action: str  # "wrote", "kept" or "failed"
    message: str  # the line printed for it


def _copy_one(path: Path, dest: Path, force: bool) -> CopyResult:
    target = dest / path.name
    if target.exists() and target.resolve() == path.resolve():
        return CopyResult(path, target, "failed", f"refusing to replace the source {path} by its own blank copy")
    if target.exists() and not force:
        return CopyResult(path, target, "kept", f"kept your existing {target} (use --force to replace it; "
                                                "a backup is kept)")
    try:
        solved = nbformat.read(path, as_version=4)
        blank = make_blank(solved, notebook_number(path), name=str(path))
        nbformat.validate(blank)
        verify_blank(solved, blank, name=str(path))
    except (SolutionMarkerError, BlankCopyError, nbformat.ValidationError, OSError, ValueError) as err:
        return CopyResult(path, target, "failed", f"could not make a blank copy of {path}: {err}")
    backup, tmp = "", dest / f".{path.name}.tmp"
    try:
        if target.exists():
            stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
            while (saved := dest / f"{path.stem}.{stamp}{f'-{n}' * (n > 1)}.bak.ipynb").exists():
                n += 1
            shutil.copy2(target, saved)
            backup = f"; your previous version is saved as {saved}"
        nbformat.write(blank, tmp)  # then read back and checked before it replaces anything
        verify_blank(solved, nbformat.read(tmp, as_version=4), name=str(target))
        os.replace(tmp, target)
    except (BlankCopyError, OSError) as err:
        tmp.unlink(missing_ok=True)
        return CopyResult(path, target, "failed", f"could not write {target}: {err}{backup}")
    count = sum('raise NotImplementedError("Exercise' in _source(c) for c in blank.cells if c.cell_type == "code")
    return CopyResult(path, target, "wrote", f"wrote {target} ({count} exercise{'s' * (count != 1)}){backup}")


def make_student_copies(src: str | Path, dest: str | Path = "exercises", force: bool = False,
                        log=print) -> list[CopyResult]:
    """Blank copies of SRC (a notebook or a folder of NN_*.ipynb) in DEST; existing files are kept
    unless ``force``, which first saves them as DEST/NN_x.<timestamp>.bak.ipynb."""
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise FileNotFoundError(f"no such notebook or folder: {src}")
    dest.mkdir(parents=True, exist_ok=True)
    paths = [src] if src.is_file() else sorted(p for p in src.glob("[0-9][0-9]_*.ipynb")
                                               if not p.name.endswith(".bak.ipynb"))
    results = []
    for path in paths:
        results.append(_copy_one(path, dest, force))
        log(results[-1].message)
    return results


# ---------------------------------------------------------------- grading

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


def execute_notebook(nb: NotebookNode, cwd: str | Path, timeout: int = 120) -> Execution:
    """Run a copy of ``nb`` in a fresh ``python3`` kernel started in ``cwd``; cells keep going after
    errors and after a timeout (the kernel is interrupted); a dead kernel stops the run."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    run = Execution(copy.deepcopy(nb), timeout)
    for cell in run.nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    def on_cell_executed(cell, cell_index, execute_reply):
        if (execute_reply or {}).get("content", {}).get("ename") == _TIMEOUT_ENAME:
            run.timed_out.add(cell_index)

    client = NotebookClient(
        run.nb, timeout=timeout, kernel_name=KERNEL, allow_errors=True, interrupt_on_timeout=True,
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


def _tags(cell: NotebookNode) -> list[str]:
    return cell.metadata.get("tags", [])


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
    if output.ename == "AssertionError":
        hint = next((line.strip()[5:].strip() for line in str(output.evalue).split("\n")
                     if line.strip().startswith("hint:")), "")
        return f"{hint} [{first}]" if hint and first else hint or first or "AssertionError"
    return f"{output.ename}: {first}" if first else output.ename


def _verdict(run: Execution, cells: list[NotebookNode], index: int, start: int,
             name: str | None) -> tuple[str, str]:
    cell = cells[index]
    stop = run.died_at if run.died_at is not None else run.stuck_at
    if stop is not None and index >= stop:
        if run.died_at is None:
            return FAILED, f"not run: the kernel did not stop after cell {stop + 1} timed out"
        if index == stop:
            return FAILED, "kernel died while running this check (os._exit, a crash or out of memory?)"
        return FAILED, f"kernel died in cell {stop + 1} ({_first_line(_source(cells[stop]), 40)}) before this check ran"
    if index in run.timed_out:
        return FAILED, f"timed out after {run.timeout} s"
    if not _source(cell).strip():
        return FAILED, "the check cell is empty"
    errors = [o for o in cell.outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    if errors:
        detail = _error_summary(errors[0])
        if errors[0].ename != "AssertionError":
            for i in range(start, index):
                above = [o for o in cells[i].get("outputs", []) if o.output_type == "error"]
                if "exercise" in _tags(cells[i]) and (above or i in run.timed_out):
                    why = f"timed out after {run.timeout} s" if i in run.timed_out else _error_summary(above[0])
                    detail += f" (the exercise cell above failed: {why})"
                    break
        return FAILED, detail
    if _line_pattern(PASS, name).search(text):
        return PASSED, ""
    if _line_pattern(NOT_IMPLEMENTED, name).search(text):
        return NOT_ATTEMPTED, ""
    if TRITON_MISSING in text:  # printed by %%needs_triton where Triton cannot be installed
        return NOT_ATTEMPTED, "skipped: Triton is not installed here"
    call = f"check.{name}({name})" if name else "check.<name>(<name>)"
    return FAILED, f"the check printed no verdict (is the cell still `{call}`?)"


def results_of(run: Execution, number: int | None = None) -> list[ExerciseResult]:
    """The verdict of every check cell (tag ``check``) of an executed notebook."""
    cells, results, start = run.nb.cells, [], 0
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or "check" not in _tags(cell):
            continue
        call = _CHECK_CALL.search(_source(cell))
        name = call.group(1) if call else None
        labels = [f"{m.group(1)}.{m.group(2)}" for c in reversed(cells[start:index])
                  for m in [(_RAISE if c.cell_type == "code" else _HEADING).search(_source(c))] if m]
        label = labels[0] if labels else (f"{number}.{len(results) + 1}" if number is not None else "")
        status, detail = _verdict(run, cells, index, start, name)
        results.append(ExerciseResult(name or f"cell {index + 1}", label, status, detail, index + 1))
        start = index + 1
    return results


def grade_notebook(path: str | Path, timeout: int = 120) -> list[ExerciseResult]:
    """Execute the notebook at ``path`` (in memory; the file is never written) and judge its checks."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    return results_of(execute_notebook(nb, path.parent.resolve(), timeout), notebook_number(path))


def find_submissions(path: str | Path) -> list[Path]:
    """``path`` itself, or every *.ipynb under it (no checkpoints, no *.bak.ipynb backups)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                  and not p.name.endswith(".bak.ipynb"))


# ---------------------------------------------------------------- command line

_STUDENT_HELP = """\
Make blank copies of the solved notebooks: each answer between '### BEGIN SOLUTION' and
'### END SOLUTION' becomes raise NotImplementedError("Exercise N.k: ...") (answers in markdown
cells are removed) and outputs are cleared. An existing copy in DEST is never overwritten;
with --force it is first saved as DEST/NN_x.<timestamp>.bak.ipynb."""
_GRADE_HELP = """\
Run notebooks headless, each in a fresh python3 kernel in its own folder, on an in-memory copy
(files are never modified), and report every check cell (tag 'check') as 'passed', 'failed: <hint>'
or 'not attempted'. A cell past --timeout is interrupted and the run goes on; a dead kernel fails
the rest of its notebook. Exit status: 0 if every exercise passed, 1 if not, 2 for a bad PATH."""
_CSV_HELP = ("write FILE with columns notebook,exercise,status,detail: a row per exercise (passed, failed, "
             "not attempted), then per notebook a row with status 'score' and detail 'k/n' (or status "
             "'error' if the notebook could not be run)")


def cli_student(argv: list[str]) -> int:
    """``python -m labkit student SRC [DEST] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m labkit student", description=_STUDENT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", metavar="SRC", help="a solved notebook, or a folder of NN_*.ipynb notebooks")
    parser.add_argument("dest", metavar="DEST", nargs="?", default="exercises",
                        help="folder for the blank copies (made if missing; default: exercises)")
    parser.add_argument("--force", action="store_true", help="replace existing copies, keeping a .bak.ipynb")
    args = parser.parse_args(argv)
    try:
        results = make_student_copies(args.src, args.dest, force=args.force)
    except FileNotFoundError as err:
        print(f"labkit student: {err}", file=sys.stderr)
        return 2
    if not results:
        print(f"labkit student: no NN_*.ipynb notebooks in {args.src}", file=sys.stderr)
        return 1
    return int(any(r.action == "failed" for r in results))


def cli_grade(argv: list[str]) -> int:
    """``python -m labkit grade PATH [--timeout S] [--csv FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m labkit grade", description=_GRADE_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="PATH", help="a notebook, or a folder searched recursively for *.ipynb")
    parser.add_argument("--timeout", type=int, default=120, metavar="SECONDS",
                        help="limit for each cell, in seconds (default: 120)")
    parser.add_argument("--csv", metavar="FILE", help=_CSV_HELP)
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error("--timeout must be at least 1 second")
    root = Path(args.path)
    if not root.exists():
        print(f"labkit grade: no such notebook or folder: {root}", file=sys.stderr)
        return 2
    paths = find_submissions(root)
    if not paths:
        print(f"labkit grade: no notebooks (*.ipynb) under {root}", file=sys.stderr)
        return 2
    rows, all_passed, total, passed = [], True, 0, 0
    for path in paths:
        shown = path.relative_to(root).as_posix() if root.is_dir() else str(path)
        print(path, flush=True)
        try:
            results = grade_notebook(path, args.timeout)
        except Exception as err:  # noqa: BLE001 - one broken submission must not stop the class
            why = f"{type(err).__name__}: {_first_line(err)}"
            print(f"  could not grade it: {why}")
            rows.append([shown, "", "error", why])
            all_passed = False
            continue
        for r in results:
            title = f"Exercise {r.label} ({r.name})" if r.label else r.name
            print(f"  {title}: {r.status}" + (f": {r.detail}" if r.detail else ""))
            rows.append([shown, r.name, r.status, r.detail])
        k = sum(r.status == PASSED for r in results)
        print(f"  {k}/{len(results)} passed" + ("" if results else " (no check cells found)"), flush=True)
        rows.append([shown, "", "score", f"{k}/{len(results)}"])
        all_passed &= k == len(results)
        total, passed = total + len(results), passed + k
    if len(paths) > 1:
        print(f"{len(paths)} notebooks: {passed}/{total} exercises passed")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["notebook", "exercise", "status", "detail"]] + rows)
        print(f"wrote {args.csv}")
    return 0 if all_passed else 1
