"""SSL views of a plant: which camera each crop comes from, the multi-crop recipe, DataLoaders.

Images are decoded once into memory as uint8 tensors; cropping, rotation, flips, colour changes and
blur run on whole batches as tensor operations (on the GPU when the model is there), driven by a
generator from a named random stream (``rice_lab.seeding``) keyed by the step, so a resumed run sees
exactly the crops an uninterrupted one would.
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

from rice_lab.data.backgrounds import donor_order, leaf_centres, replace_background
from rice_lab.data.zindi import ASPECT, CAMERAS, load_image
from rice_lab.errors import ConfigError
from rice_lab.seeding import stream_generator

VIEWS = ("paired", "rgb", "rgnir", "mixed")
RGB, RGNIR = 0, 1
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class CropSpec:
    """The multi-crop recipe and its augmentations; ``size`` is the side of a large crop in px.

    The defaults are rice-lab's recipe: every crop rotated (up to ``max_rotation``), flipped half
    the time, its brightness and contrast jittered. The colour jitter, grayscale and blur of the
    published notebook's library are off unless their probabilities are set (preset
    ``gpu-paper-as-published``).
    """

    size: int = 128                      # large crops are size x size px
    n_large: int = 2
    n_small: int = 6
    small_ratio: float = 0.75            # small crops are 3/4 of the large side
    large_scale: tuple[float, float] = (0.25, 1.0)   # fraction of the photo's area
    small_scale: tuple[float, float] = (0.05, 0.3)
    max_rotation: float = 10.0           # degrees
    rotation_p: float = 1.0              # share of crops rotated (the others keep angle 0)
    flip: bool = True                    # mirror half of the crops
    jitter: float = 0.3                  # brightness / contrast strength, every crop (0 = off)
    color_jitter: float = 0.0            # strength s: brightness, contrast, saturation 0.8 s, hue 0.2 s
    color_jitter_p: float = 0.0          # share of crops colour-jittered
    grayscale_p: float = 0.0             # share of crops turned grey
    blur_p: float = 0.0                  # share of crops blurred (Gaussian, sigma 0.1-2 px)
    # Views that share the leaf, not the ground (rice_lab.data.backgrounds), from leaf masks estimated
    # from the photos: each crop's ground replaced independently ("swap": another plant's ground,
    # "noise": a random texture; "keep": as photographed), and crops centred on a leaf pixel.
    background: str = "keep"
    background_p: float = 1.0            # share of crops whose ground is replaced
    leaf_centred: bool = False

    @property
    def needs_leaves(self) -> bool:
        """Whether the recipe reads leaf masks (estimated from the photos, never the truth)."""
        return self.background != "keep" or self.leaf_centred

    @property
    def small_size(self) -> int:
        return max(8, int(round(self.size * self.small_ratio)))

    @property
    def n_crops(self) -> int:
        return self.n_large + self.n_small


def crop_matrices(batch: int, height: int, width: int, scale: tuple[float, float],
                  max_rotation: float, flip: bool, generator: torch.Generator,
                  ratio: tuple[float, float] = (3 / 4, 4 / 3), rotation_p: float = 1.0,
                  centres: torch.Tensor | None = None) -> torch.Tensor:
    """Affine maps (batch, 2, 3) for ``F.affine_grid``: random area, aspect, centre, rotation, flip.

    With ``rotation_p < 1`` only that share of the crops is rotated (one more draw per crop).
    ``centres`` (batch, 2), pixel (x, y), replaces the random centres, moved as little as needed
    for the (unrotated) crop to lie inside the photo.
    """
    u = torch.rand(batch, 5, generator=generator, dtype=torch.float64)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * height * width
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    crop_w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=width)
    crop_h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=height)
    # Centres in pixels, chosen so the (unrotated) crop lies inside the photo.
    cx = crop_w / 2 + (width - crop_w) * u[:, 2]
    cy = crop_h / 2 + (height - crop_h) * u[:, 3]
    if centres is not None:
        centres = centres.to(torch.float64)
        cx = torch.minimum(torch.maximum(centres[:, 0], crop_w / 2), width - crop_w / 2)
        cy = torch.minimum(torch.maximum(centres[:, 1], crop_h / 2), height - crop_h / 2)
    angle = torch.deg2rad((2 * u[:, 4] - 1) * max_rotation)
    mirror = torch.where(torch.rand(batch, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0) \
        if flip else torch.ones(batch, dtype=torch.float64)
    if rotation_p < 1:
        angle = angle * (torch.rand(batch, generator=generator, dtype=torch.float64) < rotation_p)
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
                        max_rotation: float, flip: bool, generator: torch.Generator,
                        rotation_p: float = 1.0, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        centres: torch.Tensor | None = None) -> torch.Tensor:
    """One random crop per image, resized to size x size: (B, C, H, W) float -> (B, C, size, size)."""
    batch, channels, height, width = images.shape
    theta = crop_matrices(batch, height, width, scale, max_rotation, flip, generator, ratio,
                          rotation_p, centres).to(images.device)
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


def _grey(images: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601) of RGB images: (B, 3, H, W) -> (B, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _rgb_to_hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in [0, 1), saturation and value of (B, 3, H, W) images in [0, 1], each (B, H, W)."""
    r, g, b = images.unbind(1)
    value, _ = images.max(dim=1)
    delta = value - images.min(dim=1).values
    safe = delta.clamp(min=1e-12)
    hue = torch.where(value == r, (g - b) / safe, torch.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    saturation = torch.where(value > 0, delta / value.clamp(min=1e-12), torch.zeros_like(value))
    return hue, saturation, value


def _hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    channels = []
    for n in (5, 3, 1):  # R, G, B
        k = (n + hue * 6) % 6
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=1)


