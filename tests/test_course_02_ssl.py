"""The 02-ssl checks: right answers pass, wrong ones get a specific hint, and cheating scores nothing."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import nbformat
import pytest

import autograder.a02_ssl as checks
from autograder import CheckFailed, fresh
from autograder.audit import audit_notebook
from autograder.notebooks import REPO, grade_id
from notebook_answers import solution_answers

HEADER = """
import math
import numpy as np
import torch
import torch.nn.functional as F
from rice_lab.data.views import CropSpec, PlantImages, brightness_contrast, random_resized_crop
from rice_lab.ssl import SwAVModel
"""
QUESTIONS = ("sinkhorn", "swav_loss", "paired_views", "train_step", "pretrain")


def _answers(extra: str = "") -> SimpleNamespace:
    """The solution notebook's answer cells (then ``extra``)."""
    return solution_answers("02-ssl", HEADER, extra)


@pytest.fixture(scope="module")
def solution() -> SimpleNamespace:
    return _answers()


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_solutions_pass_visible_and_hidden_checks(solution: SimpleNamespace, seed: int) -> None:
    hidden = fresh("a02_ssl", solution.ns)
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(solution, question), seed=seed)
        getattr(hidden, f"check_{question}_hidden")(getattr(solution, question), seed=seed)


def _fails(check, func, *words: str, seed: int = 7) -> str:
    with pytest.raises(CheckFailed) as caught:
        check(func, seed=seed)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in:\n{message}"
    assert "expected:" in message and "got:" in message
    return message


def _variant(solution_source: str, old: str, new: str) -> str:
    assert old in solution_source, old
    return solution_source.replace(old, new)


def _answer_source(name: str) -> str:
    nb = nbformat.read(REPO / "solutions" / "02-ssl" / "02-ssl.ipynb", as_version=4)
    return next(c.source for c in nb.cells if grade_id(c) == f"{name}_answer")


def _wrong(name: str, old: str, new: str):
    """The solution of question ``name`` with one slip, as the learner's function."""
    return getattr(_answers(_variant(_answer_source(name), old, new)), name)


# --- specific feedback ------------------------------------------------------------------------------

def test_sinkhorn_feedback_is_specific() -> None:
    import torch

    _fails(checks.check_sinkhorn, lambda scores, n_iters=3, epsilon=0.05: torch.softmax(scores / epsilon, dim=1),
           "plain softmax")
    _fails(checks.check_sinkhorn, _wrong("sinkhorn", "logits = scores.float() / epsilon", "logits = scores.float()"),
           "epsilon")
    _fails(checks.check_sinkhorn, _wrong("sinkhorn", "for _ in range(n_iters):", "for _ in range(n_iters + 1):"),
           "exactly n_iters")
    _fails(checks.check_sinkhorn, _wrong("sinkhorn", "return (q * batch).t()", "return q * batch"), "transpose")
    _fails(checks.check_sinkhorn, _wrong("sinkhorn", "return (q * batch).t()", "return q.t()"), "each row")
    _fails(checks.check_sinkhorn, _wrong("sinkhorn", "    with torch.no_grad():\n", "    if True:\n"),
           "torch.no_grad")
    _fails(checks.check_sinkhorn, _wrong("sinkhorn", "logits = scores.float() / epsilon",
                                         "logits = scores.float().div_(epsilon)"), "in place")
    _fails(checks.check_sinkhorn_hidden, _wrong("sinkhorn", "torch.exp(logits - logits.max())", "torch.exp(logits)"),
           "subtract the largest value", seed=3)
    _fails(checks.check_sinkhorn, "not a function", "define sinkhorn")


def test_swav_loss_feedback_is_specific() -> None:
    name = "swav_loss"
    # seed 7 draws 3 large + 3 small crops at temperature 0.5, so every slip changes the value
    _fails(checks.check_swav_loss, _wrong(name, "for i in range(n_large):", "for i in range(len(scores)):"),
           "only from the first")
    _fails(checks.check_swav_loss, _wrong(name, "if v != i]", "]"), "its own code")
    _fails(checks.check_swav_loss, _wrong(name, "F.log_softmax(s / temperature, dim=1)", "F.log_softmax(s, dim=1)"),
           "temperature")
    _fails(checks.check_swav_loss, _wrong(name, "return total / n_large", "return -total / n_large"), "sign")
    _fails(checks.check_swav_loss, _wrong(name, ".sum(dim=1).mean()", ".sum(dim=1).sum()"), "average")
    _fails(checks.check_swav_loss, _wrong(name, "return total / n_large", "return (total / n_large).item()"),
           "0-dim tensor")
    grad_through_codes = _answers(_variant(_answer_source("sinkhorn"), "    with torch.no_grad():\n", "    if True:\n"))
    _fails(checks.check_swav_loss, grad_through_codes.swav_loss, "gradient")


def test_paired_views_feedback_is_specific() -> None:
    name = "paired_views"
    # seed 7 draws 3 large + 2 small crops with jitter
    _fails(checks.check_paired_views, _wrong(name, "crops.append(brightness_contrast(crop, spec.jitter, generator))",
                                             "crops.append(crop)"), "brightness_contrast", seed=7)
    _fails(checks.check_paired_views, _wrong(name, "camera = v % 2 if large else (v - spec.n_large) % 2",
                                             "camera = v % 2"), "small crop 0 is RGB", seed=7)
    _fails(checks.check_paired_views, _wrong(name, "camera = v % 2 if large else (v - spec.n_large) % 2",
                                             "camera = 0"), "alternate", seed=7)
    _fails(checks.check_paired_views, _wrong(name, "x.float() / 255 if x.dtype == torch.uint8 else x.float()",
                                             "x.float()"), "255", seed=7)
    _fails(checks.check_paired_views, _wrong(name, "spec.size if large else spec.small_size", "spec.size"),
           "small_size", seed=7)
    _fails(checks.check_paired_views, _wrong(name, "spec.max_rotation, spec.flip, generator)",
                                             "spec.max_rotation, spec.flip, torch.Generator().manual_seed("
                                             "int(torch.randint(0, 10**6, (1,)))))"), "generator", seed=7)


