"""How good is an encoder? kNN and linear probes on frozen features of labelled plants."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from rice_lab.data.views import PlantImages, load_size, normalize
from rice_lab.data.zindi import CLASSES, split_plants
from rice_lab.errors import ConfigError


@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor, mean, std, size: int, batch_size: int = 128) -> torch.Tensor:
    """Features (N, F) of uint8 images (N, 3, H, W), each resized to ``size`` px high, normalised."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float() / 255
        if x.shape[-2] != size:
            x = F.interpolate(x, size=(size, int(round(size * x.shape[-1] / x.shape[-2]))),
                              mode="bilinear", antialias=True, align_corners=False)
        out.append(encoder(normalize(x, mean, std)).float().cpu())
    return torch.cat(out)


def labelled_split(plants: pd.DataFrame, valid_pct: float = 0.3, seed: int = 0,
                   target: str = "label") -> pd.DataFrame:
    """Plants with a ``target`` value and an ``is_valid`` column (kept if present, else a seeded split)."""
    if target not in plants:
        raise ConfigError(f"probe target {target!r} is not a column of the plants table "
                          f"(columns: {', '.join(map(str, plants.columns))})")
    labelled = plants[plants[target].notna()].copy()
    if labelled.empty:
        raise ConfigError(f"probe target {target!r}: no plant has a value to probe for")
    if "is_valid" not in labelled:  # stratified on the target: every class on both sides
        strata = labelled.assign(split="train", label=labelled[target])
        labelled["is_valid"] = split_plants(strata, valid_pct, seed)["is_valid"]
    return labelled.reset_index(drop=True)


def target_codes(values: pd.Series, target: str = "label") -> np.ndarray:
    """Integer codes of a probe target; the three diseases keep their usual order, others sort."""
    classes = list(CLASSES) if target == "label" else sorted(values.unique().tolist())
    return np.array([classes.index(value) for value in values])


@lru_cache(maxsize=4)
def _photos(paths: tuple[tuple[str, str], ...], height: int) -> PlantImages:
    """Decoded photos, kept for the next probe on the same plants (probing several encoders)."""
    table = pd.DataFrame(list(paths), columns=["rgb", "rgnir"]).assign(plant_id=range(len(paths)))
    return PlantImages(table, *load_size(height))


def probe_size(encoder: nn.Module, size: int | None = None) -> int:
    """``size``, else the photo height the encoder was trained on (lesions vanish in smaller photos)."""
    return size or getattr(encoder, "photo_size", None) or 64


def plant_features(encoder: nn.Module, plants: pd.DataFrame, camera: str = "rgb", size: int | None = None,
                   stats: tuple | None = None, target: str = "label") -> tuple[torch.Tensor, np.ndarray]:
    """(features, ``target`` codes) for every plant's ``camera`` photo, the whole photo ``size`` px high."""
    size = probe_size(encoder, size)
    images = _photos(tuple(zip(plants["rgb"], plants["rgnir"])), size)
    photos = images.rgb if camera == "rgb" else images.rgnir
    if stats is None:
        normalization = getattr(encoder, "normalization", None)
        stats = normalization[camera] if normalization else images.stats()[camera]
    labels = target_codes(plants[target], target)
    return embed(encoder, photos, stats[0], stats[1], size), labels


def knn_predict(train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor, k: int = 10) -> np.ndarray:
    """Class codes for ``test`` rows by a cosine kNN vote over the ``train`` rows' labels."""
    train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    top = (test @ train.t()).topk(min(k, len(train)), dim=1)
    votes = torch.zeros(len(test), int(train_labels.max()) + 1)
    # similarity-weighted vote (as in the DINO / InstDisc kNN monitors), ties broken by weight
    votes.scatter_add_(1, torch.from_numpy(train_labels)[top.indices], (top.values / 0.07).exp())
    return votes.argmax(1).numpy()


def linear_predict(train: torch.Tensor, train_labels: np.ndarray, test: torch.Tensor) -> np.ndarray:
    """Class codes for ``test`` rows by a logistic regression fitted on standardised ``train`` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    return probe.fit(train.numpy(), train_labels).predict(test.numpy())


def knn_accuracy(encoder: nn.Module, plants: pd.DataFrame, camera: str = "rgb", k: int = 10,
                 size: int | None = None, valid_pct: float = 0.3, seed: int = 0, target: str = "label") -> float:
    """Accuracy on held-out plants of a cosine kNN vote over the other plants' features.

    ``target`` is the column to predict: the disease label by default, or any other column (a
    nuisance such as the synthetic data's ``background``) to ask what else the features carry.
    """
    labelled = labelled_split(plants, valid_pct, seed, target)
    features, labels = plant_features(encoder, labelled, camera, size, target=target)
    valid = labelled["is_valid"].to_numpy(dtype=bool, copy=True)
    return float((knn_predict(features[~valid], labels[~valid], features[valid], k) == labels[valid]).mean())


def linear_probe_accuracy(encoder: nn.Module, plants: pd.DataFrame, camera: str = "rgb", size: int | None = None,
                          valid_pct: float = 0.3, seed: int = 0, target: str = "label") -> float:
    """Accuracy on held-out plants of a logistic regression on standardised frozen features (of ``target``)."""
    labelled = labelled_split(plants, valid_pct, seed, target)
    features, labels = plant_features(encoder, labelled, camera, size, target=target)
    valid = labelled["is_valid"].to_numpy(dtype=bool, copy=True)
    return float((linear_predict(features[~valid], labels[~valid], features[valid]) == labels[valid]).mean())


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
                     cameras: tuple[str, ...] = ("rgb", "rgnir"), folds: int = 5, seed: int = 0,
                     k: int = 10, size: int | None = None, target: str = "label") -> pd.DataFrame:
    """Cross-validated kNN and linear-probe accuracy of each encoder, with its gain over ``baseline``.

    Every labelled plant is predicted once per (encoder, camera, probe), always on the same folds,
    so two encoders are compared plant by plant: ``gain_se`` is the standard error of the mean
    per-plant difference, which is what a gain should be read against.
    """
    if baseline not in encoders:
        raise ConfigError(f"baseline {baseline!r} is not one of the encoders ({', '.join(encoders)})")
    labelled = labelled_split(plants, target=target)
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
                     "gain": diff.mean(), "gain_se": diff.std(ddof=1) / np.sqrt(n)})
    return pd.DataFrame(rows)
