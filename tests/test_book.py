"""The web book: its table of contents is complete and it builds from the
notebooks this run has already executed."""

from __future__ import annotations

import re

import pytest
import yaml

from coursetools import ROOT, book, datasource, notebooks, repository

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


def test_jupyter_book_never_executes():
    """coursetools executes the lectures and builds from the executed copies (a failed execution
    is never cached or shown as a page); Jupyter Book itself executes nothing."""
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"


@pytest.mark.slow
def test_pages_built_on_standin_data_say_so(built_book):
    for path in notebooks.lectures():
        text = (built_book / notebooks.relpath(path).replace(".ipynb", ".html")).read_text()
        uses_data = datasource.uses_keras_data(notebooks.read(path))
        assert ("Built without the real data set" in text) == uses_data, f"{path.name}: stand-in note wrong"


def test_book_config_points_at_the_repository():
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["repository"]["url"] == repository.url(), "run `python -m coursetools repository`"
