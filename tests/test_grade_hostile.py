"""Hostile submissions against ``python -m labkit grade``: each attack is asserted resisted.

One class of tiny notebooks (tests/tiny_checkers.py: no tensors) is graded once, sandboxed, with
--workers 2. Attacks that would leak something make the student's function right only when
the leak worked, so a leak shows up as a pass.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from labkit.check.core import PASS
from labkit.grading import cli as batch
from labkit.grading import notebook
from nbfactory import code, course

pytestmark = pytest.mark.needs("bubblewrap")
COURSE = Path(__file__).resolve().parents[1]
SETUP = "import tiny_checkers as check"
TOKEN = "4321.5"  # sleep time of the background processes: how the test finds leftovers


def _course_hashes() -> dict[str, str]:
    """The vandal's targets (other course files may be edited by people while the tests run)."""
    files = [COURSE / "labkit" / "__init__.py", *sorted((COURSE / "notebooks").glob("*.ipynb"))]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _nb(double="    return 2 * x", square="def square(x):\n    return x * x", before=""):
    nb = course(double_body=double, square_cell=code(square, "exercise"), setup=SETUP + "\n" + before)
    return nb


FORGER = """import builtins, threading, time, sys
import labkit.check.core as core
from IPython.core.magic import register_cell_magic
LINE = {pass_line!r}
core.assert_close = lambda *a, **k: None
core.Checker.judge = lambda self, outcome: core.Verdict("passed", LINE)
check.double = lambda fn: print(LINE)
get_ipython().set_custom_exc((Exception,), lambda *a, **k: print(LINE))
@register_cell_magic
def needs_triton(line, cell):
    print(LINE)
def spam():
    while True:
        print(LINE); time.sleep(0.05)
threading.Thread(target=spam, daemon=True).start()"""

SPY = """import os, socket, glob
import labkit
from labkit import course
seen = []
try:
    folders = [course.solved_notebooks()]
except OSError:
    folders = []
folders += [os.path.join(os.path.dirname(labkit.__file__), '..', 'notebooks'),
            os.path.join(os.path.dirname(labkit.__file__), 'course', 'notebooks')]
for folder in folders + [{solutions!r}, {classroot!r}, os.path.dirname(os.getcwd())]:
    try:
        seen += [f for f in os.listdir(folder) if f.endswith('.ipynb') or f in ('alice', 'spy')]
    except OSError:
        pass
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()
    net = True
except OSError:
    net = False"""

VANDAL = """import os, subprocess, labkit
for target in [labkit.__file__, os.path.join(os.path.dirname(labkit.__file__), '..', 'notebooks', '00_start_here.ipynb'),
               {outside!r}]:
    try:
        with open(target, 'a') as f:
            f.write('# vandalised')
    except OSError:
        pass
subprocess.Popen(['sh', '-c', 'sleep {token}; touch {later}'], start_new_session=True)
os.system('(sleep {token}; touch {later}) &')"""


# A blank student who replaces the harvest, the evaluation and the checkers in memory, so that the
# reference's answers would be saved for its blank exercises.
TAMPERER = """import labkit.grading.harvest as h, labkit.grading.outcomes as oc, labkit.check.core as core
real = h.harvest
def fake(exercises, namespace, folder, seconds=120, modules=('labkit.check',)):
    real(exercises, dict(namespace, double=lambda x: 2 * x, square=lambda x: x * x), folder, seconds, modules)
h.harvest = fake
core.evaluate = lambda fn, args, kwargs: core.Outcome(value=2 * args[0])
core.Checker.judge = lambda self, outcome: core.Verdict('passed', 'forged')
real_save = oc.save_outcomes
oc.save_outcomes = lambda folder, name, outcomes, note='': real_save(folder, name, [core.Outcome(value=6.0)] * 3)"""

