"""Small course-shaped notebooks for the blank-copy and grading tests (imported by both)."""
from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.check import PASS

# A tiny exercise checked by labkit's real checker engine (a Checker whose probe names a known mistake).
# Importing it costs a kernel ~4 s (torch), so most grading tests use QUICK_SETUP below instead.
SETUP = '''import types
from labkit.check.core import Case, Checker, Probe
added_2 = Probe("zero", (0.0,), {}, "you added 2 instead of doubling", lambda o, p: o.value == 2.0)
check = types.SimpleNamespace(
    double=lambda fn: Checker("double", [Case("small", (3.0,)), Case("negative", (-1.5,))],
                              lambda x: 2 * x, [added_2]).check(fn),
    square=lambda fn: Checker("square", [Case("small", (3.0,))], lambda x: x * x).check(fn))'''


def code(source: str, *tags: str, outputs=(), count=None):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=count)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def course(double_body="    return 2 * x", square_cell=None, setup=SETUP):
    """A solved mini-notebook in the course's layout: setup, two exercises, each with its check."""
    square_cell = square_cell or code("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                                      "    ### END SOLUTION", "exercise")
    nb = new_notebook(cells=[
        new_markdown_cell("# Doubling\n\nYou will learn: nothing."),
        code(setup),
        new_markdown_cell("### Exercise 7.1: double a number\n\nReturn $2x$."),
        code(f'def double(x):\n    """2x."""\n    ### BEGIN SOLUTION\n{double_body}\n    ### END SOLUTION',
             "exercise"),
        code("check.double(double)", "check", "nbval-check-output"),
        new_markdown_cell("As in Exercise 7.1, return a number.\n\n**Exercise 7.2: square.**"),  # prose, then label
        square_cell,
        code("check.square(square)", "check", "nbval-check-output"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def solved_with_extras():
    """course() plus outputs, a markdown answer, a deeper indent and an unlabelled exercise."""
    nb = course()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="ready\n")]
    nb.cells[1].execution_count = 1
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text=PASS.format(name="double", n=2))]
    nb.cells[4].execution_count = 3
    nb.cells[3].metadata["execution"] = {"iopub.status.busy": "2025-01-01T00:00:00Z"}
    nb.cells += [
        new_markdown_cell("Why is it exact?\n<!--\n### BEGIN SOLUTION\nBecause the max cancels out.\n"
                          "### END SOLUTION\n-->\nThink first."),
        code("class Acc:\n    def total(self, xs):\n        out = 0.0\n        ### BEGIN SOLUTION\n"
             "        for x in xs:\n            out += x  # the secret sauce\n        ### END SOLUTION\n"
             "        return out", "exercise", outputs=[nbformat.v4.new_output(
                 "error", ename="NameError", evalue="nope", traceback=[])], count=9),
    ]
    return nb
