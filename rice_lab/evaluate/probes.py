"""How good is an encoder? kNN and linear probes on frozen features of labelled plants.

Probes fit on labels, so they choose their plants as carefully as training does: by default the
training split only. Probing the test split is an explicit choice (``split="test"`` with
``target="test_label"``, the labels :func:`rice_lab.data.read_zindi` adds only when asked), and every
result says which plants it used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from rice_lab.data.zindi import CAMERAS, CLASSES, split_plants
from rice_lab.errors import ConfigError
from rice_lab.evaluate.encode import encode, plant_photos

DISEASE_TARGETS = ("label", "test_label")  # columns holding a disease class: coded in CLASSES order
SPLITS = ("train", "test", None)


@dataclass(frozen=True)
class ProbeResult:
    """A probe's held-out accuracy and the plants it was computed on."""

    accuracy: float
    split: str | None      # which split's plants ("train", "test"; None: every plant with a target)
    target: str            # the column predicted
    fitted: int            # plants the probe was fitted on
    scored: int            # held-out plants it was scored on
    plant_ids: tuple[str, ...] = ()  # every plant used, fitted or scored


def probe_plants(plants: pd.DataFrame, split: str | None = "train", target: str = "label") -> pd.DataFrame:
    """The plants a probe may use: those of ``split`` (all when None) that have a ``target`` value."""
    if split not in SPLITS:
        raise ConfigError(f"probe split={split!r}: choose 'train' (the default), 'test' or None (every plant)")
    if target not in plants:
        raise ConfigError(f"probe target {target!r} is not a column of the plants table "
                          f"(columns: {', '.join(map(str, plants.columns))})")
    chosen = plants if split is None or "split" not in plants else plants[plants["split"] == split]
    chosen = chosen[chosen[target].notna()]
    if chosen.empty:
        hint = (" (test plants have no 'label': read their labels with read_zindi(root, test_labels=True) "
                "and probe target='test_label')" if split == "test" and target == "label" else "")
        raise ConfigError(f"probe target {target!r}: no {split or 'any'} plant has a value to probe for{hint}")
    return chosen


def labelled_split(plants: pd.DataFrame, valid_pct: float = 0.3, seed: int = 0, target: str = "label",
                   split: str | None = "train") -> pd.DataFrame:
    """:func:`probe_plants` with an ``is_valid`` column (kept if present, else a seeded split)."""
    labelled = probe_plants(plants, split, target).copy()
    if "is_valid" not in labelled:  # stratified on the target: every class on both sides
        strata = labelled.assign(split="train", label=labelled[target])
        labelled["is_valid"] = split_plants(strata, valid_pct, seed)["is_valid"]
    return labelled.reset_index(drop=True)


def target_codes(values: pd.Series, target: str = "label") -> np.ndarray:
    """Integer codes of a probe target; the three diseases keep their usual order, others sort."""
    classes = list(CLASSES) if target in DISEASE_TARGETS else sorted(values.unique().tolist())
    return np.array([classes.index(value) for value in values])


def probe_size(encoder: nn.Module, size: int | None = None) -> int:
    """``size``, else the photo height the encoder was trained on (lesions vanish in smaller photos)."""
    return size or getattr(encoder, "photo_height", None) or 64


def plant_features(encoder: nn.Module, plants: pd.DataFrame, camera: str = "rgb", size: int | None = None,
                   stats: tuple | None = None, target: str = "label") -> tuple[torch.Tensor, np.ndarray]:
    """(features, ``target`` codes) for every plant's ``camera`` photo, the whole photo ``size`` px high."""
    size = probe_size(encoder, size)
    photos = plant_photos(plants, camera, size)
    return encode(encoder, photos, camera, stats=stats, height=size), target_codes(plants[target], target)


def knn_predict(train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor, k: int = 10) -> np.ndarray:
    """Class codes for ``test`` rows by a cosine kNN vote over the ``train`` rows' labels."""
    train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    top = (test @ train.t()).topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(test), int(train_labels.max()) + 1)
    # similarity-weighted vote (as in the DINO / InstDisc kNN monitors), ties broken by weight
    votes.scatter_add_(1, torch.from_numpy(train_labels)[top.indices], (top.values / 0.07).exp())
    return votes.argmax(1).numpy()


