"""Grade one untrusted submission: run it sandboxed, judge what its functions returned, here.

The submission's cells run in their own kernel, in a sandbox (``labkit.sandbox``), followed by
one harvest cell that evaluates each exercise's function on its checker's inputs and saves the
outcomes as data (``labkit.check.outcomes``). This process loads them safely and calls the same
``Checker.judge`` the notebook's check cell uses: it never runs student code, and no printed line
is a verdict. The exercises are those of the solved notebook of the same name; a submission
without one is an error. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import importlib
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from labkit import gradejob, sandbox
from labkit.check import core
from labkit.check import outcomes as oc
from labkit.grade import (COMPILE_ERRORS, FAILED, NOT_ATTEMPTED, PASSED, ExerciseResult, check_labels, compile_error,
                          defines, tags)
from labkit.reuse import reused
from labkit.student import notebook_number

CHECKER_MODULES = ("labkit.check",)
_CHECK = re.compile(r"\bcheck\.(\w+)\s*\(\s*(\w+)")


class NotGradable(ValueError):
    """A submission that cannot be graded at all (one line says why)."""


@dataclass
class Exercise:
    name: str  # the checker
    function: str  # the student's function it is called on
    label: str


@dataclass
class Limits:
    cell: int = 120  # seconds per cell (and per exercise in the harvest)
    notebook: int = 900  # seconds for the whole notebook
    memory: int = 8 << 30  # bytes of address space per process (0: none)
    sandboxed: bool = True


def _cell_source(cell: dict, index: int) -> str:
    source = cell.get("source")
    if source is None:
        raise NotGradable(f"cell {index + 1} has no 'source' (the file was edited by hand?): re-save it in Jupyter")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    if not isinstance(source, str):
        raise NotGradable(f"cell {index + 1}: 'source' is a {type(source).__name__}, not text")
    return source


def load_submission(path: Path) -> NotebookNode:
    """The notebook at ``path``, or NotGradable with one clear line for a mangled file."""
    raw = path.read_bytes()
    if not raw.strip():
        raise NotGradable("empty file")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotGradable(f"not valid JSON ({getattr(err, 'msg', err)}"
                          f"{f', line {err.lineno}' if hasattr(err, 'lineno') else ''}): not a notebook") from None
    if not isinstance(data, dict) or not ("cells" in data or "worksheets" in data):
        raise NotGradable("not a notebook (no 'cells')")
    if data.get("nbformat") != 4 or "worksheets" in data:
        raise NotGradable(f"nbformat {data.get('nbformat')} notebook: open and save it in Jupyter "
                          "(or `jupyter nbconvert --to notebook --nbformat 4`) to make it format 4")
    if not isinstance(data["cells"], list) or not all(isinstance(c, dict) for c in data["cells"]):
        raise NotGradable("'cells' is not a list of cells")
    seen: dict[str, int] = {}
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
    return nbformat.from_dict(data)


def exercises_of(solved: NotebookNode, number: int | None) -> list[Exercise]:
    """The exercises the solved notebook's check cells judge, with their labels."""
    labels = check_labels(solved.cells, number)
    found = []
    for cell in (c for c in solved.cells if c.cell_type == "code" and "check" in tags(c)):
        call = _CHECK.search(cell.source)
        if call:
            if any(e.name == call.group(1) for e in found):  # outcomes are kept per checker
                raise NotGradable(f"the solved notebook calls check.{call.group(1)} twice: one checker per exercise")
            found.append(Exercise(call.group(1), call.group(2), labels[len(found)] if len(found) < len(labels) else ""))
    return found


def harvest_seconds(exercises: list[Exercise], limits: Limits) -> int:
    """The harvest cell's time limit: each exercise's own limit, plus a minute to import labkit.

    A hanging exercise then uses up its own time only, and the ones after it are still graded.
    """
    return limits.cell * len(exercises) + 60


