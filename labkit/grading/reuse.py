"""Does an exercise use the function it must re-implement? A static reading of the notebook.

Every code cell is read as IPython runs it (magics and shell escapes turned into Python by
IPython's own transformer; the bodies of cell magics and the code given to line magics such as
``%time`` are read too). The exercise's function is followed through everything it can reach
by name: every definition of it (a later redefinition counts), the helpers it calls, module-level
names it reads (``helper = torch.softmax``), wherever in the notebook they are defined. Reported:
labkit's own version (any labkit module) and the library functions the registry lists
(``labkit.grading.registry``). A cell that does not parse is named: it raised SyntaxError and
never ran. Code that reaches a function indirectly (``getattr`` with a computed name, ``exec``,
a file written by a shell command) is not seen. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from labkit.grading.registry import Exercise

TOOLS = ("labkit.check", "labkit.grading")  # the checker and the grader: used by check cells, never by an answer
CONVENTIONS = {"np": "numpy", "F": "torch.nn.functional", "sp": "scipy", "la": "scipy.linalg", "tl": "triton.language"}
_MAGIC_CALLS = {"run_line_magic", "run_cell_magic", "system", "getoutput"}


@dataclass
class Reading:
    """The notebook as the static check reads it."""
    trees: list[ast.AST] = field(default_factory=list)  # parsed code, magic bodies included
    unreadable: list[int] = field(default_factory=list)  # indices of cells that do not parse
    aliases: dict[str, str] = field(default_factory=dict)  # name -> the dotted name it imports
    definitions: dict[str, list[ast.AST]] = field(default_factory=dict)  # top-level name -> its definitions


def _transform(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # IPython is a dependency of the kernel; blank the magic lines without it
        return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
    return TransformerManager().transform_cell(source)


def _parse(source: str) -> list[ast.AST] | None:
    """The trees of one cell: the cell, and the Python inside its magics; None if it does not parse."""
    if source.lstrip().startswith("%%"):  # a cell magic: its body is (usually) Python
        body = source.lstrip().split("\n", 1)[1] if "\n" in source.lstrip() else ""
        return _parse(body) or []
    try:
        tree = ast.parse(_transform(source))
    except (SyntaxError, ValueError):
        return None
    trees = [tree]
    for node in ast.walk(tree):  # get_ipython().run_line_magic('time', 'y = torch.softmax(x)')
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MAGIC_CALLS:
            for arg in node.args[1:] if node.func.attr.startswith("run_") else node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    trees += _parse(arg.value) or []
    return trees


def _targets(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for t in target.elts for n in _targets(t)]
    if isinstance(target, ast.Starred):
        return _targets(target.value)
    return []


def read(sources: list[str], latest: bool = False) -> Reading:
    """Parse every cell and index its imports and top-level definitions (with ``latest``, only the
    last definition of each name: a notebook's history, where a cell edited and run again replaces
    what it defined)."""
    reading = Reading(aliases=dict(CONVENTIONS))
    for index, source in enumerate(sources):
        trees = _parse(source)
        if trees is None:
            reading.unreadable.append(index)
            continue
        reading.trees += trees
    for tree in reading.trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    reading.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    reading.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in tree.body if isinstance(tree, ast.Module) else ():
            for name, definition in _defined(node):
                if latest:
                    reading.definitions[name] = []
                reading.definitions.setdefault(name, []).append(definition)
    return reading


def _defined(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(name, the code that gives it its value) for what a top-level statement binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(node.name, node)]
    if isinstance(node, ast.Assign):
        return [(n, node.value) for t in node.targets for n in _targets(t)]
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        return [(n, node.value) for n in _targets(node.target)]
    if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):  # definitions under a block
        inner = [s for part in ("body", "orelse", "finalbody") for s in getattr(node, part, [])]
        inner += [s for h in getattr(node, "handlers", []) for s in h.body]
        return [pair for s in inner for pair in _defined(s)]
    return []


def _dotted(node: ast.AST, aliases: dict[str, str]) -> tuple[str, bool] | None:
    """('torch.nn.functional.softmax', True) for F.softmax; ('x.softmax', False) when the base is
    not an imported name; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call) and parts:  # torch.ops.aten._softmax.default(...), f().softmax
        return ".".join(["<value>"] + parts[::-1]), False
    if not isinstance(node, ast.Name):
        return (".".join(["<value>"] + parts[::-1]), False) if parts else None
    imported = node.id in aliases
    return ".".join([aliases.get(node.id, node.id)] + parts[::-1]), imported


def _own(dotted: str, own: set[str]) -> bool:
    """Whether ``dotted`` is labkit's own version of the exercise (any module but the tools)."""
    return dotted.startswith("labkit.") and not dotted.startswith(TOOLS) and dotted.rsplit(".", 1)[-1] in own


def _matches(dotted: str, imported: bool, exercise: Exercise) -> bool:
    """Whether ``dotted`` is one of the library functions the registry lists for the exercise."""
    last = dotted.rsplit(".", 1)[-1]
    if dotted.startswith("labkit."):
        return False
    for entry in exercise.library:
        if entry.startswith("~"):
            if ("." in dotted or imported) and re.search(entry[1:], last):
                return True
        elif entry.endswith(".*"):
            if imported and dotted.startswith(entry[:-1]):
                return True
        elif imported and (dotted == entry or dotted.startswith(entry + ".")):
            return True
    return False


_DYNAMIC = {"exec": "exec", "eval": "eval", "compile": "compile", "__import__": "__import__",
            "globals": "globals()", "vars": "vars()", "locals": "locals()", "setattr": "setattr"}
