"""The 02-ssl checks: right answers pass (whatever order they draw random numbers in), delegating to the
reference scores nothing. (Typical wrong answers and their messages: tests/test_course_mutants.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import nbformat
import pytest

import autograder.checks.a02_ssl as checks
from autograder.audit import audit_notebook
from autograder.notebooks import REPO
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
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(solution, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(solution, question), seed=seed)


# --- right answers that draw their random numbers differently -------------------------------------------

OTHER_ORDER = """
def paired_views(rgb, rgnir, spec, generator):
    # All small crops first, then the large ones, returned in the required order: other random draws.
    cameras = [x.float() / 255 if x.dtype == torch.uint8 else x.float() for x in (rgb, rgnir)]
    small = []
    for j in range(spec.n_small):
        crop = random_resized_crop(cameras[j % 2], spec.small_size, spec.small_scale, spec.max_rotation, spec.flip,
                                   generator)
        small.append(brightness_contrast(crop, spec.jitter, generator))
    large = []
    for i in range(spec.n_large):
        crop = random_resized_crop(cameras[i % 2], spec.size, spec.large_scale, spec.max_rotation, spec.flip,
                                   generator)
        large.append(brightness_contrast(crop, spec.jitter, generator))
    return large + small


def pretrain(model, images, steps, batch_size, spec, lr=1e-3, seed=0):
    # Every batch drawn up front, from a generator of its own: other random draws, still reproducible.
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed + 1000)
    batches = [torch.randperm(len(images.rgb), generator=order)[:batch_size] for _ in range(steps)]
    generator = torch.Generator().manual_seed(seed)
    return [train_step(model, optimizer, images.rgb[b], images.rgnir[b], spec, generator) for b in batches]
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_with_another_random_order_pass(seed: int) -> None:
    other = _answers(OTHER_ORDER)
    for question in ("paired_views", "train_step", "pretrain"):
        getattr(checks, f"check_{question}")(getattr(other, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(other, question), seed=seed)


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
    with pytest.raises(AssertionError, match="rice_lab's"):
        getattr(checks, check_name)(getattr(cheat, question), seed=3)


def test_delegating_to_lightly_scores_zero() -> None:
    pytest.importorskip("lightly")
    cheat = _answers("from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn\n"
                     "def sinkhorn(scores, n_iters=3, epsilon=0.05):\n"
                     "    return lightly_sinkhorn(scores, n_iters, epsilon)\n")
    with pytest.raises(AssertionError, match="lightly"):
        checks.check_sinkhorn(cheat.sinkhorn, seed=3)


def test_audit_accepts_the_solution() -> None:
    nb = nbformat.read(REPO / "solutions" / "02-ssl" / "02-ssl.ipynb", as_version=4)
    assert audit_notebook(nb) == []
