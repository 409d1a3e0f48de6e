"""Grade one untrusted submission: run it sandboxed, judge what its functions returned, here.

Three steps, none of which runs student code in the grader or reads a verdict from printed text:

1. **Read** (in a child with its own limits, ``labkit.grading.child``): the submission's file
   under caps, its cells, and the static reuse check of every exercise.
2. **Run** (``labkit.grading.sandbox``): its cells minus the check cells, then the harvest cell,
   in a fresh sandbox and scratch folder per run. What each run harvested is copied out safely
   into a folder of the grader's before the next run starts. When the kernel dies or hangs in
   the harvest, the exercise being evaluated is retried once, then blamed, and the run goes on
   with the exercises after it; when a cell of the notebook itself does, the notebook runs again
   up to that cell.
3. **Judge** (in a child with its own limits): each exercise's outcomes, decoded safely and
   judged by the same ``Checker.judge`` the notebook's check cell uses.

The exercises are those of the solved notebook of the same name; a submission without one is
an error. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labkit.grading import budget as bd
from labkit.grading import child, job, reuse, sandbox
from labkit.grading import outcomes as oc
from labkit.grading.harvest import RUNNING, harvest_cell
from labkit.grading.notebook import (COMPILE_ERRORS, NotGradable, Task, cell_records, compile_error, defines,
                                     exercises_of, parse_submission, read_file)
from labkit.grading.registry import exercise
from labkit.grading.student import notebook_number
from labkit.grading.verdict import ExerciseResult, Status, clean, first_line
from labkit.kernels.guard import memory_fault

CHECKER_MODULES = ("labkit.check",)
KILLED = "the kernel died while this exercise ran (os._exit, a crash or out of memory?)"
STUCK = ("timed out: no result within {seconds} s, and it did not stop when interrupted (it catches "
         "KeyboardInterrupt or blocks signals?)")


@dataclass
class Limits:
    cell: int = 120  # seconds per cell (and per exercise in the harvest)
    notebook: int = 900  # seconds for the whole notebook
    budget: bd.Budget = field(default_factory=bd.Budget)
    sandboxed: bool = True
    seed: int | None = None  # --seed: the checkers' random inputs, in the sandbox and the judge alike

    def env(self) -> dict[str, str]:
        from labkit.check.core import SEED_ENV
        return {} if self.seed is None else {SEED_ENV: str(self.seed)}


def harvest_seconds(tasks: list[Task], limits: Limits) -> int:
    """The harvest cell's time limit: each exercise's own limit, plus a minute to import labkit.

    A hanging exercise then uses up its own time only, and the ones after it are still graded."""
    return limits.cell * len(tasks) + 60


def kept_cells(cells: list[dict]) -> list[int]:
    """Indices of the submission's cells that run when graded: code and markdown, no check cells."""
    return [i for i, c in enumerate(cells) if c["cell_type"] in ("code", "markdown") and "check" not in c["tags"]]


def harvest_notebook(cells: list[dict], tasks: list[Task], cell_timeout: int, modules: tuple[str, ...]) -> dict:
    """The submission without its check cells, then the one harvest cell (a notebook, as JSON)."""
    out = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    for i in kept_cells(cells):
        c = cells[i]
        new = nbformat.v4.new_code_cell(c["source"]) if c["cell_type"] == "code" else \
            nbformat.v4.new_markdown_cell(c["source"])
        new.metadata["tags"] = list(c["tags"])
        out.cells.append(new)
    todo = {t.name: t.function for t in tasks}
    out.cells.append(nbformat.v4.new_code_cell(harvest_cell(todo, "../out/outcomes", cell_timeout, modules)))
    return out


# ------------------------------------------------------------------ 1. read (in a child)

def read_submission(path: str, tasks: list[list[str]]) -> dict:
    """The submission's cells and, per exercise, what it reuses; {'not_gradable': why} instead."""
    try:
        nb = parse_submission(read_file(path))
    except NotGradable as err:
        return {"not_gradable": str(err)}
    cells = cell_records(nb)
    reading = reuse.read([c["source"] for c in cells if c["cell_type"] == "code"])  # once for every exercise
    return {"cells": cells, "reused": {name: reuse.find(reading, exercise(name), function)
                                       for name, function, _ in tasks}}


# ------------------------------------------------------------------- 2. run (sandboxed)

def _report(finished: sandbox.Finished) -> dict:
    try:
        report = json.loads(finished.stdout) if finished.stdout else {}
    except (ValueError, RecursionError):
        report = {}
    return report if isinstance(report, dict) else {}


