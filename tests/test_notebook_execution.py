"""Every lecture and solution notebook runs top to bottom with its CI parameters.

Notebooks that use Keras run a second time with ``KERAS_BACKEND=jax``: the course
promises backend-agnostic code, and this is where that promise is checked.

Each notebook is executed once per run (``coursetools.execute.execute_once``);
the executed copies are reused by the book build. The fixture notebooks prove the
harness can fail: a raising notebook and one that reaches for the network.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

from coursetools import execute, notebooks

FIXTURES = Path(__file__).parent / "fixtures"
NOTEBOOKS = notebooks.executable_notebooks()
KERAS_NOTEBOOKS = notebooks.keras_notebooks()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[notebooks.relpath(p) for p in NOTEBOOKS])
def test_notebook_executes(path):
    record = execute.execute_once(path, mode="ci")
    assert record.ok, f"{record.notebook} failed after {record.seconds:.1f}s: {record.error}"


@pytest.mark.slow
@pytest.mark.parametrize("path", KERAS_NOTEBOOKS, ids=[notebooks.relpath(p) for p in KERAS_NOTEBOOKS])
def test_notebook_executes_on_jax(path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed, so the JAX-backend run was SKIPPED: pip install -r requirements-jax.txt")
    record = execute.execute_once(path, mode="ci", backend="jax")
    assert record.ok, f"{record.notebook} failed on JAX after {record.seconds:.1f}s: {record.error}"


def test_failing_notebook_is_reported(tmp_path):
    record = execute.execute(FIXTURES / "raises.ipynb", tmp_path / "out.ipynb", mode="ci")
    assert not record.ok
    assert "ValueError: deliberate failure" in record.error


def test_network_access_fails_loudly(tmp_path):
    record = execute.execute(FIXTURES / "network.ipynb", tmp_path / "out.ipynb", mode="ci")
    assert not record.ok
    assert "network access is disabled" in record.error


def test_execution_cache_reuses_only_the_same_notebook(tmp_path, monkeypatch):
    """A run sharing the cache reuses a successful execution of the same bytes; changed bytes run again."""
    notebook = tmp_path / "passes.ipynb"
    shutil.copyfile(FIXTURES / "passes.ipynb", notebook)
    monkeypatch.setattr(notebooks, "relpath", lambda p: Path(p).name)
    monkeypatch.setenv("COURSE_EXECUTION_CACHE", str(tmp_path / "cache"))
    runs = []
    for run, change in [("first", False), ("second", False), ("third", True)]:
        monkeypatch.setenv("COURSE_RUN_DIR", str(tmp_path / run))
        if change:
            nb = nbformat.read(notebook, as_version=4)
            nb.cells[-1].source += "  # changed"
            nbformat.write(nb, notebook)
        record = execute.execute_once(notebook, mode="ci")
        assert record.ok, record.error
        assert Path(record.output).is_relative_to(tmp_path / run) and Path(record.output).exists()
        runs.append(record.reused)
    assert runs == [False, True, False], f"reused per run (first, same bytes, changed bytes): {runs}"


def test_ci_parameters_reach_the_notebook(tmp_path):
    record = execute.execute(FIXTURES / "passes.ipynb", tmp_path / "out.ipynb", mode="ci")
    assert record.ok, record.error
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert printed.strip() == "3", "the CI override N=3 was not applied"


def test_backend_reaches_the_kernel(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed: pip install -r requirements-jax.txt")
    record = execute.execute(FIXTURES / "backend.ipynb", tmp_path / "out.ipynb", mode="ci", backend="jax")
    assert record.ok, record.error
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert printed.strip() == "jax", f"the kernel ran Keras on {printed.strip()!r}, not jax"