def color_jitter(images: torch.Tensor, strength: float, p: float, generator: torch.Generator) -> torch.Tensor:
    """Jitter brightness, contrast, saturation (factors in 1 +- 0.8 s) and hue (+- 0.2 s turn) of a
    random share ``p`` of (B, 3, H, W) images in [0, 1], in that order, clamped to [0, 1] after each.

    The strengths are SimCLR's colour distortion at strength s, which the published notebook's
    library used (s = 0.6). Draws 5 numbers per image whether or not it is jittered.
    """
    if p <= 0 or strength <= 0:
        return images
    u = torch.rand(len(images), 5, generator=generator).to(images.device, images.dtype)
    chosen = (u[:, 0] < p).view(-1, 1, 1, 1)
    factor = lambda column, amount: (1 + amount * (2 * u[:, column] - 1)).view(-1, 1, 1, 1)  # noqa: E731
    x = (images * factor(1, 0.8 * strength)).clamp(0, 1)
    mean = _grey(x).mean(dim=(2, 3), keepdim=True)
    x = (mean + (x - mean) * factor(2, 0.8 * strength)).clamp(0, 1)
    grey = _grey(x)
    x = (grey + (x - grey) * factor(3, 0.8 * strength)).clamp(0, 1)
    hue, saturation, value = _rgb_to_hsv(x)
    hue = (hue + (0.2 * strength * (2 * u[:, 4] - 1)).view(-1, 1, 1)) % 1.0
    x = _hsv_to_rgb(hue, saturation, value).clamp(0, 1)
    return torch.where(chosen, x, images)


