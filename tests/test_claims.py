"""labkit.check.claims: each sentence that reads a measurement is held to it, in the notebook and here.

The artefacts of earlier runs (a busy 2-core machine, several BLAS threads) are kept as a fixture:
every claim must reject the values they showed, and accept values a quiet one-thread run gives.
"""
import json
import re
from pathlib import Path

import nbformat
import pytest

from labkit.check.claims import CLAIMS, HOLDS, ClaimFailed, claim

ROOT = Path(__file__).resolve().parents[1]
OLD = json.loads((ROOT / "tests" / "claims_old_outputs.json").read_text())["claims"]

# Values of the one-thread run whose outputs are committed (2026-12-07, 2-core course machine, load 0.5-0.9).
QUIET = {
    "04.times_grow": {"times": {"naive_attention": [0.104e-3, 0.342e-3, 1.39e-3],
                                "torch SDPA": [0.079e-3, 0.263e-3, 0.988e-3]}},
    "04.memory_slope": {"slope": 1.99, "ratios": [2.04, 2.03, 2.02, 2.01]},
    "08.reuse": {"reuse": 48.9, "flop_ratio": 33.7},
    "08.lu_slope": {"segments": [2.05, 2.74, 2.92]},
    "08.ladder": {"sizes": (64, 256, 1000), "gflops": {  # committed 2026-12-08, rungs interleaved
        "Python loops": [0.00545, None, None], "row-vectorised": [0.0414, 0.179, None],
        "rank-1 updates": [0.193, 1.11, 1.49], "blocked LU (labkit)": [0.358, 5.87, 23.2],
        "LAPACK getrf (scipy)": [1.79, 15.6, 33.4]}},
    # notebook 10's committed run (2026-12-08, the same machine, load 1.9)
    "10.decode_linear": {"slope": 0.96},
    "10.cache_speedup": {"speedups": [1.35, 1.64, 2.05]},
}


@pytest.mark.parametrize("name, values", [
    ("10.decode_linear", {"slope": 0.4}),  # a cache that fits in a CPU cache: time grows slower than N
    ("10.decode_linear", {"slope": 1.6}),
    ("10.cache_speedup", {"speedups": [1.4, 1.2, 1.1]}),  # hardly faster at the longest prefix
    ("10.cache_speedup", {"speedups": [0.9, 0.95, 1.0]}),  # no speed-up at all
])
def test_notebook_10_claims_reject_what_contradicts_them(name, values):
    with pytest.raises(ClaimFailed, match=name):
        claim(name, **values)


@pytest.mark.parametrize("name", sorted(OLD))
def test_each_claim_rejects_what_the_old_outputs_showed(name, capsys):
    with pytest.raises(ClaimFailed) as err:
        claim(name, **OLD[name]["values"])
    text = str(err.value)
    assert text.startswith(f"✘ claim {name}: the output contradicts the text")
    assert CLAIMS[name].sentence in text and "\n  seen: " in text
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_each_claim_accepts_a_quiet_run(name, capsys):
    claim(name, **QUIET[name])
    assert capsys.readouterr().out == HOLDS.format(name=name) + "\n"


def test_an_unknown_claim_is_named():
    with pytest.raises(KeyError, match="no claim '04.nope'"):
        claim("04.nope")


def _claim_cells():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for name in re.findall(r'check\.claim\("([^"]+)"', cell.source if cell.cell_type == "code" else ""):
                yield path.name, i, name, cell


def test_every_claim_has_a_cell_whose_stored_output_says_it_holds():
    """Committed outputs agree with the text: each claim's cell is compared by nbval and stored passing."""
    cells = {name: (nb, i, cell) for nb, i, name, cell in _claim_cells()}
    assert sorted(cells) == sorted(CLAIMS), "a claim without a cell, or a cell naming no claim"
    for name, (nb, i, cell) in cells.items():
        assert "nbval-check-output" in cell.metadata.get("tags", []), (nb, i)
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert HOLDS.format(name=name) in printed, f"{nb} [{i}] stores {printed!r}"


@pytest.mark.parametrize("notebook, pattern", [("06_flash_attention_triton.ipynb", "attention-cpu-*.md"),
                                               ("07_flash_attention_backward.ipynb", "attention-cpu-*.md")])
def test_a_stored_benchmark_shown_in_a_notebook_is_the_newest_record(notebook, pattern):
    newest = sorted((ROOT / "benchmarks").glob(pattern))[-1].read_text(encoding="utf-8")
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    shown = [o.data["text/markdown"] for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if o.output_type == "display_data" and "text/markdown" in o.data
             and o.data["text/markdown"].startswith("# Benchmark: attention")]
    assert shown, f"{notebook} shows no recorded benchmark"
    assert all(s.strip() == newest.strip() for s in shown), f"{notebook} shows an older record than {pattern}'s newest"
