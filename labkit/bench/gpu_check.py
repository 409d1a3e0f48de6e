"""``python -m labkit gpu-check``: the one command for a CUDA machine (kernel tests, notebooks 06-07, GPU benchmarks).

Each part runs as a subprocess with a time limit (8 minutes in all on an H100-class GPU):
the kernel tests compiled (bf16 and every head dim on a GPU), notebooks 06 and 07 at
LABKIT_PROFILE=large, the softmax benchmark (GB/s against torch.softmax, saved as
``benchmarks/softmax-<gpu>-<date>.md``) and ``labkit.bench.gpu_attention`` (labkit's Triton
attention against SDPA with each backend forced, which SDPA picks by default, TFLOP/s by the
FlashAttention convention, peak memory against N; ``benchmarks/attention-gpu-<gpu>-<date>.md``).
A summary goes to ``benchmarks/gpu-check-<gpu>-<date>.md``.
Without CUDA it prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

NEEDS_GPU = "gpu-check needs a CUDA GPU (torch.cuda.is_available() is False here); on a CPU run `python -m labkit compile-check` instead"
# (part, command after `python -m`, extra environment, time limit in seconds)
PARTS = (
    ("tests", ["pytest", "-q", "tests/test_kernels_softmax.py", "tests/test_kernels_attention.py",
               "tests/test_kernels_attention_backward.py", "tests/test_kernels_decoding.py"], {}, 150),
    ("notebooks", ["pytest", "-q", "--nbval-lax", "--nbval-current-env",
                   "notebooks/06_flash_attention_triton.ipynb", "notebooks/07_flash_attention_backward.ipynb"],
     {"LABKIT_PROFILE": "large"}, 120),
    ("bench-softmax", ["labkit", "bench", "softmax", "--save"], {"LABKIT_PROFILE": "large"}, 50),
    # labkit's Triton kernels against SDPA (default, flash, cuDNN, efficient forced): fp16/bf16,
    # D 64/128, N 1k-16k; what does not fit in --budget is skipped with a note in the report
    ("bench-attention", ["labkit.bench.gpu_attention", "--budget", "90", "--out", "{out}"], {}, 110),
    # flash-decoding and the paged kernel against SDPA (enable_gqa), batch 1-64, caches of 1k-128k tokens
    ("bench-decoding", ["labkit", "bench", "decoding", "--save"], {}, 50),
)


def run_part(name: str, args: list[str], env: dict, limit: int) -> dict:
    """Run one part; its record: part, command, rc (124 on timeout), seconds and the output's last line."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", *args], env=dict(os.environ, **env),
                              capture_output=True, text=True, timeout=limit)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc, out = 124, f"timed out after {limit} s " + str(err.stdout or "")[-200:]
    print(out)
    last = next((line for line in reversed(out.strip().splitlines()) if line.strip()), "")
    return dict(part=name, command="python -m " + " ".join(args), rc=rc,
                seconds=round(time.perf_counter() - start, 1), last_line=last[:200])


def format_report(records: list[dict], gpu: str, versions: dict, date: str) -> str:
    """Markdown summary of a gpu-check run: GPU, versions, and one row per part."""
    lines = [f"# gpu-check, {date}", "", f"GPU: {gpu}", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "",
             "| part | result | seconds | command | last line |", "|---|---|---|---|---|"]
    for r in records:
        result = "ok" if r["rc"] == 0 else ("timeout" if r["rc"] == 124 else f"FAILED (rc {r['rc']})")
        lines.append(f"| {r['part']} | {result} | {r['seconds']} | `{r['command']}` | "
                     f"{r['last_line'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI: gpu-check [--skip PART ...] [--out DIR]; 2 without CUDA, 1 if a part fails, else 0."""
    parser = argparse.ArgumentParser(prog="python -m labkit gpu-check", description=__doc__.split("\n")[0])
    parser.add_argument("--skip", action="append", default=[], choices=[p[0] for p in PARTS],
                        help="leave out a part (repeatable)")
    parser.add_argument("--out", default="benchmarks", help="folder for the summary (default: %(default)s)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NEEDS_GPU, file=sys.stderr)
        return 2
    import triton

    records = [run_part(name, [a.replace("{out}", args.out) for a in cmd], env, limit)
               for name, cmd, env, limit in PARTS if name not in args.skip]
    gpu = torch.cuda.get_device_name(0)
    date = _dt.date.today().isoformat()
    report = format_report(records, gpu, {"torch": torch.__version__, "triton": triton.__version__,
                                          "CUDA": torch.version.cuda}, date)
    path = Path(args.out) / f"gpu-check-{re.sub(r'[^a-z0-9]+', '-', gpu.lower()).strip('-')}-{date}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    print(report + f"\nwritten to {path}")
    return 0 if all(r["rc"] == 0 for r in records) else 1
