"""Tests for labkit.gradejob: the job the sandbox runs, as the grader starts it (a script, no labkit)."""
from __future__ import annotations

import json
import os
import subprocess

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit import gradejob


def _run_job(tmp_path, cells, timeout=30):
    (tmp_path / "work").mkdir()
    (tmp_path / "out").mkdir()
    nbformat.write(new_notebook(cells=cells), tmp_path / "work" / "nb.ipynb")
    (tmp_path / "job.json").write_text(json.dumps({"notebook": str(tmp_path / "work" / "nb.ipynb"),
                                                   "timeout": timeout, "out": str(tmp_path / "out")}))
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}  # the job's own imports, on its stderr
    done = subprocess.run(gradejob.command(str(tmp_path / "job.json")), cwd=tmp_path / "work", env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return (nbformat.read(tmp_path / "out" / "executed.ipynb", as_version=4),
            json.loads((tmp_path / "out" / "run.json").read_text()), imported)


def test_the_job_runs_the_notebook_without_importing_labkit_or_torch(tmp_path):
    executed, run, imported = _run_job(tmp_path, [new_markdown_cell("# x"), new_code_cell("print(6 * 7)"),
                                                  new_code_cell("1 / 0")])
    assert executed.cells[1].outputs[0].text == "42\n"
    assert executed.cells[2].outputs[0].ename == "ZeroDivisionError"
    assert run == {"timed_out": [], "died_at": None, "stuck_at": None}
    assert "nbclient" in imported  # the probe sees the job's imports ...
    assert not {"labkit", "torch", "triton"} & imported  # ... and these are not among them


def test_the_job_says_where_the_kernel_died_and_which_cell_timed_out(tmp_path):
    executed, run, _ = _run_job(tmp_path, [new_code_cell("import time; time.sleep(30)"), new_code_cell("x = 1"),
                                           new_code_cell("import os; os._exit(3)"), new_code_cell("x")], timeout=2)
    assert run == {"timed_out": [0], "died_at": 2, "stuck_at": None}
    assert executed.cells[0].outputs[-1].ename == "KeyboardInterrupt"  # interrupted at the limit
    assert executed.cells[3].outputs == []  # never ran
