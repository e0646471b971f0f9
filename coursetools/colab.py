"""Colab's package versions as a pip constraints file (``colab-constraints.txt``).

Students on Colab run Colab's packages, not this course's lock file. Google publishes the
runtime's ``pip freeze`` in the googlecolab/backend-info repository. This module keeps,
from that list, the versions of the packages the notebooks run on: the course's runtime
requirements (without the Jupyter front end, which Colab replaces) and everything they
depend on, as pip resolves them. ``make test-colab`` installs the course with these
constraints on Colab's Python and runs the notebooks and the integrity suite there.

Refresh (needs internet): ``python -m coursetools colab-constraints``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from coursetools import ROOT, requirements

FREEZE_URL = "https://raw.githubusercontent.com/googlecolab/backend-info/main/pip-freeze.txt"
OS_INFO_URL = "https://raw.githubusercontent.com/googlecolab/backend-info/main/os-info.txt"
CONSTRAINTS = ROOT / "colab-constraints.txt"
RUNTIME = ("requirements-base.txt", "requirements-tensorflow.txt", "requirements-jax.txt")
FRONT_END = {"jupyterlab", "ipykernel"}  # Colab runs its own front end and kernel
# Colab installs the full TensorFlow wheel; the course installs the CPU-only one on Linux.
SAME_VERSION_AS = {"tensorflow-cpu": "tensorflow"}


def parse_freeze(text: str) -> dict[str, str]:
    """``name==version`` lines of a pip freeze (canonical name -> version); URLs and editables skipped."""
    pins = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line.strip())
        if match:
            pins[requirements.canonical(match.group(1))] = match.group(2)
    return pins


def runtime_closure(python: str = sys.executable) -> set[str]:
    """Every package pip would install for the notebooks' requirements (a dry run with pip's report)."""
    wanted = [r for name in RUNTIME for r in requirements.read(ROOT / name)
              if requirements.canonical(r.name) not in FRONT_END]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
        reqs.write("\n".join(str(r) for r in wanted))
        reqs.flush()
        result = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                                 "--report", "-", "-r", reqs.name], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    return {requirements.canonical(item["metadata"]["name"]) for item in report["install"]}


def constraints(freeze: dict[str, str], closure: set[str]) -> dict[str, str]:
    """Colab's version of each package of the closure that Colab has (plus the CPU-only TensorFlow)."""
    pins = {name: freeze[name] for name in sorted(closure) if name in freeze}
    for name, twin in SAME_VERSION_AS.items():
        if twin in freeze:
            pins[name] = freeze[twin]
    return dict(sorted(pins.items()))


def write(pins: dict[str, str], source: str, python_version: str, path: Path = CONSTRAINTS) -> None:
    header = [
        "# Colab's versions of the packages the notebooks run on: pip constraints for `make test-colab`.",
        f"# Source: {source}",
        f"# Colab's Python: {python_version}",
        f"# Written {datetime.now(UTC):%Y-%m-%d} by `python -m coursetools colab-constraints`; do not edit by hand.",
    ]
    path.write_text("\n".join([*header, *(f"{name}=={version}" for name, version in pins.items())]) + "\n")


def colab_python(os_info: str) -> str:
    match = re.search(r"^Python (\d+\.\d+\.\d+)", os_info, re.M)
    return match.group(1) if match else "unknown"


def refresh(freeze_file: Path | None = None, os_info_file: Path | None = None, source: str | None = None) -> dict:
    """Rewrite colab-constraints.txt from Colab's published lists (downloaded unless files are given)."""
    def read(file, url):
        if file:
            return Path(file).read_text()
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read().decode()

    freeze = parse_freeze(read(freeze_file, FREEZE_URL))
    pins = constraints(freeze, runtime_closure())
    write(pins, source or FREEZE_URL, colab_python(read(os_info_file, OS_INFO_URL)))
    return pins


def python_version(path: Path = CONSTRAINTS) -> str:
    """Colab's Python version (major.minor) recorded in the constraints file."""
    match = re.search(r"^# Colab's Python: (\d+\.\d+)", path.read_text(), re.M)
    if not match:
        raise ValueError(f"{path} records no Python version: refresh it")
    return match.group(1)
