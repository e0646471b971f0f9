"""Command line for maintainers: ``python -m coursetools --help``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from coursetools import ROOT, checked_outputs, execute, offline


def cmd_run(args) -> int:
    """Execute notebooks in CI and/or student mode (offline unless --online); print timings and the slowest cells."""
    if not args.online:
        offline.activate()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        for path in args.notebooks:
            for mode in args.modes:
                output = folder / mode / Path(path).name
                record = execute.execute(Path(path), output, mode, args.backend)
                status = "ok" if record.ok else record.error
                print(f"{mode:>7}  {args.backend:>10}  {record.seconds:7.1f}s  {status}  {path}")
                if output.exists():
                    for number, seconds, first_line in execute.slowest_cells(output):
                        print(f"{'':>20}{seconds:7.1f}s  cell {number}: {first_line[:60]}")
                records.append(record)
    print()
    print(execute.timing_table(records))
    return 0 if all(r.ok for r in records) else 1


def cmd_checked_outputs(args) -> int:
    """Refresh the stored outputs of the nbval-checked cells."""
    offline.activate()
    for path in args.notebooks:
        print(f"{path}: {checked_outputs.refresh(Path(path))} checked cell(s) stored")
    return 0


def cmd_build(args) -> int:
    """Execute the lectures and build the book (``make course``; see coursetools.course_build)."""
    from coursetools import course_build

    return course_build.build(mode=args.mode, force_standins=args.offline)


def cmd_repository(args) -> int:
    """Point every Colab badge and repository link at the repository set in pyproject.toml."""
    from coursetools import repository

    changed = repository.rewrite(repository.student_facing_files())
    for path in changed:
        print(f"rewritten: {path.relative_to(ROOT)}")
    print(f"{len(changed)} file(s) now point at {repository.url()} (branch {repository.branch()})")
    return 0


def cmd_colab_constraints(args) -> int:
    """Rewrite colab-constraints.txt from Colab's published package list (downloads it unless given)."""
    from coursetools import colab

    pins = colab.refresh(args.freeze, args.os_info, args.source)
    print(f"{colab.CONSTRAINTS.name}: {len(pins)} package(s) at Colab's versions")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools", description=__doc__)
    sub = parser.add_subparsers(required=True)

    run = sub.add_parser("run", help=cmd_run.__doc__)
    run.add_argument("notebooks", nargs="+")
    run.add_argument("--mode", dest="modes", action="append", choices=["ci", "student"],
                     help="repeatable; default: both")
    run.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax", "torch"],
                     help="KERAS_BACKEND inside the kernel (default: tensorflow)")
    run.add_argument("--online", action="store_true",
                     help="allow network access and use the real Keras data sets (default: offline stand-ins)")
    run.add_argument("--keep", metavar="DIR", help="keep the executed notebooks in DIR/<mode>/ (default: discarded)")
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("checked-outputs", help=cmd_checked_outputs.__doc__)
    chk.add_argument("notebooks", nargs="+")
    chk.set_defaults(func=cmd_checked_outputs)

    build = sub.add_parser("build", help=cmd_build.__doc__)
    build.add_argument("--mode", choices=["ci", "student"], default="student",
                       help="parameters to execute with (default: student, the full course)")
    build.add_argument("--offline", action="store_true",
                       help="use the stand-in Keras data sets even when the real ones could be downloaded")
    build.set_defaults(func=cmd_build)

    repo = sub.add_parser("repository", help=cmd_repository.__doc__)
    repo.set_defaults(func=cmd_repository)

    colab_cmd = sub.add_parser("colab-constraints", help=cmd_colab_constraints.__doc__)
    colab_cmd.add_argument("--freeze", metavar="FILE", help="Colab's pip-freeze.txt (default: download it)")
    colab_cmd.add_argument("--os-info", metavar="FILE", help="Colab's os-info.txt (default: download it)")
    colab_cmd.add_argument("--source", help="where the lists came from, for the file's header")
    colab_cmd.set_defaults(func=cmd_colab_constraints)

    args = parser.parse_args(argv)
    if getattr(args, "modes", None) is None and args.func is cmd_run:
        args.modes = ["ci", "student"]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
