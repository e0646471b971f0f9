"""Build the Jupyter Book (1.x) of the course.

The book's source root is the repository root (``book/_config.yml`` and
``book/_toc.yml`` say so), so page paths are repository paths and the launch
buttons open the files students get. Two ways to build:

* :func:`build` with ``mode="student"`` is the README's build: Jupyter Book executes
  the lectures with their student parameters and caches the results, so a rebuild
  with nothing changed takes seconds.
* :func:`build_from_executed` is the test suite's build: it stages the notebooks the
  suite has already executed (CI parameters) and builds with execution switched off,
  so no notebook is executed twice in one run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from coursetools import ROOT, execute, notebooks

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


def _jupyter_book(source: Path, config: Path, output: Path) -> subprocess.CompletedProcess:
    bundle_mathjax(Path(source) / "book")
    source, config, output = Path(source).resolve(), Path(config).resolve(), Path(output).resolve()
    command = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(source),
        "--config", str(config), "--toc", str(source / "book" / "_toc.yml"),
        "--path-output", str(output), "-W", "--keep-going",
    ]
    return subprocess.run(command, capture_output=True, text=True)


def build(mode: str = "student") -> int:
    """Build the book and print the log: executed by Jupyter Book (cached) with student
    parameters, or with ``mode="ci"`` from CI-parameter executions (quick)."""
    if mode == "ci":
        output = ROOT / "build" / "book-ci"
        result = build_from_executed(output)
    else:
        output = OUTPUT
        result = _jupyter_book(ROOT, BOOK / "_config.yml", output)
    print(result.stdout[-4000:], result.stderr[-4000:], sep="\n")
    html = output / "_build" / "html" / "index.html"
    print(f"book: {html}" if result.returncode == 0 else "book build FAILED")
    return result.returncode


def build_from_executed(output: Path) -> subprocess.CompletedProcess:
    """Stage CI-executed lectures and the exercises, build with execution off."""
    staging = execute.run_dir() / "book-src"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(BOOK, staging / "book")
    for page in toc_files():
        if page.startswith("book/"):
            continue
        src = source_path(page)
        target = staging / notebooks.relpath(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".ipynb" and src.parent.name == "lectures":
            record = execute.execute_once(src, mode="ci")
            if not record.ok:
                raise RuntimeError(f"cannot build the book: {record.notebook} failed: {record.error}")
            shutil.copy(record.output, target)
        else:
            shutil.copy(src, target)
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (staging / "book" / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return _jupyter_book(staging, staging / "book" / "_config.yml", output)
