"""Checks for assignment 03-finetune: a plant split of the photos, a probe on a frozen encoder, log loss
by hand, a fitted temperature, a submission file.

Each ``check_*`` runs the learner's function on freshly generated cases. Where the answer is unique (the
log loss, the temperature, the submission's numbers) it is compared with ``rice_lab``'s reference (and
scikit-learn's log loss); where it depends on random numbers (the split, the probe's training) the
check tests properties every right answer has, whatever order it draws its random numbers in, and uses
known slips only to name the mistake. ``check_*_hidden`` adds the cases used only when grading.
"""

from __future__ import annotations

import importlib
import math
import sys
import tempfile
import types
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from autograder import _kit
from autograder.checks.a01_data import _random_ids, allowed_valid_counts
from rice_lab.data.zindi import CLASSES, plant_id_of
from rice_lab.evaluate import calibration
from rice_lab.evaluate.encode import encode, photo_stats

# `rice_lab.finetune.submission` the module (its functions are the references for question 5).
submission_module = importlib.import_module("rice_lab.finetune.submission")

Q1, Q2, Q3, Q4, Q5 = "split_photos", "train_probe", "log_loss", "fit_temperature", "make_submission"
SMOOTHING_FLOOR = -math.log(1 - 0.1 + 0.1 / 3)  # a perfect prediction trained with label smoothing 0.1, 3 classes


def _forbidden(*names: str) -> dict[str, Callable]:
    """Reference functions an answer must not call, as seen here and as imported by the notebook.

    Names are ``module:function`` with module one of calibration, submission, sklearn.
    """
    modules = {"calibration": calibration, "submission": submission_module}
    pairs = [item.split(":") for item in names]
    found = _kit.references(*((modules[key], name) for key, name in pairs if key != "sklearn"))
    if any(key == "sklearn" for key, _ in pairs):
        from sklearn import metrics
        found.update({f"sklearn.metrics.{name}": getattr(metrics, name) for key, name in pairs if key == "sklearn"})
    return found


# --- question 1: a plant-level, stratified split of the photos ---------------------------------------

PHOTO_COLUMNS = ("plant_id", "label", "camera", "path")


def plant_table_case(seed: int, tiny_class: bool = False, rounding: bool = False) -> tuple[pd.DataFrame, float]:
    """A read_zindi-like plant table (labelled training plants and unlabelled test plants, shuffled, with a
    non-default index) and a validation fraction; ``rounding``: n * valid_pct ends in .75 for every label."""
    gen = _kit.rng(seed)
    counts = [int(gen.integers(5, 16)) for _ in CLASSES]
    if tiny_class:
        counts[int(gen.integers(len(counts)))] = 2
    if rounding:
        counts = [int(n) for n in gen.permutation([7, 11, 15])]
    n_test = int(gen.integers(3, 9))
    ids = _random_ids(gen, sum(counts) + n_test)
    labels = list(np.repeat(CLASSES, counts)) + [None] * n_test
    gen.shuffle(labels)
    root = f"/course/synth-{seed}/images"
    rows = [{"plant_id": p, "label": label, "split": "train" if label is not None else "test",
             "rgb": f"{root}/{p}.jpg", "rgnir": f"{root}/{p}_rgn.jpg",
             "mask_rgb": f"/course/synth-{seed}/masks/{p}.png", "mask_rgnir": f"/course/synth-{seed}/masks/{p}_rgn.png"}
            for p, label in zip(ids, labels)]
    table = pd.DataFrame(rows)
    table.index = gen.permutation(len(table)) + 10
    return table, 0.25 if rounding else float(gen.choice([0.2, 0.25, 0.3]))


def _sides_of(outcome: Any) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    got = outcome.result if hasattr(outcome, "result") else outcome
    if isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, pd.DataFrame) for t in got):
        return got[0], got[1]
    return None


def _valid_plants(outcome: Any) -> list[str] | None:
    sides = _sides_of(outcome)
    if sides is None or "plant_id" not in sides[1]:
        return None
    return sorted(map(str, sides[1]["plant_id"].unique()))


def _photos_of(plants: pd.DataFrame) -> dict[str, dict[str, str]]:
    return {row.plant_id: {"rgb": row.rgb, "rgnir": row.rgnir} for row in plants.itertuples()}


