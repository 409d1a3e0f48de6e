"""A machine without bubblewrap or Chromium (a new user's): the tests that need them skip, saying
why, nothing errors, and the run ends with one line naming what was not tested and how to install it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_without_bubblewrap_and_chromium_the_tests_that_need_them_skip_and_say_so(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent),  # the venv's tools, no bwrap, no mount
           "LABKIT_CHROMIUM": str(tmp_path / "no-chromium")}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "tests/test_grade.py", "tests/test_grading_sandbox.py", "tests/test_grade_hostile.py",
                           "tests/test_grading_notebook.py", "tests/test_grading_export.py",
                           "tests/test_grade_attacks.py", "tests/test_browser.py", "-k", "not unsandboxed", "-rs"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert " error" not in out and "failed" not in out, out[-3000:]
    assert "needs bubblewrap: bubblewrap (bwrap) is not installed" in out and "needs chromium: no Chromium" in out
    last = out.strip().split("\n")
    summary = next(line for line in last if line.startswith("NOT TESTED HERE:"))
    assert "sandboxed grading" in summary and "the student's path in a browser" in summary
    assert "apt-get install bubblewrap && apt-get install chromium" in summary
