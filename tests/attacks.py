"""A hostile class against the sandboxed grader (`python -m labkit grade`), driven through its CLI only.

Every attack is a named case: its class (1-9, see ATTACK_CLASSES), the notebook cells a student
hands in (or the files an instructor's submission folder ends up holding), and a judge that says
whether the attack was RESISTED, stated against the public contract only (README "Instructor
workflow" and "What the sandbox protects", `grade --help`):

* a leak (reading something hidden, a capability the sandbox should not give) is made observable as
  "passed": the exercise returns the right answer only when the leak worked, and otherwise raises an
  error that names what stopped it (that message is the evidence shown when the attack is resisted);
* writes outside the sandbox are observed on canaries (files the test made outside the submission),
  on the classmates' files and verdicts, on the course's files and on the venv's site-packages;
* the grader's time and memory are observed from outside (a subprocess timeout, the peak RSS of the
  grader and of its children that are not sandboxed, polled through /proc);
* processes left behind carry a unique token in their command line;
* reports: no CSV cell starts with = + - @ (unless quoted as text with a leading '), no control
  character reaches a CSV cell or a line of the terminal report that a student controls, no forged line.

The grader is run several times, in parallel (`run_campaign`), each attack belonging to one group:

* `main`: one `grade` call (--workers 2 --timeout 10 --notebook-timeout 90 --memory 2) over a class whose
  notebooks hold the attacks that only the submission's own sandbox sees; a notebook carries up to fifteen
  independent probes, one per exercise (tests/attack_checkers.py: tiny_checkers' five + ten identity ones);
* `c1`: one `grade` call over the notebooks that plant links in their scratch area and then kill their
  kernel, so that the grader runs them again (the retry is when the grader writes there);
* `iso`: one `grade` call per attack on what the grader reads back (run record, executed notebook,
  outcome files), on the submission file itself (FIFO, /dev/zero, /etc/shadow), on huge cells: a hang or a
  memory blow-up must be attributable to its attack;
* `course`: one `grade` call with the course's own checkers and solved notebooks (the static reuse check);
* `merge`: grade-merge on forged parts (one process runs every case, as `python -m labkit` would).

The class folders live inside the clone (`attack-submissions-<token>/`, as `grade submissions/` from a
clone puts them), the canaries in the test's temporary folder (outside every sandbox); everything is
removed afterwards, and .pth files an attack got written into site-packages too.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
VENV_PY = REPO / ".venv" / "bin" / "python"
PY = str(VENV_PY if VENV_PY.exists() else Path(sys.executable))
NB = "07_x.ipynb"  # the tiny course's notebook name
EXERCISES = ("double", "square", "hang", "crash", "after")  # tests/tiny_checkers.py, in notebook order
SLOTS = tuple(f"slot{i:02d}" for i in range(6, 16))        # tests/attack_checkers.py: identity exercises
MAIN_EXERCISES = EXERCISES + SLOTS                           # the main batch's notebooks: fifteen probes each
RIGHT = {"double": "2 * x", "square": "x * x", "hang": "x", "crash": "x", "after": "x"} | {s: "x" for s in SLOTS}
SETUP = "import attack_checkers as check"
CHECKERS_ARGS = ["--checkers", "attack_checkers"]
MiB, GiB = 1 << 20, 1 << 30

ATTACK_CLASSES = {
    1: "writes outside the sandbox through paths the student controls",
    2: "the grader trusting what it reads back",
    3: "root inside the sandbox",
    4: "no per-submission budget",
    5: "the view: hidden files, classmates, copies of the solutions",
    6: "the reuse check and the harvest",
    7: "reports and CSV",
    8: "grade-merge",
    9: "signals, network, leftovers, secrets, the grader's process",
}

# Limits the judges hold the grader to.
RSS_BOUND = int(1.5 * GiB)   # peak RSS of a batch grader (2 workers) and its non-sandboxed children: "bounded"
RSS_KILL = int(2.5 * GiB)    # past this the test kills the grader (a runaway read must not take the machine)
ISO_RSS_KILL = int(1.0 * GiB)  # an isolated run (one notebook) is killed sooner: it is over its bound by then
MAIN_ARGS = ["--workers", "2", "--timeout", "10", "--notebook-timeout", "90", "--memory", "2"]
ISO_ARGS = ["--workers", "1", "--timeout", "10", "--notebook-timeout", "45", "--memory", "2"]
# The runs' own limits: a grader still running past them has hung. An isolated run may use its
# --notebook-timeout (45 s) and then judge what it got: on a loaded machine that takes more than 5 s.
TIMEOUTS = {"main": 200, "c1": 200, "iso": 110, "course": 200}


# ------------------------------------------------------------------------------------------ context

@dataclass
class Ctx:
    """One campaign: a random run token, the folders, the secrets and the host-side servers."""

    run: str
    tmp: Path        # host-only folder (canaries, grader TMPDIR, outputs): not visible in any sandbox
    root: Path       # inside the clone, as `grade submissions/` from a clone puts a class there
    site: Path       # the venv's site-packages
    port: int = 0
    unix: str = ""
    sentinel: int = 0
    shadow: str = ""      # first line of the host's /etc/shadow ('' if unreadable here)
    env_secret: str = ""
    net_token: str = ""
    made: list = field(default_factory=list)   # paths this campaign created in the clone (removed after)

    def secret(self, kind: str) -> str:
        return f"LKSECRET-{self.run}-{kind}"

    def tag(self, group: str, aid: str = "") -> str:
        return f"labkit-attack-{self.run}-{group}-{aid}"

    def all_secrets(self) -> dict[str, str]:
        out = {f"file secret {k}": self.secret(k) for k in ("solutions", "bob", "sectionb", "earliercsv")}
        out["grader environment secret"] = self.env_secret
        out["loopback server token"] = self.net_token
        if self.shadow:
            out["/etc/shadow first line"] = self.shadow
        return out


def make_ctx(tmp: Path) -> Ctx:
    run = secrets.token_hex(4)
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"), None) or Path(
        next(p for p in sys.path if p.endswith("site-packages")))
    try:
        shadow = Path("/etc/shadow").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        shadow = ""
    ctx = Ctx(run=run, tmp=tmp, root=REPO / f"attack-submissions-{run}", site=site, shadow=shadow,
              env_secret=f"LKENVSECRET-{run}-{secrets.token_hex(8)}",
              net_token=f"LKNET-{run}-{secrets.token_hex(8)}")
    ctx.unix = f"labkit-attack-{run}-abstract"
    return ctx


# -------------------------------------------------------------------------------------- notebooks

def code(source: str, *tags: str):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def write_nb(path: Path, nb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def solved(ctx: Ctx, exercises=EXERCISES) -> nbformat.NotebookNode:
    """The tiny course's solved notebook: its exercises (tests/attack_checkers.py); the first holds a secret."""
    cells = [new_markdown_cell("# Tiny course"), code(SETUP)]
    for i, name in enumerate(exercises, 1):
        extra = f"    # {ctx.secret('solutions')}\n" if name == "double" else ""
        cells += [new_markdown_cell(f"### Exercise 7.{i}: {name}"),
                  code(f"def {name}(x):\n    ### BEGIN SOLUTION\n{extra}    return {RIGHT[name]}\n"
                       "    ### END SOLUTION", "exercise"),
                  code(f"check.{name}({name})", "check", "nbval-check-output")]
    return _notebook(cells)


def preamble(ctx: Ctx, group_root: Path, group: str, extra: dict | None = None) -> str:
    """The first cell of every tiny attack notebook: the context as data and small helpers.

    No secret is spelled out here (a notebook that contained one would "find" it in its own copy):
    the helpers assemble the strings they look for at run time.
    """
    data = {"run": ctx.run, "repo": str(REPO), "root": str(group_root), "port": ctx.port, "unix": ctx.unix,
            "sentinel": ctx.sentinel,
            "site": str(ctx.site), "group": group, **(extra or {})}
    return (
        "import os, sys, json, time, glob, stat, subprocess\n"
        f"CTX = json.loads({json.dumps(json.dumps(data))})\n"
        "LEAK, WHY = {}, {}\n"
        "SOL = '### BEGIN ' + 'SOLUTION'\n"
        "def _secret(kind):\n    return 'LKSEC' + 'RET-' + CTX['run'] + '-' + kind\n"
        "def _tag(aid):\n    return 'labkit-' + 'attack-' + CTX['run'] + '-' + CTX['group'] + '-' + aid\n"
        "def _mark(aid):\n    return 'LKANSI-' + CTX['run'] + '-' + aid\n"
        "def _read(p, n=4 << 20):\n"
        "    try:\n        with open(p, 'rb') as f:\n            return f.read(n).decode('utf-8', 'replace')\n"
        "    except Exception:\n        return ''\n"
        "SCR = '/scratch' if os.path.isdir('/scratch') else os.path.dirname(os.getcwd())\n"
        "def _gate(name, x, right):\n"
        "    if LEAK.get(name):\n        return right\n"
        "    raise RuntimeError('resisted: ' + WHY.get(name, 'the probe found nothing')[:160])\n"
    )


def gated(name: str) -> str:
    """An exercise that is right only when the probe of its slot reported a leak."""
    return f"def {name}(x):\n    return _gate({name!r}, x, {RIGHT[name]})\n"


def right(name: str, body: str = "") -> str:
    return f"def {name}(x):\n{body}    return {RIGHT[name]}\n"


def blank(name: str) -> str:
    return f"def {name}(x):\n    raise NotImplementedError('Exercise: {name}')\n"


def probe_cell(slot: str, body: str) -> str:
    """Run ``body`` (the body of a function returning True when the leak worked) and record it for ``slot``."""
    inner = "\n".join("    " + line if line.strip() else line for line in body.strip("\n").split("\n"))
    return (f"def _probe_{slot}():\n{inner}\n"
            f"try:\n    LEAK[{slot!r}] = bool(_probe_{slot}())\n"
            f"except BaseException as _e:\n    LEAK[{slot!r}] = False\n    WHY[{slot!r}] = repr(_e)\n")


def submission(ctx: Ctx, group_root: Path, funcs: dict[str, str] | None = None, before=(), after=(), extra=None,
               group="main", mid=(), exercises=EXERCISES):
    """A student's notebook: setup, the preamble, cells before, the five exercises (+ check cells), cells after."""
    cells = [new_markdown_cell("# My work"), code(SETUP),
             code(preamble(ctx, group_root, group, extra))]
    cells += [c if not isinstance(c, str) else code(c) for c in before]
    for name in exercises:
        cells += [code((funcs or {}).get(name, right(name)), "exercise"), code(f"check.{name}({name})", "check")]
        if name == "square":  # cells between the exercises: those defined before them are graded on a rerun
            cells += [c if not isinstance(c, str) else code(c) for c in mid]
    cells += [c if not isinstance(c, str) else code(c) for c in after]
    return _notebook(cells)


def honest(ctx: Ctx, kind: str, exercises=EXERCISES) -> nbformat.NotebookNode:
    """A classmate's honest notebook (every exercise right) carrying a secret comment."""
    funcs = {name: right(name) for name in exercises}
    funcs["double"] = f"def double(x):\n    # {ctx.secret(kind)}\n    return 2 * x\n"
    return _notebook([code(SETUP)] + [code(funcs[n], "exercise") for n in exercises])


def victim(ctx: Ctx, exercises=EXERCISES) -> nbformat.NotebookNode:
    """A classmate whose `double` is wrong (x + 1): a forged "passed" for it is visible."""
    funcs = {name: right(name) for name in exercises}
    funcs["double"] = "def double(x):\n    return x + 1\n"
    return _notebook([code(SETUP)] + [code(funcs[n], "exercise") for n in exercises])


def all_passed(rows: dict) -> bool:
    """Every exercise row of a notebook passed (an honest classmate's verdicts)."""
    ex = [st for e, (st, _) in rows.items() if e]
    return len(ex) >= len(EXERCISES) and all(st == "passed" for st in ex)


# ------------------------------------------------------------------------- student-side snippets

# A watcher run inside the sandbox as its own small process (no torch): whenever a file whose path (relative
# to the scratch root) matches PATTERN shows up as a regular file written by someone else, it is replaced by
# the attack's object. argv: root pattern kind arg seconds tag
WATCHER = r'''
import os, re, stat, sys, time
root, pattern, kind, arg, seconds = sys.argv[1], re.compile(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
mine, end = set(), time.time() + seconds
def make(tmp):
    if kind == "fifo":
        os.mkfifo(tmp)
    elif kind == "symlink":
        os.symlink(arg, tmp)
    elif kind == "sparse":
        with open(tmp, "wb") as f:
            f.truncate(int(arg))
    elif kind == "link":
        os.link(arg, tmp)
    elif kind == "text":
        with open(tmp, "w") as f:
            f.write(arg)
def many(path):
    d = os.path.dirname(path)
    for i in range(int(arg)):
        with open(os.path.join(d, "zz%06d%s" % (i, os.path.splitext(path)[1])), "wb") as f:
            f.write(b"x")
while time.time() < end:
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("ipython", "work")]
        for n in files:
            p = os.path.join(top, n)
            rel = os.path.relpath(p, root)
            if not pattern.search(rel) or n.endswith(".lk"):
                continue
            try:
                st = os.lstat(p)
                if not stat.S_ISREG(st.st_mode) or st.st_ino in mine or (kind == "link" and os.path.samefile(p, arg)):
                    continue
                if kind == "many":
                    mine.add(st.st_ino)
                    many(p)
                    continue
                tmp = p + ".lk"
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                make(tmp)
                mine.add(os.lstat(tmp).st_ino)
                os.rename(tmp, p)
            except OSError:
                pass
    time.sleep(0.003)
'''

WATCH_HELPER = '''
def _watch(pattern, kind, arg="", seconds=120, aid="watcher"):
    """Start the watcher (see tests/attacks.py WATCHER) in its own session."""
    src = {watcher!r}
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", src, SCR, pattern, kind, str(arg), str(seconds),
                             _tag(aid)], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''.format(watcher=WATCHER)

# Writes a file torch.load(weights_only=True) accepts, without building the tensors in memory.
FORGE_HELPER = r'''
import io as _io, pickle as _pickle, zipfile as _zipfile, collections as _collections
import torch as _torch, torch._utils as _tu

class _Stor:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel

class _T:
    def __init__(self, stor, size, stride):
        self.stor, self.size, self.stride = stor, size, stride
    def __reduce__(self):
        return (_tu._rebuild_tensor_v2, (self.stor, 0, self.size, self.stride, False, _collections.OrderedDict()))

