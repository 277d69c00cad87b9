"""Cohort grading against a hostile cohort, for every registered assignment, with real nbgrader.

The cohort (tests/fixtures/cohort/build.py): an infinite loop, os._exit, a memory blow-up, a fork
storm, a network call, writes to solutions/, autograder/, the gradebook and another submission, huge
output, corrupt JSON, nbformat 3, a renamed and a duplicated notebook, tampered metadata, a deleted
test cell, a harmless warning and an attempt to fool the checks, beside a perfect submission.

``make test`` grades the whole cohort once, on the first assignment, and a representative subset on
every other one (the attempt to fool its checks), in one shared run (``grade_course`` with 2 jobs)
that the tests below read. The rest of the matrix (every hazard, the perfect submission included, on
every assignment) and nbgrader's totals on the later assignments are graded by ``make test-slow``.
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.cohort import grade_course
from autograder.course import ASSIGNMENTS
from autograder.integrity import tree_hashes
from autograder.notebooks import REPO, kernel_env, read_notebook, score_cells
from autograder.selfcheck import check_notebook
from nbformat import writes as nbformat_writes

CELL_TIMEOUT = 15  # the infinite loop is stopped after this many seconds
EXPORT_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]
SAME_EVERYWHERE = ["warning", "allclose-cheat"]  # also graded by `check` and plain `nbgrader autograde`
FIRST = next(iter(ASSIGNMENTS))


def _builder():
    spec = importlib.util.spec_from_file_location("cohort_build", REPO / "tests" / "fixtures" / "cohort" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


BUILD = _builder()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _guarded(course: Path) -> dict[str, dict[str, str]]:
    """Hashes of everything no submission may change (the gradebook is checked on its own)."""
    return {name: tree_hashes(path) for name, path in (
        ("solutions", course / "solutions"), ("submitted", course / "submitted"),
        ("config", course / "nbgrader_config.py"), ("autograder", REPO / "autograder" / "checks" / "__init__.py"))}


# (assignment -> students): the whole cohort on the first assignment, a representative subset elsewhere
REPRESENTATIVE = {a: list(BUILD.CASES) if a == FIRST else ["allclose-cheat"] for a in ASSIGNMENTS}
REST = {a: list(BUILD.CASES) for a in ASSIGNMENTS if a != FIRST}  # the whole cohort on the later ones


def _grade_cohort(course: Path, matrix: dict[str, list[str]]) -> dict:
    """Build ``matrix``'s submissions in ``course`` and grade them all in one run (2 parallel jobs)."""
    for assignment, students in matrix.items():
        BUILD.build_course(course, students=students, assignments=[assignment])
    before = _guarded(course)
    start = time.monotonic()
    result = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT)
    seconds = time.monotonic() - start
    print(f"\nhostile cohort: {len(result.outcomes)} submissions in {seconds:.0f} s with 2 jobs: "
          f"{result.per_minute:.1f} submissions per minute")
    outcomes = {(o.student, o.assignment): o for o in result.outcomes}
    return {"course": course, "result": result, "outcomes": outcomes, "before": before, "matrix": matrix}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The representative matrix, graded once; the tests below read the outcome."""
    return _grade_cohort(tmp_path_factory.mktemp("course"), REPRESENTATIVE)


@pytest.fixture(scope="module")
def rest_of_the_cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The whole cohort on every later assignment (the slow tests only)."""
    return _grade_cohort(tmp_path_factory.mktemp("course-rest"), REST)


def _assert_deserved_grades(cohort: dict, assignment: str) -> None:
    ctx = BUILD.context(cohort["course"], assignment)
    for student in cohort["matrix"][assignment]:
        _, expected, words = BUILD.CASES[student]
        outcome = cohort["outcomes"][(student, assignment)]
        reasons = "; ".join(outcome.reasons)
        assert outcome.score == expected(ctx), f"{assignment}/{student}: {outcome}"
        assert outcome.max_score == ctx.max_score  # hand-graded points count in the maximum, as in nbgrader
        for word in words:
            assert word in reasons, f"{assignment}/{student}: {word!r} not in {reasons!r}"


