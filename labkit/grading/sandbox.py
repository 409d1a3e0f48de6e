"""The sandbox one submission runs in while it is graded: bubblewrap (``bwrap``) on Linux.

**What it sees** is an allowlist: the system's /usr (and the /bin, /lib links into it), a few
files of /etc that programs need (no /etc/shadow, no keys), the Python installation, the virtual
environment, labkit's package folder without any solved notebook, the course data, the module
files of extra checkers, and its own fresh scratch folder (``/scratch``, with /tmp and /dev/shm
inside it). Nothing else of the course folder, no other submission, no solutions, no network,
its own PID, IPC and UTS namespaces (everything it starts dies with it).
**Who it is**: when the grader runs as root, bwrap sets up the mounts and ``setpriv`` then runs
the job as an unprivileged user of its own (a uid no other process has), with no capabilities;
an unprivileged grader runs bwrap in a user namespace as itself. /proc/sys is read-only. A
seccomp filter (``labkit.grading.seccomp``) refuses new namespaces, ptrace and other system calls
a notebook never needs.
**What it may use**: ``labkit.grading.budget`` (memory, processes, disk) and a wall-clock limit.
**What comes back** travels through pipes (the job's description on stdin, its report on stdout,
at most ``Budget.output`` bytes) and through files the grader reads with :meth:`Scratch.read`,
which follows no link, opens nothing but regular files and reads under a size cap. The scratch
folder lives inside a private folder the sandbox cannot see, and a fresh one is made for every
run. Introduced for ``python -m labkit grade``.
"""
from __future__ import annotations

import errno
import functools
import glob
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.grading import budget as bd
from labkit.grading import seccomp

INSIDE = "/scratch"  # where the scratch folder appears in the sandbox
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group", "nsswitch.conf",
       "hosts", "host.conf", "fonts", "alternatives", "mime.types", "os-release", "debian_version", "gai.conf",
       "protocols", "services", "matplotlibrc")
PASSED_ENV = ("TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_NUM_THREADS", "PYTHONPATH", "LABKIT_PROFILE", "LABKIT_DEVICE", "OMP_WAIT_POLICY",
              "LABKIT_CHECK_SEED")
SUBFOLDERS = ("work", "home", "out", "tmp", "shm")
_UID_BASE = (1 << 31) - (1 << 22)  # + a grader process's pid: a uid no other process has


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """None when bubblewrap can sandbox here, else one line saying why not."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        return "setpriv (util-linux) is missing: the sandbox could not drop root"
    ids = sandbox_ids()
    command = (_drop(ids) if ids else []) + ["true"]
    try:
        probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent",
                                *_caps(ids), "--", *command], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap could not start: {err}"
    if probe.returncode != 0:
        why = next((line for line in probe.stderr.splitlines() if line.strip()), f"exit status {probe.returncode}")
        return f"bubblewrap cannot create namespaces here ({why.strip()})"
    return None


def sandbox_ids() -> tuple[int, int] | None:
    """(uid, gid) the job runs as when the grader is root: unprivileged, and this grader process's
    own (so a process limit counts this submission alone); None for an unprivileged grader."""
    if os.geteuid() != 0:
        return None
    uid = _UID_BASE + os.getpid() % (1 << 22)
    try:  # in a container, only the uids its namespace maps exist
        ranges = [tuple(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
        if not any(inside <= uid < inside + count for inside, _, count in ranges):
            inside, _, count = max(ranges, key=lambda r: r[0] + r[2])
            uid = inside + count - 1 - os.getpid() % min(count - 1, 1 << 16) if count > 1000 else 65534
    except (OSError, ValueError):
        pass
    return uid, uid


def _caps(ids) -> list[str]:
    return ["--cap-drop", "ALL"] + (["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if ids else [])


def _drop(ids) -> list[str]:
    uid, gid = ids
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--"]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def readable_paths(modules: tuple[str, ...] = ()) -> list[Path]:
    """What the sandbox sees read-only besides the system: Python, the venv, labkit's package
    folder, the course data, and the files of the extra checker modules."""
    import labkit
    from labkit import course
    found = [Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent.parent,
             Path(labkit.__file__).resolve().parent, course.data_dir().resolve()]
    found += checker_files(modules)
    out: list[Path] = []
    for p in sorted({Path(os.path.realpath(p)) for p in found}, key=lambda p: len(p.parts)):
        if p.exists() and not any(_inside(p, q) for q in out) and str(p) != "/":
            out.append(p)
    return out


def checker_files(modules: tuple[str, ...]) -> list[Path]:
    """The files of the extra checker modules (``--checkers``), and of the modules beside them that
    they import (read from their source): what the harvest needs of the folder they live in, no more."""
    import ast
    import importlib.util
    found: list[Path] = []
    todo = [m.split(".")[0] for m in modules if m.split(".")[0] != "labkit"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            continue
        if spec.submodule_search_locations:  # a package: all of it
            found += [Path(p) for p in spec.submodule_search_locations]
            continue
        origin = Path(spec.origin)
        found.append(origin)
        try:
            tree = ast.parse(origin.read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for imported in names:
                top = imported.split(".")[0]
                other = importlib.util.find_spec(top) if top not in seen else None
                if other and other.origin and Path(other.origin).parent == origin.parent:
                    todo.append(top)
    return found


def course_secrets() -> list[Path]:
    """Folders of solved notebooks inside labkit's package (a wheel ships them there)."""
    import labkit
    package = Path(labkit.__file__).resolve().parent
    return sorted({Path(p).parent for p in glob.glob(str(package / "**" / "*.ipynb"), recursive=True)})


