"""Reading notebooks for the grader: submissions (untrusted, read under caps), solved notebooks,
the exercises they check, and a class folder.

``read_submission`` opens a file without following a link, refuses anything but a regular file
with one name (no hard link), caps its size, its cells' code and the total code before anything
parses them; ``find_submissions`` lists a class and refuses every link in it.
``exercises_of`` reads the solved notebook's check cells; ``check_labels``, ``defines`` and
``compile_error`` read cells. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit.grading.student import HEADING, RAISE, cell_source

COMPILE_ERRORS = {"SyntaxError", "IndentationError", "TabError"}  # the cell never ran
MAX_NOTEBOOK = 32 << 20  # bytes of a submission (the course's largest solved notebook: 0.3 MB)
MAX_CELL = 64 << 10  # characters of code in one cell (the largest solved cell: 6 KB)
MAX_CODE = 512 << 10  # characters of code in all cells together
_CHECK = re.compile(r"\bcheck\.(\w+)\s*\(\s*(\w+)")


class NotGradable(ValueError):
    """A submission that cannot be graded at all (one line says why)."""


@dataclass
class Task:
    """One exercise of a notebook: its checker, the student's function it is called on, its label."""
    name: str
    function: str
    label: str


def tags(cell: NotebookNode) -> list[str]:
    """A cell's tags ([] when it has none, or no metadata at all, as in a mangled submission)."""
    found = cell.get("metadata", {}).get("tags", [])
    return [t for t in found if isinstance(t, str)] if isinstance(found, list) else []


def _first_line(text: str, width: int = 200) -> str:
    first = next((line.strip() for line in str(text).split("\n") if line.strip()), "")
    return first if len(first) <= width else first[:width - 3] + "..."


def defines(source: str, name: str) -> bool:
    """Whether a cell's top level defines ``name`` (def, class or assignment), read as text so
    that a cell with a SyntaxError still counts."""
    n = re.escape(name)
    return bool(re.search(rf"^(?:async[ \t]+def|def|class)[ \t]+{n}\b|^{n}[ \t]*(?::[^=\n]*)?=(?!=)",
                          source, re.M))


def compile_error(source: str, ename: str, evalue: str) -> str:
    """'SyntaxError: invalid syntax (line 2: `return x x`)' for the exercise cell that raised it."""
    first = _first_line(evalue)
    where = re.fullmatch(r"(.*?)\s*\([^()]*, line (\d+)\)", first)
    if not where:
        return f"{ename}: {first}" if first else ename
    message, line = where.group(1), int(where.group(2))
    lines = source.split("\n")
    code = f": `{_first_line(lines[line - 1], 80)}`" if 0 < line <= len(lines) and lines[line - 1].strip() else ""
    return f"{ename}: {message} (line {line}{code})"


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


def exercises_of(solved: NotebookNode, number: int | None) -> list[Task]:
    """The exercises the solved notebook's check cells judge, with their labels."""
    labels = check_labels(solved.cells, number)
    found: list[Task] = []
    for cell in (c for c in solved.cells if c.cell_type == "code" and "check" in tags(c)):
        call = _CHECK.search(cell.source)
        if call:
            if any(e.name == call.group(1) for e in found):  # outcomes are kept per checker
                raise NotGradable(f"the solved notebook calls check.{call.group(1)} twice: one checker per exercise")
            found.append(Task(call.group(1), call.group(2), labels[len(found)] if len(found) < len(labels) else ""))
    return found


def cell_records(nb: NotebookNode) -> list[dict]:
    """The cells as plain data (type, source, tags, id): what the grader keeps of a parsed submission."""
    return [{"cell_type": c.cell_type, "source": c.source, "tags": tags(c), "id": str(c.get("id", ""))}
            for c in nb.cells]


