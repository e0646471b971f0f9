"""The student repository (``python -m autograder publish``): what it holds, that it works on
its own, and that nothing secret reaches it, its history or the book.

* The course is published into a new git repository, cloned, and the clone's own test
  command (``make test``, its README's) runs there: lectures execute, the exercises are
  valid student notebooks, the book builds and passes the browser test.
* Secrets planted in a scratch copy of this repository (a hidden-test line in a lecture,
  a rubric line on a book page, a solution notebook under another name, a grading
  import, a link to another repository), or in an earlier publication's history, make
  publish fail and commit nothing.
* Solutions appear after their due date, with the hidden tests removed, and run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock

from autograder import leaks, publish
from autograder.course import Course
from coursetools import ROOT, book, execute, notebooks, requirements

CLI = [sys.executable, "-m", "autograder"]
INSTRUCTOR_ONLY = ("solutions", "autograder", "nbgrader_config.py", "CONTRIBUTING.md", "benchmarks", "student",
                   "tests/wrong_variants", "tests/test_assignments.py", "tests/test_publish.py",
                   "tests/fixtures/nbgrader_ps1", "coursetools/assignments.py")
TOOLING = ("pytest", "jupyter-book", "nbgrader", "papermill", "nbval", "ruff", "playwright")


def run(command, cwd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, **kwargs)


def files(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts}


def commits(repository: Path) -> list[str]:
    return run(["git", "rev-list", "HEAD"], repository).stdout.split()


@pytest.fixture(scope="session")
def publication() -> Path:
    """The course published once per run (the first pytest-xdist worker publishes)."""
    repository = execute.run_dir() / "publish" / "student"
    repository.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(repository) + ".lock"):
        if not (repository / ".git").exists():
            result = run([*CLI, "publish", str(repository)], ROOT)
            assert result.returncode == 0, result.stdout + result.stderr
    return repository


def instructor_copy(folder: Path) -> Path:
    """A scratch instructor repository: this one's tracked files (as in the working tree), one commit."""
    tracked = run(["git", "ls-files", "-z"], ROOT, check=True).stdout.split("\0")
    for rel in filter(None, tracked):
        if (ROOT / rel).is_file():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, folder / rel)
    commit_all(folder, "scratch copy of the instructor repository", init=True)
    return folder


def commit_all(folder: Path, message: str, init: bool = False) -> None:
    if init:
        run(["git", "init", "-q", "-b", "main"], folder, check=True)
    run(["git", "add", "-A"], folder, check=True)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", message], folder, check=True)


def a_secret(kind: str, assignment: str) -> str:
    """A line of ``assignment`` that students must not see (kind: "solution of" or "hidden test of")."""
    secrets = leaks.collect(ROOT, publish.published_paths(ROOT))
    lines = sorted(line for line, what in secrets.lines.items() if what == f"{kind} {assignment}")
    assert lines, f"no {kind} line in {assignment}"
    return max(lines, key=len)


def test_student_repository_holds_the_student_course(publication):
    published = files(publication)
    for path in [*notebooks.lectures(), *notebooks.exercises()]:
        assert notebooks.relpath(path) in published, f"{notebooks.relpath(path)} not published"
    for rel in ("README.md", "Makefile", "pyproject.toml", ".ci/run", ".github/workflows/ci.yml",
                ".github/workflows/pages.yml", "binder/requirements.txt", "requirements.txt", "requirements-dev.txt",
                "book/_toc.yml", "coursetools/offline.py", "tests/test_exercises.py", "tests/test_book_browser.py"):
        assert rel in published, f"{rel} not published"
    leaked = sorted(rel for rel in published for path in INSTRUCTOR_ONLY if rel == path or rel.startswith(path + "/"))
    assert not leaked, f"instructor-only files published: {leaked}"
    assert not any(rel.endswith((".db", ".sqlite")) for rel in published), "a gradebook was published"
    readme = (publication / "README.md").read_text()
    assert "{{" not in readme and f"https://github.com/{Course(ROOT).settings()['repository']} " in readme
    assert len(commits(publication)) == 1


