"""Shared set-up for the course test suite.

* Every run gets a fresh run folder (``build/run`` unless ``COURSE_RUN_DIR`` is set):
  executed notebooks, their timing records and the staged book live there, so
  each notebook is executed once per run and reused by every check that needs it.
* Successful executions are also kept by content in ``COURSE_EXECUTION_CACHE`` (default: in
  the run folder), so the student repository's suite, run by ``test_publish`` in this same
  environment, reuses the lectures this run executed instead of running them again.
* Notebooks run offline: ``coursetools.offline`` seeds the Keras cache with
  stand-in data and blocks network access inside kernels.
* At the end, a table of per-notebook execution times is printed.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from filelock import FileLock

from coursetools import ROOT, book, execute, offline


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config):
    if _is_controller(config):
        os.environ.setdefault("COURSE_RUN_DIR", str(ROOT / "build" / "run"))
        shutil.rmtree(execute.run_dir(), ignore_errors=True)
        execute.run_dir().mkdir(parents=True)
        # Successful executions are kept by content (coursetools.execute.cache_key); a test that runs
        # another checkout's suite in this environment (the student repository's) passes the folder on.
        os.environ.setdefault("COURSE_EXECUTION_CACHE", str(execute.run_dir() / "execution-cache"))
    offline.activate()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = execute.recorded_executions()
    if records:
        terminalreporter.section("notebook execution times (wall clock, seconds)")
        terminalreporter.write_line(execute.timing_table(records))
    for summary in sorted((execute.run_dir() / "summaries").glob("*.txt")):  # written by tests, e.g. publish
        terminalreporter.section(summary.stem)
        terminalreporter.write_line(summary.read_text().rstrip())
    graded = sorted((execute.run_dir() / "grading").glob("*.json"))
    if graded:
        terminalreporter.section("nbgrader integrity: autograded points per submission")
        for path in graded:
            results = json.loads(path.read_text())
            tests = results["tests"]
            terminalreporter.write_line(f"{path.stem} (max {sum(tests.values()):g})")
            for student, cells in results["scores"].items():
                earned = sum(cells.get(t) or 0 for t in tests)
                terminalreporter.write_line(f"  {student:<36} {earned:>6g}")


@pytest.fixture(scope="session")
def built_book():
    """The book built from this run's executed notebooks, once per run (pytest-xdist
    workers may each ask for it: the first builds, the others wait and reuse it)."""
    output = execute.run_dir() / "book"
    done = output / "built.txt"
    output.mkdir(parents=True, exist_ok=True)
    with FileLock(str(output) + ".lock"):
        if not done.exists():
            result = book.build_from_executed(output)
            log = f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
            done.write_text("ok" if result.returncode == 0 else log)
    assert done.read_text() == "ok", f"jupyter-book build failed:\n{done.read_text()}"
    return output / "_build" / "html"