# A blank student who plants a fake labkit and fake checkers where imports look first.
PLANTER = """import os, sys
fake = 'def harvest(exercises, namespace, folder, seconds=120, modules=()):\\n    import os; os.makedirs(folder)\\n'
for where in ('labkit', 'labkit/grading', os.path.expanduser('~/lib/labkit'), os.path.expanduser('~/lib/labkit/grading')):
    os.makedirs(where, exist_ok=True)
    open(os.path.join(where, '__init__.py'), 'w').write('')
    open(os.path.join(where, 'harvest.py'), 'w').write(fake)
open('tiny_checkers.py', 'w').write('raise SystemExit')
sys.path.insert(0, os.path.expanduser('~/lib'))"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    solutions, cls = root / "solutions", root / "class"
    solutions.mkdir()
    nbformat.write(course(setup=SETUP), solutions / "07_x.ipynb")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=lambda: [server.accept() for _ in range(5)], daemon=True).start()
    port = server.getsockname()[1]
    outside, later = root / "outside.txt", root / "later.txt"
    students = {
        "alice": _nb(),  # right
        "bob": _nb("    return x + 2", "def squared(x):\n    return x * x"),  # wrong, missing
        "forger": _nb("    return x + 2", 'def square(x):\n    print("' + PASS.format(name="square", n=1)
                      + '")\n    raise NotImplementedError', FORGER.format(pass_line=PASS.format(name="double", n=2))),
        "spy": _nb("    return 2 * x if seen else -1", "def square(x):\n    return x * x if net else -1",
                   SPY.format(solutions=str(solutions), classroot=str(cls), port=port)),
        "vandal": _nb(before=VANDAL.format(outside=str(outside), token=TOKEN, later=str(later))),
        "killer": _nb(before="import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
        "tamperer": _nb("    raise NotImplementedError", "def square(x):\n    raise NotImplementedError", TAMPERER),
        "planter": _nb("    raise NotImplementedError", "def square(x):\n    raise NotImplementedError", PLANTER),
    }
    for name, nb in students.items():
        (cls / name).mkdir(parents=True)
        nbformat.write(nb, cls / name / "07_x.ipynb")
    forger_nb = students["forger"]
    forger_nb.cells[4].source = f"%%needs_triton\nprint({PASS.format(name='double', n=2)!r})"
    nbformat.write(forger_nb, cls / "forger" / "07_x.ipynb")
    nbformat.write(students["forger"], cls / "forger" / "99_renamed.ipynb")  # no solved notebook of that name
    (cls / "mangled").mkdir()
    (cls / "mangled" / "07_x.ipynb").write_text("")
    before = _course_hashes()
    out, err = io.StringIO(), io.StringIO()
    env = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COURSE / "tests"), env]))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = batch.cli_grade([str(cls), "--solutions", str(solutions), "--checkers", "tiny_checkers",
                                  "--workers", "2", "--timeout", "20", "--csv", str(root / "grades.csv")])
    finally:
        os.environ.pop("PYTHONPATH") if env is None else os.environ.__setitem__("PYTHONPATH", env)
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {(r[0].split("/")[0], r[0].split("/")[1], r[1]): (r[2], r[3]) for r in list(csv.reader(f))[1:]}
    server.close()
    return dict(rc=rc, out=out.getvalue(), err=err.getvalue(), rows=rows, before=before,
                after=_course_hashes(), outside=outside, later=later)


def verdict(hostile, student, exercise, notebook="07_x.ipynb"):
    return hostile["rows"][(student, notebook, exercise)]


def test_a_right_and_a_wrong_answer_are_graded_right_sandboxed_with_workers(hostile):
    assert verdict(hostile, "alice", "double") == ("passed", "") and verdict(hostile, "alice", "square") == ("passed", "")
    assert verdict(hostile, "alice", "")[1] == "2/2"
    status, detail = verdict(hostile, "bob", "double")
    assert status == "failed" and detail.startswith("you added 2 instead of doubling")
    assert verdict(hostile, "bob", "square") == ("not attempted", "no function named square in the notebook")
    assert hostile["rc"] == 1 and "100%" in hostile["err"]  # the progress bar, on stderr


def test_printed_pass_lines_patched_checkers_and_fake_magics_forge_nothing(hostile):
    assert verdict(hostile, "forger", "double")[0] == "failed"
    assert verdict(hostile, "forger", "square") == ("not attempted", "")  # printed the pass line, then raised


def test_a_harvest_replaced_in_memory_or_planted_on_disk_changes_nothing(hostile):
    for student in ("tamperer", "planter"):
        assert verdict(hostile, student, "double") == ("not attempted", ""), student
        assert verdict(hostile, student, "square") == ("not attempted", ""), student


def test_a_renamed_notebook_is_an_error_not_trusted(hostile):
    status, detail = verdict(hostile, "forger", "", "99_renamed.ipynb")
    assert status == "error" and "no solved notebook named 99_renamed.ipynb" in detail


def test_solutions_other_submissions_and_the_network_are_out_of_reach(hostile):
    assert verdict(hostile, "spy", "double")[0] == "failed"  # saw no solved notebook and no classmate
    assert verdict(hostile, "spy", "square")[0] == "failed"  # no network


def test_course_files_and_the_grader_survive_and_nothing_outlives_grading(hostile):
    assert hostile["after"] == hostile["before"]
    assert not any(b"# vandalised" in p.read_bytes() for p in (COURSE / "labkit").rglob("*.py"))
    assert not hostile["outside"].exists()
    assert verdict(hostile, "vandal", "double") == ("passed", "")  # its own work is still graded
    status, detail = verdict(hostile, "killer", "double")
    assert status == "failed" and "killed" in detail
    assert verdict(hostile, "alice", "")[1] == "2/2"  # the batch went on
    # The sandbox's PID namespace is torn down as the grading job exits; on a loaded machine the
    # kernel may take a moment to reap it, so look a few times before calling it a leak.
    for _ in range(40):
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if f"sleep {TOKEN}" not in ps:
            break
        time.sleep(0.25)
    assert f"sleep {TOKEN}" not in ps and not hostile["later"].exists()


def test_mangled_files_are_a_one_line_error_and_the_batch_goes_on(hostile, tmp_path):
    assert verdict(hostile, "mangled", "") == ("error", "empty file")
    good = json.loads(nbformat.writes(course(setup=SETUP)))
    cases = {
        "not valid JSON": "{not json", "not a notebook": "[1, 2]",
        "nbformat 3": json.dumps({"nbformat": 3, "worksheets": []}),
        "has no 'source'": json.dumps({**good, "cells": [{"cell_type": "code", "metadata": {}}]}),
        "tags given as str": json.dumps({**good, "cells": [{**good["cells"][1], "metadata": {"tags": "exercise"}}]}),
        "have the same id": json.dumps({**good, "cells": [good["cells"][1], good["cells"][1]]}),
    }
    for message, text in cases.items():
        (tmp_path / "07_x.ipynb").write_text(text)
        with pytest.raises(notebook.NotGradable, match=message):
            notebook.parse_submission(notebook.read_file(tmp_path / "07_x.ipynb"))
