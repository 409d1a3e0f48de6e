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

import torch
import torch.nn.functional as F

from labkit import attention, attention_backward, device
from labkit.bench.sweep import Provider, long_table, notes, sweep
from labkit.bench.softmax import int_list
from labkit.kernels import flash_attention_triton as triton_flash_attention
from labkit.kernels import flash_attention_forward_triton as triton_forward
from labkit.kernels.flash_forward import block_sizes

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
INTERPRETER_BUDGET_S = 20.0  # the interpreted Triton kernel may take this long in all
TARGET = {"bh": 8, "d": 64, "blocks": ((64, 64), (256, 512))}  # the CPU target: within 2x of SDPA
MiB = 2**20


def _flash_attn(dtype: torch.dtype, causal: bool):
    """flash-attn's ``flash_attn_func`` on (B, H, N, D) tensors, and '' — or None and why it cannot run here."""
    if not device.HAS_CUDA:
        return None, "flash-attn runs on CUDA GPUs only"
    if dtype not in (torch.float16, torch.bfloat16):
        return None, "flash-attn supports fp16 and bf16 only"
    try:
        from flash_attn import flash_attn_func
    except ImportError as err:  # not installed, or built for another torch/CUDA
        return None, f"flash-attn is not importable here ({err})"

    def flash_attn(q, k, v):  # (B, H, N, D) -> flash-attn's layout (B, N, H, D) and back
        return flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                               causal=causal).transpose(1, 2)
    return flash_attn, ""


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


def _providers(dtype: torch.dtype, causal: bool, min_n: int) -> list[Provider]:
    """Standard attention, SDPA, flash-attn, the lab's tiling, labkit's PyTorch flash and the Triton kernel."""
    flash_attn, why = _flash_attn(dtype, causal)
    return [
        Provider("standard (naive_attention)", lambda q, k, v: attention.naive_attention(q, k, v, causal)),
        Provider("torch SDPA", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)),
        Provider("flash-attn", flash_attn, skip=lambda n: why),
        Provider("labkit tiled_attention", attention.tiled_attention,
                 skip=lambda n: "the lab's pseudo-code has no causal mask" if causal else ""),
        Provider("labkit flash (PyTorch)", lambda q, k, v: attention.flash_attention_forward(q, k, v, causal)[0]),
        Provider("Triton kernel" + (" (interpreter)" if device.INTERPRET else ""),
                 lambda q, k, v: triton_forward(q, k, v, causal)[0], skip=_triton_skip(dtype, min_n),
                 interpreted=device.INTERPRET),
    ]


def _triton_skip(dtype: torch.dtype, min_n: int):
    """Why the Triton kernel does not run at N: no Triton, bf16 in the interpreter, or N above the
    smallest in the interpreter (it runs each program as Python/numpy calls: its time says
    nothing about the kernel on a GPU)."""
    def skip(n: int) -> str:
        if not device.HAS_TRITON:
            return device.TRITON_MISSING
        if device.INTERPRET and dtype == torch.bfloat16:
            return "bfloat16 kernels run on the GPU only"
        if device.INTERPRET and n != min_n:
            return "the interpreter runs at the smallest N only"
        return ""
    return skip


def _tflops(bh: int, n: int, d: int, causal: bool, seconds: float, factor: float = 1.0) -> float:
    """factor · 4 · B·H · N² · D (halved when causal) / seconds in TFLOP/s; 3.5: forward + backward."""
    return factor * 4 * bh * n * n * d * (0.5 if causal else 1.0) / seconds / 1e12


FWD_BWD_FACTOR = 3.5  # forward 4·N²·D + backward 10·N²·D (2.5x the forward), per (b, h)


