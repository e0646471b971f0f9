"""Grade: autograde every submission of an assignment, in parallel, each in its own sandbox.

One submission is one job: :func:`grade_submission` runs nbgrader's ``autograde`` for
one student with the autograder's configuration (:mod:`autograder.course`). Jobs are
plain, picklable dataclasses handed to any :class:`concurrent.futures.Executor`: a
local process pool by default, or a cluster's executor (for Dask,
``distributed.Client(...).get_executor()``) when the class outgrows one machine, as
long as the workers share the course folder.

Every job ends with a record in ``grading/autograder/<assignment>/<student>.json``
(status, score, reason, time, and a fingerprint of the submitted files, so a re-run
only grades new or changed submissions unless forced) and nbgrader's log next to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from filelock import FileLock, Timeout
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from autograder import sandbox
from autograder.course import Course, put_environment_first


@dataclass
class Limits:
    cell_timeout: int = 120  # seconds per cell
    cpu_seconds: int = 900
    memory_mb: int = 6144
    max_processes: int = 256
    max_file_mb: int = 100
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


def records_dir(course: Course, assignment: str) -> Path:
    return course.grading / "autograder" / assignment


def read_records(course: Course, assignment: str) -> dict[str, Record]:
    folder = records_dir(course, assignment)
    return {p.stem: Record(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def unreadable_notebooks(folder: Path, notebooks: list[str]) -> list[str]:
    """Reasons why submitted notebooks cannot be graded (missing, invalid JSON or nbformat)."""
    reasons = []
    for name in notebooks:
        path = folder / f"{name}.ipynb"
        if not path.exists():
            aside = path.with_name(path.name + ".unreadable")
            reasons.append(f"{name}.ipynb cannot be read (kept as {aside.name})" if aside.exists()
                           else f"{name}.ipynb is missing")
            continue
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as exc:  # invalid JSON, not a notebook, wrong schema
            reasons.append(f"{name}.ipynb cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            path.rename(path.with_name(path.name + ".unreadable"))  # nbgrader then scores it as missing
    return reasons


def _scores(course: Course, assignment: str, student: str) -> tuple[float, float]:
    with Gradebook(course.db_url) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, gb.find_assignment(assignment).max_score
        return float(submission.score), float(submission.max_score)


class _Slot:
    """A numbered slot held for the length of one job: the sandbox uid when grading as root.
    Processes the previous submission left under that uid are killed before and after."""

    def __init__(self, folder: Path, count: int = 100):
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(count):
            lock = FileLock(str(folder / f"slot-{number}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            self.number, self._lock = number, lock
            sandbox.kill_leftovers(self.uid)
            return
        raise RuntimeError("no free grading slot")

    @property
    def uid(self) -> int:
        return sandbox.FIRST_SANDBOX_UID + self.number

    def release(self):
        sandbox.kill_leftovers(self.uid)
        self._lock.release()


def grade_submission(job: Job) -> Record:
    """Autograde one student's submission (runs in a worker process)."""
    start = time.perf_counter()
    put_environment_first()
    course = Course(job.root)
    folder = course.submitted / job.student / job.assignment
    record = Record(job.assignment, job.student, "error", fingerprint=fingerprint(folder))
    log_path = records_dir(course, job.assignment) / f"{job.student}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    slot = _Slot(course.grading / "autograder" / ".slots") if job.sandboxed and os.geteuid() == 0 else None
    try:
        problems = unreadable_notebooks(folder, course.notebooks(job.assignment))
        config = course.config(
            uid=slot.uid if slot else None,
            enabled=job.sandboxed, keras_backend=job.keras_backend, cpu_seconds=job.limits.cpu_seconds,
            memory_mb=job.limits.memory_mb, max_processes=job.limits.max_processes, max_file_mb=job.limits.max_file_mb,
            threads=job.limits.threads,
        )
        config.GuardedExecute.timeout = job.limits.cell_timeout
        config.GuardedExecute.max_output_bytes = job.limits.max_output_bytes
        result = course.api(config).autograde(job.assignment, job.student, force=True, create=True)
        log_path.write_text((result.get("log") or "") + (result.get("error") or ""))
        record.score, record.max_score = _scores(course, job.assignment, job.student)
        if problems:
            record.reason = "; ".join(problems)
        elif not result["success"]:
            record.reason = f"nbgrader autograde failed: {(result.get('error') or '').strip().splitlines()[-1:]}"
        elif "the kernel stopped in cell" in (result.get("log") or ""):
            record.status = "kernel stopped"
            record.reason = next(line for line in result["log"].splitlines() if "the kernel stopped" in line).strip()
        else:
            record.status = "graded"
    except Exception as exc:  # never lose a submission: record why it has no grade
        record.reason = f"{type(exc).__name__}: {exc}"
        log_path.write_text(traceback.format_exc())
    finally:
        if slot:
            slot.release()
    record.seconds = round(time.perf_counter() - start, 2)
    (records_dir(course, job.assignment) / f"{job.student}.json").write_text(json.dumps(asdict(record), indent=1))
    return record


def in_gradebook(course: Course, assignment: str) -> bool:
    """Whether nbgrader's gradebook has the assignment's cells (``release`` puts them there)."""
    put_environment_first()  # a new gradebook is created with alembic
    with Gradebook(course.db_url) as gb:
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
            if s not in done or done[s].fingerprint != fingerprint(course.submitted / s / assignment)]


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
