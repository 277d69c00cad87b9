"""Self-check command: the solution scores full marks within the course's budget with accessible figures,
the untouched exercise zero ("not attempted yet"), bad paths one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.course import ASSIGNMENTS, notebook_budget
from autograder.notebooks import REPO
from autograder.selfcheck import check_notebook


def _check(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path), *args], capture_output=True,
                          text=True, timeout=600, cwd=REPO)


@pytest.fixture(scope="module", params=[a if i == 0 else pytest.param(a, marks=pytest.mark.slow)
                                        for i, a in enumerate(ASSIGNMENTS)])  # the later ones in test-slow
def solution(request) -> tuple[str, object]:
    """Each assignment's solution notebook, self-checked once (as a learner would, on this machine)."""
    assignment = request.param
    return assignment, check_notebook(REPO / "solutions" / assignment / f"{assignment}.ipynb", timeout=60)


def test_solution_scores_full_marks_within_the_notebook_budget(solution) -> None:
    assignment, report = solution
    assert report.points == report.max_points > 0, report.render()
    print(f"\n{assignment}: whole-notebook self-check {report.seconds:.0f} s (budget {notebook_budget(assignment)} s)")
    assert report.seconds <= notebook_budget(assignment), report.render()


def test_solution_figures_have_alt_text_and_a_caption(solution) -> None:
    """Every figure a solution shows carries alt text, and the cell after it is a caption saying what to see."""
    assignment, report = solution
    nb = report.notebook_node
    figures = 0
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if "image/png" not in output.get("data", {}):
                continue
            figures += 1
            alt = (output.get("metadata", {}).get("image/png") or {}).get("alt", "")
            assert len(alt.split()) >= 8, f"{assignment} cell {index + 1}: a figure without alt text"
            caption = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
            assert caption is not None and caption.cell_type == "markdown" and caption.source.startswith("*Figure"), \
                f"{assignment} cell {index + 1}: a figure without a caption cell after it"
    assert figures >= 1, f"{assignment}: no figure was shown"


@pytest.mark.parametrize("assignment", [a if i == 0 else pytest.param(a, marks=pytest.mark.slow)
                                        for i, a in enumerate(ASSIGNMENTS)])  # the later ones in test-slow
def test_unmodified_exercise_runs_and_says_not_attempted(tmp_path: Path, assignment: str) -> None:
    private = tmp_path / "private"
    shutil.copytree(REPO / "solutions", private)  # --source: hidden tests kept outside the repository
    run = _check(REPO / "exercises" / assignment / f"{assignment}.ipynb", "--source", str(private))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.split(": ", 1)[1].startswith("0 / "), run.stdout
    assert run.stdout.count("not attempted yet") == run.stdout.count("FAIL") > 0, run.stdout
    assert "Traceback" not in run.stdout and "hidden tests included" in run.stdout


def test_without_its_hidden_tests_a_notebook_is_scored_on_what_could_be_judged(tmp_path: Path) -> None:
    """Outside the checkout (no source notebook), a hidden-test cell has nothing to run: it is reported
    as not run and counts nothing, for a blank notebook (0 points) and a solved one (the visible points)."""
    import copy

    import nbformat

    exercise = nbformat.read(REPO / "exercises" / "01-data" / "01-data.ipynb", as_version=4)
    solution = nbformat.read(REPO / "solutions" / "01-data" / "01-data.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("grade_id", "").endswith("_answer")}
    solved = copy.deepcopy(exercise)
    for cell in solved.cells:
        cell.source = answers.get(cell.metadata.get("nbgrader", {}).get("grade_id"), cell.source)
    nowhere = tmp_path / "no-sources"
    nowhere.mkdir()
    for name, nb in (("blank", exercise), ("solved", solved)):
        path = tmp_path / name / "01-data.ipynb"
        path.parent.mkdir()
        nbformat.write(nb, path)
        report = check_notebook(path, timeout=60, source=nowhere)
        hidden = [s for s in report.scores if s.grade_id.endswith("_hidden")]
        assert hidden and not any(s.judged or s.passed or s.points for s in hidden), report.render()
        visible = sum(s.max_points for s in report.scores if not s.grade_id.endswith("_hidden"))
        assert report.judged_points == visible < report.max_points
        assert report.points == (0 if name == "blank" else visible), report.render()
        text = report.render()
        assert text.count("  not run") == len(hidden) and f"{visible:g} of them judged here" in text, text
        assert "ran with the notebook's code" not in text, text  # an empty cell runs nothing anywhere
        assert "  pass" not in "\n".join(line for line in text.splitlines() if "_hidden" in line), text


def test_contained_self_check() -> None:
    run = _check(REPO / "solutions" / "01-data" / "01-data.ipynb", "--contained", "--memory", "3GiB")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "12 / 12" in run.stdout and "contained: memory" in run.stdout and "contained: network" in run.stdout


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
