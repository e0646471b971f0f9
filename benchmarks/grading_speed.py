"""Benchmark: stock sequential ``nbgrader autograde`` vs ``python -m autograder grade``.

For each assignment, N copies of its solution are graded, each in its own scratch course:

* plain: stock ``nbgrader autograde`` (its default pipeline, one submission after the
  other, no sandbox): the baseline;
* cold: ``autograder grade --cold`` (parallel, sandboxed, every kernel started from scratch);
* warm: ``autograder grade`` (parallel, sandboxed, kernels forked from a warm server).

It prints the wall times, the speed-ups over plain nbgrader, and the median time per
submission of the autograder's runs broken down from the grading records: kernel (start
to ready), student cells, test cells, and nbgrader (its bookkeeping plus the grader's:
copies, gradebook, notebook files).

    .venv/bin/python benchmarks/grading_speed.py                       # ex11 (TensorFlow) and ex04 (scikit-learn)
    .venv/bin/python benchmarks/grading_speed.py --class-size 300      # a simulated class of cw2

``--class-size N`` grades N simulated cw2 submissions (honest, known-wrong and broken, in a
fixed mix) end to end, and prints the wall time, the peak memory of the grader and its
kernels together, and the number of records written.

Not part of the test suite (it measures, it does not assert). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The baseline is stock nbgrader: its default pipeline (the course's nbgrader_config.py
# would put plain `nbgrader autograde` in the sandbox too), with the course's folders.
STOCK_CONFIG = """c = get_config()
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.db_url = "sqlite:///grading/gradebook.db"
c.ExecutePreprocessor.timeout = 300
"""
PARTS = ("kernel", "student", "tests", "nbgrader")


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def make_course(folder: Path, assignment: str, stock: bool) -> None:
    folder.mkdir(parents=True)
    if stock:
        (folder / "grading").mkdir()
        (folder / "nbgrader_config.py").write_text(STOCK_CONFIG)
    else:
        shutil.copy(ROOT / "nbgrader_config.py", folder)
    shutil.copytree(ROOT / "solutions" / assignment, folder / "solutions" / assignment)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                   cwd=folder, check=True, capture_output=True, env=environment())


def submit(folder: Path, assignment: str, student: str, notebook: str) -> None:
    target = folder / "grading" / "submitted" / student / assignment
    target.mkdir(parents=True)
    (target / f"{assignment}.ipynb").write_text(notebook)


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=environment())
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def records(folder: Path, assignment: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "grading" / "autograder" / assignment).glob("*.json"))]


def breakdown(folder: Path, assignment: str) -> str:
    found = [r["timing"] for r in records(folder, assignment) if r.get("timing")]
    return "  ".join(f"{part} {statistics.median(t.get(part, 0.0) for t in found):5.2f}" for part in PARTS)


def compare(assignment: str, copies: int, workers: int, tmp: Path) -> None:
    solution = (ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text()
    runs = {}
    for name in ("plain", "cold", "warm"):
        folder = tmp / assignment / name
        make_course(folder, assignment, stock=name == "plain")
        for i in range(copies):
            submit(folder, assignment, f"student{i:03d}", solution)
        if name == "plain":
            cmd = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"]
        else:
            cmd = [sys.executable, "-m", "autograder", "grade", assignment, "--force", "--workers", str(workers)]
            cmd += ["--cold"] if name == "cold" else []
        runs[name] = (timed(cmd, folder), folder)
    plain = runs["plain"][0]
    print(f"\n{assignment}: {copies} submissions (the solution), {os.cpu_count()} cores, {workers} workers")
    print(f"  {'':52} {'wall':>8} {'each':>7} {'speed-up':>9}   median seconds per submission")
    labels = {"plain": "plain nbgrader autograde (sequential, no sandbox)",
              "cold": "autograder grade --cold (parallel, sandboxed)",
              "warm": "autograder grade (parallel, sandboxed, warm)"}
    for name, (seconds, folder) in runs.items():
        parts = breakdown(folder, assignment) if name != "plain" else ""
        print(f"  {labels[name]:52.52} {seconds:7.1f}s {seconds / copies:6.2f}s {plain / seconds:8.2f}x   {parts}")


def simulated_class(size: int, workers: int, tmp: Path) -> None:
    """``size`` cw2 submissions: 70 % honest, 20 % known-wrong answers, 10 % broken."""
    from tests.test_assignments import answer_cell, answer_cells, answered, without_markers  # as the suite does

    assignment = "cw2"
    folder = tmp / "class"
    make_course(folder, assignment, stock=False)
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(folder / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {key: without_markers(code) for key, code in answer_cells(source).items()}
    variants = list(yaml.safe_load((ROOT / "tests" / "wrong_variants" / f"{assignment}.yaml").read_text()).items())
    exits = {**answers, variants[0][0]: "import os\nos._exit(1)\n"}  # the kernel dies in one part
    broken = ["{ not json", nbformat.writes(answered(release, exits)), nbformat.writes(release)]  # + a blank one
    kinds = {}
    for i in range(size):
        student = f"student{i:03d}"
        if i % 10 < 7:
            kinds[student], notebook = "honest", nbformat.writes(answered(release, answers))
        elif i % 10 < 9:
            key, variant = variants[i % len(variants)]
            wrong = {**answers, answer_cell(key, variant): variant["code"]}
            kinds[student], notebook = "wrong", nbformat.writes(answered(release, wrong))
        else:
            kinds[student], notebook = "broken", broken[(i // 10) % len(broken)]
        submit(folder, assignment, student, notebook)
    peak = {"bytes": 0}
    done = threading.Event()

    def sample():  # the grader and everything under it: workers, servers, kernels
        while not done.wait(0.5):
            peak["bytes"] = max(peak["bytes"], tree_rss(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds = timed([sys.executable, "-m", "autograder", "grade", assignment, "--workers", str(workers)], folder)
    done.set()
    written = records(folder, assignment)
    by_status = {}
    for record in written:
        by_status[record["status"]] = by_status.get(record["status"], 0) + 1
    mix = ", ".join(f"{sum(1 for v in kinds.values() if v == kind)} {kind}" for kind in ("honest", "wrong", "broken"))
    print(f"\n{size} simulated {assignment} submissions ({mix}), {os.cpu_count()} cores, {workers} workers")
    print(f"  wall time {seconds / 60:.1f} min ({seconds / size:.2f} s per submission); "
          f"peak memory {peak['bytes'] / 2**30:.2f} GiB; records written: {len(written)} {by_status}")
    print(f"  median seconds per submission: {breakdown(folder, assignment)}")


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", action="append", help="default: ex11_autodiff and ex04_performance")
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--class-size", type=int, help="grade this many simulated cw2 submissions instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.class_size:
            simulated_class(args.class_size, args.workers, Path(tmp))
            return
        for assignment in args.assignment or ["ex11_autodiff", "ex04_performance"]:
            compare(assignment, args.copies, args.workers, Path(tmp))


if __name__ == "__main__":
    main()
