"""Feedback: per-student HTML from the autograded notebooks, with hidden tests removed.

nbgrader's ``generate_feedback`` renders the autograded notebook as it is, hidden tests
included, and a failing hidden assertion shows its source line and the expected values
in the traceback. :class:`HideHiddenTests` runs inside nbgrader's feedback converter
and, in every test cell, deletes the hidden region and replaces the traceback of an
error raised there by a short notice.
"""

from __future__ import annotations

import re
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor

from autograder.course import Course

ANSI = re.compile(r"\x1b\[[0-9;]*m")
WITHHELD = "A hidden test failed. Its code and values are not shown; check your function on other inputs."


def _hidden_region(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if "### BEGIN HIDDEN TESTS" in line:
            inside = True
        elif "### END HIDDEN TESTS" in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


class HideHiddenTests(NbGraderPreprocessor):
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        hidden = _hidden_region(cell.source)
        if not hidden:
            return cell, resources
        cell, resources = ClearHiddenTests(enforce_metadata=False).preprocess_cell(cell, resources, index)
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                shown = ANSI.sub("", "\n".join(output.traceback))
                if any(line in shown for line in hidden) or not any(
                        line.strip() and line.strip() in shown for line in cell.source.splitlines()):
                    output.ename, output.evalue, output.traceback = "HiddenTestFailed", WITHHELD, [WITHHELD]
        return cell, resources


def generate(course: Course, assignment: str, student: str | None = None) -> list[Path]:
    """Write feedback HTML for one or all graded students; return the files written."""
    config = course.config()
    config.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
    api = course.api(config)
    result = api.generate_feedback(assignment, student, force=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_feedback failed:\n{result.get('error') or result.get('log')}")
    pattern = f"{student or '*'}/{assignment}/*.html"
    return sorted(course.feedback.glob(pattern))
