"""Output regression: nbval (``--nbval-lax``) re-runs each notebook that has cells
tagged ``nbval-check-output`` and compares those cells with their stored output.

nbval is run as its users run it, ``pytest --nbval-lax NOTEBOOK``, in a subprocess,
on a copy of the notebook with the CI parameters injected by papermill (prepare-only:
parameters injected, nothing executed, the reference outputs kept).
"""

from __future__ import annotations

import subprocess
import sys

import papermill
import pytest

from coursetools import execute, notebooks

CHECKED = [p for p in notebooks.executable_notebooks() if any(map(notebooks.is_checked, notebooks.read(p).cells))]


@pytest.mark.slow
@pytest.mark.parametrize("path", CHECKED, ids=[notebooks.relpath(p) for p in CHECKED])
def test_checked_outputs_match(path):
    prepared = execute.run_dir() / "nbval" / notebooks.relpath(path)
    prepared.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(path), str(prepared), parameters=execute.parameters_for(path, "ci"),
        prepare_only=True, progress_bar=False,
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         f"--nbval-cell-timeout={execute.CELL_TIMEOUT}", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-q", "--rootdir", str(prepared.parent), str(prepared)],
        capture_output=True, text=True, cwd=path.parent,
    )
    assert result.returncode == 0, f"nbval failed for {notebooks.relpath(path)}:\n{result.stdout[-6000:]}"
