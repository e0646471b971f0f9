"""``make course``, the README's first command, as a new user runs it: a clean clone, no network.

The clone builds inside a network namespace with no network at all (``unshare``), with a
fresh home (no Keras cache) and this environment (``VENV=``), in CI mode (``MODE=ci``: the
same path as the student build, with the quick parameters). It must use the stand-in
data, say so once and on the pages concerned, and build every lecture with its figures.
A lecture broken on purpose must fail the build with a short message, and fail it again
on the next build (also with ``OFFLINE=1``); fixed, the next build must show it right.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursetools import ROOT, course_build, datasource, execute, notebooks

FIXTURES = Path(__file__).parent / "fixtures"
NOTE = "Built without the real data set"
BROKEN = "broken on purpose"


def make_course(clone: Path, *args: str) -> subprocess.CompletedProcess:
    """``make course`` in ``clone`` with no network and a new user's home."""
    no_network = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--net"]
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items()
           if k not in ("COURSE_RUN_DIR", "KERAS_HOME", "IPYTHONDIR") and not k.startswith("PYTEST")}
    env["HOME"] = str(clone.parent / "home")
    command = [*no_network, "make", "course", "MODE=ci", f"VENV={venv}", "-o", f"{venv}/.installed", *args]
    return subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=3600)


def page_text(html: Path) -> str:
    return re.sub(r"<[^>]+>", " ", html.read_text())


def lecture_lines(stdout: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^  (lectures/\S+\.ipynb)\s+(\S+)", stdout, re.M)}


@pytest.mark.slow
def test_make_course_offline_from_a_clean_clone():
    folder = execute.run_dir() / "course-build"
    shutil.rmtree(folder, ignore_errors=True)
    clone = folder / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (folder / "home").mkdir()

    first = make_course(clone)
    out = first.stdout
    assert first.returncode == 0, f"make course failed offline:\n{out[-5000:]}\n{first.stderr[-3000:]}"
    data_line = next(line for line in out.splitlines() if line.startswith("data:"))
    assert data_line.startswith("data: STAND-INS") and "no internet access" in data_line, out[:500]
    assert out.index(data_line) < out.index("  lectures/"), "the data source is said first"
    noise = [word for word in ("oneDNN", "absl", "cuda") if word in first.stdout + first.stderr]
    assert not noise, f"kernel start-up lines reach the terminal: {noise}"
    lectures = [notebooks.relpath(p) for p in notebooks.lectures()]
    assert lecture_lines(out) == dict.fromkeys(lectures, "ok"), out
    html = clone / "build" / "book" / "_build" / "html"
    assert f"book: {html / 'index.html'}" in out
    for rel in lectures:
        page = html / rel.replace(".ipynb", ".html")
        text, nb = page_text(page), notebooks.read(ROOT / rel)
        assert "Traceback" not in text, f"{rel}: the page shows a traceback"
        if any("plt." in c.source for c in nb.cells if c.cell_type == "code"):
            assert re.search(r'<img[^>]+src="[^"]*_images/', page.read_text()), f"{rel}: no figure"
        assert (NOTE in text) == datasource.uses_keras_data(nb), f"{rel}: stand-in note wrong"
    assert not (html / "reports").exists(), "exception reports inside the published folder"
    assert (clone / "build" / "book" / "logs" / "jupyter-book.log").exists()

    lecture = clone / "lectures" / "03_scikit_learn.ipynb"
    original = lecture.read_bytes()
    nb = nbformat.read(lecture, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f'raise RuntimeError("{BROKEN}")'))
    nbformat.write(nb, lecture)
    for attempt in ((), ("OFFLINE=1",)):  # the second build, with nothing changed, fails the same way
        broken = make_course(clone, *attempt)
        assert broken.returncode != 0, f"a broken lecture built ({attempt}):\n{broken.stdout[-3000:]}"
        assert "FAILED lectures/03_scikit_learn.ipynb, cell In [" in broken.stdout, broken.stdout[-3000:]
        assert f"RuntimeError: {BROKEN}" in broken.stdout and "next: `python -m coursetools run" in broken.stdout
        assert "book NOT built" in broken.stdout
        statuses = lecture_lines(broken.stdout)
        assert statuses.pop("lectures/03_scikit_learn.ipynb") == "FAILED"
        assert set(statuses.values()) == {"cached"}, statuses
    assert BROKEN not in (html / "lectures" / "03_scikit_learn.html").read_text()

    lecture.write_bytes(original)
    fixed = make_course(clone)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert lecture_lines(fixed.stdout)["lectures/03_scikit_learn.ipynb"] == "ok"
    page = html / "lectures" / "03_scikit_learn.html"
    assert BROKEN not in page.read_text() and re.search(r'<img[^>]+src="[^"]*_images/', page.read_text())


def test_a_failed_execution_is_never_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(course_build, "OUTPUT", tmp_path)
    source = datasource.DataSource(False, "test")
    for _ in range(2):
        record, cached = course_build.execute_cached(FIXTURES / "raises.ipynb", "ci", source)
        assert not record.ok and not cached and "ValueError: deliberate failure" in record.error
    first, cached_first = course_build.execute_cached(FIXTURES / "passes.ipynb", "ci", source)
    again, cached_again = course_build.execute_cached(FIXTURES / "passes.ipynb", "ci", source)
    assert first.ok and not cached_first and cached_again and again == first
    assert (tmp_path / "logs" / "kernels.log").exists(), "the kernels' own output has no log"


def test_the_data_source(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasource, "reachable", lambda *a, **k: False)
    assert not datasource.choose().real and "no internet" in datasource.choose().why
    assert not datasource.choose(force_standins=True).real
    monkeypatch.setattr(datasource, "reachable", lambda *a, **k: True)
    assert datasource.choose().real
    monkeypatch.setattr(datasource, "reachable", lambda *a, **k: False)
    datasource.keras_cache().mkdir(parents=True)
    for name in datasource.FASHION_MNIST:
        (datasource.keras_cache() / name).write_bytes(b"real")
    assert datasource.choose().real and "already in the Keras cache" in datasource.choose().why
