"""Blank copies of the solved notebooks (the rest of grading is in ``labkit.grading``).

``python -m labkit student SRC [DEST]`` replaces every answer between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` by ``raise NotImplementedError("Exercise N.k: ...")``, never overwriting a
student's work. Introduced in notebook 00.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit import course


BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
WRITTEN_PLACEHOLDER = "*Your answer here.*"  # a blank written-answer cell (labkit.grading.written)
# "Exercise N.k" where a markdown line starts with it (a heading, bold, plain), not a mention in prose
HEADING = re.compile(r"^[#>*_ \t]*Exercise[ \t]+(\d+)\.(\d+)[ \t]*[:.)\-\u2013\u2014*_]*[ \t]*(.*)$", re.M)
RAISE = re.compile(r'NotImplementedError\("Exercise (\d+)\.(\d+)')


class SolutionMarkerError(ValueError):
    """A ``### BEGIN SOLUTION`` without its ``### END SOLUTION`` (or the other way round)."""


class BlankCopyError(RuntimeError):
    """Solution text survived in a blank copy (a bug in make_blank: nothing is written)."""


# ---------------------------------------------------------------- blank copies

def cell_source(cell: NotebookNode) -> str:
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
        m = HEADING.search(cell_source(cell)) if cell.cell_type == "markdown" else None
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
        source = cell_source(cell)
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
        if cell.cell_type == "markdown" and "written" in cell.metadata.get("tags", []) and not cell.source.strip():
            cell.source = WRITTEN_PLACEHOLDER  # where the student writes a written answer
    return blank


def verify_blank(solved: NotebookNode, blank: NotebookNode, name: str = "notebook") -> None:
    """Raise BlankCopyError if a marker, an output or a line of an answer survived in ``blank``."""
    inside, outside = set(), set()
    for index, cell in enumerate(solved.cells):
        lines = cell_source(cell).split("\n")
        regions = solution_regions(cell_source(cell), f"{name}, cell {index + 1}")
        hidden = {i for first, end in regions for i in range(first, end + 1)}
        for i, line in enumerate(lines):
            (inside if i in hidden else outside).add(line.strip())
    leaked = (inside - outside) - {""}
    if len(blank.cells) != len(solved.cells):
        raise BlankCopyError(f"{name}: {len(blank.cells)} cells in the blank copy, {len(solved.cells)} solved")
    for index, cell in enumerate(blank.cells):
        where = f"{name}, cell {index + 1}"
        source = cell_source(cell)
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
        return CopyResult(path, target, "kept", _kept_line([target], dest))
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
    count = sum('raise NotImplementedError("Exercise' in cell_source(c) for c in blank.cells if c.cell_type == "code")
    return CopyResult(path, target, "wrote", f"wrote {target} ({count} exercise{'s' * (count != 1)}){backup}")


def _kept_line(kept: list[Path], dest: Path) -> str:
    """One line for every existing copy left alone (``make lab`` prints it at each start)."""
    if len(kept) == 1:
        return f"kept your existing {kept[0]} (use --force to replace it; a backup is kept)"
    return f"kept your {len(kept)} existing copies in {dest} (use --force to replace them; a backup is kept)"


def make_student_copies(src: str | Path, dest: str | Path = "exercises", force: bool = False,
                        log=print) -> list[CopyResult]:
    """Blank copies of SRC (a notebook or a folder of NN_*.ipynb) in DEST; existing files are kept
    unless ``force``, which first saves them as DEST/NN_x.<timestamp>.bak.ipynb.

    ``log`` gets a line per copy written or failed, then one line for all the copies kept."""
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise FileNotFoundError(f"no such notebook or folder: {src}")
    dest.mkdir(parents=True, exist_ok=True)
    paths = [src] if src.is_file() else sorted(p for p in src.glob("[0-9][0-9]_*.ipynb")
                                               if not p.name.endswith(".bak.ipynb"))
    results = []
    for path in paths:
        results.append(_copy_one(path, dest, force))
        if results[-1].action != "kept":
            log(results[-1].message)
    kept = [r.target for r in results if r.action == "kept"]
    if kept:
        log(_kept_line(kept, dest))
    return results


# ---------------------------------------------------------------- command line

_STUDENT_HELP = """\
Make blank copies of the solved notebooks: each answer between '### BEGIN SOLUTION' and
'### END SOLUTION' becomes raise NotImplementedError("Exercise N.k: ...") (answers in markdown
cells are removed) and outputs are cleared. An existing copy in DEST is never overwritten;
with --force it is first saved as DEST/NN_x.<timestamp>.bak.ipynb."""
def cli_student(argv: list[str]) -> int:
    """``python -m labkit student [SRC [DEST]] [--force]`` (SRC defaults to the course's solved notebooks)."""
    parser = argparse.ArgumentParser(prog="python -m labkit student", description=_STUDENT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", metavar="SRC", nargs="?", default=None,
                        help="a solved notebook, or a folder of NN_*.ipynb notebooks (default: the "
                             "course's own, shipped with labkit)")
    parser.add_argument("dest", metavar="DEST", nargs="?", default="exercises",
                        help="folder for the blank copies (made if missing; default: exercises)")
    parser.add_argument("--force", action="store_true", help="replace existing copies, keeping a .bak.ipynb")
    args = parser.parse_args(argv)
    src = args.src if args.src is not None else course.solved_notebooks()
    try:
        results = make_student_copies(src, args.dest, force=args.force)
    except FileNotFoundError as err:
        print(f"labkit student: {err}", file=sys.stderr)
        return 2
    if not results:
        print(f"labkit student: no NN_*.ipynb notebooks in {src}", file=sys.stderr)
        return 1
    return int(any(r.action == "failed" for r in results))
