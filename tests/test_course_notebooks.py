"""Self-check command: the solution scores full marks, the untouched exercise zero, bad paths one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autograder.notebooks import REPO

ASSIGNMENTS = sorted(p.parent.name for p in (REPO / "solutions").glob("*/*.ipynb"))


def _check(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path), *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_scores_full_marks(assignment: str) -> None:
    for path in (REPO / "solutions" / assignment).glob("*.ipynb"):
        run = _check(path, "--timeout", "60")
        assert run.returncode == 0, run.stdout + run.stderr
        points, total = run.stdout.split(": ", 1)[1].split(" points")[0].split(" / ")
        assert float(points) == float(total) > 0, run.stdout


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_unmodified_exercise_runs_and_scores_zero(assignment: str) -> None:
    for path in (REPO / "exercises" / assignment).glob("*.ipynb"):
        run = _check(path)
        assert run.returncode == 1, run.stdout + run.stderr
        assert run.stdout.split(": ", 1)[1].startswith("0 / "), run.stdout
        assert "NotImplementedError" in run.stdout and "hidden tests included" in run.stdout


def test_check_names_a_wrong_path_in_one_line(tmp_path: Path) -> None:
    run = _check(tmp_path / "nope.ipynb")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "nope.ipynb" in run.stderr
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    run = _check(broken)
    assert run.returncode == 2 and "not valid JSON" in run.stderr and run.stderr.strip().count("\n") == 0


def test_grade_names_a_wrong_course_in_one_line(tmp_path: Path) -> None:
    for folder in (tmp_path / "missing", tmp_path):
        run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(folder)], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
        assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
