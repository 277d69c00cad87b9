"""The 01-data checks: right answers pass, delegating to the reference scores nothing, the audit rejects
tampering. (Typical wrong answers and their messages: tests/test_course_mutants.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import nbformat
import pytest

import autograder.checks.a01_data as checks
from autograder import CheckFailed
from autograder.audit import audit_notebook, audit_source
from autograder.notebooks import REPO
from notebook_answers import solution_answers

HEADER = """
import os
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rice_lab.data.zindi import load_image, read_mask
from autograder.figures import MASK_CMAP, mask_legend, show, show_mask
"""


def _answers(extra: str = "") -> SimpleNamespace:
    """The solution notebook's answer cells (then ``extra``)."""
    return solution_answers("01-data", HEADER, extra)


@pytest.fixture(scope="module")
def solution() -> SimpleNamespace:
    return _answers()


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_solutions_pass_visible_and_hidden_checks(solution: SimpleNamespace, seed: int) -> None:
    for check, func in ((checks.check_pairing, solution.pair_cameras), (checks.check_split, solution.split_by_plant),
                        (checks.check_channel_stats, solution.channel_stats),
                        (checks.check_show_plant, solution.show_plant)):
        check(func, seed=seed)
        getattr(checks, check.__name__ + "_hidden")(func, seed=seed)


# --- anti-cheat (a): answers that delegate to the reference -------------------------------------------

DELEGATIONS = {
    "module attribute": ("import rice_lab.data\n"
                         "def pair_cameras(names):\n    return rice_lab.data.pair_files(names)[0]\n"),
    "imported name": ("from rice_lab.data.zindi import pair_files\n"
                      "def pair_cameras(names):\n    return pair_files(names)[0]\n"),
    "dynamic lookup": ("import importlib\n"
                       "def pair_cameras(names):\n"
                       "    module = importlib.import_module('rice_lab.data.' + 'zindi')\n"
                       "    return getattr(module, 'pair_' + 'files')(names)[0]\n"),
    "default argument": ("from rice_lab.data import pair_files as helper\n"
                         "def pair_cameras(names, _f=helper):\n    return _f(names)[0]\n"),
    "helper function": ("import rice_lab.data as d\n"
                        "def _helper(names):\n    return d.pair_files(names)[0]\n"
                        "def pair_cameras(names):\n    return _helper(names)\n"),
}


@pytest.mark.parametrize("how", list(DELEGATIONS))
def test_delegating_to_the_reference_scores_zero(how: str) -> None:
    cheat = _answers(DELEGATIONS[how])
    for check in (checks.check_pairing, checks.check_pairing_hidden):
        with pytest.raises(AssertionError, match="pair_files"):
            check(cheat.pair_cameras)


def test_delegating_to_the_autograder_reference_scores_zero() -> None:
    cheat = _answers("import autograder.checks.a01_data as a\n"
                     "def channel_stats(paths):\n    return a._reference_stats(list(paths))\n")
    for check in (checks.check_channel_stats, checks.check_channel_stats_hidden):
        with pytest.raises(AssertionError, match="reference"):
            check(cheat.channel_stats)


def test_split_delegation_scores_zero() -> None:
    cheat = _answers("from rice_lab.data import split_plants\n"
                     "def split_by_plant(images, valid_pct=0.2, seed=0):\n"
                     "    return split_plants(images, valid_pct, seed)\n")
    with pytest.raises(CheckFailed, match="split_plants"):
        checks.check_split(cheat.split_by_plant)


# --- checks that cannot be fooled from inside the notebook ---------------------------------------------

FOOLING = """
import gc, math, numpy, torch
numpy.allclose = lambda *a, **k: True       # the issue's attack: every comparison says "equal"
math.isclose = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
numpy.array_equal = lambda *a, **k: True
for module in [o for o in gc.get_objects() if type(o).__name__ == "module"]:
    if getattr(module, "__name__", "").startswith("autograder.checks"):  # a check's globals, reached anyway
        module.fail = lambda *a, **k: None
        module._compare_stats = lambda *a, **k: None

def channel_stats(paths):
    return numpy.zeros(3), numpy.zeros(3)
"""


def test_checks_cannot_be_fooled_from_inside_the_notebook(tmp_path) -> None:
    """Rebinding numpy.allclose, math.isclose, torch.allclose or a check's own functions changes only the
    process the notebook runs in; the checks run in another one."""
    from autograder.grading import execute_notebook
    from autograder.notebooks import score_cells
    from autograder.audit import audit_notebook

    nb = nbformat.read(REPO / "solutions" / "01-data" / "01-data.ipynb", as_version=4)
    answer = next(c for c in nb.cells if c.get("id") == "channel_stats_answer")
    answer.source = FOOLING
    assert audit_notebook(nb) == []  # nothing the audit can see: only running the checks elsewhere stops it
    execute_notebook(nb, tmp_path, limits=None, timeout=60)
    scores = {s.grade_id: s for s in score_cells(nb)}
    assert scores["channel_stats_check"].points == scores["channel_stats_hidden"].points == 0
    assert "CheckFailed" in scores["channel_stats_check"].error
    assert all(s.points == s.max_points for gid, s in scores.items() if not gid.startswith("channel_stats"))


# --- the audit: outside the kernel, before anything runs ----------------------------------------------

@pytest.mark.parametrize("source", [
    "import autograder.checks.a01_data\nautograder.checks.a01_data.check_pairing = lambda f: None",
    "from autograder.checks import a01_data",
    "check_pairing = lambda f: None",
    "def check_split(f):\n    pass",
    "import sys\nsys.modules['autograder.checks.a01_data'].check_split = print",
    "import builtins\nbuiltins.AssertionError = Exception",
    "__import__('autograder')",
    "exec('import autograder')",
    "import importlib",
    "x = 1\nsomething.check_show_plant = None",
])
def test_audit_rejects_tampering(source: str) -> None:
    assert audit_source(source)


def test_audit_accepts_the_solutions() -> None:
    nb = nbformat.read(REPO / "solutions" / "01-data" / "01-data.ipynb", as_version=4)
    assert audit_notebook(nb) == []
    assert audit_source("%matplotlib inline\nimport numpy as np\nchecked = 3") is None