def run_submission(cells: list[dict], tasks: list[Task], limits: Limits, modules: tuple[str, ...],
                   hidden: list[Path], store: Path) -> dict:
    """Run the submission and harvest its outcomes; each exercise's outcome file is copied to
    ``store`` (or its problem recorded). Returns what the judge needs about the runs."""
    deadline, todo, retried, cut = time.monotonic() + limits.notebook, list(tasks), None, None
    blamed: dict[str, list[str]] = {"killed_by": [], "stuck_by": []}
    origin = kept_cells(cells)
    state = {"origin": origin, "hit": [], "bad": {}, "timed_out_notebook": False, "no_report": False}
    while True:
        seconds = harvest_seconds(todo, limits)
        ran = cells if cut is None else cells[:cut["index"]]
        nb = harvest_notebook(ran, todo, limits.cell, modules)
        scratch = sandbox.Scratch(limits.budget, sandbox.sandbox_ids() if limits.sandboxed else None)
        try:
            finished = sandbox.run(job.command(), scratch, stdin=json.dumps(
                {"notebook": nb, "timeout": limits.cell, "harvest_timeout": seconds,
                 "progress": f"../out/outcomes/{RUNNING}"}).encode(),
                timeout=max(1, int(deadline - time.monotonic())), budget=limits.budget,
                sandboxed=limits.sandboxed, hidden=hidden, modules=modules, env=limits.env())
            harvested = []
            for t in todo:
                try:
                    (store / oc.outcomes_name(t.name)).write_bytes(
                        scratch.read(f"out/outcomes/{oc.outcomes_name(t.name)}", oc.MAX_FILE))
                    harvested.append(t.name)
                except FileNotFoundError:
                    pass
                except (sandbox.Unreadable, OSError) as err:
                    state["bad"][t.name] = str(err)
                    harvested.append(t.name)
        finally:
            scratch.close()
        report = _report(finished)
        state["hit"] = sorted(set(state["hit"]) | set(finished.hit))
        state["timed_out_notebook"] = finished.timed_out
        if not report:
            state["no_report"] = True
            return {**state, **blamed, "run": {}, "cut": cut, "harvest_timeout": seconds}
        run = {k: report.get(k) for k in ("timed_out", "died_at", "stuck_at", "errors")}
        # blamed's lists are shared: what is blamed below shows in final too
        final = {**state, **blamed, "run": run, "cut": cut, "harvest_timeout": seconds, "cells_run": len(nb["cells"])}
        names = [t.name for t in todo]
        stopped = report.get("killed_stuck")
        if isinstance(stopped, str) and stopped in names and stopped not in harvested:
            # the job killed the kernel: this exercise would not stop; the ones after it run again
            blamed["stuck_by"].append(stopped)
            todo = todo[names.index(stopped) + 1:]
            if todo and time.monotonic() < deadline:
                continue
            return final
        harvest = len(nb["cells"]) - 1
        died, stuck = run.get("died_at") == harvest, run.get("stuck_at") == harvest
        stop = run.get("died_at") if run.get("died_at") is not None else run.get("stuck_at")
        if cut is None and isinstance(stop, int) and 0 <= stop < harvest and not finished.timed_out:
            # a cell of the notebook itself killed or hung the kernel: grade what was defined before it
            cut = {"index": origin[stop], "what": "killed the kernel (os._exit or a crash?)"
                   if run.get("died_at") is not None else "did not stop when interrupted"}
            if finished.hit:
                cut["what"] = f"reached the submission's limit of {_limits_line(finished.hit, limits.budget)}"
            continue
        if not (died or stuck) or finished.timed_out:
            return final
        unharvested = [i for i, t in enumerate(todo) if t.name not in harvested]
        if not unharvested:
            return final
        culprit = todo[unharvested[0]]
        if died and retried != culprit.name:  # once more, starting with it
            retried, todo = culprit.name, todo[unharvested[0]:]
        else:
            blamed["killed_by" if died else "stuck_by"].append(culprit.name)
            todo = todo[unharvested[0] + 1:]
        if not todo or time.monotonic() >= deadline:
            return final


# ------------------------------------------------------------------ 3. judge (in a child)

def _summary(error: list) -> str:
    ename, evalue = (list(error) + ["Error", ""])[:2]
    first = clean(first_line(evalue))
    return f"{clean(first_line(ename))}: {first[:160]}" if first else clean(first_line(ename))