def bwrap_argv(command: list[str], scratch: Path, hidden: list[Path] = (), env: dict | None = None,
               modules: tuple[str, ...] = (), ids: tuple[int, int] | None = None) -> list[str]:
    """The bwrap command line that runs ``command`` in the sandbox, with ``scratch`` as /scratch."""
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", *_caps(ids), "--hostname", "sandbox"]
    for top in SYSTEM:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    # /tmp and /dev/shm are folders of the scratch (one size limit for all that is writable)
    argv += ["--dev", "/dev", "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
             "--bind", str(scratch / "tmp"), "/tmp", "--bind", str(scratch / "shm"), "/dev/shm"]
    bound = [Path(p) for p in SYSTEM if os.path.isdir(p) and not os.path.islink(p)]
    made: set[Path] = set()

    def ro_bind(source: str, dest: Path) -> None:
        for parent in reversed(dest.parents[:-1]):  # bwrap would make them 0700: the job could not pass
            if parent not in made:
                argv.extend(["--perms", "0755", "--dir", str(parent)])
                made.add(parent)
        argv.extend(["--ro-bind", source, str(dest)])
        bound.append(dest)
    for p in readable_paths(modules):
        if not any(_inside(p, q) for q in bound):
            ro_bind(str(p), p)
    apparent = Path(os.path.abspath(sys.prefix))  # a venv reached through a link runs by that path
    if apparent != Path(os.path.realpath(apparent)) and not any(_inside(apparent, q) for q in bound):
        ro_bind(os.path.realpath(apparent), apparent)
    gpus = glob.glob("/dev/nvidia*") + glob.glob("/dev/dri")
    for dev in gpus:
        argv += ["--dev-bind-try", dev, dev]
    if gpus:
        argv += ["--ro-bind-try", "/sys", "/sys"]
    for h in sorted({Path(os.path.realpath(h)) for h in list(hidden) + course_secrets()}):
        if h.is_dir() and any(_inside(h, q) for q in bound):
            argv += ["--tmpfs", str(h), "--remount-ro", str(h)]
        elif h.is_file() and any(_inside(h, q) for q in bound):
            argv += ["--ro-bind", "/dev/null", str(h)]
    argv += ["--bind", str(scratch), INSIDE, "--chdir", f"{INSIDE}/work", "--clearenv"]
    for key, value in sandbox_env(env).items():
        argv += ["--setenv", key, value]
    return argv + ["--"] + (_drop(ids) if ids else []) + command


