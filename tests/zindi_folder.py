"""Build small Zindi-layout folders by hand, so each bad-input case is one edit away from a good one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

LABELS = ("blast", "brown", "healthy")


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 32), **save) -> None:
    """A random-noise RGB JPEG (width, height) = size."""
    array = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path, **save)


def make_zindi(root: Path, per_class: int = 5, test_plants: int = 3, seed: int = 0) -> Path:
    """A valid folder: ``per_class`` training plants per label and some test plants, both cameras."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    train, test = [], []
    for k, label in enumerate(LABELS):
        for i in range(per_class):
            plant = f"id_{label[:2]}{k}{i:04d}"
            train += [(f"{plant}.jpg", label), (f"{plant}_rgn.jpg", label)]
    for i in range(test_plants):
        plant = f"id_te{i:05d}"
        test += [f"{plant}.jpg", f"{plant}_rgn.jpg"]
    for name in [n for n, _ in train] + test:
        write_image(images / name, rng)
    pd.DataFrame(train, columns=["Image_id", "Label"]).to_csv(root / "Train.csv", index=False)
    pd.DataFrame({"Image_id": test}).to_csv(root / "Test.csv", index=False)
    return root


def edit_csv(path: Path, edit) -> None:
    """Apply ``edit(frame) -> frame`` to a csv file in place."""
    frame = pd.read_csv(path, dtype=str)
    edit(frame).to_csv(path, index=False)


def write_plants(root: Path, plants: list[tuple[str, str, str, np.ndarray, np.ndarray]]) -> Path:
    """A folder from arrays: (plant_id, split, label, rgb, rgnir) per plant, saved losslessly (PNG).

    Test plants' labels go to ``TestLabels.csv``, as the synthetic data writes them.
    """
    images = root / "images"
    images.mkdir(parents=True)
    train, test, test_labels = [], [], []
    for plant_id, split, label, rgb, rgnir in plants:
        Image.fromarray(rgb).save(images / f"{plant_id}.png")
        Image.fromarray(rgnir).save(images / f"{plant_id}_rgn.png")
        names = [f"{plant_id}.png", f"{plant_id}_rgn.png"]
        if split == "train":
            train += [(name, label) for name in names]
        else:
            test += names
            test_labels += [(name, label) for name in names]
    pd.DataFrame(train, columns=["Image_id", "Label"]).to_csv(root / "Train.csv", index=False)
    pd.DataFrame({"Image_id": test}).to_csv(root / "Test.csv", index=False)
    pd.DataFrame(test_labels, columns=["Image_id", "Label"]).to_csv(root / "TestLabels.csv", index=False)
    return root
