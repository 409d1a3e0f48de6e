"""Wrong answers made mechanically: AST mutants of every exercise's solution (issue 20, item 2).

A small mutator over ``ast`` (mutation libraries such as mutmut mutate files and rerun a test
command; here each mutant is one function judged by its checker, so a few operators over the
solution's lines do the job). Only the lines between ``### BEGIN SOLUTION`` and ``### END
SOLUTION`` are mutated: what the student writes. Operators, the mistakes students make:

- ``compare``: ``<`` for ``<=`` and back, ``>`` for ``>=``, ``==`` for ``!=``;
- ``operator``: ``+`` for ``-``, ``*`` for ``/`` and back;
- ``drop term``: ``a + b`` or ``a - b`` becomes ``a``;
- ``negate``: ``-x`` becomes ``x``;
- ``off by one``: a small integer ``n`` becomes ``n + 1`` or ``n - 1``; a slice bound ``e`` becomes ``e + 1``;
- ``axis``: ``dim``/``axis`` -1 for 0 and 0 or 1 for -1;
- ``keepdim``: ``keepdim=True`` becomes ``False``;
- ``initial value``: ``-inf`` becomes ``0.0``;
- ``dtype``: ``float64`` becomes ``float32``, ``float32`` becomes ``float16``;
- ``swapped arguments``: the first two positional arguments of a call change places.

``python tests/mutation.py [--exercise NAME] [--all]`` runs the mutants and prints the rates;
``tests/test_mutation.py`` runs a fixed sample of them in ``make test``.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import io
import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_SWAP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
_SWAP_OP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_DTYPES = {"float64": "float32", "float32": "float16"}
_NOT_SWAPPED = {"range", "print", "isinstance", "getattr", "setattr", "max", "min", "zip", "enumerate"}


@dataclass(frozen=True)
class Exercise:
    """One exercise of a solved notebook: its checker, its function, the cell and what runs before it."""

    notebook: str
    name: str  # the checker: check.<name>
    function: str
    setup: str  # the notebook's first code cell (its imports)
    cell: str  # the exercise cell, solution included
    triton: bool


@dataclass(frozen=True)
class Mutant:
    exercise: Exercise
    operator: str
    where: str  # "line 7: `m = x.amax(dim=-1)`" of the exercise cell
    source: str  # the mutated exercise cell
    changed: str  # the mutated line as it reads after the mutation (what names a mutant in the tests)


def exercises() -> list[Exercise]:
    """Every checked exercise of the solved notebooks whose cell holds its solution."""
    from labkit.grading.notebook import exercises_of, tags
    found = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        setup = code[0].source if code else ""
        for task in exercises_of(nb, int(path.name[:2])):
            cell = next((c.source for c in code if "exercise" in tags(c) and BEGIN in c.source and
                         re.search(rf"^def {task.function}\b", c.source, re.M)), None)
            if cell is not None:
                found.append(Exercise(path.name, task.name, task.function, setup, cell, "@triton.jit" in cell))
    return found


def _python(cell: str) -> str:
    """The cell as Python: a leading %%needs_triton magic is dropped (the module imports Triton itself)."""
    return "\n".join(line for line in cell.split("\n") if not line.startswith("%%"))


def _solution_lines(source: str) -> tuple[int, int]:
    lines = source.split("\n")
    lo = next(i for i, line in enumerate(lines, 1) if BEGIN in line)
    hi = next(i for i, line in enumerate(lines, 1) if END in line)
    return lo, hi


def _is_inf(node: ast.AST) -> bool:
    """-inf written as -math.inf, -np.inf, -torch.inf, -float('inf') or float('-inf')."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = node.operand
        return (isinstance(inner, ast.Attribute) and inner.attr == "inf") or \
            (isinstance(inner, ast.Call) and getattr(inner.func, "id", "") == "float" and inner.args and
             isinstance(inner.args[0], ast.Constant) and inner.args[0].value == "inf")
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "float" and node.args and \
        isinstance(node.args[0], ast.Constant) and node.args[0].value == "-inf"


