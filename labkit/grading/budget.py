"""A budget per submission: memory that counts tmpfs and page cache, a process count, a
size-limited scratch folder, and, afterwards, which limit was hit.

Memory and processes go through a cgroup: cgroup v1's memory and pids controllers where the
grader may create groups (root, as on the course machines), else ``systemd-run --scope`` (cgroup
v2 under systemd, also for an unprivileged user). Where neither exists, the fallback is one
line on stderr and per-process limits: address space (RLIMIT_AS) and, for a dedicated sandbox
user, RLIMIT_NPROC. The scratch folder (the sandbox's /scratch, /tmp and /dev/shm) is a tmpfs of
a fixed size where the grader can mount one (root), else a folder on disk watched by the grader
and killed past its size (with RLIMIT_FSIZE on every file). Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
_SEQ = itertools.count()


@dataclass(frozen=True)
class Budget:
    """What one submission may use, all its processes together."""
    memory: int = 8 * GIB  # bytes (0: no limit)
    disk: int = 1 * GIB  # bytes written to /scratch, /tmp and /dev/shm together
    processes: int = 256  # processes and threads (a kernel with torch uses some tens)
    files: int = 16384  # files and folders in the scratch (a notebook makes a few hundred)
    output: int = 1 << 20  # bytes of the job's report read back

    def describe(self, what: str) -> str:
        """'memory (2 GiB)': a limit as a verdict names it."""
        value = {"memory": self.memory, "disk": self.disk}.get(what)
        if what in ("processes", "files"):
            return f"{what} ({getattr(self, what)})"
        return f"{what} ({value / GIB:g} GiB)" if value is not None else what


def _v1_dirs() -> dict[str, Path] | None:
    """{controller: this process's cgroup v1 folder} for memory and pids, if both are mounted."""
    try:
        own = {c: path for line in Path("/proc/self/cgroup").read_text().splitlines()
               for _, controllers, path in [line.split(":", 2)] for c in controllers.split(",")}
        mounts = {}
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup":
                for c in fields[sep + 3].split(","):
                    mounts[c] = Path(fields[4])
    except (OSError, ValueError):
        return None
    if not all(c in own and c in mounts for c in ("memory", "pids")):
        return None
    return {c: mounts[c] / own[c].lstrip("/") for c in ("memory", "pids")}


@functools.lru_cache(maxsize=1)
def cgroup_kind() -> str:
    """'v1', 'systemd' or '' (none): how a submission's memory and processes are limited here."""
    dirs = _v1_dirs()
    if dirs:
        probe = [d / f"labkit-probe-{os.getpid()}" for d in dirs.values()]
        try:
            for p in probe:
                p.mkdir()
            return "v1"
        except OSError:
            pass
        finally:
            for p in probe:
                try:
                    p.rmdir()
                except OSError:
                    pass
    if shutil.which("systemd-run"):
        try:
            ok = subprocess.run(systemd_prefix(Budget(memory=GIB, processes=16)) + ["true"],
                                capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return "systemd"
    return ""


def systemd_prefix(budget: Budget) -> list[str]:
    """The command prefix that runs a command in a transient scope with the budget's limits."""
    argv = ["systemd-run", "--quiet", "--scope", "--collect"] + ([] if os.geteuid() == 0 else ["--user"])
    if budget.memory:
        argv += ["-p", f"MemoryMax={budget.memory}", "-p", "MemorySwapMax=0"]
    return argv + ["-p", f"TasksMax={budget.processes}", "--"]


class Cgroup:
    """A cgroup v1 pair (memory, pids) for one run: joined between fork and exec, read, removed."""

    def __init__(self, budget: Budget):
        self.budget = budget
        name = f"labkit-{os.getpid()}-{next(_SEQ)}"
        self.dirs = {c: d / name for c, d in (_v1_dirs() or {}).items()}
        for c, d in self.dirs.items():
            d.mkdir()
        if budget.memory:
            (self.dirs["memory"] / "memory.limit_in_bytes").write_text(str(budget.memory))
            swap = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
            try:
                swap.write_text(str(budget.memory))
            except OSError:
                pass  # no swap accounting: without swap there is nothing to count
        (self.dirs["pids"] / "pids.max").write_text(str(budget.processes))

    def join(self) -> None:
        """Move the calling process in (between fork and exec: all it starts stays inside)."""
        for d in self.dirs.values():
            with open(d / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def hit(self) -> list[str]:
        """The limits reached during the run ('memory', 'processes')."""
        found = []
        try:
            oom = dict(line.split() for line in (self.dirs["memory"] / "memory.oom_control").read_text().splitlines())
            if int(oom.get("oom_kill", 0)) > 0 or int((self.dirs["memory"] / "memory.failcnt").read_text()) > 0:
                found.append("memory")  # an OOM kill, or usage that reached the limit
            events = dict(line.split() for line in (self.dirs["pids"] / "pids.events").read_text().splitlines())
            if int(events.get("max", 0)) > 0:
                found.append("processes")
        except (OSError, ValueError):
            pass
        return found

    def kill(self) -> None:
        """SIGKILL everything left inside (an unsandboxed run's escaped processes)."""
        for _ in range(3):
            pids = [int(p) for p in (self.dirs["pids"] / "cgroup.procs").read_text().split()] \
                if (self.dirs["pids"] / "cgroup.procs").exists() else []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                return

    def remove(self) -> None:
        self.kill()
        for d in self.dirs.values():
            for _ in range(50):  # the kernel takes a moment to empty a group of killed processes
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def mount_tmpfs(folder: Path, size: int, files: int, owner: tuple[int, int] | None) -> bool:
    """Mount a tmpfs of ``size`` bytes and ``files`` inodes on ``folder`` (root only); False where that
    is not possible."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    options = f"size={size},nr_inodes={files},mode=0755,nosuid,nodev" + \
        (f",uid={owner[0]},gid={owner[1]}" if owner else "")
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "labkit-scratch", str(folder)],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def disk_usage(folder: Path, most: int = 200_000) -> tuple[int, int]:
    """(bytes, entries) under ``folder`` (links not followed; at most ``most`` entries looked at)."""
    total, stack, seen = 0, [str(folder)], 0
    while stack and seen < most:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    seen += 1
                    st = e.stat(follow_symlinks=False)
                    total += st.st_blocks * 512
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue
    return total, seen
