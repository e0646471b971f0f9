"""``make course``: execute the lectures and build the book, saying plainly what happened.

* The data source is decided once and said in one line: the real Keras data sets when
  they are cached or can be downloaded, stand-ins otherwise (or with ``OFFLINE=1``);
  every page whose outputs came from stand-ins carries a note saying so.
* Each lecture is executed by papermill with its student parameters, one line per
  lecture (status, seconds, data), a cell counter while it runs on a terminal. Only a
  successful execution is cached (keyed by the notebook's bytes, the parameters, the data
  source, Python and the requirements files): a failure is executed again by the next build, and fails again
  until it is fixed.
* A failed lecture stops the build with a short message (notebook, cell, exception, what
  to do next) and the book is not built. Logs (Jupyter Book's, and what kernels print
  outside cells, such as TensorFlow's start-up lines) go to ``build/book/logs/``, outside
  the book's HTML folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from coursetools import ROOT, book, datasource, execute, notebooks, offline

OUTPUT = book.OUTPUT


def cache_key(path: Path, mode: str, source: datasource.DataSource) -> str:
    """What an execution's outputs depend on: the notebook, parameters, data, Python and pins."""
    digest = hashlib.sha256(Path(path).read_bytes())
    digest.update(f"{mode}|{source.name}|{sys.version}".encode())
    for requirements in sorted(ROOT.glob("requirements*.txt")):
        digest.update(requirements.read_bytes())
    return digest.hexdigest()


def execute_cached(path: Path, mode: str, source: datasource.DataSource) -> tuple[execute.Execution, bool]:
    """The lecture executed with these parameters and data, from the cache when a successful
    execution of the same bytes is there; returns the record and whether it was cached."""
    output = OUTPUT / "executed" / f"{mode}-{source.name}" / notebooks.relpath(path)
    record_file = output.with_suffix(".json")
    key = cache_key(path, mode, source)
    if record_file.exists() and output.exists():
        saved = json.loads(record_file.read_text())
        if saved.pop("key", None) == key and saved["ok"]:
            return execute.Execution(**saved), True
    record_file.unlink(missing_ok=True)  # a stale or failed entry is never reused
    progress = {"desc": f"  {notebooks.relpath(path)}", "leave": False, "file": sys.stdout,
                "bar_format": "{desc}  running: cell {n_fmt}/{total_fmt}, {elapsed}",
                "disable": not sys.stdout.isatty()}
    logs = OUTPUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    record = execute.execute(path, output, mode, progress=progress, kernel_log=logs / "kernels.log")
    if record.ok:
        record_file.write_text(json.dumps({**asdict(record), "key": key}, indent=1))
    return record, False


def _failure(record: execute.Execution, source: datasource.DataSource) -> str:
    online = "" if not source.real else " --online"
    return (f"FAILED {record.notebook}, {record.error}\n"
            f"  next: `python -m coursetools run {record.notebook} --mode student{online}` runs it alone and "
            f"shows the whole traceback (or open it in Jupyter); the executed copy is {record.output}")


def _sphinx_problems(log: str, limit: int = 15) -> list[str]:
    lines = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line or "Error" in line]
    return lines[:limit] or log.strip().splitlines()[-limit:]


def build(mode: str = "student", force_standins: bool = False) -> int:
    """Execute every lecture and build the book; 0 only when every page is right."""
    source = datasource.choose(force_standins)
    if source.real:
        print(f"data: the real Keras data sets, {source.why}")
    else:
        print(f"data: STAND-INS for the Keras data sets, because {source.why}: lectures that load one are "
              "built on handwritten digits in Fashion-MNIST's place, and their pages say so")
        offline.activate()
    executed, failed = {}, []
    for path in notebooks.lectures():
        record, cached = execute_cached(path, mode, source)
        uses_data = datasource.uses_keras_data(notebooks.read(path))
        data = f"{source.name} data" if uses_data else ""
        status = "cached" if cached else ("ok" if record.ok else "FAILED")
        seconds = f"({record.seconds:.0f} s)" if cached else f"{record.seconds:.1f} s"
        print(f"  {record.notebook:<56} {status:<7} {seconds:>9}  {data}", flush=True)
        if record.ok:
            executed[path] = Path(record.output)
        else:
            failed.append(record)
    if failed:
        print("\n" + "\n".join(_failure(r, source) for r in failed))
        print(f"\nbook NOT built: {len(failed)} lecture(s) failed. Fix and run `make course` again "
              "(failed executions are never cached; the others are).")
        return 1
    staged = book.stage(executed, OUTPUT / "src", standins=not source.real)
    result = book.jupyter_book(staged, OUTPUT)
    log = OUTPUT / "logs" / "jupyter-book.log"
    log.write_text(result.stdout + result.stderr)
    shutil.rmtree(OUTPUT / "_build" / "html" / "reports", ignore_errors=True)  # never published
    if result.returncode != 0:
        print("\n".join(["", "jupyter-book FAILED:", *_sphinx_problems(log.read_text()), f"full log: {log}",
                         "book NOT built."]))
        return result.returncode
    print(f"book: {OUTPUT / '_build' / 'html' / 'index.html'}  (jupyter-book log: {log})")
    return 0
