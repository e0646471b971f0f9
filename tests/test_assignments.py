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
  transcription: the lecture's own function may be given to students, never graded);
* a behaviour task (``tests/behaviour/<assignment>.yaml``: a test cell that trains the
  student's model and checks an outcome band) passes for the solution on nearly every seed
  and for its known-wrong variants on almost none: the pass rates are measured by re-running
  the test cell with ``seed = 0, 1, 2, ...`` and printed at the end of the run.

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
from coursetools import ROOT, assignments, execute
from coursetools.notebooks import lectures

ASSIGNMENTS = assignments.names()
WEEKLY = [name for name in ASSIGNMENTS if re.fullmatch(r"ex\d\d_\w+", name)]
WRONG = ROOT / "tests" / "wrong_variants"
BEHAVIOUR = ROOT / "tests" / "behaviour"
BEHAVIOURAL = sorted(p.stem for p in BEHAVIOUR.glob("*.yaml"))
SEED_LINE = r"^seed = 0$"  # the line of a behaviour test cell that the pass-rate runs replace


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
    """Functions and classes a cell defines for the notebook: at the top level, also inside an
    ``if``/``try``/``with``/``for``, but not methods or nested helpers (a transformer class's ``fit``
    or ``__init__`` is not a lecture's function)."""
    names, todo = set(), list(ast.parse(without_markers(source)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        else:
            todo += [child for child in ast.iter_child_nodes(node) if isinstance(child, (ast.stmt, ast.excepthandler))]
    return names


def test_defined_names_are_the_notebook_level_ones():
    source = "def f():\n    def inner(): pass\nclass C:\n    def __init__(self): pass\nif True:\n    def g(): pass\n"
    assert defined_names(source) == {"f", "C", "g"}


def lecture_definitions() -> dict[str, list[str]]:
    """Every function or class name a lecture defines -> the lectures that define it."""
    found: dict[str, list[str]] = {}
    for path in lectures():
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                for name in defined_names(cell.source):
                    found.setdefault(name, []).append(path.stem)
    return found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_answer_repeats_a_lecture_function(assignment):
    """A student's answer cell never asks for a function or class of the same name as one a lecture
    defines: graded work is transfer, and a lecture's function is at most given code or a warm-up."""
    defined = lecture_definitions()
    repeats = []
    for path in assignments.source_notebooks(assignment):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                grade_id = cell.metadata["nbgrader"]["grade_id"]
                repeats += [
                    f"{path.name} {grade_id}: {name} (lecture {', '.join(sorted(set(defined[name])))})"
                    for name in sorted(defined_names(cell.source) & defined.keys())
                ]
    assert not repeats, "answer cells that repeat a lecture's function:\n" + "\n".join(repeats)


def seed_loop(test_source: str, seeds: int) -> str:
    """A cell that runs a test cell's code once per seed, each time in a copy of the notebook's
    namespace, and prints one outcome per seed (an error other than a failed assertion is a fail too)."""
    return f"""import json, re, time
_outcomes, _seconds = [], []
for _seed in range({seeds}):
    _code = re.sub({SEED_LINE!r}, f"seed = {{_seed}}", {test_source!r}, flags=re.M)
    _start = time.perf_counter()
    try:
        exec(_code, dict(globals()))
        _outcomes.append("pass")
    except Exception as _error:
        _outcomes.append(f"{{type(_error).__name__}}: {{str(_error)[:120]}}")
    _seconds.append(time.perf_counter() - _start)
print("PASS-RATE-RUNS", json.dumps({{"outcomes": _outcomes, "seconds": _seconds}}))"""


def pass_rate(source_nb, answers: dict[str, str], test_id: str, seeds: int, folder: Path) -> dict:
    """Run a notebook's code cells before ``test_id`` with ``answers`` (test cells skipped), then
    the test cell once per seed; return its outcomes and seconds per run."""
    cells = []
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("grade_id") == test_id:
            assert re.search(SEED_LINE, cell.source, re.M), f"{test_id} has no line `seed = 0`"
            cells.append(nbformat.v4.new_code_cell(seed_loop(without_markers(cell.source), seeds)))
            break
        if not (meta.get("grade") and not meta.get("solution")):
            cells.append(nbformat.v4.new_code_cell(without_markers(answers.get(meta.get("grade_id"), cell.source))))
    else:
        raise AssertionError(f"no test cell {test_id}")
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=source_nb.metadata), folder / "runs.ipynb")
    record = execute.execute(folder / "runs.ipynb", folder / "executed.ipynb", mode="student")
    assert record.ok, f"the pass-rate runs did not complete: {record.error}"
    last = nbformat.read(folder / "executed.ipynb", as_version=4).cells[-1]
    printed = "".join(o.get("text", "") for o in last.outputs if o.get("name") == "stdout")
    return json.loads(printed.rpartition("PASS-RATE-RUNS ")[2])  # after whatever the test cell prints


@pytest.mark.slow
@pytest.mark.parametrize("assignment", BEHAVIOURAL)
def test_behaviour_task_pass_rates(assignment, tmp_path):
    """The model solution of a behaviour task passes its test on at least ``min_solution_pass_rate``
    of the seeds, and each known-wrong variant of a cell the test grades on at most ``max_wrong_pass_rate``."""
    spec = yaml.safe_load((BEHAVIOUR / f"{assignment}.yaml").read_text())
    test_id = spec["test"]
    sources = [nbformat.read(p, as_version=4) for p in assignments.source_notebooks(assignment)]
    source = next(nb for nb in sources if test_id in assignments.autograded_tests(nb))
    answers = {k: without_markers(v) for k, v in answer_cells(source).items()}
    runs = {"solution": pass_rate(source, answers, test_id, spec["seeds"], tmp_path / "solution")}
    for key, variant in wrong_variants(assignment).items():
        if test_id in variant["loses"]:
            wrong = {**answers, answer_cell(key, variant): variant["code"]}
            runs[f"wrong-{key}"] = pass_rate(source, wrong, test_id, spec["wrong_seeds"], tmp_path / key)
    assert len(runs) > 1, f"no known-wrong variant loses {test_id}"
    rates = {name: run["outcomes"].count("pass") / len(run["outcomes"]) for name, run in runs.items()}
    lines = [f"{test_id}: pass rate over seeds, mean seconds per run (one test cell, training included)"]
    for name, run in runs.items():
        passed, n = run["outcomes"].count("pass"), len(run["outcomes"])
        lines.append(f"  {name:<34} {passed:>3}/{n:<3} {rates[name]:>6.0%}   {sum(run['seconds']) / n:6.1f} s")
    summaries = execute.run_dir() / "summaries"
    summaries.mkdir(exist_ok=True)
    (summaries / f"behaviour task pass rates: {assignment}.txt").write_text("\n".join(lines) + "\n")
    failures = {o for o in runs["solution"]["outcomes"] if o != "pass"}
    assert rates["solution"] >= spec["min_solution_pass_rate"], "\n".join([*lines, *sorted(failures)])
    too_lenient = {n: r for n, r in rates.items() if n != "solution" and r > spec["max_wrong_pass_rate"]}
    assert not too_lenient, "\n".join(lines)