def _variants(node: ast.AST):
    """(operator, replacement or None to mutate in place, in-place function) for one node."""
    if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAP_CMP:
        yield "compare", lambda n: n.ops.__setitem__(0, _SWAP_CMP[type(n.ops[0])]())
    if isinstance(node, ast.BinOp) and type(node.op) in _SWAP_OP:
        yield "operator", lambda n: setattr(n, "op", _SWAP_OP[type(n.op)]())
        if isinstance(node.op, (ast.Add, ast.Sub)):
            yield "drop term", lambda n: n.left
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
        yield ("initial value", lambda n: ast.Constant(0.0)) if _is_inf(node) else ("negate", lambda n: n.operand)
    if _is_inf(node) and isinstance(node, ast.Call):
        yield "initial value", lambda n: ast.Constant(0.0)
    if isinstance(node, ast.Constant) and type(node.value) is int and -8 <= node.value <= 8:
        yield "off by one", lambda n: ast.Constant(n.value + 1)
        yield "off by one", lambda n: ast.Constant(n.value - 1)
    if isinstance(node, ast.Slice):
        for bound in ("lower", "upper"):
            if getattr(node, bound) is not None:
                yield "off by one", lambda n, b=bound: setattr(n, b, ast.BinOp(getattr(n, b), ast.Add(), ast.Constant(1)))
    if isinstance(node, ast.keyword) and node.arg in ("dim", "axis") and isinstance(node.value, (ast.Constant, ast.UnaryOp)):
        value = ast.literal_eval(node.value)
        if isinstance(value, int):
            yield "axis", lambda n, v=value: setattr(n, "value", ast.Constant(0 if v == -1 else -1))
    if isinstance(node, ast.keyword) and node.arg in ("keepdim", "keepdims") and \
            isinstance(node.value, ast.Constant) and node.value.value is True:
        yield "keepdim", lambda n: setattr(n, "value", ast.Constant(False))
    if isinstance(node, ast.Attribute) and node.attr in _DTYPES:
        yield "dtype", lambda n: setattr(n, "attr", _DTYPES[n.attr])
    if isinstance(node, ast.Call) and len(node.args) >= 2 and getattr(node.func, "id", "") not in _NOT_SWAPPED \
            and not any(isinstance(a, ast.Starred) for a in node.args[:2]):
        yield "swapped arguments", lambda n: n.args.__setitem__(slice(0, 2), [n.args[1], n.args[0]])


def mutants(ex: Exercise) -> list[Mutant]:
    """Every mutant of the exercise's solution lines, in source order (deterministic)."""
    source = _python(ex.cell)
    lo, hi = _solution_lines(source)
    tree = ast.parse(source)
    original = ast.unparse(tree)
    lines = source.split("\n")
    sites = [(i, op) for i, node in enumerate(ast.walk(tree)) if lo < getattr(node, "lineno", 0) < hi
             for op, _ in _variants(node)]
    found, seen = [], set()
    counts: dict[int, int] = {}
    for i, op in sites:
        k = counts[i] = counts.get(i, -1) + 1  # the k-th variant of node i
        mutated = copy.deepcopy(tree)
        node = list(ast.walk(mutated))[i]
        apply = list(_variants(node))[k][1]
        replacement = apply(node)
        if isinstance(replacement, ast.AST) and replacement is not node and not isinstance(node, ast.keyword):
            _replace(mutated, node, replacement)
        text = ast.unparse(ast.fix_missing_locations(mutated))
        if text in seen or text == original:
            continue
        seen.add(text)
        line = getattr(node, "lineno", 0)
        changed = next((b for a, b in zip(original.split("\n"), text.split("\n")) if a != b), "").strip()
        found.append(Mutant(ex, op, f"line {line}: `{lines[line - 1].strip()[:70]}`", text, changed))
    return found


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[j for j, v in enumerate(value) if v is old][0]] = new
                return


# ------------------------------------------------------------------------------ running them