def kept_cells(nb: NotebookNode) -> list[int]:
    """Indices of the submission's cells that run when graded: code and markdown, no check cells."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type in ("code", "markdown") and "check" not in tags(c)]


def harvest_notebook(nb: NotebookNode, exercises: list[Exercise], cell_timeout: int,
                     modules: tuple[str, ...]) -> NotebookNode:
    """The submission without its check cells, then the one harvest cell."""
    out = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    kept = [nb.cells[i] for i in kept_cells(nb)]
    out.cells = [nbformat.v4.new_code_cell(c.source) if c.cell_type == "code" else nbformat.v4.new_markdown_cell(c.source)
                 for c in kept]
    for new, old in zip(out.cells, kept):
        new.metadata["tags"] = [t for t in tags(old) if isinstance(t, str)]
    todo = {e.name: e.function for e in exercises}
    out.cells.append(nbformat.v4.new_code_cell(oc.harvest_cell(todo, "../out/outcomes", cell_timeout, modules)))
    return out


def _summary(output: NotebookNode) -> str:
    first = next((line.strip() for line in str(output.get("evalue", "")).split("\n") if line.strip()), "")
    return f"{output.get('ename', 'Error')}: {first[:160]}" if first else str(output.get("ename", "Error"))


def _no_outcome(ex: Exercise, executed: NotebookNode | None, run: dict, finished: sandbox.Finished,
                limits: Limits) -> str:
    """Why the kernel recorded nothing for ``ex``: one line."""
    if finished.timed_out:
        return f"not graded: the notebook ran past its limit of {limits.notebook} s"
    if executed is None:
        return "not graded: the grading process was killed (did the notebook kill its parent process?)"
    cells, origin = executed.cells, run.get("origin", [])

    def where(i: int) -> str:  # the cell's number in the student's notebook
        return "the grading cell" if i == len(cells) - 1 else f"cell {origin[i] + 1 if i < len(origin) else i + 1}"
    if run.get("died_at") is not None:
        return f"not graded: the kernel died in {where(run['died_at'])} (os._exit, a crash or out of memory?)"
    if run.get("stuck_at") is not None:
        return f"not graded: the kernel did not stop after {where(run['stuck_at'])} timed out"
    last = [o for o in cells[-1].get("outputs", []) if o.get("output_type") == "error"]
    if (len(cells) - 1) in run.get("timed_out", []):
        return f"not graded: evaluating the exercises took longer than {run.get('harvest_timeout')} s"
    if not last:
        return "not graded: no outcome recorded"
    stopped = [i for i in run.get("timed_out", []) if i < len(cells) - 1]
    if stopped:  # e.g. `import torch` interrupted halfway: the grading cell's own import then fails
        return (f"not graded: the grading cell failed ({_summary(last[0])}) after {where(stopped[0])} was stopped "
                f"at its time limit of {limits.cell} s (an import cut off halfway?): grade again with a longer --timeout")
    return f"not graded: the grading cell failed ({_summary(last[0])})"


def judge_exercise(ex: Exercise, folder: Path, executed: NotebookNode | None, run: dict,
                   finished: sandbox.Finished, limits: Limits) -> tuple[str, str]:
    """(status, detail) of one exercise, from its outcomes file alone (plus why it has none)."""
    if ex.name not in core.CHECKERS:
        return FAILED, f"not graded: labkit has no checker named {ex.name} (see --checkers)"
    if ex.name in run.get("killed_by", []):
        return FAILED, KILLED
    if ex.name in run.get("stuck_by", []):
        return FAILED, STUCK.format(seconds=limits.cell)
    try:
        got, note = oc.load_outcomes(folder, ex.name)
    except FileNotFoundError:
        return FAILED, _no_outcome(ex, executed, run, finished, limits)
    except oc.MalformedOutcomes as err:
        return FAILED, f"its outcomes were tampered with ({err})"
    if got is None and run.get("cut"):
        cut = run["cut"]
        return FAILED, f"not graded: cell {cut['index'] + 1} {cut['what']}, before {ex.function} was defined"
    if got is None:
        cells = executed.cells if executed is not None else []
        for cell in (c for c in cells if c.cell_type == "code" and defines(c.source, ex.function)):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors and "triton" in str(errors[0].get("evalue", "")) and "ModuleNotFound" in str(errors[0].get("ename")):
                return NOT_ATTEMPTED, "skipped: Triton is not installed here"
            if errors and errors[0].get("ename") in COMPILE_ERRORS:
                return FAILED, f"{compile_error(cell, errors[0])} (in the exercise cell)"
            if errors and errors[0].get("ename") != "NotImplementedError":
                return FAILED, f"{_summary(errors[0])} (in the exercise cell)"
        return NOT_ATTEMPTED, note
    timed_out = next((o.error for o in got if isinstance(o, core.Outcome) and str(o.error).startswith(oc.TIMED_OUT)), "")
    if timed_out:
        return FAILED, f"timed out: {timed_out.removeprefix('TimeoutError: ')} (an endless loop?)"
    try:
        verdict = oc.judge_outcomes(core.CHECKERS[ex.name](), got)
    except oc.MalformedOutcomes as err:
        return FAILED, f"its outcomes were tampered with ({err})"
    except Exception as err:  # noqa: BLE001 - a value the checker cannot even examine
        returned = sorted({o.value.type_name if isinstance(o.value, oc.Unsupported) else type(o.value).__name__
                           for o in got if isinstance(o, core.Outcome) and o.ok})
        sentence = str(err).strip().split("\n")[0].split(". ")[0][:120]
        return FAILED, (f"could not judge what it returned ({', '.join(returned) or 'nothing'}): "
                        f"{type(err).__name__}: {sentence}")
    if verdict.status == "passed":
        return PASSED, ""
    if verdict.status == "not implemented":
        return NOT_ATTEMPTED, ""
    lines = [line.strip() for line in verdict.message.split("\n") if line.strip()]
    head = lines[0] if lines else ""
    raised = next((line for line in lines if line.startswith("your function raised ")), "")
    hint = raised or verdict.hint  # what it raised says more than "run it on these inputs"
    return FAILED, f"{hint} [{head}]" if hint else head


KILLED = "the kernel died while this exercise ran (os._exit, a crash or out of memory?)"
STUCK = ("timed out: no result within {seconds} s, and it did not stop when interrupted (it catches "
         "KeyboardInterrupt or blocks signals?)")


def _run_harvest(scratch: Path, name: str, nb: NotebookNode, exercises: list[Exercise], limits: Limits,
                 modules: tuple[str, ...], hidden: list[Path]):
    """Run the submission and harvest the outcomes in the sandbox: (executed notebook, run, finished).

    When the kernel dies in the harvest cell, or cannot be interrupted there, the exercise being
    evaluated (the first without an outcome file) is to blame. A death is first retried from that
    exercise (a thread started by an earlier one may have killed it); if it dies there again, or
    will not stop, it is recorded in ``run['killed_by']`` or ``run['stuck_by']`` and the
    submission runs again for the exercises after it, within the notebook's time limit in all.
    When one of the notebook's own cells kills or hangs the kernel, it runs again up to that cell
    (``run['cut']``): what was defined before it is graded.
    """
    work, out = scratch / "work", scratch / "out"
    work.mkdir()
    deadline, todo, retried, cut = time.monotonic() + limits.notebook, list(exercises), None, None
    blamed: dict[str, list[str]] = {"killed_by": [], "stuck_by": []}
    origin = kept_cells(nb)
    while True:
        seconds = harvest_seconds(todo, limits)
        ran = nb if cut is None else nbformat.from_dict({**nb, "cells": nb.cells[:cut["index"]]})
        nbformat.write(harvest_notebook(ran, todo, limits.cell, modules), work / name)
        (scratch / "job.json").write_text(json.dumps({"notebook": name, "timeout": limits.cell,
                                                      "harvest_timeout": seconds, "out": "../out"}))
        job = "/scratch/job.json" if limits.sandboxed else str(scratch / "job.json")
        finished = sandbox.run(gradejob.command(job), scratch,
                               timeout=max(1, int(deadline - time.monotonic())), memory=limits.memory,
                               sandboxed=limits.sandboxed, hidden=hidden)
        try:
            executed = nbformat.read(out / "executed.ipynb", as_version=4)
            run = json.loads((out / "run.json").read_text())
            run = run if isinstance(run, dict) else {}
        except (OSError, ValueError, nbformat.ValidationError):
            return None, dict(blamed), finished
        run.update(blamed, harvest_timeout=seconds, origin=origin, cut=cut)
        harvest = len(executed.cells) - 1
        died, stuck = run.get("died_at") == harvest, run.get("stuck_at") == harvest
        stop = run.get("died_at") if run.get("died_at") is not None else run.get("stuck_at")
        if cut is None and isinstance(stop, int) and 0 <= stop < harvest and not finished.timed_out:
            # a cell of the notebook itself killed or hung the kernel: grade what was defined before it
            cut = {"index": origin[stop], "what": "killed the kernel (os._exit or a crash?)"
                   if run.get("died_at") is not None else "did not stop when interrupted"}
            continue
        if not (died or stuck) or finished.timed_out:
            return executed, run, finished
        unharvested = [i for i, e in enumerate(todo) if not oc.outcomes_path(out / "outcomes", e.name).exists()]
        if not unharvested:
            return executed, run, finished
        culprit = todo[unharvested[0]]
        if died and retried != culprit.name:  # once more, starting with it
            retried, todo = culprit.name, todo[unharvested[0]:]
        else:
            blamed["killed_by" if died else "stuck_by"].append(culprit.name)
            todo = todo[unharvested[0] + 1:]
        if not todo or time.monotonic() >= deadline:
            return executed, run, finished


def grade_submission(path: str | Path, solutions: str | Path, limits: Limits = Limits(),
                     hidden: tuple[Path, ...] = (), modules: tuple[str, ...] = CHECKER_MODULES,
                     keep: Path | None = None) -> list[ExerciseResult]:
    """Grade the notebook at ``path`` against the solved notebook of the same name in ``solutions``."""
    path, solutions = Path(path), Path(solutions)
    solved_path = solutions / path.name
    if not solved_path.is_file():
        raise NotGradable(f"no solved notebook named {path.name} in {solutions}: not graded (renamed?)")
    nb = load_submission(path)
    solved = nbformat.read(solved_path, as_version=4)
    exercises = exercises_of(solved, notebook_number(path))
    for module in modules:
        importlib.import_module(module)
    scratch = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    try:
        executed, run, finished = _run_harvest(scratch, path.name, nb, exercises, limits, modules,
                                               [solutions.resolve(), *hidden])
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        results = []
        for ex in exercises:
            cell = next((s for s in sources if defines(s, ex.function)), "")
            used = reused(ex.name, ex.function, cell, sources)
            if used:
                status, detail = FAILED, f"uses {used}, which this exercise re-implements (static check of the code)"
            else:
                status, detail = judge_exercise(ex, scratch / "out" / "outcomes", executed, run, finished, limits)
            results.append(ExerciseResult(ex.name, ex.label, status, detail))
        return results
    finally:
        if keep is not None:
            shutil.copytree(scratch, keep / path.stem, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
