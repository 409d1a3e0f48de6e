"""GPU attention benchmark of ``gpu-check``: labkit's Triton kernels against torch SDPA, each backend forced in turn.

``python -m labkit.bench.gpu_attention [--budget S] [--out DIR]`` (run by ``python -m labkit
gpu-check``). For fp16 and bf16, D ∈ {64, 128}, non-causal and causal, N from 1k to 16k, it
times the forward and the forward + backward (``o.backward(dO)``) of: SDPA as it chooses by
default, SDPA with ``torch.nn.attention.sdpa_kernel`` forcing the flash, cuDNN and efficient
backends in turn, and ``labkit.kernels`` (Triton). It also says which backend SDPA picks by
default (the aten op it dispatches to, seen by torch.profiler).

FLOPs follow the FlashAttention convention: 4·B·H·N²·D for the forward, halved when causal; the
backward counts 2.5x the forward, so forward + backward counts 3.5x — the same convention as
``python -m labkit bench attention`` (``FWD_BWD_FACTOR``). The backward alone is reported as
2.5x the forward FLOPs over (forward + backward time − forward time). Shapes follow
FlashAttention's benchmark: B·N = 16k tokens and H·D = 2048. Peak memory is the CUDA allocator's
peak above the inputs. Each measurement is skipped, with a note, when the time budget is spent.
Results go to ``benchmarks/attention-gpu-<gpu>-<date>.md``. Without CUDA it prints one line and
exits 2; ``measure`` itself runs on a CPU too (the tests use it with tiny sizes).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from labkit import device
from labkit.bench.attention import FWD_BWD_FACTOR
from labkit.bench.sweep import BUDGET_SPENT, Provider, reason, sweep

NEEDS_GPU = ("labkit.bench.gpu_attention needs a CUDA GPU (torch.cuda.is_available() is False here); "
             "`python -m labkit bench attention` runs on a CPU")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
SEQ_LENS = (1024, 2048, 4096, 8192, 16384)
HEAD_DIMS = (64, 128)
TOKENS = 16384  # B · N
HIDDEN = 2048  # H · D
BWD_FACTOR = FWD_BWD_FACTOR - 1.0  # 2.5: the backward counted as 2.5x the forward
# SDPA backends forced in turn: (label, SDPBackend member name)
FORCED = (("flash", "FLASH_ATTENTION"), ("cuDNN", "CUDNN_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"))
# aten op (substring of the profiler's event name) -> the backend SDPA dispatched to; checked in order
ATEN_BACKENDS = (("cudnn_attention", "cuDNN"), ("efficient_attention", "efficient"),
                 ("flash_attention", "flash"), ("attention_math", "math"))
PASSES = ("forward", "forward+backward")


def flops(batch: int, heads: int, n: int, d: int, causal: bool) -> float:
    """Forward FLOPs by the FlashAttention convention: 4 · B·H · N² · D, halved when causal."""
    return 4.0 * batch * heads * n * n * d * (0.5 if causal else 1.0)


def default_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> str:
    """The backend SDPA dispatches to by default for these inputs: cuDNN, efficient, flash, math or 'unknown'."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    names = [e.key for e in prof.key_averages()]
    for op, label in ATEN_BACKENDS:
        if any(op in name for name in names):
            return label
    return "unknown"


def _forced(backend_name: str, causal: bool):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def call(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return call


def providers(causal: bool, triton: bool) -> list[tuple[str, object]]:
    """(label, fn(q, k, v) -> o) for SDPA default, each forced backend and labkit's Triton."""
    out = [("SDPA default", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal))]
    out += [(f"SDPA {label}", _forced(name, causal)) for label, name in FORCED]
    if triton:
        from labkit.kernels import flash_attention_triton

        out.append(("labkit Triton", lambda q, k, v: flash_attention_triton(q, k, v, causal)))
    return out


def _run_pass(fn, pass_: str, q, k, v, do):
    """One call of the pass: the output (forward) or the gradients (forward + backward)."""
    if pass_ == "forward":
        return (fn(q, k, v),)
    for t in (q, k, v):
        t.grad = None
    fn(q, k, v).backward(do)
    return q.grad, k.grad, v.grad


def _where(point) -> str:
    dname, d, causal, n, _ = point
    return f"{dname} D={d}{' causal' if causal else ''} N={n}"


