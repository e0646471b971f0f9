"""Publish: write the student repository from this private instructor repository.

Students get a repository of their own: the lectures, the student versions of the
exercises, the book's sources, the course tooling that executes notebooks and builds the
book, a test suite, and files written for them (``student/``: README, Makefile, workflows).
Each publication is a new commit on top of the previous one, so students ``git pull``
mid-term. An assignment's solution joins once its due date (``[tool.course.due]``) has
passed, with the hidden tests removed.

Nothing is committed before the whole tree and the repository's history have been
searched for every secret (``autograder.leaks``): a leak stops the publication.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nbformat

from autograder import leaks
from autograder.course import Course
from autograder.release import released_solution

# Instructor-repository files students receive as they are (fnmatch patterns; `*` spans folders).
PUBLISHED = (
    "lectures/*.ipynb",
    "exercises/*",
    "book/_config.yml", "book/_toc.yml", "book/*.md", "book/_ext/*.py", "book/_static/*.svg",
    "binder/*",
    "coursetools/__init__.py", "coursetools/__main__.py", "coursetools/book.py", "coursetools/checked_outputs.py",
    "coursetools/colab.py",
    "coursetools/course_build.py", "coursetools/datasource.py", "coursetools/execute.py", "coursetools/notebooks.py",
    "coursetools/offline.py", "coursetools/repository.py", "coursetools/requirements.py",
    "coursetools/standin_data.py",
    "tests/conftest.py", "tests/test_notebook_execution.py", "tests/test_output_regression.py",
    "tests/test_notebook_hygiene.py", "tests/test_exercises.py", "tests/test_book.py", "tests/test_book_browser.py",
    "tests/test_lint.py", "tests/fixtures/*.ipynb",
    "requirements*.txt", "pylock.toml", "colab-constraints.txt", ".pre-commit-config.yaml",
)
# Files the student repository has in its own version: student/<path> becomes <path>, with
# {{repository}} and {{branch}} replaced by the course settings.
TEMPLATE = "student"
NOT_PUBLISHED = ("tests/fixtures/nbgrader_ps1/*",)  # nbgrader's example with its solutions


class LeakError(RuntimeError):
    pass


@dataclass
class Publication:
    repository: Path
    commit: str | None  # None: nothing changed, no commit made
    files: int
    released: list[str]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def released_assignments(course: Course, now: datetime) -> list[str]:
    """Assignments whose solution students may see: their due date has passed."""
    return sorted(a for a, due in course.due_dates().items() if due <= now and (course.source / a).is_dir())


def published_paths(root: Path) -> list[str]:
    """Tracked files of the instructor repository that students receive as they are."""
    tracked = git(root, "ls-files", "-z").split("\0")
    return sorted(rel for rel in tracked if rel and (root / rel).is_file()
                  and any(fnmatch.fnmatch(rel, p) for p in PUBLISHED)
                  and not any(fnmatch.fnmatch(rel, p) for p in NOT_PUBLISHED))


def stage(course: Course, tree: Path, released: list[str]) -> list[str]:
    """Write the student repository's files into ``tree``; return the instructor paths it used."""
    root, settings = course.root, course.settings()
    copied = published_paths(root)
    for rel in copied:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, tree / rel)
    for path in sorted((root / TEMPLATE).rglob("*")):
        if path.is_file():
            copied.append(path.relative_to(root).as_posix())
            target = tree / path.relative_to(root / TEMPLATE)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text().replace("{{repository}}", settings["repository"])
            target.write_text(text.replace("{{branch}}", settings["branch"]))
            target.chmod(path.stat().st_mode & 0o755)
    for assignment in released:
        for source in sorted((course.source / assignment).glob("*.ipynb")):
            target = tree / "solutions" / assignment / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(released_solution(source), target)
    return copied


def _open(repository: Path, branch: str) -> None:
    """Create the student repository, or check that it holds nothing publish did not write."""
    if not (repository / ".git").is_dir():
        if repository.exists() and any(repository.iterdir()):
            raise FileExistsError(f"{repository} is neither empty nor a git repository")
        repository.mkdir(parents=True, exist_ok=True)
        git(repository, "init", "--quiet", "--initial-branch", branch)
    elif git(repository, "status", "--porcelain", "--untracked-files=all").strip():
        raise RuntimeError(f"{repository} has changes that publish did not make: commit or remove them first")


def _commit(repository: Path, tree: Path, message: str) -> str | None:
    """Make the repository's files exactly ``tree``'s; commit if anything changed."""
    for rel in git(repository, "ls-files", "-z").split("\0"):
        if rel:
            (repository / rel).unlink(missing_ok=True)
    shutil.copytree(tree, repository, dirs_exist_ok=True)
    git(repository, "add", "--all")
    if not git(repository, "status", "--porcelain").strip():
        return None
    identity = [] if git_config(repository, "user.email") else [
        "-c", "user.name=Course team", "-c", "user.email=course@localhost"]
    git(repository, *identity, "commit", "--quiet", "--message", message)
    return git(repository, "rev-parse", "HEAD").strip()


def git_config(repository: Path, key: str) -> str:
    result = subprocess.run(["git", "-C", str(repository), "config", key], capture_output=True, text=True)
    return result.stdout.strip()


def publish(course: Course, repository: Path, now: datetime | None = None, message: str | None = None) -> Publication:
    """Publish the course into the git repository ``repository`` (created if missing) as a new
    commit; raise :class:`LeakError`, committing nothing, if a secret would reach students."""
    now = now or datetime.now(UTC)
    repository = Path(repository).resolve()
    released = released_assignments(course, now)
    _open(repository, course.settings()["branch"])
    revision = git(course.root, "rev-parse", "--short", "HEAD").strip()
    dirty = " (with uncommitted changes)" if git(course.root, "status", "--porcelain").strip() else ""
    message = message or (
        f"Course update {now:%Y-%m-%d}\n\n"
        + (f"Solutions released: {', '.join(released)}.\n" if released else "No solutions released yet.\n")
        + f"Published from instructor revision {revision}{dirty}.\n")
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        tree = Path(tmp)
        copied = stage(course, tree, released)
        secrets = leaks.collect(course.root, copied, released, repository=course.settings()["repository"])
        found = leaks.scan_tree(tree, secrets) + leaks.scan_history(repository, secrets)
        found += leaks.find("the commit message", message.encode(), secrets)
        if found:
            raise LeakError(f"not published: {len(found)} problem(s):\n  " + "\n  ".join(found[:50]))
        files = sum(1 for p in tree.rglob("*") if p.is_file())
        commit = _commit(repository, tree, message)
    return Publication(repository, commit, files, released)

