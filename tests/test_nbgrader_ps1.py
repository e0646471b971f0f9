"""nbgrader's documentation example ps1, through the autograder's CLI and through stock nbgrader.

ps1 (tests/fixtures/nbgrader_ps1, copied from nbgrader's repository) has every kind of
nbgrader cell: autograded tests, manually graded answers in markdown and in code, and
a task cell, and two submissions with nbgrader's timestamp.txt. A scratch course with
this repository's nbgrader_config.py runs release, collect (from a <student>/ tree),
grade (sandboxed), feedback, export and report; a second scratch course with nbgrader's
defaults runs plain ``nbgrader generate_assignment`` and ``nbgrader autograde`` on the
same files. The exported scores must be stock nbgrader's, cell by cell.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import sandbox
from coursetools import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "nbgrader_ps1"
STUDENTS = ("bitdiddle", "hacker")
FILES = ("problem1.ipynb", "problem2.ipynb", "jupyter.png", "timestamp.txt")
# Measured with stock nbgrader 0.9.6 (the computed values are compared too: a change on both sides shows here).
MEASURED = {"bitdiddle": 1.5, "hacker": 3.0}
MAX_SCORE = 13.0
BIN = Path(sys.executable).parent


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT)}


def _cli(course: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "autograder", "--root", str(course), *args], cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=1200)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"autograder {' '.join(args)} failed:\n{output}"
    return result


def _stock(folder: Path) -> dict[str, dict]:
    """Stock nbgrader with its defaults: per student the final score, the maximum, whether
    manual grading is pending and each graded cell's score (None: not scored yet)."""
    (folder / "nbgrader_config.py").write_text("c = get_config()\n")
    shutil.copytree(FIXTURE / "source", folder / "source")
    shutil.copytree(FIXTURE / "submitted", folder / "submitted")
    for command in ("generate_assignment", "autograde"):
        result = subprocess.run([str(BIN / "nbgrader"), command, "ps1"], cwd=folder, env=_env(),
                                capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, f"nbgrader {command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gb:
        for student in STUDENTS:
            submission = gb.find_submission("ps1", student)
            cells = {f"{nb.name}:{g.name}": None if g.auto_score is None and g.manual_score is None else g.score
                     for nb in submission.notebooks for g in nb.grades}
            out[student] = {"score": max(0.0, submission.score - submission.late_submission_penalty),
                            "max": submission.max_score, "pending": submission.needs_manual_grade, "cells": cells}
    return out


@pytest.fixture(scope="module")
def ps1(tmp_path_factory):
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        pytest.fail(f"the sandbox must be available in CI (.ci/run installs bubblewrap): {exc}")
    course = tmp_path_factory.mktemp("ps1_course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(FIXTURE / "source" / "ps1", course / "solutions" / "ps1")
    download = tmp_path_factory.mktemp("ps1_download")
    for student in STUDENTS:  # <student>/<notebook>, as an LMS folder download; file times and timestamps kept
        (download / student).mkdir()
        for name in FILES:
            shutil.copy2(FIXTURE / "submitted" / student / "ps1" / name, download / student / name)
    steps = {"release": _cli(course, "release", "ps1"),
             "collect": _cli(course, "collect", "ps1", str(download)),
             "grade": _cli(course, "grade", "ps1"),
             "feedback": _cli(course, "feedback", "ps1"),
             "export": _cli(course, "export", "ps1"),
             "report": _cli(course, "report", "ps1")}
    exports = course / "grading" / "exports"
    with (exports / "ps1_grades.csv").open() as f:
        table = {row["student_id"]: row for row in csv.DictReader(f)}
    with (exports / "ps1_lms.csv").open() as f:
        lms = list(csv.reader(f))
    return {"course": course, "steps": steps, "table": table, "lms": lms,
            "stock": _stock(tmp_path_factory.mktemp("ps1_stock"))}


@pytest.mark.slow
def test_scores_are_stock_nbgraders(ps1):
    table, stock = ps1["table"], ps1["stock"]
    assert sorted(table) == list(STUDENTS)
    assert {s: stock[s]["score"] for s in STUDENTS} == MEASURED
    for student in STUDENTS:
        row = table[student]
        assert row["status"] == "graded", f"{student}: {row['status']} ({row['reason']})"
        assert float(row["score"]) == stock[student]["score"] == MEASURED[student]
        assert float(row["max_score"]) == stock[student]["max"] == MAX_SCORE
        assert float(row["late_penalty"]) == 0
        cells = {key: (float(value) if value else None) for key, value in row.items() if ":" in key}
        assert cells == stock[student]["cells"], f"{student}: cell scores differ from stock nbgrader's"


@pytest.mark.slow
def test_pending_manual_grading_is_reported(ps1):
    assert all(ps1["stock"][s]["pending"] for s in STUDENTS)  # ps1 has manually graded answers and a task cell
    assert [ps1["table"][s]["manual_grading_pending"] for s in STUDENTS] == ["yes", "yes"]
    report = ps1["steps"]["report"].stdout
    assert "  status: graded 2" in report
    assert "  manual grading pending: 2 (bitdiddle, hacker): grade in formgrader, then export again" in report
    assert "  needs review: 0" in report
    assert "problem1:cell-938593c4a215c6cc" in report  # the task cell has its line


@pytest.mark.slow
def test_lms_file_has_the_same_totals(ps1):
    assert ps1["lms"] == [["student_id", "total", "max"]] + [
        [s, f"{ps1['stock'][s]['score']:g}", f"{MAX_SCORE:g}"] for s in STUDENTS]


@pytest.mark.slow
def test_collect_kept_the_timestamps_and_said_what_it_ignored(ps1):
    course = ps1["course"]
    for student in STUDENTS:
        folder = course / "grading" / "submitted" / student / "ps1"
        assert sorted(p.name for p in folder.iterdir()) == ["problem1.ipynb", "problem2.ipynb", "timestamp.txt"]
        kept = (FIXTURE / "submitted" / student / "ps1" / "timestamp.txt").read_text()
        assert (folder / "timestamp.txt").read_text() == kept
        assert f"  {student}: 'jupyter.png': not a notebook, ignored" in ps1["steps"]["collect"].stdout
        assert ps1["table"][student]["notes"] == "'jupyter.png': not a notebook, ignored"


@pytest.mark.slow
def test_feedback_exists_for_both(ps1):
    feedback = ps1["course"] / "grading" / "feedback"
    for student in STUDENTS:
        assert sorted(p.name for p in (feedback / student / "ps1").glob("*.html")) == ["problem1.html",
                                                                                      "problem2.html"]
