"""The 06-dynamics checks: right answers pass (however they centre, split or block), the cases hold what the
checks rely on, delegating to the reference scores nothing, and the provided series is what the notebook
says, readable where graded notebooks run. (Typical wrong answers and their messages:
tests/test_course_mutants.py.)"""

from __future__ import annotations

import ast
import re
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest

import autograder.checks.a06_dynamics as checks
from autograder.audit import audit_notebook
from autograder.datasets import COURSE_FILES, dynamics_series
from autograder.notebooks import REPO, grade_id
from notebook_answers import solution_answers

HEADER = """
import math
import numpy as np
import pandas as pd
"""
QUESTIONS = ("linear_cka", "change_point", "what_changes")
NOTEBOOK = REPO / "solutions" / "06-dynamics" / "06-dynamics.ipynb"


def _answers(extra: str = "") -> SimpleNamespace:
    """The solution notebook's answer cells (then ``extra``)."""
    return solution_answers("06-dynamics", HEADER, extra)


@pytest.fixture(scope="module")
def solution() -> SimpleNamespace:
    return _answers()


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_solutions_pass_visible_and_hidden_checks(solution: SimpleNamespace, seed: int) -> None:
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(solution, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(solution, question), seed=seed)


# --- right answers written another way ---------------------------------------------------------------------