_UNREADABLE = " (code the static check cannot read: write the exercise in plain code)"


def _dynamic(sub: ast.AST, reading: Reading) -> str | None:
    """What makes a call unreadable to a static check ('exec', 'getattr with a computed name'), or None."""
    if not isinstance(sub, ast.Call):
        return None
    if isinstance(sub.func, ast.Name) and sub.func.id in _DYNAMIC and sub.func.id not in reading.definitions:
        return _DYNAMIC[sub.func.id]
    if isinstance(sub.func, ast.Name) and sub.func.id == "getattr" and len(sub.args) >= 2 and \
            not (isinstance(sub.args[1], ast.Constant) and isinstance(sub.args[1].value, str)):
        return "getattr with a computed name"
    dotted = _dotted(sub.func, reading.aliases) if isinstance(sub.func, (ast.Name, ast.Attribute)) else None
    if dotted and dotted[0] in ("importlib.import_module", "builtins.exec", "builtins.eval", "builtins.getattr"):
        return dotted[0]
    return None


def _references(node: ast.AST, reading: Reading):
    """Each (dotted name, whether it is imported) that ``node`` mentions, in source order; what the
    static check cannot follow comes as ('!what', True)."""
    for sub in ast.walk(node):
        unreadable = _dynamic(sub, reading)
        if unreadable:
            yield f"!{unreadable}{_UNREADABLE}", True
            continue
        if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("labkit") and \
                any(a.name == "*" for a in sub.names) and not sub.module.startswith(TOOLS):
            yield f"{sub.module}.*", True
        elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
            for a in sub.names:
                yield f"{sub.module}.{a.name}", True
        elif isinstance(sub, (ast.Attribute, ast.Name)):
            found = _dotted(sub, reading.aliases)
            if found:
                yield found
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "getattr" and \
                len(sub.args) >= 2 and isinstance(sub.args[1], ast.Constant) and isinstance(sub.args[1].value, str):
            base = _dotted(sub.args[0], reading.aliases) if isinstance(sub.args[0], (ast.Name, ast.Attribute)) else None
            yield (f"{base[0]}.{sub.args[1].value}", base[1]) if base else (f"<value>.{sub.args[1].value}", False)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def _bound(body: list[ast.AST]) -> tuple[set[str], set[str]]:
    """(names bound in a scope's own statements, names it declares global); nested scopes skipped."""
    bound, declared, todo = set(), set(), list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            continue
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared |= set(node.names)
        todo += list(ast.iter_child_nodes(node))
    return bound, declared


def free_names(node: ast.AST) -> set[str]:
    """The names ``node`` reads from its enclosing (module) scope: a function's parameters and
    locals are not among them, its decorators' and defaults' names are."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x}
        outside = [*getattr(node, "decorator_list", []), *a.defaults, *(d for d in a.kw_defaults if d)]
        body = node.body if isinstance(node.body, list) else [node.body]
        bound, declared = _bound(body)
        inner = set().union(*(free_names(s) for s in body)) if body else set()
        return set().union(*(free_names(e) for e in outside)) | (inner - ((params | bound) - declared))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        parts += [x for g in node.generators for x in [g.iter, *g.ifs]]
        return set().union(*(free_names(x) for x in parts)) - targets | free_names(node.generators[0].iter)
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    return set().union(*(free_names(c) for c in ast.iter_child_nodes(node)))


def reachable(fn_name: str, reading: Reading) -> list[ast.AST]:
    """Every definition of ``fn_name`` and of the top-level names they read, transitively."""
    seen, todo, found = set(), [fn_name], []
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for definition in reading.definitions.get(name, []):
            found.append(definition)
            todo += sorted(free_names(definition) & reading.definitions.keys())
    return found


def find(reading: Reading, exercise: Exercise, fn_name: str) -> str | None:
    """The re-implemented function the exercise reaches in ``reading``, or what the check cannot
    read, or None. ``from labkit.<module> import <its own function>`` anywhere counts too."""
    own = {exercise.name, fn_name, *exercise.labkit}
    for dotted in reading.aliases.values():
        if _own(dotted, own):
            return dotted
    if fn_name not in reading.definitions:  # defined by code the check cannot read, e.g. exec at top level
        for tree in reading.trees:
            for sub in ast.walk(tree):
                unreadable = _dynamic(sub, reading)
                if unreadable:
                    return f"{unreadable}{_UNREADABLE}"
    for definition in reachable(fn_name, reading):
        for dotted, imported in _references(definition, reading):
            if dotted.startswith("!"):
                return dotted[1:]
            if dotted.startswith(TOOLS) and imported:
                return f"{'.'.join(dotted.split('.')[:2])} (the checker and its reference)"
            if _own(dotted, own) or _matches(dotted, imported, exercise):
                return dotted.replace("<value>", "")
    return None


def reused(exercise: Exercise, fn_name: str, sources: list[str], latest: bool = False) -> tuple[str | None, list[int]]:
    """(what :func:`find` finds, the cells that do not parse) for the cells ``sources``. Every
    definition of a name counts (a submitted notebook), or only the last (``latest``: the cells a
    notebook ran, in order, where an edited cell run again replaces its old version)."""
    reading = read(sources, latest)
    return find(reading, exercise, fn_name), reading.unreadable


def reuse_message(used: str, where: str = " (static check of the code)") -> str:
    """The verdict's words for what :func:`find` found."""
    if " " in used:  # exec, getattr with a computed name, the checker: a sentence of its own
        return f"uses {used}{where}"
    return f"uses {used}, which this exercise re-implements{where}"
