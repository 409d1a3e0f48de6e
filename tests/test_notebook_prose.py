"""The notebooks' prose keeps its promises: every Predict prompt is answered below it, collapsed.

A prediction is only one if its answer is out of sight until the student has committed: the first
markdown cell after a "**Predict.**" prompt opens with the self-checks' collapsed markup.
"""
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COLLAPSED = "<details><summary>Answer</summary>"


def prompts(cells):
    """(index of the prompt, index of the first markdown cell after it) for every Predict prompt."""
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and "**Predict.**" in cell.source:
            after = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "markdown"), None)
            yield i, after


def uncollapsed(cells) -> list[str]:
    """The Predict prompts whose answer is not collapsed (or that have none below them)."""
    bad = []
    for i, j in prompts(cells):
        if j is None or not cells[j].source.lstrip().startswith(COLLAPSED):
            bad.append(f"[{i}]")
        elif cells[j].source.count("<details>") != cells[j].source.count("</details>"):
            bad.append(f"[{i}] (unbalanced <details> in [{j}])")
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_predict_prompt_is_answered_below_it_and_collapsed(path):
    cells = nbformat.read(path, as_version=4).cells
    assert list(prompts(cells)), f"{path.name} has no Predict prompt"
    assert uncollapsed(cells) == [], f"{path.name}: answers in plain sight after the prompts {uncollapsed(cells)}"


def test_an_answer_in_plain_sight_is_caught():
    """The rule is not vacuous: an answer written as plain prose after its prompt fails it."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    plain = [md("**Predict.** What slope?"), code("x = 1"), md("The slope is 2.")]
    collapsed = [md("**Predict.** What slope?"), code("x = 1"), md(COLLAPSED + "\n\nThe slope is 2.\n\n</details>")]
    assert uncollapsed(plain) == ["[0]"] and uncollapsed(collapsed) == []
    assert re.search("unbalanced", uncollapsed([md("**Predict.** ?"), md(COLLAPSED + " no end")])[0])
