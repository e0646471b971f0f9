"""Store the reference outputs of the cells tagged for nbval, and only those.

A maintainer runs ``python -m coursetools checked-outputs NOTEBOOK`` after changing
a checked cell. The notebook is executed with its CI parameters (the same way the
suite runs it); the outputs of cells tagged ``nbval-check-output`` are copied back
into the source notebook, every other output is cleared.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat

from coursetools import execute, notebooks


def strip(nb) -> None:
    """Clear outputs and execution counts, except in checked cells (nbstripout's rule too)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if not notebooks.is_checked(cell):
            cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)


def refresh(path: Path) -> int:
    """Execute ``path`` in CI mode and store its checked cells' outputs. Returns how many."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        record = execute.execute(path, Path(tmp) / path.name, mode="ci")
        if not record.ok:
            raise RuntimeError(f"{path} failed: {record.error}")
        executed = nbformat.read(Path(tmp) / path.name, as_version=4)
    by_id = {cell.get("id"): cell for cell in executed.cells}
    nb = notebooks.read(path)
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and notebooks.is_checked(cell):
            cell.metadata["keep_output"] = True
            cell.outputs = [_clean(o) for o in by_id[cell.id].outputs]
            count += 1
    strip(nb)
    nbformat.write(nb, path)
    return count


def _clean(output):
    if output.get("output_type") == "execute_result":
        output["execution_count"] = None
    return output
