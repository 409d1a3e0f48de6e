"""``python -m labkit compile-check``: compile every kernel for real GPU targets, without a GPU.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` runs Triton's whole
pipeline and ptxas on a CPU. Each kernel × dtype × head dim × causal is compiled at every
configuration ``labkit.kernels.launch`` can pick for each architecture; cuobjdump reports
registers, local memory (spills) and static shared memory, the PTX tells which matrix unit the
dots use (wgmma, mma, or fma on CUDA cores). Compiles run in fresh processes with
TRITON_INTERPRET=0, since on CPU labkit.device switches the interpreter on; each prints one line
per job. ``--summary FILE.json`` formats an earlier run's records as the ``benchmarks/`` page.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import torch

from labkit.kernels import launch

ARCH_CCS = (75, 80, 86, 89, 90, 120)
HEAD_DIMS = (16, 32, 64, 128)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# kernel name -> (module, function, pointer args in the input dtype)
KERNELS = {
    "softmax": ("labkit.kernels.softmax", "softmax_kernel", ("out_ptr", "x_ptr")),
    "online_softmax": ("labkit.kernels.softmax", "online_softmax_kernel", ("out_ptr", "x_ptr")),
    "forward": ("labkit.kernels.flash_forward", "flash_attention_forward_kernel", ("Q", "K", "V", "O")),
    "preprocess": ("labkit.kernels.flash_backward", "flash_attention_backward_preprocess_kernel",
                   ("O", "DO")),
    "dkdv": ("labkit.kernels.flash_backward", "flash_attention_backward_dkdv_kernel",
             ("Q", "K", "V", "DO", "DK", "DV")),
    "dq": ("labkit.kernels.flash_backward", "flash_attention_backward_dq_kernel",
           ("Q", "K", "V", "DO", "DQ")),
    "decode": ("labkit.kernels.decoding", "decode_partials_kernel", ("Q", "K", "V")),
    "decode_paged": ("labkit.kernels.decoding", "decode_partials_kernel", ("Q", "K", "V")),
    "decode_combine": ("labkit.kernels.decoding", "decode_combine_kernel", ("O",)),
}
OTHER_POINTERS = {"LSE": "*fp32", "DELTA": "*fp32", "TILES": "*i32", "M": "*fp32", "L": "*fp32", "ACC": "*fp32",
                  "LENGTHS": "*i32", "BLOCK_TABLE": "*i32"}
NOT_ALIGNED = ("stride_bt",)  # a block table's row stride is max_pages: no multiple of 16 promised
DECODE_PAGE = 16  # the page size compile-check specialises the paged kernel for
FLOAT_ARGS = ("qk_scale", "scale")
HAS_DOT = ("forward", "dkdv", "dq")
TENSOR_CORE_MMA = ("wgmma", "mma")


def jobs(archs=ARCH_CCS, dtypes=tuple(DTYPES), head_dims=HEAD_DIMS, causals=(False, True),
         kernels=tuple(KERNELS)) -> list[dict]:
    """Every (arch, kernel, dtype, head_dim, causal, config) to compile; bf16 only where the arch has it."""
    out = []
    for cc in archs:
        arch = launch.ARCHS[cc]
        for kernel in kernels:
            for dname in dtypes:
                if dname == "bf16" and not arch.has_bf16:
                    continue
                shapes = ([(None, None)] if kernel in ("softmax", "online_softmax") else
                          [(d, None) for d in head_dims] if kernel == "preprocess" or kernel.startswith("decode")
                          else [(d, c) for d in head_dims for c in causals])
                for d, c in shapes:
                    for cfg in launch.candidates(kernel, arch, DTYPES[dname], d, bool(c)):
                        out.append(dict(arch=cc, kernel=kernel, dtype=dname, head_dim=d, causal=c,
                                        config=[cfg.block_m, cfg.block_n, cfg.num_warps,
                                                cfg.num_stages]))
    return out


def _source(job: dict):
    """The ASTSource of job's kernel: signature, constexprs and 16-byte alignment as a launch specialises them."""
    import importlib

    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    module, name, data_ptrs = KERNELS[job["kernel"]]
    fn = getattr(importlib.import_module(module), name)
    if not isinstance(fn, JITFunction):
        raise RuntimeError(f"{name} is a {type(fn).__name__}, not a JITFunction: compile with "
                           f"TRITON_INTERPRET=0 (run_jobs does this in a subprocess)")
    block_m, block_n, _, _ = job["config"]
    dtype = job["dtype"]
    if job["kernel"] in ("softmax", "online_softmax"):
        constexprs = {"BLOCK": block_m}
    elif job["kernel"] == "decode_combine":
        constexprs = {"HEAD_DIM": job["head_dim"], "BLOCK_S": block_m}
    elif job["kernel"].startswith("decode"):
        constexprs = {"HEAD_DIM": job["head_dim"], "BLOCK_N": block_n, "PAGED": job["kernel"] == "decode_paged",
                      "PAGE": DECODE_PAGE}
    else:
        constexprs = {"HEAD_DIM": job["head_dim"], "BLOCK_M": block_m}
        if job["kernel"] != "preprocess":
            constexprs.update(BLOCK_N=block_n, CAUSAL=bool(job["causal"]), DOT_FP32=False,
                              PRECISION="ieee" if dtype == "fp32" else "tf32")
        if job["kernel"] == "forward":
            constexprs["COUNT_TILES"] = False
    signature, attrs = {}, {}
    for i, arg in enumerate(fn.arg_names):
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg.startswith("stride_") and arg.endswith("d"):  # unit stride: Triton specialises 1
            signature[arg] = "constexpr"
            constexprs[arg] = 1
        elif arg in data_ptrs or arg in OTHER_POINTERS:
            signature[arg] = f"*{dtype}" if arg in data_ptrs else OTHER_POINTERS[arg]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif arg in FLOAT_ARGS:
            signature[arg] = "fp32"
        else:
            signature[arg] = "i32"
            if arg.startswith("stride_") and arg not in NOT_ALIGNED:  # multiples of D >= 16 for (B, H, N, D)
                attrs[(i,)] = [["tt.divisibility", 16]]
    return ASTSource(fn, signature, constexprs=constexprs, attrs=attrs)


