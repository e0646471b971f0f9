"""Grading on a Dask cluster (`autograder grade --scheduler ADDRESS`) gives what a local run gives.

nbgrader's ps1 (the fixture of test_nbgrader_ps1) with four submissions is released and
collected once, then copied into two scratch courses: one is graded with the local process
pool, the other through a `distributed.LocalCluster` (two single-threaded worker processes,
what `dask worker --nthreads 1` runs on each machine of a real cluster). Both runs must write
one record per submission with the same status and score, and export the same cell scores.
The cluster's workers share the course folder, here as on a cluster with a shared (NFS) folder.

The README's several-machine set-up keeps the gradebook in PostgreSQL (SQLite does not work
over NFS): a second test starts a throwaway PostgreSQL server from Debian's package (as an
ordinary user, reachable only through a Unix socket in a private folder) and does the whole
round, release, collect, grade on the cluster and export, with that gradebook.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import distributed  # the cluster extra (pip install ".[cluster]"), which make test installs
import pytest
from test_nbgrader_ps1 import FILES, FIXTURE, _cli

from autograder import sandbox
from coursetools import ROOT, execute

STUDENTS = {"bitdiddle": "bitdiddle", "hacker": "hacker", "bitdiddle2": "bitdiddle", "hacker2": "hacker"}
EXPECTED = {"bitdiddle": 1.5, "hacker": 3.0, "bitdiddle2": 1.5, "hacker2": 3.0}  # stock nbgrader's (test_nbgrader_ps1)


def _course(folder, db_url: str | None = None):
    """A scratch course holding ps1, released and collected (in the gradebook at ``db_url``)."""
    folder.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", folder)
    if db_url:
        with (folder / "nbgrader_config.py").open("a") as f:
            f.write(f"c.CourseDirectory.db_url = {db_url!r}\n")
    shutil.copytree(FIXTURE / "source" / "ps1", folder / "solutions" / "ps1")
    download = folder.parent / f"{folder.name}-download"
    for student, copy_of in STUDENTS.items():
        (download / student).mkdir(parents=True)
        for name in FILES:
            shutil.copy2(FIXTURE / "submitted" / copy_of / "ps1" / name, download / student / name)
    _cli(folder, "release", "ps1")
    _cli(folder, "collect", "ps1", str(download))
    return folder


def _grade_on_cluster(course) -> float:
    """Grade ps1 through a LocalCluster, checking that the submissions really ran on its workers;
    the seconds it took."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        start = time.perf_counter()
        printed = _cli(course, "grade", "ps1", "--scheduler", cluster.scheduler_address).stdout
        seconds = time.perf_counter() - start
        with distributed.Client(cluster) as client:
            ran = client.run(lambda: __import__("sys").modules.get("autograder.grade") is not None)
    assert all(ran.values()) and len(ran) == 2, f"the cluster's workers did not import the grader: {ran}"
    assert "4 submission(s), 4 new or changed" in printed
    return seconds


def _same_results(course, reference) -> None:
    """``course`` was graded like ``reference``: the same records and exported cell scores."""
    records, cells = _results(course)
    reference_records, reference_cells = _results(reference)
    assert sorted(records) == sorted(STUDENTS), "one record per submission"
    for student, score in EXPECTED.items():
        mine, theirs = records[student], reference_records[student]
        assert (mine["status"], mine["score"]) == ("graded", score), mine
        assert (mine["status"], mine["score"], mine["max_score"], mine["reason"]) == (
            theirs["status"], theirs["score"], theirs["max_score"], theirs["reason"])
    assert cells == reference_cells, "the exported cell scores differ from the reference run's"


def _summary(name: str, text: str) -> None:
    summaries = execute.run_dir() / "summaries"
    summaries.mkdir(exist_ok=True)
    (summaries / f"{name}.txt").write_text(text)


