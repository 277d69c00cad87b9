"""The one place assignments are registered, with the time budgets the course promises learners."""

ASSIGNMENTS: dict[str, str] = {
    "01-data": "autograder.checks.a01_data",
    "02-ssl": "autograder.checks.a02_ssl",
    "03-finetune": "autograder.checks.a03_finetune",
    "04-explain": "autograder.checks.a04_explain",
}

# Seconds on 2 CPU cores: each visible check, and `python -m autograder check` on a whole notebook
# (120 s for every assignment after 01 unless it says less). tests/test_course_budgets.py measures them.
VISIBLE_CHECK_BUDGET_S = 10
NOTEBOOK_BUDGET_S: dict[str, int] = {"01-data": 90, "03-finetune": 90, "04-explain": 120}
DEFAULT_NOTEBOOK_BUDGET_S = 120


def notebook_budget(assignment: str) -> int:
    """The whole-notebook self-check budget of ``assignment`` in seconds."""
    return NOTEBOOK_BUDGET_S.get(assignment, DEFAULT_NOTEBOOK_BUDGET_S)