class _P(_pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Stor):
            return ("storage", _torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None

def _outcomes(name, values):
    return {"format": "labkit-outcomes/1", "name": name, "note": "",
            "outcomes": [{"value": v, "error": "", "frames": "", "not_implemented": False, "modified": False,
                          "calls": []} for v in values]}

def _forge(path, obj, storages=None, pickle_bytes=None):
    """obj pickled (with _T tensors over _Stor storages); storages {key: nbytes} written as zeros, streamed."""
    if pickle_bytes is None:
        buf = _io.BytesIO()
        _P(buf, protocol=2).dump(obj)
        pickle_bytes = buf.getvalue()
    with _zipfile.ZipFile(path, "w", _zipfile.ZIP_STORED, allowZip64=True) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            if isinstance(pickle_bytes, bytes):
                f.write(pickle_bytes)
            else:
                for chunk in pickle_bytes:
                    f.write(chunk)
        z.writestr("archive/byteorder", "little")
        for key, nbytes in (storages or {}).items():
            with z.open("archive/data/" + key, "w", force_zip64=True) as f:
                zero, left = bytes(1 << 20), nbytes
                while left > 0:
                    f.write(zero[:min(left, len(zero))])
                    left -= len(zero)
        z.writestr("archive/version", "3\n")
'''


def die_in_after(plant: str) -> str:
    """`after`: plant the links (code of a function body), then kill the kernel so the grader runs it again."""
    body = "\n".join("    " + line for line in plant.strip("\n").split("\n"))
    return f"def after(x):\n{body}\n    os._exit(1)\n"


REPLACE_HELPER = r'''
import shutil as _shutil
def _replace(path, target=None, kind="symlink"):
    """Replace path (a file or a folder of the scratch area) by a symlink to target, or a FIFO."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            _shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(target, path)
def _job_file():
    js = sorted(glob.glob(os.path.join(SCR, "*.json")))
    return js[0] if js else os.path.join(SCR, "job.json")
def _stderr_file():
    for top, dirs, files in os.walk(SCR):
        for n in files:
            if "stderr" in n or n.endswith(".log"):
                return os.path.join(top, n)
    return os.path.join(SCR, "home", "stderr.txt")
def _out_dir():
    for n in ("out", "output", "outputs", "results"):
        if os.path.isdir(os.path.join(SCR, n)):
            return os.path.join(SCR, n)
    return os.path.join(SCR, "out")
'''


# -------------------------------------------------------------------------------------- attacks

@dataclass
class Attack:
    id: str
    cls: int
    what: str
    group: str                 # main | c1 | iso | course | merge
    student: str = ""          # its notebook's folder in the group's class (main, c1, course)
    slot: str = ""             # the exercise whose "passed" shows the leak
    judge: Callable | None = None
    setup: Callable | None = None   # iso: builds the run's class folder
    notebook: str = NB


ATTACKS: list[Attack] = []


def attack(**kw) -> Attack:
    a = Attack(**kw)
    assert a.id not in {x.id for x in ATTACKS}, a.id
    ATTACKS.append(a)
    return a


# Probes: each returns True when the leak worked (run at cell time in the student's kernel).
PROBES: dict[str, tuple[int, str, str]] = {}


def probe(aid: str, cls: int, what: str, body: str) -> None:
    PROBES[aid] = (cls, what, body)


probe("c3_real_root", 3, "runs as the host's real root (uid 0, identity uid_map): owns every root file", r'''
m = open("/proc/self/uid_map").read().split()
if os.getuid() != 0:
    raise PermissionError("uid %d" % os.getuid())
return m[:3] == ["0", "0", "4294967295"]
''')
probe("c3_shadow_readable", 3, "reads /etc/shadow (root's password hashes)", r'''
return open("/etc/shadow").readline().count(":") >= 2
''')
probe("c3_core_pattern_write", 3, "writes /proc/sys/kernel/core_pattern (same value: a host-wide escape vector)", r'''
p = "/proc/sys/kernel/core_pattern"
v = open(p).read()
with open(p, "w") as f:
    f.write(v)
return True
''')
probe("c3_sysctl_write", 3, "writes other host sysctls under /proc/sys (each rewritten with its own value)", r'''
done, errs = [], []
for name in ("vm/swappiness", "kernel/randomize_va_space", "fs/protected_symlinks", "kernel/pid_max"):
    p = "/proc/sys/" + name
    try:
        v = open(p).read()
        with open(p, "w") as f:
            f.write(v)
        done.append(name)
    except OSError as e:
        errs.append(repr(e))
if not done:
    raise PermissionError("; ".join(errs)[:150])
return True
''')
probe("c3_sysrq_open", 3, "opens /proc/sysrq-trigger for writing (nothing written)", r'''
os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY))
return True
''')
probe("c3_mount", 3, "mounts a tmpfs (mount(2) inside the sandbox)", r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/tmp/lk_mnt", exist_ok=True)
if libc.mount(b"none", b"/tmp/lk_mnt", b"tmpfs", 0, None) != 0:
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
libc.umount(b"/tmp/lk_mnt")
return True
''')
probe("c3_userns", 3, "creates a nested user namespace (kernel attack surface, regains capabilities there)", r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:
    os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
if os.waitpid(pid, 0)[1] != 0:
    raise PermissionError("unshare(CLONE_NEWUSER) failed")
return True
''')
probe("c3_mknod_block", 3, "creates a block device node for the host's disk (mknod)", r'''
p = "/tmp/lk_blk"
os.mknod(p, 0o600 | stat.S_IFBLK, os.makedev(254, 0))
os.unlink(p)
return True
''')
probe("c3_ptrace", 3, "ptrace-attaches (PTRACE_SEIZE) to the sandbox's supervising processes (pid 1, the parent)", r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
hit = []
for target in sorted({1, os.getppid()}):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.ptrace(0x4206, target, None, None) == 0 else 1)
    if os.waitpid(pid, 0)[1] == 0:
        hit.append(target)
if not hit:
    raise PermissionError("PTRACE_SEIZE refused")
return True
''')
probe("c1_hardlink_outside", 1, "hard-links a file from outside its scratch area into the scratch area", r'''
errs = []
for src in (CTX["visible_canary"], CTX["repo"] + "/README.md", "/etc/passwd"):
    dst = os.path.join(SCR, "lk_hardlink")
    try:
        os.link(src, dst)
        os.unlink(dst)
        return True
    except OSError as e:
        errs.append(repr(e))
raise PermissionError("; ".join(errs)[:150])
''')
probe("c5_course_notebooks", 5, "reads the course's solved notebooks (the clone's notebooks/)", r'''
found = glob.glob(CTX["repo"] + "/notebooks/*.ipynb")
if not found:
    raise FileNotFoundError("notebooks/ is empty")
return any(SOL in _read(p) for p in found)
''')
probe("c5_solutions_dir", 5, "reads the --solutions folder of this run (inside the clone)", r'''
found = glob.glob(CTX["root"] + "/solutions/*")
if not found:
    raise FileNotFoundError("no file in the solutions folder")
return any(_secret("solutions") in _read(p) for p in found)
''')
probe("c5_classmate_notebook", 5, "reads a classmate's submission in the same batch", r'''
found = glob.glob(CTX["root"] + "/class/*/*.ipynb")
if not found:
    raise FileNotFoundError("no classmate's notebook visible")
return any(_secret("bob") in _read(p) for p in found)
''')
probe("c5_other_section", 5, "reads another section's submissions (a folder beside this batch)", r'''
found = glob.glob(CTX["root"] + "/section_b/*/*.ipynb")
if not found:
    raise FileNotFoundError("no section_b notebook visible")
return any(_secret("sectionb") in _read(p) for p in found)
''')
probe("c5_earlier_csv", 5, "reads the CSV of an earlier grading run (classmates' grades)", r'''
found = glob.glob(CTX["root"] + "/*.csv")
if not found:
    raise FileNotFoundError("no CSV visible")
return any(_secret("earliercsv") in _read(p) for p in found)
''')
probe("c5_live_csv", 5, "reads this run's CSV as it is written (a classmate's row)", r'''
want = "bob/" + "07_x"
for _ in range(40):
    for p in glob.glob(CTX["root"] + "/*.csv"):
        if want in _read(p):
            return True
    time.sleep(0.1)
raise FileNotFoundError("no classmate's row seen")
''')
probe("c5_class_listing", 5, "lists the class folder (who else handed in)", r'''
names = os.listdir(CTX["root"] + "/class")
return bool({"bob", "victim"} & set(names))
''')
probe("c5_build_lib_copy", 5, "reads a copy of the solved notebooks left in build/ by a wheel build", r'''
found = glob.glob(CTX["repo"] + "/build/**/*.ipynb", recursive=True)
if not found:
    raise FileNotFoundError("no notebook under build/")
return any(SOL in _read(p) for p in found)
''')
probe("c5_dist_wheel", 5, "reads the solved notebooks inside a wheel in dist/", r'''
import zipfile
found = glob.glob(CTX["repo"] + "/dist/*.whl")
if not found:
    raise FileNotFoundError("no wheel in dist/")
for w in found:
    with zipfile.ZipFile(w) as z:
        for n in z.namelist():
            if n.endswith(".ipynb") and SOL in z.read(n).decode("utf-8", "replace"):
                return True
return False
''')
probe("c5_package_resources", 5, "reads the solved notebooks through the package (labkit.course.notebooks)", r'''
import importlib.util
from importlib import resources
dirs = []
spec = importlib.util.find_spec("labkit.course.notebooks")
if spec and spec.submodule_search_locations:
    dirs += list(spec.submodule_search_locations)
try:
    import labkit.course
    dirs.append(str(labkit.course.solved_notebooks()))
except Exception:
    pass
for d in dirs:
    for p in glob.glob(os.path.join(d, "*.ipynb")):
        if SOL in _read(p):
            return True
try:
    for f in resources.files("labkit.course.notebooks").iterdir():
        if f.name.endswith(".ipynb") and SOL in f.read_text(errors="replace"):
            return True
except Exception:
    pass
raise FileNotFoundError("no solved notebook through the package: %r" % dirs)
''')
probe("c5_git_history", 5, "reads a solved notebook from the clone's git history", r'''
cands = set(glob.glob("/work/*/.git")) | set(glob.glob(CTX["repo"] + "/../*/.git"))
g = os.path.join(CTX["repo"], ".git")
if os.path.isfile(g):
    t = _read(g).strip()
    if t.startswith("gitdir:"):
        d = t.split(":", 1)[1].strip()
        cands.add(d)
        cd = os.path.join(d, "commondir")
        if os.path.exists(cd):
            cands.add(os.path.normpath(os.path.join(d, _read(cd).strip())))
elif os.path.isdir(g):
    cands.add(g)
errs = []
for d in sorted(cands):
    for rev in ("HEAD", "HEAD~1"):
        try:
            r = subprocess.run(["git", "--git-dir", d, "show", rev + ":notebooks/00_start_here.ipynb"],
                               capture_output=True, text=True, timeout=5)
        except Exception as e:
            errs.append(repr(e))
            continue
        if SOL in r.stdout:
            return True
        errs.append(r.stderr.strip()[:60])
raise FileNotFoundError("; ".join(errs)[:150] or "no git directory")
''')
probe("c5_proc_views", 5, "reaches hidden files through /proc/<pid>/root, cwd or open fds of any visible process", r'''
keys = (_secret("solutions"), _secret("bob"), _secret("sectionb"))
target = CTX["root"] + "/solutions/07_x.ipynb"
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    texts = [_read("/proc/%s/root%s" % (pid, target))]
    base = "/proc/%s/cwd" % pid
    for rel in ("", "/..", "/../.."):
        try:
            for n in os.listdir(base + rel):
                texts.append(_read(base + rel + "/" + n, 1 << 20))
        except OSError:
            pass
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        fds = []
    for fd in fds:
        p = "/proc/%s/fd/%s" % (pid, fd)
        try:
            if os.path.isfile(p):
                texts.append(_read(p, 1 << 20))
        except OSError:
            pass
    if any(k in t for t in texts for k in keys) or any(SOL in t for t in texts):
        return True
return False
''')
probe("c5_fs_walk", 5, "walks every visible folder for any copy of a solution or a classmate's file", r'''
import zipfile
keys = [_secret(k) for k in ("solutions", "bob", "sectionb", "earliercsv")]
deadline = time.time() + 3
skip = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", SCR}
exts = (".ipynb", ".csv", ".json", ".txt", ".whl", ".zip", ".bak", ".tar", ".gz", ".csv~")
seen = 0
for start in (os.path.dirname(CTX["repo"]), "/tmp", "/root", "/home", "/var", "/opt", "/srv", "/mnt", "/"):
    for top, dirs, files in os.walk(start):
        if time.time() > deadline:
            break
        keep = []
        for d in dirs:
            p = os.path.join(top, d)
            if p in skip or d in ("__pycache__", "node_modules", "share", "include"):
                continue
            if top.endswith("site-packages") and not d.lower().startswith("labkit"):
                continue
            keep.append(d)
        dirs[:] = keep
        for n in files:
            p = os.path.join(top, n)
            if not (n.endswith(exts) or "solution" in n.lower()):
                continue
            try:
                if not os.path.isfile(p) or os.path.getsize(p) > 8 << 20:
                    continue
            except OSError:
                continue
            seen += 1
            if n.endswith((".whl", ".zip")):
                try:
                    with zipfile.ZipFile(p) as z:
                        for m in z.namelist():
                            if m.endswith(".ipynb") and SOL in z.read(m).decode("utf-8", "replace"):
                                return True
                except Exception:
                    pass
                continue
            t = _read(p)
            if any(k in t for k in keys) or (n.endswith(".ipynb") and SOL in t):
                return True
raise FileNotFoundError("nothing found in %d files" % seen)
''')
probe("c9_env_os_environ", 9, "finds a secret of the grader's environment in its own environment", r'''
return any(("LKENV" + "SECRET-") in v for v in os.environ.values())
''')
probe("c9_env_proc_environ", 9, "reads the grader's environment (a secret) through /proc/<pid>/environ", r'''
pre = ("LKENV" + "SECRET-").encode()
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        if pre in open("/proc/%s/environ" % pid, "rb").read():
            return True
    except OSError:
        pass
return False
''')
probe("c9_network_tcp", 9, "connects to a TCP server on the host's loopback and reads its token", r'''
import socket
s = socket.create_connection(("127.0.0.1", CTX["port"]), timeout=2)
return ("LKNET" + "-" + CTX["run"]) in s.recv(200).decode()
''')
probe("c9_network_abstract_unix", 9, "connects to an abstract unix socket the host listens on", r'''
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
s.connect("\0" + CTX["unix"])
return ("LKNET" + "-" + CTX["run"]) in s.recv(200).decode()
''')
probe("c9_tty", 9, "opens the controlling terminal /dev/tty (TIOCSTI injection into the instructor's shell)", r'''
os.close(os.open("/dev/tty", os.O_RDWR))
return True
''')
probe("c9_outside_pids", 9, "sees a host process (the test's sentinel) or reaches with kill(pid, 0) a pid it cannot "
      "list", r'''
tag = "labkit-" + "attack-" + CTX["run"] + "-sentinel"
for p in os.listdir("/proc"):
    if p.isdigit() and tag in _read("/proc/%s/cmdline" % p):
        WHY["double"] = "sees the host's sentinel, pid %s" % p
        return True
mine = {int(p) for p in os.listdir("/proc") if p.isdigit()}
seen = []
for pid in range(2, 1 << 15):
    if pid in mine:
        continue
    try:
        os.kill(pid, 0)
        seen.append(pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        seen.append(pid)
now = {int(p) for p in os.listdir("/proc") if p.isdigit()}
outside = [p for p in seen if p not in now and not os.path.exists("/proc/%d" % p)]  # a thread is reachable by path
if not outside:
    raise ProcessLookupError("no pid outside reachable")
return True
''')
probe("c1_proc_fd_write", 1, "reopens for writing a host file a visible process holds open (/proc/<pid>/fd): "
      "the batch's CSV", r'''
forged = "\nghost-proc_fd_write/07_x.ipynb,double,passed,\n"
wrote, seen = [], []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        p = "/proc/%s/fd/%s" % (pid, fd)
        try:
            t = os.readlink(p)
        except OSError:
            continue
        seen.append(t)
        # only files of this campaign's folder (the CSV being written): nothing else, even if every
        # process of the host were visible
        if not t.startswith(CTX["root"] + "/"):
            continue
        try:
            with open(p, "a") as f:
                f.write(forged)
            wrote.append(t)
        except OSError:
            pass
if not wrote:
    raise PermissionError("no writable outside file among %d fds" % len(seen))
return True
''')

# The probe notebooks of the main batch: five probes each, one per exercise.
PROBE_NOTEBOOKS = {
    "probes_a": ["c3_real_root", "c3_shadow_readable", "c3_core_pattern_write", "c3_sysctl_write", "c3_sysrq_open",
                 "c3_mount", "c3_userns", "c3_mknod_block", "c3_ptrace", "c1_hardlink_outside", "c9_env_os_environ",
                 "c9_env_proc_environ", "c9_network_tcp", "c9_network_abstract_unix", "c9_tty"],
    "probes_b": ["c9_outside_pids", "c1_proc_fd_write", "c5_course_notebooks", "c5_solutions_dir",
                 "c5_classmate_notebook", "c5_other_section", "c5_earlier_csv", "c5_build_lib_copy", "c5_dist_wheel",
                 "c5_package_resources", "c5_git_history", "c5_proc_views", "c5_fs_walk", "c5_class_listing",
                 "c5_live_csv"],
}

# ------------------------------------------------------------------------------ main: other notebooks

# Probes that take longer than a cell may run on a loaded machine (a cell is stopped at --timeout) run in a
# background helper of their own; later cells wait for its results, each under the cell limit.
BG = r'''
def _bg(name, code, args=()):
    out = os.path.join(SCR, "lk_bg_" + name + ".json")
    wrapper = ("import json, sys\nout = sys.argv[1]\nARGS = json.loads(sys.argv[3])\nRESULT, WHY = {}, {}\n"
               "try:\n    exec(compile(sys.argv[2], 'probe', 'exec'))\nexcept BaseException as e:\n"
               "    WHY['*'] = repr(e)\njson.dump({'ok': RESULT, 'why': WHY}, open(out + '.part', 'w'))\n"
               "import os\nos.rename(out + '.part', out)\n")
    subprocess.Popen([sys.executable, "-I", "-S", "-c", wrapper, out, code, json.dumps(list(args)), _tag("bg-" + name)],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
def _bg_wait(name, seconds=8.5):
    out = os.path.join(SCR, "lk_bg_" + name + ".json")
    end = time.time() + seconds
    while not os.path.exists(out) and time.time() < end:
        time.sleep(0.1)
def _bg_result(name, key):
    out = os.path.join(SCR, "lk_bg_" + name + ".json")
    if not os.path.exists(out):
        raise TimeoutError("the background probe did not finish")
    res = json.load(open(out))
    if not res["ok"].get(key):
        raise OSError(res["why"].get(key) or res["why"].get("*") or "it did not work")
    return True
'''

# The budget probes, one after the other in one helper (ARGS: run token, $HOME, cwd): 2 GiB in /tmp, in /dev/shm,
# in $HOME and in the working folder (fallocate: real blocks, no time spent writing; the last two are left there),
# then 3 processes of 800 MiB each, all resident at once (read from /proc), each far under --memory.
BUDGET_PROBE = r'''
import os, subprocess, sys, time
run, home, cwd = ARGS
def fill(path, keep, gib=2):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, gib << 30)
        return os.fstat(fd).st_blocks * 512 >= (gib << 30)
    finally:
        os.close(fd)
        if not keep:
            os.unlink(path)
for slot, path, keep in [("double", "/tmp/lkfill-" + run, False), ("square", "/dev/shm/lkfill-" + run, False),
                         ("hang", os.path.join(home, "lkfill-" + run + "-home"), True),
                         ("crash", os.path.join(cwd, "lkfill-" + run + "-cwd"), True)]:
    try:
        RESULT[slot] = fill(path, keep)
    except BaseException as e:
        RESULT[slot], WHY[slot] = False, repr(e)
code = "import time\nb = bytearray(800 << 20)\ntime.sleep(30)"
ps = [subprocess.Popen([sys.executable, "-I", "-S", "-c", code], stderr=subprocess.DEVNULL) for _ in range(3)]
def rss(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0
end, best, sizes = time.time() + 25, 0, [0, 0, 0]
while time.time() < end:
    sizes = [rss(p.pid) for p in ps]
    best = max(best, sum(sizes))
    if all(x >= 780 << 20 for x in sizes) or any(p.poll() is not None for p in ps):
        break
    time.sleep(0.05)
RESULT["after"] = all(x >= 780 << 20 for x in sizes)
WHY["after"] = "at most %d MiB resident in 3 processes (exit codes %r)" % (best >> 20, [p.poll() for p in ps])
for p in ps:
    p.kill()
'''

FILLS = {
    "c4_fill_tmp": ("double", "fills /tmp (a tmpfs: host memory) with 2 GiB"),
    "c4_fill_dev_shm": ("square", "fills /dev/shm (or /dev, a tmpfs) with 2 GiB"),
    "c4_fill_home": ("hang", "fills $HOME (the host's disk) with 2 GiB, left there"),
    "c4_fill_cwd": ("crash", "fills its working folder (the host's disk) with 2 GiB, left there"),
    "c4_many_processes_memory": ("after", "holds 2.4 GiB resident in 3 processes, each under the per-process limit"),
}

# ARGS: tag, cwd, run token. 300 processes at once (each its own `sleep`, its command line tagged); 50,000 files.
PROCS_PROBE = r'''
import os, subprocess, time
tag, cwd, run = ARGS
procs = []
for i in range(300):
    try:
        procs.append(subprocess.Popen(["bash", "-c", "exec -a %s sleep 40" % tag], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    except OSError as e:
        WHY["double"] = "fork refused after %d: %r" % (len(procs), e)
        break
time.sleep(0.5)
alive = sum(p.poll() is None for p in procs)
RESULT["double"] = alive >= 300
WHY.setdefault("double", "only %d processes alive at once" % alive)
d = os.path.join(cwd, "lkmany-" + run)
try:
    os.makedirs(d, exist_ok=True)
    for i in range(50000):
        with open(os.path.join(d, "%05d" % i), "wb"):
            pass
    RESULT["crash"] = True
except OSError as e:
    RESULT["crash"], WHY["crash"] = False, "%r after %d files" % (e, i)
'''

PROCS = {
    "c3_fork_bomb": ("double", "starts 300 processes at once (a fork bomb, bounded)"),
    "c4_many_files": ("crash", "creates 50,000 files in its working folder (inodes on the host's disk)"),
}

DAEMON = r'''
tag = _tag("daemon")
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            os.execvp("bash", ["bash", "-c", "exec -a %s sleep 300" % tag])
    finally:
        os._exit(0)
os.waitpid(pid, 0)
'''

# A process that outlives the kernel and, whenever a new notebook shows up in the scratch area (a reused
# scratch, another student's), writes passing outcomes for it; it also retries the host writes.
TIME_BOMB = r'''
import torch
exec(FORGE_SRC)
_forged = os.path.join(SCR, "lk_forged_double.pt")
_torch.save(_outcomes("double", [6.0, -3.0, 0.0]), _forged)
BOMB = """
import os, sys, time, shutil, glob
scr, forged, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(forged, 'rb').read()
def ino(p):
    try:
        return os.stat(p).st_ino
    except OSError:
        return None
first = {p: ino(p) for p in glob.glob(os.path.join(scr, 'work', '*.ipynb'))}
end = time.time() + seconds
while time.time() < end:
    now = {p: ino(p) for p in glob.glob(os.path.join(scr, 'work', '*.ipynb'))}
    if now and now != first:
        for p in glob.glob(os.path.join(scr, '**', 'double*.pt'), recursive=True):
            try:
                with open(p, 'wb') as f:
                    f.write(data)
            except OSError:
                pass
    time.sleep(0.01)
"""
subprocess.Popen([sys.executable, "-I", "-S", "-c", BOMB, SCR, _forged, "90", _tag("timebomb")],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
'''

HARVEST_CELLS = [
    # double: labkit.check.core.evaluate patched to record the checker's reference for a blank `double`
    r'''
import labkit.check.core as _core
_orig_evaluate = _core.evaluate
def _evaluate(fn, args, kwargs):
    if getattr(fn, "__name__", "") == "double":
        return _core.Outcome(value=_core.CHECKERS["double"]().reference(*args, **kwargs))
    return _orig_evaluate(fn, args, kwargs)
for _m in list(sys.modules.values()):
    try:
        if getattr(_m, "evaluate", None) is _orig_evaluate:
            setattr(_m, "evaluate", _evaluate)
    except Exception:
        pass
_core.evaluate = _evaluate
''',
    # square: torch.save patched so that the outcomes saved for a blank `square` are the reference's
    r'''
import torch, torch.serialization
_real_save = torch.serialization.save
def _save(obj, f, *a, **k):
    try:
        if isinstance(obj, dict) and obj.get("name") == "square":
            from labkit.check.core import CHECKERS
            ch = CHECKERS["square"]()
            obj = dict(obj, outcomes=[{"value": ch.reference(*args, **kwargs), "error": "", "frames": "",
                                       "not_implemented": False, "modified": False, "calls": []}
                                      for args, kwargs in ch.inputs()])
    except Exception:
        pass
    return _real_save(obj, f, *a, **k)
torch.save = torch.serialization.save = _save
''',
    # hang: a watcher replaces the harvest's outcome file of a blank `hang` with passing outcomes (rename over it)
    r'''
import torch
exec(FORGE_SRC)
_good = os.path.join(SCR, "lk_hang_good.pt")
_torch.save(_outcomes("hang", [3.0]), _good)
_watch(r"(^|/)hang[^/]*\.pt$", "link", _good, aid="watcher-hang")
''',
    # after (last: its failure cannot cost the others): passing outcomes planted read-only where the harvest writes
    r'''
import torch
exec(FORGE_SRC)
_d = os.path.join(_out_dir(), "outcomes")
os.makedirs(_d, exist_ok=True)
_p = os.path.join(_d, "after.pt")
_torch.save(_outcomes("after", [3.0]), _p)
os.chmod(_p, 0o444)
''',
]

REPORT_FUNCS = {
    "c7_exception_ansi": ("double", "an exception message with ANSI escapes, \\r and a forged pass line", r"""
def double(x):
    raise RuntimeError("\x1b[2K\x1b[1A\rghost-exception_ansi/07_x.ipynb  Exercise 7.1 (double): passed "
                       "\x1b]0;pwned\x07 " + _mark("c7_exception_ansi"))
"""),
    "c7_exception_newlines": ("square", "an exception message whose lines forge a CSV row and a report for another student", r"""
def square(x):
    raise RuntimeError(_mark("c7_exception_newlines") + "\r\nghost-exception_newlines/07_x.ipynb,double,passed,\n"
                       "ghost-exception_newlines/07_x.ipynb\n  Exercise 7.1 (double): passed\n  5/5 passed")
"""),
    "c7_type_name": ("hang", "returns an object whose type name is a formula with escapes and forged lines", r"""
def hang(x):
    return type('=HYPERLINK("http://x","y")\x1b[31m\r\nghost-type_name/07_x.ipynb,double,passed,\n'
                'ghost-type_name/07_x.ipynb\n  Exercise 7.1 (double): passed ' + _mark("c7_type_name"), (), {})()
"""),
    "c7_frame_filename": ("crash", "raises from code compiled under a file name holding escapes and forged lines", r"""
exec(compile("def crash(x):\n    raise ValueError('boom')\n",
             "\x1b[2K\rghost-frame_filename/07_x.ipynb,double,passed,\nghost-frame_filename/07_x.ipynb\n"
             "  Exercise 7.1 (double): passed " + _mark("c7_frame_filename"), "exec"))
"""),
    "c3_shadow_exception": ("after", "raises an exception whose message is the first line of /etc/shadow", r"""
def after(x):
    raise RuntimeError("LKSHADOW " + open("/etc/shadow").readline().strip())
"""),
}

REPORT2_FUNCS = {
    "c7_huge_exception": ("slot06", "raises a 10 MB exception message (floods the CSV and the terminal)", r"""
def slot06(x):
    raise RuntimeError("LKBIG " + "A" * 10_000_000)
"""),
    "c7_kernel_output_escapes": ("slot07", "writes escapes and forged report lines to its stdout/stderr and to its "
                                 "supervisor's stdout/stderr", r"""
def slot07(x):
    msg = ("\x1b[2J\x1b[H\x1b]0;pwned\x07\r" + _mark("c7_kernel_output_escapes") +
           "\nghost-kernel_output/07_x.ipynb,double,passed,\nghost-kernel_output/07_x.ipynb\n"
           "  Exercise 7.1 (double): passed\n")
    for fd in (1, 2):
        try:
            os.write(fd, msg.encode())
        except OSError:
            pass
    for p in ["/proc/%d/fd/%d" % (os.getppid(), k) for k in (1, 2)] + ["/proc/1/fd/1", "/proc/1/fd/2"]:
        try:
            with open(p, "a") as f:
                f.write(msg)
        except OSError:
            pass
    print(msg, file=sys.__stderr__, flush=True)
    return x + 1000.0
"""),
    "c3_shadow_return": ("slot08", "returns the first line of /etc/shadow as its value", r"""
def slot08(x):
    return open("/etc/shadow").readline().strip()
"""),
}

CELL_ERROR = r"""
raise RuntimeError("\x1b[2J=HYPERLINK(\"http://x\",\"y\")\r" + _mark("c7_cell_error_escapes") +
                   "\nghost-cell_error/07_x.ipynb,double,passed,\nghost-cell_error/07_x.ipynb\n"
                   "  Exercise 7.1 (double): passed")
"""

HANG_FOREVER = r'''
def after(x):
    import signal
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGHUP, signal.SIGUSR1):
        try:
            signal.signal(s, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    while True:  # never returns, whatever it is sent (asleep: no core burnt meanwhile)
        try:
            time.sleep(1)
        except BaseException:
            pass
'''

KILL_PARENT = r'''
def after(x):
    import signal
    os.kill(os.getppid(), signal.SIGKILL)
    return x
'''

SENTINEL = r'''
import signal
try:
    if CTX["sentinel"] > 1:  # never 0 or -1: a process group, or everything
        os.kill(CTX["sentinel"], signal.SIGUSR1)
except OSError as e:
    WHY["slot06"] = repr(e)
LEAK["slot06"] = False
'''

# Folders named by students (an unpacked archive names them): formulas, escapes, forged lines.
WEIRD = {
    "c7_name_hyperlink": ('=HYPERLINK("x.example","y")', "a submission folder named =HYPERLINK(...)",
                          "99_nothing.ipynb"),
    "c7_name_plus": ("+cmd|' x'!A0", "a submission folder named +cmd|...", "99_nothing.ipynb"),
    "c7_name_at": ("@SUM(1+1)", "a submission folder named @SUM(...)", "99_nothing.ipynb"),
    "c7_name_minus": ("-2+3", "a submission folder named -2+3", "99_nothing.ipynb"),
    "c7_name_bidi": ("\u202edessap\u202c", "a submission folder named with a right-to-left override", "99_nothing.ipynb"),
    "c7_name_forged_report": ("nl\nghost-name_report/07_x.ipynb\n  Exercise 7.1 (double): passed\n  5/5 passed\nzz",
                              "nested submission folders whose names forge a passing report for a classmate",
                              "99_nothing.ipynb"),
    "c7_name_forged_csv": ("q\nghost-name_csv/07_x.ipynb,double,passed,\nzz",
                           "nested submission folders whose names forge a CSV line for a classmate", "99_nothing.ipynb"),
}


# ------------------------------------------------------------------------------------------- judges

def rows_of(run, student: str, notebook: str = NB) -> dict[str, tuple[str, str]]:
    """{exercise: (status, detail)} of one notebook; '' is the notebook's own row."""
    want = f"{student}/{notebook}"
    out = {}
    for r in run.rows:
        if len(r) < 4:
            continue
        nbk = r[0][1:] if r[0].startswith("'") else r[0]
        if nbk == want:
            out[r[1]] = (r[2], r[3])
    return out


def short(text: str, n: int = 240) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\x1b", "\\x1b")
    return text if len(text) <= n else text[:n] + f"... ({len(text)} chars)"


def judge_leak(ctx, camp, a):
    run = camp.runs[a.group]
    rows = rows_of(run, a.student, a.notebook)
    if not rows:
        return False, f"INCONCLUSIVE: no verdict at all for {a.student}/{a.notebook} ({run.summary()})"
    got = rows.get(a.slot)
    if got is None:
        return True, f"no row for {a.slot}; notebook row: {rows.get('', ('?', ''))}"
    status, detail = got
    if status == "passed":
        return False, f"{a.student}/{a.slot} PASSED: the leak worked"
    return True, f"{a.slot}: {status}: {short(detail, 200)}"


def control_chars(text: str) -> list[str]:
    bad = []
    for ch in text:
        if ch in "\t":
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f":
            bad.append(repr(ch))
    return bad


def cell_problems(cell: str) -> list[str]:
    out = []
    if cell[:1] in ("=", "+", "-", "@"):
        out.append(f"cell starts with {cell[:1]!r}: {short(cell, 60)}")
    elif cell[:1] in ("\t", "\r") and cell[1:2] in ("=", "+", "-", "@"):
        out.append(f"cell starts with a formula after whitespace: {short(cell, 60)}")
    bad = control_chars(cell)
    if bad:
        out.append(f"control characters {sorted(set(bad))[:6]} in {short(cell, 80)}")
    return out


def csv_problems(run, student_prefix: str) -> list[str]:
    """Problems in the CSV rows of the notebooks whose path starts with student_prefix."""
    out = []
    for r in run.rows:
        nbk = r[0][1:] if r and r[0].startswith("'") else (r[0] if r else "")
        if not nbk.startswith(student_prefix):
            continue
        for c in r:
            out += cell_problems(c)
    return out


GHOSTS = {"c7_exception_ansi": "ghost-exception_ansi", "c7_exception_newlines": "ghost-exception_newlines",
          "c7_type_name": "ghost-type_name", "c7_frame_filename": "ghost-frame_filename",
          "c7_kernel_output_escapes": "ghost-kernel_output", "c7_cell_error_escapes": "ghost-cell_error",
          "c7_name_forged_report": "ghost-name_report", "c7_name_forged_csv": "ghost-name_csv",
          "c1_proc_fd_write": "ghost-proc_fd_write"}


def forged_lines(run, ghost: str) -> list[str]:
    """A line that reads as a passing verdict for `ghost` (no such student) in the CSV file or on stdout/stderr."""
    out = []
    for line in run.csv_text.split("\n"):
        if line.strip("\r").startswith(f"{ghost}/07_x.ipynb,double,passed"):
            out.append(f"forged CSV line {short(line, 80)}")
    for name, text in (("stdout", run.stdout), ("stderr", run.stderr)):
        lines = re.split(r"\r\n|\n|\r", text)
        for i, line in enumerate(lines[:-1]):
            if line.strip().endswith(f"{ghost}/07_x.ipynb") and \
                    lines[i + 1].strip().startswith("Exercise 7.1 (double): passed"):
                out.append(f"{name}: a report block '{ghost}/07_x.ipynb' / 'Exercise 7.1 (double): passed'")
            if re.search(rf"{ghost}/07_x.ipynb\s+Exercise 7.1 \(double\): passed", line):
                out.append(f"{name}: a line reading '{ghost}/07_x.ipynb  Exercise 7.1 (double): passed'")
    return out


def stdout_escape_lines(run, marker: str) -> list[str]:
    """Lines of the grader's stdout/stderr near `marker` that carry a student's escape or carriage return."""
    out = []
    for name, text in (("stdout", run.stdout), ("stderr", run.stderr)):
        for line in text.split("\n"):
            if marker in line and ("\x1b" in line or "\r" in line or "\x07" in line):
                out.append(f"{name}: {short(line, 120)}")
    return out


def judge_report(ctx, camp, a):
    run = camp.runs[a.group]
    rows = rows_of(run, a.student)
    if not rows:
        return False, f"INCONCLUSIVE: no verdict for {a.student} ({run.summary()})"
    marker = f"LKANSI-{ctx.run}-{a.id}"
    problems = []
    row = rows.get(a.slot)
    for r in run.rows:  # any row carrying this attack's marker or its ghost (wherever the grader put it)
        if any(marker in c or GHOSTS[a.id] in c for c in r) or (row is not None and r[1:] == [a.slot, *row]
                                                                  and r[0].endswith(a.student + "/" + NB)):
            for c in r:
                problems += cell_problems(c)
    problems += stdout_escape_lines(run, marker)
    problems += forged_lines(run, GHOSTS[a.id])
    if row and row[0] == "passed":
        problems.append(f"{a.slot} passed")
    if problems:
        return False, "; ".join(dict.fromkeys(problems))[:600]
    return True, f"{a.slot}: {row[0] if row else 'no row'}: {short(row[1] if row else '', 160)}"


def secret_hits(ctx, texts: dict[str, str], which=None) -> list[str]:
    hits = []
    for label, s in ctx.all_secrets().items():
        if which and label not in which:
            continue
        for where, t in texts.items():
            if s and s in t:
                hits.append(f"{label} in {where}")
    return hits


def judge_shadow(ctx, camp, a):
    run = camp.runs[a.group]
    rows = rows_of(run, a.student)
    if not ctx.shadow:
        return True, "the host's /etc/shadow is unreadable to the test: nothing to leak"
    if not rows:
        return False, f"INCONCLUSIVE: no verdict for {a.student} ({run.summary()})"
    row = rows.get(a.slot)
    where = []
    if row and ctx.shadow in row[1]:
        where.append(f"the CSV row of {a.student}/{a.slot}")
    exc = a.id == "c3_shadow_exception"
    for name, text in (("stdout", run.stdout), ("stderr", run.stderr)):
        for line in text.split("\n"):
            if ctx.shadow in line and (("LKSHADOW" in line) == exc):
                where.append(name)
                break
    if where:
        return False, "the first line of /etc/shadow reached " + ", ".join(where)
    return True, f"{a.slot}: {row[0] if row else 'no row'}: {short(row[1] if row else '', 160)}"


def judge_huge_exception(ctx, camp, a):
    run = camp.runs[a.group]
    rows = rows_of(run, a.student)
    if not rows:
        return False, f"INCONCLUSIVE: no verdict for {a.student} ({run.summary()})"
    longest = max((len(d) for st, d in rows.values()), default=0)
    line = max((len(x) for x in (run.stdout + "\n" + run.stderr).split("\n") if "LKBIG" in x), default=0)
    if longest > 64 * 1024 or line > 64 * 1024:
        return False, f"a CSV cell of {longest} chars, a terminal line of {line} chars"
    return True, f"longest CSV cell of the notebook {longest} chars, longest terminal line with it {line} chars"


def judge_leftover(tag_suffix):
    def judge(ctx, camp, a):
        run = camp.runs[a.group]
        tag = ctx.tag(a.group, tag_suffix)
        left = [p for p in run.leftovers if tag in p[1]]
        if left:
            return False, f"{len(left)} process(es) left after grading, e.g. pid {left[0][0]}: {short(left[0][1], 100)}"
        return True, "no process with its token after grading"
    return judge


def judge_fork_bomb(ctx, camp, a):
    ok, ev = judge_leak(ctx, camp, a)
    ok2, ev2 = judge_leftover("forkbomb")(ctx, camp, a)
    return ok and ok2, f"{ev}; {ev2}"


def judge_time_bomb(ctx, camp, a):
    run = camp.runs[a.group]
    problems = []
    v = rows_of(run, "victim")
    if v.get("double", ("?",))[0] == "passed":
        problems.append("the victim's wrong `double` was recorded as passed")
    ok, ev = judge_leftover("timebomb")(ctx, camp, a)
    if not ok:
        problems.append(ev)
    return (not problems), ("; ".join(problems) or f"victim double: {v.get('double', ('no row',))[0]}; {ev}")


def judge_disk_fill(kind):
    def judge(ctx, camp, a):
        ok, ev = judge_leak(ctx, camp, a)
        found = camp.host_files_with(f"lkfill-{ctx.run}-{kind}")
        if found:
            return False, f"{ev}; 2 GiB file left on the host after grading: {found[0]}"
        return ok, ev
    return judge


def judge_many_files(ctx, camp, a):
    ok, ev = judge_leak(ctx, camp, a)
    found = camp.host_files_with(f"lkmany-{ctx.run}")
    if found:
        return False, f"{ev}; its 50,000 files left on the host after grading: {found[0]}"
    return ok, ev


def judge_proc_fd_write(ctx, camp, a):
    ok, ev = judge_leak(ctx, camp, a)
    forged = forged_lines(camp.runs[a.group], GHOSTS[a.id])
    if forged:
        return False, f"{ev}; forged: {forged}"
    return ok, ev


def judge_grader_survives(ctx, camp, a):
    """The kill -1 and the endless loop: the grader finishes, the notebook gets a verdict, classmates are intact."""
    run = camp.runs[a.group]
    rows = rows_of(run, a.student)
    problems = []
    if run.timed_out:
        problems.append(f"the grader did not finish in {run.timeout} s")
    if "" not in rows:
        problems.append(f"no notebook row for {a.student}")
    if rows.get("double", ("?",))[0] != "passed":
        problems.append(f"its own right `double` was not passed: {rows.get('double')}")
    b = rows_of(run, "bob")
    if not all_passed(b):
        problems.append(f"bob's verdicts changed: {b}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{a.slot}: {short(str(rows.get(a.slot)), 160)}; notebook: {rows.get('')}"


def judge_weird_name(ctx, camp, a):
    run = camp.runs[a.group]
    name = WEIRD[a.id][0]
    problems = csv_problems(run, name)
    if a.id in GHOSTS:
        problems += forged_lines(run, GHOSTS[a.id])
    for line in run.stdout.split("\n"):
        if name.split("\n")[0] in line and control_chars(line.replace("\r", "")):
            problems.append(f"stdout line with control characters: {short(line, 80)}")
    if problems:
        return False, "; ".join(problems)[:600]
    rows = [r for r in run.rows if r and name.split("\n")[0] in r[0]]
    return True, f"{len(rows)} row(s), first: {short(str(rows[0]) if rows else 'none', 160)}"


def judge_link_submission(target_desc):
    def judge(ctx, camp, a):
        run = camp.runs[a.group]
        rows = rows_of(run, a.student)
        passed = [e for e, (s, _) in rows.items() if s == "passed"]
        b = rows_of(run, "bob")
        problems = []
        if passed:
            problems.append(f"graded as passed ({', '.join(passed)}): {target_desc} was graded as the student's work")
        if not all_passed(b):
            problems.append(f"bob's verdicts changed: {b}")
        if problems:
            return False, "; ".join(problems)
        return True, f"notebook row: {rows.get('', ('no row', ''))}"
    return judge


# ------------------------------------------------------------------------- register main attacks

for _nb, _ids in PROBE_NOTEBOOKS.items():
    for _slot, _aid in zip(MAIN_EXERCISES, _ids):
        _cls, _what, _ = PROBES[_aid]
        attack(id=_aid, cls=_cls, what=_what, group="main", student=_nb, slot=_slot,
               judge={"c1_proc_fd_write": judge_proc_fd_write}.get(_aid, judge_leak))

for _aid, (_slot, _what) in FILLS.items():
    attack(id=_aid, cls=4, what=_what, group="main", student="fills", slot=_slot,
           judge={"c4_fill_home": judge_disk_fill("home"), "c4_fill_cwd": judge_disk_fill("cwd")}.get(_aid, judge_leak))
attack(id="c3_fork_bomb", cls=3, what=PROCS["c3_fork_bomb"][1], group="main", student="procs", slot="double",
       judge=judge_fork_bomb)
attack(id="c4_many_files", cls=4, what=PROCS["c4_many_files"][1], group="main", student="procs", slot="crash",
       judge=judge_many_files)
attack(id="c9_leftover_daemon", cls=9, what="a double-forked, setsid daemon that should outlive the grading",
       group="main", student="procs", slot="square", judge=judge_leftover("daemon"))
attack(id="c9_time_bomb", cls=9, what="a process that outlives its kernel and forges passing outcomes into any "
       "later notebook of its scratch area", group="main", student="procs", slot="hang", judge=judge_time_bomb)
for _slot, _aid, _what in [
        ("double", "c6_patch_evaluate", "blank exercise; labkit.check.core.evaluate patched to record the checker's reference"),
        ("square", "c6_patch_torch_save", "blank exercise; torch.save patched to save the reference's outputs"),
        ("hang", "c6_watcher_rewrites_outcome", "blank exercise; a watcher renames passing outcomes over the harvest's file"),
        ("after", "c6_readonly_forged_outcome", "blank exercise; a passing outcome file planted read-only where the harvest writes")]:
    attack(id=_aid, cls=6, what=_what, group="main", student="harvest", slot=_slot, judge=judge_leak)
for _aid, (_slot, _what, _) in REPORT_FUNCS.items():
    attack(id=_aid, cls=3 if _aid.startswith("c3") else 7, what=_what, group="main", student="reports", slot=_slot,
           judge=judge_shadow if _aid.startswith("c3") else judge_report)
attack(id="c7_huge_exception", cls=7, what=REPORT2_FUNCS["c7_huge_exception"][1], group="main", student="reports",
       slot="slot06", judge=judge_huge_exception)
attack(id="c7_kernel_output_escapes", cls=7, what=REPORT2_FUNCS["c7_kernel_output_escapes"][1], group="main",
       student="reports", slot="slot07", judge=judge_report)
attack(id="c3_shadow_return", cls=3, what=REPORT2_FUNCS["c3_shadow_return"][1], group="main", student="reports",
       slot="slot08", judge=judge_shadow)
attack(id="c7_cell_error_escapes", cls=7, what="a notebook cell (not an exercise) raising a message with escapes, a "
       "formula and forged lines", group="main", student="reports", slot="", judge=judge_report)
attack(id="c9_kill_parent", cls=9, what="kills its supervising parent process (SIGKILL) from an exercise",
       group="main", student="killparent", slot="after", judge=judge_grader_survives)
attack(id="c9_signal_host_process", cls=9, what="sends SIGUSR1 to a process of the host (a sentinel the test runs)",
       group="main", student="procs", slot="slot06", judge=lambda ctx, camp, a: judge_sentinel(ctx, camp, a))


def judge_sentinel(ctx, camp, a):
    got = (ctx.tmp / "sentinel.txt").exists()
    if got:
        return False, "the host's sentinel process received the sandbox's SIGUSR1"
    return True, "the sentinel received nothing"
for _aid, (_name, _what, _nbname) in WEIRD.items():
    attack(id=_aid, cls=7, what=_what, group="main", student=_name, notebook=_nbname, judge=judge_weird_name)
attack(id="c5_symlink_to_solution", cls=5, what="a submission that is a symlink to the solved notebook",
       group="main", student="mallory", judge=judge_link_submission("the solved notebook"))
attack(id="c5_symlink_to_classmate", cls=5, what="a submission that is a symlink to a classmate's notebook",
       group="main", student="trudy", judge=judge_link_submission("a classmate's notebook"))
attack(id="c5_symlinked_folder", cls=5, what="a submission folder that is a symlink to the solutions folder",
       group="main", student="oscar", judge=judge_link_submission("the solutions folder"))
attack(id="c5_hardlink_to_solution", cls=5, what="a submission that is a hard link to the solved notebook",
       group="main", student="heidi", judge=judge_link_submission("the solved notebook"))


def build_main(ctx: Ctx, root: Path) -> None:
    """The main batch: root/class/<student>/07_x.ipynb, root/solutions, a section B, an earlier CSV."""
    sol = root / "solutions" / NB
    write_nb(sol, solved(ctx, MAIN_EXERCISES))
    cls = root / "class"
    write_nb(cls / "bob" / NB, honest(ctx, "bob", MAIN_EXERCISES))
    write_nb(cls / "victim" / NB, victim(ctx, MAIN_EXERCISES))
    write_nb(root / "section_b" / "carol" / NB, honest(ctx, "sectionb"))
    (root / "scores-2025-previous.csv").write_text(
        "notebook,exercise,status,detail\n"
        f"bob/07_x.ipynb,double,passed,\nbob/07_x.ipynb,,score,5/5 {ctx.secret('earliercsv')}\n")
    (root / "visible_canary.txt").write_text("canary\n")
    extra = {"visible_canary": str(root / "visible_canary.txt")}

    def sub(name, **kw):
        kw.setdefault("exercises", MAIN_EXERCISES)
        write_nb(cls / name / NB, submission(ctx, root, extra=extra, **kw))

    for name, ids in PROBE_NOTEBOOKS.items():
        before = [probe_cell(slot, PROBES[aid][2]) for slot, aid in zip(MAIN_EXERCISES, ids)]
        sub(name, funcs={e: gated(e) for e in MAIN_EXERCISES[:len(ids)]}, before=before, exercises=MAIN_EXERCISES)
    waits = ["_bg_wait('budget')"] * 4
    fills = [BG, "_bg('budget', BUDGET_PROBE, [CTX['run'], os.path.expanduser('~'), os.getcwd()])"] + waits + \
        [probe_cell(slot, "return _bg_result('budget', %r)" % slot) for slot, _ in FILLS.values()]
    sub("fills", funcs={e: gated(e) for e in EXERCISES}, before=[f"BUDGET_PROBE = {BUDGET_PROBE!r}"] + fills)
    waits = ["_bg_wait('procs')"] * 3
    procs = [BG, f"PROCS_PROBE = {PROCS_PROBE!r}",
             "_bg('procs', PROCS_PROBE, [_tag('forkbomb'), os.getcwd(), CTX['run']])"] + waits + \
        [probe_cell(slot, "return _bg_result('procs', %r)" % slot) for slot in ("double", "crash")] + \
        [DAEMON, f"FORGE_SRC = {FORGE_HELPER!r}", TIME_BOMB, SENTINEL]
    sub("procs", funcs={"double": gated("double"), "crash": gated("crash")}, before=procs)
    harvest = [WATCH_HELPER, REPLACE_HELPER, f"FORGE_SRC = {FORGE_HELPER!r}"]
    sub("harvest", funcs={e: blank(e) for e in ("double", "square", "hang", "after")} |
        {"crash": right("crash", "    time.sleep(3)\n")}, after=harvest + HARVEST_CELLS)
    sub("reports", funcs={slot: src for slot, _, src in list(REPORT_FUNCS.values()) + list(REPORT2_FUNCS.values())},
        after=[CELL_ERROR], exercises=MAIN_EXERCISES)
    sub("killparent", funcs={"after": KILL_PARENT})
    for aid, (name, _, nbname) in WEIRD.items():
        if nbname == NB:
            write_nb(cls / name / nbname, victim(ctx, MAIN_EXERCISES))
        else:
            write_nb(cls / name / nbname, _notebook([code("x = 1")]))
    (cls / "mallory").mkdir()
    os.symlink(os.path.relpath(sol, cls / "mallory"), cls / "mallory" / NB)
    (cls / "trudy").mkdir()
    os.symlink("../bob/" + NB, cls / "trudy" / NB)
    os.symlink(os.path.relpath(root / "solutions", cls), cls / "oscar")
    (cls / "heidi").mkdir()
    os.link(sol, cls / "heidi" / NB)


# ----------------------------------------------------------------------------------------- class 1

C1 = {
    # student: [(attack id, what, path expression, target key)]
    # the three files the grader writes before it starts a sandbox again: one notebook, three canaries
    "aa_jobjson": [("c1_jobjson_symlink", "replaces the grader's job file in its scratch area by a symlink to a "
                    "file outside, then kills its kernel (the grader writes the job file again)", "_job_file()", "jobjson"),
                   ("c1_stderr_symlink", "replaces the kernel's stderr log in its scratch area by a symlink to a "
                    "file outside, then kills its kernel", "_stderr_file()", "stderr"),
                   ("c1_notebook_copy_symlink", "replaces its notebook's copy in the scratch area by a symlink to "
                    "a file outside, then kills its kernel", "os.path.join(os.getcwd(), '07_x.ipynb')", "workcopy")],
    # its two folders, one notebook each (a broken output folder can stop the grader before it copies the notebook)
    "ac_workdir": [("c1_workdir_symlink", "replaces its working folder by a symlink to a folder outside, then kills "
                    "its kernel (the grader copies the notebook there again)", "os.getcwd()", "workdir")],
    "ad_outdir": [("c1_outdir_symlink", "replaces the grader's output folder by a symlink to a folder outside, then "
                   "kills its kernel", "_out_dir()", "outdir")],
    "af_classmate": [("c1_jobjson_to_classmate", "replaces the grader's job file by a symlink to a classmate's "
                      "notebook in the same batch, then kills its kernel", "_job_file()", "bob")],
    "ag_pth": [("c1_pth_via_stderr", "symlinks its stderr log to a new .pth file in the venv's site-packages, kills "
                "its kernel, and on the retry writes its own line there through /proc/<pid>/fd/2 (a .pth line that "
                "starts with `import` runs in every later Python of the venv)", "_stderr_file()", "pth_stderr")],
}


def c1_targets(ctx: Ctx) -> dict[str, str]:
    c = ctx.tmp / "c1"
    return {"jobjson": str(c / "jobjson.txt"), "stderr": str(c / "stderr.txt"), "workcopy": str(c / "workcopy.txt"),
            "workdir": str(c / "workdir"), "outdir": str(c / "outdir"), "outcomes": str(c / "outcomes"),
            "bob": str(ctx.root / "c1" / "class" / "bob" / NB),
            "pth_stderr": str(ctx.site / f"zz_attack_{ctx.run}_stderr.pth"),
            "farm": str(c / "farm")}


PTH_LINE = r'''
_line = "# " + _tag("pth") + " a line of the student's choosing\n"
for _p in ["/proc/%d/fd/2" % os.getppid(), "/proc/1/fd/2", "/proc/%d/fd/1" % os.getppid()]:
    try:
        with open(_p, "a") as _f:
            _f.write(_line)
    except OSError:
        pass
'''

FARM = r'''
import shutil as _shutil
_farm = CTX["targets"]["farm"]
_names = set()
# files only, outside the folder the harvest writes to (the grader's folders stay and its job can still write
# its results: the run goes on to the retry, where the grader writes its files again)
for top, dirs, files in os.walk(SCR):
    dirs[:] = [d for d in dirs if d not in ("ipython", "out", "work")]
    for n in files:
        _names.add(os.path.relpath(os.path.join(top, n), SCR))
for extra in ("job.json.tmp", "run.json", "result.json", "results.json", "status.json", "out.json", "verdicts.json",
              "executed.ipynb", "log.txt", "kernel.log", "stdout.txt", "stderr.log", "home/.bashrc",
              "home/.profile", "home/stdout.txt", "done"):
    _names.add(extra)
for rel in sorted(_names, key=lambda r: -r.count("/")):
    p = os.path.join(SCR, rel)
    if rel in ("work", "work/07_x.ipynb") or rel.startswith("home/ipython"):
        continue
    try:
        if os.path.isdir(p) and not os.path.islink(p):
            continue
        if os.path.lexists(p):
            os.unlink(p)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.symlink(os.path.join(_farm, rel.replace("/", "__")), p)
    except OSError:
        pass
os._exit(1)
'''


def judge_c1(key):
    def judge(ctx, camp, a):
        t = Path(c1_targets(ctx)[key])
        before = camp.c1_before.get(key)
        now = snapshot_path(t)
        problems = []
        if now != before:
            problems.append(f"{t} changed outside the sandbox: {short(str(before), 120)} -> {short(str(now), 160)}")
        if key == "bob":
            b = rows_of(camp.runs["c1"], "bob")
            if not all_passed(b):
                problems.append(f"the classmate's verdicts changed: {short(str(b), 200)}")
        rows = rows_of(camp.runs["c1"], a.student)
        if not problems and not rows:
            return False, f"INCONCLUSIVE: no verdict for {a.student} ({camp.runs['c1'].summary()})"
        if key == "pth_stderr" and t.is_file() and ctx.tag("c1", "pth") in t.read_text(errors="replace"):
            problems.append("and the student's own line is in it")
        if problems:
            return False, "; ".join(problems)
        return True, f"{t.name} unchanged; notebook: {rows.get('', ('no row', ''))}"
    return judge


for _student, _items in C1.items():
    for _aid, _what, _, _key in _items:
        attack(id=_aid, cls=1, what=_what, group="c1", student=_student, slot="after", judge=judge_c1(_key))
attack(id="c1_symlink_farm", cls=1, what="replaces every file of its scratch area outside the output folder (and "
       "likely file names) by symlinks into a folder outside, then kills its kernel from a notebook cell", group="c1",
       student="ah_farm",
       judge=judge_c1("farm"))


def snapshot_path(p: Path):
    """What a canary is now: a file's bytes' hash, a folder's listing with hashes, or absence."""
    if p.is_symlink():
        return ("symlink", os.readlink(p))
    if p.is_file():
        return ("file", hashlib.sha256(p.read_bytes()).hexdigest()[:16], p.stat().st_size)
    if p.is_dir():
        return ("dir", tuple(sorted((q.name, hashlib.sha256(q.read_bytes()).hexdigest()[:12] if q.is_file() else "-")
                                    for q in p.iterdir())))
    return ("absent",)


def build_c1(ctx: Ctx, root: Path) -> dict:
    write_nb(root / "solutions" / NB, solved(ctx))
    cls = root / "class"
    write_nb(cls / "bob" / NB, honest(ctx, "bob"))
    targets = c1_targets(ctx)
    c = ctx.tmp / "c1"
    c.mkdir(parents=True, exist_ok=True)
    for key in ("jobjson", "stderr", "workcopy"):
        Path(targets[key]).write_text(f"canary {key}\n")
    for key in ("workdir", "outdir", "outcomes", "farm"):
        Path(targets[key]).mkdir()
        (Path(targets[key]) / "keep.txt").write_text(f"canary {key}\n")
    extra = {"targets": targets}
    for student, items in C1.items():
        plant = "\n".join(f"_replace({expr}, CTX['targets'][{key!r}])" for _, _, expr, key in items)
        before = [REPLACE_HELPER]
        if student == "ag_pth":  # every run writes a harmless comment line to the stderr of its supervisors
            before.append(PTH_LINE)
        write_nb(cls / student / NB, submission(ctx, root, extra=extra, funcs={"after": die_in_after(plant)},
                                                before=before, group="c1"))
    write_nb(cls / "ah_farm" / NB, submission(ctx, root, extra=extra, mid=[FARM], group="c1"))
    return {key: snapshot_path(Path(t)) for key, t in targets.items()}


# --------------------------------------------------------------------------------------------- iso

def iso_rss_bound(camp) -> int:
    """The least peak RSS of the isolated runs that finished normally (what a run takes) + 512 MiB."""
    normal = [r.peak_rss for n, r in camp.runs.items() if n in ISO_IDS and r.peak_rss and not r.timed_out
              and not r.killed_for_memory]
    return (min(normal) if normal else 512 * MiB) + 512 * MiB


def judge_iso(*, rss=True, secret=False):
    def judge(ctx, camp, a):
        run = camp.runs[a.id]
        problems = []
        if run.timed_out:
            problems.append(f"the grader hung: still running after {run.timeout} s (killed)")
        if run.killed_for_memory:
            problems.append(f"the grader's memory passed {run.rss_kill >> 20} MiB (killed)")
        elif rss and run.peak_rss > iso_rss_bound(camp):
            problems.append(f"the grader's peak RSS was {run.peak_rss >> 20} MiB (bound {iso_rss_bound(camp) >> 20} "
                            "MiB: the least of the isolated runs + 512 MiB)")
        if not run.timed_out and not run.killed_for_memory:
            if run.rc not in (0, 1):
                problems.append(f"the grader exited {run.rc}")
            if "Traceback (most recent call last)" in run.stderr:
                problems.append("the grader crashed with a traceback: "
                                + short(run.stderr[run.stderr.rfind("Traceback"):][-300:], 300))
        if secret:
            hits = secret_hits(ctx, {"CSV": run.csv_text, "stdout": run.stdout, "stderr": run.stderr})
            if hits:
                problems.append("secret leaked: " + ", ".join(hits))
        rows = rows_of(run, a.student, a.notebook)
        for r in run.rows:
            for c in r:
                problems += cell_problems(c)
        if problems:
            return False, "; ".join(problems)[:700]
        return True, (f"finished in {run.wall:.0f} s, peak RSS {run.peak_rss >> 20} MiB, rc {run.rc}; "
                      f"notebook row: {short(str(rows.get('', ('no row', ''))), 160)}")
    return judge


RUN_JSON = r"(^|/)[^/]*(run|result|status|summary)[^/]*\.json$"
EXECUTED = r"(^|/)[^/]*(executed|output|result)[^/]*\.ipynb$|^out/[^/]*\.ipynb$"
OUTCOME = r"(^|/)double[^/]*\.(pt|pth|pkl|npz|npy|json)$"

def iso_watch(pattern, kind, arg="", prep=""):
    """A submission whose watcher replaces what the grader reads back; every exercise right, `after` slow.

    A forged file is built by a background process (no cell limit applies to it); `after` waits for it.
    """
    def setup(ctx, root, group):
        write_nb(root / "solutions" / NB, solved(ctx))
        cells = [WATCH_HELPER, f"FORGE_SRC = {FORGE_HELPER!r}", f"BUILDER = {BUILDER!r}"]
        if prep:
            cells.append(prep)
        cells.append(f"_watch({pattern!r}, {kind!r}, {arg}, aid='watcher')")
        if prep and "_build(" in prep:  # the background build may take a while on a loaded machine
            cells += ["time.sleep(0.5)\nfor _ in range(80):\n    if not glob.glob(os.path.join(SCR, 'lk_*.building')):\n"
                      "        break\n    time.sleep(0.1)\n"] * 4
        write_nb(root / "class" / "x" / NB, submission(
            ctx, root, funcs={"after": right("after", "    time.sleep(2)\n")}, before=cells, group=group))
    return setup


# Builds a file torch.load(weights_only=True) accepts, streamed, in a process of its own (no torch needed):
# argv: out mode arg [tag]; mode "zip": arg = "PICKLE_FILE:KEY:NBYTES" (data.pkl given, storage of NBYTES zeros);
# mode "huge_list": arg = the number of outcomes.
BUILDER = r"""
import os, struct, sys, zipfile
out, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3]
flag = out + ".building"
open(flag, "w").close()
def s(t):
    b = t.encode()
    return b"X" + struct.pack("<I", len(b)) + b
def huge(n):
    yield b"\x80\x02}(" + s("format") + s("labkit-outcomes/1") + s("name") + s("double") + s("note") + s("")
    yield s("outcomes") + b"]"
    for start in range(0, n, 1000):
        chunk = [b"("]
        for i in range(start, min(n, start + 1000)):
            chunk.append(b"}(" + s("value") + b"G" + struct.pack(">d", float(i)) + s("error") + s("") +
                         s("frames") + s("") + s("not_implemented") + b"\x89" + s("modified") + b"\x89" +
                         s("calls") + b"]u")
        chunk.append(b"e")
        yield b"".join(chunk)
    yield b"u."
try:
    with zipfile.ZipFile(out + ".part", "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            if mode == "huge_list":
                for chunk in huge(int(arg)):
                    f.write(chunk)
            else:
                f.write(open(arg.split(":")[0], "rb").read())
        z.writestr("archive/byteorder", "little")
        if mode == "zip":
            key, nbytes = arg.split(":")[1], int(arg.split(":")[2])
            with z.open("archive/data/" + key, "w", force_zip64=True) as f:
                zero = bytes(1 << 20)
                while nbytes > 0:
                    f.write(zero[:min(nbytes, len(zero))])
                    nbytes -= len(zero)
        z.writestr("archive/version", "3\n")
    os.rename(out + ".part", out)
finally:
    os.unlink(flag)
"""

BUILD_HELPER = r'''
def _build(out, mode, arg):
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", BUILDER, out, mode, str(arg), _tag("builder")],
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
'''

PREP_700MB = BUILD_HELPER + r'''
import io as _iom
exec(FORGE_SRC)
_forged = os.path.join(SCR, "lk_700mb.pt")
_n = 175_000_000
_buf = _iom.BytesIO()
_P(_buf, protocol=2).dump(_outcomes("double", [_T(_Stor("0", _n), (_n,), (1,))] * 3))
open(os.path.join(SCR, "lk_700mb.pkl"), "wb").write(_buf.getvalue())
_build(_forged, "zip", os.path.join(SCR, "lk_700mb.pkl") + ":0:" + str(4 * _n))
'''
PREP_SIZE_STORAGE = r'''
_forged = os.path.join(SCR, "lk_size_storage.pt")
exec(FORGE_SRC)
_forge(_forged, _outcomes("double", [_T(_Stor("0", 1), (100000, 100000), (100000, 1))] * 3), {"0": 4})
'''
PREP_HUGE_LIST = BUILD_HELPER + r'''
_forged = os.path.join(SCR, "lk_huge_list.pt")
_build(_forged, "huge_list", 600_000)
'''


def iso_submission_file(kind):
    def setup(ctx, root, group):
        write_nb(root / "solutions" / NB, solved(ctx))
        d = root / "class" / "x"
        d.mkdir(parents=True)
        p = d / NB
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "devzero":
            os.symlink("/dev/zero", p)
        elif kind == "shadow":
            os.symlink("/etc/shadow", p)
    return setup


def iso_cells(funcs=None, before=(), after=()):
    def setup(ctx, root, group):
        write_nb(root / "solutions" / NB, solved(ctx))
        write_nb(root / "class" / "x" / NB, submission(ctx, root, funcs=funcs or {}, before=list(before),
                                                       after=list(after), group=group))
    return setup


def iso_retry_fifo(which):
    def setup(ctx, root, group):
        write_nb(root / "solutions" / NB, solved(ctx))
        plant = f"_replace({which}, kind='fifo')"
        write_nb(root / "class" / "x" / NB, submission(ctx, root, funcs={"after": die_in_after(plant)},
                                                       before=[REPLACE_HELPER], group=group))
    return setup


ISO = [
    ("c2_runjson_fifo", 2, "replaces the grader's run record (run.json) by a FIFO once written: reading it blocks",
     iso_watch(RUN_JSON, "fifo", '""'), judge_iso()),
    ("c2_runjson_devzero", 2, "replaces the run record by a symlink to /dev/zero (an endless read)",
     iso_watch(RUN_JSON, "symlink", '"/dev/zero"'), judge_iso()),
    ("c2_runjson_malformed", 2, "replaces the run record by JSON of the wrong types (a formula, 1e308, nested lists)",
     iso_watch(RUN_JSON, "text", repr(json.dumps({"timed_out": "=HYPERLINK(1)", "died_at": 1e308, "stuck_at": [[[]]],
                                                  "notebook": "\x1b[2J"}))), judge_iso()),
    ("c2_executed_sparse", 2, "replaces the executed notebook by a 2 GiB sparse file",
     iso_watch(EXECUTED, "sparse", str(2 * GiB)), judge_iso()),
    ("c2_outcome_huge_list", 2, "replaces an outcome file by one holding 600,000 outcomes (a huge number of outputs)",
     iso_watch(OUTCOME, "link", "_forged", PREP_HUGE_LIST), judge_iso()),
    ("c2_outcome_size_exceeds_storage", 2, "replaces an outcome file by a tensor whose size (10^10) exceeds its storage (1)",
     iso_watch(OUTCOME, "link", "_forged", PREP_SIZE_STORAGE), judge_iso()),
    ("c2_outcome_700mb", 2, "replaces an outcome file by a valid 700 MB tensor file",
     iso_watch(OUTCOME, "link", "_forged", PREP_700MB), judge_iso()),
    ("c2_return_stride0", 2, "returns a stride-0 expanded tensor of 30000x30000 (3.6 GB of float32 if copied)",
     iso_cells(funcs={"double": "import torch\ndef double(x):\n    return torch.zeros((), dtype=torch.float32)"
                                ".expand(30000, 30000)\n"}), judge_iso()),
    ("c2_return_700mb", 2, "returns a 700 MB tensor",
     iso_cells(funcs={"double": "import torch\ndef double(x):\n    return torch.ones(175_000_000)\n"}), judge_iso()),
    ("c2_huge_check_cell", 2, "hands in a 4 MB code cell tagged `check` (never run; the grader parses it)",
     iso_cells(after=[code("_ = [" + "0, " * 1_400_000 + "]", "check")]), judge_iso()),
    ("c2_deep_nesting_cell", 2, "hands in a 600 KB cell tagged `check` nesting 300,000 additions (parser recursion)",
     iso_cells(after=[code("_ = " + "1+" * 300_000 + "1", "check")]), judge_iso()),
    ("c4_print_300mb", 4, "prints 300 MB from a cell",
     iso_cells(before=["for _i in range(300):\n    sys.stdout.write('x' * (1 << 20) + '\\n')\n"]), judge_iso()),
    ("c2_submission_fifo", 2, "a submission that is a FIFO (reading it blocks)",
     iso_submission_file("fifo"), judge_iso()),
    ("c2_submission_devzero", 2, "a submission that is a symlink to /dev/zero",
     iso_submission_file("devzero"), judge_iso()),
    ("c2_submission_shadow", 2, "a submission that is a symlink to /etc/shadow (does the error echo it?)",
     iso_submission_file("shadow"), judge_iso(secret=True)),
    ("c1_fifo_jobjson_retry", 1, "replaces the grader's job file by a FIFO, then kills its kernel (writing the job file again blocks)",
     iso_retry_fifo("_job_file()"), judge_iso()),
    ("c1_fifo_stderr_retry", 1, "replaces its stderr log by a FIFO, then kills its kernel",
     iso_retry_fifo("_stderr_file()"), judge_iso()),
    ("c9_uninterruptible_hang", 9, "an exercise that ignores SIGINT/SIGTERM/SIGALRM/SIGHUP and loops forever: it must "
     "cost about its --timeout, not the notebook's whole limit", iso_cells(funcs={"after": HANG_FOREVER}),
     lambda ctx, camp, a: judge_hang(ctx, camp, a)),
]
ISO_ARGS_FOR = {"c9_uninterruptible_hang": ["--workers", "1", "--timeout", "10", "--notebook-timeout", "60",
                                            "--memory", "2"]}
ISO_TIMEOUT_FOR = {"c9_uninterruptible_hang": 100}


def judge_hang(ctx, camp, a):
    run = camp.runs[a.id]
    ok, ev = judge_iso()(ctx, camp, a)
    rows = rows_of(run, a.student)
    problems = [] if ok else [ev]
    after = rows.get("after", ("?", ""))
    if "ran past its limit" in after[1] or "took longer than" in after[1]:
        problems.append(f"the loop ran on to the notebook's or the harvest's limit, not its --timeout of 10 s: {after}")
    elif not run.timed_out and run.wall > 60 + 30:  # the notebook's limit, and half a minute to start and judge
        problems.append(f"grading took {run.wall:.0f} s: more than the notebook's limit of 60 s")
    if rows.get("double", ("?",))[0] != "passed":
        problems.append(f"an earlier, right exercise lost its verdict: {rows.get('double')}")
    if rows.get("after", ("?",))[0] == "passed":
        problems.append("the endless loop was graded passed")
    if problems:
        return False, "; ".join(problems)[:600]
    return True, f"finished in {run.wall:.0f} s; after: {short(str(rows.get('after')), 160)}"
ISO_IDS = {x[0] for x in ISO}
for _aid, _cls, _what, _setup, _judge in ISO:
    attack(id=_aid, cls=_cls, what=_what, group="iso", student="x", slot="double", setup=_setup, judge=_judge)


# ------------------------------------------------------------------------------------------ course

PROMOTE = "    xc = x.to(torch.promote_types(x.dtype, torch.float32))\n"
COURSE = {
    # student: (softmax technique id, what, cells), (logsumexp technique id, what, cells)
    "helper": (
        ("c6_reuse_helper_cell", "safe_softmax calls a helper in another cell that calls torch.softmax",
         ["import torch\ndef _helper(t, d):\n    return torch.softmax(t, d)\n",
          code("def safe_softmax(x, dim=-1):\n" + PROMOTE + "    return _helper(xc, dim).to(x.dtype)\n", "exercise")]),
        ("c6_reuse_later_redefinition", "logsumexp's exercise cell is blank; a later cell redefines it with torch.logsumexp",
         [code("def logsumexp(x, dim=-1):\n    raise NotImplementedError('Exercise 2.2')\n", "exercise"),
          "def logsumexp(x, dim=-1):\n" + PROMOTE + "    return torch.logsumexp(xc, dim).to(x.dtype)\n"])),
    "magics": (
        ("c6_reuse_shell_escape", "safe_softmax (torch.softmax) in a cell with an IPython `!` line that ast cannot parse",
         [code("!true\ndef safe_softmax(x, dim=-1):\n" + PROMOTE + "    return torch.softmax(xc, dim).to(x.dtype)\n",
               "exercise")]),
        ("c6_reuse_line_magic", "logsumexp (torch.logsumexp) in a cell that starts with a %time line magic",
         [code("%time _ = 1\ndef logsumexp(x, dim=-1):\n" + PROMOTE + "    return torch.logsumexp(xc, dim).to(x.dtype)\n",
               "exercise")])),
    "dynamic": (
        ("c6_reuse_getattr", "safe_softmax reaches torch.softmax through getattr with a computed name",
         [code("def safe_softmax(x, dim=-1):\n" + PROMOTE + "    return getattr(torch, 'soft' + 'max')(xc, dim).to(x.dtype)\n",
               "exercise")]),
        ("c6_reuse_exec_string", "logsumexp is defined by exec() of a string that spells torch.log+sumexp",
         [code("exec('def logsumexp(x, dim=-1):\\n    xc = x.to(torch.promote_types(x.dtype, torch.float32))\\n'\n"
               "     '    return torch.log' + 'sumexp(xc, dim).to(x.dtype)\\n')\n", "exercise")])),
    "aten": (
        ("c6_reuse_aten_softmax", "safe_softmax calls torch.ops.aten._softmax",
         [code("def safe_softmax(x, dim=-1):\n" + PROMOTE + "    return torch.ops.aten._softmax(xc, dim, False).to(x.dtype)\n",
               "exercise")]),
        ("c6_reuse_logcumsumexp", "logsumexp is the last element of torch.logcumsumexp",
         [code("def logsumexp(x, dim=-1):\n" + PROMOTE + "    return torch.logcumsumexp(xc, dim).select(dim, -1).to(x.dtype)\n",
               "exercise")])),
    "aliases": (
        ("c6_reuse_functional_alias", "safe_softmax calls F.softmax under another module alias",
         ["import torch.nn.functional as G\n",
          code("def safe_softmax(x, dim=-1):\n" + PROMOTE + "    return G.softmax(xc, dim).to(x.dtype)\n", "exercise")]),
        ("c6_reuse_tensor_method", "logsumexp calls the tensor method xc.logsumexp",
         [code("def logsumexp(x, dim=-1):\n" + PROMOTE + "    return xc.logsumexp(dim).to(x.dtype)\n", "exercise")])),
    "references": (
        ("c6_reuse_labkit_reference", "safe_softmax calls labkit's own implementation, imported by __import__",
         ["_ref = __import__('labkit.soft' + 'max', fromlist=['_']).safe_softmax\n",
          code("def safe_softmax(x, dim=-1):\n    return _ref(x, dim)\n", "exercise")]),
        ("c6_reuse_import_alias", "logsumexp calls torch.logsumexp imported under another name",
         ["from torch import logsumexp as _lse\n",
          code("def logsumexp(x, dim=-1):\n" + PROMOTE + "    return _lse(xc, dim).to(x.dtype)\n", "exercise")])),
    "checker": (
        ("c6_reuse_checker_reference", "safe_softmax returns the checker's own reference",
         ["import labkit.check\nfrom labkit.check.core import CHECKERS as _C\n_ref = _C['safe_softmax']().reference\n",
          code("def safe_softmax(x, dim=-1):\n    return _ref(x, dim)\n", "exercise")]),
        ("c6_harvest_patch_real_checker", "logsumexp is blank; a cell patches labkit.check.core.evaluate to record the "
         "checker's reference",
         [code("def logsumexp(x, dim=-1):\n    raise NotImplementedError('Exercise 2.2')\n", "exercise"),
          "import labkit.check, labkit.check.core as _core\n_orig = _core.evaluate\n"
          "def _evaluate(fn, args, kwargs):\n    if getattr(fn, '__name__', '') == 'logsumexp':\n"
          "        return _core.Outcome(value=_core.CHECKERS['logsumexp']().reference(*args, **kwargs))\n"
          "    return _orig(fn, args, kwargs)\n"
          "for _m in list(sys.modules.values()):\n    try:\n        if getattr(_m, 'evaluate', None) is _orig:\n"
          "            setattr(_m, 'evaluate', _evaluate)\n    except Exception:\n        pass\n"
          "_core.evaluate = _evaluate\n"])),
}
COURSE_NB = "02_safe_softmax.ipynb"
COURSE_BASELINE = {
    "safe_softmax": code("def safe_softmax(x, dim=-1):\n" + PROMOTE + "    e = torch.exp(xc - xc.amax(dim=dim, keepdim=True))\n"
                         "    return (e / e.sum(dim=dim, keepdim=True)).to(x.dtype)\n", "exercise"),
    "logsumexp": code("def logsumexp(x, dim=-1):\n" + PROMOTE + "    return torch.logsumexp(xc, dim).to(x.dtype)\n",
                      "exercise"),
}

for _student, _pair in COURSE.items():
    for _slot, (_aid, _what, _) in zip(("safe_softmax", "logsumexp"), _pair):
        attack(id=_aid, cls=6, what=_what, group="course", student=_student, slot=_slot, notebook=COURSE_NB,
               judge=judge_leak)


def build_course(ctx: Ctx, root: Path) -> None:
    head = [code("import sys, torch\nimport labkit")]
    cls = root / "class"
    write_nb(cls / "baseline" / COURSE_NB, _notebook(head + list(COURSE_BASELINE.values())))
    for student, pair in COURSE.items():
        cells = list(head)
        for _, _, cs in pair:
            cells += [c if not isinstance(c, str) else code(c) for c in cs]
        write_nb(cls / student / COURSE_NB, _notebook(cells))


# ------------------------------------------------------------------------------------------- merge

MERGE_HEADER = "notebook,exercise,status,detail\n"
MERGE = [
    ("c8_conflicting_parts", "two parts give the same notebook different verdicts",
     [MERGE_HEADER + "alice/07_x.ipynb,double,passed,\nalice/07_x.ipynb,,score,1/1\n",
      MERGE_HEADER + "alice/07_x.ipynb,double,failed,x\nalice/07_x.ipynb,,score,0/1\n"]),
    ("c8_duplicate_notebook", "the same notebook in two parts (identical rows)",
     [MERGE_HEADER + "alice/07_x.ipynb,double,passed,\nalice/07_x.ipynb,,score,1/1\n"] * 2),
    ("c8_conflict_within_part", "one part with two verdicts for the same exercise",
     [MERGE_HEADER + "alice/07_x.ipynb,double,failed,x\nalice/07_x.ipynb,double,passed,\nalice/07_x.ipynb,,score,1/1\n"]),
    ("c8_too_few_columns", "a row with two columns",
     [MERGE_HEADER + "alice/07_x.ipynb,double\n"]),
    ("c8_too_many_columns", "a row with five columns",
     [MERGE_HEADER + "alice/07_x.ipynb,double,passed,,extra\n"]),
    ("c8_wrong_header", "a part whose header is not notebook,exercise,status,detail",
     ["name,ex,state,info\nalice/07_x.ipynb,double,passed,\n"]),
    ("c8_empty_part", "an empty part (no header)", [""]),
    ("c8_binary_part", "a part with NUL bytes and invalid UTF-8", [b"notebook,exercise,status,detail\n\x00\xff\xfe,\x00,\x00,\n"]),
    ("c8_unknown_status", "a row whose status is not a grader status (forged 'A+')",
     [MERGE_HEADER + "alice/07_x.ipynb,double,A+,\nalice/07_x.ipynb,,score,1/1\n"]),
    ("c8_score_mismatch", "a notebook row claiming 1/1 over a failed exercise",
     [MERGE_HEADER + "alice/07_x.ipynb,double,failed,x\nalice/07_x.ipynb,,score,1/1\n"]),
    ("c8_formula_cells", "rows whose cells are formulas (=HYPERLINK, +cmd): rejected or written quoted as text",
     [MERGE_HEADER + '"=HYPERLINK(""http://x"",""y"")",double,passed,\n"=HYPERLINK(""http://x"",""y"")",,score,1/1\n'
      "+cmd/07_x.ipynb,double,failed,@SUM(1)\n+cmd/07_x.ipynb,,score,0/1\n"]),
    ("c8_part_symlink_shadow", "a part that is a symlink to /etc/shadow (does the error echo it?)", ["@shadow"]),
]


# grade-merge on every forged part in one process (one start-up, not one per case): each call is
# `labkit.__main__.main(["grade-merge", ...])` exactly as `python -m labkit` makes it, with fds 1 and 2 sent
# to files; an exception escaping it is printed as the interpreter would (a traceback) with exit status 1.
MERGE_RUNNER = r"""
import json, os, sys, traceback
jobs = json.load(open(sys.argv[1]))
from labkit.__main__ import main
for job in jobs:
    os.chdir(job["cwd"])
    saved = os.dup(1), os.dup(2)
    with open(job["stdout"], "wb") as fo, open(job["stderr"], "wb") as fe:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fo.fileno(), 1)
        os.dup2(fe.fileno(), 2)
        try:
            rc = main(job["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            rc = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])
    with open(job["rc"], "w") as f:
        f.write(str(rc if rc is not None else 0))
"""


def run_merges(ctx: Ctx, env: dict, ids: list[str]) -> dict:
    jobs = []
    for aid in ids:
        d = ctx.root / "merge" / aid
        d.mkdir(parents=True)
        parts = []
        for i, content in enumerate(dict((m[0], m[2]) for m in MERGE)[aid]):
            p = d / f"part{i}.csv"
            if content == "@shadow":
                os.symlink("/etc/shadow", p)
            elif isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
            parts.append(str(p))
        if len(parts) == 1:  # a lone bad part beside a good one
            good = d / "good.csv"
            good.write_text(MERGE_HEADER + "zed/07_x.ipynb,double,passed,\nzed/07_x.ipynb,,score,1/1\n")
            parts.append(str(good))
        jobs.append({"id": aid, "cwd": str(d), "argv": ["grade-merge", *parts, "--out", str(d / "merged.csv")],
                     "stdout": str(d / "stdout.txt"), "stderr": str(d / "stderr.txt"), "rc": str(d / "rc.txt")})
    spec = ctx.root / "merge" / "jobs.json"
    spec.write_text(json.dumps(jobs))
    timed_out = False
    try:
        subprocess.run([PY, "-c", MERGE_RUNNER, str(spec)], env=env, timeout=120, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        timed_out = True
    out = {}
    for job in jobs:
        d = Path(job["cwd"])
        rc_file = Path(job["rc"])
        out[job["id"]] = {"rc": int(rc_file.read_text()) if rc_file.exists() else None,
                          "timed_out": timed_out and not rc_file.exists(),
                          "stdout": _read_capped(Path(job["stdout"])), "stderr": _read_capped(Path(job["stderr"])),
                          "out": (d / "merged.csv").read_text(errors="replace") if (d / "merged.csv").is_file() else ""}
    return out


def judge_merge(ctx, camp, a):
    r = camp.merges[a.id]
    problems = []
    if "Traceback (most recent call last)" in r["stderr"]:
        problems.append("traceback: " + short(r["stderr"][r["stderr"].rfind("Traceback"):][-240:], 240))
    hits = [label for label, s in ctx.all_secrets().items() if s and (s in r["stdout"] or s in r["stderr"] or s in r["out"])]
    if hits:
        problems.append("secret echoed: " + ", ".join(hits))
    if a.id == "c8_formula_cells":
        if r["rc"] == 0:
            for row in csv.reader(io.StringIO(r["out"])):
                for c in row:
                    problems += cell_problems(c)
    elif r["rc"] == 0:
        problems.append(f"accepted (exit 0); wrote: {short(r['out'], 160)}")
    elif r["rc"] is None:
        problems.append("grade-merge hung" if r.get("timed_out") else "grade-merge gave no exit status")
    elif not r["stderr"].strip():
        problems.append(f"exit {r['rc']} without a message")
    if problems:
        return False, "; ".join(problems)[:600]
    return True, f"exit {r['rc']}: {short(r['stderr'].strip().splitlines()[-1] if r['stderr'].strip() else r['out'], 200)}"


for _aid, _what, _ in MERGE:
    attack(id=_aid, cls=8, what=_what, group="merge", judge=judge_merge)


# ------------------------------------------------------------------------------------ the runner

def _ns_depth(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) - 1
    except OSError:
        pass
    return 1


def _proc_table() -> dict[int, tuple[int, int]]:
    """{pid: (ppid, rss bytes)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            rest = s[s.rfind(")") + 2:].split()
            out[int(d)] = (int(rest[1]), int(rest[21]) * 4096)
        except (OSError, IndexError, ValueError):
            pass
    return out


def cmdlines() -> list[tuple[int, str]]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    out.append((int(d), f.read().replace(b"\0", b" ").decode("utf-8", "replace")))
            except OSError:
                pass
    return out


class Monitor:
    """One thread polling /proc for every running grader: peak RSS of the grader and its non-sandboxed children."""

    def __init__(self, interval=0.05):
        self.runs: list[GradeRun] = []
        self.lock = threading.Lock()
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def add(self, run):
        with self.lock:
            self.runs.append(run)

    def remove(self, run):
        with self.lock:
            if run in self.runs:
                self.runs.remove(run)

    def loop(self):
        while not self.stop.wait(self.interval):
            with self.lock:
                runs = list(self.runs)
            if not runs:
                continue
            table = _proc_table()
            children: dict[int, list[int]] = {}
            for pid, (ppid, _) in table.items():
                children.setdefault(ppid, []).append(pid)
            for run in runs:
                if run.pid is None:
                    continue
                total, stack = 0, [run.pid]
                while stack:
                    p = stack.pop()
                    if p not in table:
                        continue
                    if p != run.pid and _ns_depth(p) > 1:
                        continue  # inside a sandbox's PID namespace: not the grader's own memory
                    total += table[p][1]
                    stack += children.get(p, [])
                run.peak_rss = max(run.peak_rss, total)
                if total > run.rss_kill and not run.killed_for_memory:
                    run.killed_for_memory = True
                    run.kill()


@dataclass
class GradeRun:
    name: str
    argv: list
    cwd: Path
    env: dict
    timeout: float
    out_dir: Path
    tags: list = field(default_factory=list)
    pid: int | None = None
    rc: int | None = None
    wall: float = 0.0
    timed_out: bool = False
    killed_for_memory: bool = False
    peak_rss: int = 0
    stdout: str = ""
    stderr: str = ""
    csv_text: str = ""
    rows: list = field(default_factory=list)
    leftovers: list = field(default_factory=list)
    cpu: float = 0.0
    rss_kill: int = RSS_KILL
    csv_path: Path | None = None
    proc: subprocess.Popen | None = None

    def kill(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def summary(self) -> str:
        return (f"rc {self.rc}, {self.wall:.0f} s{' TIMED OUT' if self.timed_out else ''}"
                f"{' KILLED FOR MEMORY' if self.killed_for_memory else ''}, {len(self.rows)} CSV rows, "
                f"stderr tail: {short(self.stderr[-200:], 200)}")

    def execute(self, monitor: Monitor):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        so, se = self.out_dir / "stdout.txt", self.out_dir / "stderr.txt"
        t0 = time.monotonic()
        with open(so, "wb") as fo, open(se, "wb") as fe:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=fo, stderr=fe,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            self.pid = self.proc.pid
            monitor.add(self)
            end = time.monotonic() + self.timeout
            try:
                while True:  # wait4: the CPU time of the grader and everything it waited for
                    pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
                    if pid:
                        self.rc = os.waitstatus_to_exitcode(status)
                        self.proc.returncode = self.rc
                        self.cpu = usage.ru_utime + usage.ru_stime
                        break
                    if time.monotonic() > end and not self.timed_out:
                        self.timed_out = True
                        self.kill()
                    time.sleep(0.05)
            finally:
                self.wall = time.monotonic() - t0
                monitor.remove(self)
        time.sleep(1.0)  # a leftover has had time to show up; the sandbox's own teardown is over
        self.leftovers = [(pid, cmd) for pid, cmd in cmdlines() if any(t in cmd for t in self.tags)
                          and pid != os.getpid()]
        self.kill()  # the grader's process group (anything it started outside a sandbox)
        for pid, _ in self.leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.stdout = _read_capped(so)
        self.stderr = _read_capped(se)
        if self.csv_path and self.csv_path.exists() and not self.csv_path.is_symlink():
            self.csv_text = _read_capped(self.csv_path)
            try:
                self.rows = list(csv.reader(io.StringIO(self.csv_text, newline="")))[1:]
            except csv.Error:
                self.rows = []


def _read_capped(p: Path, cap=16 * MiB) -> str:
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            if size <= cap:
                data = f.read()
            else:
                data = f.read(cap // 2) + b"\n[...]\n"
                f.seek(size - cap // 2)
                data += f.read()
        return data.decode("utf-8", "replace")
    except OSError:
        return ""


class Servers:
    """A TCP server on the host's loopback and an abstract unix socket, each handing its token to whoever connects."""

    def __init__(self, ctx: Ctx):
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        ctx.port = self.tcp.getsockname()[1]
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + ctx.unix)
        self.unix.listen(16)
        self.token = ctx.net_token.encode()
        self.connections = []
        # a host process that records any SIGUSR1/SIGTERM it receives (a sandbox must not reach it)
        self.sentinel = subprocess.Popen(
            [PY, "-I", "-S", "-c", "import signal, sys, time\n"
             "def got(n, f):\n    open(sys.argv[1], 'a').write('signal %d\\n' % n)\n"
             "signal.signal(signal.SIGUSR1, got)\nsignal.signal(signal.SIGTERM, got)\n"
             "end = time.time() + 900\nwhile time.time() < end:\n    time.sleep(0.2)\n",
             str(ctx.tmp / "sentinel.txt"), f"labkit-attack-{ctx.run}-sentinel"], start_new_session=True)
        ctx.sentinel = self.sentinel.pid
        for s in (self.tcp, self.unix):
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        while True:
            try:
                c, addr = s.accept()
            except OSError:
                return
            self.connections.append(addr)
            try:
                c.sendall(self.token)
                c.close()
            except OSError:
                pass

    def close(self):
        self.sentinel.kill()
        self.sentinel.wait()
        for s in (self.tcp, self.unix):
            try:
                s.close()
            except OSError:
                pass


def course_hashes() -> dict[str, str]:
    """Hashes of the course's files (labkit/, notebooks/, tests/ sources): must not change during grading."""
    out = {}
    for pattern in ("labkit/**/*.py", "notebooks/*.ipynb", "notebooks/*.cfg", "tests/*.py", "pyproject.toml",
                    "Makefile", "README.md"):
        for p in REPO.glob(pattern):
            if p.is_file():
                out[str(p.relative_to(REPO))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def venv_state(site: Path) -> dict:
    """site-packages' listing and the hashes of the files every python start reads."""
    files = {}
    for p in list(site.glob("*.pth")) + list(site.glob("__editable__*")) + [site.parents[2] / "pyvenv.cfg",
                                                                            site.parents[2] / "bin" / "activate"]:
        if p.is_file():
            files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return {"listing": sorted(os.listdir(site)), "files": files}


@dataclass
class Campaign:
    ctx: Ctx
    runs: dict = field(default_factory=dict)
    merges: dict = field(default_factory=dict)
    c1_before: dict = field(default_factory=dict)
    course_before: dict = field(default_factory=dict)
    course_after: dict = field(default_factory=dict)
    venv_before: dict = field(default_factory=dict)
    venv_after: dict = field(default_factory=dict)
    host_leftover_files: list = field(default_factory=list)
    scratch_left: list = field(default_factory=list)
    classmate_hashes_before: dict = field(default_factory=dict)
    classmate_hashes_after: dict = field(default_factory=dict)
    wall: float = 0.0
    servers: Servers | None = None

    def host_files_with(self, needle: str) -> list[str]:
        return [p for p in self.host_leftover_files if needle in p]


def _scan_host_files(roots, needle: str, depth=6) -> list[str]:
    found = []
    for root in roots:
        root = str(root)
        base = root.rstrip("/").count("/")
        for top, dirs, files in os.walk(root):
            if top.count("/") - base >= depth:
                dirs[:] = []
            for n in dirs + files:
                if needle in n:
                    found.append(os.path.join(top, n))
            dirs[:] = [d for d in dirs if needle not in d]
    return found


def grader_env(ctx: Ctx) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(TESTS) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["LABKIT_ATTACK_ENV_SECRET"] = ctx.env_secret
    env["TMPDIR"] = str(ctx.tmp / "gradertmp")
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    return env


def run_campaign(ctx: Ctx, groups=("main", "c1", "iso", "course", "merge"), only=None) -> Campaign:
    """Build every group's folders, grade them (main and the rest in parallel), collect what the judges need."""
    camp = Campaign(ctx)
    t0 = time.monotonic()
    (ctx.tmp / "gradertmp").mkdir(parents=True, exist_ok=True)
    camp.servers = Servers(ctx)
    camp.course_before = course_hashes()
    camp.venv_before = venv_state(ctx.site)
    ctx.root.mkdir()
    ctx.made.append(ctx.root)
    _make_course_copies(ctx)
    env = grader_env(ctx)

    def env_for(name):  # each run its own TMPDIR: what a run that finished normally left there is its own
        d = ctx.tmp / "gradertmp" / name
        d.mkdir(parents=True, exist_ok=True)
        return dict(env, TMPDIR=str(d))
    monitor = Monitor()
    selected = [a for a in ATTACKS if a.group in groups and (only is None or a.id in only)]
    tags_of = lambda grp: [ctx.tag(grp)]  # noqa: E731
    jobs = []

    def grade_job(name, root, extra_args, timeout, tags):
        csv_path = root / "scores.csv"
        run = GradeRun(name=name, argv=[PY, "-m", "labkit", "grade", "class", "--solutions", "solutions",
                                        "--csv", str(csv_path), *CHECKERS_ARGS, *extra_args],
                       cwd=root, env=env_for(name), timeout=timeout, out_dir=ctx.tmp / "out" / name, tags=tags,
                       csv_path=csv_path)
        camp.runs[name] = run
        return run

    if "main" in groups:
        root = ctx.root / "main"
        build_main(ctx, root)
        jobs.append(grade_job("main", root, MAIN_ARGS, TIMEOUTS["main"], tags_of("main")))
        camp.classmate_hashes_before["main"] = _hash_tree(root / "class" / "bob")
    side = []
    if "c1" in groups:
        root = ctx.root / "c1"
        camp.c1_before = build_c1(ctx, root)
        camp.classmate_hashes_before["c1"] = _hash_tree(root / "class" / "bob")
        side.append(grade_job("c1", root, ["--workers", "2", "--timeout", "20", "--notebook-timeout", "90",
                                           "--memory", "2"], TIMEOUTS["c1"], tags_of("c1")))
    if "course" in groups:
        root = ctx.root / "course"
        build_course(ctx, root)
        run = GradeRun(name="course", argv=[PY, "-m", "labkit", "grade", "class", "--csv", str(root / "scores.csv"),
                                            "--workers", "2", "--timeout", "30", "--notebook-timeout", "120",
                                            "--memory", "3"],
                       cwd=root, env=env_for("course"), timeout=TIMEOUTS["course"], out_dir=ctx.tmp / "out" / "course",
                       tags=tags_of("course"), csv_path=root / "scores.csv")
        camp.runs["course"] = run
        side.append(run)
    if "iso" in groups:
        for a in selected:
            if a.group != "iso":
                continue
            root = ctx.root / "iso" / a.id
            a.setup(ctx, root, a.id)
            run = grade_job(a.id, root, ISO_ARGS_FOR.get(a.id, ISO_ARGS), ISO_TIMEOUT_FOR.get(a.id, TIMEOUTS["iso"]),
                            tags_of(a.id))
            run.rss_kill = ISO_RSS_KILL  # past it the run is over its bound anyway: no need to let it grow
            side.append(run)
    merge_jobs = [a for a in selected if a.group == "merge"] if "merge" in groups else []

    def merge_all():
        camp.merges.update(run_merges(ctx, env, [a.id for a in merge_jobs]))

    # main on its own thread; the runs that may hang (waiting, not computing) each on a thread of their own;
    # the other runs on two threads beside them
    slow = {"c2_runjson_fifo", "c2_submission_fifo", "c1_fifo_jobjson_retry", "c9_uninterruptible_hang",
            "c2_huge_check_cell", "c2_outcome_huge_list"}
    own = [r for r in side if r.name in slow]
    queue = [r for r in side if r.name not in slow] + \
        ([merge_all] if merge_jobs else [])
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop(0)
            if isinstance(item, GradeRun):
                item.execute(monitor)
            else:
                item()
    threads = [threading.Thread(target=j.execute, args=(monitor,)) for j in jobs + own] + \
        [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monitor.stop.set()
    camp.servers.close()
    time.sleep(0.5)
    # everything the runs may have left: tokens in host folders, scratch folders, classmates' files
    camp.host_leftover_files = _scan_host_files([ctx.tmp / "gradertmp", "/tmp", "/var/tmp"], ctx.run)
    camp.scratch_left = sorted(f"{name}/{n}" for name, r in camp.runs.items()
                               if not (r.timed_out or r.killed_for_memory) and (ctx.tmp / "gradertmp" / name).is_dir()
                               for n in os.listdir(ctx.tmp / "gradertmp" / name))
    for grp in camp.classmate_hashes_before:
        camp.classmate_hashes_after[grp] = _hash_tree(ctx.root / grp / "class" / "bob")
    camp.course_after = course_hashes()
    camp.venv_after = venv_state(ctx.site)
    camp.wall = time.monotonic() - t0
    return camp


def _hash_tree(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*") if p.is_file()}


def _make_course_copies(ctx: Ctx) -> None:
    """A build/lib copy and a wheel in dist/ (as a `pip wheel .` in the clone leaves them), if absent."""
    nbs = sorted((REPO / "notebooks").glob("00_*.ipynb"))[:1]
    if not nbs:
        return
    build = REPO / "build"
    if not build.exists():
        dest = build / "lib" / "labkit" / "course" / "notebooks"
        dest.mkdir(parents=True)
        shutil.copy2(nbs[0], dest / nbs[0].name)
        ctx.made.append(build)
    dist = REPO / "dist"
    if not dist.exists():
        dist.mkdir()
        with zipfile.ZipFile(dist / "labkit-0.1.0-py3-none-any.whl", "w") as z:
            z.write(nbs[0], "labkit/course/notebooks/" + nbs[0].name)
        ctx.made.append(dist)


def cleanup(ctx: Ctx, camp: Campaign | None) -> None:
    """Remove what the campaign made: its folders in the clone, .pth files an attack got written, stray processes."""
    for pid, cmd in cmdlines():
        if f"labkit-attack-{ctx.run}-" in cmd and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for p in ctx.site.glob(f"zz_attack_{ctx.run}*"):
        try:
            p.unlink()
        except OSError:
            pass
    for p in reversed(ctx.made):
        shutil.rmtree(p, ignore_errors=True)
    # what a killed grader could not remove (a 700 MB forged file, 2 GiB fills) goes now, not at pytest's retention
    shutil.rmtree(ctx.tmp / "gradertmp", ignore_errors=True)
    for p in _scan_host_files(["/tmp", "/var/tmp"], ctx.run):
        try:
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        except OSError:
            pass
