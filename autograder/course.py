"""The one place assignments are registered, with the time budgets the course promises learners."""

from __future__ import annotations

import importlib
import warnings
from typing import Iterable

ASSIGNMENTS: dict[str, str] = {
    "01-data": "autograder.checks.a01_data",
    "02-ssl": "autograder.checks.a02_ssl",
    "03-finetune": "autograder.checks.a03_finetune",
    "04-explain": "autograder.checks.a04_explain",
    "05-shortcut": "autograder.checks.a05_shortcut",
    "06-dynamics": "autograder.checks.a06_dynamics",
}

# Seconds on 2 CPU cores: each visible check, and `python -m autograder check` on a whole notebook
# (120 s for every assignment after 01 unless it says less). tests/test_course_budgets.py measures them.
VISIBLE_CHECK_BUDGET_S = 10
NOTEBOOK_BUDGET_S: dict[str, int] = {"01-data": 90, "03-finetune": 90, "04-explain": 120, "05-shortcut": 120,
                                     "06-dynamics": 120}
DEFAULT_NOTEBOOK_BUDGET_S = 120


def notebook_budget(assignment: str) -> int:
    """The whole-notebook self-check budget of ``assignment`` in seconds."""
    return NOTEBOOK_BUDGET_S.get(assignment, DEFAULT_NOTEBOOK_BUDGET_S)


# What an assignment's notebook reads from the course cache beyond the course data ("module:function",
# called without arguments, made once and reused): made by the graders before contained kernels run,
# since those may only read the cache (a kernel that finds it missing makes a private copy, slowly).
COURSE_ARTEFACTS: dict[str, str] = {"05-shortcut": "autograder.course_runs:shortcut_course"}


def prepare_course(assignments: Iterable[str]) -> None:
    """Make the course artefacts that ``assignments`` read (nothing for the others)."""
    for name in assignments:
        if name in COURSE_ARTEFACTS:
            module, function = COURSE_ARTEFACTS[name].split(":")
            with warnings.catch_warnings():  # the libraries' deprecation notes say nothing to a learner
                warnings.simplefilter("ignore", FutureWarning)
                getattr(importlib.import_module(module), function)()
