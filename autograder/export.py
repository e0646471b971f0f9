"""Export and report: grades as CSV files, and a summary with a grade-distribution plot.

Scores come from nbgrader's gradebook, read as nbgrader reads them: every graded cell
(autograded tests, manually graded answers, task cells), extra credit included, and the
final score after nbgrader's late penalty (``max(0, score - late_submission_penalty)``,
as ``nbgrader export`` computes it). Whether a submission still waits for manual
grading comes from the gradebook too. The status, reason and ``needs_review`` of each
submission come from the grading records, and collect's notes from its records, so
every student collect saw appears, graded, refused or not graded yet.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from autograder import collect
from autograder.course import Course
from autograder.grade import read_records, students

COLUMNS = ["student_id", "status", "needs_review", "reason", "notes", "score", "max_score", "late_penalty",
           "manual_grading_pending"]


def _source_order(course: Course, assignment: str, notebook: str) -> dict[str, int]:
    """grade_id -> position in the source notebook (cells in the export read in notebook order)."""
    path = course.source / assignment / f"{notebook}.ipynb"
    try:
        cells = nbformat.read(path, as_version=4).cells
    except (OSError, ValueError):
        return {}
    return {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(cells)}


def graded_cells(course: Course, gb: Gradebook, assignment: str) -> dict[str, float]:
    """``notebook:cell`` -> max score, for every graded cell (grade cells and task cells)."""
    cells = {}
    for nb in sorted(gb.find_assignment(assignment).notebooks, key=lambda n: n.name):
        order = _source_order(course, assignment, nb.name)
        graded = sorted(nb.grade_cells + nb.task_cells, key=lambda c: (order.get(c.name, len(order)), c.name))
        cells.update({f"{nb.name}:{c.name}": float(c.max_score) for c in graded})
    return cells


def rows(course: Course, assignment: str) -> tuple[list[dict], list[str]]:
    """One row per student collect saw or grade graded (``COLUMNS`` and each graded cell's score;
    a cell not scored yet is None)."""
    records = read_records(course, assignment)
    collected = collect.read_records(course, assignment)
    names = sorted(set(students(course, assignment)) | set(records) | set(collected))
    out = []
    with course.gradebook() as gb:
        cells = graded_cells(course, gb, assignment)
        maximum = float(gb.find_assignment(assignment).max_score)
        for student in names:
            seen, record = collected.get(student), records.get(student)
            row = {"student_id": student, "status": "not graded", "needs_review": "", "reason": "",
                   "notes": "; ".join(seen.notes) if seen else "", "score": 0.0, "max_score": maximum,
                   "late_penalty": 0.0, "manual_grading_pending": "no"}
            out.append(row)
            if seen and seen.status != "collected":
                row.update(status="refused", reason=seen.reason)
                continue
            if record is None:
                row["reason"] = "collected, not graded yet"
                continue
            if seen and seen.fingerprint and record.fingerprint and seen.fingerprint != record.fingerprint:
                row["reason"] = "collected again since it was graded: run grade"
                continue
            row.update(status=record.status, reason=record.reason, needs_review=record.needs_review)
            try:
                submission = gb.find_submission(assignment, student)
            except MissingEntry:
                continue
            penalty = float(submission.late_submission_penalty or 0.0)
            row.update(score=max(0.0, float(submission.score) - penalty), late_penalty=penalty,
                       manual_grading_pending="yes" if submission.needs_manual_grade else "no")
            for nb in submission.notebooks:
                for grade in nb.grades:
                    unscored = grade.auto_score is None and grade.manual_score is None
                    row[f"{nb.name}:{grade.name}"] = None if unscored else float(grade.score)
    return out, list(cells)


def _number(value) -> str:
    return "" if value is None else f"{value:g}"


def export(course: Course, assignment: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<assignment>_grades.csv`` (per student and cell) and ``<assignment>_lms.csv``
    (student id, final score, maximum)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table, cells = rows(course, assignment)
    detailed = out_dir / f"{assignment}_grades.csv"
    with detailed.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS + cells, restval="")  # a key not in the header fails, never dropped
        writer.writeheader()
        for row in table:
            writer.writerow({k: _number(v) if isinstance(v, float) or v is None else v for k, v in row.items()})
    lms = out_dir / f"{assignment}_lms.csv"
    with lms.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "total", "max"])
        writer.writerows([r["student_id"], _number(r["score"]), _number(r["max_score"])] for r in table)
    return detailed, lms


def report(course: Course, assignment: str, out_dir: Path) -> tuple[str, Path]:
    """A text summary (mean, median, statuses, pending manual grading, submissions to review,
    per-cell full-marks rates) and a histogram PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    table, cells = rows(course, assignment)
    if not table:
        raise ValueError(f"no submissions collected for {assignment}")
    scores = [r["score"] for r in table]
    maximum = table[0]["max_score"]
    lines = [f"{assignment}: {len(table)} submission(s), max {maximum:g} points (final scores, after late penalties)",
             f"  mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g}, "
             f"min {min(scores):g}, max {max(scores):g}"]
    statuses = {s: sum(r["status"] == s for r in table) for s in sorted({r["status"] for r in table})}
    lines.append("  status: " + ", ".join(f"{s} {n}" for s, n in statuses.items()))
    pending = [r["student_id"] for r in table if r["manual_grading_pending"] == "yes"]
    lines.append(f"  manual grading pending: {len(pending)}" + (
        f" ({', '.join(pending)}): grade in formgrader, then export again (their scores are not final)"
        if pending else ""))
    review = [r["student_id"] for r in table if r["needs_review"]]
    lines.append(f"  needs review: {len(review)}" + (f" ({', '.join(review)})" if review else ""))
    with course.gradebook() as gb:
        maxima = graded_cells(course, gb, assignment)
    lines.append("  per graded cell: full-marks rate")
    for cell in cells:
        full = sum(1 for r in table if r.get(cell) is not None and r[cell] >= maxima[cell])
        lines.append(f"    {cell:<40} {full / len(table):6.0%}")
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / f"{assignment}_distribution.png"
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=min(20, max(5, len(set(scores)))), range=(0, max(maximum, 1)), color="tab:blue",
            edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of students
    ax.set(title=f"{assignment}: distribution of total scores (n = {len(table)})",
           xlabel=f"score (out of {maximum:g})", ylabel="number of students")
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    return "\n".join(lines), figure
