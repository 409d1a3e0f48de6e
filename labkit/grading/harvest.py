"""The harvest: in the student's kernel, after the submission's cells, evaluate each exercise's
function on its checker's inputs and save what it did as data (``labkit.grading.outcomes``).

The grader appends one cell, :func:`harvest_cell`. It first undoes what the student's cells can
have done to the imports: every labkit module (and every extra checker module) is dropped from
``sys.modules`` and loaded again from its read-only file by its absolute path, with ``sys.path``
back to the installation's folders and the grader's PYTHONPATH (none the sandbox can write) and
``sys.meta_path`` to the installation's own finders. So a cell that replaced ``labkit.grading.harvest.harvest``, a checker, ``core.evaluate``
or a reference, or planted a fake ``labkit`` in the working folder, changes nothing that is
evaluated. What a cell does to Python itself or to torch in memory is not undone (README).
Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import importlib
import os
import signal
from pathlib import Path

from labkit.check import core
from labkit.grading.outcomes import TIMED_OUT, save_outcomes, type_name, write_fresh


RUNNING = "running"  # beside the outcome files: the exercise being evaluated (the job watches it)


class _Timeout(BaseException):
    pass


def harvest(exercises: dict[str, str], namespace: dict, folder: str | Path, seconds: int = 120,
            modules: tuple[str, ...] = ("labkit.check",)) -> None:
    """For each ``{checker name: function name}``, evaluate the student's function on the checker's
    inputs and save the outcomes (one file per exercise).

    A missing function is saved as None; each exercise gets ``seconds`` (SIGALRM), after which
    its remaining inputs are recorded as timed out.
    """
    for module in modules:
        importlib.import_module(module)
    os.makedirs(folder, exist_ok=True)
    running = os.path.join(folder, RUNNING)  # which exercise runs now: the job stops one that will not stop

    def alarm(*_):
        raise _Timeout
    for name, fn_name in exercises.items():
        if name not in core.CHECKERS:  # the grader has it, the sandbox did not load it
            save_outcomes(folder, name, None, f"not graded: the checker {name} did not load in the sandbox (a "
                                              "--checkers module importing a file beside it that it cannot see?)")
            continue
        fn = namespace.get(fn_name)
        if fn is None:
            save_outcomes(folder, name, None, f"no function named {fn_name} in the notebook")
            continue
        if not callable(fn):
            save_outcomes(folder, name, None, f"{fn_name} is a {type_name(fn)}, not a function")
            continue
        checker = core.CHECKERS[name]()
        write_fresh(running, name.encode())
        outcomes: list = []
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(max(1, int(seconds)))
        try:
            run = checker.prepare(fn) if checker.prepare else fn
            for i, (first, (args, kwargs)) in enumerate(zip(checker.first_of_each(), checker.inputs())):
                outcomes.append(outcomes[first] if first < i else core.evaluate(run, args, kwargs))
        except (_Timeout, KeyboardInterrupt) as stop:  # KeyboardInterrupt: raised by the function (no one presses stop here)
            timed_out = isinstance(stop, _Timeout)
            error = f"{TIMED_OUT} {seconds} s" if timed_out else "KeyboardInterrupt"
            outcomes += [core.Outcome(error=error, timed_out=timed_out)] * (len(checker.inputs()) - len(outcomes))
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        save_outcomes(folder, name, outcomes)
    write_fresh(running, b"")


_BOOTSTRAP = '''def _labkit_grade(namespace):
    import importlib.util, os, sys
    roots = {roots!r}
    for name in [m for m in list(sys.modules) if m.split(".")[0] in roots]:
        del sys.modules[name]
    homes = tuple(os.path.realpath(p) for p in {{sys.prefix, sys.base_prefix, sys.exec_prefix}})
    given = {{os.path.realpath(p) for p in {pythonpath!r}}}

    def trusted(entry):  # the installation's folders and the grader's PYTHONPATH, none the sandbox can write
        real = os.path.realpath(entry)
        writable = os.geteuid() != 0 and os.access(real, os.W_OK)
        return bool(entry) and (real in given or real.startswith(homes)) and not writable
    sys.path[:] = [p for p in sys.path if trusted(p)]
    sys.path_importer_cache.clear()

    def installed(finder):
        cls = finder if isinstance(finder, type) else type(finder)
        home = sys.modules.get(cls.__module__)
        where = os.path.realpath(getattr(home, "__file__", None) or "")
        return getattr(home, cls.__qualname__, None) is cls and (
            cls.__module__ in ("_frozen_importlib", "_frozen_importlib_external")
            or where.startswith(tuple(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix))))
    sys.meta_path[:] = [f for f in sys.meta_path if installed(f)]
    for name, origin, package in {origins!r}:
        spec = importlib.util.spec_from_file_location(
            name, origin, submodule_search_locations=[os.path.dirname(origin)] if package else None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    from labkit.grading import harvest
    harvest.harvest({exercises!r}, namespace, {folder!r}, {seconds!r}, {modules!r})


_labkit_grade(globals())
'''


def origins(modules: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """(name, file, is a package) of labkit and of each extra checker module's top package, as the
    grader finds them (the same paths inside the sandbox, read-only)."""
    import importlib.util
    found, seen = [], set()
    for name in ("labkit", *modules):
        top = name.split(".")[0]
        if top in seen:
            continue
        seen.add(top)
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            raise ModuleNotFoundError(f"checker module {top} is not importable here")
        found.append((top, os.path.realpath(spec.origin), bool(spec.submodule_search_locations)))
    return found


def harvest_cell(exercises: dict[str, str], folder: str, seconds: int, modules: tuple[str, ...]) -> str:
    """The source of the one cell the grader appends after a submission's cells.

    Dropped from ``sys.modules`` and imported again: labkit, the checker modules, and the modules
    beside them that they import (``sandbox.checker_files``), so every checker registers anew."""
    from labkit.grading.sandbox import checker_files
    found = origins(modules)
    roots = {n for n, _, _ in found} | {p.stem for p in checker_files(modules) if p.suffix == ".py"}
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return _BOOTSTRAP.format(roots=sorted(roots), origins=found, exercises=dict(exercises), pythonpath=pythonpath,
                             folder=folder, seconds=int(seconds), modules=tuple(modules))
