"""Every lecture and solution notebook runs top to bottom with its CI parameters.

Each notebook is executed once per run (``coursetools.execute.execute_once``);
the executed copies are reused by the book build. The fixture notebooks prove the
harness can fail: a raising notebook and one that reaches for the network.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from coursetools import execute, notebooks

FIXTURES = Path(__file__).parent / "fixtures"
NOTEBOOKS = notebooks.executable_notebooks()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[notebooks.relpath(p) for p in NOTEBOOKS])
def test_notebook_executes(path):
    record = execute.execute_once(path, mode="ci")
    assert record.ok, f"{record.notebook} failed after {record.seconds:.1f}s: {record.error}"


def test_failing_notebook_is_reported(tmp_path):
    record = execute.execute(FIXTURES / "raises.ipynb", tmp_path / "out.ipynb", mode="ci")
    assert not record.ok
    assert "ValueError: deliberate failure" in record.error


def test_network_access_fails_loudly(tmp_path):
    record = execute.execute(FIXTURES / "network.ipynb", tmp_path / "out.ipynb", mode="ci")
    assert not record.ok
    assert "network access is disabled" in record.error


def test_ci_parameters_reach_the_notebook(tmp_path):
    record = execute.execute(FIXTURES / "passes.ipynb", tmp_path / "out.ipynb", mode="ci")
    assert record.ok, record.error
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert printed.strip() == "3", "the CI override N=3 was not applied"
