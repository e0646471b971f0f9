"""Output regression: nbval (``--nbval-lax``) re-runs each notebook that has cells
tagged ``nbval-check-output`` and compares those cells with their stored output.

nbval is run as its users run it, ``pytest --nbval-lax NOTEBOOK``, in a subprocess,
on a copy of the notebook with the CI parameters injected by papermill (prepare-only:
parameters injected, nothing executed, the reference outputs kept).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from coursetools import execute, notebooks

CHECKED = [p for p in notebooks.executable_notebooks() if any(map(notebooks.is_checked, notebooks.read(p).cells))]


def run_nbval(path: Path) -> subprocess.CompletedProcess:
    """``pytest --nbval-lax`` on ``path`` with its CI parameters injected."""
    prepared = execute.run_dir() / "nbval" / notebooks.relpath(path)
    prepared.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(path), str(prepared), parameters=execute.parameters_for(path, "ci"),
        prepare_only=True, progress_bar=False,
    )
    # nbstripout clears execution counts even where it keeps outputs, and nbval skips a
    # reference cell without one ("unrun"): number the checked cells so nbval compares them.
    nb = nbformat.read(prepared, as_version=4)
    for count, cell in enumerate(filter(notebooks.is_checked, nb.cells), start=1):
        cell.execution_count = count
    nbformat.write(nb, prepared)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         f"--nbval-cell-timeout={execute.CELL_TIMEOUT}", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-q", "--rootdir", str(prepared.parent), str(prepared)],
        capture_output=True, text=True, cwd=path.parent,
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", CHECKED, ids=[notebooks.relpath(p) for p in CHECKED])
def test_checked_outputs_match(path):
    result = run_nbval(path)
    assert result.returncode == 0, f"nbval failed for {notebooks.relpath(path)}:\n{result.stdout[-6000:]}"


def test_a_changed_checked_output_fails():
    result = run_nbval(Path(__file__).parent / "fixtures" / "wrong_checked_output.ipynb")
    assert result.returncode != 0, "nbval accepted a checked cell whose output differs from the reference"
    assert "sum of 0..3 = 6" in result.stdout and "sum of 0..3 = 7" in result.stdout, result.stdout[-3000:]
