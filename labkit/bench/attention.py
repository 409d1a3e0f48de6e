"""Attention benchmark: the lab's comparison of standard, library and FlashAttention, forward and backward.

For every sequence length N, on the same q, k, v of shape (1, B·H, N, D): median forward time,
TFLOP/s = 4 · B·H · N² · D / time (halved when causal: half the scores are computed), peak
memory of one call (``bench.peak_memory``) and the largest error against a float64 reference.
Providers: standard attention (``attention.naive_attention``), torch SDPA, the flash-attn
library (CUDA, fp16/bf16, layout (B, N, H, D), when installed), labkit's ``tiled_attention``
and ``flash_attention_forward`` (PyTorch tiles) and the Triton kernel (on CPU: Triton's
interpreter, at the smallest N only). A second table times forward + backward (o.backward(dO))
through autograd for standard attention, SDPA, flash-attn, ``attention_backward.flash_attention`` and
``kernels.flash_attention_triton``, with TFLOP/s = 3.5 · 4 · B·H · N² · D / time: the backward's
10 · N² · D FLOPs per (b, h) counted as 2.5x the forward's, as FlashAttention-2's paper does.
A fixed "target" group times labkit's PyTorch flash forward against SDPA on CPU at B·H = 8,
N = 4096, D = 64, fp32, interleaved in one run.
Introduced in notebooks 06 and 07; ``python -m labkit bench attention [--save]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from labkit import attention, attention_backward, device
from labkit.bench import peak_memory, print_table, progress, time_fn
from labkit.bench.softmax import int_list
from labkit.kernels import flash_attention_triton as triton_flash_attention
from labkit.kernels import flash_attention_forward_triton as triton_forward
from labkit.kernels.flash_forward import block_sizes

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
INTERPRETER_BUDGET_S = 20.0  # the interpreted Triton kernel may take this long in all
TARGET = {"bh": 8, "d": 64, "blocks": ((64, 64), (256, 512))}  # the CPU target: within 2x of SDPA
MiB = 2**20


def _flash_attn_func():
    """flash-attn's ``flash_attn_func`` (layout (B, N, H, D)), or the reason it cannot run here."""
    if not device.HAS_CUDA:
        return None, "flash-attn runs on CUDA GPUs only"
    try:
        from flash_attn import flash_attn_func
    except ImportError as err:  # not installed, or built for another torch/CUDA
        return None, f"flash-attn is not importable here ({err})"
    return flash_attn_func, ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int_list, default=None,
                        help="sequence lengths, e.g. 128,256 (default: the profile's)")
    parser.add_argument("--bh", type=int, default=None,
                        help="B·H, batch times heads (default: the profile's)")
    parser.add_argument("--d", type=int, default=None, help="head dim D (default: the profile's)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="default: float16 on a GPU, float32 on CPU")
    parser.add_argument("--causal", action="store_true", help="causal attention (N_q = N_kv)")
    parser.add_argument("--rep", type=int, default=10, help="timed calls per measurement (median)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 gives steadier numbers")
    parser.add_argument("--target-n", type=int, default=4096,
                        help="N of the CPU target group (B·H = 8, D = 64, fp32); 0 skips it")


def _providers(dtype: torch.dtype, causal: bool, notes: list[str]):
    """(label, fn(q, k, v) -> o or None when unsupported, runs Triton) for every provider."""
    fa, why = _flash_attn_func()
    if fa is not None and dtype not in (torch.float16, torch.bfloat16):
        fa, why = None, "flash-attn supports fp16 and bf16 only"
    if fa is None:
        notes.append(f"flash-attn skipped: {why}.")

    def flash_attn(q, k, v):  # (B, H, N, D) -> flash-attn's (B, N, H, D) and back
        return fa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal).transpose(1, 2)

    def tiled(q, k, v):
        return None if causal else attention.tiled_attention(q, k, v)
    if causal:
        notes.append("tiled_attention (the lab's pseudo-code) has no causal mask: not measured.")
    return [
        ("standard (naive_attention)", lambda q, k, v: attention.naive_attention(q, k, v, causal), False),
        ("torch SDPA", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), False),
        ("flash-attn", flash_attn if fa is not None else lambda q, k, v: None, False),
        ("labkit tiled_attention", tiled, False),
        ("labkit flash (PyTorch)", lambda q, k, v: attention.flash_attention_forward(q, k, v, causal)[0],
         False),
        ("Triton kernel" + (" (interpreter)" if device.INTERPRET else ""),
         lambda q, k, v: triton_forward(q, k, v, causal)[0], True),
    ]