def _resource_usage(cubin: bytes) -> dict:
    """REG, LOCAL (spilled bytes per thread) and static SHARED from cuobjdump --dump-resource-usage."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([knobs.nvidia.cuobjdump.path, "--dump-resource-usage", f.name],
                              capture_output=True, text=True, check=True).stdout
    return {key: int(re.search(rf"\b{key}:(\d+)", text).group(1)) for key in ("REG", "LOCAL", "SHARED")}


def mma_kind(ptx: str) -> str:
    """wgmma (Hopper warpgroup MMA), mma (mma.sync tensor cores) or fma (no tensor-core instruction)."""
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    if re.search(r"\bmma\.sync\b", ptx):
        return "mma"
    return "fma"


def compile_job(job: dict) -> dict:
    """Compile one job for its arch; the record with shared memory, registers, spills, mma kind, ok and error."""
    import triton
    from triton.backends.compiler import GPUTarget

    arch = launch.ARCHS[job["arch"]]
    rec = dict(job, shared_bytes=None, shared_limit=arch.shared_limit, registers=None,
               spill_bytes=None, mma=None, ok=False, error="")
    try:
        compiled = triton.compile(_source(job), target=GPUTarget("cuda", arch.cc, 32),
                                  options=dict(num_warps=job["config"][2], num_stages=job["config"][3]))
        usage = _resource_usage(compiled.asm["cubin"])
    except Exception as err:  # noqa: BLE001 - a failed compile is a result, not a crash
        rec["error"] = f"compile failed: {type(err).__name__}: {str(err).strip().splitlines()[-1:]}"
        return rec
    rec.update(shared_bytes=compiled.metadata.shared + usage["SHARED"], registers=usage["REG"],
               spill_bytes=usage["LOCAL"],
               mma=mma_kind(compiled.asm["ptx"]) if job["kernel"] in HAS_DOT else "none")
    rec["error"] = problem(rec)
    rec["ok"] = not rec["error"]
    return rec


def problem(rec: dict) -> str:
    """Why a compiled record fails the gate ('' when it passes)."""
    if rec["shared_bytes"] > rec["shared_limit"]:
        return f"needs {rec['shared_bytes']} bytes of shared memory, sm_{rec['arch']} allows {rec['shared_limit']}"
    if rec["spill_bytes"]:
        return f"spills {rec['spill_bytes']} bytes per thread to local memory"
    if rec["arch"] >= 80 and rec["dtype"] != "fp32" and rec["mma"] not in (None, "none", *TENSOR_CORE_MMA):
        return f"{rec['dtype']} dots run on CUDA cores ({rec['mma']}), not tensor cores"
    return ""


def run_jobs(job_list: list[dict], workers: int = 2) -> list[dict]:
    """Compile job_list in `workers` fresh processes with TRITON_INTERPRET=0; records in job order."""
    workers = max(1, min(workers, len(job_list)))
    env = dict(os.environ, TRITON_INTERPRET="0")
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for w in range(workers):
            src, dst = os.path.join(tmp, f"in{w}.json"), os.path.join(tmp, f"out{w}.json")
            with open(src, "w") as f:
                json.dump(job_list[w::workers], f)
            procs.append((subprocess.Popen([sys.executable, "-m", "labkit.kernels.compile_check",
                                            "--worker", src, dst], env=env), dst))
        parts = []
        for proc, dst in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"compile-check worker exited with {proc.returncode}")
            with open(dst) as f:
                parts.append(json.load(f))
    return [parts[i % workers][i // workers] for i in range(len(job_list))]


def exit_code(records: list[dict]) -> int:
    """1 when any record failed to compile, exceeds shared memory, spills or misses tensor cores; else 0."""
    return 0 if records and all(r["ok"] for r in records) else 1


def summary(records: list[dict]) -> str:
    """Markdown table per arch: configs, failures, max shared vs limit, max registers, spills, mma kinds."""
    lines = ["| arch | configs | failed | max shared (bytes) | limit | max registers | spills | fp16/bf16 dots |",
             "|---|---|---|---|---|---|---|---|"]
    for cc in sorted({r["arch"] for r in records}):
        rs = [r for r in records if r["arch"] == cc]
        done = [r for r in rs if r["shared_bytes"] is not None]
        kinds = sorted({r["mma"] for r in done if r["kernel"] in HAS_DOT and r["dtype"] != "fp32"})
        lines.append(f"| sm_{cc} | {len(rs)} | {sum(not r['ok'] for r in rs)} | "
                     f"{max((r['shared_bytes'] for r in done), default='-')} | {rs[0]['shared_limit']} | "
                     f"{max((r['registers'] for r in done), default='-')} | "
                     f"{sum(r['spill_bytes'] > 0 for r in done)} | {', '.join(kinds) or '-'} |")
    bad = [r for r in records if not r["ok"]]
    lines += [""] + [f"FAIL sm_{r['arch']} {r['kernel']} {r['dtype']} D={r['head_dim']} causal={r['causal']} "
                     f"config={r['config']}: {r['error']}" for r in bad]
    return "\n".join(lines).rstrip()


def machine() -> str:
    """CPU model and cores (labkit.bench.hardware), and the OS, for the header of a report."""
    import platform

    from labkit.bench import hardware
    return f"{hardware()}, {platform.system()} {platform.release()}"


def markdown_report(records: list[dict], *, date: str, machine: str, versions: dict, command: str,
                    elapsed: str = "") -> str:
    """A benchmarks/ page for a compile-check run: header, summary table per arch, failures as a list."""
    table, _, fails = summary(records).partition("\n\n")
    lines = [f"# compile-check, {date}", "", f"Machine: {machine}", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "", f"Command: `{command}`", "",
             f"{len(records)} configurations{f' ({elapsed})' if elapsed else ''}; exit code "
             f"{exit_code(records)}. Shared memory is the largest a configuration needs (bytes) against "
             "the arch's opt-in limit per block; spills counts configurations that spill; the last column "
             "lists the matrix instructions of the fp16/bf16 dots (forward, dK/dV, dQ).", "", table, "",
             "Kernels: " + ", ".join(sorted({r["kernel"] for r in records})) + ".", ""]
    fails = [line for line in fails.splitlines() if line.strip()]
    lines += ["## Failures", ""] + ([f"- {line}" for line in fails] or ["None."])
    return "\n".join(lines) + "\n"


def summarize_file(path: str, log: str | None = None, command: str | None = None) -> str:
    """markdown_report of a --json FILE on this machine (date of the file; elapsed time from the run's log)."""
    import datetime as _dt

    import triton

    with open(path) as f:
        records = json.load(f)
    elapsed = ""
    if log:
        with open(log) as f:
            found = re.search(r"compiled in (\d+) s", f.read())
        elapsed = f"compiled in {found.group(1)} s" if found else ""
    archs = ",".join(str(cc) for cc in sorted({r["arch"] for r in records}))
    return markdown_report(records, date=_dt.date.fromtimestamp(os.path.getmtime(path)).isoformat(),
                           machine=machine(), versions={"triton": triton.__version__, "torch": torch.__version__},
                           command=command or f"python -m labkit compile-check --arch {archs} --json {path}",
                           elapsed=elapsed)


def main(argv: list[str] | None = None) -> int:
    """CLI: compile-check [--arch 75,80,...] [--json FILE] [--workers N]; exit 1 on any failure.

    ``--summary FILE [--log LOG] [--md OUT]`` formats the records of an earlier --json FILE instead.
    """
    parser = argparse.ArgumentParser(prog="python -m labkit compile-check", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=",".join(map(str, ARCH_CCS)),
                        help="compute capabilities, comma-separated (default: %(default)s)")
    parser.add_argument("--kernels", default=",".join(KERNELS),
                        help="kernels, comma-separated (default: all, %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="write the list of records to FILE")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--summary", metavar="FILE", help="format the records of an earlier --json FILE "
                        "as a markdown page (nothing is compiled); exit code as the run's")
    parser.add_argument("--log", metavar="LOG", help="with --summary: the run's printed output, for its time")
    parser.add_argument("--md", metavar="OUT", help="with --summary: write the page to OUT")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.summary:
        page = summarize_file(args.summary, args.log)
        if args.md:
            with open(args.md, "w") as f:
                f.write(page)
        print(page, end="")
        with open(args.summary) as f:
            return exit_code(json.load(f))
    if args.worker:  # in a subprocess with TRITON_INTERPRET=0
        with open(args.worker[0]) as f:
            job_list = json.load(f)
        records = []
        for i, job in enumerate(job_list, 1):  # one progress line per job: a long run's log shows how far it got
            start = time.perf_counter()
            records.append(rec := compile_job(job))
            print(f"[{os.path.basename(args.worker[0])} {i}/{len(job_list)}] sm_{rec['arch']} {rec['kernel']} "
                  f"{rec['dtype']} D={rec['head_dim']} causal={rec['causal']} config={rec['config']}: "
                  f"{'ok' if rec['ok'] else 'FAIL'} ({time.perf_counter() - start:.0f} s)", flush=True)
        with open(args.worker[1], "w") as f:
            json.dump(records, f)
        return 0
    try:
        archs = [int(a) for a in args.arch.split(",")]
        unknown = [a for a in archs if a not in launch.ARCHS]
    except ValueError:
        unknown = [args.arch]
    if unknown:
        parser.error(f"--arch: unknown {unknown}; choose from {','.join(map(str, ARCH_CCS))}")
    kernels = args.kernels.split(",")
    if set(kernels) - set(KERNELS):
        parser.error(f"--kernels: unknown {sorted(set(kernels) - set(KERNELS))}; choose from {','.join(KERNELS)}")
    start = time.perf_counter()
    records = run_jobs(jobs(archs, kernels=tuple(kernels)), args.workers)
    print(summary(records))
    print(f"{len(records)} configurations compiled in {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return exit_code(records)


if __name__ == "__main__":
    sys.exit(main())
