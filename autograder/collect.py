"""Collect: import submissions as an LMS exports them into nbgrader's submitted layout.

Accepted inputs (a folder or a .zip of one):

* flat files, one per student, the student id in the file name, as Canvas or Moodle
  name them (``smithj_12345_67890_ex01_intro_ml.ipynb``): the id is taken with a
  regular expression (``--id-pattern``, default: the text before the first ``_``);
* a tree ``<student>/<notebook>.ipynb`` (deeper folders too: the first folder is the
  student; nbgrader's own ``<student>/<assignment>/`` layout works).

A download is untrusted input. Collect never follows a link: the folder is walked with
``os.walk`` (links not followed) and ``os.lstat``, files are opened with ``O_NOFOLLOW``
and checked to be the file that was listed, and a .zip is read entry by entry, never
extracted as a whole. Symbolic and hard links, FIFOs, devices and sockets, zip entries
that are links, absolute paths or climb out with ``..``, and files that cannot be read
are refused and recorded, never opened or copied; no content of a refused or unreadable
file is ever printed or recorded. Only notebooks (``*.ipynb``) and nbgrader's
``timestamp.txt`` are read, each into a private staging copy of at most the
per-submission limit (``--max-mb``), and the whole download is capped
(``--max-total-mb``) against zip bombs: nothing is written before all of it is read.

Every guess is a visible decision, recorded per student in
``grading/autograder/<assignment>/collected/<student>.json`` (outside
``grading/submitted/``, which is handed to the student's sandbox): which file became
which notebook and why (a name guessed, the newest of several, a broken notebook taken
for want of a valid one), what was refused or ignored, where the submission time comes
from, and, for a student with nothing usable, the reason. ``export`` shows these notes.

Each student's chosen files land in ``grading/submitted/<student>/<assignment>/`` (the
folder is replaced as a whole) with a ``timestamp.txt`` in nbgrader's format, from
which nbgrader's ``AssignLatePenalties`` computes late penalties against the
assignment's due date in the gradebook.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import nbformat
from nbgrader.utils import parse_utc

from autograder.course import Course
from autograder.files import fingerprint

DEFAULT_ID_PATTERN = r"^(?P<student>[A-Za-z0-9.-]+)_"
DEFAULT_MAX_MB = 50  # one student's submission, all files together
DEFAULT_MAX_TOTAL_MB = 4096  # everything read from one download
MB = 2**20
TIMESTAMP = "timestamp.txt"
TIMESTAMP_MAX_BYTES = 1000
_CHUNK = 2**20
_SPECIAL = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
            (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


class CollectError(RuntimeError):
    """The download as a whole is refused; nothing was collected."""


@dataclass
class StudentRecord:
    """What collect did with one student's files (``collected/<student>.json``)."""

    assignment: str
    student: str
    status: str = "refused"  # "collected" or "refused" (nothing of theirs is graded)
    reason: str = ""  # why refused
    files: dict[str, str] = field(default_factory=dict)  # notebook file -> the file it was taken from
    notes: list[str] = field(default_factory=list)  # every decision and refusal, in words
    timestamp: str = ""  # the submission time written to timestamp.txt (nbgrader's format)
    timestamp_from: str = ""
    bytes: int = 0
    fingerprint: str = ""  # of grading/submitted/<student>/<assignment> as collected (files.fingerprint)
    source: str = ""  # the download
    collected_at: str = ""


@dataclass
class CollectReport:
    assignment: str
    source: str
    students: dict[str, StudentRecord] = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (path, why): no student; never read
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why): refused, no student known

    def summary(self) -> str:
        taken = [r for r in self.students.values() if r.status == "collected"]
        lines = [f"{self.assignment}: imported {len(taken)} submission(s), "
                 f"refused {len(self.students) - len(taken)} (from {self.source})"]
        for name, record in sorted(self.students.items()):
            if record.status != "collected":
                lines.append(f"  {name}: REFUSED ({record.reason})")
            lines += [f"  {name}: {note}" for note in record.notes]
        lines += [f"  unmatched: {path} ({why})" for path, why in self.unmatched]
        lines += [f"  refused: {path} ({why})" for path, why in self.refused]
        return "\n".join(lines)


