"""nbgrader integrity of every assignment in ``solutions/``.

For each assignment, in a scratch nbgrader course (nothing lands in the repository):

* ``nbgrader generate_assignment`` reproduces the committed student version in
  ``exercises/`` exactly, and that version contains no solution or hidden-test text;
* ``nbgrader autograde`` gives the solution full marks on every autograded cell, the
  blank student version zero on every autograded cell, and each known-wrong answer
  (``tests/wrong_variants/<assignment>.yaml``) loses exactly its function's points;
* every weekly exercise has a written answer graded by hand, with a rubric in its source,
  that the gradebook keeps for formgrader (its points, no automatic score);
* no answer cell asks for a function or class a lecture already defines (transfer, not
  transcription: the lecture's own function may be given to students, never graded).

Scores are printed per submission so a failing run shows the whole picture.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from filelock import FileLock

from autograder.execute import REVIEW
from autograder.release import leaks
from coursetools import ROOT, assignments, execute, notebooks

ASSIGNMENTS = assignments.names()
WEEKLY = [name for name in ASSIGNMENTS if re.fullmatch(r"ex\d\d_\w+", name)]
WRONG = ROOT / "tests" / "wrong_variants"


def wrong_variants(assignment: str) -> dict:
    path = WRONG / f"{assignment}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def answer_cell(key: str, variant: dict) -> str:
    """The answer cell a wrong variant replaces: its key, or `cell:` when a cell has several variants."""
    return variant.get("cell", key)


def answer_cells(nb) -> dict[str, str]:
    """Every cell a student answers in (code or written): grade id -> the instructor's answer."""
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
    }


def autograded_answer_ids(nb) -> set[str]:
    """Answer cells judged by test cells (code, not graded by hand themselves)."""
    return {
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
        and not c.metadata["nbgrader"].get("grade")
    }


def written_answers(nb) -> dict[str, float]:
    """Written answers graded by hand (markdown answer cells with points whose solution region
    holds a rubric): grade id -> points."""
    written = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution") and meta.get("points", 0) > 0:
            region = cell.source.partition("### BEGIN SOLUTION")[2].partition("### END SOLUTION")[0]
            if "Rubric" in region:
                written[meta["grade_id"]] = float(meta["points"])
    return written


def without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.strip().startswith("### "))


def answered(release_nb, answers: dict[str, str]):
    """The student version with some answer cells filled in, as a student would."""
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def grade(assignment: str, folder: Path) -> dict:
    """Generate the student version, submit solution, blank and wrong answers, autograde."""
    course = assignments.Course(folder)
    release = course.generate(assignment)
    sources = {p.name: nbformat.read(p, as_version=4) for p in assignments.source_notebooks(assignment)}
    releases = {name: nbformat.read(release / name, as_version=4) for name in sources}
    answers = {name: {k: without_markers(v) for k, v in answer_cells(nb).items()} for name, nb in sources.items()}

    submissions = {
        "solution": {name: answered(releases[name], answers[name]) for name in sources},
        "blank": releases,
    }
    for key, variant in wrong_variants(assignment).items():
        # answered() fills only the cells a notebook has, so the wrong answer lands in its own notebook.
        submissions[f"wrong-{key}"] = {
            name: answered(releases[name], {**answers[name], answer_cell(key, variant): variant["code"]})
            for name in sources
        }
    for student, notebooks in submissions.items():
        course.submit(assignment, student, notebooks)
    log = course.autograde(assignment)
    tests = {k: v for nb in sources.values() for k, v in assignments.autograded_tests(nb).items()}
    return {
        "release": str(release),
        "tests": tests,
        "scores": {student: course.scores(assignment, student) for student in submissions},
        "max_scores": course.max_scores(assignment, "solution"),
        "review": [line for line in log.splitlines() if REVIEW in line],
    }


@pytest.fixture(scope="module")
def graded(request):
    """The grading results of one assignment, computed once per run whichever
    pytest-xdist worker asks first (the others wait for it and read the result)."""
    assignment = request.param
    folder = execute.run_dir() / "grading" / assignment
    results_file = folder.with_suffix(".json")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not results_file.exists():
            results_file.write_text(json.dumps(grade(assignment, folder)))
    results = json.loads(results_file.read_text())
    sources = {p.name: nbformat.read(p, as_version=4) for p in assignments.source_notebooks(assignment)}
    return {**results, "assignment": assignment, "release": Path(results["release"]), "sources": sources}


