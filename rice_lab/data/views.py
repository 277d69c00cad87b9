"""SSL views of a plant: which camera each crop comes from, the multi-crop recipe, DataLoaders.

Images are decoded once into memory as uint8 tensors; cropping, rotation, flips and jitter run
on whole batches (on the GPU when the model is there), driven by a generator seeded from
(seed, step), so a resumed run sees exactly the crops an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from rice_lab.data.zindi import ASPECT, CAMERAS, load_image
from rice_lab.errors import ConfigError

VIEWS = ("paired", "rgb", "rgnir", "mixed")
RGB, RGNIR = 0, 1
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class CropSpec:
    """The multi-crop recipe; defaults are the original run's (sizes scale with the preset)."""

    size: int = 128                      # large crops are size x size
    n_large: int = 2
    n_small: int = 6
    small_ratio: float = 0.75            # small crops are 3/4 of the large size
    large_scale: tuple[float, float] = (0.25, 1.0)   # fraction of the photo's area
    small_scale: tuple[float, float] = (0.05, 0.3)
    max_rotation: float = 10.0           # degrees
    flip: bool = True
    jitter: float = 0.3                  # brightness / contrast strength (0 = off)

    @property
    def small_size(self) -> int:
        return max(8, int(round(self.size * self.small_ratio)))

    @property
    def n_crops(self) -> int:
        return self.n_large + self.n_small


