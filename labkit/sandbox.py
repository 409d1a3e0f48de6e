"""The sandbox one submission runs in while it is graded: bubblewrap (``bwrap``) on Linux.

Inside: a scratch folder (read-write, seen as ``/scratch``), the system, the Python installation,
the virtual environment and the course read-only; the solved notebooks, the course's git history
and the other submissions are hidden (empty tmpfs); no network (only a loopback); its own PID,
IPC and UTS namespaces, so everything it starts dies with it and it cannot signal the grader; all
capabilities dropped (so it cannot remount the read-only folders); a memory limit (RLIMIT_AS, per
process) and a time limit for the whole notebook. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import functools
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSIDE = "/scratch"  # where the scratch folder appears in the sandbox
SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PASSED_ENV = ("TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_NUM_THREADS", "PYTHONPATH", "LABKIT_PROFILE", "LABKIT_DEVICE")


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when bubblewrap can sandbox here, else one line saying why not."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent",
                                "--cap-drop", "ALL", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap could not start: {err}"
    if probe.returncode != 0:
        why = next((line for line in probe.stderr.splitlines() if line.strip()), f"exit status {probe.returncode}")
        return f"bubblewrap cannot create namespaces here ({why.strip()})"
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def readable_paths() -> list[Path]:
    """What the sandbox sees read-only besides the system: Python, the venv and labkit's source."""
    import labkit
    found = [Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent.parent,
             Path(labkit.__file__).resolve().parents[1]]
    out: list[Path] = []
    for p in sorted({Path(os.path.realpath(p)) for p in found}, key=lambda p: len(p.parts)):
        if p.is_dir() and not any(_inside(p, q) for q in out) and str(p) != "/":
            out.append(p)
    return out


def course_secrets() -> list[Path]:
    """The solved notebooks (the course's notebooks/ and any copy shipped in the package) and the
    course's git history (which holds them too)."""
    import labkit
    from labkit import course
    package = Path(labkit.__file__).resolve().parent
    root = package.parent
    found = [course.solved_notebooks().resolve(), root / "notebooks", root / ".git"]
    found += [Path(p).parent for p in glob.glob(str(package / "**" / "*.ipynb"), recursive=True)]
    return [p for p in dict.fromkeys(found) if p.exists()]


def bwrap_argv(command: list[str], scratch: Path, hidden: list[Path] = (), env: dict | None = None) -> list[str]:
    """The bwrap command line that runs ``command`` in the sandbox, with ``scratch`` as /scratch."""
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox"]
    for top in SYSTEM:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    # A fresh /tmp first: the venv or the course may themselves live under /tmp (a CI clone), and
    # are bound on top of it below; mounted after them, the tmpfs would hide them.
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    bound = [Path(p) for p in SYSTEM if os.path.isdir(p) and not os.path.islink(p)]
    for p in readable_paths():
        if not any(_inside(p, q) for q in bound):
            argv += ["--ro-bind", str(p), str(p)]
            bound.append(p)
    gpus = glob.glob("/dev/nvidia*") + glob.glob("/dev/dri")
    for dev in gpus:
        argv += ["--dev-bind-try", dev, dev]
    if gpus:
        argv += ["--ro-bind-try", "/sys", "/sys"]
    for h in {Path(os.path.realpath(h)) for h in list(hidden) + course_secrets()}:
        if h.is_dir() and any(_inside(h, q) for q in bound):
            argv += ["--tmpfs", str(h)]
        elif h.is_file() and any(_inside(h, q) for q in bound):
            argv += ["--ro-bind", "/dev/null", str(h)]
    argv += ["--bind", str(scratch), INSIDE, "--chdir", f"{INSIDE}/work", "--clearenv"]
    for key, value in sandbox_env(env).items():
        argv += ["--setenv", key, value]
    return argv + ["--"] + command


def sandbox_env(extra: dict | None = None, home: str = f"{INSIDE}/home") -> dict[str, str]:
    """The environment inside: a private home, caches and Jupyter's runtime files in the scratch folder."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", HOME=home, TMPDIR="/tmp",
               LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", MPLBACKEND="agg",
               JUPYTER_RUNTIME_DIR=f"{home}/runtime", IPYTHONDIR=f"{home}/ipython", JUPYTER_CONFIG_DIR=f"{home}/jupyter",
               MPLCONFIGDIR=f"{home}/mpl", XDG_CACHE_HOME=f"{home}/cache", TRITON_CACHE_DIR=f"{home}/triton")
    env.update(extra or {})
    return env


@dataclass
class Finished:
    returncode: int | None  # None when it was killed at the time limit
    timed_out: bool
    stderr: str


def _limits(memory: int) -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def run(command: list[str], scratch: Path, *, timeout: float, memory: int = 0, sandboxed: bool = True,
        hidden: list[Path] = (), env: dict | None = None) -> Finished:
    """Run ``command`` (in the sandbox, or, unsandboxed, in ``scratch/work`` with the same
    environment) with a wall-clock limit; at the limit everything it started is killed."""
    scratch = Path(scratch)
    for sub in ("work", "home", "out"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    if sandboxed:
        argv, cwd, child_env = bwrap_argv(command, scratch, hidden, env), None, None
    else:
        argv, cwd = command, scratch / "work"
        child_env = sandbox_env(env, home=str(scratch / "home"))
        child_env["TMPDIR"] = str(scratch / "home")
    with open(scratch / "home" / "stderr.txt", "w+b") as log:  # a file, not a pipe: leftovers may hold it
        proc = subprocess.Popen(argv, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True, preexec_fn=functools.partial(_limits, memory))
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill(proc)  # also what an unsandboxed run left in its process group
            proc.wait()
        log.seek(max(0, log.seek(0, os.SEEK_END) - 4000))
        err = log.read().decode(errors="replace")
    return Finished(None if timed_out else proc.returncode, timed_out, err)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (bwrap's PID namespace then takes everything in it along)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
