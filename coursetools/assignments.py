"""nbgrader assignments: generate student versions, autograde submissions, read scores.

Everything runs through nbgrader's own command line (``nbgrader generate_assignment``,
``nbgrader autograde``) and gradebook (``nbgrader.api.Gradebook``), in a scratch
course folder that uses the repository's ``nbgrader_config.py``, so the gradebook
and submissions never land in the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from coursetools import ROOT

NBGRADER = [sys.executable, "-m", "nbgrader"]


def names() -> list[str]:
    return sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))


def source_notebooks(assignment: str) -> list[Path]:
    return sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))


class Course:
    """A scratch nbgrader course folder holding one or more assignments."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "nbgrader_config.py", self.root / "nbgrader_config.py")

    def nbgrader(self, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
        # nbgrader runs helper commands (alembic) by name: the environment's bin comes first.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = subprocess.run(
            [*NBGRADER, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout, env=env
        )
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        return result

    def add_source(self, assignment: str) -> None:
        target = self.root / "solutions" / assignment
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "solutions" / assignment, target)

    def generate(self, assignment: str) -> Path:
        """Run ``nbgrader generate_assignment``; return the release folder."""
        self.add_source(assignment)
        self.nbgrader("generate_assignment", assignment, "--force")
        return self.root / "exercises" / assignment

    def submit(self, assignment: str, student: str, notebooks: dict[str, nbformat.NotebookNode]) -> None:
        folder = self.root / "grading" / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / name)

    def autograde(self, assignment: str) -> str:
        """Run ``nbgrader autograde`` (the course's sandboxed pipeline); return its log."""
        result = self.nbgrader("autograde", assignment, "--force")
        return result.stdout + result.stderr

    def scores(self, assignment: str, student: str) -> dict[str, float | None]:
        """Autograder score of every graded cell of a student's submission, by grade id
        (``None`` for cells that wait for manual grading)."""
        with Gradebook(f"sqlite:///{self.root / 'grading' / 'gradebook.db'}") as gb:
            submission = gb.find_submission(assignment, student)
            return {grade.name: grade.auto_score for nb in submission.notebooks for grade in nb.grades}

    def max_scores(self, assignment: str, student: str) -> dict[str, float]:
        """Maximum score of every graded cell of a student's submission, by grade id."""
        with Gradebook(f"sqlite:///{self.root / 'grading' / 'gradebook.db'}") as gb:
            submission = gb.find_submission(assignment, student)
            return {grade.name: grade.max_score for nb in submission.notebooks for grade in nb.grades}


def autograded_tests(nb) -> dict[str, float]:
    """Points of each autograded test cell (graded, not a solution) of a source notebook."""
    tests = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
            tests[meta["grade_id"]] = float(meta["points"])
    return tests
