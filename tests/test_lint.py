"""The pre-commit tools agree with the committed files: ruff is clean on Python
files and notebooks, and nbstripout would change no notebook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coursetools import ROOT, notebooks

BIN = Path(sys.executable).parent


def test_ruff_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nbstripout_would_change_nothing():
    paths = [str(p) for p in notebooks.lectures() + notebooks.solutions() + notebooks.exercises()]
    command = [str(BIN / "nbstripout"), "--keep-id", "--verify", *paths]  # the pre-commit hook's options
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"nbstripout would strip these notebooks:\n{result.stdout}{result.stderr}"
