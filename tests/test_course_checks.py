"""The 01-data checks: right answers pass, wrong ones get a specific hint, and cheating scores nothing."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import nbformat
import pytest

import autograder.a01_data as checks
from autograder import CheckFailed, fresh
from autograder.audit import audit_notebook, audit_source
from autograder.notebooks import REPO, grade_id
from notebook_answers import solution_answers

HEADER = """
import os
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rice_lab.data.zindi import load_image, read_mask
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


def _fails(check, func, *words: str) -> str:
    with pytest.raises(CheckFailed) as caught:
        check(func, seed=7)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in:\n{message}"
    assert "expected:" in message and "got:" in message
    return message


def test_pairing_feedback_is_specific() -> None:
    from pathlib import Path

    def no_strip(names):
        return {Path(n).stem: {"rgb": n, "rgnir": n} for n in names}

    def keeps_orphans(names):
        out = {}
        for n in names:
            stem = Path(n).stem
            out.setdefault(stem.removesuffix("_rgn"), {})["rgnir" if stem.endswith("_rgn") else "rgb"] = n
        return out

    _fails(checks.check_pairing, no_strip, "returned 82 plants, expected 40", "stripping `_rgn`")
    _fails(checks.check_pairing, keeps_orphans, "left out")
    _fails(checks.check_pairing, lambda names: [], "dict")
    _fails(checks.check_pairing, lambda names: {"id_abc": {"rgb": "id_abc.jpg", "rgnir": "id_abc_rgn.jpg"}})
    _fails(checks.check_pairing, "not a function", "define pair_cameras")


def test_split_feedback_is_specific() -> None:
    def by_row(images, valid_pct=0.2, seed=0):
        images = images.copy()
        images["plant_id"] = [i.rsplit(".", 1)[0].removesuffix("_rgn") for i in images["Image_id"]]
        images["is_valid"] = np.random.default_rng(seed).random(len(images)) < valid_pct
        return images

    def mutates(images, valid_pct=0.2, seed=0):
        images["plant_id"] = "x"
        return images

    _fails(checks.check_split, by_row, "leakage")
    _fails(checks.check_split, mutates, "copy")


def test_stats_feedback_is_specific(solution: SimpleNamespace) -> None:
    def per_image(paths):
        stats = [solution.channel_stats([p]) for p in paths]
        return np.mean([m for m, _ in stats], axis=0), np.mean([s for _, s in stats], axis=0)

    def unscaled(paths):
        mean, std = solution.channel_stats(paths)
        return mean * 255, std * 255

    _fails(checks.check_channel_stats, per_image, "pool all pixels")
    _fails(checks.check_channel_stats, unscaled, "255")
    _fails(checks.check_channel_stats, lambda paths: np.zeros(3), "tuple")


def test_figure_feedback_is_specific(solution: SimpleNamespace) -> None:
    import matplotlib.pyplot as plt

    def two_panels(plant):
        fig, axes = plt.subplots(1, 2)
        axes[0].imshow(solution.load_image(plant["rgb"]))
        axes[1].imshow(solution.load_image(plant["rgnir"]))
        return fig

    def swapped(plant):
        fig = solution.show_plant(plant)
        first, second = fig.axes[0].get_images()[0], fig.axes[1].get_images()[0]
        data = first.get_array()
        first.set_data(second.get_array())
        second.set_data(data)
        return fig

    _fails(checks.check_show_plant, two_panels, "3 panels")
    _fails(checks.check_show_plant, swapped, "panel 1", "RGB photo")
    _fails(checks.check_show_plant, lambda plant: None, "Figure")


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
    for check in (checks.check_pairing, checks.check_pairing_hidden,
                  fresh("a01_data", cheat.ns).check_pairing_hidden):
        with pytest.raises(AssertionError, match="pair_files"):
            check(cheat.pair_cameras)


def test_delegating_to_the_autograder_reference_scores_zero() -> None:
    cheat = _answers("import autograder.a01_data as a\n"
                     "def channel_stats(paths):\n    return a._reference_stats(list(paths))\n")
    for check in (checks.check_channel_stats, fresh("a01_data", cheat.ns).check_channel_stats_hidden):
        with pytest.raises(AssertionError, match="reference"):
            check(cheat.channel_stats)


def test_split_delegation_scores_zero() -> None:
    cheat = _answers("from rice_lab.data import split_plants\n"
                     "def split_by_plant(images, valid_pct=0.2, seed=0):\n"
                     "    return split_plants(images, valid_pct, seed)\n")
    with pytest.raises(CheckFailed, match="split_plants"):
        checks.check_split(cheat.split_by_plant)


# --- anti-cheat (b): replacing or patching the checks ---------------------------------------------------

def test_patched_check_module_is_detected_by_the_hidden_tests() -> None:
    module = importlib.import_module("autograder.a01_data")
    original = module.check_pairing
    try:
        module.check_pairing = lambda f, seed=None: None
        with pytest.raises(AssertionError, match="replaced or modified"):
            fresh("a01_data", {})
    finally:
        module.check_pairing = original
    fresh("a01_data", {})  # untouched again: no complaint


def test_rebound_check_in_the_notebook_is_detected() -> None:
    with pytest.raises(AssertionError, match="notebook"):
        fresh("a01_data", {"check_pairing": lambda f: None})


def test_patched_reference_does_not_fool_the_hidden_tests() -> None:
    import rice_lab.data.zindi as zindi

    original = zindi.pair_files
    try:
        zindi.pair_files = lambda names: ({}, [])  # the visible check now expects nothing...
        lazy = _answers("def pair_cameras(names):\n    return {}\n").pair_cameras
        checks.check_pairing(lazy)  # ...so the visible check is fooled,
        with pytest.raises(AssertionError):  # but the hidden one compares with a fresh copy of the reference.
            fresh("a01_data", {}).check_pairing_hidden(lazy)
    finally:
        zindi.pair_files = original


# --- the audit: outside the kernel, before anything runs ----------------------------------------------

@pytest.mark.parametrize("source", [
    "import autograder.a01_data\nautograder.a01_data.check_pairing = lambda f: None",
    "from autograder import a01_data",
    "check_pairing = lambda f: None",
    "def check_split(f):\n    pass",
    "import sys\nsys.modules['autograder.a01_data'].check_split = print",
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