def _compare_split(func: Callable, plants: pd.DataFrame, valid_pct: float, seed: int, case: str) -> None:
    with _kit.named_errors(Q1, "the plant table has the columns of read_zindi (plant_id, label, split, rgb, "
                           "rgnir, ...); test plants have no label" + case, seed):
        outcome = _kit.call(func, plants.copy(), valid_pct=valid_pct, seed=seed)
    if not outcome.args[0].equals(plants):
        _kit.fail(Q1, "the plant table unchanged", "it was modified",
                  "work on copies (`plants[plants['split'] == 'train']` makes one); do not add columns to the "
                  "table you are given" + case, seed)
    sides = _sides_of(outcome)
    if sides is None:
        _kit.fail(Q1, "a tuple (train, valid) of two DataFrames", type(outcome.result).__name__,
                  "return both tables: `return train, valid`" + case, seed)
    for name, side in zip(("train", "valid"), sides):
        missing = [c for c in PHOTO_COLUMNS if c not in side.columns]
        if missing:
            _kit.fail(Q1, f"{name} with columns {list(PHOTO_COLUMNS)}", list(side.columns),
                      f"add the column(s) {missing}: one row per photo" + case, seed)
    labelled = plants[plants["split"] == "train"]
    test_ids = set(plants.loc[plants["split"] != "train", "plant_id"])
    photos = _photos_of(plants)
    where: dict[str, dict[str, set[str]]] = {}
    for name, side in zip(("train", "valid"), sides):
        for row in side.itertuples():
            where.setdefault(str(row.plant_id), {}).setdefault(str(row.camera), set()).add(name)
    unknown = sorted(set(where) - set(photos))
    if unknown:
        _kit.fail(Q1, "plant ids from the table's plant_id column", f"{unknown[:3]}",
                  "copy plant_id from the plant table; do not rebuild it from file names" + case, seed)
    cameras = {c for sides_of_plant in where.values() for c in sides_of_plant}
    if not cameras <= {"rgb", "rgnir"}:
        _kit.fail(Q1, "camera 'rgb' or 'rgnir' on every row", sorted(map(str, cameras)),
                  "name each photo's camera 'rgb' or 'rgnir' (the plant table's column names)" + case, seed)
    in_test = sorted(set(where) & test_ids)
    if in_test:
        _kit.fail(Q1, "only labelled plants (split == 'train')", f"{len(in_test)} test plant(s), e.g. {in_test[0]}",
                  "test plants have no label: keep `plants[plants['split'] == 'train']` before splitting" + case, seed)
    photo_split = [p for p, cams in where.items() if len(cams) == 2 and cams["rgb"] != cams["rgnir"]
                   and len(cams["rgb"]) == len(cams["rgnir"]) == 1]
    if photo_split:
        _kit.fail(Q1, "both photos of each plant on the same side",
                  f"{len(photo_split)} plant(s) with one photo in train and the other in valid, e.g. {photo_split[0]}",
                  "this is a photo-level split: choose validation *plants* first, then give each side both "
                  "photos of its plants (a plant's RGB and RG-NIR photos split up leak the plant into "
                  "validation)" + case, seed)
    both = sorted(p for p, cams in where.items() if any(len(s) > 1 for s in cams.values()))
    if both:
        _kit.fail(Q1, "every plant on exactly one side", f"{len(both)} plant(s) in train and in valid, e.g. {both[0]}",
                  "train must hold the labelled plants that are *not* in valid (overlap lets validation plants "
                  "be learned)" + case, seed)
    lost = sorted(set(labelled["plant_id"]) - set(where))
    if lost:
        _kit.fail(Q1, f"all {len(labelled)} labelled plants on one side or the other",
                  f"{len(lost)} plant(s) in neither, e.g. {lost[0]}",
                  "every labelled plant goes to train or to valid: train = the labelled plants not chosen "
                  "for valid" + case, seed)
    one_camera = sorted(p for p, cams in where.items() if set(cams) != {"rgb", "rgnir"})
    if one_camera:
        seen = sorted(where[one_camera[0]])
        _kit.fail(Q1, "two rows per plant: its rgb photo and its rgnir photo",
                  f"{len(one_camera)} plant(s) with only {seen}",
                  "fine-tuning uses both cameras: one row for plant['rgb'] (camera 'rgb') and one for "
                  "plant['rgnir'] (camera 'rgnir')" + case, seed)
    labels = dict(zip(labelled["plant_id"], labelled["label"]))
    for name, side in zip(("train", "valid"), sides):
        counts = side.groupby(["plant_id", "camera"]).size()
        if (counts > 1).any():
            _kit.fail(Q1, "one row per photo", f"{int((counts > 1).sum())} photo(s) listed more than once",
                      "each plant contributes exactly two rows" + case, seed)
        for row in side.itertuples():
            if str(row.path) != photos[str(row.plant_id)][str(row.camera)]:
                _kit.fail(Q1, f"path {photos[str(row.plant_id)][str(row.camera)]!r} for {row.plant_id}/{row.camera}",
                          repr(row.path), "take the path from the plant's own 'rgb' / 'rgnir' column" + case, seed)
            if row.label != labels[str(row.plant_id)]:
                _kit.fail(Q1, f"label {labels[str(row.plant_id)]!r} for {row.plant_id}", repr(row.label),
                          "copy each plant's label onto both of its photos" + case, seed)
    per_label = labelled.groupby("label").size().reindex(list(CLASSES), fill_value=0)
    allowed = {label: allowed_valid_counts(int(n), valid_pct) for label, n in per_label.items()}
    valid_plants = sides[1].drop_duplicates("plant_id")
    counts = valid_plants.groupby("label").size().reindex(list(CLASSES), fill_value=0)
    if any(int(counts[label]) not in allowed[label] for label in CLASSES):
        expected = {label: sorted(allowed[label]) if len(allowed[label]) > 1 else min(allowed[label])
                    for label in CLASSES}
        _kit.fail(Q1, f"validation plants per label {expected}", f"{ {k: int(v) for k, v in counts.items()} }",
                  _count_hint(counts, per_label, valid_pct) + case, seed)
    again = _valid_plants(_kit.call(func, plants.copy(), valid_pct=valid_pct, seed=seed))
    if again != _valid_plants(outcome):
        _kit.fail(Q1, "the same validation plants for the same seed", "other plants",
                  "draw the random choice from np.random.default_rng(seed), not from global randomness" + case, seed)
    # Another seed may pick the same plants by chance when labels are small: only fail if three do.
    others = [_valid_plants(_kit.call(func, plants.copy(), valid_pct=valid_pct, seed=seed + k)) for k in (1, 2, 3)]
    if all(other == again for other in others):
        _kit.fail(Q1, "other validation plants for another seed", f"the same plants for seeds {seed} to {seed + 3}",
                  "the seed argument must drive which plants are chosen: rng = np.random.default_rng(seed)" + case,
                  seed)


def _count_hint(counts: pd.Series, per_label: pd.Series, valid_pct: float) -> str:
    truncated = {label: min(max(int(n * valid_pct), 1), max(n - 1, 1)) for label, n in per_label.items()}
    if all(int(counts[label]) == truncated[label] for label in per_label.index):
        n = int(per_label.iloc[0])
        return (f"round n_plants * valid_pct to the nearest integer: int() truncates (int({n} * {valid_pct}) is "
                f"{int(n * valid_pct)}); take round(n_plants * valid_pct) plants of each label")
    for label, n in per_label.items():
        if counts[label] == 0:
            return f"every label needs at least 1 validation plant ({label!r} has {n} plants and got none)"
        if counts[label] == n and n > 1:
            return f"leave at least one plant of each label in training ({label!r}: all {n} in validation)"
    if int(counts.sum()) * 2 == round(int(per_label.sum()) * 2 * valid_pct) or \
            abs(int(counts.sum()) - int(per_label.sum()) * valid_pct) <= 1.5:
        return (f"stratify by label: in each label take round(n_plants * valid_pct) plants (valid_pct={valid_pct}), "
                "not a fraction of all plants together")
    return (f"in each label take round(n_plants * valid_pct) plants (valid_pct={valid_pct}), at least 1 and at most "
            "n_plants - 1; count plants, not photos")


SPLIT_PHOTOS = _kit.Answer(
    Q1, "split_photos", lambda: _forbidden_split(),
    hint="do not call rice_lab's split_plants (the reference answer): choose the plants yourself", module=__name__)


def _forbidden_split() -> dict[str, Callable]:
    from rice_lab.data import zindi
    found = {"rice_lab's split_plants": zindi.split_plants}
    loaded = sys.modules.get("rice_lab.data")
    if loaded is not None and getattr(loaded, "split_plants", None) is not None and \
            loaded.split_plants is not zindi.split_plants:
        found["rice_lab's split_plants (imported)"] = loaded.split_plants
    return found


