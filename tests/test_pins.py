"""pyproject.toml and environment.yml pin the same dependency set, and the installed set honours it."""
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).replace('"', "'")


def pyproject_deps() -> list[str]:
    return [_norm(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


def environment_deps() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    deps = [line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- ")]
    return [_norm(d) for d in deps if d != "-e ."]


def test_environment_yml_mirrors_pyproject():
    assert sorted(environment_deps()) == sorted(pyproject_deps())


@pytest.mark.parametrize("req", [d for d in pyproject_deps() if "==" in d and ";" not in d])
def test_installed_versions_match_exact_pins(req):
    name, pinned = req.split("==")
    assert version(name) == pinned, f"{name} {version(name)} installed, {pinned} pinned: run `make install`"


def test_torch_is_the_tested_cpu_or_supported_version():
    import torch
    major_minor = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    assert (2, 11) <= major_minor <= (2, 13)


def _requires_python_floor() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    major, minor = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip()).groups()
    return int(major), int(minor)


def test_requires_python_is_what_the_pins_need():
    # numpy 2.4.6 and scipy 1.17.1 publish nothing for Python 3.10: the floor must say 3.11.
    assert _requires_python_floor() == (3, 11)


def test_ci_runs_the_floor_python():
    """CI installs and tests on the floor version, so the floor is proven to install."""
    if os.environ.get("CI") != "true":
        pytest.skip("only CI (CI=true) is pinned to the floor interpreter")
    assert sys.version_info[:2] == _requires_python_floor()


def test_make_refuses_an_old_python_before_installing_anything(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.10.12' && exit 0\nexit 1\n")
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    run = subprocess.run(["make", "-s", "install", f"PYTHON={fake}", f"VENV={venv}"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "labkit needs Python 3.11, 3.12 or 3.13" in run.stdout and "Python 3.10.12" in run.stdout
    assert not venv.exists()


def test_nbformat_does_not_pull_in_the_slow_iri_validator():
    """Why jsonschema is pinned: with 4.25+ every `import nbformat` builds rfc3987-syntax's parsers."""
    import importlib.util
    assert importlib.util.find_spec("rfc3987_syntax") is None, (
        "rfc3987-syntax is installed (jsonschema >= 4.25?): each process importing nbformat spends ~1.5 s on it")
