"""One submission's run, inside the sandbox: ``python -m labkit.gradejob /scratch/job.json``.

Executes the notebook the grader prepared (the submission's cells, then the harvest cell that
writes the outcomes) and writes what happened as JSON: the executed notebook and which cells
timed out or where the kernel died. None of it is a verdict; the grader judges the outcomes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat


def main(job_path: str) -> int:
    from labkit.grade import execute_notebook
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
