"""python -m autograder: release, collect, grade, feedback, export and report nbgrader assignments."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from autograder import collect, export, feedback, grade, publish, release, sandbox
from autograder.course import Course


def cmd_release(course: Course, args) -> int:
    """Regenerate the student versions from the sources (refuses on a leak)."""
    for name in args.assignments or course.assignments():
        try:
            print(f"{name}: released to {release.release(course, name)}")
        except release.LeakError as exc:
            print(exc, file=sys.stderr)
            return 1
    return 0


def _ensure_in_gradebook(course: Course, assignment: str) -> None:
    """nbgrader's gradebook must know the assignment's cells (``release`` puts them there)."""
    if not grade.in_gradebook(course, assignment):
        release.generate(course, assignment, course.grading / "autograder" / "generated")


def cmd_collect(course: Course, args) -> int:
    """Import an LMS download (folder or .zip) into grading/submitted/."""
    scheduled = course.due_dates().get(args.assignment)  # [tool.course.due] in pyproject.toml
    if args.due or scheduled:
        _ensure_in_gradebook(course, args.assignment)
        due = collect.set_due_date(course, args.assignment, args.due or scheduled.isoformat())
    else:
        due = collect.due_date(course, args.assignment)
    if due is not None:
        method = collect.penalty_method(course)
        print(f"due date in the gradebook: {due:%Y-%m-%d %H:%M:%S} UTC; nbgrader's late penalty: {method!r}"
              + (" (late submissions keep their points: LateSubmissionPlugin.penalty_method)"
                 if method == "none" else ""))
    try:
        report = collect.collect(course, args.assignment, Path(args.source), args.id_pattern,
                                 max_mb=args.max_mb, max_total_mb=args.max_total_mb, due=due)
    except collect.CollectError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"records: {collect.records_dir(course, args.assignment)}/<student>.json")
    return 0


def _limits(args) -> grade.Limits:
    return grade.Limits(cell_timeout=args.timeout, memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds,
                        disk_mb=args.disk_mb, threads=max(1, (os.cpu_count() or 1) // args.workers))


def _sandbox_ready(args) -> bool:
    if args.unsafe:
        print("WARNING: --unsafe: student code runs WITHOUT a sandbox, as you, with your files and network.",
              file=sys.stderr)
        return True
    try:
        print(f"sandbox: {sandbox.check_available()}")
        if warning := sandbox.fairness_warning():
            print(f"WARNING: {warning}", file=sys.stderr)
        return True
    except sandbox.SandboxUnavailable as exc:
        print(f"refusing to run student code: the sandbox is unavailable ({exc}).\n"
              "Fix it, or pass --unsafe to run student code unsandboxed.", file=sys.stderr)
        return False


def cmd_grade(course: Course, args) -> int:
    """Autograde submissions in parallel, each kernel in a sandbox."""
    if not _sandbox_ready(args):
        return 2
    if not grade.in_gradebook(course, args.assignment):  # nbgrader restores test cells from the gradebook
        release.generate(course, args.assignment, course.grading / "autograder" / "generated")
    names = args.students or grade.students(course, args.assignment)
    todo = grade.pending(course, args.assignment, names, args.force)
    print(f"{args.assignment}: {len(names)} submission(s), {len(todo)} new or changed")
    limits = _limits(args)
    if args.scheduler:  # Dask workers on other machines: one single-threaded worker process per core there
        limits.threads = 1
    jobs = [grade.Job(str(course.root), args.assignment, s, sandboxed=not args.unsafe,
                      keras_backend=args.backend, limits=limits, warm=not args.cold) for s in todo]
    if args.scheduler:
        from distributed import Client  # the `cluster` extra: pip install ".[cluster]"

        with Client(args.scheduler) as client:
            records = grade.grade(jobs, executor=client.get_executor())
    else:
        records = grade.grade(jobs, workers=args.workers)
    for r in records:
        review = f"  NEEDS REVIEW: {r.needs_review}" if r.needs_review else ""
        print(f"  {r.student:<24} {r.status:<15} {r.score:>6g}/{r.max_score:<6g} {r.seconds:6.1f}s  {r.reason}{review}")
    return 0


def cmd_feedback(course: Course, args) -> int:
    """Write per-student feedback HTML (from a second run without hidden tests) to grading/feedback/."""
    if not _sandbox_ready(args):
        return 2
    pages, errors = feedback.generate(course, args.assignment, args.students or None, workers=args.workers,
                                      sandboxed=not args.unsafe, keras_backend=args.backend, limits=_limits(args),
                                      warm=not args.cold)
    for path in pages:
        print(path)
    for student, error in sorted(errors.items()):
        print(f"no feedback for {student}: {error}", file=sys.stderr)
    return 1 if errors else 0


def _out(course: Course, args) -> Path:
    return Path(args.out) if args.out else course.grading / "exports"


def cmd_export(course: Course, args) -> int:
    """Write the grades CSV (per student and cell) and an LMS-ready CSV."""
    _ensure_in_gradebook(course, args.assignment)
    for path in export.export(course, args.assignment, _out(course, args)):
        print(path)
    return 0


def cmd_report(course: Course, args) -> int:
    """Print a summary (mean, median, pass rate per cell, pending work) and save a grade-distribution PNG."""
    _ensure_in_gradebook(course, args.assignment)
    text, figure = export.report(course, args.assignment, _out(course, args))
    print(text)
    print(f"distribution plot: {figure}")
    return 0


def cmd_publish(course: Course, args) -> int:
    """Write the student repository (a new commit in DEST) and search it for leaks first."""
    now = datetime.fromisoformat(args.now) if args.now else None
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        result = publish.publish(course, Path(args.dest), now=now, message=args.message)
    except (publish.LeakError, FileExistsError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    released = ", ".join(result.released) or "none yet"
    print(f"{result.repository}: {result.files} files; solutions released: {released}")
    if result.commit:
        print(f"new commit {result.commit[:10]}; to update students: git -C {result.repository} push")
    else:
        print("nothing changed since the last publication: no commit made")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    parser.add_argument("--root", default=".", help="course folder holding nbgrader_config.py (default: .)")
    sub = parser.add_subparsers(required=True, metavar="command")

    p = sub.add_parser("release", help=cmd_release.__doc__)
    p.add_argument("assignments", nargs="*", help="default: all")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("collect", help=cmd_collect.__doc__)
    p.add_argument("assignment")
    p.add_argument("source", help="folder or .zip of submissions")
    p.add_argument("--id-pattern", default=collect.DEFAULT_ID_PATTERN,
                   help="regex with a (?P<student>...) group, matched against flat file names")
    p.add_argument("--max-mb", type=float, default=collect.DEFAULT_MAX_MB,
                   help=f"largest submission of one student, all files (default: {collect.DEFAULT_MAX_MB})")
    p.add_argument("--max-total-mb", type=float, default=collect.DEFAULT_MAX_TOTAL_MB,
                   help=f"most read from the whole download (default: {collect.DEFAULT_MAX_TOTAL_MB})")
    p.add_argument("--due", help="record the due date in the gradebook, for nbgrader's late penalties, e.g. "
                                 "'2025-03-01 17:00:00 Europe/London' (no zone: UTC)")
    p.set_defaults(func=cmd_collect)

    def kernel_options(p):
        p.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel submissions (default: cores)")
        p.add_argument("--timeout", type=int, default=120, help="seconds per cell (default: 120)")
        p.add_argument("--memory-mb", type=int, default=6144, help="address-space limit per kernel")
        p.add_argument("--cpu-seconds", type=int, default=900, help="CPU-time limit per kernel")
        p.add_argument("--disk-mb", type=int, default=512, help="all a kernel may write, in total")
        p.add_argument("--backend", default="tensorflow", help="KERAS_BACKEND for the kernels")
        p.add_argument("--unsafe", action="store_true", help="run student code WITHOUT the sandbox (trusted code only)")
        p.add_argument("--cold", action="store_true", help="start every kernel from scratch (no warm fork server)")

    p = sub.add_parser("grade", help=cmd_grade.__doc__)
    p.add_argument("assignment")
    p.add_argument("students", nargs="*", help="default: everyone collected")
    p.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    p.add_argument("--scheduler", help="grade on a Dask cluster whose workers share the course folder, e.g. "
                                       "tcp://scheduler:8786 (needs the cluster extra; --workers is then unused)")
    kernel_options(p)
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("feedback", help=cmd_feedback.__doc__)
    p.add_argument("assignment")
    p.add_argument("students", nargs="*", help="default: everyone graded")
    kernel_options(p)
    p.set_defaults(func=cmd_feedback)

    for name, func in (("export", cmd_export), ("report", cmd_report)):
        p = sub.add_parser(name, help=func.__doc__)
        p.add_argument("assignment")
        p.add_argument("--out", help="output folder (default: grading/exports in the course)")
        p.set_defaults(func=func)

    p = sub.add_parser("publish", help=cmd_publish.__doc__)
    p.add_argument("dest", help="the student repository: a git repository publish wrote before, or a new folder")
    p.add_argument("--now", help="publish as of this time (ISO 8601, default: now; UTC without a zone): "
                                 "solutions whose due date has passed by then are released")
    p.add_argument("--message", help="commit message (default: the date and the solutions released)")
    p.set_defaults(func=cmd_publish)

    args = parser.parse_args(argv)
    return args.func(Course(args.root), args)


if __name__ == "__main__":
    sys.exit(main())
