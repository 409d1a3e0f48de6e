"""``python -m labkit gradescope [OUT.zip]`` (``make gradescope``): the autograder zip Gradescope
runs for each submission, with labkit's grader inside.

The zip holds ``setup.sh`` (a virtual environment with the pinned torch and labkit's wheel),
``run_autograder`` (grades ``/autograder/submission`` into ``/autograder/results/results.json``
with ``labkit grade --format gradescope``), labkit's wheel and the notebooks the grader reads the
exercises from. No solution travels in it: those notebooks are blank copies (the check cells are
all grading needs), and the wheel is built from a copy of the course whose notebooks are blank
copies too. Introduced for instructors (README: Teaching with labkit).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from labkit.grading.student import make_student_copies

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"

SETUP = f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (choose an Ubuntu 24.04
# base image: labkit needs Python 3.11 or newer).
set -euo pipefail
apt-get install -y python3-venv bubblewrap util-linux
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet "{TORCH}" --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install --quiet /autograder/source/labkit-*.whl
/autograder/venv/bin/python -m ipykernel install --sys-prefix --name python3
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade every notebook submitted, write results.json.
set -uo pipefail
root="${AUTOGRADER:-/autograder}"
python="$root/venv/bin/python"
mkdir -p "$root/results"
# bubblewrap needs namespaces; where the container refuses them, the submission runs in Gradescope's
# own one-submission container instead (the autograder holds no solution).
sandbox=$("$python" -c 'from labkit.grading.sandbox import bwrap_problem; print("" if bwrap_problem() is None else "--unsandboxed")')
"$python" -m labkit grade "$root/submission" --solutions "$root/source/solutions" --workers 1 \\
    --format gradescope --out "$root/results/results.json" $sandbox
test -s "$root/results/results.json"
"""


WHEEL_SOURCES = ("pyproject.toml", "README.md", "labkit", "data")  # what labkit's wheel is built from, notebooks aside


def copy_wheel_sources(root: Path, dst: Path) -> None:
    """Copy what labkit's wheel is built from, and nothing else of the clone: an instructor's clone also holds
    the class's submissions, grades and virtual environments, which must not travel in the autograder."""
    dst.mkdir(parents=True)
    for name in WHEEL_SOURCES:
        if (root / name).is_dir():
            shutil.copytree(root / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(root / name, dst / name)
    (dst / "notebooks").mkdir()


def build(out: Path, root: Path = ROOT) -> Path:
    """Write the autograder zip at ``out``: setup.sh, run_autograder, labkit's wheel, solutions/."""
    if not (root / "pyproject.toml").exists():
        raise FileNotFoundError(f"{root} is not a clone of the course: the autograder is built from one")
    with tempfile.TemporaryDirectory(prefix="labkit-gradescope-") as tmp:
        tmp = Path(tmp)
        src = tmp / "course"
        copy_wheel_sources(root, src)
        made = make_student_copies(root / "notebooks", src / "notebooks", log=lambda line: None)
        failed = [r.message for r in made if r.action != "wrote"]
        if failed:  # each copy is checked to hold no solution line before it is written
            raise RuntimeError(failed[0])
        for other in (root / "notebooks").iterdir():  # the package's __init__.py, nbval's config
            if other.is_file() and other.suffix != ".ipynb":
                shutil.copy(other, src / "notebooks")
        wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
                                str(src)], capture_output=True, text=True)
        if wheel.returncode != 0:
            raise RuntimeError(f"building labkit's wheel failed: {wheel.stderr[-500:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in (("setup.sh", SETUP), ("run_autograder", RUN)):
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o755 << 16
                z.writestr(info, text)
            for whl in (tmp / "dist").glob("labkit-*.whl"):
                z.write(whl, whl.name)
            for nb in sorted((src / "notebooks").glob("*.ipynb")):
                z.write(nb, f"solutions/{nb.name}")
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("build") / "autograder.zip"
    try:
        build(out)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"labkit gradescope: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: upload it as the assignment's autograder (Ubuntu 24.04 base image)")
    return 0