@dataclass
class _Entry:
    """One file of the download, as listed (links and special files are never opened)."""

    parts: tuple[str, ...]  # its path in the download, split
    refused: str = ""  # why it is refused, e.g. "symbolic link"
    size: int = 0  # bytes, as the folder or the zip says
    time: datetime | None = None  # naive UTC
    zip_time: str = ""  # "" (a file's modification time), "local" or "utc" (a zip entry's date)
    staged: Path | None = None  # the private copy of its bytes (notebooks and timestamp.txt only)
    too_large: bool = False  # it holds more than one submission may
    student: str | None = None
    shown: str = ""  # its path as the student's record shows it

    @property
    def name(self) -> str:
        return self.parts[-1]

    def time_from(self) -> str:
        if not self.zip_time:
            return f"modification time of '{self.shown}'"
        zone = "UTC" if self.zip_time == "utc" else "no time zone in a zip: read as this machine's"
        return f"date of the zip entry '{self.shown}' ({zone})"


class _Stage:
    """Private copies of the files collect reads, each capped; the download capped in total."""

    def __init__(self, folder: Path, max_bytes: int, max_total_bytes: int):
        self.folder, self.max_bytes, self.max_total = folder, max_bytes, max_total_bytes
        self.total, self.count = 0, 0

    def take(self, entry: _Entry, source: BinaryIO) -> None:
        self.count += 1
        target = self.folder / str(self.count)
        read = 0
        with target.open("wb") as out:
            while read <= self.max_bytes:
                chunk = source.read(min(_CHUNK, self.max_bytes + 1 - read))
                if not chunk:
                    break
                read += len(chunk)
                self.total += len(chunk)
                if self.total > self.max_total:
                    raise CollectError(f"the download expands to more than {self.max_total / MB:g} MB "
                                       "(--max-total-mb): nothing collected")
                out.write(chunk)
        if read > self.max_bytes:
            entry.too_large = True
            target.unlink()
        else:
            entry.staged, entry.size = target, read


def _special(mode: int) -> str:
    return next((kind for test, kind in _SPECIAL if test(mode)), "" if stat.S_ISREG(mode) else "special file")


def _why(exc: OSError) -> str:
    return f"cannot be read ({os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__})"


def _wanted(name: str) -> bool:
    """Only notebooks and nbgrader's timestamp file are ever read."""
    return name.lower().endswith(".ipynb") or name == TIMESTAMP


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # .DS_Store, .ipynb_checkpoints, macOS zip resource forks


def _valid_id(student: str) -> bool:
    return bool(student) and len(student) <= 128 and not student.startswith(".") and not re.search(r"[/\\\x00]",
                                                                                                  student)


def _utc(seconds_ns: int) -> datetime:
    return datetime.fromtimestamp(seconds_ns // 10**9, UTC).replace(microsecond=seconds_ns % 10**9 // 1000,
                                                                    tzinfo=None)


def _folder_entries(root: Path, stage: _Stage, identify) -> list[_Entry]:
    entries = []

    def unlistable(exc: OSError):  # a folder that cannot be listed: refused, recorded
        entries.append(identify(_Entry(Path(os.path.relpath(exc.filename, root)).parts, refused=_why(exc))))

    for folder, dirnames, filenames in os.walk(root, onerror=unlistable):  # followlinks=False: links not entered
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        for name in sorted(dirnames + [f for f in filenames if not _skipped(f)]):
            path = os.path.join(folder, name)
            entry = _Entry(Path(os.path.relpath(path, root)).parts)
            try:
                info = os.lstat(path)
            except OSError as exc:
                entry.refused = _why(exc)
                entries.append(identify(entry))
                continue
            if stat.S_ISDIR(info.st_mode):
                continue  # a real folder: os.walk enters it
            entry.refused = _special(info.st_mode) or ("hard link" if info.st_nlink > 1 else "")
            entry.size, entry.time = info.st_size, _utc(info.st_mtime_ns)
            identify(entry)
            if not entry.refused and entry.student and _wanted(name):
                _read_file(path, info, entry, stage)
            entries.append(entry)
    return entries


def _read_file(path: str, listed: os.stat_result, entry: _Entry, stage: _Stage) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        entry.refused = "symbolic link" if exc.errno == errno.ELOOP else _why(exc)  # it became a link
        return
    with os.fdopen(fd, "rb") as f:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (listed.st_dev, listed.st_ino):
            entry.refused = "replaced while being collected"
            return
        try:
            stage.take(entry, f)
        except OSError as exc:
            entry.refused = _why(exc)


