"""One submission's run inside the sandbox: ``python -P .../labkit/grading/job.py``.

A script, not ``-m labkit...``: it imports neither the ``labkit`` package (torch and Triton) nor
anything but nbformat and nbclient. It reads its job from stdin (the notebook the grader
prepared: the submission's cells, then the harvest cell, and the time limits), executes it in a
fresh ``python3`` kernel started in the working directory (torch imported first, outside any cell's
limit: ``WARM_UP``), and writes one JSON report to the
stdout it was started with: which cells timed out, where the kernel died or got stuck, the first
error of each cell. Nothing else leaves through stdout; cell outputs other than errors are
dropped as they arrive, so a notebook that prints gigabytes costs nothing. None of it is a
verdict: the grader judges the harvested outcomes.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode

KERNEL = "python3"
MAX_ERROR = 2000  # characters kept of an error's message
_TIMEOUT_ENAME = "LabkitCellTimeout"
_QUIET = logging.getLogger("labkit.grading.job")  # nbclient logs every timeout as an ERROR: the report says it
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
# Imported in the kernel before the notebook's first cell, with a limit of its own: a cell's time limit
# is for the student's code, and torch alone can take more than a cell's 10 s on a busy grading machine.
# A cell cut off inside `import torch` leaves torch half-registered, and the whole notebook ungradable.
WARM_UP = "import numpy, torch"
WARM_UP_SECONDS = 120


@dataclass
class Execution:
    """A notebook executed in memory: each cell's first error and what went wrong."""
    nb: NotebookNode
    timed_out: set[int] = field(default_factory=set)  # indices of cells that hit the timeout
    died_at: int | None = None  # index of the cell during which the kernel died
    stuck_at: int | None = None  # index of a timed-out cell the kernel did not stop
    output_bytes: int = 0  # what the cells sent, all outputs counted
    killed_stuck: str = ""  # the exercise whose evaluation would not stop: its kernel was killed

    def errors(self) -> dict[int, tuple[str, str]]:
        """{cell index: (ename, evalue)} of each cell's first error."""
        found = {}
        for i, cell in enumerate(self.nb.cells):
            err = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            if err is not None:
                found[i] = (str(err.get("ename", "")), str(err.get("evalue", "")))
        return found


def _watch(run: Execution, client, progress: str, limit: float, done: threading.Event) -> None:
    """While the harvest cell runs: kill the kernel when one exercise has been evaluated for longer
    than ``limit`` seconds (a function that blocks SIGALRM and SIGINT would otherwise keep it busy
    until the whole cell's limit)."""
    seen, since = None, time.monotonic()
    while not done.wait(0.5):
        try:
            fd = os.open(progress, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                name = f.read(100).decode(errors="replace") if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except OSError:
            name = None
        if name != seen:
            seen, since = name, time.monotonic()
        elif name and time.monotonic() - since > limit:
            run.killed_stuck = name
            try:
                client.km.provisioner.process.kill()
            except (AttributeError, OSError):
                pass
            return


def execute_notebook(nb: NotebookNode, cwd: str, timeout: int = 120, last_timeout: int | None = None,
                     errors_only: bool = True, progress: str | None = None) -> Execution:
    """Run a copy of ``nb`` in a fresh ``python3`` kernel started in ``cwd``; cells keep going after
    errors and after a timeout (the kernel is interrupted); a dead kernel stops the run. Only
    error outputs are kept (all of them with ``errors_only=False``, for a trusted notebook).

    Each cell has ``timeout`` seconds; the last has ``last_timeout`` when given (the grader's
    harvest cell, which evaluates every exercise): there, with ``progress`` (the harvest's file
    naming the exercise it evaluates), one exercise that runs past ``timeout`` + 5 s gets its
    kernel killed."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    class ErrorsOnly(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            run.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
            if not errors_only:
                return super().output(outs, msg, display_id, cell_index)
            if msg.get("msg_type") != "error":
                return None
            content = msg.get("content", {})
            out = nbformat.v4.new_output("error", ename=str(content.get("ename", ""))[:200],
                                         evalue=str(content.get("evalue", ""))[:MAX_ERROR], traceback=[])
            if not any(o.get("output_type") == "error" for o in outs):
                outs.append(out)
            return out

    run = Execution(nbformat.from_dict(nb))
    for cell in run.nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    def on_cell_executed(cell, cell_index, execute_reply):
        if (execute_reply or {}).get("content", {}).get("ename") == _TIMEOUT_ENAME:
            run.timed_out.add(cell_index)

    last = run.nb.cells[-1] if run.nb.cells else None
    client = ErrorsOnly(
        run.nb, timeout=timeout, kernel_name=KERNEL,
        timeout_func=None if last_timeout is None else lambda cell: last_timeout if cell is last else timeout,
        allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": f"timed out after {timeout} s", "traceback": []},
        resources={"metadata": {"path": str(cwd)}}, on_cell_executed=on_cell_executed, log=_QUIET,
        iopub_timeout=10)  # also how long an interrupted cell has to stop
    # The kernel's own stdout/stderr (not the cells' output) would only clutter the report.
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        _warm_up(client, WARM_UP_SECONDS)
        for index, cell in enumerate(run.nb.cells):
            if cell.cell_type != "code":
                continue
            done = threading.Event()
            if progress and cell is last:
                threading.Thread(target=_watch, args=(run, client, progress, timeout + 5, done), daemon=True).start()
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                run.died_at = index
                break
            finally:
                done.set()
            # An interrupted cell ends with an error output; none means the kernel is still busy.
            if index in run.timed_out and not any(o.output_type == "error" for o in cell.outputs):
                run.stuck_at = index
                break
    return run


def _warm_up(client, seconds: float) -> None:
    """Run WARM_UP in the kernel and wait for it up to ``seconds`` (never interrupted: an import cut off
    halfway is what this avoids). A kernel that dies or takes longer meets the first cell as it is."""
    from queue import Empty

    from nbclient.util import ensure_async, run_sync

    async def wait(msg_id: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg = await ensure_async(client.kc.shell_channel.get_msg(timeout=1))
            except Empty:
                if not await ensure_async(client.kc.is_alive()):
                    return
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return
    run_sync(wait)(client.kc.execute(WARM_UP, silent=True, store_history=False))


def report(run: Execution) -> dict:
    """What the grader reads back: plain JSON."""
    return {"timed_out": sorted(run.timed_out), "died_at": run.died_at, "stuck_at": run.stuck_at,
            "errors": {str(i): list(e) for i, e in run.errors().items()}, "output_bytes": run.output_bytes,
            "killed_stuck": run.killed_stuck}


def command() -> list[str]:
    """The command line that runs a job (its description comes on stdin)."""
    return [sys.executable, "-P", os.path.abspath(__file__)]


def main() -> int:
    answer = os.dup(1)  # the report's channel; nothing else may write to it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    job = json.loads(sys.stdin.buffer.read())
    run = execute_notebook(job["notebook"], os.getcwd(), job["timeout"], job.get("harvest_timeout"),
                           progress=job.get("progress"))
    with os.fdopen(answer, "w") as out:
        json.dump(report(run), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
