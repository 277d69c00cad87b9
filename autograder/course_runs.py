"""The two tiny classifiers assignment 05 explains, trained on first use and kept beside the course data.

:func:`shortcut_course` makes the date-stamp data (``rice_lab.explain.shortcut.make_shortcut_data``) and
its clean twin (the same plants, photos and split without the stamp), then fine-tunes one classifier on
each with one recipe: the *shortcut* model, which saw the orange date on most blast training photos, and
the *clean* model, the control that never saw one. The recipe lets a tiny network pick up what the photos
hold in seconds: a random start, the photos' native 51 px height, batches of 16, no MixUp, rotation, zoom
or colour jitter, one thread (two threads on a busy 2-core machine are several times slower). As with the
course data, a missing piece is made under a lock in the shared cache; graders make it before contained
kernels run (``autograder.course.COURSE_ARTEFACTS``), and a kernel that finds the cache read-only and
incomplete makes a private copy.
"""

from __future__ import annotations

import errno
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from autograder.datasets import _exclusive, cache_dir, course_dataset

PLANTS, WIDTH, SEED = 80, 64, 5
# Half the labelled plants validate: 27 train (as in the library's tests), 29 validate, 24 test. Seed 5 stamps
# 16 of the 19 labelled blast plants and no other plant: a clean shortcut for 30 epochs to pick up.
RECIPE = dict(epochs=30, batch_size=16, photo_height=51, valid_pct=0.5, mixup=0.0, max_rotation=0.0, zoom=0.0,
              jitter=0.0, progress=False, threads=1)


@dataclass(frozen=True)
class ShortcutCourse:
    """Where the capstone's data and classifiers live: ``data`` (date-stamp) and ``clean_data`` (its
    twin), the fine-tuning runs ``shortcut`` (trained on ``data``) and ``clean`` (on ``clean_data``)."""

    data: Path
    clean_data: Path
    shortcut: Path
    clean: Path

    def plants(self) -> pd.DataFrame:
        """One row per plant of the date-stamp data: ``plant_id``, ``split`` ("train" or "test"), ``role``
        in the shortcut run ("train", "valid" or "test"), ``label`` (training plants; None for test
        plants), ``test_label`` (test plants only), ``stamped`` (its photos carry the date), the paths
        of its photos and masks."""
        from rice_lab.data.zindi import read_zindi
        from rice_lab.runs import read_manifest

        plants = read_zindi(self.data, check_images=False, test_labels=True)
        roles = read_manifest(self.shortcut)["plants"]
        role = {p: r for r in ("train", "valid") for p in roles.get(r, ())}
        meta = pd.read_csv(self.data / "metadata.csv")
        stamped = meta[meta["camera"] == "rgb"].set_index("plant_id")["shortcut"].astype(bool)
        plants = plants.assign(role=[role.get(p, "test" if s == "test" else "unused")
                                     for p, s in zip(plants["plant_id"], plants["split"])],
                               stamped=plants["plant_id"].map(stamped).fillna(False).astype(bool))
        columns = ["plant_id", "split", "role", "label", "test_label", "stamped", "rgb", "rgnir", "mask_rgb",
                   "mask_rgnir"]
        return plants[columns].reset_index(drop=True)


def shortcut_course(plants: int = PLANTS, width: int = WIDTH, seed: int = SEED) -> ShortcutCourse:
    """The capstone's data and classifiers, made once (about a minute on two cores), then reused."""
    clean_data = course_dataset(plants=plants, size=width, seed=seed)
    shared = cache_dir() / f"shortcut-{plants}p-{width}px-seed{seed}"
    found = _ready(shared, clean_data, plants, width, seed)
    if found is not None:
        return found
    try:
        shared.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(shared.parent / f".{shared.name}.lock"):  # graders run kernels in parallel
            return _make(shared, clean_data, plants, width, seed)
    except OSError as err:
        if not isinstance(err, PermissionError) and err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    private = Path(tempfile.mkdtemp(prefix="rice-lab-course-")) / shared.name
    return _make(private, course_dataset(plants=plants, size=width, seed=seed), plants, width, seed)