@pytest.mark.parametrize("graded", ASSIGNMENTS, indirect=True)
def test_committed_release_is_regenerated_identically(graded):
    committed = ROOT / "exercises" / graded["assignment"]
    generated = sorted(p.relative_to(graded["release"]) for p in graded["release"].rglob("*") if p.is_file())
    in_repo = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert generated == in_repo, f"files differ: generated {generated}, committed {in_repo}"
    for rel in generated:
        new, old = graded["release"] / rel, committed / rel
        if rel.suffix == ".ipynb":
            same = nbformat.read(new, as_version=4) == nbformat.read(old, as_version=4)
        else:
            same = new.read_bytes() == old.read_bytes()
        assert same, f"exercises/{graded['assignment']}/{rel} is stale: run `python -m autograder release`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_version_leaks_nothing(assignment):
    # The release command's own check: no marker, and no line that the source has only inside a
    # solution or hidden-test region (a line students also get elsewhere, like a def, is no secret).
    found = leaks(ROOT / "exercises" / assignment, ROOT / "solutions" / assignment)
    assert not found, f"the student version leaks: {found}"


@pytest.mark.parametrize("graded", ASSIGNMENTS, indirect=True)
def test_honest_submissions_are_not_flagged(graded):
    """nbgrader_config.py puts plain `nbgrader autograde` in the sandbox with the tamper guard:
    the solution, the blank version and every wrong variant (honest code all) raise no flag."""
    assert graded["review"] == [], "\n".join(graded["review"][:5])


@pytest.mark.parametrize("graded", ASSIGNMENTS, indirect=True)
def test_solution_gets_full_marks(graded):
    scores = graded["scores"]["solution"]
    lost = {t: scores.get(t) for t, points in graded["tests"].items() if scores.get(t) != points}
    assert not lost, f"the solution loses points on {lost} (max {graded['tests']})"


@pytest.mark.parametrize("graded", ASSIGNMENTS, indirect=True)
def test_blank_student_version_scores_zero(graded):
    scores = graded["scores"]["blank"]
    earned = {t: scores.get(t) for t in graded["tests"] if scores.get(t)}
    assert not earned, f"the unanswered student version earns points on {earned}"


@pytest.mark.parametrize("graded", ASSIGNMENTS, indirect=True)
def test_each_wrong_answer_loses_exactly_its_points(graded):
    variants = wrong_variants(graded["assignment"])
    autograded_answers = set().union(*(autograded_answer_ids(nb) for nb in graded["sources"].values()))
    missing = autograded_answers - {answer_cell(key, variant) for key, variant in variants.items()}
    assert not missing, f"no known-wrong variant for {sorted(missing)} in tests/wrong_variants/"
    for key, variant in variants.items():
        scores = graded["scores"][f"wrong-{key}"]
        expected = {t: (0.0 if t in variant["loses"] else p) for t, p in graded["tests"].items()}
        got = {t: scores.get(t) for t in graded["tests"]}
        assert got == expected, f"wrong {key}: expected {expected}, got {got}"


@pytest.mark.parametrize("graded", WEEKLY, indirect=True)
def test_weekly_exercise_has_a_written_answer_graded_by_hand(graded):
    """At least one written question with a rubric in the source, and after autograding the
    gradebook lists its answer with its points and no automatic score: it waits for formgrader."""
    written = {k: v for nb in graded["sources"].values() for k, v in written_answers(nb).items()}
    assert written, f"{graded['assignment']} has no written answer graded by hand with a rubric"
    scores, max_scores = graded["scores"]["solution"], graded["max_scores"]
    for grade_id, points in written.items():
        assert grade_id in scores, f"the gradebook does not list the written answer {grade_id}"
        assert max_scores[grade_id] == points, f"{grade_id}: max_score {max_scores[grade_id]}, expected {points}"
        assert scores[grade_id] is None, f"{grade_id} was scored automatically ({scores[grade_id]}), not by hand"


def defined_names(source: str) -> set[str]:
    """Functions and classes a cell defines (at any depth)."""
    tree = ast.parse(without_markers(source))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def lecture_definitions() -> dict[str, list[str]]:
    """Every function or class name a lecture defines -> the lectures that define it."""
    found: dict[str, list[str]] = {}
    for path in notebooks.lectures():
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                for name in defined_names(cell.source):
                    found.setdefault(name, []).append(path.stem)
    return found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_answer_repeats_a_lecture_function(assignment):
    """A student's answer cell never asks for a function or class of the same name as one a lecture
    defines: graded work is transfer, and a lecture's function is at most given code or a warm-up."""
    lectures = lecture_definitions()
    repeats = []
    for path in assignments.source_notebooks(assignment):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                grade_id = cell.metadata["nbgrader"]["grade_id"]
                repeats += [f"{path.name} {grade_id}: {name} (lecture {', '.join(sorted(set(lectures[name])))})"
                            for name in sorted(defined_names(cell.source) & lectures.keys())]
    assert not repeats, "answer cells that repeat a lecture's function:\n" + "\n".join(repeats)
