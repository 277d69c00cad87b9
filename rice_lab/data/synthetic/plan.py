"""The plan of a dataset: every plant's id, true and written label, split and shortcut flag, decided once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rice_lab.data.synthetic.artefacts import SHORTCUT_RATES
from rice_lab.data.synthetic.config import SynthConfig
from rice_lab.data.zindi import CLASSES


@dataclass(frozen=True)
class PlantTask:
    """Everything a worker needs to draw and write one plant."""

    index: int
    plant_id: str
    true_label: str
    label: str          # as written to Train.csv (may be flipped) or the true label for test plants
    split: str
    stamp: bool


def _global_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, stream)))


def plant_ids(seed: int, n: int) -> list[str]:
    """``n`` distinct Zindi-looking ids (``id_`` + 10 lowercase alphanumerics) derived from ``seed``."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    rng = _global_rng(seed, 0)
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for row in rng.integers(0, len(alphabet), size=(n - len(ids), 10)):
            plant_id = "id_" + "".join(alphabet[row])
            if plant_id not in seen:
                seen.add(plant_id)
                ids.append(plant_id)
    return ids


def _class_counts(n: int, weights: tuple[float, ...]) -> list[int]:
    """Split ``n`` into integer counts proportional to ``weights`` (largest remainder)."""
    share = np.asarray(weights) / sum(weights) * n
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def plan_plants(config: SynthConfig) -> list[PlantTask]:
    """Decide every plant's id, true and written label, split and shortcut flag."""
    rng = _global_rng(config.seed, 1)
    labels = np.repeat(np.array(CLASSES), _class_counts(config.plants, config.class_balance))
    labels = labels[rng.permutation(config.plants)]
    split = np.full(config.plants, "train", dtype=object)
    members = [np.flatnonzero(labels == label) for label in CLASSES]
    n_test = round(config.plants * config.test_fraction)
    # Stratified: each class gives (as nearly as integers allow) the same fraction to the test set.
    for ids, count in zip(members, _class_counts(n_test, tuple(len(m) for m in members))):
        split[rng.choice(ids, size=count, replace=False)] = "test"
    written = labels.astype(object).copy()
    train = np.flatnonzero(split == "train")
    noise_rng = _global_rng(config.seed, 2)
    flipped = noise_rng.choice(train, size=int(round(len(train) * config.label_noise)), replace=False)
    for i in flipped:
        others = [c for c in CLASSES if c != labels[i]]
        written[i] = others[noise_rng.integers(len(others))]
    stamp_rng = _global_rng(config.seed, 3)
    draws = stamp_rng.random(config.plants)
    stamps = [config.shortcut == "date-stamp" and split[i] == "train"
              and draws[i] < SHORTCUT_RATES[labels[i]] for i in range(config.plants)]
    ids = plant_ids(config.seed, config.plants)
    return [PlantTask(i, ids[i], str(labels[i]), str(written[i]), str(split[i]), bool(stamps[i]))
            for i in range(config.plants)]
