"""`pip install .` in a clean virtual environment gives working course tools.

The environment is made from scratch with the interpreter of this one and installs the
package (with the `book` extra) from a copy of its sources, offline: only from the
wheelhouse that `make test` fills with the package's declared dependencies
(`<venv>/wheelhouse`). A dependency that pyproject.toml forgets is missing there, so an
import fails here. The installed `autograder` command then runs nbgrader's example ps1
from release to export, and its scores must be the measured ones of stock nbgrader.
The pins in pyproject.toml must be the requirements files' pins for the same packages.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from coursetools import ROOT, requirements
from coursetools.requirements import canonical

WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
PACKAGE_FILES = ("pyproject.toml", "README.md", "requirements-base.txt", "requirements-tensorflow.txt",
                 "requirements-book.txt")
FIXTURE = ROOT / "tests" / "fixtures" / "nbgrader_ps1"
MEASURED = {"bitdiddle": 1.5, "hacker": 3.0}  # stock nbgrader's scores (tests/test_nbgrader_ps1.py)


def modules(package: str) -> list[str]:
    return sorted(f"{package}.{p.stem}" for p in (ROOT / package).glob("*.py") if p.stem != "__main__")


def run(command: list, cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new virtual environment with `pip install ".[book]"` from the wheelhouse alone; its bin folder."""
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: `make test` fills it (pip wheel '.[book]')")
    source = tmp_path_factory.mktemp("package")
    for name in PACKAGE_FILES:
        shutil.copy(ROOT / name, source / name)
    for package in ("autograder", "coursetools"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path_factory.mktemp("venv")
    venv.chmod(0o755)  # pytest makes it private; the sandbox's uids must be able to run its Python
    run([sys._base_executable, "-m", "venv", venv], cwd=source)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELHOUSE]
    run([*pip, f"{source}[book]"], cwd=source)
    return venv / "bin"


@pytest.mark.slow
def test_every_module_imports(installed, tmp_path):
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    run([installed / "python", "-c", code, *modules("autograder"), *modules("coursetools"), "mathjax"], cwd=tmp_path)
    assert "release, collect, grade" in run([installed / "autograder", "--help"], cwd=tmp_path).stdout
    assert "usage:" in run([installed / "python", "-m", "coursetools", "--help"], cwd=tmp_path).stdout


@pytest.mark.slow
def test_installed_autograder_grades_ps1(installed, tmp_path):
    """release, collect, grade (sandboxed), export with the installed command, outside this repository."""
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(FIXTURE / "source" / "ps1", course / "solutions" / "ps1")
    download = tmp_path / "download"
    for student in MEASURED:
        shutil.copytree(FIXTURE / "submitted" / student / "ps1", download / student)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed}{os.pathsep}{env.get('PATH', '')}"
    for step in (["release", "ps1"], ["collect", "ps1", download], ["grade", "ps1"], ["export", "ps1"]):
        run([installed / "autograder", "--root", course, *step], cwd=tmp_path, env=env)
    with (course / "grading" / "exports" / "ps1_grades.csv").open() as f:
        scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert scores == MEASURED


def test_package_pins_are_the_requirements_pins():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {canonical(r.name): str(r.specifier)
              for path in ROOT.glob("requirements*.txt") for r in requirements.read(path)}
    differ = [f"{r.name}: pyproject {r.specifier}, requirements {pinned[canonical(r.name)]}"
              for r in map(Requirement, declared)
              if canonical(r.name) in pinned and str(r.specifier) != pinned[canonical(r.name)]]
    assert not differ, "\n".join(differ)
