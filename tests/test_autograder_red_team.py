"""Red team: grade honest and hostile submissions through the autograder's CLI.

One scratch course holds ex01_intro_ml (11 points: split 3, k-fold 3, mse 2, ridge 3).
Each submission below is the student version with the answers filled in, then bent
in one hostile way; the test asserts the exact score and status the grader gives it,
and that the attack left no trace outside the submission's own folder. Which
mechanism stops each attack is said next to it (and in the README).
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.release import secret_lines
from coursetools import ROOT

ASSIGNMENT = "ex01_intro_ml"
CORRECT_MSE = '''def mse(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError("shapes differ")
    return float(np.mean((y_true - y_pred) ** 2))
'''
WRONG_MSE = '''def mse(y_true, y_pred):
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError("shapes differ")
    return 0.0
'''
# Cheats that succeed only if the sandbox lets them through: then mse turns wrong (score 9, not 11).
IF_IT_WORKS_MSE_BREAKS = '''
try:
    {attempt}
    def mse(y_true, y_pred):
        return 0.0
except Exception:
    pass
'''

# name: (how the submission differs, expected score, expected status)
CASES = {
    "honest": ({}, 11, "graded"),
    "blank": ({"blank": True}, 0, "graded"),
    "partly_wrong": ({"mse": WRONG_MSE}, 9, "graded"),
    # coercion in the tests (float(...)) turns the object into a plain number
    "eq_always_true": ({"mse": "class Always(float):\n    def __eq__(self, other):\n        return True\n\n\n"
                               "def mse(y_true, y_pred):\n    if np.shape(y_true) != np.shape(y_pred):\n"
                               "        raise ValueError\n    return Always(0.0)\n"}, 9, "graded"),
    # the grader re-executes numpy.testing before each test cell
    "monkeypatch_testing": ({"mse": WRONG_MSE + "\nnp.testing.assert_allclose = lambda *a, **k: None\n"
                                    "import numpy.testing._private.utils as u\n"
                                    "u.assert_allclose = lambda *a, **k: None\n"},
                            9, "graded"),
    # nbgrader's Execute records the kernel's error reply even when no traceback was shown
    "suppressed_traceback": ({"mse": WRONG_MSE + "\nget_ipython().showtraceback = lambda *a, **k: None\n"},
                             9, "graded"),
    # nbgrader restores deleted (OverwriteCells.add_missing_cells), edited and duplicated test cells
    "deleted_test_cell": ({"delete": "test_mse"}, 11, "graded"),
    "edited_test_cell": ({"mse": WRONG_MSE, "edit": ("test_mse", "print('all good')", 100)}, 9, "graded"),
    "duplicated_ids": ({"duplicate": "test_mse"}, 11, "graded"),
    # per-cell timeout, then the interrupt (by message: a signal would reach bwrap): the kernel
    # lives on and mse, defined before the loop, passes its tests
    "infinite_loop": ({"mse_extra": "while True:\n    pass\n"}, 11, "graded"),
    # a dead kernel costs the cells not yet run (ridge is the last part)
    "os_exit": ({"ridge_loss": "import os\n\nos._exit(1)\n"}, 8, "kernel stopped"),
    # address-space limit: MemoryError, the kernel lives on
    "memory_bomb": ({"kfold_indices": "hog = bytearray(64 * 2**30)\n"}, 8, "graded"),
    # process limit of the sandbox user; the wedged kernel is stopped after the timeout
    "fork_bomb": ({"ridge_loss": "import os\n\nwhile True:\n    os.fork()\n"}, 8, "kernel stopped"),
    # stderr output of correct code does not zero a test cell
    "warning": ({"mse": "import warnings\n\n\ndef mse(y_true, y_pred):\n"
                        "    warnings.warn('this is only a warning', UserWarning, stacklevel=1)\n"
                        + "\n".join(CORRECT_MSE.splitlines()[1:]) + "\n"}, 11, "graded"),
    # the sandbox hides solutions/, the gradebook, the rest of the disk; no network
    "read_solutions": ({"mse_extra": IF_IT_WORKS_MSE_BREAKS.format(
        attempt="open('{root}/solutions/ex01_intro_ml/ex01_intro_ml.ipynb').read()")}, 11, "graded"),
    "read_gradebook": ({"mse_extra": IF_IT_WORKS_MSE_BREAKS.format(
        attempt="open('{root}/grading/gradebook.db', 'rb').read()")}, 11, "graded"),
    "write_outside": ({"mse_extra": IF_IT_WORKS_MSE_BREAKS.format(
        attempt="open('{root}/pwned.txt', 'w').write('x')")}, 11, "graded"),
    "network": ({"mse_extra": IF_IT_WORKS_MSE_BREAKS.format(
        attempt="__import__('socket').create_connection(('1.1.1.1', 53), timeout=3)")}, 11, "graded"),
    # IPython turns SystemExit in a cell into an error output; the kernel goes on
    "sys_exit": ({"mse_extra": "import sys\n\nsys.exit()\n"}, 11, "graded"),
    # output is capped as it arrives
    "huge_print": ({"mse_extra": "print('x' * 100_000_000)\n"}, 11, "graded"),
    "invalid_json": ({"raw": "{ this is not json"}, 0, "error"),
}


def _submission(release: nbformat.NotebookNode, source: nbformat.NotebookNode, how: dict, root: Path):
    if "raw" in how:
        return how["raw"]
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    cells = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and not how.get("blank"):
            cell.source = how.get(grade_id, answers[grade_id])
            if grade_id == "mse" and "mse_extra" in how:
                cell.source = answers["mse"] + "\n" + how["mse_extra"].replace("{root}", str(root))
        if grade_id == how.get("delete"):
            continue
        if grade_id == (how.get("edit") or (None,))[0]:
            cell.source, cell.metadata["nbgrader"]["points"] = how["edit"][1], how["edit"][2]
        cells.append(cell)
        if grade_id == how.get("duplicate"):
            cells.append(nbformat.from_dict(json.loads(json.dumps(cell))))
    nb.cells = cells
    return json.dumps(nb, indent=1)  # not nbformat.writes: it would repair the duplicated cell id


def _cli(course: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "autograder", "--root", str(course), *args],
                            capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        raise AssertionError(f"autograder {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        pytest.fail(f"the sandbox must be available in CI (.ci/run installs bubblewrap): {exc}")
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    _cli(course, "release", ASSIGNMENT)
    release = nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    download = course / "lms_download.zip"
    with zipfile.ZipFile(download, "w") as archive:  # as Canvas names files: <student>_<ids>_<original name>
        for number, (name, (how, _, _)) in enumerate(CASES.items()):
            archive.writestr(f"{name.replace('_', '')}_{1000 + number}_{ASSIGNMENT}.ipynb",
                             _submission(release, source, how, course))
        archive.writestr("notes.txt", "not a notebook")
    collected = _cli(course, "collect", ASSIGNMENT, str(download))
    graded = _cli(course, "grade", ASSIGNMENT, "--timeout", "15")
    print(graded.stdout)
    _cli(course, "export", ASSIGNMENT, "--out", str(course / "exports"))
    feedback = _cli(course, "feedback", ASSIGNMENT)
    with (course / "exports" / f"{ASSIGNMENT}_grades.csv").open() as f:
        table = {row["student_id"]: row for row in csv.DictReader(f)}
    return {"course": course, "table": table, "collected": collected.stdout, "feedback": feedback.stdout}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_score_and_status(graded, name):
    _, score, status = CASES[name]
    row = graded["table"][name.replace("_", "")]
    assert float(row["score"]) == score, f"{name}: scored {row['score']}, expected {score} ({row['reason']})"
    assert row["status"] == status, f"{name}: status {row['status']!r}, expected {status!r} ({row['reason']})"


@pytest.mark.slow
def test_collect_reports_unmatched_files(graded):
    assert "unmatched: notes.txt" in graded["collected"]
    assert f"imported {len(CASES)} submission(s)" in graded["collected"]


@pytest.mark.slow
def test_nothing_escaped_the_sandbox(graded):
    course = graded["course"]
    assert not (course / "pwned.txt").exists(), "a submission wrote outside its folder"
    huge = course / "grading" / "autograded" / "hugeprint" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert huge.stat().st_size < 1_000_000, f"the 100 MB print reached the notebook ({huge.stat().st_size} bytes)"


@pytest.mark.slow
def test_feedback_hides_hidden_tests(graded):
    course = graded["course"]
    pages = sorted((course / "grading" / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) >= len(CASES) - 1, "every gradable submission gets a feedback page"
    secret = secret_lines(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                          course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", regions=("HIDDEN TESTS",))
    assert len(secret) > 10, "the check needs hidden lines to look for"
    graded_source = (course / "grading" / "autograded" / "honest" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert any(line in graded_source for line in secret), "the graded notebook holds them: this check can fail"
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))  # the text a student reads
        own = course / "grading" / "submitted" / page.parent.parent.name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        written_by_student = own.read_text() if own.exists() else ""
        shown = [line for line in secret if line in text and line not in written_by_student]
        assert not shown, f"{page.parent.parent.name}'s feedback shows hidden lines: {shown[:3]}"
        assert "BEGIN HIDDEN TESTS" not in text


def test_grade_refuses_without_sandbox(tmp_path, monkeypatch, capsys):
    from autograder import __main__ as cli

    def unavailable():
        raise sandbox.SandboxUnavailable("bwrap not found")

    monkeypatch.setattr(sandbox, "check_available", unavailable)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    (tmp_path / "solutions" / ASSIGNMENT).mkdir(parents=True)
    cwd = os.getcwd()
    try:
        assert cli.main(["--root", str(tmp_path), "grade", ASSIGNMENT]) == 2
    finally:
        os.chdir(cwd)
    assert "--unsafe" in capsys.readouterr().err