def _limits_line(hit: list[str], budget: bd.Budget) -> str:
    return ", ".join(budget.describe(h) for h in hit)


def _no_outcome(runs: dict, limits: Limits) -> tuple[str, str]:
    """(why the kernel recorded nothing for an exercise, the limit it hit or '')."""
    hit = _limits_line(runs["hit"], limits.budget)
    if runs["timed_out_notebook"]:
        return f"not graded: the notebook ran past its limit of {limits.notebook} s", "time"
    if hit:
        return f"not graded: the submission reached its limit of {hit}", hit
    run = runs["run"]
    if runs["no_report"] or not run:
        return "not graded: the grading process was killed (did the notebook kill its parent process?)", ""
    cells_run, origin = runs.get("cells_run", 0), runs["origin"]

    def where(i: int) -> str:  # the cell's number in the student's notebook
        return "the grading cell" if i == cells_run - 1 else f"cell {origin[i] + 1 if i < len(origin) else i + 1}"
    if run.get("died_at") is not None:
        return f"not graded: the kernel died in {where(run['died_at'])} (os._exit, a crash or out of memory?)", ""
    if run.get("stuck_at") is not None:
        return f"not graded: the kernel did not stop after {where(run['stuck_at'])} timed out", ""
    errors = run.get("errors") or {}
    last = errors.get(str(cells_run - 1))
    if (cells_run - 1) in (run.get("timed_out") or []):
        return f"not graded: evaluating the exercises took longer than {runs['harvest_timeout']} s", ""
    if not last:
        return "not graded: no outcome recorded", ""
    stopped = [i for i in run.get("timed_out") or [] if isinstance(i, int) and i < cells_run - 1]
    if stopped:  # e.g. `import torch` interrupted halfway: the grading cell's own import then fails
        return (f"not graded: the grading cell failed ({_summary(last)}) after {where(stopped[0])} was stopped "
                f"at its time limit of {limits.cell} s (an import cut off halfway?): grade again with a longer "
                "--timeout"), ""
    return f"not graded: the grading cell failed ({_summary(last)})", ""


def judge_task(task: Task, store: Path, cells: list[dict], runs: dict, limits: Limits) -> ExerciseResult:
    """One exercise's verdict, from its outcomes file alone (plus why it has none)."""
    from labkit.check import core

    def result(status: Status, detail: str = "", **fields) -> ExerciseResult:
        return ExerciseResult(task.name, task.label, status, detail, **fields)
    if task.name not in core.CHECKERS:
        return result(Status.FAILED, f"not graded: labkit has no checker named {task.name} (see --checkers)",
                      graded=False)
    if task.name in runs["killed_by"]:
        return result(Status.FAILED, KILLED, limit=_limits_line(runs["hit"], limits.budget))
    if task.name in runs["stuck_by"]:
        return result(Status.FAILED, STUCK.format(seconds=limits.cell), timed_out=True)
    if task.name in runs["bad"]:
        return result(Status.FAILED, f"its outcomes were tampered with ({runs['bad'][task.name]})")
    path = store / oc.outcomes_name(task.name)
    if not path.exists():
        detail, limit = _no_outcome(runs, limits)
        return result(Status.FAILED, detail, graded=False, limit=limit, timed_out=limit == "time")
    try:
        got, note = oc.load_outcomes(path.read_bytes(), task.name)
    except oc.MalformedOutcomes as err:
        return result(Status.FAILED, f"its outcomes were tampered with ({err})")
    if got is None and runs["cut"]:
        cut = runs["cut"]
        return result(Status.FAILED, f"not graded: cell {cut['index'] + 1} {cut['what']}, before {task.function} "
                                     "was defined", graded=False, limit=_limits_line(runs["hit"], limits.budget))
    if got is None:
        kept = {j: cells[i]["source"] for j, i in enumerate(runs["origin"])}
        for j, source in kept.items():
            error = (runs["run"].get("errors") or {}).get(str(j))
            if not error or not defines(source, task.function):
                continue
            ename, evalue = (list(error) + ["", ""])[:2]
            if "triton" in str(evalue) and "ModuleNotFound" in str(ename):
                return result(Status.NOT_ATTEMPTED, "skipped: Triton is not installed here")
            if ename in COMPILE_ERRORS:
                return result(Status.FAILED, f"{compile_error(source, ename, evalue)} (in the exercise cell)",
                              raised=ename)
            if ename != "NotImplementedError":
                return result(Status.FAILED, f"{_summary(error)} (in the exercise cell)", raised=_summary(error))
        if note.startswith("not graded:"):
            return result(Status.FAILED, note, graded=False)
        return result(Status.NOT_ATTEMPTED, note)
    if any(o.timed_out for o in got if isinstance(o, core.Outcome)):
        return result(Status.FAILED, f"timed out: no result within {limits.cell} s (an endless loop?)", timed_out=True)
    try:
        verdict = oc.judge_outcomes(core.CHECKERS[task.name](), got)
    except oc.MalformedOutcomes as err:
        return result(Status.FAILED, f"its outcomes were tampered with ({err})")
    except Exception as err:  # noqa: BLE001 - a value the checker cannot even examine
        returned = sorted({o.value.type_name if isinstance(o.value, oc.Unsupported) else type(o.value).__name__
                           for o in got if isinstance(o, core.Outcome) and o.ok})
        sentence = str(err).strip().split("\n")[0].split(". ")[0][:120]
        return result(Status.FAILED, f"could not judge what it returned ({', '.join(returned) or 'nothing'}): "
                                     f"{type(err).__name__}: {sentence}")
    if verdict.status == "passed":
        return result(Status.PASSED)
    if verdict.status == "not implemented":
        return result(Status.NOT_ATTEMPTED)
    lines = [line.strip() for line in verdict.message.split("\n") if line.strip()]
    head = lines[0] if lines else ""
    raised = f"your function raised {clean(first_line(verdict.raised))}" if verdict.raised else ""
    fault = memory_fault(verdict.raised)  # a kernel's stray access: what was seen, then what to do
    hint = f"{clean(first_line(fault[0]))}: {fault[1]}" if fault else \
        raised or verdict.hint  # what it raised says more than "run it on these inputs"
    return result(Status.FAILED, f"{hint} [{head}]" if hint else head, raised=verdict.raised)


