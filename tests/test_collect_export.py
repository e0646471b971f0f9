"""collect, export and report under attack and on every kind of nbgrader cell.

Each test builds a small scratch course (the repository's nbgrader_config.py and a
tiny source assignment) and a download as an LMS would hand it over, then runs the
autograder's CLI and asserts exactly what was copied, recorded and printed. The
attacks: links (to a secret outside, to solutions/, a linked folder), special files,
zip entries that are links or climb out of the download, zip bombs and oversized
submissions. The honest cases: a renamed notebook, two files for one notebook, a
student with no notebook, a late submission, an export of task and manual cells.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder import __main__ as cli
from coursetools import ROOT

SECRET = "TOP-SECRET-7f3a9c"  # what a hostile download tries to get copied, read or printed


def notebook(source: str = "x = 1") -> str:
    """A valid notebook with one code cell (the same text for the same source)."""
    cell = new_code_cell(source)
    cell.id = "cell-1"
    return nbformat.writes(new_notebook(cells=[cell]))


def make_course(tmp_path: Path, assignment: str = "ex", notebooks: tuple[str, ...] = ("ex",)) -> Path:
    course = tmp_path / "course"
    (course / "solutions" / assignment).mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for name in notebooks:
        (course / "solutions" / assignment / f"{name}.ipynb").write_text(notebook(f"# {name}"))
    return course


def run(course: Path, *args: str, capsys) -> tuple[int, str]:
    """The CLI in this process (stdout and stderr together)."""
    cwd = os.getcwd()
    try:
        code = cli.main(["--root", str(course), *args])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    return code, out.out + out.err


def collected(course: Path, student: str, assignment: str = "ex") -> dict:
    return json.loads((course / "grading" / "autograder" / assignment / "collected" / f"{student}.json").read_text())


def submitted(course: Path, assignment: str = "ex") -> dict[str, list[str]]:
    """Which files each student has in grading/submitted/."""
    root = course / "grading" / "submitted"
    return {s.name: sorted(p.name for p in (s / assignment).iterdir()) for s in sorted(root.iterdir())
            if (s / assignment).is_dir()} if root.exists() else {}


def assert_secret_nowhere(course: Path, *outputs: str):
    for path in (course / "grading").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), f"the secret reached {path}"
    for text in outputs:
        assert SECRET not in text, "the secret was printed"


def set_mtime(path: Path, when: datetime):
    ns = int(when.timestamp()) * 10**9 + when.microsecond * 1000
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


@pytest.fixture
def secret(tmp_path) -> Path:
    folder = tmp_path / "instructor"
    folder.mkdir()
    (folder / "secret.txt").write_text(f"{SECRET}\n")
    (folder / "secret.ipynb").write_text(notebook(f"answer = '{SECRET}'"))
    return folder


# ---------------------------------------------------------------- links and special files


def test_symlinks_to_a_secret_and_to_solutions_are_refused(tmp_path, secret, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    for student in ("alice", "bob", "carol"):
        (download / student).mkdir(parents=True)
    (download / "alice" / "ex.ipynb").symlink_to(secret / "secret.txt")  # read the instructor's file
    (download / "bob" / "ex.ipynb").symlink_to(course / "solutions" / "ex" / "ex.ipynb")  # hand in the solution
    (download / "carol" / "ex.ipynb").write_text(notebook("honest = True"))
    (download / "carol" / "notes.ipynb").symlink_to(secret / "secret.ipynb")
    (download / "dave_1_ex.ipynb").symlink_to(course / "grading" / "gradebook.db")  # flat, dangling for now

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert code == 0, out
    assert_secret_nowhere(course, out)
    assert submitted(course) == {"carol": ["ex.ipynb", "timestamp.txt"]}
    assert (course / "grading" / "submitted" / "carol" / "ex" / "ex.ipynb").read_text() == notebook("honest = True")
    for student in ("alice", "bob", "dave"):
        record = collected(course, student)
        assert (record["status"], record["reason"], record["files"]) == ("refused", "no notebook collected", {})
    assert collected(course, "alice")["notes"] == ["'ex.ipynb': symbolic link refused"]
    assert collected(course, "bob")["notes"] == ["'ex.ipynb': symbolic link refused"]
    assert collected(course, "dave")["notes"] == ["'dave_1_ex.ipynb': symbolic link refused"]
    carol = collected(course, "carol")
    assert carol["status"] == "collected" and carol["files"] == {"ex.ipynb": "ex.ipynb"}
    assert carol["notes"] == ["'notes.ipynb': symbolic link refused"]
    assert "  alice: REFUSED (no notebook collected)" in out
    assert "  alice: 'ex.ipynb': symbolic link refused" in out
    assert "  carol: 'notes.ipynb': symbolic link refused" in out
    assert "ex: imported 1 submission(s), refused 3" in out


def test_symlinked_folders_are_not_entered(tmp_path, secret, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    download.mkdir()
    (download / "erin").symlink_to(secret, target_is_directory=True)  # a student folder that is a link
    (download / "frank").mkdir()
    (download / "frank" / "ex.ipynb").write_text(notebook("mine = 1"))
    (download / "frank" / "work").symlink_to(course / "solutions" / "ex", target_is_directory=True)

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert code == 0, out
    assert_secret_nowhere(course, out)
    assert submitted(course) == {"frank": ["ex.ipynb", "timestamp.txt"]}
    erin = collected(course, "erin")
    assert (erin["status"], erin["notes"]) == ("refused", ["'erin': symbolic link refused"])
    frank = collected(course, "frank")
    assert (frank["status"], frank["files"]) == ("collected", {"ex.ipynb": "ex.ipynb"})
    assert frank["notes"] == ["'work': symbolic link refused"]


def test_fifo_and_device_are_refused_without_opening_them(tmp_path, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    (download / "gina").mkdir(parents=True)
    os.mkfifo(download / "gina" / "ex.ipynb")  # opening it for reading would block for ever
    (download / "hal").mkdir()
    (download / "hal" / "ex.ipynb").write_text(notebook("mine = 2"))
    os.mkfifo(download / "hal" / "extra.ipynb")
    devices = os.geteuid() == 0
    if devices:  # only root may make device files
        os.mknod(download / "hal" / "zero.ipynb", stat.S_IFCHR | 0o600, os.makedev(1, 5))

    start = time.monotonic()
    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert time.monotonic() - start < 60
    assert code == 0, out
    assert submitted(course) == {"hal": ["ex.ipynb", "timestamp.txt"]}
    gina = collected(course, "gina")
    assert (gina["status"], gina["notes"]) == ("refused", ["'ex.ipynb': FIFO refused"])
    hal = collected(course, "hal")
    assert hal["files"] == {"ex.ipynb": "ex.ipynb"}
    assert hal["notes"] == ["'extra.ipynb': FIFO refused"] + (["'zero.ipynb': character device refused"]
                                                               if devices else [])


def test_hard_link_and_unreadable_file_are_refused(tmp_path, secret, capsys, monkeypatch):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    (download / "ivan").mkdir(parents=True)
    os.link(secret / "secret.ipynb", download / "ivan" / "ex.ipynb")  # a second name of the instructor's file
    (download / "jane").mkdir()
    locked = download / "jane" / "ex.ipynb"
    locked.write_text(notebook(f"locked = '{SECRET}'"))
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for anyone else
        real_open = os.open

        def refuse(path, flags, *args, **kwargs):
            if str(path).endswith("jane/ex.ipynb"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert code == 0, out
    assert_secret_nowhere(course, out)
    assert submitted(course) == {}
    assert collected(course, "ivan")["notes"] == ["'ex.ipynb': hard link refused"]
    jane = collected(course, "jane")
    assert (jane["status"], jane["notes"]) == ("refused", ["'ex.ipynb': cannot be read (permission denied), refused"])


# ---------------------------------------------------------------- zip archives


def _zip_entry(name: str, mode: int, when=(2024, 1, 2, 3, 4, 6)) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when)
    info.external_attr = mode << 16
    info.create_system = 3  # Unix: the mode bits count
    return info


def test_zip_link_entries_and_paths_outside_are_refused(tmp_path, secret, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download.zip"
    with zipfile.ZipFile(download, "w") as archive:
        archive.writestr(_zip_entry("kim/ex.ipynb", stat.S_IFLNK | 0o777), str(secret / "secret.ipynb"))
        archive.writestr(_zip_entry("leo/ex.ipynb", stat.S_IFREG | 0o644), notebook("mine = 3"))
        archive.writestr(_zip_entry("leo/../../evil.ipynb", stat.S_IFREG | 0o644), notebook("evil = 1"))
        archive.writestr(_zip_entry("../mia_1_ex.ipynb", stat.S_IFREG | 0o644), notebook("evil = 2"))
        archive.writestr(_zip_entry("/tmp/nina_1_ex.ipynb", stat.S_IFREG | 0o644), notebook("evil = 3"))

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert code == 0, out
    assert_secret_nowhere(course, out)
    assert submitted(course) == {"leo": ["ex.ipynb", "timestamp.txt"]}
    kim = collected(course, "kim")
    assert (kim["status"], kim["notes"]) == ("refused", ["'ex.ipynb': symbolic link refused"])
    leo = collected(course, "leo")
    assert (leo["files"], leo["notes"]) == ({"ex.ipynb": "ex.ipynb"}, ["'../../evil.ipynb': path outside the "
                                                                        "download refused"])
    assert "  refused: ../mia_1_ex.ipynb (path outside the download)" in out
    assert "  refused: /tmp/nina_1_ex.ipynb (absolute path)" in out
    assert not (tmp_path / "evil.ipynb").exists() and not (tmp_path.parent / "evil.ipynb").exists()
    assert not Path("/tmp/nina_1_ex.ipynb").exists()


def test_zip_bomb_is_capped_per_submission_and_in_total(tmp_path, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download.zip"
    big = notebook("x = 1" + " " * 3_000_000)  # 3 MB that compress to a few kB
    with zipfile.ZipFile(download, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("olga_1_ex.ipynb", big)
        archive.writestr("pete_1_ex.ipynb", notebook("small = 1"))

    code, out = run(course, "collect", "ex", str(download), "--max-mb", "1", capsys=capsys)

    assert code == 0, out
    assert submitted(course) == {"pete": ["ex.ipynb", "timestamp.txt"]}
    olga = collected(course, "olga")
    assert olga["status"] == "refused"
    assert olga["reason"] == ("submission too large: 'olga_1_ex.ipynb' is 2.9 MB, "
                              "the limit is 1 MB per submission (--max-mb)")

    code, out = run(course, "collect", "ex", str(download), "--max-total-mb", "2", capsys=capsys)
    assert code == 1
    assert "the download expands to more than 2 MB (--max-total-mb): nothing collected" in out


def test_oversized_submission_is_refused_not_truncated(tmp_path, capsys):
    course = make_course(tmp_path, "hw", ("part1", "part2"))
    download = tmp_path / "download"
    (download / "quinn").mkdir(parents=True)
    (download / "quinn" / "part1.ipynb").write_text(notebook("a = 1" + " " * 700_000))
    (download / "quinn" / "part2.ipynb").write_text(notebook("b = 1" + " " * 700_000))
    (download / "rita").mkdir()
    (download / "rita" / "part1.ipynb").write_text(notebook("a = 2"))
    previous = course / "grading" / "submitted" / "quinn" / "hw"  # collected earlier, before the big upload
    previous.mkdir(parents=True)
    (previous / "part1.ipynb").write_text(notebook("old = 1"))

    code, out = run(course, "collect", "hw", str(download), "--max-mb", "1", capsys=capsys)

    assert code == 0, out
    assert submitted(course, "hw") == {"rita": ["part1.ipynb", "timestamp.txt"]}
    quinn = collected(course, "quinn", "hw")
    assert (quinn["status"], quinn["files"]) == ("refused", {})
    assert quinn["reason"] == "submission too large: 1.3 MB in all, the limit is 1 MB per submission (--max-mb)"
    assert quinn["notes"] == ["the earlier collected submission was removed"]
    assert collected(course, "rita", "hw")["notes"] == ["part2.ipynb not submitted"]
    assert "  quinn: REFUSED (submission too large: 1.3 MB in all" in out


# ---------------------------------------------------------------- honest records


def test_renamed_and_unmatchable_notebooks_are_visible_decisions(tmp_path, capsys):
    course = make_course(tmp_path, "ps", ("problem1", "problem2"))
    download = tmp_path / "download"
    (download / "sam").mkdir(parents=True)
    (download / "sam" / "Problem 1 (1).ipynb").write_text(notebook("p1 = 1"))
    (download / "sam" / "problem2.ipynb").write_text(notebook("p2 = 1"))
    (download / "sam" / "answers.ipynb").write_text(notebook("other = 1"))

    code, out = run(course, "collect", "ps", str(download), capsys=capsys)

    assert code == 0, out
    assert submitted(course, "ps") == {"sam": ["problem1.ipynb", "problem2.ipynb", "timestamp.txt"]}
    assert (course / "grading" / "submitted" / "sam" / "ps" / "problem1.ipynb").read_text() == notebook("p1 = 1")
    sam = collected(course, "sam", "ps")
    assert sam["files"] == {"problem1.ipynb": "Problem 1 (1).ipynb", "problem2.ipynb": "problem2.ipynb"}
    assert sam["notes"] == ["'answers.ipynb': matches no notebook of ps (problem1.ipynb, problem2.ipynb), refused",
                            "problem1.ipynb taken from 'Problem 1 (1).ipynb' (name guessed)"]
    assert "  sam: problem1.ipynb taken from 'Problem 1 (1).ipynb' (name guessed)" in out


def test_single_notebook_renamed_in_a_flat_download(tmp_path, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    download.mkdir()
    (download / "tom_123_456_ex.ipynb").write_text(notebook("t = 1"))  # as Canvas names it: not a guess
    (download / "uma_123_456_My Exercise-1.ipynb").write_text(notebook("u = 1"))

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert code == 0, out
    assert submitted(course) == {"tom": ["ex.ipynb", "timestamp.txt"], "uma": ["ex.ipynb", "timestamp.txt"]}
    assert collected(course, "tom")["notes"] == []
    assert collected(course, "uma")["notes"] == ["ex.ipynb taken from 'uma_123_456_My Exercise-1.ipynb' (name guessed)"]


def test_student_with_only_a_text_file_gets_a_refused_row(tmp_path, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    download.mkdir()
    (download / "vera_1_answers.txt").write_text("I could not open Jupyter")
    (download / "walt_1_ex.ipynb").write_text(notebook("w = 1"))
    (download / "readme.txt").write_text("from the LMS")

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)
    assert code == 0, out
    assert submitted(course) == {"walt": ["ex.ipynb", "timestamp.txt"]}
    vera = collected(course, "vera")
    assert (vera["status"], vera["reason"]) == ("refused", "no notebook collected")
    assert vera["notes"] == ["'vera_1_answers.txt': not a notebook, ignored"]
    assert "  unmatched: readme.txt (no student id in its name)" in out

    code, out = run(course, "export", "ex", capsys=capsys)
    assert code == 0, out
    with (course / "grading" / "exports" / "ex_grades.csv").open() as f:
        table = {row["student_id"]: row for row in csv.DictReader(f)}
    assert sorted(table) == ["vera", "walt"]
    assert (table["vera"]["status"], table["vera"]["reason"], table["vera"]["score"]) == (
        "refused", "no notebook collected", "0")
    assert table["vera"]["notes"] == "'vera_1_answers.txt': not a notebook, ignored"
    assert (table["walt"]["status"], table["walt"]["reason"]) == ("not graded", "collected, not graded yet")


def test_two_files_for_one_notebook_newest_notebook_wins(tmp_path, capsys):
    course = make_course(tmp_path)
    download = tmp_path / "download"
    (download / "xena").mkdir(parents=True)
    (download / "xena" / "ex.ipynb").write_text(notebook("first = 1"))
    (download / "xena" / "ex (1).ipynb").write_text(notebook("second = 1"))
    set_mtime(download / "xena" / "ex.ipynb", datetime(2024, 3, 1, 10, 0, tzinfo=UTC))
    set_mtime(download / "xena" / "ex (1).ipynb", datetime(2024, 3, 1, 11, 0, tzinfo=UTC))
    (download / "yuri").mkdir()  # the newest .ipynb is not a notebook: it must not win
    (download / "yuri" / "ex.ipynb").write_text(notebook("good = 1"))
    (download / "yuri" / "ex_final.ipynb").write_text(f"%PDF-1.4 {SECRET}")
    (download / "yuri" / "ex.docx").write_text("newest of all")
    set_mtime(download / "yuri" / "ex.ipynb", datetime(2024, 3, 1, 10, 0, tzinfo=UTC))
    set_mtime(download / "yuri" / "ex_final.ipynb", datetime(2024, 3, 1, 11, 0, tzinfo=UTC))
    set_mtime(download / "yuri" / "ex.docx", datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    (download / "zoe").mkdir()  # nothing better than a broken file: it is graded (as 0), and says so
    (download / "zoe" / "ex.ipynb").write_text(f'{{"cells": "{SECRET}"')

    code, out = run(course, "collect", "ex", str(download), capsys=capsys)

    assert code == 0, out
    assert (course / "grading" / "submitted" / "xena" / "ex" / "ex.ipynb").read_text() == notebook("second = 1")
    xena = collected(course, "xena")
    assert xena["files"] == {"ex.ipynb": "ex (1).ipynb"}
    assert xena["notes"] == ["ex.ipynb taken from 'ex (1).ipynb' (name guessed)",
                             "'ex.ipynb' not used for ex.ipynb: 'ex (1).ipynb' is newer"]
    assert (course / "grading" / "submitted" / "yuri" / "ex" / "ex.ipynb").read_text() == notebook("good = 1")
    yuri = collected(course, "yuri")
    assert yuri["files"] == {"ex.ipynb": "ex.ipynb"}
    assert yuri["notes"] == ["'ex.docx': not a notebook, ignored",
                             "'ex_final.ipynb' not used for ex.ipynb: it is not a valid notebook, 'ex.ipynb' is"]
    zoe = collected(course, "zoe")
    assert (zoe["status"], zoe["files"]) == ("collected", {"ex.ipynb": "ex.ipynb"})
    assert zoe["notes"] == ["ex.ipynb taken from 'ex.ipynb', which is not a valid notebook (not JSON): "
                            "grading will score it 0"]
    assert SECRET not in out and SECRET not in json.dumps([xena, yuri, zoe])


# ---------------------------------------------------------------- timestamps and late penalties


def test_timestamps_from_zip_dates_file_times_and_kept_timestamp_files(tmp_path, capsys):
    course = make_course(tmp_path)
    folder = tmp_path / "download"
    (folder / "amy").mkdir(parents=True)
    (folder / "amy" / "ex.ipynb").write_text(notebook("a = 1"))
    set_mtime(folder / "amy" / "ex.ipynb", datetime(2024, 2, 3, 4, 5, 6, 789000, tzinfo=UTC))
    (folder / "ben" / "ex").mkdir(parents=True)  # nbgrader's own layout, with its timestamp
    (folder / "ben" / "ex" / "ex.ipynb").write_text(notebook("b = 1"))
    (folder / "ben" / "ex" / "timestamp.txt").write_text("2015-02-02 14:58:23.948203 America/Los_Angeles")

    code, out = run(course, "collect", "ex", str(folder), capsys=capsys)
    assert code == 0, out
    amy = course / "grading" / "submitted" / "amy" / "ex" / "timestamp.txt"
    assert amy.read_text() == "2024-02-03 04:05:06.789000 UTC\n"
    assert collected(course, "amy")["timestamp_from"] == "modification time of 'ex.ipynb'"
    ben = course / "grading" / "submitted" / "ben" / "ex" / "timestamp.txt"
    assert ben.read_text() == "2015-02-02 14:58:23.948203 America/Los_Angeles"
    assert collected(course, "ben")["timestamp_from"] == "'ex/timestamp.txt' of the student's folder"

    archive_path = tmp_path / "download.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("cleo_1_ex.ipynb", date_time=(2024, 5, 6, 7, 8, 10)), notebook("c = 1"))
    code, out = run(course, "collect", "ex", str(archive_path), capsys=capsys)
    assert code == 0, out
    local = datetime(2024, 5, 6, 7, 8, 10).astimezone(UTC)  # a zip stores local time without a zone
    cleo = course / "grading" / "submitted" / "cleo" / "ex" / "timestamp.txt"
    assert cleo.read_text() == f"{local:%Y-%m-%d %H:%M:%S.%f} UTC\n"
    assert collected(course, "cleo")["timestamp_from"] == ("date of the zip entry 'cleo_1_ex.ipynb' "
                                                           "(no time zone in a zip: read as this machine's)")


def _graded_course(tmp_path: Path) -> Path:
    """A one-notebook assignment with 2 autograded points (and nothing slow to import)."""
    course = tmp_path / "course"
    (course / "solutions" / "late").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    solution = new_code_cell("### BEGIN SOLUTION\ndef f():\n    return 1\n### END SOLUTION")
    solution.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "f",
                                     "schema_version": 3}
    test = new_code_cell("assert f() == 1")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "test_f",
                                 "points": 2, "schema_version": 3}
    nb = new_notebook(cells=[solution, test])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, course / "solutions" / "late" / "late.ipynb")
    return course


def _cli(course: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "autograder", "--root", str(course), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, f"autograder {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.parametrize("due_from", ["--due", "pyproject.toml"])
def test_late_submission_loses_points_through_the_cli(tmp_path, due_from):
    course = _graded_course(tmp_path)
    if due_from == "pyproject.toml":  # the course's schedule, as in this repository's [tool.course.due]
        (course / "pyproject.toml").write_text("[tool.course.due]\nlate = 2024-01-10T12:00:00Z\n")
    _cli(course, "release", "late")
    answer = nbformat.read(course / "exercises" / "late" / "late.ipynb", as_version=4)
    answer.cells[0].source = "def f():\n    return 1"
    download = tmp_path / "download"
    for student, when in (("early", datetime(2024, 1, 10, 11, 59, tzinfo=UTC)),
                          ("tardy", datetime(2024, 1, 10, 12, 30, tzinfo=UTC))):
        (download / student).mkdir(parents=True)
        nbformat.write(answer, download / student / "late.ipynb")
        set_mtime(download / student / "late.ipynb", when)

    due = ["--due", "2024-01-10 12:00:00 UTC"] if due_from == "--due" else []
    collect = _cli(course, "collect", "late", str(download), *due)
    assert "  tardy: submitted 0:30:00 after the due date (2024-01-10 12:00:00 UTC)" in collect.stdout
    assert "early:" not in collect.stdout
    _cli(course, "grade", "late", "--timeout", "60")
    _cli(course, "export", "late")
    with (course / "grading" / "exports" / "late_grades.csv").open() as f:
        table = {row["student_id"]: row for row in csv.DictReader(f)}
    assert {s: (r["score"], r["late_penalty"], r["late:test_f"]) for s, r in table.items()} == {
        "early": ("2", "0", "2"), "tardy": ("0", "2", "2")}  # nbgrader's "zero" penalty: the whole score
    with (course / "grading" / "exports" / "late_lms.csv").open() as f:
        assert list(csv.reader(f)) == [["student_id", "total", "max"], ["early", "2", "2"], ["tardy", "0", "2"]]


# ---------------------------------------------------------------- export and report


def test_export_and_report_with_task_manual_and_extra_credit_cells(tmp_path, capsys):
    from nbgrader.api import Gradebook

    from autograder.course import Course, put_environment_first
    from autograder.grade import Record

    course = make_course(tmp_path, "hw", ("nb",))
    cells = [new_code_cell("def f(): ...", metadata={"nbgrader": {"grade_id": "code", "solution": True}}),
             new_code_cell("assert f()", metadata={"nbgrader": {"grade_id": "auto", "grade": True}}),
             new_markdown_cell("essay", metadata={"nbgrader": {"grade_id": "essay", "grade": True}}),
             new_markdown_cell("task", metadata={"nbgrader": {"grade_id": "task", "task": True}})]
    nbformat.write(new_notebook(cells=cells), course / "solutions" / "hw" / "nb.ipynb")  # gives the cell order
    put_environment_first()
    with Gradebook(Course(course).db_url) as gb:
        gb.update_or_create_assignment("hw")
        gb.add_notebook("nb", "hw")
        gb.add_grade_cell("essay", "nb", "hw", max_score=3, cell_type="markdown")
        gb.add_grade_cell("auto", "nb", "hw", max_score=2, cell_type="code")
        gb.add_task_cell("task", "nb", "hw", max_score=4, cell_type="markdown")
        for student in ("ann", "bo"):
            gb.add_student(student)
            gb.add_submission("hw", student)
            for grade in gb.find_submission_notebook("nb", "hw", student).grades:
                grade.auto_score = 2.0 if grade.name == "auto" else None
                grade.needs_manual_grade = grade.name != "auto"
        bo = {g.name: g for g in gb.find_submission_notebook("nb", "hw", "bo").grades}
        bo["essay"].manual_score, bo["essay"].needs_manual_grade = 2.5, False
        bo["task"].manual_score, bo["task"].needs_manual_grade = 4.0, False
        bo["auto"].extra_credit = 1.0
        gb.find_submission_notebook("nb", "hw", "bo").late_submission_penalty = 1.5
        gb.db.commit()
    records = course / "grading" / "autograder" / "hw"
    records.mkdir(parents=True)
    for student, review in (("ann", ""), ("bo", "the submission replaced numpy.testing")):
        record = Record("hw", student, "graded", 2.0, 9.0, needs_review=review)
        (records / f"{student}.json").write_text(json.dumps(record.__dict__))

    code, out = run(course, "export", "hw", capsys=capsys)

    assert code == 0, out
    with (course / "grading" / "exports" / "hw_grades.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["student_id", "status", "needs_review", "reason", "notes", "score", "max_score", "late_penalty",
         "manual_grading_pending", "nb:auto", "nb:essay", "nb:task"],
        ["ann", "graded", "", "", "", "2", "9", "0", "yes", "2", "", ""],  # not scored yet: blank
        ["bo", "graded", "the submission replaced numpy.testing", "", "", "8", "9", "1.5", "no", "3", "2.5", "4"],
    ]  # bo: 2 + 1 extra credit + 2.5 + 4 - 1.5 late
    with (course / "grading" / "exports" / "hw_lms.csv").open() as f:
        assert list(csv.reader(f)) == [["student_id", "total", "max"], ["ann", "2", "9"], ["bo", "8", "9"]]

    code, out = run(course, "report", "hw", capsys=capsys)
    assert code == 0, out
    assert "  status: graded 2" in out
    assert "  manual grading pending: 1 (ann): grade in formgrader, then export again" in out
    assert "  needs review: 1 (bo)" in out
    assert "    nb:task" in out
    assert (course / "grading" / "exports" / "hw_distribution.png").exists()
