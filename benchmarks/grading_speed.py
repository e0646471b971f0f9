"""Benchmark: stock sequential ``nbgrader autograde`` vs ``python -m autograder grade``.

Grades N copies of an exercise that imports TensorFlow, once with plain nbgrader
(one submission after the other, no sandbox) and once with the autograder (parallel,
sandboxed), each in its own scratch course, and prints both wall times and the ratio,
then the per-submission overhead: kernel start-up with and without the sandbox, and
the time the kernel spends importing TensorFlow.

    .venv/bin/python benchmarks/grading_speed.py --copies 8 --assignment ex11_autodiff --repeat 3

Not part of the test suite (it measures, it does not assert); it takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def make_course(folder: Path, assignment: str, copies: int, stock: bool = False) -> None:
    if stock:
        (folder / "grading").mkdir()
        (folder / "nbgrader_config.py").write_text(STOCK_CONFIG)
    else:
        shutil.copy(ROOT / "nbgrader_config.py", folder)
    shutil.copytree(ROOT / "solutions" / assignment, folder / "solutions" / assignment)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                   cwd=folder, check=True, capture_output=True, env=env)
    for i in range(copies):  # the solution, submitted by N students
        target = folder / "grading" / "submitted" / f"student{i:03d}" / assignment
        target.mkdir(parents=True)
        for nb in (folder / "solutions" / assignment).glob("*.ipynb"):
            shutil.copy(nb, target)


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


async def kernel_costs(sandboxed: bool, workdir: Path) -> tuple[float, float]:
    """Seconds to start a kernel and get its first reply, and to import TensorFlow in it."""
    from jupyter_client.manager import AsyncKernelManager

    from autograder.sandbox import SandboxedKernelManager

    km = SandboxedKernelManager(enabled=sandboxed) if sandboxed else AsyncKernelManager()
    start = time.perf_counter()
    await km.start_kernel(cwd=str(workdir))
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=120)
    started = time.perf_counter() - start
    start = time.perf_counter()
    await kc.execute_interactive("import tensorflow", timeout=300)
    imported = time.perf_counter() - start
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return started, imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--assignment", default="ex11_autodiff")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate the two runs this many times and compare medians (a shared VM is noisy)")
    args = parser.parse_args()
    plain_times, our_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        plain, ours = Path(tmp) / "plain", Path(tmp) / "autograder"
        for folder in (plain, ours):
            folder.mkdir()
            make_course(folder, args.assignment, args.copies, stock=folder is plain)
        for _ in range(args.repeat):
            plain_times.append(timed([sys.executable, "-m", "nbgrader", "autograde", args.assignment, "--force"],
                                     plain))
            our_times.append(timed([sys.executable, "-m", "autograder", "grade", args.assignment, "--force",
                                    "--workers", str(args.workers)], ours))
        t_plain, t_ours = statistics.median(plain_times), statistics.median(our_times)
        workdir = Path(tmp) / "kernel"
        workdir.mkdir()
        plain_start, plain_import = asyncio.run(kernel_costs(False, workdir))
        box_start, box_import = asyncio.run(kernel_costs(True, workdir))
    n = args.copies
    print(f"{args.copies} submissions of {args.assignment}, {os.cpu_count()} cores, {args.workers} workers")
    print(f"  plain nbgrader autograde (sequential, no sandbox): {t_plain:7.1f} s  ({t_plain / n:.1f} s each)")
    print(f"  autograder grade (parallel, sandboxed)           : {t_ours:7.1f} s  ({t_ours / n:.1f} s each)")
    if args.repeat > 1:
        print(f"  (medians of {args.repeat} alternating runs: plain {' '.join(f'{t:.1f}' for t in plain_times)} s, "
              f"autograder {' '.join(f'{t:.1f}' for t in our_times)} s)")
    print(f"  speed-up: {t_plain / t_ours:.2f}x")
    print("per-submission overhead (one kernel, measured after the runs):")
    print(f"  kernel start to first reply: {plain_start:5.2f} s plain, {box_start:5.2f} s in the sandbox "
          f"(sandbox cost {box_start - plain_start:+.2f} s)")
    print(f"  import tensorflow in the kernel: {plain_import:5.2f} s plain, {box_import:5.2f} s in the sandbox")


if __name__ == "__main__":
    main()
