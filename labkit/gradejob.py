"""Running a notebook headless: ``execute_notebook``, and one submission's run inside the sandbox.

The grader starts it as a script, ``python -P .../labkit/gradejob.py /scratch/job.json``, not as
``-m labkit.gradejob``: a script does not import the ``labkit`` package (torch and Triton, some
3 s of CPU per submission); this file imports only nbformat and nbclient. It executes the
notebook the grader prepared (the submission's cells, then the harvest cell that writes the
outcomes) and writes what happened as JSON: the executed notebook and which cells timed out or
where the kernel died. None of it is a verdict; the grader judges the outcomes.
"""
from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

KERNEL = "python3"
_TIMEOUT_ENAME = "LabkitCellTimeout"
_QUIET = logging.getLogger("labkit.gradejob")  # nbclient logs every timeout as an ERROR: the report says it
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass
class Execution:
    """A notebook executed in memory: the cells with fresh outputs and what went wrong."""
    nb: NotebookNode
    timed_out: set[int] = field(default_factory=set)  # indices of cells that hit the timeout
    died_at: int | None = None  # index of the cell during which the kernel died
    stuck_at: int | None = None  # index of a timed-out cell the kernel did not stop


def execute_notebook(nb: NotebookNode, cwd: str | Path, timeout: int = 120,
                     last_timeout: int | None = None) -> Execution:
    """Run a copy of ``nb`` in a fresh ``python3`` kernel started in ``cwd``; cells keep going after
    errors and after a timeout (the kernel is interrupted); a dead kernel stops the run.

    Each cell has ``timeout`` seconds; the last has ``last_timeout`` when given (the grader's
    harvest cell, which evaluates every exercise)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    run = Execution(copy.deepcopy(nb))
    for cell in run.nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    def on_cell_executed(cell, cell_index, execute_reply):
        if (execute_reply or {}).get("content", {}).get("ename") == _TIMEOUT_ENAME:
            run.timed_out.add(cell_index)

    last = run.nb.cells[-1] if run.nb.cells else None
    client = NotebookClient(
        run.nb, timeout=timeout, kernel_name=KERNEL,
        timeout_func=None if last_timeout is None else lambda cell: last_timeout if cell is last else timeout,
        allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": f"timed out after {timeout} s", "traceback": []},
        resources={"metadata": {"path": str(cwd)}}, on_cell_executed=on_cell_executed, log=_QUIET,
        iopub_timeout=10)  # also how long an interrupted cell has to stop
    # The kernel's own stdout/stderr (not the cells' output) would only clutter the report.
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        for index, cell in enumerate(run.nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                run.died_at = index
                break
            # An interrupted cell ends with an error output; none means the kernel is still busy.
            if index in run.timed_out and not any(o.output_type == "error" for o in cell.outputs):
                run.stuck_at = index
                break
    return run


def command(job: str) -> list[str]:
    """The command line that runs the job described in the JSON file ``job``."""
    return [sys.executable, "-P", str(Path(__file__).resolve()), job]


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    notebook = Path(job["notebook"])
    nb = nbformat.read(notebook, as_version=4)
    run = execute_notebook(nb, notebook.parent, job["timeout"], job.get("harvest_timeout"))
    out = Path(job["out"])
    nbformat.write(run.nb, out / "executed.ipynb")
    (out / "run.json").write_text(json.dumps({"timed_out": sorted(run.timed_out), "died_at": run.died_at,
                                              "stuck_at": run.stuck_at}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
