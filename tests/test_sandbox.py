"""labkit.sandbox: the bubblewrap command line (the hostile submissions are in test_grade_hostile.py)."""
from pathlib import Path

from labkit import sandbox


def _mount_index(argv: list[str], option: str, path: str) -> int:
    return next(i for i in range(len(argv) - 1) if argv[i] == option and argv[i + 1] == path)


def test_a_venv_or_course_under_tmp_stays_visible(monkeypatch, tmp_path):
    """CI clones the course into a temporary folder: its venv must be bound after the fresh /tmp."""
    venv = Path("/tmp/some-ci-clone/.venv")
    monkeypatch.setattr(sandbox, "readable_paths", lambda: [venv])
    monkeypatch.setattr(sandbox, "course_secrets", lambda: [])
    argv = sandbox.bwrap_argv(["python", "-c", "pass"], tmp_path)
    assert _mount_index(argv, "--tmpfs", "/tmp") < _mount_index(argv, "--ro-bind", str(venv))


def test_hidden_folders_are_covered_after_everything_is_bound(monkeypatch, tmp_path):
    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    monkeypatch.setattr(sandbox, "readable_paths", lambda: [course])
    monkeypatch.setattr(sandbox, "course_secrets", lambda: [course / "notebooks"])
    argv = sandbox.bwrap_argv(["python"], tmp_path / "scratch")
    assert _mount_index(argv, "--ro-bind", str(course)) < _mount_index(argv, "--tmpfs", str(course / "notebooks"))
