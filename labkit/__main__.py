"""``python -m labkit {student,grade,bench} ...``: blank copies, grading, benchmarks."""
from __future__ import annotations

import sys

USAGE = """usage: python -m labkit COMMAND [ARGS]

commands:
  student SRC [DEST] [--force]   make blank copies of the solved notebooks (default DEST: exercises)
  grade PATH [--workers N] [--shard I/N] [--csv FILE] [--solutions DIR] [--unsandboxed]
                                 grade a notebook or a folder of submissions, each sandboxed
                                 (bubblewrap): passed / failed / not attempted per exercise
  grade-merge A.csv B.csv ... --out ALL.csv [--written MARKS.csv]
                                 join the CSVs of sharded grading runs (and written marks)
  gradescope [OUT.zip]           build the Gradescope autograder (default: build/autograder.zip)
  book [OUT]                     build the course website from the stored outputs (default: build/book)
  bench SUITE [--save]           benchmarks: softmax, attention, linsys
  report                         the environment report of notebook 00
  compile-check [--arch 75,80,...] [--json FILE]
                                 compile every kernel for each GPU architecture, no GPU needed;
                                 exit 1 on a compile failure, shared-memory overflow or spill
  gpu-check [--skip PART] [--out DIR]
                                 on a CUDA GPU: kernel tests compiled, notebooks 06-07 (large),
                                 GPU benchmarks written to benchmarks/

Run `python -m labkit COMMAND --help` for a command's options."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "student":
        from labkit.grading.student import cli_student
        return cli_student(rest)
    if command == "grade":
        from labkit.grading.cli import cli_grade
        return cli_grade(rest)
    if command == "grade-merge":
        from labkit.grading.cli import cli_merge
        return cli_merge(rest)
    if command == "book":
        from labkit.book import main as book_main
        return book_main(rest)
    if command == "gradescope":
        from labkit.grading.gradescope import main as gradescope_main
        return gradescope_main(rest)
    if command == "bench":
        from labkit.bench import main as bench_main
        return bench_main(rest)
    if command == "compile-check":
        from labkit.kernels.compile_check import main as compile_check_main
        return compile_check_main(rest)
    if command == "gpu-check":
        from labkit.bench.gpu_check import main as gpu_check_main
        return gpu_check_main(rest)
    if command == "report":
        from labkit import device
        print(device.report())
        return 0
    print(f"labkit: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
