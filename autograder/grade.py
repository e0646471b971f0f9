"""Grade: autograde every submission of an assignment, in parallel, each in its own sandbox.

One submission is one job: :func:`grade_submission` runs nbgrader's ``autograde`` for
one student with the autograder's configuration (:mod:`autograder.course`). Jobs are
plain, picklable dataclasses handed to any :class:`concurrent.futures.Executor`: a
local process pool by default, or a cluster's executor (for Dask,
``distributed.Client(...).get_executor()``) when the class outgrows one machine, as
long as the workers share the course folder.

nbgrader never reads the submitted folder itself: each job first copies it, without
following links (links and special files are refused and noted), into a private
folder that is removed afterwards, and points nbgrader's ``submitted_directory`` there.
Notebooks that cannot be read are left out of that copy (nbgrader then scores them as
missing) and named in the record, the submitted files themselves stay untouched.

Every job ends with a record in ``grading/autograder/<assignment>/<student>.json``
(status, score, reason, needs_review, time and where it went, and a fingerprint of the submitted files,
so a re-run only grades new or changed submissions unless forced) and nbgrader's log
next to it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry
from tqdm import tqdm

from autograder import files, guard, warm
from autograder.course import Course, put_environment_first, quiet_gradebook
from autograder.execute import KERNEL, PROBLEM, REVIEW, TIMING


@dataclass
class Limits:
    cell_timeout: int = 120  # seconds per cell
    cpu_seconds: int = 900
    memory_mb: int = 6144
    max_processes: int = 256
    max_file_mb: int = 100
    disk_mb: int = 512  # everything the kernel writes, in total
    max_submission_mb: int = 50  # the submitted files, in total
    max_output_bytes: int = 100_000
    threads: int = 1  # per kernel: cores // parallel workers, so side-by-side kernels don't oversubscribe


@dataclass
class Job:
    root: str
    assignment: str
    student: str
    sandboxed: bool = True
    keras_backend: str = "tensorflow"
    limits: Limits = field(default_factory=Limits)
    warm: bool = True  # fork kernels from a server that imported the libraries once (autograder.warm)


@dataclass
class Record:
    assignment: str
    student: str
    status: str  # "graded", "kernel stopped" (cells after it scored 0) or "error" (scored 0)
    score: float = 0.0
    max_score: float = 0.0
    reason: str = ""
    seconds: float = 0.0
    fingerprint: str = ""
    needs_review: str = ""  # non-empty: the submission fought the grader (why); an instructor should look
    timing: dict = field(default_factory=dict)  # seconds: kernel (start to ready), student cells, tests, nbgrader
    kernel: str = ""  # "warm", "cold", or "cold (why the warm start failed)"


def records_dir(course: Course, assignment: str) -> Path:
    return course.grading / "autograder" / assignment


def read_records(course: Course, assignment: str) -> dict[str, Record]:
    folder = records_dir(course, assignment)
    return {p.stem: Record(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def vet(folder: Path, dest: Path, notebooks: list[str], max_bytes: int) -> tuple[list[str], list[str]]:
    """Copy a submission for nbgrader without following links; return (problems, refused).

    Problems: notebooks missing or unreadable (left out: nbgrader scores them zero).
    Refused: links and special files (never read; a reason to review the submission)."""
    copied = files.copy_tree(folder, dest, max_bytes, mode=0o600)
    problems = []
    for name in notebooks:
        path = dest / f"{name}.ipynb"
        if not path.exists():
            problems.append(f"{name}.ipynb is missing")
            continue
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as exc:  # invalid JSON, not a notebook, wrong schema
            problems.append(f"{name}.ipynb cannot be read: {type(exc).__name__}")  # not its content
            path.unlink()
    return problems, copied.refused


def _scores(course: Course, assignment: str, student: str) -> tuple[float, float]:
    with course.gradebook() as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, gb.find_assignment(assignment).max_score
        return float(submission.score), float(submission.max_score)


def _lines(log: str, prefix: str) -> list[str]:
    return list(dict.fromkeys(line.split(prefix, 1)[1].strip() for line in log.splitlines() if prefix in line))


def _timing(log: str) -> dict[str, float]:
    """Seconds from the execute step's timing line (kernel, student, tests), summed over notebooks."""
    total: dict[str, float] = {}
    for line in log.splitlines():
        if TIMING in line:
            for item in line.split(TIMING, 1)[1].split():
                name, value = item.split("=")
                total[name] = round(total.get(name, 0.0) + float(value), 2)
    return total