def test_binder_installs_what_students_need(publication):
    """Binder builds from binder/requirements.txt: the course's packages, not the tooling."""
    installed = [str(r) for r in requirements.read(publication / "binder" / "requirements.txt")]
    assert any(r.startswith("keras") for r in installed) and any(r.startswith("tensorflow") for r in installed)
    tooling = [r for r in installed if r.startswith(TOOLING)]
    assert not tooling, f"Binder would install test and build tooling: {tooling}"


@pytest.mark.slow
def test_student_repository_passes_its_own_tests(publication):
    """A fresh clone of the student repository runs its README's test command, offline. It shares
    this run's execution cache (COURSE_EXECUTION_CACHE): a lecture this run has already executed, the
    same bytes in the same environment, is reused there rather than executed a second time."""
    clone = publication.parent / "clone"
    shutil.rmtree(clone, ignore_errors=True)
    run(["git", "clone", "-q", str(publication), str(clone)], ROOT, check=True)
    env = {k: v for k, v in os.environ.items() if k != "COURSE_RUN_DIR" and not k.startswith("PYTEST")}
    venv = Path(sys.prefix)  # this environment, installed from the same requirements files
    command = ["make", "test", f"VENV={venv}", "-o", f"{venv}/.installed"]
    result = run(command, clone, env=env, timeout=3600)
    log = result.stdout + result.stderr
    (publication.parent / "student-tests.log").write_text(log)
    outcome = re.findall(r"^=+ (\d+ passed.*) =+$", log, re.MULTILINE)
    timing = [line for line in log.splitlines() if line.startswith("total ")]
    summaries = execute.run_dir() / "summaries"
    summaries.mkdir(exist_ok=True)
    (summaries / "student repository: its own make test.txt").write_text(
        f"{outcome[-1] if outcome else 'no pytest summary'}\n"
        f"notebook execution {timing[-1] if timing else '(no table)'}\n"
        f"log: {publication.parent / 'student-tests.log'}\n")
    assert result.returncode == 0, f"the student repository's `make test` failed:\n{log[-8000:]}"
    assert outcome and not re.search(r"failed|error|skipped", outcome[-1]), outcome


@pytest.mark.parametrize("where", ["lecture", "readme", "book page", "fixture", "grader import", "foreign link"])
def test_a_planted_secret_stops_publish(tmp_path, where):
    instructor = instructor_copy(tmp_path / "instructor")
    student = tmp_path / "student"
    assert run([*CLI, "publish", str(student)], instructor).returncode == 0
    lecture = instructor / "lectures" / "05_linear_regression_gd.ipynb"
    if where == "lecture":  # a hidden-test line inside a code cell
        secret, expected = a_secret("hidden test of", "ex05_linear_regression"), "hidden test of ex05_linear_regression"
        nb = nbformat.read(lecture, as_version=4)
        nb.cells[-1].source += "\n" + secret
        nbformat.write(nb, lecture)
    elif where == "readme":
        secret, expected = a_secret("solution of", "ex07_regularisation"), "solution of ex07_regularisation"
        with open(instructor / "student" / "README.md", "a") as f:
            f.write(f"\n    {secret}\n")
    elif where == "book page":  # a rubric line of a written answer
        secret, expected = a_secret("solution of", "cw1"), "solution of cw1"
        with open(instructor / "book" / "intro.md", "a") as f:
            f.write(f"\n{secret}\n")
    elif where == "fixture":  # a solution notebook under another name
        shutil.copy(instructor / "solutions" / "ex02_pandas" / "ex02_pandas.ipynb", instructor / "tests" / "fixtures")
        expected = "a copy of the instructor-only file solutions/ex02_pandas/ex02_pandas.ipynb"
    elif where == "grader import":
        with open(instructor / "coursetools" / "offline.py", "a") as f:
            f.write("\nfrom autograder import guard  # noqa: E402, F401\n")
        expected = "imports the autograder"
    else:
        nb = nbformat.read(lecture, as_version=4)
        nb.cells[0].source = nb.cells[0].source.replace(Course(ROOT).settings()["repository"], "someone/instructor")
        nbformat.write(nb, lecture)
        expected = "links to colab.research.google.com/github/someone/instructor"
    commit_all(instructor, f"plant: {where}")
    result = run([*CLI, "publish", str(student)], instructor)
    assert result.returncode == 1, f"publish accepted a planted secret ({where}):\n{result.stdout}"
    assert expected in result.stderr, result.stderr
    assert len(commits(student)) == 1, "publish committed despite the leak"


