"""Red team: grade honest and hostile submissions through the autograder's CLI.

One scratch course holds ex01_intro_ml (13 points: split 3, k-fold 3, Laplace NLL 3, CV ridge 4).
Each submission below is the student version with the answers filled in, then bent
in one hostile way; the test asserts the exact score, status and "needs review"
finding the grader gives it, and that the attack left no trace outside the
submission's own folder: no host file read, written, linked or chmodded, no hidden
test in any feedback page, nothing left behind in the grader's temporary folder.
Which mechanism stops each attack is said next to it (and in the README).

The whole suite runs twice when the tests run as root: once grading as root (kernels
under uids of their own) and once as an ordinary user (uid 65534, kernels in a user
namespace), the two ways the grader runs.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import sandbox
from autograder.release import secret_lines
from coursetools import ROOT

ASSIGNMENT = "ex01_intro_ml"
CORRECT_LAPLACE = '''def laplace_nll(y_true, y_pred, b=None):
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError("shapes differ")
    r = np.abs(y_true - y_pred)
    if b is None:
        b = r.mean()
        if b == 0:
            raise ValueError("all residuals are zero")
    elif b <= 0:
        raise ValueError("b must be positive")
    return float(r.size * np.log(2 * b) + r.sum() / b)
'''
WRONG_LAPLACE = '''def laplace_nll(y_true, y_pred, b=None):
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError("shapes differ")
    return 0.0
'''
# Cheats that succeed only if the sandbox lets them through: then laplace_nll turns wrong (score 10, not 13).
IF_IT_WORKS_LAPLACE_BREAKS = """
try:
    {attempt}
    def laplace_nll(y_true, y_pred, b=None):
        return 0.0
except Exception:
    pass
"""
# The kernel plants links in its working folder and replaces its own notebook by one.
PLANT_LINKS = """
import os
for _name, _target in [("ex01_intro_ml.ipynb", "{secret}"), ("notes.txt", "{secret}"),
                       ("x.txt", "{root}/solutions/ex01_intro_ml/ex01_intro_ml.ipynb"),
                       ("y.txt", "{root}/grading/gradebook.db"), ("extra.ipynb", "{secret}")]:
    try:
        if os.path.lexists(_name):
            os.remove(_name)
        os.symlink(_target, _name)
    except OSError:
        pass
"""
# Any notebook the kernel can read that holds hidden tests (its own working copy, say).
READ_HIDDEN = """
import glob
_found = [p for pattern in ("/tmp/**/*.ipynb", "/submission/**/*.ipynb", "{root}/**/*.ipynb")
          for p in glob.glob(pattern, recursive=True) if "BEGIN HIDDEN" in open(p, errors="ignore").read()]
if _found:
    def laplace_nll(y_true, y_pred, b=None):
        return 0.0
"""
# Leaks: the code of every cell the kernel runs, and the source of whatever calls laplace_nll
# (a hidden test), base64-encoded so that no redaction by text could catch it.
LEAK_EVERY_CELL = """
import base64
def _leak(info):
    print("LEAK:" + base64.b64encode(info.raw_cell.encode()).decode())
get_ipython().events.register("pre_run_cell", _leak)
"""
LEAK_CALLER = CORRECT_LAPLACE.replace('    y_true = np.asarray', """    import base64, linecache, sys
    _caller = sys._getframe(1).f_code.co_filename
    print("LEAK:" + base64.b64encode("".join(linecache.getlines(_caller)).encode()).decode())
    y_true = np.asarray""")
# Blank answers, and every later cell wrapped in try/except so that nothing fails.
SWALLOW_AST = """
import ast
class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(_Swallow())
"""
SWALLOW_INPUT = """
def _swallow(lines):
    return ["try:\\n"] + ["    " + line for line in lines] + ["\\n    pass\\nexcept BaseException:\\n    pass\\n"]
get_ipython().input_transformers_post.append(_swallow)
"""
# A pre_run_cell callback that puts the transformer back before every cell.
SWALLOW_EVERY_TIME = SWALLOW_AST + """
def _again(info):
    if not any(isinstance(t, _Swallow) for t in get_ipython().ast_transformers):
        get_ipython().ast_transformers.append(_Swallow())
