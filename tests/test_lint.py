"""The pre-commit tools agree with the committed files: ruff is clean on Python
files and notebooks, nbstripout would change no notebook, and the GitHub workflows pass
actionlint (syntax, expressions, runner labels: .github/actionlint.yaml declares the GPU
runner's) and zizmor's offline audit (actions pinned to commits, least privilege, no
persisted credentials). The lock file pins a version within every requirement's range, and the
requirements' lower bounds are Colab's versions (colab-constraints.txt), which
`make test-colab` tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from packaging.version import Version

from coursetools import ROOT, colab, notebooks, requirements

BIN = Path(sys.executable).parent


def test_ruff_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nbstripout_would_change_nothing():
    paths = [str(p) for p in notebooks.lectures() + notebooks.solutions() + notebooks.exercises()]
    command = [str(BIN / "nbstripout"), "--keep-id", "--verify", *paths]  # the pre-commit hook's options
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"nbstripout would strip these notebooks:\n{result.stdout}{result.stderr}"


def workflows() -> list[str]:
    """This repository's workflows and, in the instructor repository, the student repository's."""
    return [str(p.relative_to(ROOT)) for folder in (".github", "student/.github")
            for p in sorted((ROOT / folder / "workflows").glob("*.yml"))]


def test_workflows_pass_actionlint():
    assert workflows(), "no workflows found"
    result = subprocess.run([str(BIN / "actionlint"), *workflows()], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor():
    result = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress", *workflows()], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_file_satisfies_the_requirements():
    """pylock.toml (what CI installs) holds every requirement of the files it locks, at a version in
    its range: a requirement changed without `make lock` fails here."""
    pinned = requirements.locked()
    wanted = requirements.applicable([r for name in requirements.LOCKED_FROM for r in requirements.read(ROOT / name)])
    wrong = [f"{r}: locked {pinned.get(requirements.canonical(r.name), 'nothing')}" for r in wanted
             if not r.specifier.contains(pinned.get(requirements.canonical(r.name), "0!0"), prereleases=True)]
    assert not wrong, "run `make lock`:\n" + "\n".join(wrong)


def lower_bound(requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "~=", "==")]
    return max(bounds) if bounds else None


def test_lower_bounds_are_colabs_versions():
    """Each requirement of the notebooks that Colab has starts at Colab's version: the oldest the
    course is tested with (by `make test-colab`), so a Colab student runs a tested set."""
    pins = colab.parse_freeze(colab.CONSTRAINTS.read_text())
    runtime = [r for name in colab.RUNTIME if name != "requirements-jax.txt" for r in requirements.read(ROOT / name)]
    wrong = [f"{r}: Colab has {pins[requirements.canonical(r.name)]}" for r in runtime
             if requirements.canonical(r.name) in pins
             and lower_bound(r) != Version(pins[requirements.canonical(r.name)])]
    assert not wrong, "\n".join(wrong)
    assert colab.python_version().count(".") == 1


def test_colab_constraints_keep_only_what_the_notebooks_install():
    freeze = colab.parse_freeze("keras==3.13.2\ntensorflow==2.20.0\ntorch==2.9.0\n-e git+https://x/y\n")
    assert freeze == {"keras": "3.13.2", "tensorflow": "2.20.0", "torch": "2.9.0"}
    kept = colab.constraints(freeze, {"keras", "numpy"})
    assert kept == {"keras": "3.13.2", "tensorflow-cpu": "2.20.0"}
