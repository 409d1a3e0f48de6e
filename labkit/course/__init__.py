"""The course's own files, found the same way from a clone and from an installed wheel.

``solved_notebooks()`` is the folder of solved notebooks (notebooks/), ``data_dir()`` the folder of
data files (data/, provenance in its README.md). Both are package data, reached through
importlib.resources, so a wheel carries them. Introduced in notebook 00.
"""
from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path


def solved_notebooks() -> Path:
    """The folder of the course's solved notebooks: the source of blank copies and of grading.

    Found without importing it, so that a sandbox that hides the folder can still import labkit.
    """
    spec = importlib.util.find_spec("labkit.course.notebooks")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the course's solved notebooks are not available here "
                                "(hidden inside the grading sandbox, or missing from this install)")
    return Path(list(spec.submodule_search_locations)[0])


def data_dir() -> Path:
    """The folder of the course's data files (e.g. matrices/bcsstk01.mtx)."""
    return Path(str(resources.files("labkit.course.data")))
