"""The 03-finetune checks: right answers pass (whatever order they draw random numbers in, however they
search for the temperature or build the file), delegating to the reference scores nothing. (Typical wrong
answers and their messages: tests/test_course_mutants.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import nbformat
import pytest

import autograder.checks.a03_finetune as checks
from autograder.audit import audit_notebook
from autograder.notebooks import REPO
from notebook_answers import solution_answers

HEADER = """
import math
from pathlib import Path
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn
from rice_lab.data.zindi import CLASSES, plant_id_of
from rice_lab.evaluate.encode import encode, photo_stats
from rice_lab.finetune.submission import check_submission
"""
QUESTIONS = ("split_photos", "train_probe", "log_loss", "fit_temperature", "make_submission")


def _answers(extra: str = "") -> SimpleNamespace:
    """The solution notebook's answer cells (then ``extra``)."""
    return solution_answers("03-finetune", HEADER, extra)


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
def split_photos(plants, valid_pct=0.2, seed=0):
    # Plants shuffled with a permutation (other random draws), photo rows built in a loop, NumPy rounding.
    rng = np.random.default_rng(seed)
    labelled = plants.loc[plants["split"] == "train"]
    valid_ids = []
    for label in sorted(labelled["label"].unique()):
        ids = sorted(labelled.loc[labelled["label"] == label, "plant_id"])
        k = int(np.clip(np.round(len(ids) * valid_pct), 1, len(ids) - 1))
        valid_ids += [ids[i] for i in rng.permutation(len(ids))[:k]]
    rows = [{"plant_id": r.plant_id, "label": r.label, "camera": cam, "path": getattr(r, cam)}
            for r in labelled.itertuples() for cam in ("rgnir", "rgb")]
    table = pd.DataFrame(rows)
    chosen = table["plant_id"].isin(valid_ids)
    return table[~chosen], table[chosen]


def train_probe(encoder, train_images, train_labels, eval_images, camera, epochs=30, lr=3e-2, batch_size=16, seed=0):
    # The encoder run by hand (eval mode, no gradient), batches from the global generator, last batch kept.
    encoder.eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in encoder.normalization[camera])
    with torch.no_grad():
        features = encoder((train_images.float() / 255 - mean) / std)
        eval_features = encoder((eval_images.float() / 255 - mean) / std)
    torch.manual_seed(seed + 7)
    head = nn.Sequential(nn.BatchNorm1d(features.shape[1]), nn.Dropout(0.25), nn.Linear(features.shape[1], 3))
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        head.train()
        epoch = []
        order = torch.randperm(len(features))
        for start in range(0, len(features), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(head(features[batch]), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch += [loss.item()] * len(batch)
        losses.append(float(np.mean(epoch)))
    head.eval()
    with torch.no_grad():
        return head(eval_features), losses


def log_loss(labels, probs, eps=1e-15):
    # One-hot and the whole matrix, clipped first: the same number.
    probs = np.clip(np.array(probs, dtype=np.float64), eps, 1 - eps)
    one_hot = np.eye(probs.shape[1])[np.asarray(labels, dtype=int)]
    return float(-(one_hot * np.log(probs)).sum(axis=1).mean())


def fit_temperature(logits, labels, is_valid):
    # A grid search (0.2 % apart) in torch, then no refinement.
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))[torch.as_tensor(np.asarray(is_valid, dtype=bool))]
    y = torch.as_tensor(np.asarray(labels))[torch.as_tensor(np.asarray(is_valid, dtype=bool))]
    grid = torch.exp(torch.linspace(math.log(0.05), math.log(20), 3000, dtype=torch.float64))
    losses = torch.stack([F.cross_entropy(z / t, y) for t in grid])
    return float(grid[losses.argmin()])


