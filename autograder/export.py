"""Export and report: grades as CSV files, and a summary with a grade-distribution plot.

Scores come from nbgrader's gradebook; the status and reason of each submission from
the grading records, so every collected submission appears, graded or not.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograder.course import Course
from autograder.grade import read_records, students


def rows(course: Course, assignment: str) -> tuple[list[dict], list[str]]:
    """One row per collected student: id, status, reason, total, max and each graded cell's score."""
    records = read_records(course, assignment)
    names = sorted(set(students(course, assignment)) | set(records))
    out, cells = [], []
    with Gradebook(course.db_url) as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            cells += [f"{nb.name}:{cell.name}" for cell in nb.grade_cells]
        for student in names:
            record = records.get(student)
            row = {"student_id": student, "status": record.status if record else "not graded",
                   "reason": record.reason if record else "", "score": 0.0,
                   "max_score": gb.find_assignment(assignment).max_score}
            try:
                submission = gb.find_submission(assignment, student)
                row["score"] = float(submission.score)
                for nb in submission.notebooks:
                    for grade in nb.grades:
                        row[f"{nb.name}:{grade.name}"] = grade.score
            except MissingEntry:
                pass
            out.append(row)
    return out, cells


def export(course: Course, assignment: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<assignment>_grades.csv`` (per student and cell) and ``<assignment>_lms.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table, cells = rows(course, assignment)
    detailed = out_dir / f"{assignment}_grades.csv"
    with detailed.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["student_id", "status", "reason", "score", "max_score", *cells], restval="")
        writer.writeheader()
        writer.writerows(table)
    lms = out_dir / f"{assignment}_lms.csv"
    with lms.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "total", "max"])
        writer.writerows([r["student_id"], f"{r['score']:g}", f"{r['max_score']:g}"] for r in table)
    return detailed, lms


def report(course: Course, assignment: str, out_dir: Path) -> tuple[str, Path]:
    """A text summary (mean, median, per-cell pass rates) and a histogram PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    table, cells = rows(course, assignment)
    if not table:
        raise ValueError(f"no submissions collected for {assignment}")
    scores = [r["score"] for r in table]
    maximum = table[0]["max_score"]
    lines = [f"{assignment}: {len(table)} submission(s), max {maximum:g} points",
             f"  mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g}, "
             f"min {min(scores):g}, max {max(scores):g}"]
    statuses = {s: sum(r["status"] == s for r in table) for s in sorted({r["status"] for r in table})}
    lines.append("  status: " + ", ".join(f"{s} {n}" for s, n in statuses.items()))
    with Gradebook(course.db_url) as gb:
        maxima = {f"{nb.name}:{c.name}": c.max_score for nb in gb.find_assignment(assignment).notebooks
                  for c in nb.grade_cells}
    lines.append("  per graded cell: full-marks rate")
    for cell in cells:
        full = sum(1 for r in table if r.get(cell) is not None and r.get(cell) >= maxima[cell])
        lines.append(f"    {cell:<40} {full / len(table):6.0%}")
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / f"{assignment}_distribution.png"
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=min(20, max(5, len(set(scores)))), range=(0, maximum), color="tab:blue", edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of students
    ax.set(title=f"{assignment}: distribution of total scores (n = {len(table)})",
           xlabel=f"score (out of {maximum:g})", ylabel="number of students")
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    return "\n".join(lines), figure