get_ipython().events.register("pre_run_cell", _again)
"""
FILL_DISK = IF_IT_WORKS_LAPLACE_BREAKS.format(attempt="""for _i in range(10):
        with open(f"big{_i}.bin", "wb") as _f:
            _f.write(b"x" * 90 * 2**20)""")

# name: (how the submission differs, expected score, expected status, expected "needs review" text or None)
CASES = {
    "honest": ({}, 13, "graded", None),
    "blank": ({"blank": True}, 0, "graded", None),
    "partly_wrong": ({"laplace_nll": WRONG_LAPLACE}, 10, "graded", None),
    # coercion in the tests (float(...)) turns the object into a plain number
    "eq_always_true": ({"laplace_nll": "class Always(float):\n    def __eq__(self, other):\n        return True\n\n\n"
                                       "def laplace_nll(y_true, y_pred, b=None):\n"
                                       "    if np.shape(y_true) != np.shape(y_pred):\n"
                                       "        raise ValueError\n    return Always(0.0)\n"}, 10, "graded", None),
    # the guard re-executes numpy.testing before each test cell
    "monkeypatch_testing": ({"laplace_nll": WRONG_LAPLACE + "\nnp.testing.assert_allclose = lambda *a, **k: None\n"
                                    "import numpy.testing._private.utils as u\n"
                                    "u.assert_allclose = lambda *a, **k: None\n"},
                            10, "graded", "uses testing functions replaced"),
    # nbgrader's Execute records the kernel's error reply; the guard puts the method back
    "suppressed_traceback": ({"laplace_nll": WRONG_LAPLACE + "\nget_ipython().showtraceback = lambda *a, **k: None\n"},
                             10, "graded", "shell method showtraceback replaced"),
    # nbgrader restores deleted (OverwriteCells.add_missing_cells), edited and duplicated test cells
    "deleted_test_cell": ({"delete": "test_laplace_nll"}, 13, "graded", None),
    "edited_test_cell": ({"laplace_nll": WRONG_LAPLACE, "edit": ("test_laplace_nll", "print('all good')", 100)},
                         10, "graded", None),
    "duplicated_ids": ({"duplicate": "test_laplace_nll"}, 13, "graded", None),
    # per-cell timeout, then the interrupt (by message: a signal would reach bwrap): the kernel
    # lives on and laplace_nll, defined before the loop, passes its tests
    "infinite_loop": ({"laplace_nll_extra": "while True:\n    pass\n"}, 13, "graded", None),
    # a dead kernel costs the cells not yet run (the CV ridge errors are the last part)
    "os_exit": ({"cv_ridge_errors": "import os\n\nos._exit(1)\n"}, 9, "kernel stopped", None),
    # address-space limit: MemoryError, the kernel lives on
    "memory_bomb": ({"kfold_indices": "hog = bytearray(64 * 2**30)\n"}, 10, "graded", None),
    # process limit of the sandbox user; the wedged kernel is stopped after the timeout
    "fork_bomb": ({"cv_ridge_errors": "import os\n\nwhile True:\n    os.fork()\n"}, 9, "kernel stopped", None),
    # stderr output of correct code does not zero a test cell
    "warning": ({"laplace_nll": "import warnings\n\n\ndef laplace_nll(y_true, y_pred, b=None):\n"
                        "    warnings.warn('this is only a warning', UserWarning, stacklevel=1)\n"
                        + "\n".join(CORRECT_LAPLACE.splitlines()[1:]) + "\n"}, 13, "graded", None),
    # the sandbox hides solutions/, the gradebook, the rest of the disk; no network
    "read_solutions": ({"laplace_nll_extra": IF_IT_WORKS_LAPLACE_BREAKS.format(
        attempt="open('{root}/solutions/ex01_intro_ml/ex01_intro_ml.ipynb').read()")}, 13, "graded", None),
    "read_gradebook": ({"laplace_nll_extra": IF_IT_WORKS_LAPLACE_BREAKS.format(
        attempt="open('{root}/grading/gradebook.db', 'rb').read()")}, 13, "graded", None),
    "read_secret": ({"laplace_nll_extra": IF_IT_WORKS_LAPLACE_BREAKS.format(attempt="open('{secret}').read()")},
                    13, "graded", None),
    "write_outside": ({"laplace_nll_extra": IF_IT_WORKS_LAPLACE_BREAKS.format(
        attempt="open('{root}/pwned.txt', 'w').write('x')")}, 13, "graded", None),
    "network": ({"laplace_nll_extra": IF_IT_WORKS_LAPLACE_BREAKS.format(
        attempt="__import__('socket').create_connection(('1.1.1.1', 53), timeout=3)")}, 13, "graded", None),
    # the kernel works in a copy in its own /tmp: the grader never writes or reads through its links
    "plant_links": ({"laplace_nll_extra": PLANT_LINKS}, 13, "graded", None),
    # the kernel never sees a notebook: the grader's copy (with the hidden tests) stays outside
    "read_hidden_tests": ({"laplace_nll_extra": READ_HIDDEN}, 13, "graded", None),
    # /tmp (work folder included) is a size-limited tmpfs: the disk fills at 512 MB
    "fill_disk": ({"laplace_nll_extra": FILL_DISK}, 13, "graded", None),
    # feedback comes from a run without hidden tests (see test_feedback_shows_no_hidden_test)
    "leak_every_cell": ({"laplace_nll_extra": LEAK_EVERY_CELL}, 13, "graded",
                        "event callbacks (pre_run_cell) registered"),
    "leak_caller": ({"laplace_nll": LEAK_CALLER}, 13, "graded", "uses frames or the interpreter's caches"),
    # the guard undoes tampering before each test cell, and flags it
    "swallow_ast": ({"blank": True, "train_val_test_split": SWALLOW_AST}, 0, "graded", "AST transformers added"),
    "swallow_input": ({"blank": True, "train_val_test_split": SWALLOW_INPUT}, 0, "graded", "input transformers added"),
    "swallow_every_time": ({"blank": True, "train_val_test_split": SWALLOW_EVERY_TIME}, 0, "graded",
                           "event callbacks (pre_run_cell) registered"),
    "trace_hook": ({"laplace_nll_extra": "import sys\nsys.settrace(lambda *a: None)\n"}, 13, "graded",
                   "trace hook (sys.settrace)"),
    "builtin_replaced": ({"laplace_nll_extra": "import builtins\nbuiltins.round = lambda *a: 0\n"}, 13, "graded",
                         "builtin round replaced"),
    # TensorFlow's start-up lines (C++ logging, CUDA probes) never reach the feedback page
    "tensorflow_noise": ({"laplace_nll_extra": "import tensorflow as tf\n\nprint(float(tf.reduce_sum(tf.ones(3))))\n"},
                         13, "graded", None),
    # IPython turns SystemExit in a cell into an error output; the kernel goes on
    "sys_exit": ({"laplace_nll_extra": "import sys\n\nsys.exit()\n"}, 13, "graded", None),
    # output is capped as it arrives
    "huge_print": ({"laplace_nll_extra": "print('x' * 100_000_000)\n"}, 13, "graded", None),
    "invalid_json": ({"raw": "{ this is not json"}, 0, "error", None),
}
# Exact reasons for the cases that lose a part to a stopped cell (the part and the cause).
REASONS = {
    "infinite_loop": "laplace_nll timed out after 15 s (interrupted)",
    "os_exit": ("the kernel stopped in cv_ridge_errors: the kernel exited (status 1); "
                "not run: test_cv_ridge_errors (4 points)"),
    "invalid_json": "ex01_intro_ml.ipynb cannot be read: NotJSONError",
}
MODES = ["root", "user"] if os.geteuid() == 0 else ["user"]
NOBODY = 65534


def _submission(release: nbformat.NotebookNode, source: nbformat.NotebookNode, how: dict, names: dict):
    if "raw" in how:
        return how["raw"]
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    cells = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and (grade_id in how or not how.get("blank")):
            cell.source = how.get(grade_id, answers[grade_id])
            if grade_id == "laplace_nll" and "laplace_nll_extra" in how:
                cell.source = answers["laplace_nll"] + "\n" + how["laplace_nll_extra"]
            cell.source = cell.source.replace("{root}", names["root"]).replace("{secret}", names["secret"])
        if grade_id == how.get("delete"):
            continue
        if grade_id == (how.get("edit") or (None,))[0]:
            cell.source, cell.metadata["nbgrader"]["points"] = how["edit"][1], how["edit"][2]
        cells.append(cell)
        if grade_id == how.get("duplicate"):
            cells.append(nbformat.from_dict(json.loads(json.dumps(cell))))
    nb.cells = cells
    return json.dumps(nb, indent=1)  # not nbformat.writes: it would repair the duplicated cell id


def _as(mode: str) -> list[str]:
    """The command prefix that runs the grader as root or as an ordinary user."""
    if mode == "user" and os.geteuid() == 0:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return []


def _env(course: Path) -> dict[str, str]:
    """Temporary files go to a folder of the course's, so leftovers can be counted. The grader
    gets a home of its own: the suite's IPYTHONDIR is not the ordinary user's, and IPython
    makes a new temporary folder each time it finds its folder unwritable."""
    return {**os.environ, "TMPDIR": str(course / "tmp"), "HOME": str(course / "home"),
            "IPYTHONDIR": str(course / "home" / ".ipython"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _cli(course: Path, mode: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*_as(mode), sys.executable, "-m", "autograder", "--root", str(course), *args],
                            capture_output=True, text=True, timeout=1800, env=_env(course), cwd=course)
    if check and result.returncode != 0:
        raise AssertionError(f"autograder {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _own(path: Path, mode: str) -> None:
    if mode == "user" and os.geteuid() == 0:
        for folder, dirs, files in os.walk(path):
            for name in [folder, *(os.path.join(folder, f) for f in dirs + files)]:
                os.chown(name, NOBODY, NOBODY, follow_symlinks=False)


@pytest.fixture(scope="module", params=MODES)
def graded(request):
    mode = request.param
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        pytest.fail(f"the sandbox must be available in CI (.ci/run installs bubblewrap): {exc}")
    probe = subprocess.run([*_as(mode), "/bin/sh", "-c", f'"{sys.executable}" -c pass'], capture_output=True, text=True)
    if probe.returncode:
        pytest.fail(f"[{mode}] cannot run {sys.executable} ({probe.stderr.strip()}): build .venv with a Python "
                    "every user can run (.ci/run does: PYTHON=/usr/bin/python3)")
    base = Path(tempfile.mkdtemp(prefix=f"redteam-{mode}-"))
    base.chmod(0o711)  # as root, the warm server (a sandbox uid) reaches its folder in the course's tmp
    course = base / "course"
    secret = base / "secret.txt"  # one of the instructor's own files, outside the course
    secret.write_text("THE INSTRUCTOR'S SECRET")
    secret.chmod(0o600)
    (course / "tmp").mkdir(parents=True)
    (course / "home").mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    _own(base, mode)
    _cli(course, mode, "release", ASSIGNMENT)
    release = nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    names = {"root": str(course), "secret": str(secret)}
    download = course / "lms_download.zip"
    with zipfile.ZipFile(download, "w") as archive:  # as Canvas names files: <student>_<ids>_<original name>
        for number, (name, (how, *_)) in enumerate(CASES.items()):
            archive.writestr(f"{name.replace('_', '')}_{1000 + number}_{ASSIGNMENT}.ipynb",
                             _submission(release, source, how, names))
        archive.writestr("notes.txt", "not a notebook")
    _own(download, mode)
    collected = _cli(course, mode, "collect", ASSIGNMENT, str(download))
    started = time.perf_counter()
    graded = _cli(course, mode, "grade", ASSIGNMENT, "--timeout", "15")
    grade_seconds = time.perf_counter() - started
    print(graded.stdout)
    regrade = _cli(course, mode, "grade", ASSIGNMENT, "--timeout", "15")  # nothing changed: nothing regraded
    _cli(course, mode, "export", ASSIGNMENT, "--out", str(course / "exports"))
    started = time.perf_counter()
    feedback = _cli(course, mode, "feedback", ASSIGNMENT, "--timeout", "15", check=False)
    print(f"[{mode}] grade: {grade_seconds:.0f} s for {len(CASES)} submissions; "
          f"feedback: {time.perf_counter() - started:.0f} s")
    with (course / "exports" / f"{ASSIGNMENT}_grades.csv").open() as f:
        table = {row["student_id"]: row for row in csv.DictReader(f)}
    for student, row in table.items():  # the grading record says why a submission needs review
        record = course / "grading" / "autograder" / ASSIGNMENT / f"{student}.json"
        row["needs_review"] = json.loads(record.read_text()).get("needs_review", "") if record.exists() else ""
    yield {"mode": mode, "course": course, "secret": secret, "table": table, "collected": collected.stdout,
           "feedback": feedback, "regrade": regrade.stdout}
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_score_status_and_review(graded, name):
    _, score, status, review = CASES[name]
    row = graded["table"][name.replace("_", "")]
    where = f"[{graded['mode']}] {name}"
    assert float(row["score"]) == score, f"{where}: scored {row['score']}, expected {score} ({row['reason']})"
    assert row["status"] == status, f"{where}: status {row['status']!r}, expected {status!r} ({row['reason']})"
    if review is None:
        assert row["needs_review"] == "", f"{where}: flagged for review without cause: {row['needs_review']}"
    else:
        assert review in row["needs_review"], f"{where}: needs_review {row['needs_review']!r} lacks {review!r}"
    if name in REASONS:
        assert row["reason"].startswith(REASONS[name]), f"{where}: reason {row['reason']!r}"


@pytest.mark.slow
def test_collect_reports_unmatched_files(graded):
    assert "notes.txt" in graded["collected"]
    assert f"imported {len(CASES)} submission(s)" in graded["collected"]


@pytest.mark.slow
def test_unchanged_submissions_are_not_regraded(graded):
    """An unreadable notebook keeps its record (and reason) instead of being graded on every run."""
    assert f"{len(CASES)} submission(s), 0 new or changed" in graded["regrade"]


@pytest.mark.slow
def test_nothing_escaped_the_sandbox(graded):
    course, secret = graded["course"], graded["secret"]
    assert not (course / "pwned.txt").exists(), "a submission wrote outside its folder"
    assert secret.read_text() == "THE INSTRUCTOR'S SECRET" and stat.S_IMODE(secret.stat().st_mode) == 0o600, \
        "the instructor's file was overwritten or chmodded"
    links = [str(p) for p in (course / "grading").rglob("*") if p.is_symlink()]
    assert not links, f"links reached the grader's folders: {links}"
    for path in (course / "grading").rglob("*"):
        if path.is_file() and not path.name.endswith((".db", ".lock")):
            assert "THE INSTRUCTOR'S SECRET" not in path.read_text(errors="ignore"), f"the secret reached {path}"
    big = [p for p in (course / "grading").rglob("*") if p.is_file() and p.stat().st_size > 5_000_000]
    assert not big, f"files written by kernels reached the grader's folders: {big}"
    huge = course / "grading" / "autograded" / "hugeprint" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert huge.stat().st_size < 1_000_000, f"the 100 MB print reached the notebook ({huge.stat().st_size} bytes)"
    left = {str(p.relative_to(course / "tmp")) for p in (course / "tmp").rglob("*")}
    assert not left, f"left behind on the host: {len(left)} paths, e.g. {sorted(left)[:10]}"


@pytest.mark.slow
def test_feedback_shows_no_hidden_test(graded):
    course = graded["course"]
    assert graded["feedback"].returncode == 0, graded["feedback"].stderr[-3000:]
    pages = sorted((course / "grading" / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) == len(CASES) - 1, "every gradable submission gets a feedback page"
    secret = secret_lines(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                          course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", regions=("HIDDEN TESTS",))
    assert len(secret) > 10, "the check needs hidden lines to look for"
    graded_source = (course / "grading" / "autograded" / "honest" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert any(line in graded_source for line in secret), "the graded notebook holds them: this check can fail"
    leaked_in_scoring = (course / "grading" / "autograded" / "leakcaller" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    assert "LEAK:" in leaked_in_scoring.read_text(), "the leak works in the graded run: this check can fail"
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))  # the text a student reads
        student = page.parent.parent.name
        own = course / "grading" / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        written_by_student = own.read_text() if own.exists() else ""
        shown = [line for line in secret if line in text and line not in written_by_student]
        assert not shown, f"{student}'s feedback shows hidden lines: {shown[:3]}"
        assert "BEGIN HIDDEN TESTS" not in text
        for encoded in re.findall(r"LEAK:([A-Za-z0-9+/=]+)", text):
            import base64
            assert "HIDDEN" not in base64.b64decode(encoded).decode(errors="ignore"), f"{student} leaked a hidden test"
        for noise in ("serial mode", "Permission denied", "oneDNN", "cuda", "absl"):
            assert noise not in text, f"{student}'s feedback shows grader noise: {noise!r}"
    partly = html.unescape(re.sub(r"<[^>]+>", "", next(p for p in pages if "partlywrong" in str(p)).read_text()))
    assert "A hidden test in this cell failed" in partly or "Error" in partly, "a lost part is explained"


@pytest.mark.slow
def test_submitted_links_are_refused(graded):
    """Links placed in the submitted folder itself (not through collect) are never followed."""
    course, mode = graded["course"], graded["mode"]
    folder = course / "grading" / "submitted" / "linker" / ASSIGNMENT
    shutil.copytree(course / "grading" / "submitted" / "honest" / ASSIGNMENT, folder)
    (folder / "notes.txt").symlink_to(graded["secret"])
    (folder / "data").symlink_to(course / "solutions", target_is_directory=True)
    os.mkfifo(folder / "pipe")
    _own(folder.parent, mode)
    _cli(course, mode, "grade", ASSIGNMENT, "linker", "--timeout", "15")
    record = json.loads((course / "grading" / "autograder" / ASSIGNMENT / "linker.json").read_text())
    assert record["score"] == 13 and record["status"] == "graded", record
    for item in ("notes.txt: symbolic link refused", "data: symbolic link refused", "pipe: FIFO refused"):
        assert item in record["needs_review"], record["needs_review"]
    autograded = course / "grading" / "autograded" / "linker" / ASSIGNMENT
    assert sorted(p.name for p in autograded.iterdir()) == [f"{ASSIGNMENT}.ipynb", "timestamp.txt"]


@pytest.mark.slow
def test_plain_nbgrader_uses_the_sandbox(graded):
    """`nbgrader autograde` from the course root goes through the same safe pipeline."""
    course, mode = graded["course"], graded["mode"]
    for student in ("readsolutions", "swallowast"):
        target = course / "plain" / student / ASSIGNMENT
        shutil.copytree(course / "grading" / "submitted" / student / ASSIGNMENT, target)
    _own(course / "plain", mode)
    result = subprocess.run([*_as(mode), sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
                             "--CourseDirectory.submitted_directory=plain",
                             "--CourseDirectory.autograded_directory=plain_autograded"],
                            capture_output=True, text=True, timeout=900, env=_env(course), cwd=course)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "needs review: AST transformers added" in result.stderr
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
        assert gb.find_submission(ASSIGNMENT, "readsolutions").score == 13
        assert gb.find_submission(ASSIGNMENT, "swallowast").score == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox uids are used only when grading as root")
def test_sandbox_uids_are_never_shared(tmp_path):
    """Two courses grading at once, and a uid some other process uses, get distinct uids."""
    sleeper = subprocess.Popen(["setpriv", f"--reuid={sandbox.FIRST_SANDBOX_UID}", "--regid=65534",
                                "--clear-groups", "sleep", "60"])
    try:
        time.sleep(0.5)
        first, second = sandbox.UidSlot(str(tmp_path)), sandbox.UidSlot(str(tmp_path))
        assert sandbox.FIRST_SANDBOX_UID not in (first.uid, second.uid), "took a uid with a running process"
        assert first.uid != second.uid
        first.release()
        second.release()
        assert sleeper.poll() is None, "releasing a slot killed a process it does not own"
    finally:
        sleeper.kill()


def test_an_environment_the_sandbox_users_cannot_read_is_refused_plainly(tmp_path, monkeypatch):
    """A private (0700) virtual environment would make every sandboxed kernel die at start with
    "Kernel died before replying to kernel_info"; as root the grader refuses and says why."""
    private = tmp_path / "venv"
    (private / "bin").mkdir(parents=True)
    (private / "bin" / "python").write_text("")
    private.chmod(0o700)
    (private / "bin" / "python").chmod(0o700)
    assert sandbox.unreadable_by_others([str(private), str(private / "bin" / "python")]) == [
        f"{private} (0700)", f"{private / 'bin' / 'python'} (0700)"]
    private.chmod(0o755)
    (private / "bin" / "python").chmod(0o755)
    assert sandbox.unreadable_by_others([str(private), str(private / "bin" / "python")]) == []
    assert sandbox.unreadable_by_others(sandbox.python_paths()) == [], "this environment must be readable"
    private.chmod(0o750)
    monkeypatch.setattr(sandbox, "python_paths", lambda: [str(private)])
    if os.geteuid() == 0:
        expected = re.escape(f"cannot read this Python environment: {private} (0750)")
        with pytest.raises(sandbox.SandboxUnavailable, match=expected):
            sandbox.check_available()
    else:  # an ordinary user's sandbox keeps the user's own uid, which can read its own environment
        assert sandbox.check_available()


def test_fairness_between_neighbours_depends_on_autogroup(tmp_path):
    """The fork bomb case grades its neighbours fairly only because each sandbox is a session and
    autogroup shares the CPU between sessions: the grader warns when that is switched off (measured:
    with autogroup off, the honest case graded beside the fork bomb timed out and lost 3 points)."""
    setting = tmp_path / "sched_autogroup_enabled"
    setting.write_text("0\n")
    assert "autogroup scheduling is off" in sandbox.fairness_warning(str(setting))
    setting.write_text("1\n")
    assert sandbox.fairness_warning(str(setting)) == ""
    assert sandbox.fairness_warning(str(tmp_path / "missing")) == ""
    assert sandbox.fairness_warning() == "", "autogroup is off on this machine: the red-team cases are not fair"


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
        assert cli.main(["--root", str(tmp_path), "feedback", ASSIGNMENT]) == 2
    finally:
        os.chdir(cwd)
    assert "--unsafe" in capsys.readouterr().err


# Warm kernels (autograder.warm): one worker forks every kernel from one server, so a student
# graded before another must leave nothing behind: no file in any folder a kernel can write,
# no process. The first student tries; the second looks, and breaks its own Laplace part if it
# finds anything, if its kernel was not forked by the server (PID 1 is then bubblewrap itself),
# or if it can read the server's code (from PID 1's command line, or a file named there).
PERSIST = """
import os, signal, subprocess, sys
for folder in ['/tmp', '/dev/shm', '/dev', os.getcwd(), os.path.dirname(os.getcwd())]:
    try:
        open(os.path.join(folder, 'left-by-an-earlier-student'), 'w').write('x')
    except OSError:
        pass
subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True:\\n    open("/tmp/still-running", "w").write("x")'
                  '\\n    time.sleep(0.1)'], start_new_session=True)
for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:  # the server, if it could see it
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            pass
"""
DETECT = """
import glob, os
_traces = [p for p in glob.glob('/tmp/**', recursive=True) + glob.glob('/dev/shm/*') + glob.glob('/dev/left*')
           if 'left-by' in p or 'still-running' in p]
_others = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) > 2)
_args = open('/proc/1/cmdline', 'rb').read().split(b'\\0')
_forked = _args[0] != b'bwrap'
_code = [a[:40] for a in _args[1:] if b'def ' in a or os.path.isfile(a)]  # the grader's code, on PID 1's line
print('traces', _traces, 'other processes', _others, 'forked by the server', _forked, 'grader code', _code)
if _traces or _others or not _forked or _code:
    laplace_nll = None
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_warm_kernels_share_nothing(mode):
    base = Path(tempfile.mkdtemp(prefix=f"warm-{mode}-"))
    base.chmod(0o711)
    course = base / "course"
    (course / "tmp").mkdir(parents=True)
    (course / "home").mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    _own(base, mode)
    try:
        _cli(course, mode, "release", ASSIGNMENT)
        release = nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        source = nbformat.read(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        names = {"root": str(course), "secret": "/nonexistent"}
        for student, extra in (("a_persists", PERSIST), ("b_detects", DETECT)):
            folder = course / "grading" / "submitted" / student / ASSIGNMENT
            folder.mkdir(parents=True)
            notebook = _submission(release, source, {"laplace_nll_extra": extra}, names)
            (folder / f"{ASSIGNMENT}.ipynb").write_text(notebook)
        _own(course / "grading", mode)
        result = _cli(course, mode, "grade", ASSIGNMENT, "--workers", "1", "--timeout", "30")
        print(result.stdout)
        for student in ("a_persists", "b_detects"):
            record = json.loads((course / "grading" / "autograder" / ASSIGNMENT / f"{student}.json").read_text())
            graded = nbformat.read(course / "grading" / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
            seen = [o.get("text", "") for c in graded.cells if c.cell_type == "code" for o in c.outputs
                    if "forked by the server" in o.get("text", "")]
            outcome = (record["score"], record["status"], record["reason"], record["kernel"])
            assert outcome == (13, "graded", "", "warm"), (mode, record, seen)
        assert "kernels start cold" not in result.stderr, result.stderr[-2000:]
        left = sorted(str(p.relative_to(course / "tmp")) for p in (course / "tmp").rglob("*"))
        assert not left, f"[{mode}] left behind on the host: {left[:10]}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _kernel_answers(tmp_path: Path, code: str) -> str:
    """Start one warm-configured sandboxed kernel (no heavy preload), run ``code``, return its output."""
    import asyncio

    async def run():
        km = sandbox.SandboxedKernelManager(warm=True, preload=[], threads=1)
        await km.start_kernel(cwd=str(tmp_path))
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=120)
            out = []
            await kc.execute_interactive(code, timeout=60,
                                         output_hook=lambda m: out.append(m["content"].get("text", "")))
            return "".join(out)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)
            km.release_sandbox()

    return asyncio.run(run())