def _tflops(bh: int, n: int, d: int, causal: bool, seconds: float, factor: float = 1.0) -> float:
    """factor · 4 · B·H · N² · D (halved when causal) / seconds in TFLOP/s; 3.5: forward + backward."""
    return factor * 4 * bh * n * n * d * (0.5 if causal else 1.0) / seconds / 1e12


FWD_BWD_FACTOR = 3.5  # forward 4·N²·D + backward 10·N²·D (2.5x the forward), per (b, h)


def _grad_providers(dtype: torch.dtype, causal: bool):
    """(label, fn(q, k, v) -> o through autograd, or None when unsupported, runs Triton)."""
    fa, _ = _flash_attn_func()
    if dtype not in (torch.float16, torch.bfloat16):
        fa = None

    def flash_attn(q, k, v):
        return fa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal).transpose(1, 2)
    return [
        ("standard (autograd)", lambda q, k, v: attention.naive_attention(q, k, v, causal), False),
        ("torch SDPA", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), False),
        ("flash-attn", flash_attn if fa is not None else lambda q, k, v: None, False),
        ("labkit flash_attention (PyTorch)", lambda q, k, v: attention_backward.flash_attention(q, k, v, causal),
         False),
        ("Triton flash_attention" + (" (interpreter)" if device.INTERPRET else ""),
         lambda q, k, v: triton_flash_attention(q, k, v, causal), True),
    ]


def _forward_backward(fn, q, k, v, do):
    """o = fn(q, k, v); o.backward(do); (dq, dk, dv), or None when fn does not support the case."""
    for t in (q, k, v):
        t.grad = None
    o = fn(q, k, v)
    if o is None:
        return None
    o.backward(do)
    return q.grad, k.grad, v.grad


def _measure(call, label: str, is_triton: bool, n: int, ns, dtype: torch.dtype, rep: int,
             spent: float, notes: list[str]):
    """((output, median seconds, peak bytes or None), spent) for one provider at one N, or (None, spent).

    The first call is the checked one and the warm-up (compilation on a GPU). The interpreted
    Triton kernel runs at the smallest N only, a few times, within ``INTERPRETER_BUDGET_S`` in
    all (``spent`` so far), and its memory is not measured; bf16 Triton runs on a GPU only.
    """
    if is_triton and (not device.HAS_TRITON or (device.INTERPRET and dtype == torch.bfloat16)):
        return None, spent
    if is_triton and device.INTERPRET and n != min(ns):
        return None, spent
    t0 = time.perf_counter()
    out = call()
    if out is None:
        return None, spent
    if device.HAS_CUDA:
        torch.cuda.synchronize()
    once = time.perf_counter() - t0
    reps, warmup = rep, 2
    if is_triton and device.INTERPRET:
        reps, warmup = min(rep, 3), 0
        if spent + (reps + 1) * once > INTERPRETER_BUDGET_S:
            notes.append(f"{label} skipped at N={n}: it would need about {(reps + 1) * once:.0f} s, "
                         f"more than the {INTERPRETER_BUDGET_S:.0f} s budget.")
            return None, spent
        spent += (reps + 1) * once
    seconds = time_fn(call, warmup=warmup, rep=reps)
    peak = None if is_triton and device.INTERPRET else peak_memory(call)
    return (out, seconds, peak), spent