def sandbox_env(extra: dict | None = None, home: str = f"{INSIDE}/home") -> dict[str, str]:
    """The environment inside: a private home, caches and Jupyter's runtime files in the scratch folder."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", HOME=home, TMPDIR="/tmp",
               USER="student", LOGNAME="student", LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
               PYTHONNOUSERSITE="1", MPLBACKEND="agg", JUPYTER_RUNTIME_DIR=f"{home}/runtime",
               IPYTHONDIR=f"{home}/ipython", JUPYTER_CONFIG_DIR=f"{home}/jupyter", MPLCONFIGDIR=f"{home}/mpl",
               XDG_CACHE_HOME=f"{home}/cache", TRITON_CACHE_DIR=f"{home}/triton")
    env.update(extra or {})
    return env


class Unreadable(ValueError):
    """A file the sandbox left that the grader will not read (one line says why)."""


class Scratch:
    """A fresh scratch folder for one run, inside a private folder only the grader can reach.

    ``root`` is what the sandbox sees as /scratch: a tmpfs of ``budget.disk`` bytes where the
    grader can mount one, else a folder on disk that :func:`run` watches."""

    def __init__(self, budget: bd.Budget, ids: tuple[int, int] | None):
        self.private = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
        self.root = self.private / "scratch"
        self.root.mkdir()
        self.mounted = bd.mount_tmpfs(self.root, budget.disk, budget.files, ids)
        for sub in SUBFOLDERS:  # bwrap enters work/ before it drops root (and every capability)
            (self.root / sub).mkdir(mode=0o755 if sub == "work" else 0o700)
            if ids:
                os.chown(self.root / sub, *ids)
        if ids and not self.mounted:
            os.chown(self.root, *ids)

    def read(self, relative: str, cap: int) -> bytes:
        """The bytes of ``relative`` (under /scratch), opened without following any link, only if
        it is a regular file of at most ``cap`` bytes; Unreadable otherwise, FileNotFoundError if absent."""
        parts = relative.strip("/").split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except NotADirectoryError:
                    link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                    raise Unreadable(f"{part} is {'a link' if link else 'not a folder'}") from None
                except OSError as err:
                    if err.errno == errno.ELOOP:  # a link
                        raise Unreadable(f"{part} is a link") from None
                    raise
                os.close(fd)
                fd = nxt
            try:
                f = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                            dir_fd=fd)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise Unreadable(f"{parts[-1]} is a link") from None
                raise
        finally:
            os.close(fd)
        try:
            st = os.fstat(f)
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"{parts[-1]} is not a regular file")
            if st.st_size > cap:
                raise Unreadable(f"{parts[-1]} is larger than {cap >> 20} MiB")
            chunks, size = [], 0
            while size <= cap:
                chunk = os.read(f, min(1 << 20, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > cap:
                raise Unreadable(f"{parts[-1]} is larger than {cap >> 20} MiB")
            return b"".join(chunks)
        finally:
            os.close(f)

    def full(self, budget: bd.Budget) -> list[str]:
        """The scratch's limits reached: 'disk' (bytes), 'files'."""
        if self.mounted:
            st = os.statvfs(self.root)
            return ["disk"] * (st.f_bavail * st.f_frsize < (1 << 20)) + ["files"] * (st.f_favail < 16)
        size, entries = bd.disk_usage(self.root, budget.files + 1)
        return ["disk"] * (size >= budget.disk) + ["files"] * (entries > budget.files)

    def close(self) -> None:
        if self.mounted:
            bd.unmount(self.root)
        shutil.rmtree(self.private, ignore_errors=True)


