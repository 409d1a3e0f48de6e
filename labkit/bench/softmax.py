"""Softmax benchmark: GB/s of torch.softmax, labkit.softmax's PyTorch versions and the two Triton kernels.

Bytes moved = 2 * rows * width * element size (x read once, y written once: the least any
softmax can move), divided by the median time. Sizes come from ``device.PROFILE``.
Introduced in notebook 02; ``python -m labkit bench softmax [--save]``.
"""
from __future__ import annotations

import argparse
import time

import torch

from labkit import device, softmax
from labkit.bench import format_value, print_table, progress, time_fn
from labkit.check import assert_close
from labkit.kernels import online_softmax_triton, softmax_triton
from labkit.kernels.softmax import MAX_FUSED_WIDTH

INTERPRETER_BUDGET_S = 20.0  # total time allowed for the interpreted Triton columns on CPU
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# (column label, function of x, runs a Triton kernel)
PROVIDERS = [
    ("torch.softmax", lambda x: torch.softmax(x, dim=-1), False),
    ("naive_softmax", softmax.naive_softmax, False),
    ("safe_softmax", softmax.safe_softmax, False),
    ("online_softmax", softmax.online_softmax, False),
    ("softmax_triton", softmax_triton, True),
    ("online_softmax_triton", online_softmax_triton, True),
]


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--widths", type=int_list, default=None,
                        help="row widths, e.g. 64,128 (default: the profile's)")
    parser.add_argument("--rows", type=int, default=None, help="number of rows (default: the profile's)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--rep", type=int, default=20, help="timed calls per measurement (median)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 gives steadier numbers "
                             "on a busy machine")


def _gbps(rows: int, width: int, dtype: torch.dtype, seconds: float) -> float:
    return 2 * rows * width * torch.empty((), dtype=dtype).element_size() / seconds / 1e9


def run(args: argparse.Namespace) -> str:
    """Time every provider at every width; print and return the GB/s table with ratios to torch.softmax."""
    rows = args.rows or device.PROFILE.rows
    widths = args.widths or device.PROFILE.widths
    dtype = DTYPES[args.dtype]
    rep = max(args.rep, 1)
    if args.threads is not None:
        torch.set_num_threads(max(args.threads, 1))
    interpreted = device.INTERPRET
    skip_triton = ""
    if not device.HAS_TRITON:
        skip_triton = "Triton is not installed on this platform"
    elif interpreted and dtype == torch.bfloat16:
        skip_triton = "bfloat16 Triton kernels run on the GPU only"
    notes: list[str] = []
    spent_interpreting = 0.0
    gen = torch.Generator(device=device.DEVICE).manual_seed(0)
    results: dict[tuple[int, str], float | str | None] = {}
    total, done = len(widths) * len(PROVIDERS), 0
    for width in widths:
        x = torch.randn(rows, width, generator=gen, device=device.DEVICE, dtype=torch.float32).to(dtype)
        ref64 = torch.softmax(x.double(), dim=-1)
        baseline = torch.softmax(x, dim=-1) if dtype != torch.float32 else None
        for label, fn, is_triton in PROVIDERS:
            done += 1
            progress(done, total, f"width {width}: {label}")
            if is_triton and skip_triton:
                results[width, label] = None
                continue
            if fn is softmax_triton and width > MAX_FUSED_WIDTH:
                results[width, label] = None
                notes.append(f"softmax_triton skipped at width {width} > MAX_FUSED_WIDTH = {MAX_FUSED_WIDTH}.")
                continue
            t0 = time.perf_counter()
            out = fn(x)  # one checked call, also the warm-up (and compilation on a GPU)
            if device.HAS_CUDA:
                torch.cuda.synchronize()
            once = time.perf_counter() - t0
            try:
                assert_close(out, ref64, dtype=dtype, baseline=baseline)
            except AssertionError as err:
                results[width, label] = "wrong"
                notes.append(f"{label} at width {width} gave a wrong answer: {err}")
                continue
            n = rep
            if is_triton and interpreted:
                n = min(rep, 3)
                spent_interpreting += once
                if spent_interpreting + n * once > INTERPRETER_BUDGET_S:
                    results[width, label] = None
                    notes.append(f"{label} skipped at width {width}: the interpreter would need about "
                                 f"{n * once:.0f} s more than the {INTERPRETER_BUDGET_S:.0f} s budget.")
                    continue
                spent_interpreting += n * once
            seconds = time_fn(lambda: fn(x), warmup=0 if is_triton and interpreted else 2, rep=n)
            results[width, label] = _gbps(rows, width, dtype, seconds)
    header = ["width"] + [f"{label} (interp.)" if is_triton and interpreted and device.HAS_TRITON
                          else label for label, _, is_triton in PROVIDERS]
    table = []
    for width in widths:
        base = results[width, "torch.softmax"]
        line: list = [width]
        for label, _, _ in PROVIDERS:
            value = results[width, label]
            if isinstance(value, float) and label != "torch.softmax" and isinstance(base, float):
                value = f"{format_value(value)} ({format_value(value / base)}×)"
            line.append(value)
        table.append(line)
    where = "GPU" if device.HAS_CUDA else f"CPU (torch threads: {torch.get_num_threads()})"
    title = (f"Softmax over the last dim, {rows} rows, {args.dtype}, on {where}: GB/s "
             f"(higher is better), (r×) = ratio to torch.softmax\n"
             f"GB/s = 2 · rows · width · bytes per element / median time: one read of x and one "
             f"write of y, the least any softmax must move; – = not measured (see notes).")
    if interpreted and device.HAS_TRITON:
        title += ("\nThe (interp.) columns run in Triton's interpreter on CPU: they measure Python "
                  "executing the kernel one program at a time, not the kernel's speed on a GPU.")
    text = print_table(title, header, table)
    if skip_triton:
        notes.insert(0, f"Triton columns skipped: {skip_triton}.")
    if notes:
        text += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in notes)
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in notes))
    return text

