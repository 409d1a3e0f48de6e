"""labkit.book (make book): the course website is the student's view of the ten notebooks, built
from the stored outputs, with no solution in it; in headless Chromium every page typesets its
maths from the site itself, loads every figure and has no broken internal link."""
from __future__ import annotations

import functools
import html.parser
import http.server
import re
import threading
import time
from pathlib import Path

import nbformat
import pytest

from labkit import book
from labkit.grading.student import solution_regions
from solutions import solution_lines

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SHOTS = ROOT / "tests" / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    start = time.monotonic()
    html = book.build(tmp_path_factory.mktemp("book"))
    return html, time.monotonic() - start


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def _text(page: Path) -> str:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return "".join(parser.parts)


def test_the_site_has_every_notebook_and_builds_in_time(site):
    html, seconds = site
    assert sorted(p.stem for p in html.glob("[0-9][0-9]_*.html")) == NOTEBOOKS
    assert seconds < 120, f"make book took {seconds:.0f} s"


def test_no_solution_reaches_the_site(site):
    html, _ = site
    secret = solution_lines()
    assert len(secret) > 100
    for path in html.rglob("*"):
        if path.suffix in (".html", ".txt", ".ipynb", ".js"):
            raw = path.read_text(encoding="utf-8", errors="replace")
            assert "BEGIN SOLUTION" not in raw and "END SOLUTION" not in raw, path
            if path.suffix == ".ipynb":
                text = "\n".join(c.source for c in nbformat.reads(raw, as_version=4).cells)
            elif path.suffix == ".html":
                text = _text(path)
            else:
                text = raw
            leaked = secret & {line.strip() for line in text.split("\n")}
            assert not leaked, (path.relative_to(html), sorted(leaked)[:3])


def test_pages_show_blank_exercises_the_outputs_of_other_cells_and_how_to_run_them(site):
    html, _ = site
    shown = 0
    for stem in NOTEBOOKS:
        solved = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
        text = _text(html / f"{stem}.html")
        exercises = sum(len(solution_regions(c.source, stem)) for c in solved.cells
                        if c.cell_type == "code" and "exercise" in c.metadata.get("tags", []))
        assert text.count('raise NotImplementedError("Exercise') == exercises, stem
        assert "make lab" in text and f"exercises/{stem}.ipynb" in text, stem
        checks = [c for c in solved.cells if "check" in c.metadata.get("tags", [])]
        passed = [o.text.strip() for c in checks for o in c.outputs if o.output_type == "stream"]
        assert not any(line in text for line in passed if line), stem  # no check cell's ✔ line
        figures = sum("image/png" in o.get("data", {}) for c in solved.cells if c.cell_type == "code"
                      for o in c.outputs if "check" not in c.metadata.get("tags", []))
        assert (html / f"{stem}.html").read_text(encoding="utf-8").count("<img") >= figures, stem
        shown += figures
    assert shown >= 10  # the course's plots are there
    assert list((html / "_downloads").rglob("*.ipynb"))


@pytest.mark.needs("chromium")
def test_in_a_browser_every_page_typesets_its_maths_loads_its_figures_and_links(site):
    from playwright.sync_api import sync_playwright

    from conftest import CHROMIUM
    from test_browser import CHROMIUM_ARGS
    html, _ = site
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    SHOTS.mkdir(exist_ok=True)
    problems = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            offsite = []
            page.on("request", lambda r: offsite.append(r.url) if not r.url.startswith((base, "data:")) else None)
            for stem in ["index"] + NOTEBOOKS:
                page.goto(base + f"{stem}.html")
                if page.evaluate("!!document.querySelector('script[src*=mathjax]')"):  # pages with maths load it
                    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise",
                                           timeout=30000)
                    page.evaluate("MathJax.startup.promise")
                raw = page.evaluate("""() => { const t = [];
                    const walk = n => { if (n.nodeType === 3) t.push(n.data);
                      else if (!['PRE', 'CODE', 'SCRIPT', 'STYLE', 'MJX-CONTAINER'].includes(n.nodeName))
                        n.childNodes.forEach(walk); };
                    walk(document.querySelector('main') || document.body); return t.join(''); }""")
                left = re.findall(r"\$[^$\s][^$\n]{0,80}\$", raw)
                if left:
                    problems.append(f"{stem}: maths left as text: {left[:2]}")
                if stem != "index" and page.locator("mjx-container").count() == 0:
                    problems.append(f"{stem}: no typeset maths")
                broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                                       ".map(i => i.src)")
                problems += [f"{stem}: figure did not load: {src}" for src in broken]
                links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
                for link in {u.split("#")[0] for u in links if u.startswith(base)}:
                    if page.request.get(link).status != 200:
                        problems.append(f"{stem}: broken link {link}")
                page.screenshot(path=str(SHOTS / f"book-{stem}.png"))
            browser.close()
    finally:
        server.shutdown()
    assert not problems, problems
    assert not offsite, f"the site reached outside itself: {offsite[:3]}"