@_kit.check(SPLIT_PHOTOS)
def check_split_photos(split_photos: Callable, seed: int) -> None:
    """Visible check for question 1 on a fresh random plant table (and one where rounding matters)."""
    plants, valid_pct = plant_table_case(seed)
    n = int((plants["split"] == "train").sum())
    _compare_split(split_photos, plants, valid_pct, seed, f" (case: {n} labelled plants, valid_pct={valid_pct})")
    _compare_split(split_photos, *plant_table_case(seed, rounding=True), seed,
                   " (case: 7, 11 and 15 plants per label, valid_pct=0.25)")
    _kit.passed(Q1, [f"{n} labelled plants and {len(plants) - n} test plants, valid_pct={valid_pct}: both photos "
                     "of a plant on one side, every labelled plant once, no test plant",
                     "validation plants per label as expected (rounded to the nearest, e.g. 7 x 0.25 -> 2)",
                     "same seed, same split; new seed, new split"])


@_kit.check(SPLIT_PHOTOS)
def check_split_photos_hidden(split_photos: Callable, seed: int) -> None:
    """Hidden check for question 1: a two-plant class, several fresh cases."""
    for k in range(2):
        plants, valid_pct = plant_table_case(seed + k, tiny_class=True)
        _compare_split(split_photos, plants, valid_pct, seed + k, f" (case: a class of two plants, seed {seed + k})")
    _kit.passed(Q1 + " (hidden)", ["a class of two plants", "two more tables"])


# --- question 2: a head on a frozen encoder, a short probe ---------------------------------------------

PROBE_EPOCHS, PROBE_LR, PROBE_BATCH = 30, 3e-2, 16  # the notebook's defaults
CHECK_EPOCHS, HIDDEN_EPOCHS = 60, 48
# Measured on 200 seeds (400 runs: the visible and the hidden case) with the reference and with an answer
# that draws its batches and initial weights differently (tests/test_course_03_finetune.py): right answers
# reached at least 0.575 training accuracy and at most 0.85 cross-entropy on these 40 plants (chance: 0.35
# and log 3 = 1.10), and the last quarter's mean loss lay at least 0.2 below the first epoch's. A head
# that never learns stays near chance.
MIN_ACCURACY, MAX_CROSS_ENTROPY = 0.45, 1.0


def _course_photos(height: int = 32) -> types.SimpleNamespace:
    """All 40 course plants (both cameras, decoded small) and their labels as class indices."""
    from autograder.datasets import course_dataset
    from rice_lab.data import views
    from rice_lab.data.zindi import read_zindi

    plants = read_zindi(course_dataset(plants=40, size=64, seed=0), test_labels=True)
    names = [label if isinstance(label, str) else test for label, test in zip(plants["label"], plants["test_label"])]
    images = views.PlantImages(plants, *views.load_size(height))
    return types.SimpleNamespace(rgb=images.rgb, rgnir=images.rgnir,
                                 labels=torch.tensor([CLASSES.index(n) for n in names]))


_PHOTOS: list[types.SimpleNamespace] = []


def course_photos() -> types.SimpleNamespace:
    if not _PHOTOS:
        _PHOTOS.append(_course_photos())
    return _PHOTOS[0]


