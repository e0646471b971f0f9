"""The course folder as nbgrader sees it, and the nbgrader configuration the autograder uses.

The course root is the folder holding ``nbgrader_config.py`` (the repository root).
Every command reads that file, as ``nbgrader`` itself does. :func:`configure` swaps in
the autograder's hardened pieces: the sandboxed Execute preprocessor, stderr handling,
restoring deleted test cells, feedback from a run without hidden tests. The course's
``nbgrader_config.py`` calls it too, so plain ``nbgrader autograde``, ``nbgrader
generate_feedback`` and formgrader's buttons use the same safe pipeline. On top, the
autograder's own commands use a gradebook connection that waits for the lock while
parallel workers save scores.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.execute import ForgetEmptyMetadata, GuardedExecute, PublicRun, StderrIsNotFailure

CONFIG_FILE = "nbgrader_config.py"


class Course:
    """Paths and nbgrader configuration of one course folder."""

    def __init__(self, root: Path | str = "."):
        self.root = Path(root).resolve()
        if not (self.root / CONFIG_FILE).exists():
            raise FileNotFoundError(f"{self.root} has no {CONFIG_FILE}: run from the course root or pass --root")
        with contextlib.chdir(self.root):  # the config file resolves its paths from the working directory
            self.base_config = PyFileConfigLoader(CONFIG_FILE, path=str(self.root)).load_config()
        self.coursedir = CourseDirectory(config=self.base_config)
        self.coursedir.root = str(self.root)

    def path(self, name: str) -> Path:
        return self.root / getattr(self.coursedir, name)

    @property
    def source(self) -> Path:
        return self.path("source_directory")

    @property
    def release(self) -> Path:
        return self.path("release_directory")

    @property
    def submitted(self) -> Path:
        return self.path("submitted_directory")

    @property
    def autograded(self) -> Path:
        return self.path("autograded_directory")

    @property
    def feedback(self) -> Path:
        return self.path("feedback_directory")

    @property
    def grading(self) -> Path:
        """Where the autograder keeps its records (next to the submitted folder)."""
        return self.submitted.parent

    @property
    def db_url(self) -> str:
        """The gradebook URL, relative SQLite paths made absolute (workers may run elsewhere)."""
        url = self.coursedir.db_url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{self.root / url.removeprefix('sqlite:///')}"
        return _with_busy_timeout(url)

    def gradebook(self):
        """nbgrader's Gradebook for this course (close it: ``with course.gradebook() as gb``),
        under the course id nbgrader's own commands use."""
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.coursedir.course_id or "default_course")

    def settings(self) -> dict:
        """The course settings, ``[tool.course]`` of the course's ``pyproject.toml`` (may be empty)."""
        path = self.root / "pyproject.toml"
        if not path.exists():
            return {}
        with open(path, "rb") as f:
            return tomllib.load(f).get("tool", {}).get("course", {})

    def due_dates(self) -> dict[str, datetime]:
        """Each assignment's due date (``[tool.course.due]``), in UTC."""
        return {name: due.astimezone(UTC) if due.tzinfo else due.replace(tzinfo=UTC)
                for name, due in self.settings().get("due", {}).items()}

    def assignments(self) -> list[str]:
        return sorted(p.name for p in self.source.iterdir() if p.is_dir() and not p.name.startswith("."))

    def notebooks(self, assignment: str) -> list[str]:
        """Notebook names (without .ipynb) of an assignment's source version."""
        return sorted(p.stem for p in (self.source / assignment).glob("*.ipynb"))

    def config(self, **sandbox) -> Config:
        """nbgrader configuration for grading: the course's file plus the autograder's pieces."""
        c = Config(self.base_config)
        c.CourseDirectory.root = str(self.root)
        c.CourseDirectory.db_url = self.db_url
        configure(c)
        for name, value in sandbox.items():
            setattr(c.SandboxedKernelManager, name, value)
        return c

    def api(self, config: Config | None = None) -> NbGraderAPI:
        config = config or self.config()
        coursedir = CourseDirectory(config=config)
        coursedir.root = str(self.root)
        with contextlib.chdir(self.root):
            return NbGraderAPI(coursedir=coursedir, config=config)


def configure(c: Config) -> None:
    """Make nbgrader's autograde and feedback converters the safe ones (see the module docstring)."""
    c.Autograde.sanitize_preprocessors = [
        ClearOutput, DeduplicateIds, ForgetEmptyMetadata, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
    ]
    c.Autograde.autograde_preprocessors = [
        GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, StderrIsNotFailure,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back and graded
    c.SandboxedKernelManager.warm = True  # kernels forked from a fork server (autograder.warm)
    # Feedback shows a second, sandboxed run of the notebook with the hidden tests removed
    # beforehand, and the scores of the graded run (README: "hidden tests never reach students").
    c.GenerateFeedback.preprocessors = [GetGrades, PublicRun, CSSHTMLHeaderPreprocessor]


def _with_busy_timeout(db_url: str, seconds: int = 120) -> str:
    """SQLite waits for a lock instead of failing when parallel workers save at once."""
    if db_url.startswith("sqlite:") and "timeout=" not in db_url:
        return f"{db_url}{'&' if '?' in db_url else '?'}timeout={seconds}"
    return db_url


def quiet_gradebook() -> None:
    """nbgrader's gradebook makes SQLAlchemy warn about its own session use: in parallel
    workers those warnings only interleave with the progress bar (they stay in the logs)."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.simplefilter("ignore", SAWarning)


def put_environment_first() -> None:
    """nbgrader runs ``alembic`` by name to create the gradebook: use this environment's."""
    bin_dir = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(bin_dir):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