def test_a_leak_in_an_earlier_publication_stops_publish(tmp_path):
    instructor = instructor_copy(tmp_path / "instructor")
    student = tmp_path / "student"
    assert run([*CLI, "publish", str(student)], instructor).returncode == 0
    secret = a_secret("hidden test of", "ex10_neural_networks")
    (student / "notes.py").write_text(secret + "\n")
    commit_all(student, "an earlier publication that leaked")
    (student / "notes.py").unlink()
    commit_all(student, "the leak deleted, but not from the history")
    result = run([*CLI, "publish", str(student)], instructor)
    assert result.returncode == 1 and "hidden test of ex10_neural_networks" in result.stderr, result.stderr
    assert "history" in result.stderr and "notes.py" in result.stderr, result.stderr
    assert len(commits(student)) == 3


def test_solutions_are_released_after_their_due_date(tmp_path):
    instructor = instructor_copy(tmp_path / "instructor")
    student = tmp_path / "student"
    due = Course(instructor).due_dates()["ex01_intro_ml"]
    before = run([*CLI, "publish", str(student), "--now", (due - timedelta(seconds=1)).isoformat()], instructor)
    assert before.returncode == 0, before.stderr
    assert not (student / "solutions").exists()
    after = run([*CLI, "publish", str(student), "--now", due.isoformat()], instructor)
    assert after.returncode == 0, after.stderr
    assert "solutions released: ex01_intro_ml" in after.stdout
    assert files(student / "solutions") == {"ex01_intro_ml/ex01_intro_ml.ipynb"}
    assert len(commits(student)) == 2, "the release is not a new commit on top of the first publication"
    again = run([*CLI, "publish", str(student), "--now", due.isoformat()], instructor)
    assert "no commit made" in again.stdout and len(commits(student)) == 2

    released = student / "solutions" / "ex01_intro_ml" / "ex01_intro_ml.ipynb"
    text = "\n".join(cell.source for cell in nbformat.read(released, as_version=4).cells)
    assert a_secret("solution of", "ex01_intro_ml") in text, "the released notebook has no solution"
    all_secrets = leaks.collect(ROOT, publish.published_paths(ROOT))
    hidden = [line for line, what in all_secrets.lines.items() if what == "hidden test of ex01_intro_ml"]
    assert hidden and not [line for line in hidden if line in text], "hidden tests in the released solution"
    assert not [m for m in leaks.MARKERS if m in text]
    record = execute.execute(released, tmp_path / "executed.ipynb", mode="ci")
    assert record.ok, f"the released solution does not run: {record.error}"


def test_public_lines_are_exact():
    """Every line solutions/public_lines.txt exempts is a secret line that students are shown anyway."""
    allowed = leaks.public_lines(ROOT)
    everything = leaks.collect(ROOT, publish.published_paths(ROOT), exempt=False).lines
    shown = "\n".join(text for path in [*notebooks.lectures(), *notebooks.exercises()]
                      for _, text in leaks.texts(path.name, path.read_bytes()))
    shown_lines = {line.strip() for line in shown.splitlines()}
    assert not allowed - everything.keys(), f"not secret lines (remove them): {sorted(allowed - everything.keys())}"
    assert not allowed - shown_lines, f"not shown to students (remove them): {sorted(allowed - shown_lines)}"


@pytest.mark.slow
def test_book_leaks_nothing(built_book):
    """The leak search over every file of the built book: pages, their sources, images."""
    secrets = leaks.collect(ROOT, publish.published_paths(ROOT))
    found = leaks.scan_tree(built_book, secrets)
    assert not found, "\n".join(found[:20])
    pages = [p for p in book.toc_files() if (built_book / f"{p}.html").exists()]
    assert len(pages) == len(book.toc_files()), "pages missing from the built book"