def _grad_providers(dtype: torch.dtype, causal: bool, min_n: int) -> list[Provider]:
    """The same through autograd: ``fn(q, k, v, do)`` -> (dq, dk, dv) of o.backward(dO)."""
    flash_attn, why = _flash_attn(dtype, causal)
    forwards = [
        ("standard (autograd)", lambda q, k, v: attention.naive_attention(q, k, v, causal), ""),
        ("torch SDPA", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), ""),
        ("flash-attn", flash_attn, why),
        ("labkit flash_attention (PyTorch)", lambda q, k, v: attention_backward.flash_attention(q, k, v, causal),
         ""),
    ]
    providers = [Provider(label, lambda q, k, v, do, fn=fn: _forward_backward(fn, q, k, v, do),
                          skip=lambda n, why=why: why) for label, fn, why in forwards]
    providers.append(Provider("Triton flash_attention" + (" (interpreter)" if device.INTERPRET else ""),
                              lambda q, k, v, do: _forward_backward(
                                  lambda q, k, v: triton_flash_attention(q, k, v, causal), q, k, v, do),
                              skip=_triton_skip(dtype, min_n), interpreted=device.INTERPRET))
    return providers


def _forward_backward(fn, q, k, v, do):
    """o = fn(q, k, v); o.backward(do); (dq, dk, dv)."""
    for t in (q, k, v):
        t.grad = None
    fn(q, k, v).backward(do)
    return q.grad, k.grad, v.grad


def _sweep_backward(args, ns, bh, d, dtype, causal) -> tuple[str, list[str]]:
    """Forward + backward time, TFLOP/s, peak memory and gradient error for every provider and N;
    the table and the notes."""
    def inputs(n: int) -> tuple:
        q, k, v = (t.requires_grad_() for t in _inputs(bh, n, d, dtype, device.DEVICE, seed=2))
        return q, k, v, _inputs(bh, n, d, dtype, device.DEVICE, seed=3)[0]  # dO: the upstream gradient

    def reference(q, k, v, do):
        leaves64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
        return _forward_backward(lambda q, k, v: attention.naive_attention(q, k, v, causal), *leaves64,
                                 do.double())
    results = sweep(ns, _grad_providers(dtype, causal, min(ns)), inputs, reference=reference,
                    rep=max(args.rep, 1), memory=True, interpreter_budget_s=INTERPRETER_BUDGET_S,
                    describe=lambda n: f"N={n}, forward + backward")
    where = "GPU" if device.HAS_CUDA else f"CPU (torch threads: {torch.get_num_threads()})"
    title = (f"Attention forward + backward (o.backward(dO) through autograd), q, k, v "
             f"(B·H={bh}, N, D={d}), {str(dtype).replace('torch.', '')}"
             f"{', causal' if causal else ''}, on {where}\n"
             f"TFLOP/s = 3.5 · 4 · B·H · N² · D{' / 2' if causal else ''} / median time (forward 4·N²·D "
             f"plus backward 10·N²·D = 2.5x the forward, FlashAttention-2's count); peak = memory of "
             f"one forward + backward above the inputs (MiB; CPU: rise of peak RSS, coarse); "
             f"error = max over dq, dk, dv of |grad - float64 autograd reference|.")
    return (long_table(title, results, _columns(bh, d, causal, FWD_BWD_FACTOR)),
            notes(results, describe=lambda n: f"N={n}"))


def _columns(bh: int, d: int, causal: bool, factor: float = 1.0):
    """The attention tables' columns: N, provider, ms, TFLOP/s, peak MiB, max error."""
    return [("N", lambda m: m.size), ("provider", lambda m: m.provider),
            ("time (ms)", lambda m: m.seconds * 1e3),
            ("TFLOP/s", lambda m: _tflops(bh, m.size, d, causal, m.seconds, factor)),
            ("peak (MiB)", lambda m: None if m.peak_bytes is None else m.peak_bytes / MiB),
            ("max error", lambda m: m.error)]


def _inputs(bh: int, n: int, d: int, dtype: torch.dtype, dev, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, bh, n, d, generator=g).to(device=dev, dtype=dtype) for _ in range(3))