def make_submission(photo_probs, sample_path, out):
    # Per camera tables joined on the plant, written with the csv module's help from pandas.
    sample = pd.read_csv(sample_path)
    classes = list(sample.columns[1:])
    probs = photo_probs.copy()
    probs["plant"] = [plant_id_of(i)[0] for i in probs["Image_id"]]
    probs["camera"] = [plant_id_of(i)[1] for i in probs["Image_id"]]
    rgb = probs[probs["camera"] == "rgb"].set_index("plant")[classes]
    rgnir = probs[probs["camera"] == "rgnir"].set_index("plant")[classes]
    fused = (rgb + rgnir.loc[rgb.index]) / 2
    plants = [plant_id_of(i)[0] for i in sample["Image_id"]]
    fused = fused.loc[plants]
    fused = fused / fused.to_numpy().sum(axis=1, keepdims=True)
    fused.insert(0, "Image_id", list(sample["Image_id"]))
    fused.to_csv(str(out), index=False, float_format="%.12f")
    return str(out)
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_answers_written_another_way_pass(seed: int) -> None:
    other = _answers(OTHER_WAYS)
    for question in QUESTIONS:
        getattr(checks, f"check_{question}")(getattr(other, question), seed=seed)
        getattr(checks, f"check_{question}_hidden")(getattr(other, question), seed=seed)


def test_sklearn_and_the_reference_agree_on_the_cases() -> None:
    """The log loss cases hold p = 0 and 1: both references clip them the same way at machine epsilon."""
    import numpy as np

    for seed in range(5):
        labels, probs = checks.log_loss_case(seed)
        eps = float(np.finfo(np.float64).eps)
        assert checks.reference_log_loss(labels, probs, eps) == pytest.approx(
            checks._sklearn_log_loss(labels, probs), rel=1e-12)
    assert checks.SMOOTHING_FLOOR == pytest.approx(0.069, abs=5e-4)


# --- anti-cheat: answers that delegate to the reference ------------------------------------------------------

DELEGATIONS = {
    "split": ("check_split_photos", "split_photos", "split_plants",
              "from rice_lab.data import split_plants\n"
              "def split_photos(plants, valid_pct=0.2, seed=0):\n"
              "    marked = split_plants(plants, valid_pct, seed)\n"
              "    return marked, marked\n"),
    "log_loss-sklearn": ("check_log_loss", "log_loss", "sklearn",
                         "from sklearn.metrics import log_loss as reference\n"
                         "def log_loss(labels, probs, eps=1e-15):\n    return reference(labels, probs)\n"),
    "log_loss-rice_lab": ("check_log_loss_hidden", "log_loss", "rice_lab's",
                          "import rice_lab.evaluate.calibration as c\n"
                          "def log_loss(labels, probs, eps=1e-15):\n    return c.log_loss(labels, probs, eps)\n"),
    "temperature": ("check_fit_temperature", "fit_temperature", "rice_lab's",
                    "import importlib\n"
                    "def fit_temperature(logits, labels, is_valid):\n"
                    "    module = importlib.import_module('rice_lab.evaluate.' + 'calibration')\n"
                    "    mask = np.asarray(is_valid, dtype=bool)\n"
                    "    return getattr(module, 'fit_' + 'temperature')(np.asarray(labels)[mask], np.asarray(logits)[mask])\n"),
    "submission": ("check_make_submission", "make_submission", "rice_lab's",
                   "from rice_lab.finetune.submission import write_submission\n"
                   "def make_submission(photo_probs, sample_path, out, _w=write_submission):\n"
                   "    return _w(photo_probs, sample_path, out)\n"),
    "probe": ("check_train_probe", "train_probe", "reference",
              "import autograder.checks.a03_finetune as a\n"
              "def train_probe(*args, **kwargs):\n    return a._reference_probe(*args, **kwargs)\n"),
}


@pytest.mark.parametrize("case", list(DELEGATIONS))
def test_delegating_to_the_reference_scores_zero(case: str) -> None:
    check_name, question, word, source = DELEGATIONS[case]
    cheat = _answers(source)
    with pytest.raises(AssertionError, match=word):
        getattr(checks, check_name)(getattr(cheat, question), seed=3)


def test_audit_accepts_the_solution() -> None:
    nb = nbformat.read(REPO / "solutions" / "03-finetune" / "03-finetune.ipynb", as_version=4)
    assert audit_notebook(nb) == []
