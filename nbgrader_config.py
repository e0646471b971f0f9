"""nbgrader configuration for the course (run ``nbgrader ...`` from the repository root).

Instructor sources live in ``solutions/``, generated student versions in
``exercises/``; everything that holds student work or grades lives under the
git-ignored ``grading/`` folder.
"""

import os

os.makedirs("grading", exist_ok=True)  # the gradebook's folder must exist before nbgrader opens it

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.root = os.getcwd()  # nbgrader reads this file from the course root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = "sqlite:///grading/gradebook.db"
# The course's id, stored with every assignment in the gradebook. nbgrader adds the course
# only for a non-empty id (its default is ""), and PostgreSQL, unlike SQLite, refuses an
# assignment whose course is missing: a PostgreSQL gradebook (README) needs this line.
c.CourseDirectory.course_id = "deep-learning"

# Late submissions. nbgrader's AssignLatePenalties (part of autograding) compares each
# submission's timestamp.txt, which `python -m autograder collect` writes, with the
# assignment's due date in the gradebook (collect records [tool.course.due] of pyproject.toml
# or its --due there; or `nbgrader db assignment add ASSIGNMENT --duedate="..."`). No due
# date, no penalty.
# "zero": a late notebook scores 0 (nbgrader's only built-in penalty; "none" records
# how late it was without a penalty; a gentler rule is a LateSubmissionPlugin subclass
# set as c.AssignLatePenalties.plugin_class).
c.LateSubmissionPlugin.penalty_method = "zero"

# Student versions: solution regions become this stub; hidden tests are removed.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ExecutePreprocessor.timeout = 300  # seconds per cell when autograding

# Student code is untrusted: autograde and feedback (also plain `nbgrader autograde`,
# `nbgrader generate_feedback` and formgrader's buttons) run kernels in the autograder's
# sandbox, undo tampering before each test cell, and build feedback from a run without
# hidden tests. Without the course package installed, nbgrader refuses to start here
# rather than run student code unsandboxed.
try:
    from autograder.course import configure
except ImportError as exc:
    raise SystemExit(
        "nbgrader_config.py: the course's autograder package is missing (pip install -e . in the repository); "
        "refusing to grade untrusted notebooks without its sandbox"
    ) from exc
configure(c)