def _sweep(args, ns, bh, d, dtype, causal) -> tuple[str, list[str]]:
    """Forward time, TFLOP/s, peak memory and error against float64 for every provider and N; the
    table and the notes."""
    results = sweep(ns, _providers(dtype, causal, min(ns)),
                    lambda n: _inputs(bh, n, d, dtype, device.DEVICE),
                    reference=lambda q, k, v: attention.flash_attention_forward(
                        q.double(), k.double(), v.double(), causal)[0],
                    rep=max(args.rep, 1), memory=True, interpreter_budget_s=INTERPRETER_BUDGET_S,
                    describe=lambda n: f"N={n}")
    where = "GPU" if device.HAS_CUDA else f"CPU (torch threads: {torch.get_num_threads()})"
    bm, bn = block_sizes(d, dtype)[:2]
    title = (f"Attention forward, q, k, v (B·H={bh}, N, D={d}), {str(dtype).replace('torch.', '')}"
             f"{', causal' if causal else ''}, on {where}\n"
             f"TFLOP/s = 4 · B·H · N² · D{' / 2 (causal: half the scores)' if causal else ''} / median "
             f"time; peak = memory one call needs above its inputs (MiB; CPU: rise of peak RSS, "
             f"coarse; not measured for the interpreter); error = max |o - float64 reference|.\n"
             f"labkit flash (PyTorch): block_q = block_k = 64; Triton kernel: BLOCK_M = {bm}, "
             f"BLOCK_N = {bn}{' (interpreter sizes)' if device.INTERPRET else ''}.")
    return long_table(title, results, _columns(bh, d, causal)), notes(results, describe=lambda n: f"N={n}")


def _target(args) -> str:
    """labkit's PyTorch flash forward vs SDPA on CPU at the issue's target size, interleaved."""
    bh, d = TARGET["bh"], TARGET["d"]
    providers = [Provider("torch SDPA", F.scaled_dot_product_attention)]
    providers += [Provider(f"labkit flash (PyTorch), block_q={bq}, block_k={bk}",
                           lambda q, k, v, bq=bq, bk=bk: attention.flash_attention_forward(
                               q, k, v, block_q=bq, block_k=bk)[0])
                  for bq, bk in TARGET["blocks"]]
    reps = max(min(args.rep, 5), 1)
    results = sweep([args.target_n], providers, lambda n: _inputs(bh, n, d, torch.float32, "cpu", seed=1),
                    reference=lambda q, k, v: attention.flash_attention_forward(
                        q.double(), k.double(), v.double(), block_q=256, block_k=512)[0],
                    rep=reps, interleave=True, describe=lambda n: "target")
    sdpa = results[0].seconds
    title = (f"CPU target: B·H={bh}, N={args.target_n}, D={d}, float32, non-causal, torch threads: "
             f"{torch.get_num_threads()}; median of {reps} interleaved rounds\n"
             f"ratio = time / torch SDPA's time in the same run (the target: at most 2).")
    return long_table(title, results, [
        ("provider", lambda m: m.provider), ("time (ms)", lambda m: m.seconds * 1e3),
        ("TFLOP/s", lambda m: _tflops(bh, m.size, d, False, m.seconds)),
        ("ratio to SDPA", lambda m: m.seconds / sdpa), ("max error", lambda m: m.error)])


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
    text, remarks = _sweep(args, ns, bh, d, dtype, args.causal)
    print()
    backward, more = _sweep_backward(args, ns, bh, d, dtype, args.causal)
    text += "\n\n" + backward
    remarks += [line for line in more if line not in remarks]  # flash-attn's reason is the same
    if args.target_n > 0:
        print()
        text += "\n\n" + _target(args)
    if remarks:
        block = "\n\nNotes:\n" + "\n".join(f"- {n}" for n in remarks)
        print(block[1:])
        text += block
    return text
