"""``python -m labkit {student,grade,bench} ...``: blank copies, grading, benchmarks."""
from __future__ import annotations

import sys

USAGE = """usage: python -m labkit COMMAND [ARGS]

commands:
  student SRC [DEST] [--force]   make blank copies of the solved notebooks (default DEST: exercises)
  grade PATH [--timeout S] [--csv FILE] [--solutions DIR]
                                 run a notebook or a folder of submissions headless and report
                                 each exercise as passed / failed / not attempted
  bench SUITE [--save]           benchmarks: softmax, attention, linsys
  report                         the environment report of notebook 00

Run `python -m labkit COMMAND --help` for a command's options."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "student":
        from labkit.student import cli_student
        return cli_student(rest)
    if command == "grade":
        from labkit.grade import cli_grade
        return cli_grade(rest)
    if command == "bench":
        from labkit.bench import main as bench_main
        return bench_main(rest)
    if command == "report":
        from labkit import device
        print(device.report())
        return 0
    print(f"labkit: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
