"""Cohort grading with real nbgrader: one shared run over the fixture cohort, every hazard a test."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.cohort import grade_course
from autograder.notebooks import REPO

CELL_TIMEOUT = 20  # the infinite loop is interrupted after this many seconds
EXPORT_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]


def _builder():
    spec = importlib.util.spec_from_file_location("cohort_build", REPO / "tests" / "fixtures" / "cohort" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _builder()


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade the whole fixture cohort once (2 parallel jobs); every test below reads the outcome."""
    course = BUILD.build_course(tmp_path_factory.mktemp("course"))
    result = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT, job_timeout=240)
    return {"course": course, "result": result, "outcomes": {o.student: o for o in result.outcomes}}


def test_every_submission_gets_a_grade_and_a_reason_where_due(cohort: dict) -> None:
    assert set(cohort["outcomes"]) == set(BUILD.CASES)
    for student, (_, expected, words) in BUILD.CASES.items():
        outcome = cohort["outcomes"][student]
        assert outcome.score == expected, f"{student}: {outcome}"
        assert outcome.max_score == 12
        reasons = "; ".join(outcome.reasons)
        for word in words:
            assert word in reasons, f"{student}: {word!r} not in {reasons!r}"


def test_grades_csv_is_nbgrader_export_format(cohort: dict) -> None:
    csv_path = cohort["result"].csv_path
    with open(csv_path, newline="") as handle:
        assert next(csv.reader(handle)) == EXPORT_COLUMNS
    rows = _rows(csv_path)
    assert {s: float(r["score"]) for s, r in rows.items()} == {s: float(c[1]) for s, c in BUILD.CASES.items()}
    assert all(r["max_score"] == "12.0" and r["assignment"] == "01-data" for r in rows.values())


def test_report_lists_outcome_and_reason_per_submission(cohort: dict) -> None:
    rows = _rows(cohort["result"].report_path)
    assert set(rows) == set(BUILD.CASES)
    for student in ("corrupted", "wrong-name", "os-exit"):
        assert rows[student]["status"] == "zero" and rows[student]["reasons"], rows[student]
    assert rows["good"]["status"] == "graded"


def test_infinite_loop_is_interrupted_and_the_cohort_goes_on(cohort: dict) -> None:
    loop = cohort["outcomes"]["infinite-loop"]
    assert loop.status == "graded" and loop.score == 9
    assert any("interrupted" in r for r in loop.reasons)


def test_gradebook_is_intact(cohort: dict) -> None:
    db = cohort["course"] / "gradebook.db"
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        students = {r[0] for r in connection.execute("SELECT id FROM student")}
        submissions = connection.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone()[0]
    assert students == set(BUILD.CASES) and submissions == len(BUILD.CASES)


def test_feedback_and_autograded_notebooks_exist_for_graded_submissions(cohort: dict) -> None:
    course = cohort["course"]
    for student, outcome in cohort["outcomes"].items():
        graded = (course / "autograded" / student / "01-data" / "01-data.ipynb").is_file()
        feedback = (course / "feedback" / student / "01-data" / "01-data.html").is_file()
        assert graded == feedback == (outcome.status == "graded"), student


def test_cheating_scores_nothing_for_the_cheated_questions(cohort: dict) -> None:
    autograded = cohort["course"] / "autograded" / "cheater" / "01-data" / "01-data.ipynb"
    text = autograded.read_text()
    assert "rice-lab autograder: this cell was not run" in text
    assert cohort["outcomes"]["cheater"].score == 3  # only channel_stats, answered honestly


def test_regrading_is_idempotent(tmp_path: Path) -> None:
    """A second run over the same course gives the same csv, report and gradebook row count."""
    course = BUILD.build_course(tmp_path / "course", students=["good", "partial", "corrupted"])
    first = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT)
    grades, report = first.csv_path.read_text(), first.report_path.read_text()
    second = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT)
    assert second.csv_path.read_text() == grades and second.report_path.read_text() == report
    assert {o.student: o.score for o in second.outcomes} == {"good": 12, "partial": 6, "corrupted": 0}


def test_grade_command_line(tmp_path: Path) -> None:
    course = BUILD.build_course(tmp_path / "course", students=["blank"])
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(course), "--jobs", "1",
                          "--assignment", "01-data", "--timeout", "30"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "blank" in run.stdout and "0/12" in run.stdout and (course / "grades.csv").is_file()
