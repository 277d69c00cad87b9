"""Which plants a classifier trains, validates and is tested on, and its photos as training samples.

Plant hygiene: every split is by plant (a plant's two photos are always on one side); plants that
share a photo (same file content) form one group that is never split; a training plant sharing a
photo with a test plant is left out of training; validation and label subsets are stratified by
class. Only training labels are read here: test labels never reach selection or calibration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from rice_lab.data.views import PlantImages, SeededBatchSampler, brightness_contrast, load_size
from rice_lab.data.zindi import CAMERAS, CLASSES, split_plants
from rice_lab.errors import ConfigError, DataError
from rice_lab.seeding import stream_generator, stream_seed

ROLES = ("train", "valid", "test", "unlabelled", "excluded")


def photo_hash(path: str | Path) -> str:
    """Content hash of a photo file (identical files, whatever their names, hash alike)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def duplicate_groups(plants: pd.DataFrame) -> pd.Series:
    """A group id per plant: plants that share a photo (by content hash), directly or through others,
    share a group. Indexed by plant id."""
    parent = {p: p for p in plants["plant_id"]}

    def root(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    owner: dict[str, str] = {}
    for row in plants.itertuples(index=False):
        for camera in CAMERAS:
            digest = photo_hash(getattr(row, camera))
            if digest in owner:
                parent[root(row.plant_id)] = root(owner[digest])
            else:
                owner[digest] = row.plant_id
    return pd.Series({p: root(p) for p in plants["plant_id"]}, name="group")


def assign_roles(plants: pd.DataFrame, valid_pct: float = 0.2, split_seed: int = 0,
                 labels_fraction: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """``plants`` with a ``role`` column: train, valid, test, unlabelled (left out by
    ``labels_fraction``) or excluded (shares a photo with a test plant).

    The validation split is :func:`rice_lab.data.zindi.split_plants` over groups of plants that
    share a photo (one plant per group when there are no duplicates, the usual case), so it is
    stratified by class and a group is never cut. The label subset keeps ``labels_fraction`` of each
    class's training plants (at least 2 per class), drawn from the run seed.
    """
    if "test_label" in plants.columns:
        plants = plants.drop(columns="test_label")  # nothing below may see a test label
    groups = duplicate_groups(plants)
    plants = plants.assign(group=groups.loc[plants["plant_id"]].to_numpy())
    test_groups = set(plants.loc[plants["split"] == "test", "group"])
    excluded = (plants["split"] == "train") & plants["group"].isin(test_groups)
    train_pool = plants[(plants["split"] == "train") & ~excluded]
    first_of_group = train_pool.drop_duplicates("group")
    marked = split_plants(first_of_group, valid_pct, split_seed)
    valid_groups = set(marked.loc[marked["is_valid"], "group"])
    role = np.where(plants["split"] == "test", "test", "train").astype(object)
    role[excluded.to_numpy()] = "excluded"
    role[((plants["split"] == "train") & plants["group"].isin(valid_groups) & ~excluded).to_numpy()] = "valid"
    plants = plants.assign(role=role)
    if labels_fraction < 1:
        plants = _label_subset(plants, labels_fraction, seed)
    for name in ("train", "valid"):
        found = set(plants.loc[plants["role"] == name, "label"])
        if found != set(CLASSES) and len(plants[plants["split"] == "train"]) >= 2 * len(CLASSES):
            missing = ", ".join(sorted(set(CLASSES) - found))
            raise DataError(f"the {name} plants have no {missing} plant: too few labelled plants per class "
                            f"for valid_pct={valid_pct}")
    return plants


def _label_subset(plants: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(stream_seed(seed, "labels-subset"))
    plants = plants.copy()
    for label in CLASSES:
        ids = np.sort(plants.loc[(plants["role"] == "train") & (plants["label"] == label), "plant_id"].to_numpy())
        keep = min(len(ids), max(2, int(round(len(ids) * fraction))))
        dropped = set(ids) - set(rng.choice(ids, size=keep, replace=False)) if len(ids) else set()
        plants.loc[plants["plant_id"].isin(dropped), "role"] = "unlabelled"
    return plants


def shuffle_training_labels(plants: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``plants`` with the training plants' labels permuted among themselves (so each class keeps its
    count), drawn from ``seed``; every other plant, validation included, keeps its own label."""
    plants = plants.copy()
    train = plants.index[plants["role"] == "train"]
    ordered = plants.loc[train].sort_values("plant_id").index  # the draw does not depend on row order
    rng = np.random.default_rng(stream_seed(seed, "shuffled-labels"))
    plants.loc[ordered, "label"] = rng.permutation(plants.loc[ordered, "label"].to_numpy())
    return plants


def camera_list(cameras: str) -> tuple[str, ...]:
    """The cameras a config trains on: ``both`` -> (rgb, rgnir)."""
    return CAMERAS if cameras == "both" else (cameras,)


class PhotoSamples(Dataset):
    """Every photo of the given plants as one sample (uint8 photo, camera index, class index, or
    with ``soft`` a row of class probabilities).

    Samples are plant-major (a plant's photos follow each other, cameras in ``CAMERAS`` order), so
    predictions fold back to (plants, cameras, classes) with a reshape.
    """

    def __init__(self, plants: pd.DataFrame, cameras: tuple[str, ...], height: int,
                 labels: bool = True, soft: np.ndarray | None = None) -> None:
        images = PlantImages(plants.assign(label=None), *load_size(height))
        per_camera = {"rgb": images.rgb, "rgnir": images.rgnir}
        self.plant_ids, self.cameras = list(plants["plant_id"]), cameras
        self.images = torch.stack([per_camera[c] for c in cameras], 1).flatten(0, 1)
        self.camera = torch.tensor([CAMERAS.index(c) for c in cameras]).repeat(len(plants))
        if soft is not None:  # self-distillation: a teacher's probabilities (plants, cameras, classes)
            if soft.shape[:2] != (len(plants), len(cameras)):
                raise DataError(f"soft targets of shape {soft.shape} for {len(plants)} plants x {len(cameras)} cameras")
            self.label = torch.from_numpy(np.ascontiguousarray(soft, dtype=np.float32)).flatten(0, 1)
            return
        if labels:
            unknown = sorted(set(plants["label"]) - set(CLASSES))
            if unknown:
                raise DataError(f"labels {unknown} are not among the classes {', '.join(CLASSES)}")
            label = torch.tensor([CLASSES.index(c) for c in plants["label"]])
        else:
            label = torch.zeros(len(plants), dtype=torch.long)
        self.label = label.repeat_interleave(len(cameras))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.camera[i], self.label[i]


def photo_level_split(train: PhotoSamples, valid_plants: pd.DataFrame, cameras: tuple[str, ...], height: int,
                      seed: int) -> tuple[Dataset, Dataset]:
    """The leakage lesson's mistake, on purpose: (training photos, validation photos) when photos,
    not plants, are split. Each validation plant validates on one photo (camera drawn from ``seed``)
    while its other photo joins training, as in the original notebook's random photo split.
    """
    held = np.random.default_rng(stream_seed(seed, "photo-split")).integers(0, len(cameras), len(valid_plants))
    to_train, to_valid = [train], []
    for i, camera in enumerate(cameras):
        validating, training = valid_plants[held == i], valid_plants[held != i]
        if len(validating):
            to_valid.append(PhotoSamples(validating, (camera,), height))
        if len(training):
            to_train.append(PhotoSamples(training, (camera,), height))
    return ConcatDataset(to_train), ConcatDataset(to_valid)


def _collate(items):
    images, cameras, labels = zip(*items)
    return torch.stack(images), torch.stack(cameras), torch.stack(labels)


def photo_loader(samples: Dataset, batch_size: int, seed: int, train: bool, workers: int = 0) -> DataLoader:
    """Batches (photos, cameras, labels); training order fixed by (seed, epoch), last short batch dropped."""
    sampler = SeededBatchSampler(len(samples), batch_size, seed, shuffle=train, drop_last=train)
    return DataLoader(samples, batch_sampler=sampler, collate_fn=_collate, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def flip(images: torch.Tensor, horizontal: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose flag is set, left-right and/or top-bottom: the training augmentation."""
    images = torch.where(horizontal.view(-1, 1, 1, 1), images.flip(-1), images)
    return torch.where(vertical.view(-1, 1, 1, 1), images.flip(-2), images)


def augment(images: torch.Tensor, seed: int, step: int, flips: bool = True, max_rotation: float = 0.0,
            zoom: float = 0.0, jitter: float = 0.0) -> torch.Tensor:
    """Training augmentation of a batch, every random number drawn for ``step``: floats in [0, 1] out.

    Flips left-right and top-bottom (probability 1/2 each); a rotation up to ``max_rotation`` degrees
    and a zoom by up to +-``zoom`` (reflected borders); brightness and contrast by up to +-``jitter``.
    """
    generator = stream_generator(seed, "finetune-augment", step)
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    if flips:
        draws = (torch.rand(2, len(x), generator=generator) < 0.5).to(x.device)
        x = flip(x, draws[0], draws[1])
    if max_rotation > 0 or zoom > 0:
        u = torch.rand(2, len(x), generator=generator, dtype=torch.float64)
        angle = torch.deg2rad((2 * u[0] - 1) * max_rotation)
        scale = 1 + (2 * u[1] - 1) * zoom
        height, width = x.shape[-2:]
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(len(x), 2, 3, dtype=torch.float64)
        # rotation in pixel space, so a 5:4 photo is not sheared
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
        theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        x = brightness_contrast(x, jitter, generator)
    return x


def prepare(images: torch.Tensor, cameras: torch.Tensor, stats: dict, channels_last: bool = False) -> torch.Tensor:
    """uint8 photos -> floats normalised by each photo's own camera statistics."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    means = torch.tensor([stats[c][0] for c in CAMERAS], device=x.device, dtype=x.dtype)
    stds = torch.tensor([stats[c][1] for c in CAMERAS], device=x.device, dtype=x.dtype)
    x = (x - means[cameras][:, :, None, None]) / stds[cameras][:, :, None, None]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def check_stats(stats: dict, cameras: tuple[str, ...]) -> dict:
    """Per-camera (mean, std) as lists; ConfigError naming a camera the statistics lack."""
    missing = [c for c in cameras if not stats or c not in stats]
    if missing:
        raise ConfigError(f"no normalisation statistics for camera(s) {', '.join(missing)}")
    # A camera not trained on keeps the first one's statistics, so batches index every camera alike.
    return {c: (list(stats.get(c, stats[cameras[0]])[0]), list(stats.get(c, stats[cameras[0]])[1]))
            for c in CAMERAS}


__all__ = ["ROLES", "PhotoSamples", "assign_roles", "augment", "camera_list", "check_stats", "duplicate_groups", "flip",
           "photo_hash", "photo_loader", "prepare", "shuffle_training_labels"]