def measure(dev: str = "cuda", dtypes=("fp16", "bf16"), head_dims=HEAD_DIMS, seq_lens=SEQ_LENS,
          causals=(False, True), tokens: int = TOKENS, hidden: int = HIDDEN, budget_s: float = 130.0,
          rep: int = 5, triton: bool = True, log=print) -> tuple[list[dict], list[str], dict]:
    """Measure every provider; (records, notes, default backend per (dtype, D, causal, N)).

    The points (dtype, D, causal, N, pass) go through ``bench.sweep.sweep``. A record: pass,
    dtype, head_dim, causal, n, batch, heads, provider, ms, tflops, peak_mib, err (max |output or
    gradient − SDPA default's|). Unsupported providers and whatever does not fit in ``budget_s``
    become notes.
    """
    points = [(dname, d, causal, n, pass_) for dname in dtypes for d in head_dims for causal in causals
              for n in seq_lens for pass_ in PASSES]
    defaults: dict = {}

    def inputs(point) -> tuple:
        dname, d, causal, n, pass_ = point
        g = torch.Generator(dev).manual_seed(n + d)  # on the GPU: 4 x 33M numbers per point
        q, k, v, do = (torch.randn(max(1, tokens // n), max(1, hidden // d), n, d, generator=g, device=dev,
                                   dtype=DTYPES[dname]) for _ in range(4))
        if pass_ == "forward":
            try:
                defaults[point[:4]] = default_backend(q, k, v, causal)
            except Exception as err:  # noqa: BLE001 - reported, not fatal
                defaults[point[:4]] = f"unknown ({reason(err)})"
        else:
            q, k, v = (t.requires_grad_() for t in (q, k, v))
        return point, q, k, v, do

    table = {causal: providers(causal, triton) for causal in causals}  # point[2] is causal

    def run(i: int):
        return lambda point, q, k, v, do: _run_pass(table[point[2]][i][1], point[4], q, k, v, do)

    def reference(point, q, k, v, do):  # SDPA's default choice (provider 0): math at worst, never missing
        return [t.detach().float() for t in run(0)(point, q, k, v, do)]
    chosen = [Provider(label, run(i), interpreted=label == "labkit Triton" and device.INTERPRET)
              for i, (label, _) in enumerate(providers(False, triton))]
    results = sweep(points, chosen, inputs, reference=reference, rep=rep, memory=True,
                    deadline=time.perf_counter() + budget_s, catch=(Exception,),
                    report=lambda done, total, what: log(what),
                    describe=lambda point: f"{_where(point)} {point[4]}")
    records = []
    for m in results:
        if not m.measured:
            continue
        dname, d, causal, n, pass_ = m.size
        batch, heads = max(1, tokens // n), max(1, hidden // d)
        f = flops(batch, heads, n, d, causal) * (1.0 if pass_ == "forward" else FWD_BWD_FACTOR)
        records.append(dict(pass_=pass_, dtype=dname, head_dim=d, causal=causal, n=n, batch=batch, heads=heads,
                            provider=m.provider, ms=m.seconds * 1e3, tflops=f / m.seconds / 1e12,
                            peak_mib=None if m.peak_bytes is None else m.peak_bytes / 2**20, err=m.error))
    unsupported: dict = {}
    for m in results:
        if not m.measured and m.why_not != BUDGET_SPENT:
            unsupported.setdefault((m.provider, m.why_not), []).append(f"{_where(m.size)} {m.size[4]}")
    notes = [f"{label} not measured ({why}) at {len(where)} point(s), e.g. {where[0]}."
             for (label, why), where in unsupported.items()]
    skipped = list(dict.fromkeys(_where(m.size) for m in results if m.why_not == BUDGET_SPENT))
    if skipped:
        notes.append(f"Time budget of {budget_s:.0f} s spent: not measured at {', '.join(skipped)}.")
    return records, notes, defaults


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}" if abs(x) >= 1 else f"{x:.3g}"


def backward_tflops(records: list[dict]) -> dict:
    """(dtype, D, causal, N, provider) -> backward TFLOP/s: 2.5x forward FLOPs / (fwd+bwd time − fwd time)."""
    fwd = {(r["dtype"], r["head_dim"], r["causal"], r["n"], r["provider"]): r for r in records
           if r["pass_"] == "forward"}
    out = {}
    for r in records:
        key = (r["dtype"], r["head_dim"], r["causal"], r["n"], r["provider"])
        if r["pass_"] != "forward" and key in fwd and r["ms"] > fwd[key]["ms"]:
            f = flops(r["batch"], r["heads"], r["n"], r["head_dim"], r["causal"]) * BWD_FACTOR
            out[key] = f / ((r["ms"] - fwd[key]["ms"]) / 1e3) / 1e12
    return out


def format_report(records: list[dict], notes: list[str], defaults: dict, gpu: str, versions: dict,
                  date: str, command: str = "python -m labkit.bench.gpu_attention") -> str:
    """Markdown: the default SDPA backend, TFLOP/s tables per pass × dtype × D × causal, peak memory against N."""
    lines = [f"# Attention on {gpu}, {date}", "", f"GPU: {gpu}", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "", f"Command: `{command}`", "",
             "TFLOP/s by the FlashAttention convention: forward 4·B·H·N²·D (halved when causal); backward "
             f"2.5x that, so forward + backward {FWD_BWD_FACTOR}x (as `labkit bench attention`); 'backward' "
             "= 2.5x the forward FLOPs / (forward + backward time − forward time). B·N = 16k tokens, "
             "H·D = 2048. err = max |output or gradient − SDPA default's|.", ""]
    picks = sorted({v for v in defaults.values()})
    lines.append("## SDPA's default backend")
    lines.append("")
    for pick in picks:
        where = [f"{dt} D={d}{' causal' if c else ''} N={n}" for (dt, d, c, n), v in defaults.items() if v == pick]
        lines.append(f"- **{pick}** at {len(where)} of {len(defaults)} shapes" +
                     ("" if len(where) == len(defaults) else f": {', '.join(where)}"))
    bwd = backward_tflops(records)
    provs = list(dict.fromkeys(r["provider"] for r in records))
    groups = list(dict.fromkeys((r["dtype"], r["head_dim"], r["causal"]) for r in records))
    for pass_ in PASSES:
        for dt, d, c in groups:
            rs = [r for r in records if (r["pass_"], r["dtype"], r["head_dim"], r["causal"]) == (pass_, dt, d, c)]
            if not rs:
                continue
            lines += ["", f"## {pass_}, {dt}, D={d}{', causal' if c else ''}: TFLOP/s"
                      + (" (backward alone in brackets)" if pass_ != "forward" else ""), "",
                      "| N | B×H | " + " | ".join(provs) + " | max err |",
                      "|---|---|" + "---|" * len(provs) + "---|"]
            for n in sorted({r["n"] for r in rs}):
                row = {r["provider"]: r for r in rs if r["n"] == n}
                first = next(iter(row.values()))
                cells = []
                for p in provs:
                    if p not in row:
                        cells.append("-")
                        continue
                    cell = _fmt(row[p]["tflops"])
                    if pass_ != "forward" and (dt, d, c, n, p) in bwd:
                        cell += f" ({_fmt(bwd[(dt, d, c, n, p)])})"
                    cells.append(cell)
                err = max(r["err"] for r in row.values())
                lines.append(f"| {n} | {first['batch']}×{first['heads']} | " + " | ".join(cells) + f" | {err:.2g} |")
    for pass_ in PASSES:
        rs = [r for r in records if r["pass_"] == pass_ and not r["causal"]]
        for dt, d in dict.fromkeys((r["dtype"], r["head_dim"]) for r in rs):
            sub = [r for r in rs if (r["dtype"], r["head_dim"]) == (dt, d)]
            lines += ["", f"## Peak memory (MiB above the inputs) against N: {pass_}, {dt}, D={d}", "",
                      "| N | " + " | ".join(provs) + " |", "|---|" + "---|" * len(provs)]
            for n in sorted({r["n"] for r in sub}):
                row = {r["provider"]: r["peak_mib"] for r in sub if r["n"] == n}
                lines.append(f"| {n} | " + " | ".join(_fmt(row.get(p)) for p in provs) + " |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI: [--budget S] [--out DIR] [--rep R] [--n ...] [--d ...] [--dtype ...]; 2 without CUDA."""
    parser = argparse.ArgumentParser(prog="python -m labkit.bench.gpu_attention", description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=130.0, help="seconds for all measurements (default: %(default)s)")
    parser.add_argument("--out", default="benchmarks", help="folder for the report (default: %(default)s)")
    parser.add_argument("--rep", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--n", type=lambda s: tuple(int(x) for x in s.split(",")), default=SEQ_LENS)
    parser.add_argument("--d", type=lambda s: tuple(int(x) for x in s.split(",")), default=HEAD_DIMS)
    parser.add_argument("--dtype", type=lambda s: tuple(s.split(",")), default=("fp16", "bf16"))
    args = parser.parse_args(argv)
    unknown = [x for x in args.dtype if x not in DTYPES]
    if unknown:
        parser.error(f"--dtype: unknown {unknown}; choose from {','.join(DTYPES)}")
    if args.budget <= 0 or args.rep < 1:
        parser.error("--budget must be positive and --rep at least 1")
    if not torch.cuda.is_available():
        print(NEEDS_GPU, file=sys.stderr)
        return 2
    import triton

    records, notes, defaults = measure("cuda", args.dtype, args.d, args.n, budget_s=args.budget, rep=args.rep,
                                     log=lambda s: print(s, file=sys.stderr, flush=True))
    gpu = torch.cuda.get_device_name(0)
    date = _dt.date.today().isoformat()
    versions = {"torch": torch.__version__, "triton": triton.__version__, "CUDA": torch.version.cuda,
                "cuDNN": torch.backends.cudnn.version()}
    report = format_report(records, notes, defaults, gpu, versions, date,
                           "python -m labkit.bench.gpu_attention " + " ".join(argv or sys.argv[1:]))
    path = Path(args.out) / f"attention-gpu-{re.sub(r'[^a-z0-9]+', '-', gpu.lower()).strip('-')}-{date}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    print(report + f"\nwritten to {path}")
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