def _assert_nothing_else_changed(cohort: dict) -> None:
    assert _guarded(cohort["course"]) == cohort["before"]
    with sqlite3.connect(cohort["course"] / "gradebook.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        students = {r[0] for r in connection.execute("SELECT id FROM student")}
        submissions = connection.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone()[0]
    matrix = cohort["matrix"]
    assert students == {s for names in matrix.values() for s in names}
    assert submissions == sum(len(names) for names in matrix.values())


@pytest.mark.parametrize("assignment", list(ASSIGNMENTS))
def test_every_submission_gets_the_grade_it_deserves_and_its_reason(cohort: dict, assignment: str) -> None:
    _assert_deserved_grades(cohort, assignment)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", list(REST))
def test_every_hazard_on_every_assignment_gets_the_grade_it_deserves(rest_of_the_cohort: dict,
                                                                     assignment: str) -> None:
    _assert_deserved_grades(rest_of_the_cohort, assignment)


def test_course_files_and_other_submissions_are_byte_for_byte_unchanged(cohort: dict) -> None:
    _assert_nothing_else_changed(cohort)


@pytest.mark.slow
def test_no_hazard_on_any_assignment_changes_what_it_must_not(rest_of_the_cohort: dict) -> None:
    _assert_nothing_else_changed(rest_of_the_cohort)


def test_grades_csv_and_report(cohort: dict) -> None:
    result = cohort["result"]
    with open(result.csv_path, newline="") as handle:
        assert next(csv.reader(handle)) == EXPORT_COLUMNS
    grades = {(r["student_id"], r["assignment"]): float(r["score"]) for r in _rows(result.csv_path)}
    outcomes = cohort["outcomes"]
    assert {key: grades[key] for key in outcomes} == {key: o.score for key, o in outcomes.items()}
    # nbgrader's export has a row for every student and assignment: one not submitted scores 0
    assert set(grades) == {(s, a) for s in BUILD.CASES for a in ASSIGNMENTS}
    assert all(score == 0 for key, score in grades.items() if key not in outcomes)
    report = {(r["student_id"], r["assignment"]): r for r in _rows(result.report_path)}
    for student in ("corrupt-json", "renamed"):
        assert report[(student, FIRST)]["status"] == "zero" and report[(student, FIRST)]["reasons"]
    assert report[("perfect", FIRST)]["status"] == "graded"
    assert set(report) == set(outcomes)  # the report lists what was submitted


def test_feedback_and_autograded_notebooks_exist_for_graded_submissions(cohort: dict) -> None:
    course = cohort["course"]
    for (student, assignment), outcome in cohort["outcomes"].items():
        graded = (course / "autograded" / student / assignment / f"{assignment}.ipynb").is_file()
        feedback = (course / "feedback" / student / assignment / f"{assignment}.html").is_file()
        assert graded == feedback == (outcome.status == "graded"), (student, assignment)


@pytest.mark.parametrize("assignment", [a if a == FIRST else pytest.param(a, marks=pytest.mark.slow)
                                        for a in ASSIGNMENTS])  # minutes each: the later ones in test-slow
def test_check_grade_and_plain_nbgrader_give_the_same_total(request: pytest.FixtureRequest, assignment: str,
                                                           tmp_path: Path) -> None:
    """What a learner sees (`autograder check`) is what the instructor gets, with our grader or nbgrader's."""
    cohort = request.getfixturevalue("cohort" if assignment == FIRST else "rest_of_the_cohort")
    course = cohort["course"]
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(course / "nbgrader_config.py", plain)
    shutil.copytree(course / "solutions", plain / "solutions")
    for student in SAME_EVERYWHERE:
        shutil.copytree(course / "submitted" / student / assignment, plain / "submitted" / student / assignment)
    env = kernel_env(tmp_path)
    for command in (["generate_assignment", assignment, "--force"],
                    ["autograde", assignment, f"--Execute.timeout={CELL_TIMEOUT}"]):  # every student, one process
        run = subprocess.run([sys.executable, "-m", "nbgrader", *command], cwd=plain, env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for student in SAME_EVERYWHERE:
        nbgrader_total = sum(s.points for s in score_cells(
            read_notebook(plain / "autograded" / student / assignment / f"{assignment}.ipynb")))
        report = check_notebook(course / "submitted" / student / assignment / f"{assignment}.ipynb",
                                timeout=CELL_TIMEOUT, source=course / "solutions")
        grade_total = cohort["outcomes"][(student, assignment)].score
        assert report.points == nbgrader_total == grade_total, (student, report.render())


@pytest.mark.slow  # another grading run, for platforms without namespaces
def test_without_namespaces_changed_files_are_restored_and_kept_aside(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the platform cannot make files read-only, a write that bypasses Python (a shell) is undone
    after the job by hash, the changed version kept in grading_quarantine/, and the submission zeroed."""
    monkeypatch.setenv("RICE_LAB_SANDBOX_NO_NAMESPACES", "1")
    monkeypatch.setattr("autograder.sandbox.namespaces_available", lambda: False)
    course = BUILD.build_course(tmp_path / "course", students=["warning"], assignments=["01-data"])
    target = course / "solutions" / "01-data" / "01-data.ipynb"
    original = target.read_bytes()
    nb = read_notebook(course / "submitted" / "warning" / "01-data" / "01-data.ipynb")
    cell = next(c for c in nb.cells if c.get("id") == "pair_cameras_answer")
    cell.source = f"import subprocess\nsubprocess.run(['sh', '-c', 'echo changed >> {target}'])\n" + cell.source
    (course / "submitted" / "warning" / "01-data" / "01-data.ipynb").write_text(nbformat_writes(nb))
    result = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT)
    outcome = result.outcomes[0]
    assert target.read_bytes() == original and outcome.score == 0 and outcome.status == "zero"
    assert "restored" in "; ".join(outcome.reasons) and result.jobs == 1
    kept = course / "grading_quarantine" / "warning--01-data" / "solutions" / "01-data" / "01-data.ipynb"
    assert kept.read_bytes().endswith(b"changed\n")


@pytest.mark.slow  # two more grading runs
def test_regrading_is_idempotent(tmp_path: Path) -> None:
    """A second run over the same course gives the same csv, report and gradebook row count."""
    course = BUILD.build_course(tmp_path / "course", students=["warning", "corrupt-json", "renamed"],
                                assignments=["01-data"])
    first = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT)
    grades, report = first.csv_path.read_text(), first.report_path.read_text()
    second = grade_course(course, jobs=2, cell_timeout=CELL_TIMEOUT)
    assert second.csv_path.read_text() == grades and second.report_path.read_text() == report
    assert {o.student: o.score for o in second.outcomes} == {"warning": 3, "corrupt-json": 0, "renamed": 0}


def test_grade_command_line_with_private_hidden_tests(tmp_path: Path) -> None:
    """`--source DIR`: the solutions and hidden tests live outside the course the learners see."""
    course = BUILD.build_course(tmp_path / "course", students=["renamed", "corrupt-json"], assignments=["01-data"])
    private = tmp_path / "private"
    shutil.move(course / "solutions", private)
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(course), "--jobs", "1",
                          "--assignment", "01-data", "--source", str(private), "--memory", "3GiB"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "renamed" in run.stdout and "0/12" in run.stdout and (course / "grades.csv").is_file()
    assert "per minute" in run.stdout and "contained: memory: 3 GiB" in run.stdout
    missing = subprocess.run([sys.executable, "-m", "autograder", "grade", str(course), "--source",
                              str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nowhere" in missing.stderr
