"""The built book in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, with every request that leaves this machine blocked.

Every page in the table of contents must load with no console error, no failed or
external request (the book must work on an offline lab machine), no broken internal
link, equations typeset by MathJax (no raw ``$...$`` left), the figures of executed
cells present and loaded, and no nbgrader solution or hidden-test marker. Screenshots of the
landing page and one lecture are saved in the run folder (``screenshots/``).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from coursetools import book, execute, notebooks

LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

# The article text with code, rendered maths and scripts removed: what is left must not
# contain TeX that MathJax failed to typeset.
PROSE_JS = """() => {
  const article = document.querySelector('article') || document.body;
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, .highlight, mjx-container, script, .cell_output').forEach(e => e.remove());
  return copy.innerText;
}"""
# Wait until MathJax (loaded deferred, only on pages with maths) has typeset the page.
TYPESET_JS = """async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return;
  for (let i = 0; i < 600 && !(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise); i++)
    await new Promise(resolve => setTimeout(resolve, 100));
  await window.MathJax.startup.promise;
}"""
RAW_TEX = re.compile(r"\$\$|\$[^$\s][^$\n]*?\\[a-zA-Z]+[^$\n]*\$|\\(frac|sum|mathbf|theta|partial)\b")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(built_book):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=built_book))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium = os.environ.get("CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        pytest.fail("Chromium is not installed (.ci/run installs Debian's chromium package; or set CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _visit(browser, server, page_path: str, screenshot: Path | None = None) -> dict:
    """Open one page offline; return what went wrong and what it contains."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url} ({r.failure})"))

    def only_local(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            problems.append(f"external request: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.goto(urljoin(server, page_path), wait_until="load")
    page.evaluate(TYPESET_JS)
    found = {
        "problems": problems,
        "math": page.locator("mjx-container").count(),
        "prose": page.evaluate(PROSE_JS),
        "text": page.inner_text("body"),
        "links": page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"),
        "figures": page.eval_on_selector_all(
            "img[src*='_images/']", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"),
    }
    if screenshot:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=False)
    context.close()
    return found


def _has_math(path: Path) -> bool:
    if path.suffix == ".md":
        return "$" in path.read_text()
    return any("$" in c.source for c in notebooks.read(path).cells if c.cell_type == "markdown")


@pytest.mark.slow
@pytest.mark.parametrize("page", book.toc_files())
def test_page_in_a_browser(browser, server, built_book, page):
    source = book.source_path(page)
    shots = execute.run_dir() / "screenshots"
    screenshot = {"book/intro": shots / "landing.png",
                  "lectures/10_neural_networks": shots / "lecture.png"}.get(page)
    found = _visit(browser, server, page + ".html", screenshot)
    assert not found["problems"], f"{page}:\n  " + "\n  ".join(found["problems"][:10])
    for link in found["links"]:
        url = urlparse(link)
        if url.hostname == "127.0.0.1":
            target = built_book / unquote(url.path).lstrip("/")
            assert target.exists() or (target / "index.html").exists(), f"{page}: broken link {link}"
    if _has_math(source):
        assert found["math"] > 0, f"{page}: no equation was typeset by MathJax"
    raw = RAW_TEX.search(found["prose"])
    assert not raw, f"{page}: TeX left untypeset: {raw.group(0)!r}"
    if page.startswith("lectures/") and any("plt." in c.source for c in notebooks.read(source).cells):
        assert found["figures"], f"{page}: no figure from the executed cells"
        broken = [src for src, loaded in found["figures"] if not loaded]
        assert not broken, f"{page}: figures that did not load: {broken[:3]}"
    # Solution and hidden-test lines themselves: the instructor repository's leak search
    # reads every page of this book (tests/test_publish.py).
    assert not [m for m in LEAK_MARKERS if m in found["text"]], f"{page}: solution or hidden-test markers"


@pytest.mark.slow
def test_screenshots_saved(browser, server, built_book):
    shots = execute.run_dir() / "screenshots"
    for name, page in (("landing.png", "book/intro.html"), ("lecture.png", "lectures/10_neural_networks.html")):
        if not (shots / name).exists():
            _visit(browser, server, page, shots / name)
        assert (shots / name).stat().st_size > 10_000, f"{name} looks empty"