def _linear_probe(train: torch.Tensor, train_labels: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    return probe.fit(train.numpy(), train_labels)


def linear_predict(train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor) -> np.ndarray:
    """Class codes for ``test`` rows by a logistic regression fitted on standardised ``train`` rows."""
    return _linear_probe(train, train_labels).predict(test.numpy())


def linear_probabilities(train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor,
                         n_classes: int | None = None) -> np.ndarray:
    """Class probabilities (rows, classes) for ``test`` rows from the same logistic regression as
    :func:`linear_predict`; a class absent from ``train_labels`` gets probability 0."""
    probe = _linear_probe(train, train_labels)
    found = probe.predict_proba(test.numpy())
    out = np.zeros((len(found), n_classes or int(train_labels.max()) + 1))
    out[:, probe.classes_] = found
    return out


def _held_out_probe(predict, encoder: nn.Module, plants: pd.DataFrame, camera: str, size: int | None,
                    valid_pct: float, seed: int, target: str, split: str | None) -> ProbeResult:
    labelled = labelled_split(plants, valid_pct, seed, target, split)
    features, labels = plant_features(encoder, labelled, camera, size, target=target)
    valid = labelled["is_valid"].to_numpy(dtype=bool, copy=True)
    correct = predict(features[~valid], labels[~valid], features[valid]) == labels[valid]
    return ProbeResult(float(correct.mean()), split, target, int((~valid).sum()), int(valid.sum()),
                       tuple(labelled["plant_id"]))


def knn_accuracy(encoder: nn.Module, plants: pd.DataFrame, camera: str = "rgb", k: int = 10,
                 size: int | None = None, valid_pct: float = 0.3, seed: int = 0, target: str = "label",
                 split: str | None = "train") -> ProbeResult:
    """Accuracy on held-out plants of a cosine kNN vote over the other plants' features.

    ``target`` is the column to predict: the disease label by default, or any other column (a
    nuisance such as the synthetic data's ``background``) to ask what else the features carry.
    Only ``split``'s plants take part (the training split by default).
    """
    return _held_out_probe(lambda *xs: knn_predict(*xs, k=k), encoder, plants, camera, size, valid_pct, seed,
                           target, split)


def linear_probe_accuracy(encoder: nn.Module, plants: pd.DataFrame, camera: str = "rgb", size: int | None = None,
                          valid_pct: float = 0.3, seed: int = 0, target: str = "label",
                          split: str | None = "train") -> ProbeResult:
    """Accuracy on held-out plants of a logistic regression on standardised frozen features (of ``target``)."""
    return _held_out_probe(linear_predict, encoder, plants, camera, size, valid_pct, seed, target, split)


def cross_val_correct(features: torch.Tensor, labels: np.ndarray, probe: str = "knn", folds: int = 5,
                      seed: int = 0, k: int = 10) -> np.ndarray:
    """Whether each plant's ``probe`` ("knn" or "linear") prediction is right, every plant held out once.

    Stratified ``folds``-fold cross-validation: the probe is fitted on the other folds each time.
    """
    from sklearn.model_selection import StratifiedKFold

    if probe not in ("knn", "linear"):
        raise ConfigError(f"probe={probe!r}: choose knn or linear")
    correct = np.zeros(len(labels), dtype=bool)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels):
        train_x, test_x = features[torch.from_numpy(train)], features[torch.from_numpy(test)]
        predicted = (knn_predict(train_x, labels[train], test_x, k) if probe == "knn"
                     else linear_predict(train_x, labels[train], test_x))
        correct[test] = predicted == labels[test]
    return correct


def compare_encoders(encoders: dict[str, nn.Module], plants: pd.DataFrame, baseline: str,
                     cameras: tuple[str, ...] = CAMERAS, folds: int = 5, seed: int = 0,
                     k: int = 10, size: int | None = None, target: str = "label",
                     split: str | None = "train") -> pd.DataFrame:
    """Cross-validated kNN and linear-probe accuracy of each encoder, with its gain over ``baseline``.

    Every plant of ``split`` (the training split by default) with a ``target`` value is predicted once
    per (encoder, camera, probe), always on the same folds, so two encoders are compared plant by
    plant: ``gain_se`` is the standard error of the mean per-plant difference, which is what a gain
    should be read against. The columns ``split`` and ``plants`` say which plants were used, and
    ``table.attrs["plant_ids"]`` lists them.
    """
    if baseline not in encoders:
        raise ConfigError(f"baseline {baseline!r} is not one of the encoders ({', '.join(encoders)})")
    labelled = probe_plants(plants, split, target).reset_index(drop=True)
    rows, correct = [], {}
    for name, encoder in encoders.items():
        for camera in cameras:
            features, labels = plant_features(encoder, labelled, camera, size, target=target)
            for probe in ("knn", "linear"):
                correct[name, camera, probe] = cross_val_correct(features, labels, probe, folds, seed, k)
    n = len(labelled)
    for (name, camera, probe), right in correct.items():
        diff = right.astype(float) - correct[baseline, camera, probe]
        rows.append({"encoder": name, "camera": camera, "probe": probe, "accuracy": right.mean(),
                     "se": np.sqrt(right.mean() * (1 - right.mean()) / n),
                     "gain": diff.mean(), "gain_se": diff.std(ddof=1) / np.sqrt(n),
                     "split": split or "all", "plants": n})
    table = pd.DataFrame(rows)
    table.attrs["plant_ids"] = list(labelled["plant_id"])
    return table