def _course(root: Path, clean_data: Path) -> ShortcutCourse:
    return ShortcutCourse(root / "data", clean_data, root / "runs" / "shortcut", root / "runs" / "clean")


def _configs(course: ShortcutCourse) -> dict[str, object]:
    from rice_lab.finetune.config import get_preset

    return {name: get_preset("cpu-tiny", data=str(data), out=str(out), encoder="random", **RECIPE)
            for name, data, out in (("shortcut", course.data, course.shortcut),
                                    ("clean", course.clean_data, course.clean))}


def _ready(root: Path, clean_data: Path, plants: int, width: int, seed: int) -> ShortcutCourse | None:
    """The course at ``root`` if everything in it is finished and matches (reading only), else None."""
    from rice_lab.data.synthetic import SynthConfig, is_complete
    from rice_lab.explain.shortcut import SHORTCUT
    from rice_lab.finetune.train import KIND, classifier_plants
    from rice_lab.data.zindi import data_fingerprint
    from rice_lab.runs import run_mismatch

    course = _course(root, clean_data)
    if not is_complete(course.data, SynthConfig(plants=plants, width=width, seed=seed, shortcut=SHORTCUT)):
        return None
    for config in _configs(course).values():
        config = config.validate().resolved()
        out = Path(config.out)
        if not (out / "classifier.pt").is_file():
            return None
        try:
            if run_mismatch(out, KIND, config.to_dict(), data_fingerprint(classifier_plants(config)),
                            config.result_free()) is not None:
                return None
        except Exception:  # an unreadable manifest: made again (or set aside) under the lock
            return None
    return course


def _make(root: Path, clean_data: Path, plants: int, width: int, seed: int) -> ShortcutCourse:
    from rice_lab.explain.shortcut import make_shortcut_data
    from rice_lab.finetune.train import cached_finetune

    course = _course(root, clean_data)
    make_shortcut_data(course.data, plants=plants, width=width, seed=seed, workers=1)
    for config in _configs(course).values():
        if not (Path(config.out) / "classifier.pt").is_file():
            print(f"training the {Path(config.out).name} classifier on {Path(config.data).name} "
                  "(once; about 15 s on two cores)", flush=True)
        cached_finetune(config)
    return course


class PhotoClassifier(nn.Module):
    """A fine-tuned classifier that takes one camera's photos as floats in [0, 1], (N, 3, H, W), and
    returns logits (N, 3) in ``CLASSES`` order: the run's normalisation for that camera, then the network."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        return self.network((photos - self.mean) / self.std)


def photo_classifier(run: Path, camera: str = "rgb") -> PhotoClassifier:
    """The classifier of fine-tuning ``run`` for ``camera`` photos in [0, 1], in eval mode."""
    from rice_lab.finetune.predictions import load_classifier

    network, meta = load_classifier(run)
    network = network.to(memory_format=torch.contiguous_format)
    mean, std = meta["normalization"][camera]
    return PhotoClassifier(network, list(mean), list(std)).eval()


def photos_of(plants: pd.DataFrame, camera: str = "rgb") -> torch.Tensor:
    """Each plant's ``camera`` photo at its native size, floats in [0, 1], (plants, 3, H, W)."""
    from rice_lab.evaluate.encode import plant_photos

    return plant_photos(plants, camera).float() / 255


def masks_of(plants: pd.DataFrame, camera: str = "rgb") -> np.ndarray:
    """Each plant's ``camera`` material mask (codes of ``rice_lab.data.synthetic.MATERIALS``), (plants, H, W)."""
    from rice_lab.data.zindi import read_mask

    return np.stack([read_mask(path) for path in plants[f"mask_{camera}"]])


__all__ = ["PLANTS", "RECIPE", "PhotoClassifier", "ShortcutCourse", "masks_of", "photo_classifier", "photos_of",
           "shortcut_course"]