def read_file(path: str | Path, cap: int = MAX_NOTEBOOK) -> bytes:
    """The bytes of a submission: a regular file with a single name (no symbolic or hard link),
    at most ``cap`` bytes; NotGradable otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == 40:
            raise NotGradable("a symbolic link, not a notebook: refused") from None
        raise NotGradable(f"cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotGradable("not a regular file: refused")
        if st.st_nlink > 1:
            raise NotGradable(f"a hard link ({st.st_nlink} names for one file), not a notebook of its own: refused")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise NotGradable(f"larger than {cap >> 20} MiB: not graded")
    return data


def _cell_source(cell: dict, index: int) -> str:
    source = cell.get("source")
    if source is None:
        raise NotGradable(f"cell {index + 1} has no 'source' (the file was edited by hand?): re-save it in Jupyter")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    if not isinstance(source, str):
        raise NotGradable(f"cell {index + 1}: 'source' is a {type(source).__name__}, not text")
    return source


def parse_submission(raw: bytes) -> NotebookNode:
    """The notebook in ``raw``, or NotGradable with one clear line for a mangled or oversized one."""
    if not raw.strip():
        raise NotGradable("empty file")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise NotGradable(f"not valid JSON ({getattr(err, 'msg', type(err).__name__)}"
                          f"{f', line {err.lineno}' if hasattr(err, 'lineno') else ''}): not a notebook") from None
    if not isinstance(data, dict) or not ("cells" in data or "worksheets" in data):
        raise NotGradable("not a notebook (no 'cells')")
    if data.get("nbformat") != 4 or "worksheets" in data:
        raise NotGradable(f"nbformat {str(data.get('nbformat'))[:10]} notebook: open and save it in Jupyter "
                          "(or `jupyter nbconvert --to notebook --nbformat 4`) to make it format 4")
    if not isinstance(data["cells"], list) or not all(isinstance(c, dict) for c in data["cells"]):
        raise NotGradable("'cells' is not a list of cells")
    seen: dict[str, int] = {}
    code = 0
    for i, cell in enumerate(data["cells"]):
        cell["source"] = _cell_source(cell, i)
        given = cell.get("metadata", {}).get("tags", []) if isinstance(cell.get("metadata"), dict) else None
        if given is None:
            raise NotGradable(f"cell {i + 1}: 'metadata' is not a mapping")
        if not isinstance(given, list):
            raise NotGradable(f"cell {i + 1}: tags given as {type(given).__name__} {str(given)[:30]!r}, not a list")
        if "id" in cell:
            if cell["id"] in seen:
                raise NotGradable(f"cells {seen[cell['id']] + 1} and {i + 1} have the same id {str(cell['id'])[:30]!r}")
            seen[cell["id"]] = i
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotGradable(f"cell {i + 1}: unknown cell type {str(cell.get('cell_type'))[:20]!r}")
        if cell["cell_type"] == "code":
            if len(cell["source"]) > MAX_CELL:
                raise NotGradable(f"cell {i + 1} holds {len(cell['source']) >> 10} KiB of code, more than the "
                                  f"{MAX_CELL >> 10} KiB a cell may have: not graded")
            code += len(cell["source"])
    if code > MAX_CODE:
        raise NotGradable(f"{code >> 10} KiB of code, more than the {MAX_CODE >> 10} KiB a notebook may have: not graded")
    return nbformat.from_dict(data)


def find_submissions(path: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(notebooks to grade, [(path, why it is refused)]): ``path`` itself, or every *.ipynb under
    it (no checkpoints, no *.bak.ipynb backups). A link anywhere in the folder, to a file or a
    folder, is refused and not followed."""
    path = Path(path)
    if path.is_symlink():
        return [], [(path, "a symbolic link: refused")]
    if path.is_file():
        return [path], []
    found, refused = [], []
    for folder, dirs, files in os.walk(path, followlinks=False):
        here = Path(folder)
        if ".ipynb_checkpoints" in here.parts:
            continue
        for name in sorted(dirs + files):
            p = here / name
            if p.is_symlink():
                refused.append((p, "a symbolic link: refused (submissions must be files of their own)"))
            elif name in files and name.endswith(".ipynb") and not name.endswith(".bak.ipynb"):
                found.append(p)
    return sorted(found), sorted(refused)
