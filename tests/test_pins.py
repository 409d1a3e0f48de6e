"""pyproject.toml and environment.yml pin the same dependency set, and the installed set honours it."""
import re
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
