"""Execute notebooks with papermill, once per run, and keep the executed copies.

Executed copies are written under a run directory with a small JSON record beside
each (status, wall time, parameters, error). The test suite, the book build and the
CLI all go through :func:`execute_once`, so a notebook is executed at most once per
run even when several checks (and several pytest-xdist workers) need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import papermill
from filelock import FileLock
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from coursetools import ROOT, notebooks

CELL_TIMEOUT = 600  # seconds per cell; student-mode cells should stay near a minute


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager that talks to its kernel over Unix sockets, not TCP ports.

    With TCP, kernels started at the same moment by parallel test workers can race
    for the same free port and die ("Address already in use"); IPC sockets are
    files named after the kernel's own id, so they never collide.
    """

    @default("transport")
    def _default_transport(self):
        return "ipc"

    @default("ip")
    def _default_ip(self):
        # The socket path prefix: a private folder per kernel (the default is
        # relative to the working directory, shared by every kernel started there).
        self._socket_dir = tempfile.mkdtemp(prefix="kernel-")
        return os.path.join(self._socket_dir, "ipc")

    extra_env: dict = {}  # set per execution by ``kernel_manager_for`` (the Keras backend)
    output_log: str | None = None  # where the kernel's own stdout/stderr go (default: inherited)

    async def _async_pre_start_kernel(self, **kw):
        kw["env"] = {**os.environ, **kw.get("env", {}), **self.extra_env}
        if self.output_log:  # TensorFlow's C++ start-up lines go to the log, not the terminal
            self._log_file = open(self.output_log, "ab")  # closed with the kernel
            kw["stdout"] = kw["stderr"] = self._log_file
        return await super()._async_pre_start_kernel(**kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if not restart and getattr(self, "_socket_dir", None):
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if not restart and getattr(self, "_log_file", None):
            self._log_file.close()


@dataclass
class Execution:
    notebook: str  # path relative to the repository root
    output: str
    mode: str  # "ci" or "student"
    parameters: dict = field(default_factory=dict)
    backend: str = "tensorflow"  # KERAS_BACKEND inside the kernel
    seconds: float = 0.0
    ok: bool = False
    error: str = ""
    reused: bool = False  # copied from the execution cache, not executed in this run


def parameters_for(path: Path, mode: str) -> dict:
    """CI overrides from the notebook metadata in "ci" mode; the notebook's own defaults otherwise."""
    if mode == "student":
        return {}
    if mode == "ci":
        return notebooks.ci_parameters(notebooks.read(path))
    raise ValueError(f"unknown mode {mode!r}: use 'ci' or 'student'")


def kernel_manager_for(backend: str, output_log: Path | None = None) -> type[IPCKernelManager]:
    """A kernel manager class whose kernels run Keras on ``backend`` (and write to ``output_log``)."""
    attributes = {"extra_env": {"KERAS_BACKEND": backend}, "output_log": str(output_log) if output_log else None}
    return type(f"IPCKernelManager_{backend}", (IPCKernelManager,), attributes)


def execute(path: Path, output: Path, mode: str = "ci", backend: str = "tensorflow",
            kernel_name: str = "python3", progress: dict | None = None,
            kernel_log: Path | None = None) -> Execution:
    """Run ``path`` top to bottom with papermill (in its own folder) and record the result;
    ``progress``: tqdm options for papermill's cell progress bar (default: none);
    ``kernel_log``: a file for what the kernel process itself prints (default: inherited)."""
    path, output = Path(path).resolve(), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    parameters = parameters_for(path, mode)
    record = Execution(notebooks.relpath(path), str(output), mode, parameters, backend)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path),
            str(output),
            parameters=parameters,
            cwd=str(path.parent),
            kernel_name=kernel_name,
            execution_timeout=CELL_TIMEOUT,
            kernel_manager_class=kernel_manager_for(backend, kernel_log),
            progress_bar=progress or False,
            log_output=False,
        )
        record.ok = True
    except papermill.PapermillExecutionError as exc:
        first_line = next((line for line in exc.source.splitlines() if line.strip()), "")
        record.error = f"cell In [{exc.exec_count}] ({first_line.strip()[:70]}): {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel death, timeout, invalid notebook: report, don't hide
        record.error = f"{type(exc).__name__}: {exc}"
    record.seconds = round(time.perf_counter() - start, 2)
    return record


