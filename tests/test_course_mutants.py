"""Feedback proven on typical wrong answers: for every question of every registered assignment, at least
five mutants (tests/fixtures/mutants/<assignment>.py); each is caught by the visible check or the hidden
tests, at least 80 % by the visible check alone, with a message naming the mistake."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import nbformat
import pytest

from autograder import CheckFailed
from autograder.course import ASSIGNMENTS
from autograder.grading import check_calls
from autograder.notebooks import REPO, grade_id, is_grade_cell
from notebook_answers import solution_answers

FIXTURES = REPO / "tests" / "fixtures" / "mutants"
SEEDS = (1, 2)  # a mutant counts as caught by a check when every seed catches it
MIN_PER_QUESTION, MIN_VISIBLE = 5, 0.8


def _fixtures(assignment: str):
    sys.path.insert(0, str(FIXTURES))
    spec = importlib.util.spec_from_file_location(f"mutants_{assignment.replace('-', '_')}",
                                                  FIXTURES / f"{assignment}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _solution(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)


def _checks(nb: nbformat.NotebookNode, question: str) -> tuple:
    """The visible and hidden check functions of ``question`` (from its test cells)."""
    found = {}
    for cell in nb.cells:
        gid = grade_id(cell) or ""
        if is_grade_cell(cell) and gid.startswith(question + "_"):
            call = check_calls(cell.source)[0]
            found["hidden" if gid.endswith("_hidden") else "visible"] = \
                getattr(importlib.import_module(call.module), call.function)
    return found["visible"], found["hidden"]


def _caught(check, func) -> str | None:
    """The failure message if ``check`` fails ``func`` on every seed, else None."""
    messages = []
    for seed in SEEDS:
        try:
            check(func, seed=seed)
        except CheckFailed as failed:
            messages.append(str(failed))
        else:
            return None
    return messages[0]


def _run(assignment: str) -> list[tuple]:
    fixtures = _fixtures(assignment)
    nb = _solution(assignment)
    answers = {grade_id(c).removesuffix("_answer"): c.source for c in nb.cells
               if (grade_id(c) or "").endswith("_answer")}
    rows = []
    for mutant in fixtures.MUTANTS:
        extra = mutant.apply(answers[mutant.question])
        func = getattr(solution_answers(assignment, fixtures.HEADER, extra), mutant.question)
        visible, hidden = _checks(nb, mutant.question)
        message = _caught(visible, func)
        by = "visible" if message else None
        if message is None:
            message = _caught(hidden, func)
            by = "hidden" if message else None
        rows.append((mutant, by, message))
    return rows


@pytest.fixture(scope="module", params=list(ASSIGNMENTS))
def results(request) -> tuple[str, list[tuple]]:
    return request.param, _run(request.param)


def test_every_question_has_five_typical_wrong_answers() -> None:
    for assignment in ASSIGNMENTS:
        questions = [grade_id(c).removesuffix("_answer") for c in _solution(assignment).cells
                     if (grade_id(c) or "").endswith("_answer")]
        counts = {q: 0 for q in questions}
        for mutant in _fixtures(assignment).MUTANTS:
            assert mutant.question in counts, f"{assignment}: mutant {mutant.name} of unknown question {mutant.question}"
            counts[mutant.question] += 1
        short = {q: n for q, n in counts.items() if n < MIN_PER_QUESTION}
        assert not short, f"{assignment}: fewer than {MIN_PER_QUESTION} mutants for {short}"


def test_every_mutant_is_caught_with_a_message_naming_the_mistake(results) -> None:
    assignment, rows = results
    for mutant, by, message in rows:
        assert by is not None, f"{assignment}: mutant {mutant.question}/{mutant.name} passes every check"
        for word in mutant.words:
            assert word in message, f"{assignment}: {mutant.question}/{mutant.name}: {word!r} not in\n{message}"
        assert (by == "hidden") == mutant.hidden, \
            f"{assignment}: {mutant.question}/{mutant.name} caught by the {by} check, fixture says " \
            f"{'hidden' if mutant.hidden else 'visible'}"
    visible = sum(by == "visible" for _, by, _ in rows)
    print(f"\n{assignment}: {len(rows)} mutants, {visible} caught by the visible checks "
          f"({visible / len(rows):.0%}), {len(rows) - visible} by the hidden tests")
    assert visible / len(rows) >= MIN_VISIBLE


def test_unanswered_question_says_not_attempted() -> None:
    for assignment in ASSIGNMENTS:
        nb = _solution(assignment)
        fixtures = _fixtures(assignment)
        for cell in nb.cells:
            name = (grade_id(cell) or "").removesuffix("_answer")
            if not (grade_id(cell) or "").endswith("_answer"):
                continue
            header = cell.source.split("### BEGIN SOLUTION")[0].rstrip(" ")
            stub = header + "    raise NotImplementedError()\n"
            func = getattr(solution_answers(assignment, fixtures.HEADER, stub), name)
            visible, _ = _checks(nb, name)
            with pytest.raises(CheckFailed, match="not attempted yet"):
                visible(func, seed=1)
