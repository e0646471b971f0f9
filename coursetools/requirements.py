"""The requirements files and the lock file, read the way pip reads them (enough for checks).

``requirements*.txt`` state what the course needs as version ranges; ``pylock.toml``
(PEP 751, written by ``make lock`` with pip's ``pip lock``) pins the exact versions CI
installs (``make test LOCKED=1``, which ``.ci/run`` runs).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from coursetools import ROOT

LOCK = ROOT / "pylock.toml"
LOCKED_FROM = ("requirements.txt", "requirements-dev.txt", "requirements-jax.txt")  # what `make lock` locks


def canonical(name: str) -> str:
    return canonicalize_name(name)


def read(path: Path) -> list[Requirement]:
    """The requirements of a requirements file, following its ``-r`` lines."""
    found = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found += read(Path(path).parent / line.removeprefix("-r ").strip())
        elif line:
            found.append(Requirement(line))
    return found


def applicable(requirements: list[Requirement], environment: dict | None = None) -> list[Requirement]:
    """Those whose environment marker holds (by default on this machine)."""
    environment = environment or default_environment()
    return [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]


def locked(path: Path = LOCK) -> dict[str, str]:
    """Package (canonical name) -> version pinned in the lock file."""
    return {canonical(p["name"]): p["version"] for p in tomllib.loads(Path(path).read_text())["packages"]}
