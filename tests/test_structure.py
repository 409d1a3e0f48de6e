"""labkit's structure: no import cycles (lazy imports included) and no private names across modules."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "labkit"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path):
    """(module, names) of every labkit import in the file, at any depth (function-level ones too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "labkit":
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "labkit":
                    yield a.name, []


def _edges() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names in _imports(path):
            # `from labkit import attention` imports the submodule labkit.attention
            for t in [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES] or [target]:
                # a submodule importing from its own package (labkit.check.softmax -> labkit.check) is how
                # packages work, not a cycle between two modules
                if t in MODULES and t != mod and not mod.startswith(t + "."):
                    graph[mod].add(t)
    return graph


def test_no_import_cycles_between_labkit_modules():
    graph, state, cycles = _edges(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_module_level_getattr_re_exports():
    offenders = [m for m, p in MODULES.items()
                 if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                        for n in ast.parse(p.read_text()).body)]
    assert not offenders, offenders


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_private_names_imported_from_another_module(mod):
    private = [f"{target}.{n}" for target, names in _imports(MODULES[mod]) for n in names
               if n.startswith("_") and not n.startswith("__")]
    assert not private, private


TOOLS = ("labkit.grading", "labkit.check", "labkit.bench")
# what students' notebooks import for the course's content: everything but the tools, the command
# line, compile-check (a tool beside the kernels, which reads the machine through labkit.bench) and
# the website's builder (which makes student views with labkit.grading.student)
COURSE_MODULES = sorted(m for m in MODULES if not m.startswith(TOOLS) and m not in
                        ("labkit.__main__", "labkit.kernels.compile_check", "labkit.book"))


@pytest.mark.parametrize("mod", COURSE_MODULES)
def test_course_modules_never_import_grading_checkers_or_benchmarks(mod):
    imported = [target for target, names in _imports(MODULES[mod])
                for t in [target] + [f"{target}.{n}" for n in names] if t.startswith(TOOLS)]
    assert not imported, imported