@dataclass
class Verdict:
    mutant: Mutant | None
    status: str  # "rejected", "accepted", "does not run", "timed out"
    hint: str = ""
    seeds: str = ""  # for an accepted mutant: the seeds under which it was also accepted


class _TimedOut(BaseException):
    pass


def _load(ex: Exercise, cell: str, tag: str):
    """The exercise's function, from a module made of the notebook's setup cell and ``cell`` (Triton needs files)."""
    folder = Path(tempfile.mkdtemp(prefix="labkit-mutant-"))
    path = folder / f"mutant_{tag}.py"
    setup = "\n".join(line for line in ex.setup.split("\n") if not line.startswith(("%", "!")))
    path.write_text(setup + "\n\n" + _python(cell) + "\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(io.StringIO()):
        spec.loader.exec_module(module)
    return getattr(module, ex.function)


def judge(ex: Exercise, cell: str, tag: str, seconds: int = 60) -> tuple[str, str]:
    """(status, hint) of the exercise's checker on the function defined by ``cell``."""
    from labkit import check
    from labkit.check.core import CheckFailed

    def stop(*_):
        raise _TimedOut()
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        try:
            fn = _load(ex, cell, tag)
        except _TimedOut:
            raise
        except BaseException as err:  # noqa: BLE001 - a mutant may not even define its function
            return "does not run", f"{type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"
        with contextlib.redirect_stdout(io.StringIO()) as out:
            getattr(check, ex.name)(fn)
        return ("accepted", "") if "✔" in out.getvalue() else ("rejected", out.getvalue().strip()[:200])
    except CheckFailed as err:
        return "rejected", err.hint
    except _TimedOut:
        return "timed out", f"no verdict within {seconds} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run(mutant: Mutant, tag: str, seeds=("1", "2")) -> Verdict:
    """The checker's verdict on one mutant; an accepted one is tried again under other input seeds."""
    status, hint = judge(mutant.exercise, mutant.source, tag)
    if status != "accepted":
        return Verdict(mutant, status, hint)
    still = []
    for seed in seeds:
        os.environ["LABKIT_CHECK_SEED"] = seed
        try:
            again, hint = judge(mutant.exercise, mutant.source, f"{tag}_s{seed}")
        finally:
            os.environ.pop("LABKIT_CHECK_SEED", None)
        if again != "accepted":
            return Verdict(mutant, f"rejected under seed {seed} only", hint)
        still.append(seed)
    return Verdict(mutant, "accepted", "", seeds=",".join(still))


def rates(verdicts: list[Verdict]) -> str:
    """'rejected 180 of 200 mutants (90%); ...' for a list of verdicts."""
    n = len(verdicts)
    rejected = sum(v.status == "rejected" for v in verdicts)
    other = {s: sum(v.status == s for v in verdicts) for s in sorted({v.status for v in verdicts}) if s != "rejected"}
    return f"rejected {rejected} of {n} mutants ({100 * rejected / max(n, 1):.0f}%); " + \
        ", ".join(f"{k} {v}" for k, v in other.items())


def main(argv: list[str]) -> int:
    import labkit  # noqa: F401  (the interpreter without CUDA)
    only = argv[argv.index("--exercise") + 1] if "--exercise" in argv else None
    chosen = [e for e in exercises() if (only is None or e.name == only) and ("--all" in argv or not e.triton)]
    everything = []
    for ex in chosen:
        status, hint = judge(ex, ex.cell, "solution")
        if status != "accepted":
            print(f"{ex.name}: the solution itself is {status} here ({hint}): skipped")
            continue
        verdicts = [run(m, f"{ex.name}_{i}") for i, m in enumerate(mutants(ex))]
        everything += verdicts
        print(f"{ex.notebook[:2]} {ex.name:32} {rates(verdicts)}", flush=True)
        for v in verdicts:
            if v.status != "rejected":
                print(f"    {v.status:28} {v.mutant.operator:18} {v.mutant.where}\n{'':36}-> `{v.mutant.changed}`  "
                      f"{v.hint[:80]}")
    print("ALL:", rates(everything))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    raise SystemExit(main(sys.argv[1:]))