def _zip_time(info: zipfile.ZipInfo) -> tuple[datetime, str]:
    """The entry's time: the extended-timestamp field (UTC) if present, else the DOS date (local)."""
    extra = info.extra
    while len(extra) >= 4:
        kind, size = int.from_bytes(extra[:2], "little"), int.from_bytes(extra[2:4], "little")
        data = extra[4:4 + size]
        if kind == 0x5455 and len(data) >= 5 and data[0] & 1:
            return _utc(int.from_bytes(data[1:5], "little", signed=True) * 10**9), "utc"
        extra = extra[4 + size:]
    try:
        local = datetime(*info.date_time).astimezone(UTC).replace(tzinfo=None)
    except ValueError:  # a date the zip format allows but the calendar does not
        local = datetime(1980, 1, 1)
    return local, "local"


def _zip_entries(path: Path, stage: _Stage, identify) -> list[_Entry]:
    entries = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
            if not parts or any(_skipped(p) for p in parts if p != ".."):
                continue
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISDIR(mode):
                continue
            entry = _Entry(parts, size=info.file_size)
            entry.time, entry.zip_time = _zip_time(info)
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                entry.refused = "absolute path"
            elif ".." in parts:
                entry.refused = "path outside the download"
            elif stat.S_IFMT(mode):
                entry.refused = _special(mode)
            identify(entry, absolute=entry.refused == "absolute path")
            if not entry.refused and entry.student and _wanted(parts[-1]):
                try:
                    with archive.open(info) as f:
                        stage.take(entry, f)
                except CollectError:
                    raise
                except RuntimeError:  # zipfile: encrypted
                    entry.refused = "cannot be read (encrypted)"
                except Exception as exc:  # corrupt data, unknown compression: never its content
                    entry.refused = f"cannot be read ({type(exc).__name__})"
            entries.append(entry)
    return entries


def _identifier(pattern: re.Pattern):
    def identify(entry: _Entry, absolute: bool = False) -> _Entry:
        parts = entry.parts
        if absolute:
            entry.shown = "/" + "/".join(parts)
        elif len(parts) >= 2 and _valid_id(parts[0]):  # <student>/...
            entry.student, entry.shown = parts[0], "/".join(parts[1:])
        elif len(parts) == 1 and (m := pattern.match(parts[0])) and _valid_id(m.group("student")):
            entry.student, entry.shown = m.group("student"), parts[0]
        else:
            entry.shown = "/".join(parts)
        return entry

    return identify


