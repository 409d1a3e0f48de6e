"""Softmax benchmark: GB/s of torch.softmax, labkit.softmax's PyTorch versions and the two Triton kernels.

Bytes moved = 2 * rows * width * element size (x read once, y written once: the least any
softmax can move), divided by the median time. Sizes come from ``device.PROFILE``.
Introduced in notebook 02; ``python -m labkit bench softmax [--save]``.
"""
from __future__ import annotations

import argparse

import torch

from labkit import device, softmax
from labkit.bench.sweep import Provider, max_abs_error, notes, sweep, wide_table
from labkit.check import assert_close
from labkit.kernels import online_softmax_triton, softmax_triton
from labkit.kernels.softmax import MAX_FUSED_WIDTH

INTERPRETER_BUDGET_S = 20.0  # total time allowed for the interpreted Triton columns on CPU
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}



def providers(skip_triton: str) -> list[Provider]:
    """torch.softmax, the three PyTorch versions and the two Triton kernels (skipped, saying why,
    where Triton cannot run them)."""
    def fused_skip(width: int) -> str:
        return skip_triton or (f"width > MAX_FUSED_WIDTH = {MAX_FUSED_WIDTH}" if width > MAX_FUSED_WIDTH else "")
    interpreted = device.INTERPRET and device.HAS_TRITON
    return [
        Provider("torch.softmax", lambda x: torch.softmax(x, dim=-1)),
        Provider("naive_softmax", softmax.naive_softmax),
        Provider("safe_softmax", softmax.safe_softmax),
        Provider("online_softmax", softmax.online_softmax),
        Provider("softmax_triton", softmax_triton, skip=fused_skip, interpreted=interpreted),
        Provider("online_softmax_triton", online_softmax_triton, skip=lambda width: skip_triton,
                 interpreted=interpreted),
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
    if args.threads is not None:
        torch.set_num_threads(max(args.threads, 1))
    skip_triton = ""
    if not device.HAS_TRITON:
        skip_triton = "Triton is not installed on this platform"
    elif device.INTERPRET and dtype == torch.bfloat16:
        skip_triton = "bfloat16 Triton kernels run on the GPU only"
    gen = torch.Generator(device=device.DEVICE).manual_seed(0)

    def inputs(width: int) -> tuple:
        return (torch.randn(rows, width, generator=gen, device=device.DEVICE, dtype=torch.float32).to(dtype),)

    def check(out: torch.Tensor, x: torch.Tensor) -> float:
        ref64 = torch.softmax(x.double(), dim=-1)
        assert_close(out, ref64, dtype=dtype, baseline=torch.softmax(x, dim=-1) if dtype != torch.float32 else None)
        return max_abs_error(out, ref64)

    results = sweep(widths, providers(skip_triton), inputs, reference=lambda x: x, error=check,
                    rep=max(args.rep, 1), interpreter_budget_s=INTERPRETER_BUDGET_S,
                    describe=lambda width: f"width {width}")
    interpreted = device.INTERPRET and device.HAS_TRITON
    where = "GPU" if device.HAS_CUDA else f"CPU (torch threads: {torch.get_num_threads()})"
    title = (f"Softmax over the last dim, {rows} rows, {args.dtype}, on {where}: GB/s "
             f"(higher is better), (r×) = ratio to torch.softmax\n"
             f"GB/s = 2 · rows · width · bytes per element / median time: one read of x and one "
             f"write of y, the least any softmax must move; – = not measured (see notes).")
    if interpreted:
        title += ("\nThe (interp.) columns run in Triton's interpreter on CPU: they measure Python "
                  "executing the kernel one program at a time, not the kernel's speed on a GPU.")
    labels = {p.label: f"{p.label} (interp.)" if p.interpreted else p.label for p in providers(skip_triton)}
    text = wide_table(title, results, lambda m: _gbps(rows, m.size, dtype, m.seconds), corner="width",
                      baseline="torch.softmax", column_label=labels.get)
    lines = notes(results, describe=lambda width: f"width {width}")
    if lines:
        text += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in lines)
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in lines))
    return text