def seed_for(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from the run seed and integer keys (purpose, step, rank...)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator_for(seed: int, *keys: int) -> torch.Generator:
    """A CPU torch generator seeded by :func:`seed_for`."""
    return torch.Generator().manual_seed(seed_for(seed, *keys))


def crop_matrices(batch: int, height: int, width: int, scale: tuple[float, float],
                  max_rotation: float, flip: bool, generator: torch.Generator,
                  ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Affine maps (batch, 2, 3) for ``F.affine_grid``: random area, aspect, centre, rotation, flip."""
    u = torch.rand(batch, 5, generator=generator, dtype=torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * height * width
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    crop_w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=width)
    crop_h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=height)
    # Centres in pixels, chosen so the (unrotated) crop lies inside the photo.
    cx = crop_w / 2 + (width - crop_w) * u[:, 2]
    cy = crop_h / 2 + (height - crop_h) * u[:, 3]
    angle = torch.deg2rad((2 * u[:, 4] - 1) * max_rotation)
    mirror = torch.where(torch.rand(batch, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0) \
        if flip else torch.ones(batch, dtype=torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Rotation happens in pixel space (not normalised space) so non-square photos are not sheared.
    theta = torch.zeros(batch, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * crop_w / width * mirror
    theta[:, 0, 1] = -sin * crop_h / width
    theta[:, 1, 0] = sin * crop_w / height * mirror
    theta[:, 1, 1] = cos * crop_h / height
    theta[:, 0, 2] = 2 * cx / width - 1
    theta[:, 1, 2] = 2 * cy / height - 1
    return theta.float()


def random_resized_crop(images: torch.Tensor, size: int, scale: tuple[float, float],
                        max_rotation: float, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """One random crop per image, resized to size x size: (B, C, H, W) float -> (B, C, size, size)."""
    batch, channels, height, width = images.shape
    theta = crop_matrices(batch, height, width, scale, max_rotation, flip, generator).to(images.device)
    grid = F.affine_grid(theta.to(images.dtype), [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def brightness_contrast(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Scale each image's brightness and contrast by random factors in [1 - strength, 1 + strength]."""
    if strength <= 0:
        return images
    factors = 1 + strength * (2 * torch.rand(2, len(images), 1, 1, 1, generator=generator) - 1)
    factors = factors.to(images.device, images.dtype)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * factors[1] + mean * factors[0]).clamp(0, 1)


def camera_plan(views: str, n_large: int, n_small: int, batch: int,
                generator: torch.Generator) -> torch.Tensor:
    """Which camera (0 = RGB, 1 = RGNIR) each crop of each plant comes from: (crops, batch) long.

    ``paired``: large crops alternate RGB, RGNIR (the original idea: the two sensors are the two
    views), small crops alternate too; ``rgb`` / ``rgnir``: one camera throughout; ``mixed``: each
    crop of each plant picks a camera at random.
    """
    n = n_large + n_small
    if views == "paired":
        order = [i % 2 for i in range(n_large)] + [i % 2 for i in range(n_small)]
        return torch.tensor(order).unsqueeze(1).expand(n, batch).clone()
    if views in CAMERAS:
        return torch.full((n, batch), CAMERAS.index(views), dtype=torch.long)
    if views == "mixed":
        return torch.randint(0, 2, (n, batch), generator=generator)
    raise ConfigError(f"views={views!r}: choose one of {', '.join(VIEWS)}")


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(images - mean) / std per channel."""
    mean_t = torch.as_tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def multi_crop(rgb: torch.Tensor, rgnir: torch.Tensor, spec: CropSpec, views: str,
               generator: torch.Generator, stats: dict | None = None) -> list[torch.Tensor]:
    """All crops of a batch of plants: ``n_large`` at ``size`` then ``n_small`` at ``small_size``.

    ``rgb`` and ``rgnir`` are (B, 3, H, W), uint8 or float in [0, 1]; ``stats`` maps camera name to
    (mean, std) used to normalise each crop by its own camera's statistics.
    """
    cameras = torch.stack([_as_float(rgb), _as_float(rgnir)])  # (2, B, 3, H, W)
    batch = rgb.shape[0]
    plan = camera_plan(views, spec.n_large, spec.n_small, batch, generator).to(rgb.device)
    index = torch.arange(batch, device=rgb.device)
    crops = []
    for v in range(spec.n_crops):
        large = v < spec.n_large
        source = cameras[plan[v], index]
        crop = random_resized_crop(source, spec.size if large else spec.small_size,
                                   spec.large_scale if large else spec.small_scale,
                                   spec.max_rotation, spec.flip, generator)
        crop = brightness_contrast(crop, spec.jitter, generator)
        if stats is not None:
            crop = _normalize_by_camera(crop, plan[v], stats)
        crops.append(crop)
    return crops


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _normalize_by_camera(crop: torch.Tensor, camera: torch.Tensor, stats: dict) -> torch.Tensor:
    means = torch.tensor([stats[c][0] for c in CAMERAS], device=crop.device, dtype=crop.dtype)
    stds = torch.tensor([stats[c][1] for c in CAMERAS], device=crop.device, dtype=crop.dtype)
    return (crop - means[camera][:, :, None, None]) / stds[camera][:, :, None, None]


def load_size(height: int) -> tuple[int, int]:
    """(height, width) of a photo decoded ``height`` px high in Zindi's 5:4 landscape shape."""
    return height, int(round(height * ASPECT))


class PlantImages(Dataset):
    """Both photos of each plant, decoded once and kept as uint8 tensors (3, H, W)."""

    def __init__(self, plants: pd.DataFrame, height: int, width: int) -> None:
        self.plant_ids = list(plants["plant_id"])
        self.labels = list(plants["label"]) if "label" in plants else [None] * len(plants)
        self.rgb = _decode_all(plants["rgb"], height, width)
        self.rgnir = _decode_all(plants["rgnir"], height, width)

    def __len__(self) -> int:
        return len(self.plant_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rgb[i], self.rgnir[i]

    def stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Per-camera channel mean and std over all photos (the "one-batch stats" of the original)."""
        out = {}
        for name, images in zip(CAMERAS, (self.rgb, self.rgnir)):
            x = images.float().div_(255).transpose(0, 1).reshape(3, -1)
            out[name] = (x.mean(1).tolist(), x.std(1).clamp(min=1e-3).tolist())
        return out


def _decode_all(paths: Sequence[str], height: int, width: int) -> torch.Tensor:
    from PIL import Image

    out = torch.empty(len(paths), 3, height, width, dtype=torch.uint8)
    for i, path in enumerate(paths):
        image = load_image(path).resize((width, height), Image.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return out


class SeededBatchSampler(Sampler):
    """Batches in an order fixed by (seed, epoch), sharded across DDP ranks, startable mid-epoch.

    Every rank draws the same permutation and takes its own slice of each global batch, so N
    processes see exactly the plants one process would with an N-times larger batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch, self.start = 0, 0
        global_batch = batch_size * world_size
        full = n // global_batch
        self.n_batches = full if (drop_last and full) else math.ceil(n / global_batch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order, skipping its first ``start`` batches (for resume)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=generator_for(self.seed, 1, self.epoch)).tolist() \
            if self.shuffle else list(range(self.n))
        global_batch = self.batch_size * self.world_size
        for b in range(self.start, self.n_batches):
            chunk = order[b * global_batch:(b + 1) * global_batch]
            if len(chunk) < global_batch and self.world_size > 1:
                chunk = (chunk * global_batch)[:global_batch]  # pad so every rank has a batch
            yield chunk[self.rank::self.world_size]


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def plant_loader(images: PlantImages, batch_size: int, seed: int, shuffle: bool, drop_last: bool,
                 rank: int = 0, world_size: int = 1, workers: int = 0) -> DataLoader:
    """A DataLoader of (rgb, rgnir) uint8 batches driven by a :class:`SeededBatchSampler`."""
    sampler = SeededBatchSampler(len(images), batch_size, seed, shuffle, drop_last, rank, world_size)
    return DataLoader(images, batch_sampler=sampler, collate_fn=_collate, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def ssl_dataloaders(plants: pd.DataFrame, photo_size: int, batch_size: int, seed: int = 0,
                    rank: int = 0, world_size: int = 1, workers: int = 0, device=None):
    """fastai ``DataLoaders`` (train, valid) of uint8 photos ``photo_size`` px high; crops come later."""
    from fastai.data.core import DataLoaders

    height, width = load_size(photo_size)
    train = PlantImages(plants[~plants["is_valid"]], height, width)
    valid = PlantImages(plants[plants["is_valid"]], height, width)
    if len(train) < batch_size * world_size:
        raise ConfigError(f"batch size {batch_size} x {world_size} process(es) is larger than the "
                          f"{len(train)} training plants; lower --batch-size")
    dls = DataLoaders(plant_loader(train, batch_size, seed, True, True, rank, world_size, workers),
                      plant_loader(valid, batch_size, seed, False, False, rank, world_size, workers),
                      device=device)
    dls.n_inp = 2  # both photos are inputs; there is no target in self-supervision
    return dls