def _key(name: str) -> str:
    """A file name reduced for guessing: no extension, copy marks, case or punctuation."""
    stem = re.sub(r"\.ipynb$", "", name, flags=re.IGNORECASE)
    stem = re.sub(r"(\s*\(\d+\)|-\d+|\s*-?\s*copy\d*)+$", "", stem, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", stem.lower())


def _match(entry: _Entry, notebooks: list[str], flat: bool) -> tuple[str | None, bool]:
    """(notebook, guessed): which notebook a submitted .ipynb file is, or None."""
    name = entry.name
    for nb in notebooks:
        if name == f"{nb}.ipynb" or (flat and name.endswith(f"_{nb}.ipynb")):
            return nb, False
    if len(notebooks) == 1:
        return notebooks[0], True
    key = _key(name[len(entry.student) + 1:] if flat else name)
    found = [nb for nb in notebooks if _key(nb) and _key(nb) in key]
    longest = [nb for nb in found if len(_key(nb)) == max(len(_key(n)) for n in found)]
    return (longest[0], True) if len(longest) == 1 else (None, False)


def _notebook_problem(path: Path) -> str:
    """Why a file is not a notebook nbgrader can grade ("" if it is one). Never its content."""
    try:
        nb = nbformat.reader.reads(path.read_bytes().decode("utf-8"))
    except Exception:  # NotJSONError, UnicodeDecodeError
        return "not JSON"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. duplicate cell ids, which nbgrader repairs
            nbformat.validate(nbformat.convert(nb, 4))
    except Exception:
        return "JSON, but not a valid notebook"
    return ""


def _timestamp(entry: _Entry) -> datetime | None:
    if entry.staged is None or entry.size > TIMESTAMP_MAX_BYTES:
        return None
    try:
        return parse_utc(entry.staged.read_text().strip())
    except Exception:
        return None


def _mb(size: int) -> str:
    return f"{size / MB:.1f}"


def _decide(record: StudentRecord, entries: list[_Entry], notebooks: list[str], max_bytes: int,
            due: datetime | None) -> dict[str, _Entry]:
    """Fill ``record`` (files, notes, timestamp, status) and return notebook file -> entry to copy."""
    candidates: dict[str, list[tuple[_Entry, bool]]] = defaultdict(list)
    stamps = []
    for entry in sorted(entries, key=lambda e: e.shown):
        if entry.refused:
            record.notes.append(f"'{entry.shown}': {entry.refused}{',' if entry.refused.endswith(')') else ''} "
                                "refused")
        elif entry.name == TIMESTAMP and len(entry.parts) > 1:
            stamps.append(entry)
        elif not entry.name.lower().endswith(".ipynb"):
            record.notes.append(f"'{entry.shown}': not a notebook, ignored")
        else:
            notebook, guessed = _match(entry, notebooks, flat=len(entry.parts) == 1)
            if notebook is None:
                names = ", ".join(f"{nb}.ipynb" for nb in notebooks)
                record.notes.append(f"'{entry.shown}': matches no notebook of {record.assignment} ({names}), refused")
            else:
                candidates[notebook].append((entry, guessed))
    limit = f"the limit is {max_bytes / MB:g} MB per submission (--max-mb)"
    too_large = [e for group in candidates.values() for e, _ in group] + stamps
    if big := next((e for e in too_large if e.too_large), None):
        size = f"is {_mb(big.size)} MB" if big.size > max_bytes else f"expands to more than {max_bytes / MB:g} MB"
        record.reason = f"submission too large: '{big.shown}' {size}, {limit}"
        return {}

    chosen: dict[str, _Entry] = {}
    decisions = []
    for nb in notebooks:
        if not candidates[nb]:
            continue
        problems = {id(e): _notebook_problem(e.staged) for e, _ in candidates[nb]}
        best, guessed = max(candidates[nb], key=lambda c: (not problems[id(c[0])], c[0].time, not c[1], c[0].shown))
        chosen[f"{nb}.ipynb"] = best
        if guessed:
            decisions.append(f"{nb}.ipynb taken from '{best.shown}' (name guessed)")
        if problems[id(best)]:
            decisions.append(f"{nb}.ipynb taken from '{best.shown}', which is not a valid notebook "
                             f"({problems[id(best)]}): grading will score it 0")
        for other, _ in sorted(candidates[nb], key=lambda c: c[0].shown):
            if other is best:
                continue
            if problems[id(other)] and not problems[id(best)]:
                why = f"it is not a valid notebook, '{best.shown}' is"
            elif other.time < best.time:
                why = f"'{best.shown}' is newer"
            else:
                why = f"'{best.shown}' was preferred (as recent, and named as the notebook)"
            decisions.append(f"'{other.shown}' not used for {nb}.ipynb: {why}")
    if not chosen:
        record.reason = "no notebook collected"
        return {}
    if len(notebooks) > 1:
        decisions += [f"{nb}.ipynb not submitted" for nb in notebooks if f"{nb}.ipynb" not in chosen]

    readable = [(t, e) for e in stamps if (t := _timestamp(e)) is not None]
    decisions += [f"'{e.shown}': not a timestamp nbgrader can read, ignored" for e in stamps
                  if all(e is not r for _, r in readable)]
    if readable:
        when, stamp = max(readable, key=lambda r: r[0])
        if len(readable) > 1:
            decisions.append(f"several {TIMESTAMP} files: the latest, '{stamp.shown}', used")
        chosen[TIMESTAMP] = stamp
        record.timestamp = stamp.staged.read_text()
        record.timestamp_from = f"'{stamp.shown}' of the student's folder"
    else:
        newest = max(chosen.values(), key=lambda e: e.time)
        when = newest.time
        record.timestamp = f"{when:%Y-%m-%d %H:%M:%S.%f} UTC\n"
        record.timestamp_from = newest.time_from()

    record.bytes = sum(e.size for e in chosen.values())
    if record.bytes > max_bytes:
        record.reason = f"submission too large: {_mb(record.bytes)} MB in all, {limit}"
        return {}
    if due is not None and when > due:
        decisions.append(f"submitted {timedelta(seconds=round((when - due).total_seconds()))} after the due date "
                         f"({due:%Y-%m-%d %H:%M:%S} UTC)")
    record.notes += decisions
    record.files = {target: e.shown for target, e in chosen.items() if target != TIMESTAMP}
    record.status = "collected"
    return chosen


def records_dir(course: Course, assignment: str) -> Path:
    return course.grading / "autograder" / assignment / "collected"


def read_records(course: Course, assignment: str) -> dict[str, StudentRecord]:
    """The per-student collect records of an assignment (student -> record)."""
    folder = records_dir(course, assignment)
    return {p.stem: StudentRecord(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def _same(folder: Path, files: dict[str, Path]) -> bool:
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return present == set(files) and all((folder / n).read_bytes() == p.read_bytes() for n, p in files.items())


def collect(course: Course, assignment: str, source: Path, id_pattern: str = DEFAULT_ID_PATTERN,
            max_mb: float = DEFAULT_MAX_MB, max_total_mb: float = DEFAULT_MAX_TOTAL_MB,
            due: datetime | None = None) -> CollectReport:
    """Import the download ``source`` (folder or .zip) into ``grading/submitted/``.

    ``due`` (naive UTC) only adds a note to late submissions; the penalty itself is
    nbgrader's, from the due date in the gradebook."""
    notebooks = course.notebooks(assignment)
    if not notebooks:
        raise ValueError(f"unknown assignment {assignment!r}: no notebooks in {course.source / assignment}")
    source = Path(source)
    report = CollectReport(assignment, str(source))
    max_bytes = int(max_mb * MB)
    identify = _identifier(re.compile(id_pattern))
    course.grading.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=course.grading, prefix=".collect-") as tmp:
        stage = _Stage(Path(tmp), max_bytes, int(max_total_mb * MB))
        if source.is_dir():
            entries = _folder_entries(source, stage, identify)
        elif zipfile.is_zipfile(source):
            try:
                entries = _zip_entries(source, stage, identify)
            except zipfile.BadZipFile as exc:
                raise CollectError(f"{source} is not a readable zip archive ({exc})") from None
        else:
            raise CollectError(f"{source} is neither a folder nor a zip archive")

        if any(len(e.parts) > 1 for e in entries):  # student folders: a link beside them is one too
            for entry in entries:
                name = entry.parts[0]
                if len(entry.parts) == 1 and entry.refused == "symbolic link" and entry.student is None \
                        and "." not in name and _valid_id(name):
                    entry.student, entry.shown = name, name
        by_student: dict[str, list[_Entry]] = defaultdict(list)
        for entry in entries:
            if entry.student:
                by_student[entry.student].append(entry)
            elif entry.refused:
                report.refused.append((entry.shown, entry.refused))
            else:
                report.unmatched.append((entry.shown, "no student id in its name"))

        now = datetime.now(UTC).isoformat(timespec="seconds")
        for student, own in sorted(by_student.items()):
            record = StudentRecord(assignment, student, source=str(source.resolve()), collected_at=now)
            chosen = _decide(record, own, notebooks, max_bytes, due)
            target = course.submitted / student / assignment
            if record.status == "collected":
                files = {name: e.staged for name, e in chosen.items()}
                if TIMESTAMP not in files:
                    files[TIMESTAMP] = Path(tmp) / f"{student}.{TIMESTAMP}"
                    files[TIMESTAMP].write_text(record.timestamp)
                if target.exists() and not _same(target, files):
                    record.notes.append("replaces the submission collected earlier")
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                for name, path in files.items():
                    shutil.copyfile(path, target / name)
                record.fingerprint = fingerprint(target)
            elif target.exists():
                shutil.rmtree(target)
                record.notes.append("the earlier collected submission was removed")
            folder = records_dir(course, assignment)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{student}.json").write_text(json.dumps(asdict(record), indent=1))
            report.students[student] = record
    log = course.grading / "autograder" / assignment / "collect.log"
    with log.open("a") as f:
        f.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')}\n{report.summary()}\n")
    return report


def _gradebook_exists(course: Course) -> bool:
    url = course.coursedir.db_url
    if not url.startswith("sqlite:///"):
        return True
    path = Path(url.removeprefix("sqlite:///").split("?")[0])
    return (path if path.is_absolute() else course.root / path).exists()


def due_date(course: Course, assignment: str) -> datetime | None:
    """The assignment's due date in the gradebook (naive UTC), if it has one."""
    if not _gradebook_exists(course):
        return None
    from nbgrader.api import MissingEntry

    with course.gradebook() as gb:
        try:
            return gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None


def set_due_date(course: Course, assignment: str, due: str) -> datetime:
    """Record the due date in the gradebook, where nbgrader's AssignLatePenalties reads it
    (as ``nbgrader db assignment add ASSIGNMENT --duedate=...`` does). Returns it in UTC."""
    when = parse_utc(due)
    with course.gradebook() as gb:
        gb.update_or_create_assignment(assignment, duedate=when)
    return when


def penalty_method(course: Course) -> str:
    """nbgrader's late-penalty method in the course configuration ('none' or 'zero')."""
    return str(course.base_config.get("LateSubmissionPlugin", {}).get("penalty_method", "none"))
