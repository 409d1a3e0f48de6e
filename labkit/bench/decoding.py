"""Decoding benchmark: one query per head against a KV cache; labkit's flash-decoding and paged attention against SDPA.

For each (batch, cache length): torch's SDPA with ``enable_gqa`` (the baseline), labkit's
``decode_attention`` (the definition), ``flash_decode`` and ``paged_attention`` in PyTorch, and on a
GPU the Triton kernels ``flash_decode_triton`` and ``paged_attention_triton``. The providers take
turns (``interleave``), so the ratios to SDPA hold on a busy machine; GB/s counts the cache read once
(2·B·H_kv·N·D elements). A second table compares a paged cache's memory with a contiguous one
reserved for the longest sequence, on a batch of mixed lengths. Introduced in notebook 10;
``python -m labkit bench decoding [--save]``.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from labkit import decoding, device
from labkit.bench import pinned, print_table
from labkit.bench.sweep import Provider, notes, sweep

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128  # Llama-3-8B's attention shape (GQA, G = 4)
PAGE = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gpu = device.HAS_CUDA
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64] if gpu else [1, 4])
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[1024, 8192, 32768, 131072] if gpu else [1024, 4096])
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"),
                        default="float16" if gpu else "float32")
    parser.add_argument("--max-gib", type=float, default=8.0 if gpu else 1.0,
                        help="skip a size whose cache would exceed this many GiB")


def _inputs(size, dtype):
    B, N = size
    g = torch.Generator(device="cpu").manual_seed(B * 7919 + N)
    q = torch.randn(B, HEADS, HEAD_DIM, generator=g).to(device.DEVICE, dtype)
    k = torch.randn(B, KV_HEADS, N, HEAD_DIM, generator=g).to(device.DEVICE, dtype)
    v = torch.randn(B, KV_HEADS, N, HEAD_DIM, generator=g).to(device.DEVICE, dtype)
    def paged(x):  # (B, H_kv, N, D) -> (B * N / PAGE, H_kv, PAGE, D), sequence by sequence
        pages = x.view(B, KV_HEADS, N // PAGE, PAGE, HEAD_DIM).permute(0, 2, 1, 3, 4)
        return pages.reshape(-1, KV_HEADS, PAGE, HEAD_DIM)
    order = torch.randperm(B * (N // PAGE), generator=g)  # pages out of order, as a free list hands them out
    table = torch.empty_like(order)
    table[order] = torch.arange(len(order))
    pages_k, pages_v = paged(k)[order].contiguous(), paged(v)[order].contiguous()
    table = table.view(B, N // PAGE).to(device.DEVICE, torch.int32)
    lengths = torch.full((B,), N, dtype=torch.int64, device=device.DEVICE)
    return q, k, v, lengths, pages_k, pages_v, table


def _sdpa(q, k, v, *_):
    return F.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True)[:, :, 0]


def providers() -> list[Provider]:
    out = [
        Provider("SDPA (enable_gqa)", _sdpa),
        Provider("decode_attention", lambda q, k, v, n, *_: decoding.decode_attention(q, k, v, n)[0]),
        Provider("flash_decode (8 chunks)", lambda q, k, v, n, *_: decoding.flash_decode(q, k, v, n, num_splits=8)[0]),
        Provider(f"paged_attention (pages of {PAGE})",
                 lambda q, k, v, n, pk, pv, t: decoding.paged_attention(q, pk, pv, t, n)[0]),
    ]
    if device.HAS_CUDA and device.HAS_TRITON:
        from labkit.kernels.decoding import flash_decode_triton, paged_attention_triton
        out += [Provider("flash_decode_triton", lambda q, k, v, n, *_: flash_decode_triton(q, k, v, n)[0]),
                Provider("paged_attention_triton",
                         lambda q, k, v, n, pk, pv, t: paged_attention_triton(q, pk, pv, t, n)[0])]
    return out


def memory_table(echo: bool = True) -> str:
    """A paged cache against a contiguous one for 64 sequences of lengths 1..4096 (Llama-3-8B, fp16)."""
    g = torch.Generator().manual_seed(4)
    lengths = torch.randint(1, 4097, (64,), generator=g).tolist()
    per_token = decoding.kv_cache_bytes(32, KV_HEADS, HEAD_DIM, 1)
    used = sum(lengths) * per_token
    rows = [["contiguous, 4096 reserved each", f"{decoding.reserved_bytes(lengths, 4096, per_token) / 2**30:.2f}",
             f"{1 - used / decoding.reserved_bytes(lengths, 4096, per_token):.1%}"]]
    for page in (16, 256):
        held = decoding.paged_bytes(lengths, page, per_token)
        rows.append([f"paged, pages of {page}", f"{held / 2**30:.2f}", f"{1 - used / held:.1%}"])
    return print_table("KV cache of 64 sequences, lengths 1..4096, 32 layers x 8 KV heads x 128, fp16",
                       ["cache", "GiB", "empty"], rows, echo=echo)


def run(args: argparse.Namespace) -> str:
    dtype = getattr(torch, args.dtype)
    sizes = [(b, n) for b in args.batches for n in args.lengths
             if 2 * b * KV_HEADS * n * HEAD_DIM * dtype.itemsize <= args.max_gib * 2**30 and n % PAGE == 0]
    with pinned(1 if not device.HAS_CUDA else torch.get_num_threads()) as machine:
        results = sweep(sizes, providers(), lambda s: _inputs(s, dtype), interleave=True, rep=7,
                        describe=lambda s: f"B={s[0]}, N={s[1]}",
                        catch=(torch.cuda.OutOfMemoryError,) if device.HAS_CUDA else ())
    base = {r.size: r.seconds for r in results if r.provider.startswith("SDPA") and r.measured}
    rows = []
    for r in results:
        B, N = r.size
        cache = 2 * B * KV_HEADS * N * HEAD_DIM * dtype.itemsize
        rows.append([f"B={B}, N={N}", r.provider,
                     f"{r.seconds * 1e3:.3f}" if r.measured else r.why_not,
                     f"{cache / r.seconds / 1e9:.1f}" if r.measured else "",
                     f"{r.seconds / base[r.size]:.2f}" if r.measured and r.size in base else ""])
    text = f"{machine}\n\n" + print_table(
        f"One decoding step, H = {HEADS} query heads, H_kv = {KV_HEADS}, D = {HEAD_DIM}, {args.dtype}",
        ["size", "provider", "ms", "cache GB/s", "time / SDPA's"], rows)
    skipped = notes(results, lambda s: f"B={s[0]}, N={s[1]}")
    return text + "\n" + memory_table() + "".join(f"\n{line}" for line in skipped)
