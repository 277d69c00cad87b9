"""Photos in, features out: how every later stage turns a plant's photos into an encoder's features."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from rice_lab.data.views import PlantImages, load_size, normalize
from rice_lab.data.zindi import CAMERAS, load_image
from rice_lab.errors import ConfigError, DataError


def plant_photos(plants: pd.DataFrame, camera: str, height: int | None = None) -> torch.Tensor:
    """Every plant's ``camera`` photo as uint8 (plants, 3, H, W), in the table's order.

    With ``height`` the photos are decoded ``height`` px high in the challenge's 5:4 shape, as the
    pre-training views decode them; without it they keep their own size, which must be one size.
    Decoded photos are kept for the next call on the same plants (probing several encoders).
    """
    if camera not in CAMERAS:
        raise ConfigError(f"camera={camera!r}: choose one of {', '.join(CAMERAS)}")
    paths = tuple(zip(plants["rgb"], plants["rgnir"]))
    if height is None:
        sizes = {load_image(path).size for path in plants[camera]}
        if len(sizes) != 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
            raise DataError(f"{camera} photos come in {len(sizes)} sizes ({shown}); pass height= to decode "
                            "them all at one size")
        height = sizes.pop()[1]
    images = _decoded(paths, height)
    return images.rgb if camera == "rgb" else images.rgnir


@lru_cache(maxsize=4)
def _decoded(paths: tuple[tuple[str, str], ...], height: int) -> PlantImages:
    table = pd.DataFrame(list(paths), columns=["rgb", "rgnir"]).assign(plant_id=range(len(paths)))
    return PlantImages(table, *load_size(height))


def photo_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of photos (uint8 or floats in [0, 1])."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    x = x.transpose(0, 1).reshape(x.shape[1], -1)
    return x.mean(1).tolist(), x.std(1).clamp(min=1e-3).tolist()


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor, camera: str,
           stats: tuple[Sequence[float], Sequence[float]] | None = None, height: int | None = None,
           batch_size: int = 128) -> torch.Tensor:
    """Features (N, F) of photos (N, 3, H, W) from ``camera``: uint8, or floats in [0, 1].

    The photos go through what the encoder was trained with: resized (keeping their shape) to
    ``height`` if given, else the photo height it was trained on (``encoder.photo_height``), else left
    as they are; normalised by ``stats`` (mean, std) if given, else by the statistics stored for this
    camera (``encoder.normalization[camera]``), else by the photos' own. The encoder runs in eval
    mode, in batches, without gradients, on its own device; its training mode is restored afterwards.
    Features come back on the CPU.
    """
    if camera not in CAMERAS:
        raise ConfigError(f"camera={camera!r}: choose one of {', '.join(CAMERAS)}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"images of shape {tuple(images.shape)}: expected (photos, 3, height, width)")
    stored = getattr(encoder, "normalization", None)
    if stats is None:
        stats = stored[camera] if stored else photo_stats(images)
    height = height or getattr(encoder, "photo_height", None) or images.shape[-2]
    width = int(round(height * images.shape[-1] / images.shape[-2]))
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            if x.shape[-2:] != (height, width):
                x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
            out.append(encoder(normalize(x, *stats)).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)
