"""Set-up for the tests: system tools a test needs (skipped with the reason, and one line at the
end of the run naming what was not tested), and the workers' share of the cores under pytest-xdist
(make test: -n auto)."""
import os
from pathlib import Path

import pytest

# A test that needs a system tool says @pytest.mark.needs("bubblewrap"); without the tool it skips
# with a reason starting "needs <tool>:", and the run's last line says what was not tested.
INSTALL = {"bubblewrap": "apt-get install bubblewrap", "chromium": "apt-get install chromium"}
WHAT = {"bubblewrap": "sandboxed grading", "chromium": "the student's path in a browser"}
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")


def missing(tool: str) -> str | None:
    """Why ``tool`` cannot be used here, or None."""
    if tool == "bubblewrap":
        from labkit.grading.sandbox import bwrap_problem
        return bwrap_problem()
    if tool == "chromium":
        usable = Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)
        return None if usable else f"no Chromium at {CHROMIUM}"
    raise ValueError(f"unknown system tool {tool!r}")


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(tool): the test needs a system tool (bubblewrap, chromium)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        why = missing(mark.args[0])
        if why:
            pytest.skip(f"needs {mark.args[0]}: {why}")


_LAST_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter):
    mutants = [item for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
               for key, value in getattr(report, "user_properties", []) if key == "mutation" for item in value]
    if mutants:
        caught = sum(status != "accepted" for status, _, _ in mutants)
        excused = sum(status == "accepted" and ok for status, ok, _ in mutants)
        said = [v or "unread" for status, _, v in mutants if status == "rejected"]
        _LAST_LINES.append(f"MUTANTS (a fifth of tests/mutation.py's): {caught} of {len(mutants)} rejected, {excused} "
                           f"accepted as equivalent or allowed by the spec, {len(mutants) - caught - excused} let "
                           f"through; their hints as read (tests/mutant_judgements.json): " +
                           ", ".join(f"{said.count(k)} {k}" for k in ("names", "generic", "misleading", "unread")))
    verdicts: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for key, (which, said) in (p for p in getattr(report, "user_properties", []) if p[0] == "hint_verdict"):
            verdicts.setdefault(which, {}).setdefault(said, 0)
            verdicts[which][said] += 1
    if verdicts:
        _LAST_LINES.append("HINTS on wrong answers written without reading the checkers, as read by a judge "
                           "(tests/hint_judgements.json): " + "; ".join(
                               f"{which}: {sum(v.values())} rejected, " + ", ".join(
                                   f"{v.get(k, 0)} {k}" for k in ("names", "generic", "misleading", "unread"))
                               for which, v in sorted(verdicts.items())))
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        tool = reason.removeprefix("Skipped: ").split(":")[0].removeprefix("needs ")
        if tool in INSTALL:
            counts[tool] = counts.get(tool, 0) + 1
    if counts:
        parts = ", ".join(f"{WHAT[t]} ({n} test{'s' * (n != 1)} need{'s' * (n == 1)} {t})"
                          for t, n in sorted(counts.items()))
        _LAST_LINES.append(f"NOT TESTED HERE: {parts}; install with: "
                           f"{' && '.join(INSTALL[t] for t in sorted(counts))} (.ci/run does)")


def pytest_unconfigure(config):
    """The line goes last, after pytest's own summary, where a newcomer looks."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in dict.fromkeys(_LAST_LINES):  # once each, however often the summary hook ran
        if reporter is not None:
            reporter.write_line(line, yellow=True)


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Idle OpenMP threads sleep instead of spinning. The notebooks' kernels and the other child
    # processes (which inherit this) keep torch's default thread count, and their spinning threads
    # took cores the other worker needed: the blank copies' inverted runs took ~10% longer.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    # Each worker gets its share of the cores for torch's intra-op threads in the pytest process. By
    # default every worker would use all the cores: on 2 cores two workers then run four busy
    # threads that wait on each other, and the in-process torch tests take ~1.7x as long (more
    # while notebooks run beside them).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
