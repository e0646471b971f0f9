"""Build the Jupyter Book (1.x) of the course.

The book's source root is the repository root (``book/_config.yml`` and
``book/_toc.yml`` say so), so page paths are repository paths and the launch buttons
open the files students get. Jupyter Book never executes anything: coursetools runs
the lectures and the book is built from the executed copies, in two ways:

* :func:`coursetools.course.build` is ``make course``: student parameters, the real Keras
  data sets when they can be had, a cache of successful executions only;
* :func:`build_from_executed` is the test suite's: the copies the suite already executed
  (CI parameters, stand-in data), so no notebook runs twice in one test run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from coursetools import ROOT, datasource, execute, notebooks

BOOK = ROOT / "book"
OUTPUT = ROOT / "build" / "book"


def toc_files(toc: Path = BOOK / "_toc.yml") -> list[str]:
    """Every page in the table of contents, as repository paths without suffix."""
    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in data.get("parts", []):
        walk(part.get("chapters"))
    return files


def source_path(page: str, root: Path = ROOT) -> Path:
    """The file behind a toc entry (``.ipynb`` or ``.md``)."""
    for suffix in (".ipynb", ".md"):
        if (root / (page + suffix)).exists():
            return root / (page + suffix)
    raise FileNotFoundError(f"toc entry {page!r} has no .ipynb or .md file")


def bundle_mathjax(book_dir: Path = BOOK) -> Path:
    """Copy MathJax 3 (from the django-static-mathjax wheel) into the book's _static folder,
    so equations render without internet access (``mathjax_path`` in _config.yml)."""
    import mathjax

    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = Path(book_dir) / "_static" / "mathjax"
    if not (target / "tex-mml-chtml.js").exists():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("sre", "*-full*.js"))
    return target


def jupyter_book(source: Path, output: Path) -> subprocess.CompletedProcess:
    """``jupyter-book build`` of a staged source folder, execution off (coursetools executes)."""
    bundle_mathjax(Path(source) / "book")
    source, output = Path(source).resolve(), Path(output).resolve()
    command = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(source),
        "--config", str(source / "book" / "_config.yml"), "--toc", str(source / "book" / "_toc.yml"),
        "--path-output", str(output), "-W", "--keep-going",
    ]
    return subprocess.run(command, capture_output=True, text=True)


def stage(executed: dict[Path, Path], folder: Path, standins: bool) -> Path:
    """The book's source folder: ``book/``, every page of the table of contents (a lecture as
    executed: ``executed`` maps source to executed copy), and on a lecture that loaded a Keras
    data set from stand-in files (``standins``), a note saying so under its title."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BOOK, folder / "book")
    for page in toc_files():
        if page.startswith("book/"):
            continue
        src = source_path(page)
        target = folder / notebooks.relpath(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix != ".ipynb":
            shutil.copy(src, target)
            continue
        nb = notebooks.read(executed.get(src, src))
        if standins and datasource.uses_keras_data(nb):
            nb.cells.insert(1, nbformat.v4.new_markdown_cell(datasource.STANDIN_NOTE, id="standin-note"))
        nbformat.write(nb, target)
    return folder


def build_from_executed(output: Path) -> subprocess.CompletedProcess:
    """The test suite's book: the lectures this run executed (CI parameters, stand-in data)."""
    executed = {}
    for src in notebooks.lectures():
        record = execute.execute_once(src, mode="ci")
        if not record.ok:
            raise RuntimeError(f"cannot build the book: {record.notebook} failed: {record.error}")
        executed[src] = Path(record.output)
    return jupyter_book(stage(executed, execute.run_dir() / "book-src", standins=True), output)
