"""Release: regenerate the student versions in ``exercises/`` from ``solutions/``.

Runs nbgrader's own ``generate_assignment`` (which also puts the assignment in the
gradebook) into a scratch folder, and copies the result into the release folder only
after checking that no solution or hidden-test line made it through.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearHiddenTests

from autograder.course import Course, put_environment_first

LEAK_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


class LeakError(RuntimeError):
    pass


def hidden_lines(source_notebook: Path, regions: tuple[str, ...] = ("SOLUTION", "HIDDEN TESTS")) -> set[str]:
    """Lines that occur only inside the solution and/or hidden-test regions of a source
    notebook (a line such as ``def sigmoid(t):`` that students also get is no secret)."""
    inside_lines, outside_lines, inside = set(), set(), None
    for cell in nbformat.read(source_notebook, as_version=4).cells:
        for line in cell.source.splitlines():
            stripped = line.strip()
            if stripped.startswith("### BEGIN "):
                inside = stripped.removeprefix("### BEGIN ")
            elif stripped.startswith("### END "):
                inside = None
            elif inside in regions and len(stripped) > 12 and not stripped.startswith("#"):
                inside_lines.add(stripped)
            elif inside is None:
                outside_lines.add(stripped)
    return inside_lines - outside_lines


def secret_lines(source_notebook: Path, released_notebook: Path,
                 regions: tuple[str, ...] = ("SOLUTION", "HIDDEN TESTS")) -> set[str]:
    """Lines a student must never be shown: solution and/or hidden-test lines that the
    student version does not show anyway (instructions may quote a line on purpose)."""
    shown = "\n".join(cell.source for cell in nbformat.read(released_notebook, as_version=4).cells)
    rendered = re.sub(r"[`*]", "", shown)  # as markdown displays it: `code` and **bold** lose their marks
    return {line for line in hidden_lines(source_notebook, regions) if line not in shown and line not in rendered}


def leaks(released: Path, source: Path) -> list[str]:
    """Markers or solution/hidden-test lines of ``source`` that appear in ``released``."""
    found = []
    for nb in sorted(released.rglob("*.ipynb")):
        text = nb.read_text()
        found += [f"{nb.name}: marker {m!r}" for m in LEAK_MARKERS if m in text]
        secret = hidden_lines(source / nb.name) if (source / nb.name).exists() else set()
        visible = {line.strip() for cell in nbformat.read(nb, as_version=4).cells
                   for line in cell.source.splitlines()}
        found += [f"{nb.name}: hidden line {line!r}" for line in sorted(secret & visible)]
    return found


def released_solution(source: Path) -> nbformat.NotebookNode:
    """The instructor's notebook as students may see it after the due date: solutions and
    rubrics kept (their markers removed), hidden tests removed by nbgrader's ClearHiddenTests."""
    nb = nbformat.read(source, as_version=4)
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    for cell in nb.cells:
        lines = cell.source.splitlines()
        kept = [line for line in lines if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
        if kept != lines:
            cell.source = "\n".join(kept).strip("\n")
    return nb


def generate(course: Course, assignment: str, out: Path) -> Path:
    """Run nbgrader's ``generate_assignment`` into ``out``; this also records the assignment's
    source cells (solutions, tests, points) in the course's gradebook, which grading needs."""
    put_environment_first()
    config = course.config()
    config.CourseDirectory.release_directory = str(Path(out).resolve())  # absolute: nbgrader joins it to the root
    result = course.api(config).generate_assignment(assignment, force=True)
    if not result["success"]:
        details = result.get("error") or result.get("log")
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{details}")
    due = course.due_dates().get(assignment)
    if due is not None:  # from pyproject.toml into the gradebook, where nbgrader's late penalty reads it
        with course.gradebook() as gb:
            gb.update_or_create_assignment(assignment, duedate=due.replace(tzinfo=None))
    return Path(out) / assignment


def release(course: Course, assignment: str) -> Path:
    """Regenerate ``<release>/<assignment>`` from the source; refuse if anything leaks."""
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(course, assignment, Path(tmp))
        found = leaks(generated, course.source / assignment)
        if found:
            raise LeakError(f"{assignment}: not released, the student version would leak:\n  " + "\n  ".join(found))
        target = course.release / assignment
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(generated, target)
    return target
