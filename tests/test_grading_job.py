"""Tests for labkit.grading.job: the job the sandbox runs, as the grader starts it (a script, no
labkit), its description on stdin and its report on stdout."""
from __future__ import annotations

import json
import os
import subprocess

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.grading import job


def _run_job(tmp_path, cells, timeout=30):
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}  # the job's own imports, on its stderr
    done = subprocess.run(job.command(), cwd=tmp_path, env=env, capture_output=True, timeout=120,
                          input=json.dumps({"notebook": new_notebook(cells=cells), "timeout": timeout}).encode())
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return json.loads(done.stdout), imported


def test_the_job_runs_the_notebook_without_importing_labkit_or_torch(tmp_path):
    report, imported = _run_job(tmp_path, [new_markdown_cell("# x"), new_code_cell("print(6 * 7)"),
                                           new_code_cell("1 / 0")])
    assert report == {"timed_out": [], "died_at": None, "stuck_at": None,
                      "errors": {"2": ["ZeroDivisionError", "division by zero"]}, "output_bytes": report["output_bytes"],
                      "killed_stuck": ""}
    assert "nbclient" in imported  # the probe sees the job's imports ...
    assert not {"labkit", "torch", "triton"} & imported  # ... and these are not among them


def test_the_job_says_where_the_kernel_died_and_which_cell_timed_out(tmp_path):
    report, _ = _run_job(tmp_path, [new_code_cell("import time; time.sleep(30)"), new_code_cell("x = 1"),
                                    new_code_cell("import os; os._exit(3)"), new_code_cell("x")], timeout=2)
    assert (report["timed_out"], report["died_at"], report["stuck_at"]) == ([0], 2, None)
    assert report["errors"]["0"][0] == "KeyboardInterrupt"  # interrupted at the limit
    assert "3" not in report["errors"]  # never ran


def test_what_a_cell_prints_is_counted_and_dropped_and_nothing_but_the_report_reaches_stdout(tmp_path):
    report, _ = _run_job(tmp_path, [
        new_code_cell("import sys\nfor _ in range(64):\n    print('x' * (1 << 20))"),  # 64 MiB printed
        new_code_cell("import os; os.write(1, b'forged'); print('{\"died_at\": 0}', file=sys.__stdout__)"),
        new_code_cell("raise ValueError('y' * 100000)")])
    assert report["output_bytes"] > 64 << 20 and report["died_at"] is None
    assert len(report["errors"]["2"][1]) == job.MAX_ERROR


def test_an_exercise_that_blocks_every_signal_is_stopped_near_its_own_limit(tmp_path):
    """The harvest names the exercise it evaluates in a file; one that runs past its limit + 5 s gets
    its kernel killed by the job, and the report says which (not the whole harvest cell's limit)."""
    import time
    (tmp_path / "work").mkdir()
    (tmp_path / "out").mkdir()
    harvest = ("import signal, os, time\nopen('../out/running', 'w').write('stubborn')\n"
               "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGALRM, signal.SIGTERM})\n"
               "while True:\n    pass")
    start = time.monotonic()
    done = subprocess.run(job.command(), cwd=tmp_path / "work", capture_output=True, timeout=120,
                          input=json.dumps({"notebook": new_notebook(cells=[new_code_cell("x = 1"), new_code_cell(harvest)]),
                                            "timeout": 2, "harvest_timeout": 100,
                                            "progress": "../out/running"}).encode())
    report = json.loads(done.stdout)
    assert report["killed_stuck"] == "stubborn" and report["died_at"] == 1, report
    assert time.monotonic() - start < 40


def test_torch_is_imported_in_the_kernel_before_the_first_cell_and_not_charged_to_it(tmp_path):
    """A first cell with a 3 s limit finds torch imported already: on a busy grading machine the import alone
    can pass a cell's limit, and a cut-off `import torch` leaves the notebook ungradable."""
    report, _ = _run_job(tmp_path, [new_code_cell("import sys, time\nassert 'torch' in sys.modules, 'not warmed up'\n"
                                                  "t = time.perf_counter(); import torch\n"
                                                  "assert time.perf_counter() - t < 0.5")], timeout=3)
    assert report["errors"] == {} and report["timed_out"] == [], report