@dataclass
class Finished:
    returncode: int | None  # None when it was killed at the time limit
    timed_out: bool
    stdout: bytes  # at most budget.output bytes
    stderr: str  # the last 4000 characters
    hit: list[str] = field(default_factory=list)  # limits reached: 'memory', 'processes', 'disk'


def _limits(budget: bd.Budget, cgroup, ids) -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (budget.disk, budget.disk))
    if cgroup is not None:
        cgroup.join()
    elif budget.memory and bd.cgroup_kind() != "systemd":  # the fallback: per process
        resource.setrlimit(resource.RLIMIT_AS, (budget.memory, budget.memory))
    if ids:  # its own uid: the count is this submission's (root's own forks, bwrap's, are not limited)
        resource.setrlimit(resource.RLIMIT_NPROC, (budget.processes, budget.processes))


def _drain(stream, cap: int, keep_tail: bool, out: list) -> None:
    """Read ``stream`` to its end, keeping at most ``cap`` bytes (the first, or the last)."""
    kept = bytearray()
    while True:
        chunk = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
        if not chunk:
            break
        if keep_tail:
            kept += chunk
            del kept[:max(0, len(kept) - cap)]
        elif len(kept) < cap:
            kept += chunk[:cap - len(kept)]
    out.append(bytes(kept))


def _feed(stream, data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except (BrokenPipeError, OSError):
        pass


def run(command: list[str], scratch: Scratch, *, stdin: bytes, timeout: float, budget: bd.Budget,
        sandboxed: bool = True, hidden: list[Path] = (), modules: tuple[str, ...] = (),
        env: dict | None = None) -> Finished:
    """Run ``command`` in the sandbox (or, unsandboxed, in ``scratch/work`` with the same
    environment) with the budget and a wall-clock limit; at the limit everything it started is killed."""
    ids = sandbox_ids() if sandboxed else None
    if sandboxed:
        argv, cwd, child_env = bwrap_argv(command, scratch.root, hidden, env, modules, ids), None, None
    else:
        argv, cwd = command, scratch.root / "work"
        child_env = sandbox_env(env, home=str(scratch.root / "home"))
        child_env["TMPDIR"] = str(scratch.root / "tmp")
    filter_fd = None
    if sandboxed and (rules := seccomp.program()) is not None:  # a pipe bwrap reads the filter from
        filter_fd, write = os.pipe()
        os.write(write, rules)
        os.close(write)
        argv[1:1] = ["--seccomp", str(filter_fd)]
    kind = bd.cgroup_kind()
    cgroup = bd.Cgroup(budget) if kind == "v1" else None
    if kind == "systemd":
        argv = bd.systemd_prefix(budget) + argv
    out: list[bytes] = []
    err: list[bytes] = []
    hit: list[str] = []
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=child_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                pass_fds=() if filter_fd is None else (filter_fd,),
                                preexec_fn=functools.partial(_limits, budget, cgroup, ids))
        if filter_fd is not None:
            os.close(filter_fd)
            filter_fd = None
        readers = [threading.Thread(target=_drain, args=(proc.stdout, budget.output, False, out), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stderr, 4000, True, err), daemon=True),
                   threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)]
        for t in readers:
            t.start()
        deadline, timed_out = time.monotonic() + timeout, False
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            if not scratch.mounted and (over := scratch.full(budget)):
                hit += over
                break
            try:
                proc.wait(timeout=0.5 if not scratch.mounted else max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        _kill(proc)  # also what an unsandboxed run left in its process group
        proc.wait()
        if cgroup is not None:
            cgroup.kill()
        for t in readers:
            t.join(timeout=5)
        if cgroup is not None:
            hit += cgroup.hit()
        hit += [h for h in scratch.full(budget) if h not in hit]
    finally:
        if filter_fd is not None:
            os.close(filter_fd)
        if cgroup is not None:
            cgroup.remove()
    return Finished(None if timed_out else proc.returncode, timed_out, out[0] if out else b"",
                    (err[0] if err else b"").decode(errors="replace"), hit)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (bwrap's PID namespace then takes everything in it along)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
