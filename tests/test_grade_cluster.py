"""Grading on a Dask cluster (`autograder grade --scheduler ADDRESS`) gives what a local run gives.

nbgrader's ps1 (the fixture of test_nbgrader_ps1) with four submissions is released and
collected once, then copied into two scratch courses: one is graded with the local process
pool, the other through a `distributed.LocalCluster` (two single-threaded worker processes,
what `dask worker --nthreads 1` runs on each machine of a real cluster). Both runs must write
one record per submission with the same status and score, and export the same cell scores.
The cluster's workers share the course folder, here as on a cluster with a shared (NFS) folder.
"""

from __future__ import annotations

import csv
import json
import shutil
import time

import distributed  # the cluster extra (pip install ".[cluster]"), which make test installs
import pytest
from test_nbgrader_ps1 import FILES, FIXTURE, _cli

from autograder import sandbox
from coursetools import ROOT, execute

STUDENTS = {"bitdiddle": "bitdiddle", "hacker": "hacker", "bitdiddle2": "bitdiddle", "hacker2": "hacker"}
EXPECTED = {"bitdiddle": 1.5, "hacker": 3.0, "bitdiddle2": 1.5, "hacker2": 3.0}  # stock nbgrader's (test_nbgrader_ps1)


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
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(FIXTURE / "source" / "ps1", course / "solutions" / "ps1")
    download = tmp_path / "download"
    for student, copy_of in STUDENTS.items():
        (download / student).mkdir(parents=True)
        for name in FILES:
            shutil.copy2(FIXTURE / "submitted" / copy_of / "ps1" / name, download / student / name)
    _cli(course, "release", "ps1")
    _cli(course, "collect", "ps1", str(download))
    local, clustered = tmp_path / "local", tmp_path / "clustered"
    shutil.copytree(course, local)
    shutil.copytree(course, clustered)

    start = time.perf_counter()
    _cli(local, "grade", "ps1", "--workers", "2")
    local_seconds = time.perf_counter() - start
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        start = time.perf_counter()
        printed = _cli(clustered, "grade", "ps1", "--scheduler", cluster.scheduler_address).stdout
        cluster_seconds = time.perf_counter() - start
        with distributed.Client(cluster) as client:  # the submissions really ran on the cluster's workers
            ran = client.run(lambda: __import__("sys").modules.get("autograder.grade") is not None)
    summaries = execute.run_dir() / "summaries"
    summaries.mkdir(exist_ok=True)
    (summaries / "grading on a Dask cluster.txt").write_text(
        f"ps1, {len(STUDENTS)} submissions: local pool (2 workers) {local_seconds:.1f} s, "
        f"LocalCluster (2 single-threaded workers) {cluster_seconds:.1f} s\n")

    assert all(ran.values()) and len(ran) == 2, f"the cluster's workers did not import the grader: {ran}"
    assert "4 submission(s), 4 new or changed" in printed
    local_records, local_cells = _results(local)
    cluster_records, cluster_cells = _results(clustered)
    assert sorted(cluster_records) == sorted(STUDENTS), "one record per submission"
    for student, score in EXPECTED.items():
        mine, theirs = cluster_records[student], local_records[student]
        assert (mine["status"], mine["score"]) == ("graded", score), mine
        assert (mine["status"], mine["score"], mine["max_score"], mine["reason"]) == (
            theirs["status"], theirs["score"], theirs["max_score"], theirs["reason"])
    assert cluster_cells == local_cells, "the exported cell scores differ between the cluster and the local run"
