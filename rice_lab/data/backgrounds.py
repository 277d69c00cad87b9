"""Views that share the leaf, not the ground: background replacement and leaf-centred crops.

Two photos of one plant share its leaves, but also its ground (soil, paddy water, a canopy of other
plants), which covers most of each photo; SwAV then matches the two views on the ground. These
options of the crop recipe (``CropSpec.background``, ``CropSpec.leaf_centred``) take the ground
out of what the views share. They read only the leaf masks that
:func:`rice_lab.data.foreground.leaf_masks` estimates from the photos: never the synthetic data's
material or lesion masks, which would tell the label (healthy plants have no lesions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rice_lab.errors import ConfigError

BACKGROUNDS = ("keep", "swap", "noise")


def check_background(mode: str) -> str:
    if mode not in BACKGROUNDS:
        raise ConfigError(f"crops.background={mode!r}: choose one of {', '.join(BACKGROUNDS)}")
    return mode


def leaf_centres(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random leaf pixel of each image, as (x, y) pixel-centre coordinates: (B, 1, H, W) -> (B, 2).

    Pixels are drawn in proportion to ``alpha`` (the leaf mask, 0-1); an image without a leaf gets a
    uniformly random centre. One uniform draw per image from ``generator`` (a CPU generator, whatever
    the device of ``alpha``).
    """
    batch, _, height, width = alpha.shape
    weights = alpha.reshape(batch, -1).float()
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    cdf = weights.cumsum(1)
    u = torch.rand(batch, 1, generator=generator, dtype=torch.float64).to(alpha.device)
    target = (u * cdf[:, -1:].double()).to(cdf.dtype)
    index = torch.searchsorted(cdf, target).clamp(max=height * width - 1).squeeze(1)
    return torch.stack([(index % width).double() + 0.5, (index // width).double() + 0.5], dim=1).cpu()


def _ground_only(images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Each image with its own leaves painted over in its mean ground colour (so a donor gives no leaf)."""
    ground = 1 - alpha
    mean = (images * ground).sum((2, 3), keepdim=True) / ground.sum((2, 3), keepdim=True).clamp(min=1.0)
    return images * ground + mean * alpha


def noise_texture(batch: int, channels: int, size: int, generator: torch.Generator,
                  device=None, dtype=torch.float32) -> torch.Tensor:
    """Smooth random ground: a random colour per image plus coarse (4 x 4) noise of std 0.1, upsampled."""
    u = torch.rand(batch, channels, 1, 1, generator=generator)
    coarse = 0.1 * torch.randn(batch, channels, 4, 4, generator=generator)
    texture = F.interpolate(u + coarse, size=(size, size), mode="bilinear", align_corners=False)
    return texture.clamp(0, 1).to(device=device, dtype=dtype)


def replace_background(crops: torch.Tensor, alpha: torch.Tensor, mode: str, generator: torch.Generator,
                       donors: torch.Tensor | None = None, donor_alpha: torch.Tensor | None = None,
                       p: float = 1.0) -> torch.Tensor:
    """``alpha * crops + (1 - alpha) * new ground`` for a random share ``p`` of the crops (one draw
    per crop), each crop's ground drawn independently; the others are left as photographed.

    ``crops`` (B, C, S, S) in [0, 1] and ``alpha`` (B, 1, S, S), the leaf mask cut with the same grid.
    ``mode``: "keep" (unchanged), "swap" (the ground of ``donors``, crops of other plants' photos of
    the same camera, their own leaves painted over with their ground's mean colour, ``donor_alpha``
    their leaf masks) or "noise" (:func:`noise_texture`).
    """
    check_background(mode)
    if mode == "keep":
        return crops
    if mode == "swap":
        if donors is None or donor_alpha is None:
            raise ConfigError("background='swap' needs donor crops and their leaf masks")
        ground = _ground_only(donors, donor_alpha)
    else:
        batch, channels, size, _ = crops.shape
        ground = noise_texture(batch, channels, size, generator, crops.device, crops.dtype)
    chosen = (torch.rand(len(crops), generator=generator) < p).to(crops.device).view(-1, 1, 1, 1)
    return torch.where(chosen, alpha * crops + (1 - alpha) * ground, crops)


def donor_order(batch: int, generator: torch.Generator) -> torch.Tensor:
    """For each plant of a batch, another plant (never itself when batch > 1): a cyclic shift by 1..B-1."""
    if batch < 2:
        return torch.zeros(batch, dtype=torch.long)
    shift = int(torch.randint(1, batch, (1,), generator=generator))
    return (torch.arange(batch) + shift) % batch


__all__ = ["BACKGROUNDS", "donor_order", "leaf_centres", "noise_texture", "replace_background"]