def _sweep_backward(args, ns, bh, d, dtype, causal, notes) -> str:
    """Forward + backward time, TFLOP/s, peak memory and gradient error for every provider and N."""
    providers = _grad_providers(dtype, causal)
    rep, rows, spent = max(args.rep, 1), [], 0.0
    total, done = len(ns) * len(providers), 0
    for n in ns:
        q, k, v = _inputs(bh, n, d, dtype, device.DEVICE, seed=2)
        do = _inputs(bh, n, d, dtype, device.DEVICE, seed=3)[0]  # the upstream gradient dO
        leaves64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
        ref64 = _forward_backward(lambda q, k, v: attention.naive_attention(q, k, v, causal), *leaves64,
                                  do.double())
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        for label, fn, is_triton in providers:
            done += 1
            progress(done, total, f"N {n}: {label}, forward + backward")
            measured, spent = _measure(lambda: _forward_backward(fn, q, k, v, do),
                                       f"{label} forward + backward", is_triton, n, ns, dtype, rep,
                                       spent, notes)
            if measured is None:
                continue
            grads, seconds, peak = measured
            err = max((g.double() - r).abs().max().item() for g, r in zip(grads, ref64))
            rows.append([n, label, seconds * 1e3, _tflops(bh, n, d, causal, seconds, FWD_BWD_FACTOR),
                         None if peak is None else peak / MiB, err])
    if device.INTERPRET and device.HAS_TRITON and len(ns) > 1 and dtype != torch.bfloat16:
        notes.append(f"Triton flash_attention (interpreter) forward + backward measured at N={min(ns)} "
                     "only, as the forward; its memory is not measured.")
    where = "GPU" if device.HAS_CUDA else f"CPU (torch threads: {torch.get_num_threads()})"
    title = (f"Attention forward + backward (o.backward(dO) through autograd), q, k, v "
             f"(B·H={bh}, N, D={d}), {str(dtype).replace('torch.', '')}"
             f"{', causal' if causal else ''}, on {where}\n"
             f"TFLOP/s = 3.5 · 4 · B·H · N² · D{' / 2' if causal else ''} / median time (forward 4·N²·D "
             f"plus backward 10·N²·D = 2.5x the forward, FlashAttention-2's count); peak = memory of "
             f"one forward + backward above the inputs (MiB; CPU: rise of peak RSS, coarse); "
             f"error = max over dq, dk, dv of |grad - float64 autograd reference|.")
    return print_table(title, ["N", "provider", "time (ms)", "TFLOP/s", "peak (MiB)", "max error"], rows)


def _inputs(bh: int, n: int, d: int, dtype: torch.dtype, dev, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, bh, n, d, generator=g).to(device=dev, dtype=dtype) for _ in range(3))


def _sweep(args, ns, bh, d, dtype, causal, notes) -> str:
    providers = _providers(dtype, causal, notes)
    if not device.HAS_TRITON:
        notes.append(f"Triton kernel skipped: {device.TRITON_MISSING}")
    elif device.INTERPRET and dtype == torch.bfloat16:
        notes.append("Triton kernel skipped: bfloat16 kernels run on the GPU only.")
    rep, rows, spent = max(args.rep, 1), [], 0.0
    total, done = len(ns) * len(providers), 0
    for n in ns:
        q, k, v = _inputs(bh, n, d, dtype, device.DEVICE)
        ref64 = attention.flash_attention_forward(q.double(), k.double(), v.double(), causal)[0]
        for label, fn, is_triton in providers:
            done += 1
            progress(done, total, f"N {n}: {label}")
            measured, spent = _measure(lambda: fn(q, k, v), label, is_triton, n, ns, dtype, rep, spent,
                                       notes)
            if measured is None:
                continue
            out, seconds, peak = measured
            rows.append([n, label, seconds * 1e3, _tflops(bh, n, d, causal, seconds),
                         None if peak is None else peak / MiB, (out.double() - ref64).abs().max().item()])
    if device.INTERPRET and device.HAS_TRITON and len(ns) > 1 and dtype != torch.bfloat16:
        notes.append(f"Triton kernel (interpreter) measured at N={min(ns)} only: the interpreter runs "
                     "each program as Python/numpy calls, so its time says nothing about the kernel "
                     "on a GPU; its memory is not measured.")
    where = "GPU" if device.HAS_CUDA else f"CPU (torch threads: {torch.get_num_threads()})"
    bm, bn = block_sizes(d, dtype)[:2]
    title = (f"Attention forward, q, k, v (B·H={bh}, N, D={d}), {str(dtype).replace('torch.', '')}"
             f"{', causal' if causal else ''}, on {where}\n"
             f"TFLOP/s = 4 · B·H · N² · D{' / 2 (causal: half the scores)' if causal else ''} / median "
             f"time; peak = memory one call needs above its inputs (MiB; CPU: rise of peak RSS, "
             f"coarse); error = max |o - float64 reference|.\n"
             f"labkit flash (PyTorch): block_q = block_k = 64; Triton kernel: BLOCK_M = {bm}, "
             f"BLOCK_N = {bn}{' (interpreter sizes)' if device.INTERPRET else ''}.")
    return print_table(title, ["N", "provider", "time (ms)", "TFLOP/s", "peak (MiB)", "max error"], rows)