def test_train_step_feedback_is_specific() -> None:
    name = "train_step"
    _fails(checks.check_train_step, _wrong(name, "model.prototypes.weight.copy_(F.normalize(model.prototypes.weight, "
                                                 "dim=1))", "pass"), "unit sphere")
    _fails(checks.check_train_step, _wrong(name, "    optimizer.zero_grad()\n", ""), "zero_grad")
    _fails(checks.check_train_step, _wrong(name, "    optimizer.step()\n", ""), "optimizer.step()")
    _fails(checks.check_train_step, _wrong(name, "return loss.item()", "return loss"), "loss.item()")


def test_pretrain_feedback_is_specific() -> None:
    _fails(checks.check_pretrain, lambda model, images, steps, batch_size, spec, lr=1e-3, seed=0:
           [3.0 - 0.01 * k for k in range(steps)], "weights changed")
    _fails(checks.check_pretrain, _wrong("pretrain", "for _ in range(steps):", "for _ in range(steps - 1):"),
           "a list of 40 losses")


# --- anti-cheat (a): answers that delegate to the reference -------------------------------------------

DELEGATIONS = {
    "sinkhorn": ("imported name", "check_sinkhorn", "sinkhorn",
                 "from rice_lab.ssl import sinkhorn as reference\n"
                 "def sinkhorn(scores, n_iters=3, epsilon=0.05):\n    return reference(scores, n_iters, epsilon)\n"),
    "sinkhorn-dynamic": ("dynamic lookup", "check_sinkhorn_hidden", "sinkhorn",
                         "import importlib\n"
                         "def sinkhorn(scores, n_iters=3, epsilon=0.05):\n"
                         "    module = importlib.import_module('rice_lab.ssl.' + 'loss')\n"
                         "    return getattr(module, 'swav_' + 'codes')(scores, None, n_iters, epsilon)\n"),
    "swav_loss": ("module attribute", "check_swav_loss", "swav_loss",
                  "import rice_lab.ssl\n"
                  "def swav_loss(scores, n_large=2, temperature=0.1):\n"
                  "    return rice_lab.ssl.swav_loss(scores, n_large, temperature)\n"),
    "paired_views": ("default argument", "check_paired_views", "paired_views",
                     "from rice_lab.data.views import multi_crop\n"
                     "def paired_views(rgb, rgnir, spec, generator, _f=multi_crop):\n"
                     "    return _f(rgb, rgnir, spec, 'paired', generator)\n"),
    "train_step": ("helper in the step", "check_train_step", "train_step",
                   "import rice_lab.data.views as v\n"
                   "def paired_views(rgb, rgnir, spec, generator):\n"
                   "    return v.multi_crop(rgb, rgnir, spec, 'paired', generator)\n"),
}


@pytest.mark.parametrize("case", list(DELEGATIONS))
def test_delegating_to_the_reference_scores_zero(case: str) -> None:
    _, check_name, question, source = DELEGATIONS[case]
    cheat = _answers(source)
    for check in (getattr(checks, check_name), getattr(fresh("a02_ssl", cheat.ns), check_name)):
        with pytest.raises(AssertionError, match="rice_lab's"):
            check(getattr(cheat, question), seed=3)


def test_delegating_to_lightly_scores_zero() -> None:
    pytest.importorskip("lightly")
    cheat = _answers("from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn\n"
                     "def sinkhorn(scores, n_iters=3, epsilon=0.05):\n"
                     "    return lightly_sinkhorn(scores, n_iters, epsilon)\n")
    with pytest.raises(AssertionError, match="lightly"):
        checks.check_sinkhorn(cheat.sinkhorn, seed=3)


# --- anti-cheat (b): replacing or patching the checks ---------------------------------------------------

def test_patched_check_module_is_detected_by_the_hidden_tests() -> None:
    module = importlib.import_module("autograder.a02_ssl")
    original = module.check_swav_loss
    try:
        module.check_swav_loss = lambda f, seed=None: None
        with pytest.raises(AssertionError, match="replaced or modified"):
            fresh("a02_ssl", {})
    finally:
        module.check_swav_loss = original
    fresh("a02_ssl", {})  # untouched again: no complaint


def test_rebound_check_in_the_notebook_is_detected() -> None:
    with pytest.raises(AssertionError, match="notebook"):
        fresh("a02_ssl", {"check_pretrain": lambda f: None})


def test_patched_reference_does_not_fool_the_hidden_tests() -> None:
    import torch

    loss_module = importlib.import_module("rice_lab.ssl.loss")
    original = loss_module.swav_loss
    try:
        loss_module.swav_loss = lambda scores, n_large=2, temperature=0.1, **_: torch.tensor(1.0)
        lazy = _answers("def swav_loss(scores, n_large=2, temperature=0.1):\n"
                        "    return sum(s.sum() for s in scores) * 0 + 1.0\n").swav_loss
        with pytest.raises(AssertionError):  # the hidden check recomputes the reference from a fresh copy
            fresh("a02_ssl", {}).check_swav_loss_hidden(lazy, seed=3)
    finally:
        loss_module.swav_loss = original


def test_audit_accepts_the_solution() -> None:
    nb = nbformat.read(REPO / "solutions" / "02-ssl" / "02-ssl.ipynb", as_version=4)
    assert audit_notebook(nb) == []
