"""Collect: import submissions as an LMS exports them into nbgrader's submitted layout.

Accepted inputs (a folder or a .zip of one):

* flat files, one per student, the student id in the file name, as Canvas or Moodle
  name them (``smithj_12345_67890_ex01_intro_ml.ipynb``): the id is taken with a
  regular expression (``--id-pattern``, default: the text before the first ``_``);
* a tree ``<student>/<notebook>.ipynb``.

Each file lands in ``grading/submitted/<student>/<assignment>/<notebook>.ipynb``. A file
whose name matches no notebook of the assignment (when it has several), that is not a
notebook, or whose student id cannot be read is reported as unmatched; when a student
has several files for the same notebook, the newest is kept and the others reported.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import Course

DEFAULT_ID_PATTERN = r"^(?P<student>[A-Za-z0-9.-]+)_"


@dataclass
class CollectReport:
    imported: dict[str, str] = field(default_factory=dict)  # student -> file
    unmatched: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # student -> files not used

    def summary(self) -> str:
        lines = [f"imported {len(self.imported)} submission(s)"]
        lines += [f"  unmatched: {name}" for name in self.unmatched]
        lines += [f"  duplicate for {s}: kept {self.imported[s]}, ignored {', '.join(files)}"
                  for s, files in sorted(self.duplicates.items())]
        return "\n".join(lines)


def _notebook_for(filename: str, notebooks: list[str]) -> str | None:
    if len(notebooks) == 1:
        return notebooks[0]
    matches = [nb for nb in notebooks if nb in filename]
    return max(matches, key=len) if matches else None


def _candidates(folder: Path, pattern: re.Pattern) -> tuple[list[tuple[str, Path]], list[str]]:
    """(student, file) pairs found under ``folder``, and the files that fit no rule."""
    found, unmatched = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if path.name.startswith(".") or "__MACOSX" in rel.parts:
            continue
        if path.suffix != ".ipynb":
            unmatched.append(str(rel))
        elif len(rel.parts) >= 2:  # <student>/<notebook>.ipynb (or deeper: the first folder is the student)
            found.append((rel.parts[0], path))
        elif m := pattern.match(path.name):
            found.append((m.group("student"), path))
        else:
            unmatched.append(str(rel))
    return found, unmatched


def collect(course: Course, assignment: str, source: Path, id_pattern: str = DEFAULT_ID_PATTERN) -> CollectReport:
    notebooks = course.notebooks(assignment)
    if not notebooks:
        raise ValueError(f"unknown assignment {assignment!r}: no notebooks in {course.source / assignment}")
    report = CollectReport()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(source)
        if folder.suffix == ".zip":
            with zipfile.ZipFile(folder) as archive:
                archive.extractall(tmp)
            folder = Path(tmp)
        found, report.unmatched = _candidates(folder, re.compile(id_pattern))
        chosen: dict[tuple[str, str], Path] = {}
        for student, path in found:
            notebook = _notebook_for(path.name, notebooks)
            if notebook is None:
                report.unmatched.append(str(path.relative_to(folder)))
                continue
            key = (student, notebook)
            if key in chosen:
                older, newer = sorted([chosen[key], path], key=lambda p: p.stat().st_mtime)
                report.duplicates.setdefault(student, []).append(str(older.relative_to(folder)))
                chosen[key] = newer
            else:
                chosen[key] = path
        for (student, notebook), path in sorted(chosen.items()):
            target = course.submitted / student / assignment / f"{notebook}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            report.imported[student] = str(path.relative_to(folder))
    return report