OTHER_WAYS = '''
import torch


def linear_cka(x, y):
    # torch in float64, through the n x n Gram matrices and their centring matrix H; a 0-d tensor back.
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    y = torch.as_tensor(np.asarray(y, dtype=np.float64))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} rows in x but {y.shape[0]} rows in y")
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return (k * l).sum() / (k.norm() * l.norm())


def change_point(values, min_size=1):
    # Cumulative sums: every split's cost in one pass, the first minimum by np.argmin; a NumPy integer back.
    v = np.array(values, dtype=np.float64)
    n = len(v)
    if min_size < 1 or n < 2 * min_size:
        raise ValueError("no split leaves min_size values on both sides")
    total, squares = np.cumsum(v), np.cumsum(v * v)
    k = np.arange(min_size, n - min_size + 1)
    left = squares[k - 1] - total[k - 1] ** 2 / k
    right = (squares[-1] - squares[k - 1]) - (total[-1] - total[k - 1]) ** 2 / (n - k)
    return k[np.argmin(left + right)]


def what_changes(series, window=16, search_from=400, min_size=5, threshold=0.95):
    # pandas for the blocks (a block number per point), CKA pairs in a dict; a Series back.
    curve = pd.DataFrame({"step": series["curve_step"], "loss": series["curve_loss"]})
    curve["block"] = np.arange(len(curve)) // window
    full = curve.groupby("block").filter(lambda b: len(b) == window)
    blocks = full.groupby("block").agg(step=("step", "min"), loss=("loss", "mean"))
    kept = blocks[blocks["step"] >= search_from].reset_index(drop=True)
    drop = int(kept.loc[change_point(kept["loss"].astype(float), min_size), "step"])
    steps = [int(s) for s in series["steps"]]
    feats = series["features"]
    pairs = {s: linear_cka(feats[i], feats[i + 1]) for i, s in enumerate(steps[:-1])}
    j = next(i for i, s in enumerate(steps) if s >= drop)
    plateau = [c for i, (s, c) in enumerate(pairs.items()) if s >= search_from and steps[i + 1] < drop]
    settled = next(s for s, f in zip(steps, feats) if linear_cka(f, feats[-1]) >= threshold)
    across = float(pairs[steps[j - 1]])
    median = float(np.median([float(c) for c in plateau]))
    return pd.Series({"drop_step": drop, "cka_across_drop": across, "plateau_cka": median,
                      "change_ratio": (1 - across) / (1 - median), "settled_step": settled, "lead": settled - drop})
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_written_another_way_pass(seed: int) -> None:
    other = _answers(OTHER_WAYS)
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(other, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(other, question), seed=seed)


def test_a_near_tie_in_floats_accepts_either_split() -> None:
    """Where two splits' costs differ by less than rounding (float32 block means against float64 ones, say),
    either is right; exact ties still want the first."""
    values = np.array([0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0])  # k = 3 and k = 6 tie exactly
    costs = checks.split_costs(values)
    assert costs[3] == costs[6] == min(costs.values()) and checks.reference_change_point(values) == 3
    nudged = values + np.array([1e-12, 0, 0, 0, 0, 0, 0, 0, 0])
    for answer in (3, 6):
        assert checks._compare_point(lambda v, m, k=answer: k, nudged, 1, 0, "") == answer
    with pytest.raises(AssertionError, match="first"):
        checks._compare_point(lambda v, m: 6, values, 1, 0, "", exact=True)


def test_cases_hold_what_the_checks_rely_on() -> None:
    for seed in range(3):
        x, y = checks.cka_case(seed)
        assert np.abs(x.mean(axis=0)).min() > 10 and x.shape[1] != y.shape[1]  # far from centred, other widths
        wide_x, wide_y = checks.wide_case(seed)
        assert wide_x.shape[1] > len(wide_x) and wide_y.shape[1] > len(wide_y)
        half_x, half_y = checks.half_case(seed)
        assert half_x.dtype == half_y.dtype == np.float16
        in_half = [v for hint, v in checks._cka_slips(half_x, half_y).items() if "float64" in hint]
        assert len(in_half) == 1 and not abs(in_half[0] - checks.reference_cka(half_x, half_y)) < 1e-3
        values, min_size = checks.shift_case(seed)
        jump = int(np.argmax(np.abs(np.diff(values)))) + 1
        assert abs(jump - checks.reference_change_point(values, min_size)) > 3  # the spike is elsewhere
        edge, edge_min = checks.edge_case(seed)
        assert checks.reference_change_point(edge, 1) in (1, len(edge) - 1)
        assert edge_min < checks.reference_change_point(edge, edge_min) < len(edge) - edge_min
        for at_end in (True, False):
            shifted, shifted_min = checks.boundary_case(seed, at_end)
            assert checks.reference_change_point(shifted, shifted_min) == \
                (len(shifted) - shifted_min if at_end else shifted_min)
        tie, tie_min = checks.tie_case(seed)
        costs = checks.split_costs(tie, tie_min)
        assert sorted(costs.values())[0] == sorted(costs.values())[1]  # an exact tie
        series, parameters = checks.series_case(seed)
        right = checks.reference_what_changes(series, **parameters)
        assert right["drop_step"] > parameters["search_from"] and right["lead"] == right["settled_step"] - right["drop_step"]
        assert series["features"].dtype == np.float16 and series["curve_loss"].dtype == np.float32
    gen = np.random.default_rng(0)
    x, y = checks.cka_case(0)
    mapping = checks._general_map(gen, x, y)
    assert abs(checks.reference_cka(x @ mapping, y) - checks.reference_cka(x, y)) >= 0.02
    assert np.isclose(checks.reference_cka(x @ checks._orthogonal(gen, x.shape[1]) * 7.0 + 3.0, y),
                      checks.reference_cka(x, y))


def test_every_series_slip_is_named_on_a_case_it_changes() -> None:
    """Each slip of question 3 changes some answer on the made-up series (the stride-2 case for the one that
    needs it), so a learner who makes it is told which."""
    series, parameters = checks.series_case(0)
    logged, logged_parameters = checks.series_case(1, stride=2, snapshots=(40, 61))
    for hint, how in checks.SERIES_SLIPS.items():
        changed = []
        for case, asked in ((series, parameters), (logged, logged_parameters)):
            right = checks.reference_what_changes(case, **asked)
            slip = checks._answers(case, *asked.values(), how)
            changed.append(any(not checks._same(k, slip[k], right[k]) for k in checks.ANSWER_KEYS))
        assert any(changed), hint


# --- anti-cheat: answers that delegate to the reference ------------------------------------------------------

DELEGATIONS = {
    "library cka": ("check_linear_cka", "linear_cka", "linear_cka",
                    "from rice_lab.explain.similarity import linear_cka as reference\n"
                    "def linear_cka(x, y):\n    return reference(x, y)\n"),
    "library module": ("check_linear_cka_hidden", "linear_cka", "cka",
                       "from rice_lab.explain import similarity\n"
                       "def linear_cka(x, y):\n    return similarity.cka(x, y, 'full', permutations=0).cka\n"),
    "autograder change point": ("check_change_point", "change_point", "reference",
                                "import autograder.checks.a06_dynamics as a\n"
                                "def change_point(values, min_size=1):\n    return a.reference_change_point(values, min_size)\n"),
    "autograder answers": ("check_what_changes", "what_changes", "reference",
                           "import autograder.checks.a06_dynamics as a\n"
                           "def what_changes(series, window=16, search_from=400, min_size=5, threshold=0.95):\n"
                           "    return a.reference_what_changes(series, window, search_from, min_size, threshold)\n"),
    "library cka inside": ("check_what_changes", "what_changes", "linear_cka",
                           "from rice_lab.explain.similarity import linear_cka\n"),
}


@pytest.mark.parametrize("case", list(DELEGATIONS))
def test_delegating_to_the_reference_scores_zero(case: str) -> None:
    check_name, question, word, source = DELEGATIONS[case]
    cheat = _answers(source)
    with pytest.raises(AssertionError, match=word):
        getattr(checks, check_name)(getattr(cheat, question), seed=3)


def test_hard_coded_answers_fail() -> None:
    """Numbers copied from the provided series pass its case and fail the made-up one."""
    right = checks.reference_what_changes(checks.provided_series(), **checks.FILE_PARAMETERS)
    cheat = _answers(f"def what_changes(series, window=16, search_from=400, min_size=5, threshold=0.95):\n"
                     f"    return {right!r}\n")
    with pytest.raises(AssertionError, match="made-up series"):
        checks.check_what_changes(cheat.what_changes, seed=4)


def test_audit_accepts_the_solution() -> None:
    assert audit_notebook(nbformat.read(NOTEBOOK, as_version=4)) == []


# --- the notebook and the provided series --------------------------------------------------------------------

def test_the_notebook_states_the_settings_the_checks_use() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    setup = next(c.source for c in nb.cells if grade_id(c) == "setup")
    values = re.search(r"^WINDOW, SEARCH_FROM, MIN_SIZE, THRESHOLD = (.+?)  #", setup, re.M).group(1)
    assert dict(zip(["window", "search_from", "min_size", "threshold"], ast.literal_eval(values))) == \
        checks.FILE_PARAMETERS
    answer = next(c.source for c in nb.cells if grade_id(c) == "what_changes_answer")
    assert "window: int = {window}, search_from: int = {search_from}, min_size: int = {min_size}".format(
        **checks.FILE_PARAMETERS) in answer and f"threshold: float = {checks.FILE_PARAMETERS['threshold']}" in answer
    manual = next(c for c in nb.cells if grade_id(c) == "in_words")
    meta = manual.metadata["nbgrader"]
    assert manual.cell_type == "markdown" and meta["grade"] and meta["solution"] and not meta["locked"]


def test_the_provided_series_is_what_the_questions_need() -> None:
    """Whatever run wrote the file (a denser series may replace it): the keys the notebook names, shapes that
    agree, a loss logged at every step from 1, snapshots at a fixed interval up to the run's end, and a
    second descent the question can find: an interior change point after SEARCH_FROM with at least three
    snapshot pairs on the plateau before it, and a lower level after it."""
    path = dynamics_series()
    assert path.parent == COURSE_FILES and (COURSE_FILES / "README.md").is_file()
    series = checks.provided_series()
    assert set(series) == set(checks.SERIES_KEYS)
    steps, features = series["steps"], series["features"]
    snapshots, photos, _ = features.shape
    assert features.dtype == np.float16 and len(steps) == len(series["loss_fixed_crops"]) == snapshots
    assert len(series["label"]) == len(series["background"]) == photos
    assert np.array_equal(series["curve_step"], np.arange(1, len(series["curve_step"]) + 1))
    assert len(set(np.diff(steps))) == 1 and steps[-1] == series["curve_step"][-1]
    assert int(series["n_prototypes"]) > 0 and series["queue_start_step"].shape == ()
    parameters = checks.FILE_PARAMETERS
    right = checks.reference_what_changes(series, **parameters)
    window, search_from, min_size = parameters["window"], parameters["search_from"], parameters["min_size"]
    firsts, _, means = checks._block_steps_and_means(series, window, "from-first")
    kept = means[firsts >= search_from]
    k = list(firsts[firsts >= search_from]).index(right["drop_step"])
    assert min_size < k < len(kept) - min_size and kept[:k].mean() > kept[k:].mean()
    assert sum(1 for a, b in zip(steps, steps[1:]) if a >= search_from and b < right["drop_step"]) >= 3
    assert all(np.isfinite(list(right.values())))
    assert np.isclose(checks.reference_cka(features[-1], features[-1]), 1.0)
    hidden = checks.reference_what_changes(series, **checks.HIDDEN_FILE_PARAMETERS)
    assert all(np.isfinite(list(hidden.values())))


def test_the_readme_names_the_command_that_makes_the_series() -> None:
    readme = (COURSE_FILES / "README.md").read_text()
    assert ("from rice_lab.explain.dynamics import export_series; export_series('runs/experiments/bump/runs/"
            "queue-half-s0', 'autograder/data/dynamics-series.npz')") in readme


def test_graded_notebooks_can_read_the_series(tmp_path) -> None:
    """The setup cell runs in the graders' sandbox (the repository read-only) and finds the series."""
    from autograder.grading import GradingSandbox, execute_notebook

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = [c for c in nb.cells if grade_id(c) == "setup"]
    limits = GradingSandbox(memory="3GiB").limits(tmp_path).with_paths(writable=[tmp_path])
    execute_notebook(nb, tmp_path, limits, timeout=120)
    outputs = nb.cells[0].outputs
    assert not any(o.get("output_type") == "error" for o in outputs), outputs
    assert "snapshots" in "".join(o.get("text", "") for o in outputs)
