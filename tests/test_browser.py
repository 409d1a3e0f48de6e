"""The student's path in a real browser: `make lab` (in a temporary copy of the course), headless
Chromium from the system (Debian's /usr/bin/chromium) driven by Playwright, and notebook 00:
open it (not marked modified, no news pop-up), run all cells ("not implemented yet"), type a wrong
answer (a short hint, no traceback), type a right one (the pass line). Screenshots go to
tests/screenshots/ (git-ignored). Without Chromium or Playwright the test skips and says why."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "tests" / "screenshots"
# No network here: without these Chromium floods the log with refused connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
NOTEBOOK = "exercises/00_start_here.ipynb"
WRONG = "return e / e.sum(dim)"  # no keepdim: broadcasts along the wrong axis
RIGHT = "return e / e.sum(dim=dim, keepdim=True)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read() or b"null")


@pytest.fixture
def sync_playwright():
    """Playwright driving the system Chromium, or a skip that says what is missing (checked before
    JupyterLab is started)."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"needs chromium: no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs "
                    "it): the student's path in a browser is NOT tested here")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e . installs it): the student's path in a "
                    "browser is NOT tested here")
    return sync_playwright


@pytest.fixture
def lab(sync_playwright, tmp_path):
    """JupyterLab started by the Makefile's own `lab` target (blank copies, then `jupyter lab` with
    its arguments) in a temporary copy of the course, so the developer's exercises/ is never touched."""
    if shutil.which("make") is None:
        pytest.skip("the browser test needs `make` (it starts JupyterLab through the Makefile's lab target)")
    course = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", course / "notebooks")
    port, token = _free_port(), secrets.token_hex(16)
    venv = Path(sys.prefix)  # the venv running the tests, as the Makefile's VENV
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # A clean JupyterLab: none of the developer's settings or saved layouts.
    env.update(JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    command = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"),
               "-o", f"{venv}/.labkit-installed",  # installed already: do not reinstall from the copy
               "lab", f"VENV={venv}",
               f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token={token}"]
    log = open(tmp_path / "lab.log", "w+")
    proc = subprocess.Popen(command, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`make lab` exited ({proc.returncode}) before JupyterLab answered:\n"
                            f"{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 60 s:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.25)
        yield dict(url=f"{base}/lab/tree/{NOTEBOOK}?token={token}", course=course,
                   log=tmp_path / "lab.log")
    finally:
        try:  # kernels run in sessions of their own: shut them down through the server first
            for kernel in _get(f"{base}/api/kernels?token={token}") or []:
                request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
                urllib.request.urlopen(request, timeout=10).close()
        except OSError:
            pass
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_students_path_in_jupyterlab(sync_playwright, lab):
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(lab["url"])

            # Opened, its kernel started: not marked modified (kernelspec and language_info agree).
            expect(page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle"))).to_be_visible(timeout=45_000)
            tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="00_start_here.ipynb")
            expect(tab).to_be_visible()
            expect(tab).not_to_have_class(re.compile(r"\bjp-mod-dirty\b"))
            page.screenshot(path=SHOTS / "1-opened.png")

            notebook = page.locator(".jp-NotebookPanel:visible .jp-Notebook")
            exercise = notebook.locator(".jp-CodeCell", has=page.locator(".cm-content", has_text="def normalize(e"))
            check = notebook.locator(".jp-CodeCell", has=page.locator(".cm-content",
                                                                      has_text="check.normalize(normalize)"))
            check_output = check.locator(".jp-Cell-outputArea")

            # Run > Run All Cells: the blank exercise is "not implemented yet".
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
            expect(check_output).to_contain_text("✘ normalize: not implemented yet", timeout=60_000)
            expect(page.get_by_text("official Jupyter news")).to_have_count(0)  # no news pop-up
            page.screenshot(path=SHOTS / "2-run-all.png")

            def answer(old: str, new: str) -> None:
                """Replace the exercise's line containing ``old`` by ``new`` (keeping its indent) and run
                the exercise and its check (Shift+Enter twice)."""
                exercise.locator(".cm-line", has_text=old).click()
                page.keyboard.press("End")
                page.keyboard.press("Shift+Home")  # CodeMirror: to the end of the indentation
                page.keyboard.type(new)
                expect(exercise.locator(".cm-content")).to_contain_text(new)
                expect(exercise.locator(".cm-content")).not_to_contain_text(old)
                page.keyboard.press("Shift+Enter")  # runs the exercise, selects the check cell
                page.keyboard.press("Shift+Enter")

            # A wrong answer: a short hint, no traceback, no checker internals.
            answer("raise NotImplementedError", WRONG)
            expect(check_output).to_contain_text("hint:")
            page.screenshot(path=SHOTS / "3-wrong-answer.png")
            shown = check_output.inner_text()
            for leak in ("Traceback", "labkit/check", "site-packages"):
                assert leak not in shown, f"the failed check shows {leak!r}; it should be short:\n{shown}"
            assert len([line for line in shown.splitlines() if line.strip()]) <= 15, shown

            # The right answer: the pass line.
            answer(WRONG, RIGHT)
            expect(check_output).to_contain_text(re.compile(r"✔ normalize: .*cases passed"))
            page.screenshot(path=SHOTS / "4-right-answer.png")
        finally:
            browser.close()