def tiny_encoder(seed: int, photos: types.SimpleNamespace, width: int = 64) -> nn.Module:
    """A small random convolutional encoder with BatchNorm and stored per-camera statistics, as a
    pre-training run leaves them (``encode`` normalises with them)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                nn.Conv2d(16, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # Running statistics that are not the defaults, so a pass in train mode visibly moves them.
        for module in encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.8, 1.5)
    encoder.num_features = width
    encoder.normalization = {camera: photo_stats(getattr(photos, camera)) for camera in ("rgb", "rgnir")}
    return encoder.eval()


def probe_case(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """An encoder, the course photos of one camera and their labels, and photos to predict: the same
    photos in another order with some of them twice (``order`` says which)."""
    gen = _kit.rng(seed)
    photos = course_photos()
    camera = str(gen.choice(["rgb", "rgnir"]))
    images = getattr(photos, camera)
    order = np.concatenate([gen.permutation(len(images)), gen.choice(len(images), size=6, replace=False)])
    order = torch.from_numpy(gen.permutation(order))
    return tiny_encoder(seed, photos), images, photos.labels, images[order], order, camera


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _compare_probe(func: Callable, seed: int, batch_size: int = PROBE_BATCH,
                   epochs: int = CHECK_EPOCHS) -> tuple[float, float, list[float]]:
    encoder, images, labels, eval_images, order, camera = probe_case(seed)
    before = _state(encoder)
    case = f" (case: {camera} photos of 40 plants, epochs={epochs}, lr={PROBE_LR}, batch_size={batch_size})"
    with _kit.named_errors(Q2, "an error while training: the head is nn.Sequential(nn.BatchNorm1d(F), "
                           "nn.Dropout(0.25), nn.Linear(F, 3)), one output per class, on features of shape "
                           "(photos, F) from encode(encoder, images, camera)" + case, seed):
        outcome = _kit.call(func, encoder, images.clone(), labels.clone(), eval_images.clone(), camera,
                            epochs=epochs, lr=PROBE_LR, batch_size=batch_size, seed=seed)
    got = outcome.result
    after = outcome.args[0]
    if isinstance(after, nn.Module):
        changed = [k for k, v in after.state_dict().items() if k in before and not torch.equal(v, before[k])]
        weights = [k for k in changed if not any(s in k for s in ("running_", "num_batches"))]
        if weights:
            _kit.fail(Q2, "the encoder's weights unchanged (a probe trains the head only)",
                      f"{len(weights)} tensor(s) changed, e.g. {weights[0]}",
                      "build the optimiser on head.parameters() only, and freeze the encoder: "
                      "encoder.requires_grad_(False)" + case, seed)
        if changed:
            _kit.fail(Q2, "the encoder's BatchNorm running statistics unchanged",
                      f"{len(changed)} buffer(s) moved, e.g. {changed[0]}",
                      "a frozen encoder must also keep its BatchNorm statistics: run it in eval mode "
                      "(encoder.eval(), or encode(...), which does it for you); requires_grad_(False) alone "
                      "leaves BatchNorm updating its running mean and variance in train mode" + case, seed)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        _kit.fail(Q2, "a tuple (eval_logits, losses)", type(got).__name__,
                  "return both: `return logits, losses`" + case, seed)
    logits, losses = got
    if not isinstance(logits, torch.Tensor):
        _kit.fail(Q2, "eval_logits as a torch.Tensor", type(logits).__name__,
                  "return head(features) for eval_images, a tensor" + case, seed)
    logits = logits.detach().double()
    if tuple(logits.shape) != (len(eval_images), len(CLASSES)):
        hint = f"one row per photo to predict ({len(eval_images)}), one column per class ({len(CLASSES)})"
        if logits.ndim == 2 and logits.shape[0] == len(images):
            hint = "predict `eval_images`, not the training photos"
        elif logits.ndim == 2 and logits.shape[1] != len(CLASSES):
            hint = f"the head's last layer is nn.Linear(num_features, {len(CLASSES)}): one output per class"
        _kit.fail(Q2, f"shape {(len(eval_images), len(CLASSES))}", f"shape {tuple(logits.shape)}", hint + case, seed)
    if not torch.isfinite(logits).all():
        _kit.fail(Q2, "finite logits", "inf or nan", "check the learning rate and the loss" + case, seed)
    if torch.allclose(logits.sum(dim=0), torch.ones(len(CLASSES), dtype=torch.float64), atol=1e-4):
        _kit.fail(Q2, "logits (raw scores of the last Linear layer)", "columns that sum to 1",
                  "that is a softmax over the photos (dim=0): return the logits themselves; F.cross_entropy "
                  "applies log_softmax over the classes" + case, seed)
    if torch.allclose(logits.sum(dim=1), torch.ones(len(logits), dtype=torch.float64), atol=1e-4) and \
            (logits >= 0).all():
        _kit.fail(Q2, "logits (raw scores of the last Linear layer)", "probabilities (rows sum to 1)",
                  "do not end the head with a softmax: F.cross_entropy expects logits and applies "
                  "log_softmax itself (a softmax before it squashes the gradients)" + case, seed)
    repeated = _repeats(order)
    for first, second in repeated:
        if not torch.allclose(logits[first], logits[second], atol=1e-5, rtol=1e-4):
            _kit.fail(Q2, "the same logits for the same photo", f"{logits[first].numpy().round(3)} and "
                      f"{logits[second].numpy().round(3)} for photo {int(order[first])} (given twice)",
                      "predict with the head in eval mode (head.eval() under torch.no_grad()): in train mode "
                      "dropout drops random features and BatchNorm uses the batch's statistics" + case, seed)
    if not isinstance(losses, (list, tuple)) or len(losses) != epochs or \
            not all(isinstance(v, (int, float)) and math.isfinite(v) for v in losses):
        hint = "append each epoch's mean training loss (a Python float: loss.item()) to a list"
        if isinstance(losses, (list, tuple)) and len(losses) > epochs:
            hint = "one loss per *epoch* (the mean over its batches), not one per batch"
        _kit.fail(Q2, f"a list of {epochs} floats, one per epoch",
                  f"{type(losses).__name__} of length {len(losses) if hasattr(losses, '__len__') else '?'}",
                  hint + case, seed)
    train_logits = torch.zeros(len(images), len(CLASSES), dtype=torch.float64)
    train_logits[order] = logits
    accuracy = float((train_logits.argmax(1) == labels).double().mean())
    cross_entropy = float(F.cross_entropy(train_logits, labels))
    quarter = max(1, epochs // 4)
    first, last = float(losses[0]), float(np.mean(losses[-quarter:]))
    if not last < first:
        _kit.fail(Q2, "the training loss to fall (mean of the last quarter of epochs below the first epoch's)",
                  f"first epoch {first:.3f}, last quarter {last:.3f}",
                  "each batch: logits = head(features[batch]); loss = F.cross_entropy(logits, labels[batch]); "
                  "optimizer.zero_grad(); loss.backward(); optimizer.step()" + case, seed)
    if accuracy < MIN_ACCURACY or cross_entropy > MAX_CROSS_ENTROPY:
        hint = ("the training loss hardly falls: each batch needs optimizer.zero_grad(); loss.backward(); "
                "optimizer.step(), with Adam on head.parameters() and lr as given; " if first - last < 0.1 else "")
        _kit.fail(Q2, f"a head that learned the training photos: accuracy >= {MIN_ACCURACY}, cross-entropy <= "
                  f"{MAX_CROSS_ENTROPY} (chance: 0.35 and {math.log(3):.2f})",
                  f"accuracy {accuracy:.2f}, cross-entropy {cross_entropy:.3f}",
                  hint + "features = encode(encoder, images, camera) for the training *and* the eval photos (the same "
                  "normalisation); Adam on head.parameters() with lr as given; `epochs` passes over shuffled "
                  "batches of `batch_size`" + case, seed)
    return accuracy, cross_entropy, [float(v) for v in losses]


def _repeats(order: torch.Tensor) -> list[tuple[int, int]]:
    seen: dict[int, int] = {}
    pairs = []
    for position, photo in enumerate(order.tolist()):
        if photo in seen:
            pairs.append((seen[photo], position))
        seen[photo] = position
    return pairs


def _reference_probe(encoder: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor,
                     eval_images: torch.Tensor, camera: str, epochs: int = PROBE_EPOCHS, lr: float = PROBE_LR,
                     batch_size: int = PROBE_BATCH, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """The autograder's own probe (used to measure the bounds above)."""
    features, eval_features = encode(encoder, train_images, camera), encode(encoder, eval_images, camera)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = nn.Sequential(nn.BatchNorm1d(features.shape[1]), nn.Dropout(0.25), nn.Linear(features.shape[1], 3))
        optimizer = torch.optim.Adam(head.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        losses = []
        for _ in range(epochs):
            head.train()
            total = 0.0
            for batch in torch.randperm(len(features), generator=generator).split(batch_size):
                loss = F.cross_entropy(head(features[batch]), train_labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            losses.append(total / len(features))
    head.eval()
    with torch.no_grad():
        return head(eval_features), losses


TRAIN_PROBE = _kit.Answer(
    Q2, "train_probe", lambda: {"the autograder's reference probe": _reference_probe},
    hint="write the head and its training loop yourself; do not call the autograder's reference", module=__name__)


@_kit.check(TRAIN_PROBE)
def check_train_probe(train_probe: Callable, seed: int) -> None:
    """Visible check for question 2: a probe on a small random encoder, on the 40 course plants."""
    with _kit.one_thread():
        accuracy, cross_entropy, losses = _compare_probe(train_probe, seed)
    _kit.passed(Q2, ["the encoder's weights and BatchNorm statistics unchanged (frozen, in eval mode)",
                     f"logits of shape (46, 3), the same for a photo given twice (head in eval mode)",
                     f"training loss {losses[0]:.3f} -> {losses[-1]:.3f}; on the training photos accuracy "
                     f"{accuracy:.2f}, cross-entropy {cross_entropy:.3f} (chance 0.35, {math.log(3):.2f})"])


@_kit.check(TRAIN_PROBE)
def check_train_probe_hidden(train_probe: Callable, seed: int) -> None:
    """Hidden check for question 2: another encoder, camera and batch size."""
    with _kit.one_thread():
        _compare_probe(train_probe, seed + 1, batch_size=8, epochs=HIDDEN_EPOCHS)
    _kit.passed(Q2 + " (hidden)", [f"batch size 8, {HIDDEN_EPOCHS} epochs, another encoder"])


# --- question 3: log loss by hand ---------------------------------------------------------------------

def log_loss_case(seed: int, n_classes: int = 3, extremes: bool = True, float32: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities: softmax of random logits, with rows giving the true class exactly 0 and 1
    (``extremes``), and rows computed in float32 (not summing to exactly 1 in float64)."""
    gen = _kit.rng(seed)
    n = int(gen.integers(8, 40))
    labels = gen.integers(0, n_classes, size=n)
    logits = gen.normal(size=(n, n_classes)) * gen.uniform(0.5, 4)
    probs = calibration.softmax(logits)
    if float32:
        probs = torch.softmax(torch.from_numpy(logits).float(), dim=1).double().numpy()
    if extremes:
        zero, one = gen.choice(n, size=2, replace=False)
        probs[zero] = 0.0
        probs[zero, (labels[zero] + 1) % n_classes] = 1.0  # a confident miss: p(true) = 0
        probs[one] = 0.0
        probs[one, labels[one]] = 1.0  # a confident hit: p(true) = 1
    return labels, probs


def reference_log_loss(labels: np.ndarray, probs: np.ndarray, eps: float) -> float:
    return calibration.log_loss(labels, probs, eps=eps)


def _sklearn_log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import log_loss as sklearn_log_loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns on rows that do not sum to exactly 1, and uses them as they are
        return float(sklearn_log_loss(labels, probs, labels=list(range(probs.shape[1]))))


def _as_number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return float(array) if array.shape == () else None


def _log_loss_hint(got: float, labels: np.ndarray, probs: np.ndarray, eps: float) -> str:
    near = lambda other: math.isclose(got, other, rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
    n, k = probs.shape
    rows = np.arange(n)
    clipped = np.clip(probs, eps, 1 - eps)
    true = clipped[rows, labels]
    if near(float(np.log(true).mean())):
        return "log loss is *minus* the mean log probability of the true class: check the sign"
    if near(float(-np.log(true).sum())):
        return "average over the rows (np.mean), do not sum"
    if near(float(-np.log(true).sum() / (n * k))):
        return ("take the mean over rows of -log p[true class]; the mean of the whole one-hot * log p matrix also "
                "divides by the number of classes")
    if near(float(-np.log(clipped).sum(axis=1).mean())) or near(float(-np.log(clipped).mean())):
        return "only the probability of each row's *true* class counts: p[np.arange(n), labels]"
    if near(float(-np.log(clipped[rows, probs.argmax(axis=1)]).mean())):
        return "use the probability of the true label (labels), not of the predicted class (argmax)"
    if near(float(-np.log10(true).mean())) or near(float(-np.log2(true).mean())):
        return "use the natural logarithm (np.log), as scikit-learn and the challenge do"
    lower_only = np.maximum(probs[rows, labels], eps)
    if near(float(-np.log(lower_only).mean())):
        return (f"clip to [eps, 1 - eps], both ends (np.clip(p, eps, 1 - eps)): with eps={eps} a probability "
                "of 1 counts as 1 - eps")
    for other in (1e-15, np.finfo(np.float64).eps, 1e-7, 1e-12):
        if other != eps and near(float(-np.log(np.clip(probs[rows, labels], other, 1 - other)).mean())):
            return f"clip with the eps argument you are given (eps={eps}), not a fixed {other:g}"
    renormalised = probs / probs.sum(axis=1, keepdims=True)
    if near(float(-np.log(np.clip(renormalised[rows, labels], eps, 1 - eps)).mean())):
        return "use each row as it is: do not renormalise it"
    return ("clip the true class's probability to [eps, 1 - eps], take -log, average over rows: "
            "-np.mean(np.log(np.clip(p[np.arange(n), labels], eps, 1 - eps)))")


def _compare_log_loss(func: Callable, labels: Any, probs: Any, eps: float | None, seed: int, case: str,
                      expected: float | None = None) -> float:
    labels_array, probs_array = np.asarray(labels), np.array(probs, dtype=np.float64)  # copies: see below
    probs = probs.copy() if isinstance(probs, np.ndarray) else [list(row) for row in probs]
    used_eps = 1e-15 if eps is None else eps
    expected = reference_log_loss(labels_array, probs_array, used_eps) if expected is None else expected
    kwargs = {} if eps is None else {"eps": eps}
    with np.errstate(all="ignore"), _kit.named_errors(Q3, "labels are class indices, probs an (n, classes) array "
                                                      "or a list of lists: np.asarray both first" + case, seed):
        outcome = _kit.call(func, labels, probs, **kwargs)
    got = _as_number(outcome.result)
    if not np.array_equal(np.asarray(outcome.args[1], dtype=np.float64), probs_array):
        _kit.fail(Q3, "the probabilities left unchanged", "they were modified in place",
                  "np.clip(p, ...) makes a new array; do not clip `probs` in place (out=probs)" + case, seed)
    if got is None:
        hint = "return one number, the mean over rows"
        if isinstance(outcome.result, (np.ndarray, list, torch.Tensor)):
            hint = "average the per-row losses into one number (np.mean)"
        _kit.fail(Q3, "one float", f"{type(outcome.result).__name__} {_kit._short(outcome.result, 80)}",
                  hint + case, seed)
    if not math.isfinite(got):
        _kit.fail(Q3, f"{expected:.6f}", got, "a probability of 0 for the true class makes log(0) = -inf: clip the "
                  "probabilities to [eps, 1 - eps] before the log (np.clip)" + case, seed)
    if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
        _kit.fail(Q3, f"{expected:.8f}", f"{got:.8f}", _log_loss_hint(got, labels_array, probs_array, used_eps) + case,
                  seed)
    return got


LOG_LOSS = _kit.Answer(
    Q3, "log_loss", lambda: _forbidden("calibration:log_loss", "sklearn:log_loss"),
    hint="compute the log loss yourself; do not call rice_lab's or scikit-learn's log_loss (the references)",
    module=__name__)


@_kit.check(LOG_LOSS)
def check_log_loss(log_loss: Callable, seed: int) -> None:
    """Visible check for question 3: generated cases with probabilities of 0 and 1, against scikit-learn."""
    labels, probs = log_loss_case(seed)
    got = _compare_log_loss(log_loss, labels, probs, 1e-15, seed, f" (case: {len(labels)} rows, eps=1e-15, one row "
                            "with p(true)=0 and one with p(true)=1)")
    machine = float(np.finfo(np.float64).eps)
    _compare_log_loss(log_loss, labels, probs, machine, seed, f" (case: the same rows, eps={machine:.3g}, "
                      "scikit-learn's clipping)", expected=_sklearn_log_loss(labels, probs))
    _compare_log_loss(log_loss, labels, probs, 0.05, seed, " (case: the same rows, eps=0.05)")
    labels32, probs32 = log_loss_case(seed + 1, extremes=False, float32=True)
    _compare_log_loss(log_loss, labels32, probs32, machine, seed, " (case: float32 probabilities, rows off 1 by "
                      "~1e-7)", expected=_sklearn_log_loss(labels32, probs32))
    floor = _compare_log_loss(log_loss, [0, 1, 2], [[0.1 / 3 + 0.9 if j == i else 0.1 / 3 for j in range(3)]
                                                    for i in range(3)], None, seed,
                              " (case: three right predictions, smoothed by 0.1; eps left at its default)")
    _kit.passed(Q3, [f"{len(labels)} rows with p(true) = 0 and 1: {got:.4f}, as rice_lab's log_loss (eps=1e-15)",
                     "eps = machine epsilon: the same as sklearn.metrics.log_loss, float32 rows included",
                     "eps = 0.05: clipped at both ends",
                     f"a perfect prediction smoothed by 0.1 over 3 classes costs {floor:.4f} (the floor of "
                     "label smoothing)"])


@_kit.check(LOG_LOSS)
def check_log_loss_hidden(log_loss: Callable, seed: int) -> None:
    """Hidden check for question 3: 2 and 5 classes, lists instead of arrays, one row."""
    gen = _kit.rng(seed)
    for k, n_classes in enumerate((2, 5)):
        labels, probs = log_loss_case(seed + 10 + k, n_classes=n_classes)
        eps = float(gen.choice([1e-15, 1e-7, 0.01]))
        _compare_log_loss(log_loss, labels, probs, eps, seed, f" (case: {n_classes} classes, eps={eps:g})")
    labels, probs = log_loss_case(seed + 20)
    _compare_log_loss(log_loss, labels.tolist(), probs.tolist(), 1e-15, seed, " (case: Python lists)")
    _compare_log_loss(log_loss, [2], [[0.2, 0.3, 0.5]], 1e-15, seed, " (case: one row)")
    _kit.passed(Q3 + " (hidden)", ["2 and 5 classes, other eps", "Python lists", "a single row"])


# --- question 4: temperature scaling ------------------------------------------------------------------

def temperature_case(seed: int, temperature: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, labels and a validation mask: validation rows are mis-calibrated by a random factor,
    training rows (which the model learned) confidently right, so fitting on them gives another T."""
    gen = _kit.rng(seed)
    n = int(gen.integers(150, 300))
    is_valid = gen.random(n) < gen.uniform(0.3, 0.5)
    scale = float(gen.uniform(0.8, 2.5))
    true_logits = gen.normal(size=(n, 3)) * scale
    labels = np.array([gen.choice(3, p=p) for p in calibration.softmax(true_logits)])
    factor = temperature if temperature is not None else float(np.exp(gen.uniform(np.log(0.4), np.log(2.5))))
    logits = true_logits * factor
    learned = true_logits.copy()
    learned[np.arange(n), labels] += 4.0  # training plants: learned, confidently right
    logits[~is_valid] = learned[~is_valid] * factor
    return logits, labels, is_valid


def reference_temperature(logits: np.ndarray, labels: np.ndarray, is_valid: np.ndarray) -> float:
    return calibration.fit_temperature(labels[is_valid], logits[is_valid])


def _valid_loss(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return calibration.log_loss(labels, calibration.softmax(logits, temperature))


def _temperature_hint(got: float, logits: np.ndarray, labels: np.ndarray, is_valid: np.ndarray, best: float) -> str:
    near = lambda other: other > 0 and abs(got / other - 1) < 0.01  # noqa: E731
    if near(calibration.fit_temperature(labels, logits)) or near(calibration.fit_temperature(labels[~is_valid],
                                                                                             logits[~is_valid])):
        return ("fit T on the validation rows only (logits[is_valid]): the training plants were learned, their "
                "logits are confidently right and ask for another temperature")
    if near(1 / best):
        return "divide the logits by T (softmax(logits / T)); multiplying gives 1 / T"
    if near(math.log(best)):
        return "return T itself, not log T (optimise over log T if you like, then take exp)"
    probs = calibration.softmax(logits)
    if near(calibration.fit_temperature(labels[is_valid], probs[is_valid])):
        return "scale the logits, not the probabilities: softmax(logits / T)"
    valid, valid_labels = logits[is_valid], labels[is_valid]

    def dim0(t: float) -> float:
        p = np.exp(valid / t - (valid / t).max(axis=0))
        p = p / p.sum(axis=0, keepdims=True)
        return float(-np.log(np.clip(p[np.arange(len(p)), valid_labels], 1e-15, 1)).mean())
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 400))
    if near(float(grid[np.argmin([dim0(t) for t in grid])])):
        return "the softmax runs over the classes of each row (axis=1), not over the rows (axis=0)"
    if abs(got - 1) < 1e-9:
        return "search for the T that minimises the validation log loss; T = 1 is where you start"
    if abs(got * 20 - round(got * 20)) < 1e-9:
        return (f"your T ({got:g}) looks like a point of a coarse grid: find the best T to within 1 % (a bounded "
                "minimiser on log T, or a grid finer than 1 %)")
    return (f"minimise the validation log loss of softmax(logits[is_valid] / T) over T in [0.05, 20] to within 1 % "
            f"(your T {got:.4f}, best {best:.4f}): a bounded minimiser on log T, or a grid finer than 1 %")


def _compare_temperature(func: Callable, logits: Any, labels: Any, is_valid: Any, seed: int, case: str) -> float:
    logits_a, labels_a, mask = np.array(logits, dtype=np.float64), np.asarray(labels), np.asarray(is_valid, bool)
    logits = logits.copy() if isinstance(logits, np.ndarray) else [list(row) for row in logits]
    best = reference_temperature(logits_a, labels_a, mask)
    with _kit.named_errors(Q4, "logits, labels and is_valid may be arrays or lists: np.asarray them first "
                           "(is_valid as bool)" + case, seed):
        outcome = _kit.call(func, logits, labels, is_valid)
    if not np.array_equal(np.asarray(outcome.args[0], dtype=np.float64), logits_a):
        _kit.fail(Q4, "the logits left unchanged", "they were modified in place",
                  "compute logits / T into a new array; do not divide `logits` in place" + case, seed)
    got = _as_number(outcome.result)
    if got is None:
        _kit.fail(Q4, "one float, the temperature", type(outcome.result).__name__, "return T as a float" + case, seed)
    if math.isfinite(got) and abs(math.exp(got) / best - 1) < 0.02:
        _kit.fail(Q4, f"T = {best:.4f}", f"{got:.4f} = log({math.exp(got):.4f})",
                  "return T itself, not log T (optimise over log T if you like, then take math.exp)" + case, seed)
    if not math.isfinite(got) or got <= 0:
        _kit.fail(Q4, f"T > 0 (about {best:.4f})", got, "search T > 0 only, e.g. over log T (T = exp(log_t)) or a "
                  "bounded search in [0.05, 20]; a negative T flips every prediction" + case, seed)
    valid, valid_labels = logits_a[mask], labels_a[mask]
    if abs(got / best - 1) > 0.02:
        _kit.fail(Q4, f"T = {best:.4f} (within 2 %)", f"T = {got:.4f}",
                  _temperature_hint(got, logits_a, labels_a, mask, best) + case, seed)
    if _valid_loss(valid, valid_labels, got) > _valid_loss(valid, valid_labels, 1.0) + 1e-12:
        _kit.fail(Q4, "a validation log loss no worse than with T = 1", "a worse one",
                  "minimise the validation log loss over T" + case, seed)
    return got


FIT_TEMPERATURE = _kit.Answer(
    Q4, "fit_temperature", lambda: _forbidden("calibration:fit_temperature"),
    hint="fit the temperature yourself; do not call rice_lab's fit_temperature (the reference answer)",
    module=__name__)


@_kit.check(FIT_TEMPERATURE)
def check_fit_temperature(fit_temperature: Callable, seed: int) -> None:
    """Visible check for question 4: logits mis-calibrated by a random factor, training rows over-confident."""
    logits, labels, is_valid = temperature_case(seed)
    case = f" (case: {len(labels)} rows, {int(is_valid.sum())} of them validation)"
    got = _compare_temperature(fit_temperature, logits, labels, is_valid, seed, case)
    valid, valid_labels = logits[is_valid], labels[is_valid]
    before, after = _valid_loss(valid, valid_labels, 1.0), _valid_loss(valid, valid_labels, got)
    _kit.passed(Q4, [f"T = {got:.4f}, as rice_lab's fit_temperature on the validation rows (within 2 %)",
                     f"validation log loss {before:.4f} at T = 1 -> {after:.4f} at your T"])


@_kit.check(FIT_TEMPERATURE)
def check_fit_temperature_hidden(fit_temperature: Callable, seed: int) -> None:
    """Hidden check for question 4: under- and over-confident logits, float32 tensors, lists."""
    for k, factor in enumerate((0.5, 2.0)):
        logits, labels, is_valid = temperature_case(seed + 1 + k, temperature=factor)
        _compare_temperature(fit_temperature, logits, labels, is_valid, seed + 1 + k, f" (case: logits x {factor})")
    logits, labels, is_valid = temperature_case(seed + 3)
    _compare_temperature(fit_temperature, logits.tolist(), labels.tolist(), is_valid.tolist(), seed + 3,
                         " (case: Python lists)")
    _kit.passed(Q4 + " (hidden)", ["under- and over-confident logits", "Python lists"])


# --- question 5: the submission file ------------------------------------------------------------------

def submission_case(seed: int, folder: Path, alphabetical: bool = False) -> tuple[pd.DataFrame, Path, Path]:
    """Per-photo probabilities (both cameras of the sample's plants and of a few others, shuffled, rounded
    to 4 decimals so rows are off 1 by up to 2e-4), a sample submission (rows shuffled, class columns in a
    random order) written to ``folder``, and where the answer goes."""
    gen = _kit.rng(seed)
    n = int(gen.integers(6, 20))
    ids = _random_ids(gen, n + 3)
    sample_ids = [p + ".jpg" for p in ids[:n]]
    gen.shuffle(sample_ids)
    classes = list(CLASSES) if alphabetical else list(gen.permutation(CLASSES))
    while not alphabetical and classes == sorted(classes):
        classes = list(gen.permutation(CLASSES))
    sample = pd.DataFrame({"Image_id": sample_ids, **{c: 1 / 3 for c in classes}})
    sample_path = folder / f"SampleSubmission_{seed}.csv"
    sample.to_csv(sample_path, index=False)
    rows = []
    for plant in ids:
        for suffix in ("", "_rgn"):
            p = gen.dirichlet(np.ones(3) * 0.7)
            rows.append({"Image_id": f"{plant}{suffix}.jpg", **dict(zip(CLASSES, np.round(p, 4)))})
    photo_probs = pd.DataFrame(rows).iloc[gen.permutation(len(rows))]
    photo_probs = photo_probs[["Image_id"] + list(gen.permutation(CLASSES))].reset_index(drop=True)
    return photo_probs, sample_path, folder / f"submission_{seed}.csv"


def expected_submission(photo_probs: pd.DataFrame, sample_path: Path) -> pd.DataFrame:
    """Mean of the two cameras' probabilities per plant, renormalised, in the sample's shape."""
    sample = pd.read_csv(sample_path)
    classes = [c for c in sample.columns if c != "Image_id"]
    plant = photo_probs.assign(plant_id=[plant_id_of(i)[0] for i in photo_probs["Image_id"]])
    fused = plant.groupby("plant_id")[classes].mean()
    values = fused.loc[[plant_id_of(i)[0] for i in sample["Image_id"]]].to_numpy(dtype=np.float64)
    frame = pd.DataFrame(values / values.sum(axis=1, keepdims=True), columns=classes)
    frame.insert(0, "Image_id", sample["Image_id"].to_numpy())
    return frame


def _submission_hint(problems: list[str], frame: pd.DataFrame | None, sample: pd.DataFrame) -> str:
    text = " ".join(problems)
    if frame is not None and "Unnamed: 0" in frame.columns:
        return "write without the index: frame.to_csv(out, index=False)"
    if "columns are" in text:
        if frame is not None and sorted(map(str, frame.columns)) == sorted(sample.columns):
            return ("put the columns in the sample's order: ['Image_id'] + the class columns as "
                    f"SampleSubmission.csv lists them ({', '.join(sample.columns[1:])}), not alphabetically "
                    "nor as the predictions have them")
        return f"the columns must be exactly {', '.join(sample.columns)} (read them from the sample)"
    if "RG-NIR photo" in text:
        return ("one row per plant, named by its RGB photo: average the plant's two photos (strip `_rgn` with "
                "plant_id_of), then use the sample's Image_id")
    if "not in the sample" in text:
        return "keep only the sample's plants: the predictions hold other plants too"
    if "missing" in text and "plant(s) of the sample" in text:
        return "write one row for every Image_id of the sample"
    if "sum to" in text:
        return ("divide each row by its sum after averaging: the predictions were rounded, so their rows do not sum "
                "to exactly 1")
    if "order" in text:
        return "write the rows in the sample's order (reindex by the sample's Image_id)"
    if "duplicate" in text:
        return "one row per plant: average its two photos, do not list both"
    return "; ".join(problems[:2])


def _compare_submission(func: Callable, photo_probs: pd.DataFrame, sample_path: Path, out: Path, seed: int,
                        case: str) -> pd.DataFrame:
    sample = pd.read_csv(sample_path)
    if out.exists():
        out.unlink()
    with _kit.named_errors(Q5, "read the sample with pd.read_csv(sample_path); photo_probs has an Image_id "
                           "column and one column per class" + case, seed):
        outcome = _kit.call(func, photo_probs.copy(), sample_path, out)
    if not outcome.args[0].equals(photo_probs):
        _kit.fail(Q5, "the predictions table unchanged", "it was modified",
                  "work on a copy (photo_probs.copy()) before adding columns" + case, seed)
    if not out.is_file():
        _kit.fail(Q5, f"a CSV file written to {out.name}", "no file",
                  "write the table to the `out` path you are given: frame.to_csv(out, index=False)" + case, seed)
    problems = submission_module.check_submission(out, sample_path)
    try:
        frame = pd.read_csv(out)
    except Exception:  # whatever the file holds, check_submission has named it
        frame = None
    if problems:
        shown = [p.replace(str(out), out.name) for p in problems[:3]]
        _kit.fail(Q5, "a file check_submission accepts", shown, _submission_hint(problems, frame, sample) + case, seed)
    expected = expected_submission(photo_probs, sample_path)
    values = frame[expected.columns[1:]].to_numpy(dtype=np.float64)
    want = expected[expected.columns[1:]].to_numpy()
    if not np.allclose(values, want, atol=1e-6):
        row = int(np.abs(values - want).max(axis=1).argmax())
        plant = plant_id_of(expected["Image_id"].iloc[row])[0]
        given = photo_probs[[plant_id_of(i)[0] == plant for i in photo_probs["Image_id"]]]
        _kit.fail(Q5, f"{expected['Image_id'].iloc[row]}: {np.round(want[row], 4).tolist()}",
                  np.round(values[row], 4).tolist(), _values_hint(values, want, photo_probs, sample_path, given) + case,
                  seed)
    return frame


def _values_hint(values: np.ndarray, want: np.ndarray, photo_probs: pd.DataFrame, sample_path: Path,
                 given: pd.DataFrame) -> str:
    sample = pd.read_csv(sample_path)
    classes = list(sample.columns[1:])
    ids = [plant_id_of(i)[0] for i in sample["Image_id"]]
    by_photo = photo_probs.set_index("Image_id")
    for camera, suffix in (("RGB", ""), ("RG-NIR", "_rgn")):
        single = by_photo.loc[[p + suffix + ".jpg" for p in ids], classes].to_numpy(dtype=np.float64)
        single = single / single.sum(axis=1, keepdims=True)
        if np.allclose(values, single, atol=1e-3):
            return (f"those are the {camera} photo's probabilities alone: average the plant's two photos "
                    "(RGB and RG-NIR) for each class")
    if np.allclose(values, want[:, ::-1], atol=1e-6) or np.allclose(np.sort(values, axis=1), np.sort(want, axis=1),
                                                                     atol=1e-6):
        return "match the class columns by name: the predictions list the classes in another order than the sample"
    return ("for each plant: the mean of its two photos' probabilities, class by class, each row then divided by "
            f"its sum (the photos of this plant: {given.to_dict('records')})")


MAKE_SUBMISSION = _kit.Answer(
    Q5, "make_submission", lambda: _forbidden("submission:write_submission"),
    hint="write the file yourself; do not call rice_lab's write_submission (the reference answer)",
    module=__name__)


@_kit.check(MAKE_SUBMISSION)
def check_make_submission(make_submission: Callable, seed: int) -> None:
    """Visible check for question 5: a sample with its class columns out of alphabetical order."""
    with tempfile.TemporaryDirectory() as folder:
        photo_probs, sample_path, out = submission_case(seed, Path(folder))
        n = len(pd.read_csv(sample_path))
        frame = _compare_submission(make_submission, photo_probs, sample_path, out, seed,
                                    f" (case: {n} test plants, sample columns "
                                    f"{list(pd.read_csv(sample_path).columns)})")
    _kit.passed(Q5, [f"check_submission accepts it: {n} rows named by RGB photos, in the sample's order, columns "
                     f"{', '.join(frame.columns)} as the sample has them, rows summing to 1",
                     "each plant's row is the mean of its two photos, renormalised"])


@_kit.check(MAKE_SUBMISSION)
def check_make_submission_hidden(make_submission: Callable, seed: int) -> None:
    """Hidden check for question 5: the challenge's own column order, another case."""
    with tempfile.TemporaryDirectory() as folder:
        for k, alphabetical in enumerate((True, False)):
            photo_probs, sample_path, out = submission_case(seed + 1 + k, Path(folder), alphabetical=alphabetical)
            _compare_submission(make_submission, photo_probs, sample_path, out, seed + 1 + k,
                                f" (case: seed {seed + 1 + k})")
    _kit.passed(Q5 + " (hidden)", ["the challenge's column order", "another sample"])
