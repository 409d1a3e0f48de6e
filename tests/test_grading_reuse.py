"""labkit.grading.reuse and .registry: the static check that an exercise does not call what it
must re-implement, followed through helpers, redefinitions, magics and aliases; and the one
registry of exercises, held to the solved notebooks and the checkers."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from labkit.check import core
from labkit.grading import notebook, reuse
from labkit.grading.registry import EXERCISES, exercise
from labkit.grading.student import make_blank, notebook_number

COURSE = Path(__file__).resolve().parents[1] / "notebooks"
SETUP = "import torch\nimport numpy as np\nimport torch.nn.functional as F\nimport scipy.linalg"


@pytest.mark.parametrize("name, cells, used", [
    # through a helper in another cell, and a helper of the helper
    ("safe_softmax", ["def helper(x):\n    return torch.softmax(x, -1)",
                      "def safe_softmax(x, dim=-1):\n    return helper(x)"], "torch.softmax"),
    ("safe_softmax", ["def a(x):\n    return b(x)", "def b(x):\n    return F.softmax(x, -1)",
                      "def safe_softmax(x, dim=-1):\n    return a(x)"], "torch.nn.functional.softmax"),
    # a module-level alias, a later redefinition, a lambda
    ("safe_softmax", ["sm = torch.softmax", "def safe_softmax(x, dim=-1):\n    return sm(x, dim)"], "torch.softmax"),
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    return x", "safe_softmax = lambda x, dim=-1: x.softmax(dim)"],
     "x.softmax"),
    # aten and other spellings of the same op
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    return torch.ops.aten._softmax.default(x, dim, False)"],
     "torch.ops.aten._softmax"),
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    return (-x).softmin(dim)"], ".softmin"),
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    return getattr(torch, 'softmax')(x, dim)"], "torch.softmax"),
    ("logsumexp", ["def logsumexp(x, dim=-1):\n    return torch.logcumsumexp(x, dim).select(dim, -1)"],
     "torch.logcumsumexp"),
    ("logsumexp", ["def logsumexp(x, dim=-1):\n    return np.logaddexp.reduce(x, dim)"], "numpy.logaddexp"),
    # code hidden in IPython syntax: a cell magic's body, a line magic's code, a shell assignment around it
    ("safe_softmax", ["%%time\ndef safe_softmax(x, dim=-1):\n    return torch.softmax(x, dim)"], "torch.softmax"),
    ("safe_softmax", ["files = !ls\n%time _h = torch.softmax\ndef safe_softmax(x, dim=-1):\n    return _h(x, dim)"],
     "torch.softmax"),
    # inside the function: imports, decorators, defaults
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    from torch.nn.functional import softmax\n    return softmax(x, dim)"],
     "torch.nn.functional.softmax"),
    ("safe_softmax", ["def safe_softmax(x, dim=-1, f=torch.softmax):\n    return f(x, dim)"], "torch.softmax"),
    ("naive_attention", ["def naive_attention(q, k, v, causal=False, scale=None):\n"
                         "    return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[0]"],
     "torch.ops.aten._scaled_dot_product_flash_attention"),
    ("lu_factor", ["def lu_factor(A):\n    return scipy.linalg.lapack.dgetrf(A)[:2]"], "scipy.linalg.lapack.dgetrf"),
    ("gauss_seidel", ["def gauss_seidel(A, b, x0=None, **kw):\n    return np.linalg.solve(A, b), 0"], "numpy.linalg.solve"),
    ("back_substitution", ["def back_substitution(U, y):\n    return scipy.linalg.solve_triangular(U, y)"],
     "scipy.linalg.solve_triangular"),
    ("softmax_jacobian", ["def softmax_jacobian(p):\n    return torch.func.jacrev(torch.softmax)(p)"], "torch.func.jacrev"),
    # labkit's own, under any name
    ("safe_softmax", ["from labkit.softmax import safe_softmax as s\ndef safe_softmax(x, dim=-1):\n    return s(x, dim)"],
     "labkit.softmax.safe_softmax"),
    ("gaussian_elimination", ["from labkit import elimination\ndef gaussian_elimination(A, b):\n"
                              "    return elimination.lu_solve(elimination.lu_factor(A), b)"], "labkit.elimination.lu_solve"),
    # what a static reading cannot follow is refused, not passed
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    return getattr(torch, 'soft' + 'max')(x, dim)"],
     "getattr with a computed name (code the static check cannot read: write the exercise in plain code)"),
    ("logsumexp", ["exec('def logsumexp(x, dim=-1):\\n    return torch.log' + 'sumexp(x, dim)')"],
     "exec (code the static check cannot read: write the exercise in plain code)"),
    ("safe_softmax", ["import importlib\ndef safe_softmax(x, dim=-1):\n    m = importlib.import_module('tor' + 'ch')\n"
                      "    return m.special.softmax(x, dim)"],
     "importlib.import_module (code the static check cannot read: write the exercise in plain code)"),
    ("safe_softmax", ["from labkit.check.core import CHECKERS as _C\n_ref = _C['safe_softmax']().reference",
                      "def safe_softmax(x, dim=-1):\n    return _ref(x, dim)"], "labkit.check (the checker and its reference)"),
])
def test_reuse_is_found_wherever_the_function_reaches_it(name, cells, used):
    assert reuse.reused(exercise(name), name, [SETUP, "import labkit", *cells])[0] == used


@pytest.mark.parametrize("name, cells", [
    # a local variable that shares a name with a notebook-level one is not the notebook's
    ("safe_softmax", ["y = torch.softmax(torch.ones(3), 0)",
                      "def safe_softmax(x, dim=-1):\n    y = (x - x.amax(dim, keepdim=True)).exp()\n"
                      "    return y / y.sum(dim, keepdim=True)"]),
    # the library used elsewhere in the notebook, not by the exercise
    ("safe_softmax", ["def safe_softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True)).exp()\n"
                      "    return e / e.sum(dim, keepdim=True)", "print(torch.allclose(safe_softmax(x), x.softmax(-1)))"]),
    # what a blocked LU is made of, and labkit's helpers an exercise may call
    ("blocked_lu", ["def blocked_lu(A, block):\n    return scipy.linalg.solve_triangular(A, A) @ A"]),
    ("gaussian_elimination", ["from labkit import elimination\ndef gaussian_elimination(A, b):\n"
                              "    return elimination.back_substitution(A, b)"]),
])
def test_legitimate_code_is_not_reported(name, cells):
    assert reuse.reused(exercise(name), name, [SETUP, "import labkit", *cells])[0] is None


def test_a_cell_that_does_not_parse_is_named_and_did_not_run():
    used, unreadable = reuse.reused(exercise("safe_softmax"), "safe_softmax",
                                    [SETUP, "def safe_softmax(x, dim=-1):\n    return x x", "print(1)"])
    assert (used, unreadable) == (None, [1])


@pytest.mark.parametrize("path", sorted(COURSE.glob("*.ipynb")), ids=lambda p: p.stem)
def test_the_solved_notebooks_and_their_blank_copies_reuse_nothing(path):
    solved = nbformat.read(path, as_version=4)
    for nb in (solved, make_blank(solved, notebook_number(path))):
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        for ex in notebook.exercises_of(nb, None):
            assert reuse.reused(exercise(ex.name), ex.function, sources) == (None, []), (path.name, ex.name)


def test_the_registry_is_the_solved_notebooks_exercises_and_has_every_checker():
    found = {}
    for path in sorted(COURSE.glob("*.ipynb")):
        for ex in notebook.exercises_of(nbformat.read(path, as_version=4), None):
            found[ex.name] = path.name
    assert found == {e.name: e.notebook for e in EXERCISES}
    assert set(found) <= set(core.CHECKERS)



def test_every_labkit_name_in_the_registry_is_a_labkit_function():
    import importlib
    import pkgutil

    import labkit
    names = set()
    for info in pkgutil.walk_packages(labkit.__path__, "labkit."):
        if not info.name.startswith(("labkit.grading", "labkit.check", "labkit.bench", "labkit.course")):
            names |= {n for n, v in vars(importlib.import_module(info.name)).items() if callable(v)}
    missing = {n for e in EXERCISES for n in e.labkit} - names - {"blocked_lu", "merge_states_many"}
    assert not missing, missing  # blocked_lu and merge_states_many have no labkit twin of that name