def _code(folder: Path) -> list[str]:
    """The code cells of every readable notebook in ``folder``."""
    sources = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            sources += [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        except Exception:
            pass
    return sources


def kernel_config(course: Course, job: Job):
    """The course's nbgrader configuration with this job's kernels: sandbox, limits, warm start."""
    limits = job.limits
    source = [course.source / job.assignment / f"{name}.ipynb" for name in course.notebooks(job.assignment)]
    config = course.config(
        enabled=job.sandboxed, keras_backend=job.keras_backend, cpu_seconds=limits.cpu_seconds,
        memory_mb=limits.memory_mb, max_processes=limits.max_processes, max_file_mb=limits.max_file_mb,
        disk_mb=limits.disk_mb, threads=limits.threads, warm=job.warm and job.sandboxed,
        preload=warm.preload_for(source),
    )
    config.GuardedExecute.timeout = limits.cell_timeout
    config.GuardedExecute.max_output_bytes = limits.max_output_bytes
    return config


def grade_submission(job: Job) -> Record:
    """Autograde one student's submission (runs in a worker process)."""
    start = time.perf_counter()
    put_environment_first()
    quiet_gradebook()
    course = Course(job.root)
    folder = course.submitted / job.student / job.assignment
    record = Record(job.assignment, job.student, "error", fingerprint=files.fingerprint(folder))
    log_path = records_dir(course, job.assignment) / f"{job.student}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="autograder-job-"))  # sockets, staged files, the vetted copy
    os.environ["AUTOGRADER_TMP"] = str(private)
    try:
        vetted = private / "submitted"
        problems, refused = vet(folder, vetted / job.student / job.assignment, course.notebooks(job.assignment),
                                job.limits.max_submission_mb * 2**20)
        review = [f"refused {item}" for item in refused] + [
            f"uses {api}" for api in guard.scan(_code(vetted / job.student / job.assignment))]
        config = kernel_config(course, job)
        config.CourseDirectory.submitted_directory = str(vetted)
        result = course.api(config).autograde(job.assignment, job.student, force=True, create=True)
        log = (result.get("log") or "") + (result.get("error") or "")
        log_path.write_text(log)
        record.score, record.max_score = _scores(course, job.assignment, job.student)
        problems += _lines(log, PROBLEM)
        review += _lines(log, REVIEW)
        record.timing = _timing(log)
        record.kernel = "; ".join(_lines(log, KERNEL))
        record.reason = "; ".join(problems)
        record.needs_review = "; ".join(review)
        if not result["success"]:
            last = (result.get("error") or "").strip().splitlines()[-1:]
            record.reason = "; ".join([*problems, f"nbgrader autograde failed: {last}"])
        elif any("the kernel stopped" in p for p in problems):
            record.status = "kernel stopped"
        else:
            record.status = "graded"
    except Exception as exc:  # never lose a submission: record why it has no grade
        record.reason = f"{type(exc).__name__}: {exc}"
        log_path.write_text(traceback.format_exc())
    finally:
        os.environ.pop("AUTOGRADER_TMP", None)
        shutil.rmtree(private, ignore_errors=True)
    record.seconds = round(time.perf_counter() - start, 2)
    if record.timing:  # the rest is nbgrader's own work and the grader's (copies, gradebook, notebook files)
        record.timing["nbgrader"] = round(record.seconds - sum(record.timing.values()), 2)
    (records_dir(course, job.assignment) / f"{job.student}.json").write_text(json.dumps(asdict(record), indent=1))
    return record


def in_gradebook(course: Course, assignment: str) -> bool:
    """Whether nbgrader's gradebook has the assignment's cells (``release`` puts them there)."""
    put_environment_first()  # a new gradebook is created with alembic
    with course.gradebook() as gb:
        try:
            gb.find_assignment(assignment)
            return True
        except MissingEntry:
            return False


def students(course: Course, assignment: str) -> list[str]:
    return sorted(p.parent.name for p in course.submitted.glob(f"*/{assignment}") if p.is_dir())


def pending(course: Course, assignment: str, names: list[str], force: bool) -> list[str]:
    """The students whose submission is new or changed since it was last graded."""
    if force:
        return names
    done = read_records(course, assignment)
    return [s for s in names
            if s not in done or done[s].fingerprint != files.fingerprint(course.submitted / s / assignment)]


def grade(jobs: list[Job], executor: Executor | None = None, workers: int | None = None,
          progress: bool = True) -> list[Record]:
    """Run ``jobs`` on ``executor`` (default: a process pool, one worker per core)."""
    own = executor is None
    executor = executor or ProcessPoolExecutor(max_workers=workers or os.cpu_count())
    records = []
    try:
        futures = {executor.submit(grade_submission, job): job for job in jobs}
        bar = tqdm(as_completed(futures), total=len(futures), unit="submission", disable=not progress)
        for future in bar:
            job = futures[future]
            try:
                record = future.result()
            except Exception as exc:  # the worker itself died: still record the submission
                record = Record(job.assignment, job.student, "error", reason=f"worker failed: {exc!r}")
            bar.set_postfix_str(f"{record.student}: {record.status}")
            records.append(record)
    finally:
        if own:
            executor.shutdown()
    return sorted(records, key=lambda r: r.student)