def run_dir() -> Path:
    """The folder for this run's executed copies (``COURSE_RUN_DIR``, default ``build/run``)."""
    return Path(os.environ.get("COURSE_RUN_DIR", ROOT / "build" / "run")).resolve()


def executed_path(path: Path, mode: str = "ci", backend: str = "tensorflow") -> Path:
    folder = mode if backend == "tensorflow" else f"{mode}-{backend}"
    return run_dir() / "executed" / folder / notebooks.relpath(path)


def cache_key(path: Path, mode: str, backend: str) -> str:
    """What an execution depends on: the notebook's bytes (CI parameters included), the mode, the
    backend, and the Python environment that runs the kernel (interpreter and installed packages)."""
    digest = hashlib.sha256(Path(path).read_bytes())
    for part in (mode, backend, sys.version, os.path.realpath(sys.prefix)):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def execute_once(path: Path, mode: str = "ci", backend: str = "tensorflow") -> Execution:
    """Execute ``path`` unless this run already has; safe across processes.

    With ``COURSE_EXECUTION_CACHE`` set (a folder), a successful execution is stored there under
    its :func:`cache_key` and reused by any run that shares the folder: the test suite shares it
    with the student repository's own test run, which executes the same lectures in the same
    environment."""
    output = executed_path(path, mode, backend)
    record_file = output.with_suffix(".json")
    output.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(output) + ".lock"):
        if record_file.exists():
            return Execution(**json.loads(record_file.read_text()))
        cache = os.environ.get("COURSE_EXECUTION_CACHE")
        if not cache:
            record = execute(path, output, mode, backend)
        else:
            cached = Path(cache) / cache_key(path, mode, backend)
            cached.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(cached) + ".lock"):
                if cached.with_suffix(".json").exists():
                    shutil.copyfile(cached.with_suffix(".ipynb"), output)
                    record = Execution(**{**json.loads(cached.with_suffix(".json").read_text()),
                                          "output": str(output), "reused": True})
                else:
                    record = execute(path, output, mode, backend)
                    if record.ok:
                        shutil.copyfile(output, cached.with_suffix(".ipynb"))
                        cached.with_suffix(".json").write_text(json.dumps(asdict(record)))
        record_file.write_text(json.dumps(asdict(record), indent=1))
    return record


def recorded_executions() -> list[Execution]:
    """Every execution recorded in this run's folder (for the timing table)."""
    folder = run_dir() / "executed"
    if not folder.exists():
        return []
    return [Execution(**json.loads(p.read_text())) for p in sorted(folder.rglob("*.json"))]


def slowest_cells(output: Path, count: int = 3) -> list[tuple[int, float, str]]:
    """(cell number, seconds, first line) of the slowest code cells, from papermill's metadata."""
    nb = notebooks.read(output)
    timed = [(i, cell.metadata.get("papermill", {}).get("duration") or 0.0, (cell.source.splitlines() or [""])[0])
             for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    return sorted(timed, key=lambda t: -t[1])[:count]


def timing_table(records: list[Execution]) -> str:
    """One row per execution, slowest first; executions reused from the cache are marked and
    left out of the total, which is the time this run spent executing."""
    rows = sorted(records, key=lambda r: -r.seconds)
    width = max([len(r.notebook) for r in rows] + [8])
    lines = [f"{'notebook':<{width}}  {'mode':<7}  {'backend':<10}  {'seconds':>8}  status"]
    for r in rows:
        status = "ok" if r.ok else f"FAILED ({r.error[:60]})"
        status += " (reused from the execution cache)" if r.reused else ""
        lines.append(f"{r.notebook:<{width}}  {r.mode:<7}  {r.backend:<10}  {r.seconds:>8.1f}  {status}")
    executed = [r for r in rows if not r.reused]
    reused = f", {len(rows) - len(executed)} reused" if len(executed) < len(rows) else ""
    lines.append(f"{'total':<{width}}  {'':<7}  {'':<10}  {sum(r.seconds for r in executed):>8.1f}  "
                 f"{len(executed)} executed{reused}")
    return "\n".join(lines)
