"""Feedback: per-student HTML that shows no hidden test, however the submission tried.

nbgrader's ``generate_feedback`` renders the autograded notebook as it is: hidden tests
in the cells and, in the outputs, whatever the student's code printed while the hidden
tests ran in its kernel (a hook that prints every executed cell, a function that puts
its caller's source in an error message). Removing lines afterwards cannot catch an
encoded copy. So the page a student receives is built from a *second* run
(:class:`autograder.execute.PublicRun`, in nbgrader's own feedback converter through
:func:`autograder.course.configure`): the hidden-test regions are deleted and the outputs
cleared before a fresh sandboxed kernel executes the notebook, so no output on the page
comes from a process that ever held a hidden test. The scores on the page are the
graded run's, from the gradebook. Runs are spread over a process pool like grading.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from autograder.course import Course, put_environment_first, quiet_gradebook
from autograder.grade import Job, kernel_config, read_records


def feedback_for(job: Job) -> tuple[str, str]:
    """Write one student's feedback (runs in a worker process); return (student, error or '')."""
    put_environment_first()
    quiet_gradebook()
    course = Course(job.root)
    private = tempfile.mkdtemp(prefix="autograder-feedback-")
    os.environ["AUTOGRADER_TMP"] = private
    try:
        config = kernel_config(course, job)
        result = course.api(config).generate_feedback(job.assignment, job.student, force=True)
        if not result["success"]:
            return job.student, (result.get("error") or result.get("log") or "").strip().splitlines()[-1:][0]
        return job.student, ""
    except Exception as exc:  # one student's failure never stops the class's feedback
        return job.student, f"{type(exc).__name__}: {exc}"
    finally:
        os.environ.pop("AUTOGRADER_TMP", None)
        shutil.rmtree(private, ignore_errors=True)


def generate(course: Course, assignment: str, students: list[str] | None = None, workers: int | None = None,
             progress: bool = True, **job_options) -> tuple[list[Path], dict[str, str]]:
    """Write feedback HTML for the graded students; return (pages written, {student: error})."""
    graded = read_records(course, assignment)
    names = students or sorted(s for s, r in graded.items() if (course.autograded / s / assignment).is_dir())
    jobs = [Job(str(course.root), assignment, s, **job_options) for s in names]
    errors: dict[str, str] = {}
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for student, error in tqdm(pool.map(feedback_for, jobs), total=len(jobs), unit="student",
                                   disable=not progress):
            if error:
                errors[student] = error
    pages = sorted(p for s in names for p in (course.feedback / s / assignment).glob("*.html"))
    return pages, errors
