"""labkit.grading.sandbox and .budget: the bubblewrap command line (an allowlist), who the job
runs as, what it can see and write, its budget, and how the grader reads back what it left.

The hostile submissions graded end to end are in test_grade_hostile.py and test_grade_attacks.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.grading import budget as bd
from labkit.grading import sandbox

ROOT = Path(__file__).resolve().parents[1]
needs_bwrap = pytest.mark.needs("bubblewrap")


def _mount_index(argv: list[str], option: str, path: str) -> int:
    return next(i for i in range(len(argv) - 1) if argv[i] == option and argv[i + 1] == path)


def test_a_venv_or_course_under_tmp_stays_visible(monkeypatch, tmp_path):
    """CI clones the course into a temporary folder: its venv must be bound after /tmp is."""
    venv = Path("/tmp/some-ci-clone/.venv")
    monkeypatch.setattr(sandbox, "readable_paths", lambda modules=(): [venv])
    monkeypatch.setattr(sandbox, "course_secrets", lambda: [])
    argv = sandbox.bwrap_argv(["python", "-c", "pass"], tmp_path)
    assert _mount_index(argv, "--bind", str(tmp_path / "tmp")) < _mount_index(argv, "--ro-bind", str(venv))
    assert _mount_index(argv, "--dir", "/tmp/some-ci-clone") < _mount_index(argv, "--ro-bind", str(venv))


def test_hidden_folders_are_covered_after_everything_is_bound(monkeypatch, tmp_path):
    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    monkeypatch.setattr(sandbox, "readable_paths", lambda modules=(): [course])
    monkeypatch.setattr(sandbox, "course_secrets", lambda: [course / "notebooks"])
    argv = sandbox.bwrap_argv(["python"], tmp_path / "scratch")
    assert _mount_index(argv, "--ro-bind", str(course)) < _mount_index(argv, "--tmpfs", str(course / "notebooks"))


def test_the_view_is_an_allowlist_and_root_is_dropped(tmp_path):
    argv = sandbox.bwrap_argv(["python"], tmp_path, ids=(1234, 1234))
    bound = {argv[i + 1] for i in range(len(argv) - 1) if argv[i] in ("--ro-bind", "--ro-bind-try", "--bind")}
    assert "/etc" not in bound and "/etc/shadow" not in bound and "/etc/ld.so.cache" in bound
    assert str(ROOT) not in bound and str(ROOT / "notebooks") not in bound and str(ROOT / "labkit") in bound
    assert argv[argv.index("--") + 1:] == ["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups",
                                            "--inh-caps=-all", "--", "python"]
    assert "--unshare-net" in argv and "--unshare-pid" in argv


def test_systemd_scopes_carry_the_budget():
    argv = bd.systemd_prefix(bd.Budget(memory=2 << 30, processes=64))
    assert argv[:4] == ["systemd-run", "--quiet", "--scope", "--collect"]
    assert {"MemoryMax=2147483648", "MemorySwapMax=0", "TasksMax=64"} <= set(argv) and argv[-1] == "--"


def _sh(tmp_path, script: str, budget: bd.Budget = bd.Budget(), timeout: float = 60):
    """Run a shell script in the sandbox as the grader does; (Finished, the scratch)."""
    scratch = sandbox.Scratch(budget, sandbox.sandbox_ids())
    try:
        done = sandbox.run(["sh", "-c", script], scratch, stdin=b"", timeout=timeout, budget=budget)
        return done, scratch
    except BaseException:
        scratch.close()
        raise


@needs_bwrap
def test_inside_it_is_not_root_and_sees_no_secret(tmp_path):
    done, scratch = _sh(tmp_path, "id -u; cat /etc/shadow; echo x > /proc/sys/kernel/core_pattern; ls /etc; "
                                  f"ls {ROOT}; ls {ROOT}/notebooks; touch /usr/x; touch {ROOT}/labkit/x; echo end")
    scratch.close()
    out = done.stdout.decode()
    lines = out.split("\n")
    if os.geteuid() == 0:
        assert lines[0] != "0"
    assert "root:" not in out and "shadow" not in out and "core_pattern" not in out
    assert "labkit" in out and "notebooks" not in out and "README.md" not in out and "tests" not in out
    assert lines[-2] == "end" and not (ROOT / "labkit" / "x").exists()
    assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr


@needs_bwrap
def test_the_grader_reads_back_no_link_no_fifo_and_nothing_oversized(tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("secret")
    done, scratch = _sh(tmp_path, f"cd /scratch/out; ln -s {canary} link; mkfifo fifo; echo ok > fine; "
                                  "head -c 3000000 /dev/zero > big; mkdir d; ln -s /etc lnd")
    try:
        assert scratch.read("out/fine", 100) == b"ok\n"
        for name, why in [("link", "is a link"), ("fifo", "not a regular file"), ("big", "larger than"),
                          ("d", "not a regular file"), ("lnd/passwd", "is a link")]:
            with pytest.raises(sandbox.Unreadable, match=why):
                scratch.read(f"out/{name}", 1 << 20)
        with pytest.raises(FileNotFoundError):
            scratch.read("out/absent", 100)
    finally:
        scratch.close()
    assert canary.read_text() == "secret" and not scratch.private.exists()


@needs_bwrap
@pytest.mark.skipif(bd.cgroup_kind() != "v1", reason="needs a cgroup v1 memory and pids controller (root)")
def test_memory_written_to_tmpfs_counts_and_the_limit_is_named(tmp_path):
    budget = bd.Budget(memory=256 << 20, disk=1 << 30)
    done, scratch = _sh(tmp_path, "head -c 600000000 /dev/zero > /dev/shm/fill; echo done", budget)
    scratch.close()
    assert "memory" in done.hit


@needs_bwrap
def test_the_disk_budget_holds_and_is_named(tmp_path):
    budget = bd.Budget(disk=64 << 20)
    done, scratch = _sh(tmp_path, "head -c 200000000 /dev/zero > /tmp/fill; ls -l /tmp/fill", budget)
    used, _ = bd.disk_usage(scratch.root)
    scratch.close()
    assert "disk" in done.hit and used <= 80 << 20


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0 and bd.cgroup_kind() == "", reason="no process limit without a cgroup or own uid")
def test_a_fork_bomb_stops_at_the_process_limit(tmp_path):
    budget = bd.Budget(processes=40)
    done, scratch = _sh(tmp_path, "for i in $(seq 200); do sleep 30 & done; echo forked", budget, timeout=20)
    scratch.close()
    assert "processes" in done.hit or "fork" in done.stderr.lower() or "resource" in done.stderr.lower()
    assert not done.timed_out or done.hit  # stopped by the limit, not by the clock


@needs_bwrap
@pytest.mark.skipif(__import__("labkit.grading.seccomp", fromlist=["program"]).program() is None,
                    reason="no seccomp filter for this architecture")
def test_no_new_namespace_no_ptrace_but_threads_and_processes_work(tmp_path):
    script = ("unshare --user true && echo USERNS; unshare --pid --fork true && echo PIDNS; "
              f"{sys.executable} -c 'import ctypes, os; "
              "print(\"PTRACE\" if ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0 else \"no ptrace\")'; "
              f"{sys.executable} -c 'import threading, multiprocessing as m; t = threading.Thread(target=print); "
              "t.start(); t.join(); p = m.Process(target=print); p.start(); p.join(); print(\"WORKS\", p.exitcode)'")
    done, scratch = _sh(tmp_path, script)
    scratch.close()
    out = done.stdout.decode()
    assert "USERNS" not in out and "PIDNS" not in out and "PTRACE" not in out, out
    assert "no ptrace" in out and "WORKS 0" in out, (out, done.stderr)
