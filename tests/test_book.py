"""The web book: its table of contents is complete and it builds from the
notebooks this run has already executed."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
import yaml

from coursetools import ROOT, book, notebooks, repository

# Without the leading "###": in a markdown cell it would render as a heading and vanish.
LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def test_toc_lists_every_lecture_and_exercise():
    pages = set(book.toc_files())
    expected = {notebooks.relpath(p).removesuffix(".ipynb") for p in notebooks.lectures() + notebooks.exercises()}
    assert expected <= pages, f"missing from book/_toc.yml: {sorted(expected - pages)}"
    for page in pages:
        book.source_path(page)  # raises if a toc entry has no file
    assert not [p for p in pages if p.startswith("solutions/")], "solutions must never be in the book"


@pytest.mark.slow
def test_book_pages_exist_with_figures_and_launch_buttons(built_book):
    settings = notebooks.course_settings()
    for page in book.toc_files():
        html_file = built_book / (page + ".html")
        assert html_file.exists(), f"no page for {page}"
        html = html_file.read_text()
        assert not [m for m in LEAK_MARKERS if m in html], f"{page}: solution or hidden-test text"
        if page.startswith("lectures/"):
            cells = notebooks.read(book.source_path(page)).cells
            if any("plt." in c.source for c in cells if c.cell_type == "code"):
                assert re.search(r'<img[^>]+src="[^"]*_images/', html), f"{page}: figures from executed cells missing"
            colab = f"colab.research.google.com/github/{settings['repository']}/blob/{settings['branch']}/{page}.ipynb"
            assert colab in html, f"{page}: no Colab launch button pointing at {colab}"
        assert not repository.foreign_links(html), f"{page}: links to {repository.foreign_links(html)[:3]}"


def test_book_never_executes_exercises():
    # Student versions have unanswered cells that raise; myst-nb matches these patterns
    # against the end of each notebook's path.
    patterns = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())["execute"]["exclude_patterns"]

    def excluded(path):
        return any(PurePosixPath(path.as_posix()).match(p) for p in patterns)

    for path in notebooks.exercises():
        assert excluded(path), f"the book would execute {path}"
    for path in notebooks.lectures():
        assert not excluded(path), f"{path} excluded from execution"


def test_book_config_points_at_the_repository():
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["repository"]["url"] == repository.url(), "run `python -m coursetools repository`"
