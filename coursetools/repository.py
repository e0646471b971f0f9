"""The public course repository that every student-facing link points to.

One setting names it: ``repository`` (and ``branch``) in ``[tool.course]`` of
``pyproject.toml``. The book's repository button, Colab and Binder buttons take it from
there at build time; the *Open in Colab* badge inside each notebook has to carry it as
text (a student sees the notebook without the course tooling), so ``python -m coursetools
repository`` rewrites every badge after the setting changes, and the tests fail on any
launch link that names another repository.
"""

from __future__ import annotations

import re
from pathlib import Path

from coursetools import ROOT, notebooks

# Launch links: Colab's GitHub opener and Binder's GitHub builder, captured up to the repository.
LAUNCH = re.compile(r"(colab\.research\.google\.com/github|mybinder\.org/v2/gh)/([\w.-]+/[\w.-]+)")
GITHUB = re.compile(r"github\.com/([\w.-]+)/([\w.-]+)")
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/")


def name() -> str:
    return notebooks.course_settings()["repository"]


def branch() -> str:
    return notebooks.course_settings()["branch"]


def url() -> str:
    return f"https://github.com/{name()}"


def foreign_links(text: str, course: str | None = None) -> list[str]:
    """Links in ``text`` that should name the course repository (default: the setting) and
    name another: Colab and Binder launch links, GitHub links to the owner's other repositories."""
    course = course or name()
    owner = course.split("/")[0]
    found = [m.group(0) for m in LAUNCH.finditer(text) if m.group(2) != course]
    found += [m.group(0) for m in GITHUB.finditer(text)
              if m.group(1) == owner and f"{m.group(1)}/{m.group(2)}".removesuffix(".git") != course]
    return found


def configured_in_book() -> str:
    """The repository ``book/_config.yml`` names (the previous setting, until rewritten)."""
    import yaml

    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    return config["repository"]["url"].removeprefix("https://github.com/")


def student_facing_files() -> list[Path]:
    """Files whose text names the repository: notebooks, the book's pages and configuration."""
    root = ROOT
    return [*notebooks.lectures(), *notebooks.solutions(), *notebooks.exercises(),
            *sorted((root / "book").glob("*.md")), root / "book" / "_config.yml"]


def rewrite(paths: list[Path]) -> list[Path]:
    """Point ``paths`` at the configured repository: the name ``book/_config.yml`` had is
    replaced, and every Colab badge gets the repository and branch (its notebook path is
    kept). Returns the files changed."""
    old, new = configured_in_book(), name()
    prefix = f"https://colab.research.google.com/github/{new}/blob/{branch()}/"
    changed = []
    for path in paths:
        text = Path(path).read_text()
        updated = BADGE.sub(prefix, text.replace(f"github.com/{old}", f"github.com/{new}"))
        if updated != text:
            Path(path).write_text(updated)
            changed.append(Path(path))
    return changed
