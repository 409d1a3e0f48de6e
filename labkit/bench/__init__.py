"""Benchmark core: median time of a call, peak memory, tables, result files, and the CLI.

``python -m labkit bench <suite> [--save] [suite options]`` runs ``labkit/bench/<suite>.py``'s
``run(args) -> str`` (which prints its table and returns the text); ``--save`` writes that
text to ``benchmarks/<suite>-<cpu|gpu-name>-<date>.md`` with the date, the hardware and the
versions. A suite module may define ``add_arguments(parser)`` for its own options.
Introduced in notebook 02.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import importlib
import importlib.util
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from labkit import device

SUITES = ("softmax", "attention", "linsys", "decoding")
_L2_FLUSH_BYTES = 256 * 2**20  # more than any GPU's L2 cache (H100/H200: 50-60 MB)
_l2_buffer: torch.Tensor | None = None


def _uses_cuda_events() -> bool:
    return device.HAS_CUDA and not device.INTERPRET


def time_fn(fn: Callable[[], Any], *, warmup: int = 3, rep: int = 20) -> float:
    """Median seconds of ``fn()`` over ``rep`` timed calls after ``warmup`` untimed ones.

    On a GPU (compiled Triton) each call is timed with CUDA events after flushing the L2
    cache, so a small problem is not read from cache; on CPU with time.perf_counter.
    """
    if warmup < 0 or rep < 1:
        raise ValueError(f"time_fn: need warmup >= 0 and rep >= 1, got warmup={warmup}, rep={rep}")
    for _ in range(warmup):
        fn()
    times = []
    if _uses_cuda_events():
        global _l2_buffer
        if _l2_buffer is None:
            _l2_buffer = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(rep)]
        for start, end in events:
            _l2_buffer.zero_()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        times = [start.elapsed_time(end) / 1e3 for start, end in events]
    else:
        for _ in range(rep):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def pinned(threads: int = 1):
    """Within the block torch and every BLAS numpy/scipy loaded use ``threads`` threads; yields one line
    that says so, with the machine's load average at the start (print it beside the numbers)."""
    from threadpoolctl import threadpool_limits

    was = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield (f"{threads} torch thread{'s' * (threads > 1)}, {threads} BLAS thread{'s' * (threads > 1)}; "
                   f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")
    finally:
        torch.set_num_threads(was)


def published(topic: str, *, echo: bool = True) -> str:
    """Print and return the published GPU figures for ``topic`` (data/published_gpu_figures.json), each
    labelled "published, not measured here" with its source: what a CPU student cannot measure (notebooks 02, 06, 07)."""
    import json

    from labkit.course import data_dir
    data = json.loads((data_dir() / "published_gpu_figures.json").read_text(encoding="utf-8"))
    if topic not in data["topics"]:
        raise ValueError(f"published: no topic {topic!r}; the topics are {sorted(data['topics'])}")
    figures = {f["id"]: f for f in data["figures"]}
    rows = []
    for fid in data["topics"][topic]:
        f = figures[fid]
        value = "–".join(map(format_value, f["value"])) if isinstance(f["value"], list) else format_value(f["value"])
        rows.append([f["gpu"].split(" (")[0], f["label"], f"{value} {f['unit'].split(' (')[0]}", f["cite"]])
    return print_table(f"Published GPU figures, not measured here ({topic.replace('_', ' ')}; sources and exact "
                       f"quotes in data/published_gpu_figures.json)", ["GPU", "what", "published figure", "source"], rows,
                       echo=echo)


def gpu_figures(suite: str, topic: str) -> str:
    """Markdown for what a GPU does: the newest ``gpu-check`` record of ``suite`` in benchmarks/ (measured on
    a lent GPU), or, when there is none, the published figures for ``topic``."""
    records = sorted(_results_dir().glob(f"{suite}-*.md"), key=lambda p: p.name[-13:])
    records = [p for p in records if "-cpu-" not in p.name]
    if records:
        return f"**Measured by gpu-check** ({records[-1].name}):\n\n" + records[-1].read_text(encoding="utf-8")
    return published(topic, echo=False)


def _vm_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{field} not in /proc/self/status")
    return int(match.group(1))


MMAP_THRESHOLD = 256 * 1024  # bytes: while measuring, larger blocks get pages returned when freed


def _mallopt(threshold: int, trim: int, release: bool = False) -> None:
    """Set glibc's mmap and trim thresholds; with release, hand free heap pages back to the kernel.

    A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, trim)  # M_TRIM_THRESHOLD
        if release:
            libc.malloc_trim(0)  # reused heap chunks must then fault in fresh pages: counted
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _freed_memory_leaves_rss():
    """While measuring, map every block of MMAP_THRESHOLD bytes or more and unmap it when freed.

    glibc otherwise keeps freed blocks in its heap and reuses them, so a later allocation never
    shows in the resident size; free heap pages are also handed back first (malloc_trim). Afterwards the thresholds go to the values glibc's own
    adjustment reaches (32 MiB mmap, 64 MiB trim), so later computation is not slowed by page faults.
    """
    _mallopt(MMAP_THRESHOLD, MMAP_THRESHOLD, release=True)
    try:
        yield
    finally:
        _mallopt(32 * 2**20, 64 * 2**20)


def peak_memory(fn: Callable[[], Any]) -> int | None:
    """Bytes ``fn()`` needs above what was allocated before it: the CUDA allocator's peak on a GPU.

    On Linux CPUs it is the rise of the process's peak resident memory (VmHWM, reset through
    /proc/self/clear_refs), with glibc's mmap threshold lowered while it runs so that freed tensors
    leave the resident set (blocks under 256 KiB are not seen). Elsewhere, or when not permitted, None.
    """
    if device.HAS_CUDA:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with _freed_memory_leaves_rss():
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
            before = _vm_kib("VmRSS")
        except OSError:
            fn()
            return None
        fn()
        return max(_vm_kib("VmHWM") - before, 0) * 1024


def peak_memory_fresh(setup: str, stmt: str | Sequence[str], timeout: float = 300) -> int | None | list[int | None]:
    """peak_memory of ``stmt`` run in a new Python process after ``setup`` (both Python source).

    A long-lived process (a notebook) keeps freed memory for reuse, which hides later
    allocations from the resident-size measurement; a fresh process starts clean. None where
    peak_memory gives None. A list of statements is measured one after another in one fresh
    process (one start-up, not one each) and gives the list of results: peak_memory hands back what
    each statement frees, so each result is the one it gives alone, provided ``setup`` warms up
    with the measured calls themselves (what a first call loads once, such as a lazy import,
    counts for whichever statement makes that call first). The new process uses as many torch
    threads as this one.
    """
    stmts = [stmt] if isinstance(stmt, str) else list(stmt)
    code = (f"import labkit, torch\nfrom labkit import bench\ntorch.set_num_threads({torch.get_num_threads()})\n"
            f"{setup}\n"
            + "".join(f"print('peak_memory_fresh:', bench.peak_memory(lambda: ({s})))\n" for s in stmts))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"peak_memory_fresh: the measurement failed:\n{done.stderr[-2000:]}")
    values = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("peak_memory_fresh: ")]
    peaks = [None if value == "None" else int(value) for value in values]
    return peaks[0] if isinstance(stmt, str) else peaks


def format_value(value: Any) -> str:
    """A table cell: floats to 3 significant digits (no exponent from 100 up), None as '–'."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], *, echo: bool = True) -> str:
    """Print a title and a Markdown table (floats to 3 significant digits, None as '–'); return the text
    (``echo=False``: return it only)."""
    cells = [[str(h) for h in header]] + [[format_value(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"print_table: a row has {len(row)} cells, the header {len(header)}")
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    text = "\n".join([title, "", line(cells[0]), rule] + [line(row) for row in cells[1:]])
    if echo:
        print(text, flush=True)
    return text


def progress(done: int, total: int, what: str) -> None:
    """A one-line counter for long sweeps ('[3/12] width 1024: triton fused'): on stderr, except
    in a notebook (a Jupyter kernel's streams), where stderr shows as a red error box."""
    stream = sys.stdout if type(sys.stderr).__module__.startswith("ipykernel") else sys.stderr
    end = "\n" if done >= total or not stream.isatty() else ""
    print(f"\r[{done}/{total}] {what}".ljust(60), end=end, file=stream, flush=True)


def hardware() -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo on Linux) and core count."""
    if device.HAS_CUDA:
        return f"GPU {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        model = match.group(1).strip() if match else model
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} cores)"


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    if device.HAS_TRITON:
        import triton

        parts.append(f"triton {triton.__version__}")
    from labkit import __version__

    parts.append(f"labkit {__version__}")
    return ", ".join(parts)


def _results_dir() -> Path:
    """benchmarks/ in the repository labkit is run from (an editable install), else in the cwd."""
    root = Path(__file__).resolve().parents[2]
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / "benchmarks"


def save_results(suite: str, text: str, *, directory: str | Path | None = None,
                 command: str | None = None) -> Path:
    """Write benchmarks/<suite>-<cpu|gpu-name>-<date>.md: date, hardware, versions, then ``text``.

    A file of the same suite, machine and day is replaced.
    """
    now = _dt.datetime.now().astimezone()
    machine = "cpu" if not device.HAS_CUDA else \
        re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    folder = Path(directory) if directory is not None else _results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{suite}-{machine}-{now:%Y-%m-%d}.md"
    mode = ("Triton interpreter (TRITON_INTERPRET=1)" if device.INTERPRET else "compiled Triton") \
        if device.HAS_TRITON else "no Triton"
    path.write_text(
        f"# Benchmark: {suite}\n\n"
        f"- date: {now:%Y-%m-%d %H:%M %Z}\n"
        f"- hardware: {hardware()}\n"
        f"- kernels: {mode}\n"
        f"- versions: {versions()}\n"
        f"- profile: {device.PROFILE.name}\n"
        f"- command: {command or f'python -m labkit bench {suite} --save'}\n\n"
        f"{text.rstrip()}\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit bench <suite> [--save] [options]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m labkit bench {{{','.join(SUITES)}}} [--save] [options]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + __doc__.split("\n\n")[0])
        return 0 if argv else 2
    suite = argv[0]
    if suite not in SUITES:
        print(f"labkit bench: unknown suite {suite!r}; choose one of {', '.join(SUITES)}", file=sys.stderr)
        return 2
    if importlib.util.find_spec(f"labkit.bench.{suite}") is None:
        print(f"labkit bench: the {suite} suite is not available yet (no labkit/bench/{suite}.py)",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"labkit.bench.{suite}")
    parser = argparse.ArgumentParser(prog=f"python -m labkit bench {suite}",
                                     description=(module.__doc__ or "").split("\n")[0])
    parser.add_argument("--save", action="store_true",
                        help="also write the table to benchmarks/<suite>-<hardware>-<date>.md")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as stop:  # --help, or a bad option (argparse has printed why)
        return int(stop.code or 0)
    text = module.run(args)
    if args.save:
        command = "python -m labkit bench " + " ".join(argv)
        print(f"saved {save_results(suite, text, command=command)}")
    return 0