def _results(course) -> tuple[dict, dict]:
    records = {p.stem: json.loads(p.read_text()) for p in (course / "grading" / "autograder" / "ps1").glob("*.json")}
    _cli(course, "export", "ps1")
    with (course / "grading" / "exports" / "ps1_grades.csv").open() as f:
        cells = {row["student_id"]: {k: v for k, v in row.items() if ":" in k or k in ("status", "score", "max_score")}
                 for row in csv.DictReader(f)}
    return records, cells


@pytest.mark.slow
def test_dask_cluster_grades_like_the_local_pool(tmp_path):
    sandbox.check_available()
    course = _course(tmp_path / "course")
    local, clustered = tmp_path / "local", tmp_path / "clustered"
    shutil.copytree(course, local)
    shutil.copytree(course, clustered)

    start = time.perf_counter()
    _cli(local, "grade", "ps1", "--workers", "2")
    local_seconds = time.perf_counter() - start
    cluster_seconds = _grade_on_cluster(clustered)
    _summary("grading on a Dask cluster", f"ps1, {len(STUDENTS)} submissions: local pool (2 workers) "
             f"{local_seconds:.1f} s, LocalCluster (2 single-threaded workers) {cluster_seconds:.1f} s\n")
    _same_results(clustered, local)


def _postgres_bin() -> str:
    """The folder of PostgreSQL's server programs (Debian's layout; .ci/system-packages installs it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    assert found, "PostgreSQL's server is not installed (Debian: apt-get install postgresql)"
    return os.path.dirname(found[-1])


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server with an empty database; its SQLAlchemy URL. It runs as an
    ordinary user (PostgreSQL refuses root; as root, the uid nobody), listens on no TCP port,
    only on a Unix socket in a private folder, and is stopped and deleted afterwards."""
    bindir = _postgres_bin()
    folder = tempfile.mkdtemp(prefix="gradebook-pg-")
    as_user = []
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)
        as_user = sandbox.drop_to(65534)
    data, sockets = f"{folder}/data", folder
    run = dict(check=True, capture_output=True, text=True, timeout=120, cwd=folder)
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "grader", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], **run)
    log = tempfile.TemporaryFile()  # the server's log (a pipe nobody reads could fill up and stall it)
    server = subprocess.Popen([*as_user, f"{bindir}/postgres", "-D", data, "-k", sockets, "-c",
                               "listen_addresses=", "-c", "fsync=off"], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(600):
            ready = subprocess.run([f"{bindir}/pg_isready", "-h", sockets, "-U", "grader"], capture_output=True)
            if ready.returncode == 0 or server.poll() is not None:
                break
            time.sleep(0.1)
        if ready.returncode != 0:
            log.seek(0)
            pytest.fail(f"PostgreSQL did not start: {log.read().decode(errors='replace')[-2000:]}")
        subprocess.run([f"{bindir}/createdb", "-h", sockets, "-U", "grader", "gradebook"], **run)
        yield f"postgresql+psycopg://grader@/gradebook?host={sockets}"
    finally:
        server.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
        server.wait(timeout=60)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_postgresql_gradebook_on_the_cluster_grades_like_sqlite(tmp_path, postgres_url):
    """The README's several-machine set-up, on one machine: the gradebook in PostgreSQL, the
    grading on a Dask cluster; the records and exported scores equal a local SQLite run's."""
    sandbox.check_available()
    local = _course(tmp_path / "local")
    in_postgres = _course(tmp_path / "postgres", db_url=postgres_url)
    assert not (in_postgres / "grading" / "gradebook.db").exists(), "the course used SQLite after all"
    _cli(local, "grade", "ps1", "--workers", "2")
    seconds = _grade_on_cluster(in_postgres)
    _summary("grading on a Dask cluster with a PostgreSQL gradebook",
             f"ps1, {len(STUDENTS)} submissions: LocalCluster (2 workers), PostgreSQL gradebook {seconds:.1f} s\n")
    _same_results(in_postgres, local)

    from nbgrader.api import Gradebook

    with Gradebook(postgres_url) as gb:  # nbgrader's own view of the PostgreSQL gradebook
        scores = {s.student.id: s.score for s in gb.assignment_submissions("ps1")}
    assert scores == EXPECTED, scores
