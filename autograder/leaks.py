"""What students must never receive, and the search for it in anything student-facing.

The secrets come from this (instructor) repository:

* every line of a hidden-test region of a source notebook, and of a solution region
  (written answers' model answers and rubrics included) until that assignment's solution
  is released, that the student version does not show anyway;
* the code of the known-wrong variants (``tests/wrong_variants``);
* nbgrader's region markers, and an import of the ``autograder`` package;
* launch and repository links naming a repository other than the public one;
* any file of this repository that is not published, found by its bytes under any name.

Import lines are no secret, and neither are the lines listed in ``solutions/public_lines.txt``:
lines the course shows students on purpose elsewhere (a lecture's stable sigmoid that a
hidden test also uses as its reference). That list is reviewed like code; a test keeps it
exact. One search (:func:`find`) serves the published tree (:func:`scan_tree`), every
commit of the published repository (:func:`scan_history`) and the built book.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from autograder.release import released_solution, secret_lines
from coursetools.repository import foreign_links

MARKERS = tuple(f"### {edge} {region}" for region in ("SOLUTION", "HIDDEN TESTS") for edge in ("BEGIN", "END"))
PUBLIC_LINES = Path("solutions") / "public_lines.txt"
IMPORT = re.compile(r"^(import \S|from \S+ import )")
GRADER_IMPORT = re.compile(r"^\s*(import|from)\s+autograder\b", re.MULTILINE)
MIN_LENGTH = 13  # shorter lines (`return x`, `else:`) say nothing on their own
MIN_FILE_BYTES = 64  # tiny files (an empty __init__.py) are the same everywhere


@dataclass
class Secrets:
    lines: dict[str, str] = field(default_factory=dict)  # stripped line -> what it is
    files: dict[str, str] = field(default_factory=dict)  # sha256 -> instructor-only path
    repository: str | None = None  # the public repository: launch links naming another are findings


def public_lines(root: Path) -> set[str]:
    path = Path(root) / PUBLIC_LINES
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def _source_lines(root: Path, released: set[str]) -> Iterator[tuple[str, str]]:
    """(line, what it is) for the solution and hidden-test lines of every source notebook."""
    for source in sorted((Path(root) / "solutions").glob("*/*.ipynb")):
        assignment = source.parent.name
        student = Path(root) / "exercises" / assignment / source.name
        shown = student if student.exists() else source
        if assignment not in released:  # once released, only the hidden tests stay secret
            yield from ((line, f"solution of {assignment}") for line in secret_lines(source, shown, ("SOLUTION",)))
        yield from ((line, f"hidden test of {assignment}") for line in secret_lines(source, shown, ("HIDDEN TESTS",)))


def _wrong_variant_lines(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((Path(root) / "tests" / "wrong_variants").glob("*.yaml")):
        student = "\n".join(text for _, text in _notebook_texts(Path(root) / "exercises" / path.stem))
        for key, variant in (yaml.safe_load(path.read_text()) or {}).items():
            for line in variant["code"].splitlines():
                line = line.strip()
                if not line.startswith("#") and line not in student:
                    yield line, f"wrong variant {path.stem}:{key}"


def collect(root: Path, published: Iterable[str], released: Iterable[str] = (), exempt: bool = True,
            repository: str | None = None) -> Secrets:
    """The secrets of the course at ``root``; ``published`` are the repository paths that are
    copied to students (every other tracked file is instructor-only), ``released`` the
    assignments whose solutions are released; ``exempt=False`` ignores public_lines.txt;
    with ``repository``, Colab, Binder and GitHub links naming another repository count too."""
    secrets, allowed = Secrets(repository=repository), public_lines(root) if exempt else set()
    for assignment in released:  # a released solution shows its lines to everyone
        for source in sorted((Path(root) / "solutions" / assignment).glob("*.ipynb")):
            allowed |= {line.strip() for cell in released_solution(source).cells for line in cell.source.splitlines()}
    for line, what in [*_source_lines(root, set(released)), *_wrong_variant_lines(root)]:
        if len(line) >= MIN_LENGTH and not IMPORT.match(line) and line not in allowed:
            secrets.lines.setdefault(line, what)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True)
    for rel in sorted(set(tracked.stdout.split("\0")) - set(published) - {""}):
        path = Path(root) / rel
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= MIN_FILE_BYTES:
            secrets.files.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), rel)
    return secrets


class _Text(html.parser.HTMLParser):
    """The text of an HTML page (scripts and styles left out), lines kept."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _notebook_texts(folder: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(Path(folder).glob("*.ipynb")):
        yield from texts(path.name, path.read_bytes())


def texts(name: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(where, text) a reader of the file sees: a notebook's cells and outputs, an HTML page's
    text, or the file's text; nothing for a binary file."""
    if b"\0" in data[:8192]:
        return
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".ipynb"):
        try:
            cells = json.loads(text)["cells"]
        except (ValueError, KeyError, TypeError):
            yield name, text
            return
        for number, cell in enumerate(cells):
            parts = [cell.get("source", "")]
            for output in cell.get("outputs", []):
                parts += [output.get("text", ""), *output.get("data", {}).values()]
            yield f"{name} cell {number}", "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts)
    elif name.endswith((".html", ".htm")):
        parser = _Text()
        parser.feed(text)
        yield name, "".join(parser.parts)
        yield name, text  # markers and imports inside attributes or scripts count too
    else:
        yield name, text


def find(name: str, data: bytes, secrets: Secrets) -> list[str]:
    """Every secret in one file (``name`` says where, in the report)."""
    found = []
    digest = hashlib.sha256(data).hexdigest()
    if digest in secrets.files:
        found.append(f"{name}: a copy of the instructor-only file {secrets.files[digest]}")
    for where, text in texts(name, data):
        found += [f"{where}: nbgrader marker {m!r}" for m in MARKERS if m in text]
        if GRADER_IMPORT.search(text):
            found.append(f"{where}: imports the autograder (grading tools are instructor-only)")
        for line in {line.strip() for line in text.splitlines()} & secrets.lines.keys():
            found.append(f"{where}: {secrets.lines[line]}: {line!r}")
        if secrets.repository:
            found += [f"{where}: links to {link}" for link in foreign_links(text, secrets.repository)]
    return list(dict.fromkeys(found))


def scan_tree(tree: Path, secrets: Secrets) -> list[str]:
    """Every secret in the files under ``tree`` (links are reported, never followed)."""
    found = []
    for path in sorted(Path(tree).rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if ".git" in path.relative_to(tree).parts:
            continue
        if path.is_symlink():
            found.append(f"{rel}: a symbolic link (never published)")
        elif path.is_file():
            found += find(rel, path.read_bytes(), secrets)
    return found


def scan_history(repository: Path, secrets: Secrets) -> list[str]:
    """Every secret in any file of any commit, and in any commit message, of a git repository."""
    def git(*args, **kwargs):
        return subprocess.run(["git", "-C", str(repository), *args], capture_output=True, check=True, **kwargs).stdout

    if not git("rev-parse", "--all").strip():
        return []  # no commit yet
    found = []
    for line in git("rev-list", "--all", "--objects").decode().splitlines():
        blob, _, path = line.partition(" ")
        if path and git("cat-file", "-t", blob).strip() == b"blob":
            found += [f"history {blob[:10]} {hit}" for hit in find(path, git("cat-file", "blob", blob), secrets)]
    for commit in git("rev-list", "--all").decode().split():
        found += [f"message of commit {commit[:10]}: {hit}"
                  for hit in find("message", git("log", "-1", "--format=%B", commit), secrets)]
    return list(dict.fromkeys(found))