def random_grayscale(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a random share ``p`` of (B, 3, H, W) images by their luma in all three channels."""
    if p <= 0:
        return images
    chosen = (torch.rand(len(images), generator=generator) < p).to(images.device).view(-1, 1, 1, 1)
    return torch.where(chosen, _grey(images).expand_as(images), images)


def gaussian_blur(images: torch.Tensor, p: float, generator: torch.Generator,
                  sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """Blur a random share ``p`` of (B, C, H, W) images with a Gaussian of sigma drawn per image (px).

    One separable convolution for the whole batch (a 13-tap kernel per image, reflected borders).
    """
    if p <= 0:
        return images
    batch, channels, height, width = images.shape
    u = torch.rand(batch, 2, generator=generator)
    chosen = (u[:, 0] < p).to(images.device).view(-1, 1, 1, 1)
    sigmas = (sigma[0] + (sigma[1] - sigma[0]) * u[:, 1]).to(images.device, images.dtype)
    radius = min(math.ceil(3 * sigma[1]), (min(height, width) - 1))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-offsets.view(1, -1) ** 2 / (2 * sigmas.view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # (B*C, taps)
    x = images.reshape(1, batch * channels, height, width)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(-1, 1, 1, 2 * radius + 1),
                 groups=batch * channels)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(-1, 1, 2 * radius + 1, 1),
                 groups=batch * channels)
    return torch.where(chosen, x.view_as(images), images)


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
               generator: torch.Generator, stats: dict | None = None,
               leaves: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """All crops of a batch of plants: ``n_large`` at ``size`` then ``n_small`` at ``small_size``.

    Each crop: cut (area, aspect, rotation, flip; centred on a leaf pixel if ``spec.leaf_centred``)
    -> ground replaced (``spec.background``) -> brightness/contrast -> colour jitter -> grayscale ->
    blur -> normalisation, every random number drawn from ``generator`` in that order.

    ``rgb`` and ``rgnir`` are (B, 3, H, W), uint8 or float in [0, 1]; ``stats`` maps camera name to
    (mean, std) used to normalise each crop by its own camera's statistics. ``leaves`` are the two
    cameras' leaf masks (B, 1, H, W) estimated from these photos
    (:func:`rice_lab.data.foreground.leaf_masks`), needed only by a recipe that reads them.
    """
    cameras = torch.stack([_as_float(rgb), _as_float(rgnir)])  # (2, B, 3, H, W)
    batch = rgb.shape[0]
    if spec.needs_leaves:
        if leaves is None:
            raise ConfigError(f"crops.background={spec.background!r}, crops.leaf_centred={spec.leaf_centred}: "
                              "this recipe needs the photos' leaf masks (PlantImages(..., leaves=True))")
        # The mask rides along as a fourth channel, so it is cut with exactly the photo's grid.
        cameras = torch.cat([cameras, torch.stack([m.float() for m in leaves])], dim=2)
    plan = camera_plan(views, spec.n_large, spec.n_small, batch, generator).to(rgb.device)
    index = torch.arange(batch, device=rgb.device)
    crops = []
    for v in range(spec.n_crops):
        large = v < spec.n_large
        size = spec.size if large else spec.small_size
        source = cameras[plan[v], index]
        centres = leaf_centres(source[:, 3:], generator) if spec.leaf_centred else None
        crop = random_resized_crop(source, size, spec.large_scale if large else spec.small_scale,
                                   spec.max_rotation, spec.flip, generator, spec.rotation_p, centres=centres)
        if spec.needs_leaves:
            crop, alpha = crop[:, :3], crop[:, 3:]
            donors = donor_alpha = None
            if spec.background == "swap":  # another plant's photo from the same camera, cut on its own
                donor = cameras[plan[v], donor_order(batch, generator).to(rgb.device)]
                donor = random_resized_crop(donor, size, spec.large_scale, spec.max_rotation, spec.flip, generator)
                donors, donor_alpha = donor[:, :3], donor[:, 3:]
            crop = replace_background(crop, alpha, spec.background, generator, donors, donor_alpha,
                                      spec.background_p)
        crop = brightness_contrast(crop, spec.jitter, generator)
        # Off by default, and then they draw nothing: the default recipe's crops stay as they were.
        crop = color_jitter(crop, spec.color_jitter, spec.color_jitter_p, generator)
        crop = random_grayscale(crop, spec.grayscale_p, generator)
        crop = gaussian_blur(crop, spec.blur_p, generator)
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
    """Both photos of each plant, decoded once and kept as uint8 tensors (3, H, W).

    With ``leaves=True`` each photo's leaf mask is estimated from its pixels
    (:func:`rice_lab.data.foreground.leaf_masks`; nothing else is read) and items are
    (rgb, rgnir, rgb leaf, rgnir leaf), the masks uint8 (1, H, W) of 0 / 1.
    """

    def __init__(self, plants: pd.DataFrame, height: int, width: int, leaves: bool = False) -> None:
        self.plant_ids = list(plants["plant_id"])
        self.labels = list(plants["label"]) if "label" in plants else [None] * len(plants)
        self.rgb = _decode_all(plants["rgb"], height, width)
        self.rgnir = _decode_all(plants["rgnir"], height, width)
        self.leaves = None
        if leaves:
            from rice_lab.data.foreground import leaf_masks

            self.leaves = (leaf_masks(self.rgb, "rgb"), leaf_masks(self.rgnir, "rgnir"))

    def __len__(self) -> int:
        return len(self.plant_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        if self.leaves is None:
            return self.rgb[i], self.rgnir[i]
        return self.rgb[i], self.rgnir[i], self.leaves[0][i], self.leaves[1][i]

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
        order = torch.randperm(self.n, generator=stream_generator(self.seed, "sampler", self.epoch)).tolist() \
            if self.shuffle else list(range(self.n))
        global_batch = self.batch_size * self.world_size
        for b in range(self.start, self.n_batches):
            chunk = order[b * global_batch:(b + 1) * global_batch]
            if len(chunk) < global_batch and self.world_size > 1:
                chunk = (chunk * global_batch)[:global_batch]  # pad so every rank has a batch
            yield chunk[self.rank::self.world_size]


def _collate(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack(column) for column in zip(*items))


def plant_loader(images: PlantImages, batch_size: int, seed: int, shuffle: bool, drop_last: bool,
                 rank: int = 0, world_size: int = 1, workers: int = 0) -> DataLoader:
    """A DataLoader of (rgb, rgnir) uint8 batches driven by a :class:`SeededBatchSampler`."""
    sampler = SeededBatchSampler(len(images), batch_size, seed, shuffle, drop_last, rank, world_size)
    return DataLoader(images, batch_sampler=sampler, collate_fn=_collate, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def ssl_dataloaders(plants: pd.DataFrame, photo_height: int, batch_size: int, seed: int = 0,
                    rank: int = 0, world_size: int = 1, workers: int = 0, device=None, leaves: bool = False):
    """fastai ``DataLoaders`` (train, valid) of uint8 photos ``photo_height`` px high; crops come later.

    ``leaves=True`` adds each photo's leaf mask estimated from its pixels (see :class:`PlantImages`).
    """
    from fastai.data.core import DataLoaders

    height, width = load_size(photo_height)
    train = PlantImages(plants[~plants["is_valid"]], height, width, leaves)
    valid = PlantImages(plants[plants["is_valid"]], height, width, leaves)
    if len(train) < batch_size * world_size:
        raise ConfigError(f"batch size {batch_size} x {world_size} process(es) is larger than the "
                          f"{len(train)} training plants; lower --batch-size")
    dls = DataLoaders(plant_loader(train, batch_size, seed, True, True, rank, world_size, workers),
                      plant_loader(valid, batch_size, seed, False, False, rank, world_size, workers),
                      device=device)
    dls.n_inp = 4 if leaves else 2  # photos (and masks) are inputs; there is no target in self-supervision
    return dls