def judge_all(tasks: list[list[str]], store: str, cells: list[dict], runs: dict, limits: Limits,
              modules: tuple[str, ...]) -> list[dict]:
    """Every exercise's verdict, as dicts (the answer of the judging child)."""
    import importlib
    import os
    os.environ.update(limits.env())  # in the judging child only
    for module in modules:
        importlib.import_module(module)
    return [judge_task(Task(*t), Path(store), cells, runs, limits).as_dict() for t in tasks]


# -------------------------------------------------------------------------- the three

def grade_submission(path: str | Path, solutions: str | Path, limits: Limits = Limits(),
                     hidden: tuple[Path, ...] = (), modules: tuple[str, ...] = CHECKER_MODULES,
                     keep: Path | None = None) -> list[ExerciseResult]:
    """Grade the notebook at ``path`` against the solved notebook of the same name in ``solutions``."""
    path, solutions = Path(path), Path(solutions)
    solved_path = solutions / path.name
    if not solved_path.is_file():
        raise NotGradable(f"no solved notebook named {path.name} in {solutions}: not graded (renamed?)")
    tasks = exercises_of(nbformat.read(solved_path, as_version=4), notebook_number(path))
    plain = [[t.name, t.function, t.label] for t in tasks]
    try:
        read = child.in_child(read_submission, str(path), plain)
    except child.ChildFailed as err:
        raise NotGradable(f"reading it {err.reason}") from None
    if "not_gradable" in read:
        raise NotGradable(read["not_gradable"])
    cells = read["cells"]
    store = Path(tempfile.mkdtemp(prefix="labkit-outcomes-"))
    try:
        runs = run_submission(cells, tasks, limits, modules, [solutions.resolve(), *hidden], store)
        try:
            judged = [ExerciseResult.from_dict(d) for d in child.in_child(
                judge_all, plain, str(store), cells, runs, limits, modules)]
        except child.ChildFailed as err:
            judged = [ExerciseResult(t.name, t.label, Status.FAILED, f"not graded: judging its outcomes {err.reason}",
                                     graded=False) for t in tasks]
        if keep is not None:
            shutil.copytree(store, keep / path.stem, dirs_exist_ok=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    hit = _limits_line(runs["hit"], limits.budget)
    results = []
    for t, r in zip(tasks, judged):
        if hit and not r.limit:  # a limit reached on the way is part of every exercise's verdict
            r.limit = hit
            r.detail = (f"{r.detail}; " if r.detail else "") + f"the submission reached its limit of {hit}"
        used = read["reused"].get(t.name)
        if used:
            r = ExerciseResult(t.name, t.label, Status.FAILED, reuse.reuse_message(used), reused=used)
        results.append(r)
    return results
