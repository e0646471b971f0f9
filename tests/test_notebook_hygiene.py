"""Notebook hygiene: format, metadata, stored outputs, badges, parameters, imports."""

from __future__ import annotations

import re

import nbformat
import pytest

from coursetools import notebooks, repository

ALL = notebooks.lectures() + notebooks.solutions() + notebooks.exercises()
IDS = [notebooks.relpath(p) for p in ALL]
LECTURES = notebooks.lectures()
BADGE = re.compile(r"\(https://colab\.research\.google\.com/github/([^)\s]+)\)")


def test_course_has_notebooks():
    assert LECTURES, "no lecture notebooks found under lectures/"


@pytest.fixture(params=ALL, ids=IDS)
def notebook(request):
    return request.param, notebooks.read(request.param)


def test_valid_nbformat_with_cell_ids(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5), f"{path}: cell ids need nbformat >= 4.5"
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids), f"{path}: cells without an id"
    assert len(set(ids)) == len(ids), f"{path}: duplicate cell ids"


def test_python3_kernelspec(notebook):
    path, nb = notebook
    spec = nb.metadata.get("kernelspec", {})
    assert spec.get("name") == "python3" and spec.get("language") == "python", f"{path}: {spec}"


def test_no_stored_outputs_except_checked_cells(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if notebooks.is_checked(cell):
            assert cell.metadata.get("keep_output") is True, (
                f"{path} cell {i}: checked cells need metadata keep_output: true (for nbstripout)"
            )
            assert cell.outputs, f"{path} cell {i}: checked cell has no reference output"
        else:
            assert not cell.outputs, f"{path} cell {i}: stored outputs (strip them, or tag the cell)"
        assert cell.execution_count is None or notebooks.is_checked(cell), f"{path} cell {i}"


def _badge_target(path) -> str:
    """Where the Colab badge must point: the notebook itself, or for an
    instructor source, the student version generated from it."""
    rel = notebooks.relpath(path)
    return "exercises/" + rel.removeprefix("solutions/") if rel.startswith("solutions/") else rel


def test_colab_badge_in_first_cell(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), (
        f"{path}: the first cell must be a markdown title"
    )
    match = BADGE.search(first.source)
    assert match, f"{path}: no Colab badge in the first cell"
    settings = notebooks.course_settings()
    expected = f"{settings['repository']}/blob/{settings['branch']}/{_badge_target(path)}"
    assert match.group(1) == expected, f"{path}: badge points at {match.group(1)}, expected {expected}"


def test_no_repo_local_imports(notebook):
    path, nb = notebook
    local = notebooks.imported_modules(nb) & notebooks.repo_local_modules()
    assert not local, f"{path} imports repository code {sorted(local)}: notebooks must be self-contained"


@pytest.mark.parametrize("path", LECTURES, ids=[notebooks.relpath(p) for p in LECTURES])
def test_lecture_has_one_parameters_cell_and_valid_ci_overrides(path):
    nb = notebooks.read(path)
    assert len(notebooks.parameters_cells(nb)) == 1, f"{path}: needs exactly one 'parameters' cell"
    unknown = set(notebooks.ci_parameters(nb)) - notebooks.parameter_names(nb)
    assert not unknown, f"{path}: CI overrides {sorted(unknown)} are not in the parameters cell"


@pytest.mark.parametrize("path", LECTURES, ids=[notebooks.relpath(p) for p in LECTURES])
def test_lecture_file_name(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name


def test_links_name_only_the_course_repository():
    """Colab, Binder and repository links in notebooks and book pages name the repository set in
    pyproject.toml (``python -m coursetools repository`` rewrites them after it changes)."""
    found = {notebooks.relpath(p): repository.foreign_links(p.read_text()) for p in repository.student_facing_files()}
    assert not {p: links for p, links in found.items() if links}, found
    course = repository.name()
    assert not repository.foreign_links(f"https://colab.research.google.com/github/{course}/blob/main/x.ipynb")
    other = f"https://colab.research.google.com/github/{course}-instructor/blob/main/x.ipynb"
    assert repository.foreign_links(other) == [f"colab.research.google.com/github/{course}-instructor"]