IS_FORKED = "print(open('/proc/1/cmdline', 'rb').read().split(bytes(1))[0] != b'bwrap')"  # PID 1: init or bwrap


@pytest.mark.parametrize("broken", ["does not start", "has a thread"])
def test_an_unusable_warm_server_means_a_cold_kernel(tmp_path, monkeypatch, broken):
    """Never a lost submission: when the server cannot start, or refuses to fork because it is no
    longer single-threaded, the kernel starts cold (and works); a usable one forks (the control)."""
    from autograder import warm

    (tmp_path / "work").mkdir()
    monkeypatch.setattr(warm, "_servers", {})
    assert _kernel_answers(tmp_path / "work", IS_FORKED).strip() == "True", "the control: a warm kernel"
    warm.stop_all()
    source = warm.SERVER_SOURCE.read_text()
    if broken == "does not start":
        source = source.replace("def main(folder, modules, kept):", "def main(folder, modules, kept):\n    sys.exit(3)")
    else:  # a thread after start-up: forking is no longer safe
        thread = "__import__('threading').Thread(target=__import__('time').sleep, args=(600,), daemon=True).start()"
        source = source.replace("    serve(listener)", f"    {thread}\n    serve(listener)")
    assert source != warm.SERVER_SOURCE.read_text()
    (tmp_path / "server.py").write_text(source)
    monkeypatch.setattr(warm, "SERVER_SOURCE", tmp_path / "server.py")
    try:
        assert _kernel_answers(tmp_path / "work", IS_FORKED + "\nprint(6 * 7)").split() == ["False", "42"]
    finally:
        warm.stop_all()