def _target(args, notes) -> str:
    """labkit's PyTorch flash forward vs SDPA on CPU at the issue's target size, interleaved."""
    bh, n, d = TARGET["bh"], args.target_n, TARGET["d"]
    q, k, v = _inputs(bh, n, d, torch.float32, "cpu", seed=1)
    fns = [("torch SDPA", lambda: F.scaled_dot_product_attention(q, k, v))]
    fns += [(f"labkit flash (PyTorch), block_q={bq}, block_k={bk}",
             lambda bq=bq, bk=bk: attention.flash_attention_forward(q, k, v, block_q=bq, block_k=bk)[0])
            for bq, bk in TARGET["blocks"]]
    ref64 = attention.flash_attention_forward(q.double(), k.double(), v.double(), block_q=256,
                                              block_k=512)[0]
    errors = {}
    for label, fn in fns:  # warm-up and check
        errors[label] = (fn().double() - ref64).abs().max().item()
    times: dict[str, list[float]] = {label: [] for label, _ in fns}
    reps = max(min(args.rep, 5), 1)
    for r in range(reps):  # interleaved rounds: the machine's load changes all providers alike
        for i, (label, fn) in enumerate(fns):
            progress(r * len(fns) + i + 1, reps * len(fns), f"target: {label}")
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    sdpa = statistics.median(times["torch SDPA"])
    rows = []
    for label, _ in fns:
        t = statistics.median(times[label])
        rows.append([label, t * 1e3, _tflops(bh, n, d, False, t), t / sdpa, errors[label]])
    title = (f"CPU target: B·H={bh}, N={n}, D={d}, float32, non-causal, torch threads: "
             f"{torch.get_num_threads()}; median of {reps} interleaved rounds\n"
             f"ratio = time / torch SDPA's time in the same run (the target: at most 2).")
    return print_table(title, ["provider", "time (ms)", "TFLOP/s", "ratio to SDPA", "max error"], rows)


def run(args: argparse.Namespace) -> str:
    """Sweep N over every provider (forward, then forward + backward), then the CPU target group.

    Prints the tables and returns their text.
    """
    if args.threads is not None:
        torch.set_num_threads(max(args.threads, 1))
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if device.HAS_CUDA else torch.float32)
    ns = args.n or device.PROFILE.seq_lens
    bh = args.bh or device.PROFILE.batch_heads
    d = args.d or device.PROFILE.head_dim
    notes: list[str] = []
    text = _sweep(args, ns, bh, d, dtype, args.causal, notes)
    print()
    text += "\n\n" + _sweep_backward(args, ns, bh, d, dtype, args.causal, notes)
    if args.target_n > 0:
        print()
        text += "\n\n" + _target(args, notes)
    if notes:
        block = "\n\nNotes:\n" + "\n".join(f"- {n}" for n in notes)
        print(block[1:])
        text += block
    return text
